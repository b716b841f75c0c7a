package worker

import "time"

// State is where one worker slot of a pool is.
type State string

// Worker states.
const (
	// StateStarting: the guard is being started.
	StateStarting State = "starting"
	// StateRunning: the worker runs.
	StateRunning State = "running"
	// StateBackoff: the worker ended and waits to be started again.
	StateBackoff State = "backoff"
	// StateWaiting: no worker may start: the deadline has passed or the
	// pool is fenced.
	StateWaiting State = "waiting"
	// StateStopping: the worker is being stopped.
	StateStopping State = "stopping"
	// StateStopped: the pool has stopped; no worker runs.
	StateStopped State = "stopped"
)

// WorkerStatus is the status of one worker slot.
type WorkerStatus struct {
	Index int   `json:"index"`
	PID   int   `json:"pid,omitempty"`
	State State `json:"state"`
	// Degraded is set after RestartPolicy.MaxCrashes consecutive crashes,
	// until a run lasts RestartPolicy.ResetAfter.
	Degraded bool `json:"degraded,omitempty"`
	// StartedAt is when the current (or last) run started.
	StartedAt time.Time `json:"started_at,omitzero"`
	// Starts counts the runs started; Restarts is Starts less one.
	Starts   int `json:"starts"`
	Restarts int `json:"restarts"`
	// Crashes counts every crash; ConsecutiveCrashes those since the last
	// run that lasted ResetAfter.
	Crashes            int `json:"crashes"`
	ConsecutiveCrashes int `json:"consecutive_crashes"`
	// RSSBytes is the last RSS sample of the worker's tree.
	RSSBytes uint64 `json:"rss_bytes,omitempty"`
	// RSSKills counts RSS kills within RSSPolicy.Window; RSSLoop is set
	// when they are more than RSSPolicy.MaxKills.
	RSSKills int  `json:"rss_kills,omitempty"`
	RSSLoop  bool `json:"rss_loop,omitempty"`
	// WedgeRestarts counts wedge restarts within Liveness.Window; Wedged
	// is set while a silent worker is left running because that budget is
	// spent.
	WedgeRestarts int  `json:"wedge_restarts,omitempty"`
	Wedged        bool `json:"wedged,omitempty"`
	// LastExit is how the last run ended.
	LastExit *ExitStatus `json:"last_exit,omitempty"`
}
