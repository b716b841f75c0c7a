package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/election"
	"github.com/regentd/regent/fence"
	"github.com/regentd/regent/supervisor/diagnosis"
)

// fenceTimeout bounds one read of the fence at the resource.
const fenceTimeout = 5 * time.Second

// connectFence connects to the resource named by fence.postgres_url.
// Errors name the setting and never the password.
func connectFence(ctx context.Context, url string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("fence.postgres_url %s: %s; fix --fence-postgres-url", config.RedactURL(url), config.RedactText(oneLine(err.Error())))
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = fenceTimeout
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		msg := config.RedactText(oneLine(err.Error()))
		if cfg.Password != "" {
			msg = strings.ReplaceAll(msg, cfg.Password, config.Redacted)
		}
		return nil, fmt.Errorf("cannot reach the fence's database (--fence-postgres-url %s): %s", config.RedactURL(url), msg)
	}
	return conn, nil
}

// fenceOwner is the owner this deployment's workers claim as:
// "<cluster>/<deployment id>".
func fenceOwner(ctx context.Context, b election.Operator, cluster string) (string, error) {
	id, err := b.DeploymentID(ctx)
	if err != nil {
		return "", fmt.Errorf("read the deployment id: %w", err)
	}
	return cluster + "/" + id, nil
}

// readFence reads the rows of keys and the recent refusals at the
// resource, for owner. A failure is the view's Err, never a panic: status
// shows it as a fence_unreadable problem.
func readFence(ctx context.Context, conn *pgx.Conn, owner string, keys []string, now time.Time) diagnosis.FenceView {
	v := diagnosis.FenceView{Owner: owner, Rows: map[string]diagnosis.Fence{}}
	ctx, cancel := context.WithTimeout(ctx, fenceTimeout)
	defer cancel()
	rows, err := fence.Rows(ctx, conn, keys)
	if err == nil {
		var refusals []fence.Refusal
		refusals, err = fence.Refusals(ctx, conn, now.Add(-diagnosis.FenceRecent))
		for _, r := range refusals {
			v.Refusals = append(v.Refusals, diagnosis.FenceRefusal{At: r.At, Key: r.Key, Term: r.Term, Owner: r.Owner, Node: r.Node, Code: r.Code})
		}
	}
	if err != nil {
		if errors.Is(err, fence.ErrNotInstalled) {
			err = errors.New("regent_fence is not installed there: run 'regent fence install --fence-postgres-url URL'")
		}
		return diagnosis.FenceView{Owner: owner, Err: errors.New(config.RedactText(oneLine(err.Error())))}
	}
	for _, r := range rows {
		v.Rows[r.Key] = diagnosis.Fence{Key: r.Key, Term: r.Term, Owner: r.Owner, At: r.At, OwnerSince: r.OwnerSince}
	}
	return v
}

// addFence reads the fence of every queue of doc and attaches it with its
// problems.
func addFence(ctx context.Context, b election.Operator, url string, doc *statusDoc, now time.Time) {
	keys := make([]string, len(doc.Queues))
	for i := range doc.Queues {
		keys[i] = doc.Queues[i].FenceKey()
	}
	view := func() diagnosis.FenceView {
		owner, err := fenceOwner(ctx, b, doc.Cluster)
		if err != nil {
			return diagnosis.FenceView{Err: err}
		}
		conn, err := connectFence(ctx, url)
		if err != nil {
			return diagnosis.FenceView{Owner: owner, Err: err}
		}
		defer conn.Close(context.WithoutCancel(ctx))
		return readFence(ctx, conn, owner, keys, now)
	}()
	for i := range doc.Queues {
		doc.Queues[i].AddFence(keys[i], view, now)
	}
}
