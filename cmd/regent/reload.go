package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/supervisor"
)

// reloader re-reads the config file on SIGHUP (systemctl reload) and
// hands the supervisor the queues' new configs. It runs on one goroutine,
// owned by runRun (startReloader's wait).
type reloader struct {
	cmd     *cobra.Command
	command []string // the worker command after --, kept
	running *config.Config
	sup     *supervisor.Supervisor
	log     hclog.Logger
}

// startReloader reloads on every SIGHUP until ctx ends; wait returns once
// its goroutine has.
func startReloader(ctx context.Context, rl *reloader) (wait func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				rl.reload(ctx)
			}
		}
	}()
	return func() { <-done }
}

// reload re-reads the config with the flags and env of the start. An
// invalid file, or one that changes a setting of the replica's identity
// or session, is refused with one config_reload_failed line, and the
// running config stays.
func (rl *reloader) reload(ctx context.Context) {
	next, err := loadConfig(rl.cmd, rl.command, true)
	if err != nil {
		rl.log.Error("config_reload_failed", "error", config.RedactText(oneLine(err.Error())), "detail", "the running config stays")
		return
	}
	if fixed := fixedChanged(rl.running, next); len(fixed) > 0 {
		rl.log.Error("config_reload_failed", "error", fmt.Sprintf("%s cannot change on reload: restart the replica to change them", strings.Join(fixed, ", ")),
			"settings", fixed, "detail", "the running config stays")
		return
	}
	if err := rl.sup.Reload(ctx, next.Queues); err != nil {
		rl.log.Error("config_reload_failed", "error", err.Error(), "detail", "the running config stays")
		return
	}
	rl.running = next
}

// fixedChanged names the settings that make the replica's identity or
// session and differ between a and b: they are not reloaded. A node id
// nobody configured (random on each load) is not compared.
func fixedChanged(a, b *config.Config) []string {
	var out []string
	check := func(name string, x, y any) {
		if !reflect.DeepEqual(x, y) {
			out = append(out, name)
		}
	}
	check("backend", a.Backend, b.Backend)
	check("etcd", a.Etcd, b.Etcd)
	check("postgres", a.Postgres, b.Postgres)
	check("cluster", a.Cluster, b.Cluster)
	if !(config.IsDefaultNodeID(a.NodeID) && config.IsDefaultNodeID(b.NodeID)) {
		check("node_id", a.NodeID, b.NodeID)
	}
	check("lease_ttl", a.LeaseTTL, b.LeaseTTL)
	check("renew_interval", a.RenewInterval, b.RenewInterval)
	check("fence_margin", a.FenceMargin, b.FenceMargin)
	check("http_addr", a.HTTPAddr, b.HTTPAddr)
	check("fence.postgres_url", a.Fence.PostgresURL, b.Fence.PostgresURL)
	return out
}
