package election

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const ms = time.Millisecond

func TestTimingDefaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Timing
		want Timing
	}{
		{"zero", Timing{}, Timing{
			LeaseTTL: 10 * time.Second, RenewInterval: 2 * time.Second, FenceMargin: time.Second,
			RetryInterval: 500 * ms, StaleGrace: 500 * ms, StepDownHold: 5 * time.Second,
		}},
		{"short lease: floors", Timing{LeaseTTL: time.Second}, Timing{
			LeaseTTL: time.Second, RenewInterval: 200 * ms, FenceMargin: 200 * ms,
			RetryInterval: 500 * ms, StaleGrace: 100 * ms, StepDownHold: time.Second,
		}},
		{"2s lease", Timing{LeaseTTL: 2 * time.Second}, Timing{
			LeaseTTL: 2 * time.Second, RenewInterval: 400 * ms, FenceMargin: 200 * ms,
			RetryInterval: 500 * ms, StaleGrace: 100 * ms, StepDownHold: 2 * time.Second,
		}},
		{"long lease: caps", Timing{LeaseTTL: time.Minute}, Timing{
			LeaseTTL: time.Minute, RenewInterval: 12 * time.Second, FenceMargin: 6 * time.Second,
			RetryInterval: 500 * ms, StaleGrace: time.Second, StepDownHold: 5 * time.Second,
		}},
		{"set fields kept", Timing{LeaseTTL: 3 * time.Second, RenewInterval: 300 * ms, FenceMargin: 50 * ms, RetryInterval: time.Minute, StaleGrace: 7 * ms, StepDownHold: time.Hour},
			Timing{LeaseTTL: 3 * time.Second, RenewInterval: 300 * ms, FenceMargin: 50 * ms, RetryInterval: time.Minute, StaleGrace: 7 * ms, StepDownHold: time.Hour}},
		{"negative kept for Validate", Timing{RenewInterval: -1, RetryInterval: -1},
			Timing{LeaseTTL: 10 * time.Second, RenewInterval: -1, FenceMargin: time.Second, RetryInterval: -1, StaleGrace: 500 * ms, StepDownHold: 5 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.in.WithDefaults()
			if got != tc.want {
				t.Fatalf("WithDefaults(%+v)\n = %+v\nwant %+v", tc.in, got, tc.want)
			}
			if got.WithDefaults() != got {
				t.Fatalf("WithDefaults is not idempotent: %+v", got.WithDefaults())
			}
		})
	}
}

// Every default, for every lease TTL accepted, passes Validate.
func TestTimingDefaultsValid(t *testing.T) {
	for ttl := MinLeaseTTL; ttl <= 10*time.Minute; ttl += 250 * ms {
		if err := (Timing{LeaseTTL: ttl}).WithDefaults().Validate(); err != nil {
			t.Fatalf("ttl %s: %v", ttl, err)
		}
		if err := (Timing{LeaseTTL: ttl}).WithDefaults().ValidateClockDrift(DefaultClockDriftPPM); err != nil {
			t.Fatalf("ttl %s: %v", ttl, err)
		}
	}
}

