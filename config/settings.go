package config

import (
	"strings"
	"time"

	"github.com/regentd/regent/election"
)

// Scope says which commands accept a setting.
type Scope int

// Scopes of settings.
const (
	// ScopeBackend settings are accepted by every command that talks to
	// the backend (run, status, step-down, config print).
	ScopeBackend Scope = iota
	// ScopeRun settings are accepted by run and config print only.
	ScopeRun
)

// Setting describes one configuration key: its YAML path, flag,
// environment variable, default and help. The table drives flag
// registration, env binding and the generated reference in the README.
type Setting struct {
	// Key is the viper key and YAML path, e.g. "etcd.endpoints".
	Key string
	// Flag is the long flag name without dashes; empty if file/env only.
	Flag string
	// Default is the default value (string, int, bool, time.Duration or
	// []string); nil means empty.
	Default any
	// Help is the one-line description.
	Help string
	// Scope says which commands have the flag.
	Scope Scope
	// Secret settings are redacted in every output.
	Secret bool
	// ExtraEnv lists fallback environment variables, lowest priority last.
	ExtraEnv []string
	// PerQueue settings may also be set in a queues.<name> section.
	PerQueue bool
	// NoEnv settings have no environment variable: their name would be
	// one that regent sets for workers (REGENT_FENCE_KEY), so a regent
	// started from a worker's environment would inherit it.
	NoEnv bool
}

// Env is the environment variable of the setting: REGENT_ and the flag
// name (or key) in upper case with dashes and dots as underscores; empty
// for a NoEnv setting.
func (s Setting) Env() string {
	if s.NoEnv {
		return ""
	}
	name := s.Flag
	if name == "" {
		name = s.Key
	}
	r := strings.NewReplacer("-", "_", ".", "_")
	return "REGENT_" + strings.ToUpper(r.Replace(name))
}

