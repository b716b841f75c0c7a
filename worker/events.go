package worker

import "time"

// EventKind names a pool event.
type EventKind string

// Pool events, for metrics and tests.
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
