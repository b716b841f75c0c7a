package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/regentd/regent/election"
)

// The lease timing's defaults come from election.Timing: what Load fills
// in, what Timing hands the supervisor and the backend, and what the
// flags' help says.
func TestTimingDefaults(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want election.Timing
	}{
		{nil, election.Timing{LeaseTTL: 10 * time.Second, RenewInterval: 2 * time.Second, FenceMargin: time.Second,
			RetryInterval: 500 * time.Millisecond, StaleGrace: 500 * time.Millisecond, StepDownHold: 5 * time.Second}},
		{[]string{"--lease-ttl", "2s"}, election.Timing{LeaseTTL: 2 * time.Second, RenewInterval: 400 * time.Millisecond, FenceMargin: 200 * time.Millisecond,
			RetryInterval: 500 * time.Millisecond, StaleGrace: 100 * time.Millisecond, StepDownHold: 2 * time.Second}},
		{[]string{"--lease-ttl", "30s", "--renew-interval", "1s", "--fence-margin", "50ms", "--retry-interval", "2s"},
			election.Timing{LeaseTTL: 30 * time.Second, RenewInterval: time.Second, FenceMargin: 50 * time.Millisecond,
				RetryInterval: 2 * time.Second, StaleGrace: time.Second, StepDownHold: 5 * time.Second}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cfg, err := Load(newFlags(t, tc.args...), []string{"w"})
			if err != nil {
				t.Fatal(err)
			}
			got := cfg.Timing()
			if got != tc.want {
				t.Fatalf("Timing() = %+v\nwant       %+v", got, tc.want)
			}
			if got.WithDefaults() != got {
				t.Fatalf("Timing() leaves fields for WithDefaults: %+v", got)
			}
			if len(tc.args) == 2 && got != (election.Timing{LeaseTTL: got.LeaseTTL}).WithDefaults() {
				t.Fatalf("config's defaults differ from election's: %+v", got)
			}
		})
	}
	// The help of renew_interval and fence_margin states the defaults.
	for key, want := range map[string]string{
		"renew_interval": "default lease-ttl/5",
		"fence_margin":   "default lease-ttl/10, at least 200ms",
	} {
		if s, _ := Lookup(key); !strings.Contains(s.Help, want) {
			t.Errorf("%s help %q does not say %q", key, s.Help, want)
		}
	}
	for _, ttl := range []time.Duration{time.Second, 2 * time.Second, 10 * time.Second, 7 * time.Minute} {
		if got := election.DefaultRenewInterval(ttl); got != ttl/5 {
			t.Errorf("renew default for %s is %s, help says lease-ttl/5", ttl, got)
		}
		if got := election.DefaultFenceMargin(ttl); got != max(ttl/10, 200*time.Millisecond) {
			t.Errorf("fence margin default for %s is %s, help says lease-ttl/10, at least 200ms", ttl, got)
		}
	}
	for key, want := range map[string]any{
		"lease_ttl":       election.DefaultLeaseTTL,
		"retry_interval":  election.DefaultRetryInterval,
		"clock_drift_ppm": election.DefaultClockDriftPPM,
	} {
		if s, _ := Lookup(key); s.Default != want {
			t.Errorf("%s default %v, election's %v", key, s.Default, want)
		}
	}
	// A config built by hand (the guard's) leaves every default to the
	// backend.
	if got := (&Config{}).Timing(); got != (election.Timing{}) {
		t.Errorf("Timing of an empty config: %+v", got)
	}
}

// The lease timing's validation messages, word for word: the limits are
// election.Timing's, the wording (flags) the command line's.
func TestValidateRunTimingMessages(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		mod  func(*Config)
		want string
	}{
		{"lease too short", []string{"--lease-ttl", "500ms"}, nil,
			"invalid config: lease_ttl 500ms is too short: use at least 1s (--lease-ttl)"},
		{"lease zero", []string{"--lease-ttl", "0s"}, nil,
			"invalid config: lease_ttl 0s is too short: use at least 1s (--lease-ttl)"},
		{"lease too short on postgres", []string{"--lease-ttl", "500ms", "--backend", "postgres", "--postgres-url", "postgres://h/db"}, nil,
			"invalid config: lease_ttl 500ms is too short: use at least 1s (--lease-ttl)"},
		{"etcd whole seconds", []string{"--lease-ttl", "1500ms"}, nil,
			"invalid config: lease_ttl 1.5s: etcd leases are whole seconds, at least 2s (--lease-ttl)"},
		{"etcd whole seconds before renew", []string{"--lease-ttl", "1500ms", "--renew-interval", "1s"}, nil,
			"invalid config: lease_ttl 1.5s: etcd leases are whole seconds, at least 2s (--lease-ttl)"},
		{"postgres sub-second lease", []string{"--lease-ttl", "1500ms", "--backend", "postgres", "--postgres-url", "postgres://h/db"}, nil, ""},
		{"renew", []string{"--renew-interval", "4s"}, nil,
			"invalid config: renew_interval 4s must be positive and at most a third of lease_ttl 10s, so that two renewals can fail before the lease ends: lower --renew-interval or raise --lease-ttl"},
		{"renew negative", []string{"--renew-interval", "-1s"}, nil,
			"invalid config: renew_interval -1s must be positive and at most a third of lease_ttl 10s, so that two renewals can fail before the lease ends: lower --renew-interval or raise --lease-ttl"},
		{"fence", []string{"--fence-margin", "8s"}, nil,
			"invalid config: fence_margin 8s must be positive and fence_margin + renew_interval (2s) below lease_ttl 10s: lower --fence-margin or raise --lease-ttl"},
		{"drift range", []string{"--clock-drift-ppm", "100001"}, nil,
			"invalid config: clock_drift_ppm 100001: use 0 to 100000 parts per million (--clock-drift-ppm)"},
		{"drift margin", []string{"--lease-ttl", "1000s", "--renew-interval", "10s", "--fence-margin", "500ms"}, nil,
			"invalid config: fence_margin 500ms does not cover a clock rate error of 500 ppm on both sides over lease_ttl 16m40s (needs at least 1s): raise --fence-margin or lower --lease-ttl"},
		{"retry zero", []string{"--retry-interval", "0s"}, nil,
			"invalid config: retry_interval must be positive (--retry-interval)"},
		{"retry negative in a file", nil, func(c *Config) { c.RetryInterval = -time.Second },
			"invalid config: retry_interval must be positive (--retry-interval)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load(newFlags(t, tc.args...), []string{"w"})
			if err != nil {
				t.Fatal(err)
			}
			if tc.mod != nil {
				tc.mod(cfg)
			}
			err = cfg.ValidateRun()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error\n %v\nwant\n %s", err, tc.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("%v does not wrap ErrInvalid", err)
			}
		})
	}
}
