package integration

import (
	"testing"
	"time"

	"github.com/regentd/regent/internal/faultproxy"
)

// healthzBound is how soon after a cut /healthz must answer 503: the
// documented bound is two renew intervals after the last renewal sent
// (Timing.ConfirmWindow: 0.8 s here) on both backends; asserted
// generously, one lease TTL plus 2 s, for a busy machine.
const healthzBound = testTTL + 2*time.Second

// A replica cut off from its backend by the fault proxy answers /healthz
// and /readyz 503 within healthzBound of the cut, and 200 again once the
// path heals (on etcd through a new session when the old lease expired).
func TestHealthzCutOff(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		c := newCluster(t, be)
		p := c.proxy()
		r := c.start(replicaOpts{node: "a", backend: be.viaProxy(p.Addr())})
		eventually(t, hangTimeout, "a leads q", func() bool { return r.leads("q") })
		healthy := func() bool { code, _ := r.get("/healthz"); return code == 200 }
		ready := func() bool { code, _ := r.get("/readyz"); return code == 200 }
		eventually(t, hangTimeout, "/healthz 200", healthy)

		cut := time.Now()
		p.SetMode(faultproxy.Blackhole)
		took, ok := poll(15*time.Second, 20*time.Millisecond, func() bool { return !healthy() })
		if !ok {
			t.Fatalf("%s: /healthz still 200 %s after the cut", be.name, took.Round(time.Millisecond))
		}
		t.Logf("%s: /healthz 503 %s after the cut (bound %s)", be.name, took.Round(time.Millisecond), healthzBound)
		if took > healthzBound {
			t.Errorf("%s: /healthz turned 503 only %s after the cut, want within %s", be.name, took.Round(time.Millisecond), healthzBound)
		}
		if ready() {
			t.Errorf("%s: /readyz 200 while /healthz is 503", be.name)
		}
		if code, _ := r.get("/livez"); code != 200 {
			t.Errorf("%s: /livez %d while cut off, want 200 (the process is alive)", be.name, code)
		}
		// /leader stays 200 until the leadership's local deadline (last
		// renewal + TTL - margin): the lease is still trusted, by design.
		eventually(t, testTTL, "/leader 503 after the deadline", func() bool { return !r.leads("q") })
		t.Logf("%s: /leader 503 %s after the cut", be.name, time.Since(cut).Round(time.Millisecond))

		p.SetMode(faultproxy.Pass)
		back := eventually(t, hangTimeout, "/healthz 200 after the heal", healthy)
		t.Logf("%s: /healthz 200 again %s after the heal", be.name, back.Round(time.Millisecond))
		if r.exited() {
			t.Fatalf("%s: replica exited", be.name)
		}
	})
}
