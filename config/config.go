package config

import (
	"time"

	"github.com/regentd/regent/election"
)

// Backend names.
const (
	BackendEtcd     = "etcd"
	BackendPostgres = "postgres"
)

// Config is the whole effective configuration of one regent process.
type Config struct {
	// Cluster is the namespace inside the backend. Default "default".
	Cluster string `mapstructure:"cluster" json:"cluster"`
	// NodeID names this replica. Default "<hostname>-<short random>".
	NodeID string `mapstructure:"node_id" json:"node_id"`
	// Backend is "etcd" or "postgres". Default "etcd".
	Backend  string         `mapstructure:"backend" json:"backend"`
	Etcd     EtcdConfig     `mapstructure:"etcd" json:"etcd"`
	Postgres PostgresConfig `mapstructure:"postgres" json:"postgres"`
	// Fence names the workers' own database (the protected resource),
	// where regent installs and reads the fence; never regent's backend.
	Fence FenceConfig `mapstructure:"fence" json:"fence"`

	// The lease timing: defaults and limits are election.Timing's, each
	// documented on its field there; Timing returns them as one.

	// LeaseTTL is election.Timing.LeaseTTL. Default 10s.
	LeaseTTL time.Duration `mapstructure:"lease_ttl" json:"lease_ttl"`
	// RenewInterval is election.Timing.RenewInterval. Default LeaseTTL/5.
	RenewInterval time.Duration `mapstructure:"renew_interval" json:"renew_interval"`
	// FenceMargin is election.Timing.FenceMargin. Default LeaseTTL/10, at
	// least 200ms.
	FenceMargin time.Duration `mapstructure:"fence_margin" json:"fence_margin"`
	// RetryInterval is election.Timing.RetryInterval. Default 500ms.
	RetryInterval time.Duration `mapstructure:"retry_interval" json:"retry_interval"`
	// ClockDriftPPM is the largest rate error, in parts per million, that
	// regent assumes of any host's clock (NTP slews at most 500 ppm). A
	// leader's clock and a follower's may err in opposite directions, so
	// FenceMargin must cover 2 × ClockDriftPPM of LeaseTTL
	// (election.Timing.ValidateClockDrift). Default 500.
	ClockDriftPPM int `mapstructure:"clock_drift_ppm" json:"clock_drift_ppm"`
	// Containment is how the kernel holds each worker's tree to its guard:
	// "auto" (default: the best the kernel allows), "pid-namespace",
	// "user+pid-namespace" or "none".
	Containment string `mapstructure:"containment" json:"containment"`

	// Queues lists the queues this replica campaigns for, in order.
	Queues []QueueConfig `mapstructure:"-" json:"queues"`

	// Balance spreads leadership evenly over live replicas. Default true.
	Balance bool `mapstructure:"balance" json:"balance"`
	// Exclusive makes run exit 2 when a queue is already led. Default false.
	Exclusive bool `mapstructure:"exclusive" json:"exclusive"`
	// PIDFile is a local convenience only; it is never the authority.
	PIDFile string `mapstructure:"pid_file" json:"pid_file,omitempty"`
	// HTTPAddr serves /metrics, /healthz, /readyz, /status and /leader.
	// Empty disables it. Default "127.0.0.1:9464".
	HTTPAddr string `mapstructure:"http_addr" json:"http_addr"`
	// HTTPAddrExplicit is true when http_addr was set by a flag, the
	// environment or the config file; false when it is the default, which
	// `run` may replace by a free port when the default port is taken.
	HTTPAddrExplicit bool `mapstructure:"-" json:"-"`

	Log LogConfig `mapstructure:"log" json:"log"`
}

// EtcdConfig are the etcd connection settings.
type EtcdConfig struct {
	Endpoints   []string      `mapstructure:"endpoints" json:"endpoints"`
	Username    string        `mapstructure:"username" json:"username,omitempty"`
	Password    string        `mapstructure:"password" json:"password,omitempty"`
	CAFile      string        `mapstructure:"ca_file" json:"ca_file,omitempty"`
	CertFile    string        `mapstructure:"cert_file" json:"cert_file,omitempty"`
	KeyFile     string        `mapstructure:"key_file" json:"key_file,omitempty"`
	DialTimeout time.Duration `mapstructure:"dial_timeout" json:"dial_timeout"`
}

// PostgresConfig are the PostgreSQL connection settings. sslmode and other
// libpq options are part of the URL.
type PostgresConfig struct {
	URL              string        `mapstructure:"url" json:"url,omitempty"`
	DialTimeout      time.Duration `mapstructure:"dial_timeout" json:"dial_timeout"`
	StatementTimeout time.Duration `mapstructure:"statement_timeout" json:"statement_timeout"`
}