// Settings is every configuration key regent knows, in reference order.
var Settings = []Setting{
	{Key: "config", Flag: "config", Help: "path of a YAML config file", Scope: ScopeBackend},
	{Key: "cluster", Flag: "cluster", Default: "default", Help: "namespace inside the backend", Scope: ScopeBackend},
	{Key: "backend", Flag: "backend", Default: BackendEtcd, Help: "election backend: etcd or postgres", Scope: ScopeBackend},
	{Key: "etcd.endpoints", Flag: "etcd-endpoints", Default: []string{"127.0.0.1:2379"}, Help: "etcd client endpoints, comma-separated", Scope: ScopeBackend},
	{Key: "etcd.username", Flag: "etcd-username", Help: "etcd user name", Scope: ScopeBackend},
	{Key: "etcd.password", Flag: "etcd-password", Help: "etcd password (prefer the env variable)", Scope: ScopeBackend, Secret: true},
	{Key: "etcd.ca_file", Flag: "etcd-ca-file", Help: "CA certificate file to verify etcd's TLS certificate", Scope: ScopeBackend},
	{Key: "etcd.cert_file", Flag: "etcd-cert-file", Help: "client TLS certificate file for etcd", Scope: ScopeBackend},
	{Key: "etcd.key_file", Flag: "etcd-key-file", Help: "client TLS key file for etcd (the path is shown, never the key)", Scope: ScopeBackend},
	{Key: "etcd.dial_timeout", Flag: "etcd-dial-timeout", Default: 5 * time.Second, Help: "how long to wait for etcd at start", Scope: ScopeBackend},
	{Key: "postgres.url", Flag: "postgres-url", Help: "PostgreSQL URL (sslmode and other libpq options in the URL); must be a direct or session-mode connection", Scope: ScopeBackend, Secret: true, ExtraEnv: []string{"DATABASE_URL"}},
	{Key: "postgres.dial_timeout", Flag: "postgres-dial-timeout", Default: 5 * time.Second, Help: "how long to wait for PostgreSQL at start", Scope: ScopeBackend},
	{Key: "postgres.statement_timeout", Flag: "postgres-statement-timeout", Default: 5 * time.Second, Help: "timeout of each statement regent sends", Scope: ScopeBackend},
	{Key: "fence.postgres_url", Flag: "fence-postgres-url", Help: "URL of the workers' own PostgreSQL database holding the fence (the protected resource; not regent's backend); see README, Fencing", Scope: ScopeBackend, Secret: true},
	{Key: "log.level", Flag: "log-level", Default: "info", Help: "log level: trace, debug, info, warn or error", Scope: ScopeBackend},
	{Key: "log.format", Flag: "log-format", Default: "text", Help: "log format: text or json", Scope: ScopeBackend},

	{Key: "queue", Flag: "queue", Help: "queue to campaign for (repeatable); default: the queues of the config file, else \"default\"", Scope: ScopeRun},
	{Key: "node_id", Flag: "node-id", Help: "this replica's name (default <hostname>-<random>)", Scope: ScopeRun},
	{Key: "lease_ttl", Flag: "lease-ttl", Default: election.DefaultLeaseTTL, Help: "how long leadership survives without renewal", Scope: ScopeRun},
	{Key: "renew_interval", Flag: "renew-interval", Help: "session renewal interval (default lease-ttl/5)", Scope: ScopeRun},
	{Key: "fence_margin", Flag: "fence-margin", Help: "safety margin before the lease end at which a leader stops its workers (default lease-ttl/10, at least 200ms)", Scope: ScopeRun},
	{Key: "clock_drift_ppm", Flag: "clock-drift-ppm", Default: election.DefaultClockDriftPPM, Help: "largest clock rate error assumed of any host, in ppm; fence_margin must cover twice this share of lease_ttl", Scope: ScopeRun},
	{Key: "containment", Flag: "containment", Default: "auto", Help: "how the kernel holds each worker's processes to its guard: auto, pid-namespace, user+pid-namespace or none (see README, Containment)", Scope: ScopeRun},
	{Key: "retry_interval", Flag: "retry-interval", Default: election.DefaultRetryInterval, Help: "follower retry interval when the backend gives no wake-up", Scope: ScopeRun},
	{Key: "balance", Flag: "balance", Default: true, Help: "spread queue leadership evenly over the live replicas (voluntary step-down, candidacy delay)", Scope: ScopeRun},
	{Key: "exclusive", Flag: "exclusive", Default: false, Help: "exit 2 at once if a queue is already led instead of standing by", Scope: ScopeRun},
	{Key: "pid_file", Flag: "pid-file", Help: "write the pid here (a local convenience, never the lock)", Scope: ScopeRun},
	{Key: "http_addr", Flag: "http-addr", Default: "127.0.0.1:9464", Help: "address of the metrics/health/status HTTP server; empty disables", Scope: ScopeRun},

	{Key: "command", Help: "worker command and arguments (after -- on the command line)", Scope: ScopeRun, PerQueue: true},
	{Key: "concurrency", Flag: "concurrency", Default: 1, Help: "workers per queue; 0 = leadership only: the leader spawns no process (leadership shows in status, /leader and metrics)", Scope: ScopeRun, PerQueue: true},
	{Key: "max_rss_mb", Flag: "max-rss", Default: 0, Help: "RSS cap per worker process tree in MiB; 0 = off", Scope: ScopeRun, PerQueue: true},
	{Key: "stop_timeout", Flag: "stop-timeout", Default: 10 * time.Second, Help: "grace between SIGTERM and SIGKILL when stopping a worker", Scope: ScopeRun, PerQueue: true},
	{Key: "restart.initial_backoff", Flag: "restart-initial-backoff", Default: time.Second, Help: "first restart delay after a crash", Scope: ScopeRun, PerQueue: true},
	{Key: "restart.max_backoff", Flag: "restart-max-backoff", Default: 60 * time.Second, Help: "cap of the doubling restart delay", Scope: ScopeRun, PerQueue: true},
	{Key: "restart.reset_after", Flag: "restart-reset-after", Default: 5 * time.Minute, Help: "a run this long resets the backoff", Scope: ScopeRun, PerQueue: true},
	{Key: "restart.max_crashes", Flag: "max-crashes", Default: 10, Help: "crashes in a row after which the queue is reported degraded", Scope: ScopeRun, PerQueue: true},
	{Key: "liveness.heartbeat_timeout", Flag: "heartbeat-timeout", Default: time.Duration(0), Help: "restart a worker that has not touched REGENT_HEARTBEAT_FILE for this long; 0 = off", Scope: ScopeRun, PerQueue: true},
	{Key: "liveness.startup_grace", Flag: "startup-grace", Default: 30 * time.Second, Help: "time a new worker has before its first heartbeat", Scope: ScopeRun, PerQueue: true},
	{Key: "fence_key", Flag: "fence-key", Help: "the queue's key in the resource's fence (REGENT_FENCE_KEY of its workers); default the queue name; one key per queue", Scope: ScopeRun, PerQueue: true, NoEnv: true},
	{Key: "prefer", Flag: "prefer", Help: "nodes that should lead this queue when healthy (comma-separated); the others hand it over to a live one", Scope: ScopeRun, PerQueue: true},
}

// Lookup returns the setting of key.
func Lookup(key string) (Setting, bool) {
	for _, s := range Settings {
		if s.Key == key {
			return s, true
		}
	}
	return Setting{}, false
}