func TestTimingValidate(t *testing.T) {
	ok := Timing{LeaseTTL: 2 * time.Second}.WithDefaults()
	for _, tc := range []struct {
		name  string
		mod   func(*Timing)
		field string // "" when valid
		text  string
	}{
		{"defaults", func(*Timing) {}, "", ""},
		{"lease at the floor", func(t *Timing) { t.LeaseTTL = time.Second; t.RenewInterval = 300 * ms; t.FenceMargin = 100 * ms }, "", ""},
		{"lease too short", func(t *Timing) { t.LeaseTTL = 999 * ms }, "lease_ttl", "lease_ttl 999ms is too short: use at least 1s"},
		{"lease zero", func(t *Timing) { t.LeaseTTL = 0 }, "lease_ttl", "too short"},
		{"renew a third", func(t *Timing) { t.LeaseTTL = 3 * time.Second; t.RenewInterval = time.Second }, "", ""},
		{"renew over a third", func(t *Timing) { t.RenewInterval = 667 * ms }, "renew_interval",
			"renew_interval 667ms must be positive and at most a third of lease_ttl 2s, so that two renewals can fail before the lease ends: lower renew_interval or raise lease_ttl"},
		{"renew half (etcd's old limit)", func(t *Timing) { t.RenewInterval = time.Second }, "renew_interval", "at most a third"},
		{"renew negative", func(t *Timing) { t.RenewInterval = -ms }, "renew_interval", "positive"},
		{"margin negative", func(t *Timing) { t.FenceMargin = -ms }, "fence_margin", "positive"},
		{"margin + renew = ttl", func(t *Timing) { t.RenewInterval = 600 * ms; t.FenceMargin = 1400 * ms }, "fence_margin",
			"fence_margin 1.4s must be positive and fence_margin + renew_interval (600ms) below lease_ttl 2s: lower fence_margin or raise lease_ttl"},
		{"margin + renew just under", func(t *Timing) { t.RenewInterval = 600 * ms; t.FenceMargin = 1399 * ms }, "", ""},
		{"retry zero", func(t *Timing) { t.RetryInterval = 0 }, "retry_interval", "retry_interval must be positive"},
		{"retry long", func(t *Timing) { t.RetryInterval = time.Hour }, "", ""},
		{"stale grace negative", func(t *Timing) { t.StaleGrace = -ms }, "stale_grace", "positive"},
		{"step-down hold zero", func(t *Timing) { t.StepDownHold = 0 }, "step_down_hold", "positive"},
		{"step-down hold long", func(t *Timing) { t.StepDownHold = time.Hour }, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tm := ok
			tc.mod(&tm)
			err := tm.Validate()
			checkTimingError(t, err, tc.field, tc.text)
		})
	}
}

func TestTimingValidateClockDrift(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ttl    time.Duration
		margin time.Duration
		ppm    int
		field  string
		text   string
	}{
		{"default", 10 * time.Second, time.Second, DefaultClockDriftPPM, "", ""},
		{"none", 10 * time.Second, ms, 0, "", ""},
		{"exactly covered", 10 * time.Second, 10 * ms, 500, "", ""},
		{"not covered", 10 * time.Second, 9 * ms, 500, "fence_margin",
			"fence_margin 9ms does not cover a clock rate error of 500 ppm on both sides over lease_ttl 10s (needs at least 10ms): raise fence_margin or lower lease_ttl"},
		{"max", 10 * time.Second, 2 * time.Second, MaxClockDriftPPM, "", ""},
		{"over max", 10 * time.Second, 5 * time.Second, MaxClockDriftPPM + 1, "clock_drift_ppm", "clock_drift_ppm 100001: use 0 to 100000 parts per million"},
		{"negative", 10 * time.Second, time.Second, -1, "clock_drift_ppm", "use 0 to 100000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Timing{LeaseTTL: tc.ttl, FenceMargin: tc.margin}.ValidateClockDrift(tc.ppm)
			checkTimingError(t, err, tc.field, tc.text)
		})
	}
	if got := MinFenceMargin(2*time.Second, 500); got != 2*ms {
		t.Fatalf("MinFenceMargin(2s, 500) = %s, want 2ms", got)
	}
}

// checkTimingError checks that err is nil when field is empty, else a
// *TimingError of field whose text is text (or contains it, when text
// is a fragment).
func checkTimingError(t *testing.T, err error, field, text string) {
	t.Helper()
	if field == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var te *TimingError
	if !errors.As(err, &te) {
		t.Fatalf("error %v (%T), want a *TimingError", err, err)
	}
	if te.Field != field {
		t.Fatalf("field %q, want %q (%v)", te.Field, field, err)
	}
	if err.Error() != text && !strings.Contains(err.Error(), text) {
		t.Fatalf("error %q, want %q", err, text)
	}
}
