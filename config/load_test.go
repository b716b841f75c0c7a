package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func newFlags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	RegisterFlags(fs, ScopeRun)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse flags: %v", err)
	}
	return fs
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "regent.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadPrecedence(t *testing.T) {
	file := writeFile(t, `
cluster: fromfile
lease_ttl: 20s
max_rss_mb: 100
concurrency: 3
command: [worker, --flag]
queues:
  a:
    max_rss_mb: 16384
  b:
    concurrency: 5
`)
	t.Setenv("REGENT_LEASE_TTL", "30s")
	cfg, err := Load(newFlags(t, "--config", file, "--cluster", "fromflag"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster != "fromflag" {
		t.Errorf("cluster = %q, want flag value", cfg.Cluster)
	}
	if cfg.LeaseTTL != 30*time.Second {
		t.Errorf("lease_ttl = %s, want env value 30s", cfg.LeaseTTL)
	}
	a, _ := cfg.Queue("a")
	b, _ := cfg.Queue("b")
	if a.MaxRSSMB != 16384 || b.MaxRSSMB != 100 {
		t.Errorf("max_rss_mb a=%d b=%d, want 16384 (section) and 100 (top level)", a.MaxRSSMB, b.MaxRSSMB)
	}
	if a.Concurrency != 3 || b.Concurrency != 5 {
		t.Errorf("concurrency a=%d b=%d, want 3 and 5", a.Concurrency, b.Concurrency)
	}
	if strings.Join(a.Command, " ") != "worker --flag" {
		t.Errorf("command = %q", a.Command)
	}
	if err := cfg.ValidateRun(); err != nil {
		t.Errorf("ValidateRun: %v", err)
	}

	// An explicit flag wins over per-queue sections.
	cfg, err = Load(newFlags(t, "--config", file, "--max-rss", "4096", "--queue", "a"), []string{"other"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Queues) != 1 || cfg.Queues[0].MaxRSSMB != 4096 || cfg.Queues[0].Command[0] != "other" {
		t.Errorf("queues = %+v, want a with max_rss_mb 4096 and command other", cfg.Queues)
	}
}

func TestLoadDefaults(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://u:pw@db:5432/x")
	cfg, err := Load(newFlags(t), []string{"sleep", "1"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster != "default" || cfg.Backend != "etcd" || cfg.LeaseTTL != 10*time.Second {
		t.Errorf("defaults: %+v", cfg)
	}
	if cfg.RenewInterval != 2*time.Second || cfg.FenceMargin != time.Second {
		t.Errorf("derived: renew %s margin %s", cfg.RenewInterval, cfg.FenceMargin)
	}
	if len(cfg.Queues) != 1 || cfg.Queues[0].Name != "default" || cfg.Queues[0].Concurrency != 1 {
		t.Errorf("queues: %+v", cfg.Queues)
	}
	if cfg.Postgres.URL != "postgres://u:pw@db:5432/x" {
		t.Errorf("DATABASE_URL fallback: %q", cfg.Postgres.URL)
	}
	if !strings.HasPrefix(cfg.NodeID, "") || !ValidName(cfg.NodeID) {
		t.Errorf("node id %q", cfg.NodeID)
	}
	t.Setenv("REGENT_POSTGRES_URL", "postgres://v@db2/y")
	cfg, err = Load(newFlags(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Postgres.URL != "postgres://v@db2/y" {
		t.Errorf("REGENT_POSTGRES_URL must win over DATABASE_URL: %q", cfg.Postgres.URL)
	}
}

func TestLoadErrors(t *testing.T) {
	cases := []struct {
		name, file string
		want       string
	}{
		{"unknown key", "lease_tll: 5s\n", "lease_tll"},
		{"bad yaml", "cluster: [\n", "fix the YAML"},
		{"bad type", "concurrency: many\n", "concurrency"},
		{"bad section key", "queues:\n  a:\n    cluster: x\n", "not a per-queue setting"},
		{"bad duration", "lease_ttl: forever\n", "lease_ttl"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(newFlags(t, "--config", writeFile(t, tc.file)), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
	_, err := Load(newFlags(t, "--config", "/nonexistent/regent.yaml"), nil)
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("missing file: %v", err)
	}
}

func TestValidateRun(t *testing.T) {
	base := func() *Config {
		cfg, err := Load(newFlags(t), []string{"w"})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"ok", func(*Config) {}, ""},
		{"backend", func(c *Config) { c.Backend = "zookeeper" }, "--backend"},
		{"etcd ttl fraction", func(c *Config) {
			c.LeaseTTL = 2500 * time.Millisecond
			c.RenewInterval = 500 * time.Millisecond
			c.FenceMargin = 200 * time.Millisecond
		}, "whole seconds"},
		{"renew too slow", func(c *Config) { c.RenewInterval = 5 * time.Second }, "renew_interval"},
		{"margin too big", func(c *Config) { c.FenceMargin = 9 * time.Second }, "fence_margin"},
		// 2 × 500 ppm of a 1000 s lease is 1 s: a 500 ms margin does not
		// cover the leader's clock running slow and the follower's fast.
		{"margin below clock drift", func(c *Config) {
			c.LeaseTTL, c.RenewInterval, c.FenceMargin = 1000*time.Second, 10*time.Second, 500*time.Millisecond
		}, "clock rate error of 500 ppm"},
		{"margin covers clock drift", func(c *Config) {
			c.LeaseTTL, c.RenewInterval, c.FenceMargin = 1000*time.Second, 10*time.Second, time.Second
		}, ""},
		{"drift out of range", func(c *Config) { c.ClockDriftPPM = -1 }, "--clock-drift-ppm"},
		{"containment", func(c *Config) { c.Containment = "chroot" }, "--containment"},
		{"no command", func(c *Config) { c.Queues[0].Command = nil }, "no worker command"},
		{"concurrency", func(c *Config) { c.Queues[0].Concurrency = -1 }, "concurrency"},
		{"leadership only", func(c *Config) { c.Queues[0].Concurrency = 0 }, ""},
		{"leadership only without command", func(c *Config) { c.Queues[0].Concurrency = 0; c.Queues[0].Command = nil }, ""},
		{"queue name", func(c *Config) { c.Queues[0].Name = "a/b" }, "queue \"a/b\""},
		{"postgres url", func(c *Config) { c.Backend = "postgres"; c.Postgres.URL = "" }, "DATABASE_URL"},
		{"cert without key", func(c *Config) { c.Etcd.CertFile = "c.pem" }, "--etcd-key-file"},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, "--log-format"},
		{"http addr", func(c *Config) { c.HTTPAddr = "9464" }, "--http-addr"},
		{"fence key", func(c *Config) { c.Queues[0].FenceKey = "a b" }, "fence_key"},
		{"one fence key, two queues", func(c *Config) {
			other := c.Queues[0]
			other.Name, other.FenceKey = "other", c.Queues[0].Name
			c.Queues = append(c.Queues, other)
		}, "same fence key"},
		{"two queues, two fence keys", func(c *Config) {
			other := c.Queues[0]
			other.Name = "other"
			c.Queues = append(c.Queues, other)
		}, ""},
		{"fence url", func(c *Config) { c.Fence.PostgresURL = "db" }, "--fence-postgres-url"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mutate(c)
			err := c.ValidateRun()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestRedaction(t *testing.T) {
	cases := map[string]string{
		"postgres://user:s3cret@db:5432/x?sslmode=require": "postgres://user:REDACTED@db:5432/x?sslmode=require",
		"host=db password=s3cret user=u":                   "host=db password=REDACTED user=u",
		"postgres://user@db/x":                             "postgres://user@db/x",
	}
	for in, want := range cases {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
	args := RedactArgs([]string{"w", "--token=abc", "--password", "xyz", "--db", "postgres://a:b@h/d", "--keep"})
	joined := strings.Join(args, " ")
	for _, secret := range []string{"abc", "xyz", ":b@"} {
		if strings.Contains(joined, secret) {
			t.Errorf("secret %q survives in %q", secret, joined)
		}
	}
	if !strings.Contains(joined, "--keep") {
		t.Errorf("non-secret arg lost: %q", joined)
	}
	c := Config{Etcd: EtcdConfig{Password: "pw", KeyFile: "/k.pem"}, Postgres: PostgresConfig{URL: "postgres://u:pw@h/d"},
		Fence: FenceConfig{PostgresURL: "postgres://w:pw@h/app"}}
	r := c.Redacted()
	if r.Etcd.Password != Redacted || strings.Contains(r.Postgres.URL, "pw") || strings.Contains(r.Fence.PostgresURL, "pw") || r.Etcd.KeyFile != "/k.pem" {
		t.Errorf("Redacted: %+v", r)
	}
	if c.Etcd.Password != "pw" {
		t.Error("Redacted modified the original")
	}
}

func TestDiff(t *testing.T) {
	a := QueueConfig{Name: "q", Command: []string{"w"}, Concurrency: 1, MaxRSSMB: 16384, StopTimeout: time.Second}
	b := a
	b.MaxRSSMB = 4096
	d := Diff(a.Publish(10*time.Second), b.Publish(10*time.Second))
	if len(d) != 1 || d[0] != (Conflict{Field: "max_rss_mb", Leader: "16384", Follower: "4096"}) {
		t.Errorf("Diff = %+v", d)
	}
	if d := Diff(a.Publish(time.Second), a.Publish(time.Second)); len(d) != 0 {
		t.Errorf("identical configs differ: %+v", d)
	}
}

// A queue section with nothing in it still declares the queue, with the
// top-level settings.
func TestLoadEmptyQueueSections(t *testing.T) {
	file := writeFile(t, `
concurrency: 2
command: [worker]
queues:
  braces: {}
  bare:
  set:
    concurrency: 0
`)
	cfg, err := Load(newFlags(t, "--config", file), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Queues) != 3 {
		t.Fatalf("queues = %+v, want braces, bare and set", cfg.Queues)
	}
	for name, want := range map[string]int{"braces": 2, "bare": 2, "set": 0} {
		q, ok := cfg.Queue(name)
		if !ok || q.Concurrency != want {
			t.Errorf("queue %s: found %v, concurrency %d, want %d", name, ok, q.Concurrency, want)
		}
	}
}

// http_addr is explicit when a flag, the environment or the file sets it
// (even to the default's value); only the default may be replaced by a
// free port at run.
func TestHTTPAddrExplicit(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  string
		file string
		want bool
		addr string
	}{
		{"default", nil, "", "", false, "127.0.0.1:9464"},
		{"flag", []string{"--http-addr", "127.0.0.1:9464"}, "", "", true, "127.0.0.1:9464"},
		{"env", nil, "127.0.0.1:9500", "", true, "127.0.0.1:9500"},
		{"file", nil, "", "http_addr: 127.0.0.1:9501\n", true, "127.0.0.1:9501"},
		{"file without it", nil, "", "cluster: x\n", false, "127.0.0.1:9464"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" {
				args = append(args, "--config", writeFile(t, tc.file))
			}
			if tc.env != "" {
				t.Setenv("REGENT_HTTP_ADDR", tc.env)
			}
			cfg, err := Load(newFlags(t, args...), nil)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.HTTPAddrExplicit != tc.want || cfg.HTTPAddr != tc.addr {
				t.Fatalf("http_addr %q explicit %v, want %q %v", cfg.HTTPAddr, cfg.HTTPAddrExplicit, tc.addr, tc.want)
			}
		})
	}
}
