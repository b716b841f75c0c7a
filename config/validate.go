package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/regentd/regent/election"
)

// ErrInvalid wraps every validation error.
var ErrInvalid = errors.New("invalid config")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// Validate checks the settings every command shares (cluster, backend and
// its connection, logging) and the rules between fields. Each error names
// the field and the fix.
func (c *Config) Validate() error {
	if !ValidName(c.Cluster) {
		return invalid("cluster %q: use 1-128 letters, digits, '-', '_' or '.' (--cluster)", c.Cluster)
	}
	switch c.Backend {
	case BackendEtcd:
		if len(c.Etcd.Endpoints) == 0 {
			return invalid("etcd.endpoints is empty: set --etcd-endpoints host:port[,host:port...]")
		}
		for _, ep := range c.Etcd.Endpoints {
			if strings.TrimSpace(ep) == "" {
				return invalid("etcd.endpoints has an empty entry: remove the stray comma in --etcd-endpoints")
			}
		}
		if (c.Etcd.CertFile == "") != (c.Etcd.KeyFile == "") {
			return invalid("etcd.cert_file and etcd.key_file go together: set both --etcd-cert-file and --etcd-key-file, or neither")
		}
		if c.Etcd.Password != "" && c.Etcd.Username == "" {
			return invalid("etcd.password is set without etcd.username: set --etcd-username")
		}
		if c.Etcd.DialTimeout <= 0 {
			return invalid("etcd.dial_timeout must be positive (--etcd-dial-timeout)")
		}
	case BackendPostgres:
		if c.Postgres.URL == "" {
			return invalid("postgres.url is empty: set --postgres-url, REGENT_POSTGRES_URL or DATABASE_URL")
		}
		if err := checkPostgresURL(c.Postgres.URL); err != nil {
			return err
		}
		if c.Postgres.DialTimeout <= 0 {
			return invalid("postgres.dial_timeout must be positive (--postgres-dial-timeout)")
		}
		if c.Postgres.StatementTimeout <= 0 {
			return invalid("postgres.statement_timeout must be positive (--postgres-statement-timeout)")
		}
	default:
		return invalid("backend %q: use etcd or postgres (--backend)", c.Backend)
	}
	if c.Fence.PostgresURL != "" {
		if err := checkURL("fence.postgres_url", "--fence-postgres-url", c.Fence.PostgresURL); err != nil {
			return err
		}
	}
	switch c.Log.Level {
	case "trace", "debug", "info", "warn", "error":
	default:
		return invalid("log.level %q: use trace, debug, info, warn or error (--log-level)", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return invalid("log.format %q: use text or json (--log-format)", c.Log.Format)
	}
	return nil
}

// ValidateRun checks everything `regent run` needs on top of Validate:
// node id, lease timing, HTTP address and every queue.
func (c *Config) ValidateRun() error {
	if err := c.Validate(); err != nil {
		return err
	}
	if !ValidName(c.NodeID) {
		return invalid("node_id %q: use 1-128 letters, digits, '-', '_' or '.' (--node-id)", c.NodeID)
	}
	// The limits are election.Timing's; etcd's own (whole seconds, at
	// least 2s: etcdbackend.MinLeaseTTL) is checked here too, so that the
	// error comes before a connection is tried, and before the others'.
	t := c.Timing()
	if c.Backend == BackendEtcd && c.LeaseTTL >= election.MinLeaseTTL && (c.LeaseTTL < 2*time.Second || c.LeaseTTL%time.Second != 0) {
		return invalid("lease_ttl %s: etcd leases are whole seconds, at least 2s (--lease-ttl)", c.LeaseTTL)
	}
	if err := t.Validate(); err != nil {
		return timingInvalid(err)
	}
	if err := t.ValidateClockDrift(c.ClockDriftPPM); err != nil {
		return timingInvalid(err)
	}
	switch c.Containment {
	case "auto", "pid-namespace", "user+pid-namespace", "none":
	default:
		return invalid("containment %q: use auto, pid-namespace, user+pid-namespace or none (--containment)", c.Containment)
	}
	if c.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			return invalid("http_addr %q: use host:port, e.g. 127.0.0.1:9464, or empty to disable (--http-addr)", c.HTTPAddr)
		}
	}
	if len(c.Queues) == 0 {
		return invalid("no queue to campaign for: set --queue")
	}
	fenceKeys := make(map[string]string, len(c.Queues))
	for _, q := range c.Queues {
		if err := q.Validate(); err != nil {
			return err
		}
		key := q.EffectiveFenceKey()
		if other, ok := fenceKeys[key]; ok {
			return invalid("queues %s and %s have the same fence key %q: their terms are not comparable; give each queue its own fence_key", other, q.Name, key)
		}
		fenceKeys[key] = q.Name
	}
	return nil
}

