package worker

import "time"

// logEvent logs e once, under its stable name (EventKind.LogName), with
// stable snake_case fields; the logger already carries the queue and term.
func (p *Pool) logEvent(e Event) {
	log := p.log.With("worker", e.Index)
	name := e.Kind.LogName()
	switch e.Kind {
	case EventStarted:
		log.Info(name, "pid", e.PID, "guard_pid", e.GuardPID)
	case EventExited:
		sig := ""
		if e.Exit.Signal != 0 {
			sig = e.Exit.Signal.String()
		}
		args := []any{"pid", e.PID, "code", e.Exit.Code, "signal", sig, "cause", e.Cause,
			"ran_for", e.RanFor.Round(time.Millisecond).String()}
		if e.Crash {
			log.Warn(name, append(args, "consecutive_crashes", e.Consecutive)...)
			return
		}
		log.Info(name, args...)
	case EventStartFailed:
		log.Error(name, "error", e.Err, "consecutive_crashes", e.Consecutive)
	case EventBackoff:
		log.Warn(name, "delay", e.Delay.Round(time.Millisecond).String())
	case EventDegraded:
		log.Error(name, "consecutive_crashes", e.Consecutive, "retry_every", p.conf().Restart.MaxBackoff,
			"detail", "max_crashes consecutive crashes; retrying at the backoff cap")
	case EventRecovered:
		log.Info(name)
	case EventRSSWarning, EventRSSKill:
		log.Warn(name, "pid", e.PID, "rss_mb", e.RSSBytes>>20, "limit_mb", e.LimitBytes>>20)
	case EventRSSLoop:
		log.Error(name, "kills", p.conf().RSS.MaxKills+1, "window", p.conf().RSS.Window, "limit_mb", e.LimitBytes>>20)
	case EventWedgeRestart:
		log.Warn(name, "pid", e.PID)
	case EventWedged:
		log.Error(name, "pid", e.PID, "detail", "restart budget spent; only reported")
	}
}
