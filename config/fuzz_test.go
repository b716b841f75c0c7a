package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// FuzzLoadFile feeds arbitrary bytes as the YAML config file: Load and
// Validate must return a value or a one-line error, never panic.
func FuzzLoadFile(f *testing.F) {
	f.Add([]byte("cluster: prod\nbackend: postgres\npostgres:\n  url: postgres://u:p@h/db\nqueues:\n  a:\n    command: [w]\n    max_rss_mb: 16384\n"))
	f.Add([]byte("lease_ttl: 10s\nrenew_interval: 2s\nconcurrency: 3\ncommand: [w, --x]\n"))
	f.Add([]byte("queues: {a: {restart: {max_backoff: 1m}}, b: {liveness: {heartbeat_timeout: 5s}}}\n"))
	f.Add([]byte("etcd: {endpoints: [a:1, b:2], username: u, password: p}\n"))
	f.Add([]byte("queues: [1, 2]\n"))
	f.Add([]byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, body []byte) {
		dir := t.TempDir()
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, body, 0o600); err != nil {
			t.Fatal(err)
		}
		fs := pflag.NewFlagSet("fuzz", pflag.ContinueOnError)
		RegisterFlags(fs, ScopeRun)
		if err := fs.Parse([]string{"--config", p}); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(fs, nil)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error: %q", err)
			}
			return
		}
		if err := cfg.ValidateRun(); err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("multi-line validation error: %q", err)
		}
		_ = cfg.Redacted()
		_ = Document(cfg.Redacted())
	})
}

// FuzzFlagsAndEnv feeds arbitrary command lines and environment values
// through flag parsing and Load.
func FuzzFlagsAndEnv(f *testing.F) {
	f.Add("--queue a --queue b --max-rss 4096 --lease-ttl 5s", "REGENT_CONCURRENCY", "3")
	f.Add("--backend postgres", "DATABASE_URL", "postgres://u:p@h/db")
	f.Add("--etcd-endpoints ,,", "REGENT_LEASE_TTL", "-1s")
	f.Add("--fence-margin 1h", "REGENT_QUEUE", "a,a")
	f.Fuzz(func(t *testing.T, args, envName, envValue string) {
		fs := pflag.NewFlagSet("fuzz", pflag.ContinueOnError)
		fs.SetOutput(nopWriter{})
		RegisterFlags(fs, ScopeRun)
		if err := fs.Parse(strings.Fields(args)); err != nil {
			return
		}
		if strings.HasPrefix(envName, "REGENT_") && envName != "REGENT_CONFIG" || envName == "DATABASE_URL" {
			if strings.ContainsAny(envName, "=\x00") || strings.Contains(envValue, "\x00") {
				return
			}
			t.Setenv(envName, envValue)
		}
		cfg, err := Load(fs, []string{"w"})
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error: %q", err)
			}
			return
		}
		_ = cfg.ValidateRun()
	})
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
