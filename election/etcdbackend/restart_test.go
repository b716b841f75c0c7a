package etcdbackend

import (
	"testing"
	"time"

	"github.com/regentd/regent/internal/testenv"
)

func TestEtcdRestartNoOverlap(t *testing.T) {
	srv := testenv.NewEtcd(t)
	cluster := uniq("c")
	a := open(t, srv.Endpoints(), testOptions(cluster, "a"))
	b := open(t, srv.Endpoints(), testOptions(cluster, "b"))
	la := mustCampaign(t, a, "q", 5*time.Second)
	wb := campaignAsync(ctxT(t, 60*time.Second), b, "q")

	srv.Kill(t)
	srv.Restart(t)
	restarted := time.Now()

	// Whoever leads afterwards, the two leaderships never overlap: b
	// wins only after a's leadership ended and its trust window passed.
	select {
	case r := <-wb:
		if r.err != nil {
			t.Fatalf("b: %v", r.err)
		}
		if isOpen(la.Done()) {
			t.Fatal("b won while a's leadership is still open")
		}
		if r.at.Before(la.ValidUntil()) {
			t.Fatalf("b won %s before a's ValidUntil", la.ValidUntil().Sub(r.at))
		}
		t.Logf("b took over %s after the restart", r.at.Sub(restarted))
	case <-la.Renewed():
		// a kept its leadership through the restart; b still waits.
		if !isOpen(la.Done()) {
			t.Fatal("a renewed after losing")
		}
		select {
		case r := <-wb:
			t.Fatalf("b returned while a leads: %+v", r)
		default:
		}
		t.Logf("a kept its leadership through the restart")
	case <-time.After(3 * testTTL):
		t.Fatal("nobody leads after the restart")
	}
}
