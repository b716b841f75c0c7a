package worker

import "time"

// EventKind names a pool event.
type EventKind string

// Pool events. Each is logged once by the pool, under the stable name of
// the README's log events (EventKind.LogName), and handed to
// PoolConfig.Events for metrics.
const (
	// EventStarted: a worker started (PID set).
	EventStarted EventKind = "started"
	// EventExited: a worker's tree is dead (Exit set; Crash says whether
	// it counted as a crash).
	EventExited EventKind = "exited"
	// EventStartFailed: a worker could not be started (Err set); counts
	// as a crash.
	EventStartFailed EventKind = "start_failed"
	// EventBackoff: the worker will be started again after Delay.
	EventBackoff EventKind = "backoff"
	// EventDegraded: MaxCrashes consecutive crashes; retried at the cap.
	EventDegraded EventKind = "degraded"
	// EventRecovered: a degraded worker ran for ResetAfter.
	EventRecovered EventKind = "recovered"
	// EventRSSWarning: the tree's RSS passed the warning fraction of the
	// limit (once per run).
	EventRSSWarning EventKind = "rss_warning"
	// EventRSSKill: the tree's RSS passed the limit; the worker is
	// stopped and restarted, not counted as a crash.
	EventRSSKill EventKind = "rss_kill"
	// EventRSSLoop: more than RSSPolicy.MaxKills RSS kills within
	// RSSPolicy.Window.
	EventRSSLoop EventKind = "rss_loop"
	// EventWedgeRestart: the heartbeat went silent; the worker is
	// restarted, not counted as a crash.
	EventWedgeRestart EventKind = "wedge_restart"
	// EventWedged: the heartbeat went silent but the restart budget is
	// spent: reported only.
	EventWedged EventKind = "wedged"
)

// Event is one thing that happened to one worker of a pool.
type Event struct {
	Kind  EventKind
	Index int
	PID   int
	Time  time.Time
	// Exit is set for EventExited.
	Exit ExitStatus
	// Cause is the likely cause of an EventExited, as the worker_exited
	// event names it: ExitCrash, ExitClean, ExitRSSWatchdog, ExitWedged,
	// ExitFenced or ExitStop.
	Cause string
	// RanFor is how long the worker ran (EventExited).
	RanFor time.Duration
	// GuardPID is the guard's pid (EventStarted).
	GuardPID int
	// Consecutive is the number of crashes in a row (EventExited,
	// EventStartFailed, EventDegraded).
	Consecutive int
	// Crash is set for EventExited and EventStartFailed when the end
	// counted as a crash.
	Crash bool
	// Delay is set for EventBackoff.
	Delay time.Duration
	// RSSBytes and LimitBytes are set for the RSS events.
	RSSBytes   uint64
	LimitBytes uint64
	// Err is set for EventStartFailed.
	Err error
}

// Likely causes of a worker's exit (Event.Cause, the worker_exited
// event's cause field).
const (
	// ExitCrash: the worker ended by itself with a failure, or its guard
	// was lost; counted as a crash.
	ExitCrash = "crash"
	// ExitClean: the worker exited 0 by itself.
	ExitClean = "exit"
	// ExitRSSWatchdog: stopped by the RSS watchdog.
	ExitRSSWatchdog = "rss_watchdog"
	// ExitWedged: stopped for a silent heartbeat.
	ExitWedged = "wedged"
	// ExitFenced: killed because leadership was lost or its deadline
	// passed (Fence, the guard's deadline, an orphaned guard, the
	// backstop).
	ExitFenced = "fenced"
	// ExitStop: stopped because the pool was stopped (a graceful stop or
	// step-down).
	ExitStop = "stop"
	// ExitRestart: stopped by Pool.Restart, and started again at once.
	ExitRestart = "restart"
)

// LogName is the stable name under which the pool logs an event of kind k.
func (k EventKind) LogName() string {
	switch k {
	case EventStarted:
		return "worker_spawned"
	case EventExited:
		return "worker_exited"
	case EventStartFailed:
		return "worker_start_failed"
	case EventDegraded:
		return "crash_loop"
	case EventRecovered:
		return "crash_loop_recovered"
	case EventRSSKill:
		return "rss_watchdog_kill"
	case EventWedgeRestart:
		return "wedged_restart"
	}
	return string(k) // backoff, rss_warning, rss_loop, wedged
}
