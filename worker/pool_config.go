package worker

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Liveness configures wedge detection: each worker gets the path of a
// heartbeat file in REGENT_HEARTBEAT_FILE and must touch it (change its
// mtime) at least every HeartbeatTimeout.
type Liveness struct {
	// HeartbeatTimeout is the longest allowed silence; 0 disables wedge
	// detection (and REGENT_HEARTBEAT_FILE is not set).
	HeartbeatTimeout time.Duration
	// StartupGrace: no check before this long after a start. The silence
	// is measured from the later of the last touch and the start.
	// Default HeartbeatTimeout.
	StartupGrace time.Duration
	// MaxRestarts wedge restarts are allowed within Window; past that a
	// wedged worker is only reported. Defaults 3 and 30m.
	MaxRestarts int
	Window      time.Duration
}

// RSSPolicy configures the RSS watchdog (PoolConfig.MaxRSSMB sets the
// limit).
type RSSPolicy struct {
	// WarnFraction of the limit logs a warning, once per run. Default 0.8.
	WarnFraction float64
	// More than MaxKills kills within Window is reported as a loop.
	// Defaults 3 and 10m.
	MaxKills int
	Window   time.Duration
}

// PoolConfig configures a Pool. Zero fields take the defaults given.
type PoolConfig struct {
	// Spec is the template of every worker: Command, Env, Dir,
	// StopTimeout (also the RSS and wedge kill grace), Guard*, Output.
	// Index, Deadline and GroupLock are set by the pool; the environment
	// gets EnvFor(index), REGENT_WORKER and, with Liveness,
	// REGENT_HEARTBEAT_FILE added.
	Spec Spec
	// Concurrency is the number of workers. Default 1.
	Concurrency int
	// MaxRSSMB is the RSS limit of one worker's whole process tree, in
	// MiB; 0 disables the watchdog.
	MaxRSSMB int
	// Restart is the crash restart policy.
	Restart RestartPolicy
	// Liveness configures wedge detection.
	Liveness Liveness
	// RSS configures the RSS watchdog.
	RSS RSSPolicy
	// CheckInterval is how often RSS and heartbeats are checked.
	// Default 1s (shorter if the heartbeat timeout is under 4s).
	CheckInterval time.Duration
	// RSSSampler returns the RSS of a worker's tree given its guard's pid.
	// Default DescendantsRSS.
	RSSSampler func(guardPID int) (uint64, error)
	// Clock drives backoff and windows. Default the system clock.
	Clock Clock
	// Rand returns a number in [0,1) for jitter. Default math/rand/v2.
	Rand func() float64
	// Deadline is the initial deadline of every worker; required. No
	// worker is started once it has passed, until ExtendDeadline.
	Deadline time.Time
	// Logger carries the queue. Default: Spec.Logger, else a null logger.
	Logger hclog.Logger
	// EnvFor returns extra environment entries for worker index (after
	// Spec.Env, so they win). Optional.
	EnvFor func(index int) []string
	// Events, if set, is called synchronously for each event; it must not
	// block.
	Events func(Event)
	// RestartSettle is how long a worker started by Restart must stay up
	// before it counts as running, when Liveness is off (with Liveness,
	// its first heartbeat counts): a rolling restart moves to the next
	// worker only then (supervisord's startsecs). Default 1s.
	RestartSettle time.Duration
	// Dir holds heartbeat files and the guards' group lock. Default a
	// fresh temporary directory, removed when Run returns.
	Dir string
}

// withDefaults validates c and fills its defaults.
func (c PoolConfig) withDefaults() (PoolConfig, error) {
	if len(c.Spec.Command) == 0 || c.Spec.Command[0] == "" {
		return c, fmt.Errorf("%w: empty command", ErrInvalidSpec)
	}
	if c.Deadline.IsZero() {
		return c, fmt.Errorf("%w: no deadline", ErrInvalidSpec)
	}
	if c.Concurrency < 0 || c.MaxRSSMB < 0 || c.Liveness.HeartbeatTimeout < 0 {
		return c, fmt.Errorf("%w: negative concurrency, max_rss_mb or heartbeat timeout", ErrInvalidSpec)
	}
	if c.Concurrency == 0 {
		c.Concurrency = 1
	}
	if c.Spec.StopTimeout <= 0 {
		c.Spec.StopTimeout = DefaultStopTimeout
	}
	c.Restart = c.Restart.withDefaults()
	if c.Liveness.StartupGrace <= 0 {
		c.Liveness.StartupGrace = c.Liveness.HeartbeatTimeout
	}
	if c.Liveness.MaxRestarts <= 0 {
		c.Liveness.MaxRestarts = 3
	}
	if c.Liveness.Window <= 0 {
		c.Liveness.Window = 30 * time.Minute
	}
	if c.RSS.WarnFraction <= 0 || c.RSS.WarnFraction > 1 {
		c.RSS.WarnFraction = 0.8
	}
	if c.RSS.MaxKills <= 0 {
		c.RSS.MaxKills = 3
	}
	if c.RSS.Window <= 0 {
		c.RSS.Window = 10 * time.Minute
	}
	if c.CheckInterval <= 0 {
		c.CheckInterval = time.Second
		if hb := c.Liveness.HeartbeatTimeout; hb > 0 && hb/4 < c.CheckInterval {
			c.CheckInterval = hb / 4
		}
	}
	if c.RestartSettle <= 0 {
		c.RestartSettle = time.Second
	}
	if c.RSSSampler == nil {
		c.RSSSampler = DescendantsRSS
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Rand == nil {
		c.Rand = rand.Float64
	}
	if c.Logger == nil {
		c.Logger = c.Spec.Logger
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	c.Spec.Logger = c.Logger
	return c, nil
}
