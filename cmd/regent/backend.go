package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/election"
	"github.com/regentd/regent/election/etcdbackend"
	"github.com/regentd/regent/election/pgbackend"
)

// electionOptions derives the backend options of cfg.
func electionOptions(cfg *config.Config, readOnly bool) election.Options {
	host, _ := os.Hostname()
	return election.Options{
		Identity: election.Identity{
			Cluster: cfg.Cluster,
			Node:    cfg.NodeID,
			Host:    host,
			PID:     os.Getpid(),
		},
		Timing:   cfg.Timing(),
		ReadOnly: readOnly,
	}
}

// openBackend connects to the configured backend.
func openBackend(ctx context.Context, cfg *config.Config, opts election.Options, log hclog.Logger) (election.Backend, error) {
	switch cfg.Backend {
	case config.BackendPostgres:
		b, err := pgbackend.New(ctx, pgbackend.Config{
			URL:              cfg.Postgres.URL,
			DialTimeout:      cfg.Postgres.DialTimeout,
			StatementTimeout: cfg.Postgres.StatementTimeout,
		}, opts, log.Named("postgres"))
		if err != nil && errors.Is(err, election.ErrUnavailable) && !strings.Contains(err.Error(), "--postgres-url") {
			err = fmt.Errorf("%w; check --postgres-url and that the server is up", err)
		}
		if err != nil {
			return nil, err
		}
		return b, nil
	default:
		return etcdbackend.New(ctx, etcdbackend.Config{
			Endpoints:   cfg.Etcd.Endpoints,
			Username:    cfg.Etcd.Username,
			Password:    cfg.Etcd.Password,
			CAFile:      cfg.Etcd.CAFile,
			CertFile:    cfg.Etcd.CertFile,
			KeyFile:     cfg.Etcd.KeyFile,
			DialTimeout: cfg.Etcd.DialTimeout,
		}, opts, log.Named("etcd"))
	}
}