// Validate checks one queue's worker settings.
func (q *QueueConfig) Validate() error {
	if !ValidName(q.Name) {
		return invalid("queue %q: use 1-128 letters, digits, '-', '_' or '.' (--queue)", q.Name)
	}
	if q.FenceKey != "" && !ValidName(q.FenceKey) {
		return invalid("queue %s: fence_key %q: use 1-128 letters, digits, '-', '_' or '.'", q.Name, q.FenceKey)
	}
	if q.Concurrency < 0 || q.Concurrency > 10000 {
		return invalid("queue %s: concurrency %d must be between 0 (leadership only) and 10000 (--concurrency)", q.Name, q.Concurrency)
	}
	// A leadership-only queue (concurrency 0) spawns nothing, so it needs
	// no command; one given is kept (and published) but never run.
	if q.Concurrency > 0 && (len(q.Command) == 0 || strings.TrimSpace(q.Command[0]) == "") {
		return invalid("queue %s has no worker command: give it after -- (regent run --queue %s -- cmd args), set command in the config file, or set concurrency 0 for leadership only", q.Name, q.Name)
	}
	if q.MaxRSSMB < 0 {
		return invalid("queue %s: max_rss_mb %d must be 0 (off) or positive (--max-rss)", q.Name, q.MaxRSSMB)
	}
	if q.StopTimeout <= 0 {
		return invalid("queue %s: stop_timeout must be positive (--stop-timeout)", q.Name)
	}
	r := q.Restart
	if r.InitialBackoff <= 0 || r.MaxBackoff < r.InitialBackoff {
		return invalid("queue %s: restart.initial_backoff must be positive and restart.max_backoff at least as long", q.Name)
	}
	if r.ResetAfter <= 0 {
		return invalid("queue %s: restart.reset_after must be positive", q.Name)
	}
	if r.MaxCrashes < 1 {
		return invalid("queue %s: restart.max_crashes must be at least 1 (--max-crashes)", q.Name)
	}
	if q.Liveness.HeartbeatTimeout < 0 || q.Liveness.StartupGrace < 0 {
		return invalid("queue %s: liveness durations must not be negative", q.Name)
	}
	for _, n := range q.Prefer {
		if !ValidName(n) {
			return invalid("queue %s: prefer entry %q is not a valid node name", q.Name, n)
		}
	}
	return nil
}

func checkPostgresURL(s string) error {
	return checkURL("postgres.url", "--postgres-url", s)
}

// checkURL checks a PostgreSQL URL or key=value connection string of the
// setting key (flag names it on the command line).
func checkURL(key, flag, s string) error {
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		if _, err := url.Parse(s); err != nil {
			return invalid("%s is not a valid URL (%s): use postgres://user:password@host:5432/db?sslmode=... (%s)", key, RedactURL(s), flag)
		}
		return nil
	}
	if strings.Contains(s, "=") {
		return nil // key=value connection string
	}
	return invalid("%s %q is neither a postgres:// URL nor a key=value connection string (%s)", key, RedactURL(s), flag)
}

// timingInvalid words an election.TimingError for the command line: the
// settings named in its fix become their flags, and a problem that says
// its own fix names the flag of its setting.
func timingInvalid(err error) error {
	var te *election.TimingError
	if !errors.As(err, &te) {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if te.Fix == "" {
		if s, ok := Lookup(te.Field); ok && s.Flag != "" {
			return invalid("%s (--%s)", te.Problem, s.Flag)
		}
		return invalid("%s", te.Problem)
	}
	var pairs []string
	for _, s := range Settings {
		if s.Flag != "" && strings.Contains(te.Fix, s.Key) {
			pairs = append(pairs, s.Key, "--"+s.Flag)
		}
	}
	return invalid("%s: %s", te.Problem, strings.NewReplacer(pairs...).Replace(te.Fix))
}
