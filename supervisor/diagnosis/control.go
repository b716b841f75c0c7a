package diagnosis

import "github.com/regentd/regent/control"

// CodePaused (warning): the queue is paused (regent pause): its leader
// keeps the leadership and runs no worker until regent resume.
const CodePaused = "paused"

// AddControl attaches to each report what the operator records st say of
// its queue: a pause (Report.Paused and a paused warning with its reason).
// Like Diagnose it is pure, so that /status, `regent status` and every
// replica's metrics agree.
func AddControl(reports []Report, st control.State) {
	for i := range reports {
		r := &reports[i]
		p, ok := st.Pauses[r.Queue]
		if !ok {
			continue
		}
		r.Paused = &p
		why := p.Reason
		if why == "" {
			why = "no reason given"
		}
		r.add(Warning, CodePaused, "paused by %s since %s: %s; its leader runs no worker until 'regent resume'",
			p.By, p.Since.UTC().Format("2006-01-02 15:04:05Z"), why)
	}
}
