// Package systemd checks the example unit deploy/regent.service.
package systemd

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// unit reads deploy/regent.service into key → values.
func unit(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open("../regent.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok {
			out[k] = append(out[k], v)
		}
	}
	return out
}

// seconds parses a systemd time span of the forms the unit uses (2s, 30s,
// 1min).
func seconds(t *testing.T, v string) time.Duration {
	t.Helper()
	v = strings.Replace(v, "min", "m", 1)
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("time span %q: %v", v, err)
	}
	return d
}

// A crashed replica is restarted: Go exits 2 on a panic, the code of
// --exclusive's refusal, so exit 2 must not prevent restarts; the start
// limit bounds a replica that is refused at every start instead, and must
// trip with the unit's RestartSec.
func TestUnitRestartsCrashesAndBoundsRefusals(t *testing.T) {
	u := unit(t)
	if v := u["RestartPreventExitStatus"]; len(v) > 0 {
		t.Fatalf("RestartPreventExitStatus=%v: a Go panic exits 2 too, and such a replica would never be restarted", v)
	}
	if got := u["Restart"]; len(got) != 1 || (got[0] != "on-failure" && got[0] != "always") {
		t.Fatalf("Restart=%v, want on-failure", got)
	}
	need := func(k string) string {
		v := u[k]
		if len(v) != 1 {
			t.Fatalf("%s set %d times, want once", k, len(v))
		}
		return v[0]
	}
	restartSec := seconds(t, need("RestartSec"))
	interval := seconds(t, need("StartLimitIntervalSec"))
	burst, err := strconv.Atoi(need("StartLimitBurst"))
	if err != nil || burst < 2 {
		t.Fatalf("StartLimitBurst=%q: want a number of at least 2", need("StartLimitBurst"))
	}
	// A replica refused at once is started every RestartSec (plus its own
	// start-up): burst starts take at least (burst-1) × RestartSec, which
	// must fit in the interval, or the limit never trips.
	if span := time.Duration(burst-1) * restartSec; span >= interval {
		t.Fatalf("%d starts %s apart span %s, not within StartLimitIntervalSec=%s: the limit would never trip", burst, restartSec, span, interval)
	}
	// And with room for a second of start-up per attempt.
	if span := time.Duration(burst-1) * (restartSec + time.Second); span >= interval {
		t.Fatalf("with 1s of start-up per attempt, %d starts span %s, over StartLimitIntervalSec=%s", burst, span, interval)
	}
}

// systemd itself accepts the unit, where systemd-analyze is installed.
func TestUnitVerifies(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	out, err := exec.Command(sa, "verify", "--man=no", "../regent.service").CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		// The unit names paths of the target host (/usr/local/bin/regent,
		// the regent user): their absence here is not the unit's fault.
		if line == "" || strings.Contains(line, "/usr/local/bin/regent") || strings.Contains(line, "regent.env") ||
			strings.Contains(strings.ToLower(line), "user") || strings.Contains(line, "Failed to") {
			continue
		}
		if strings.Contains(line, "regent.service") {
			t.Errorf("systemd-analyze: %s", line)
		}
	}
	_ = err
}