// FenceConfig names the fence at the protected resource (README,
// Fencing). It is optional: workers get their fence token in their
// environment whether or not regent can read the fence.
type FenceConfig struct {
	// PostgresURL is the URL of the workers' PostgreSQL database that
	// holds the regent_fence schema. Empty: status shows no fence.
	PostgresURL string `mapstructure:"postgres_url" json:"postgres_url,omitempty"`
}

// LogConfig selects the log level and format.
type LogConfig struct {
	// Level is trace, debug, info, warn or error. Default info.
	Level string `mapstructure:"level" json:"level"`
	// Format is text or json. Default text.
	Format string `mapstructure:"format" json:"format"`
}

// QueueConfig is the effective worker configuration of one queue. It is
// what a leader publishes and what followers compare against.
type QueueConfig struct {
	Name string `mapstructure:"-" json:"name"`
	// Command is the worker command and its arguments.
	Command []string `mapstructure:"command" json:"command"`
	// Concurrency is the number of workers. Default 1.
	Concurrency int `mapstructure:"concurrency" json:"concurrency"`
	// MaxRSSMB caps each worker's process-tree RSS in MiB; 0 disables.
	MaxRSSMB int `mapstructure:"max_rss_mb" json:"max_rss_mb"`
	// StopTimeout is the grace between SIGTERM and SIGKILL. Default 10s.
	StopTimeout time.Duration `mapstructure:"stop_timeout" json:"stop_timeout"`
	Restart     RestartPolicy `mapstructure:"restart" json:"restart"`
	Liveness    Liveness      `mapstructure:"liveness" json:"liveness"`
	// Prefer lists nodes that should lead this queue when healthy.
	Prefer []string `mapstructure:"prefer" json:"prefer,omitempty"`
	// FenceKey is the queue's key in the resource's fence; empty means
	// the queue name. One key belongs to one queue.
	FenceKey string `mapstructure:"fence_key" json:"fence_key,omitempty"`
}

// EffectiveFenceKey is the key the queue's workers claim: FenceKey, or
// the queue name when it is empty.
func (q QueueConfig) EffectiveFenceKey() string {
	if q.FenceKey != "" {
		return q.FenceKey
	}
	return q.Name
}

// RestartPolicy is the worker restart backoff.
type RestartPolicy struct {
	// InitialBackoff is the first delay after a crash. Default 1s.
	InitialBackoff time.Duration `mapstructure:"initial_backoff" json:"initial_backoff"`
	// MaxBackoff caps the doubling delay. Default 60s.
	MaxBackoff time.Duration `mapstructure:"max_backoff" json:"max_backoff"`
	// ResetAfter is the run length that resets the backoff. Default 5m.
	ResetAfter time.Duration `mapstructure:"reset_after" json:"reset_after"`
	// MaxCrashes after which the queue is marked degraded. Default 10.
	MaxCrashes int `mapstructure:"max_crashes" json:"max_crashes"`
}

// Liveness is the optional heartbeat-file wedge detection.
type Liveness struct {
	// HeartbeatTimeout restarts a worker whose REGENT_HEARTBEAT_FILE was not
	// touched for this long. 0 disables. Default 0.
	HeartbeatTimeout time.Duration `mapstructure:"heartbeat_timeout" json:"heartbeat_timeout"`
	// StartupGrace is the time a new worker has before its first heartbeat.
	// Default 30s.
	StartupGrace time.Duration `mapstructure:"startup_grace" json:"startup_grace"`
}

// Timing is the lease timing of c, for the supervisor and the backend:
// its four settings as configured, and the timings it has no setting for
// (stale grace, step-down hold) at their defaults for its lease TTL. With
// no lease TTL (a config built by hand, as the guard's) those two stay
// zero, for Timing.WithDefaults to fill as it fills the lease TTL.
func (c *Config) Timing() election.Timing {
	t := election.Timing{
		LeaseTTL:      c.LeaseTTL,
		RenewInterval: c.RenewInterval,
		FenceMargin:   c.FenceMargin,
		RetryInterval: c.RetryInterval,
	}
	if c.LeaseTTL > 0 {
		t.StaleGrace = election.DefaultStaleGrace(c.LeaseTTL)
		t.StepDownHold = election.DefaultStepDownHold(c.LeaseTTL)
	}
	return t
}

// Queue returns the configuration of the named queue.
func (c *Config) Queue(name string) (QueueConfig, bool) {
	for _, q := range c.Queues {
		if q.Name == name {
			return q, true
		}
	}
	return QueueConfig{}, false
}

// QueueNames returns the names of the configured queues, in order.
func (c *Config) QueueNames() []string {
	names := make([]string, len(c.Queues))
	for i, q := range c.Queues {
		names[i] = q.Name
	}
	return names
}
