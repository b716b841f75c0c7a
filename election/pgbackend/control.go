package pgbackend

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/regentd/regent/election"
)

// PutControl writes the operator record (kind, name) and wakes every
// replica's Changes, in one statement.
func (b *Backend) PutControl(ctx context.Context, kind, name string, value []byte) error {
	if kind == "" || name == "" {
		return fmt.Errorf("pgbackend: operator record needs a kind and a name")
	}
	return b.act.call(ctx, func(a *actor) error {
		ctx, cancel := a.stmt()
		defer cancel()
		_, err := a.conn().Exec(ctx, `
WITH w AS (
	INSERT INTO regent_controls (cluster, kind, name, value) VALUES ($1, $2, $3, $4)
	ON CONFLICT (cluster, kind, name) DO UPDATE SET value = excluded.value, updated_at = now()
	RETURNING 1
)
SELECT pg_notify('`+NotifyChannel+`', $5) FROM w`,
			a.b.s.Cluster, kind, name, value, noticePayload(a.b.s.Cluster, "", kindControl))
		if err != nil {
			return fmt.Errorf("pgbackend: write %s %s: %w", kind, name, a.check(err))
		}
		return nil
	})
}

// DeleteControl deletes the operator record (kind, name), if any, and
// wakes every replica's Changes when it did.
func (b *Backend) DeleteControl(ctx context.Context, kind, name string) error {
	return b.act.call(ctx, func(a *actor) error {
		ctx, cancel := a.stmt()
		defer cancel()
		_, err := a.conn().Exec(ctx, `
WITH d AS (
	DELETE FROM regent_controls WHERE cluster = $1 AND kind = $2 AND name = $3 RETURNING 1
)
SELECT pg_notify('`+NotifyChannel+`', $4) FROM d`,
			a.b.s.Cluster, kind, name, noticePayload(a.b.s.Cluster, "", kindControl))
		if err != nil {
			return fmt.Errorf("pgbackend: delete %s %s: %w", kind, name, a.check(err))
		}
		return nil
	})
}

// Controls reads every operator record of the cluster.
func (b *Backend) Controls(ctx context.Context) ([]election.Control, error) {
	var out []election.Control
	err := b.act.call(ctx, func(a *actor) error {
		ctx, cancel := a.stmt()
		defer cancel()
		rows, err := a.conn().Query(ctx, `
SELECT kind, name, value FROM regent_controls WHERE cluster = $1 ORDER BY kind, name`, a.b.s.Cluster)
		if err != nil {
			return fmt.Errorf("pgbackend: read operator records: %w", a.check(err))
		}
		defer rows.Close()
		out = []election.Control{}
		for rows.Next() {
			var c election.Control
			if err := rows.Scan(&c.Kind, &c.Name, &c.Value); err != nil {
				return fmt.Errorf("pgbackend: read operator records: %w", a.check(err))
			}
			out = append(out, c)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("pgbackend: read operator records: %w", a.check(err))
		}
		return nil
	})
	return out, err
}

// actionsSlack is how many entries beyond election.ActionsKeep the log
// may hold before RecordAction trims it.
const actionsSlack = 50

// RecordAction appends a to the operator log and trims the log to
// election.ActionsKeep entries once it holds actionsSlack more.
func (b *Backend) RecordAction(ctx context.Context, act election.Action) error {
	entry, err := json.Marshal(act)
	if err != nil {
		return fmt.Errorf("pgbackend: encode action: %w", err)
	}
	return b.act.call(ctx, func(a *actor) error {
		ctx, cancel := a.stmt()
		defer cancel()
		var id int64
		err := a.conn().QueryRow(ctx, `
INSERT INTO regent_actions (cluster, entry) VALUES ($1, $2) RETURNING id`, a.b.s.Cluster, entry).Scan(&id)
		if err != nil {
			return fmt.Errorf("pgbackend: record action: %w", a.check(err))
		}
		if id%actionsSlack == 0 {
			_, _ = a.conn().Exec(ctx, `
DELETE FROM regent_actions WHERE cluster = $1 AND id <= (
	SELECT id FROM regent_actions WHERE cluster = $1 ORDER BY id DESC OFFSET $2 LIMIT 1)`,
				a.b.s.Cluster, election.ActionsKeep)
		}
		return nil
	})
}

// Actions reads the newest limit entries of the operator log.
func (b *Backend) Actions(ctx context.Context, limit int) ([]election.Action, error) {
	if limit <= 0 {
		return nil, nil
	}
	var out []election.Action
	err := b.act.call(ctx, func(a *actor) error {
		ctx, cancel := a.stmt()
		defer cancel()
		rows, err := a.conn().Query(ctx, `
SELECT entry FROM regent_actions WHERE cluster = $1 ORDER BY id DESC LIMIT $2`, a.b.s.Cluster, limit)
		if err != nil {
			return fmt.Errorf("pgbackend: read actions: %w", a.check(err))
		}
		defer rows.Close()
		out = []election.Action{}
		for rows.Next() {
			var entry []byte
			if err := rows.Scan(&entry); err != nil {
				return fmt.Errorf("pgbackend: read actions: %w", a.check(err))
			}
			out = append(out, election.DecodeAction(entry))
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("pgbackend: read actions: %w", a.check(err))
		}
		return nil
	})
	return out, err
}
