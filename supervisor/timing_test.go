package supervisor

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/election"
)

// New takes its timing defaults and limits from election.Timing.
func TestNewTiming(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    election.Timing
		want  election.Timing // when valid
		field string          // of the *election.TimingError, when not
	}{
		{"defaults", election.Timing{}, election.Timing{}.WithDefaults(), ""},
		{"short lease", election.Timing{LeaseTTL: time.Second, FenceMargin: 100 * time.Millisecond},
			election.Timing{LeaseTTL: time.Second, RenewInterval: 200 * time.Millisecond, FenceMargin: 100 * time.Millisecond,
				RetryInterval: 500 * time.Millisecond, StaleGrace: 100 * time.Millisecond, StepDownHold: time.Second}, ""},
		{"step-down hold set", election.Timing{LeaseTTL: 20 * time.Second, StepDownHold: 10 * time.Second},
			election.Timing{LeaseTTL: 20 * time.Second, StepDownHold: 10 * time.Second}.WithDefaults(), ""},
		{"margin as long as the lease", election.Timing{LeaseTTL: time.Second, FenceMargin: time.Second}, election.Timing{}, "fence_margin"},
		{"lease too short", election.Timing{LeaseTTL: 500 * time.Millisecond}, election.Timing{}, "lease_ttl"},
		{"retry negative", election.Timing{RetryInterval: -time.Second}, election.Timing{}, "retry_interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sup, err := New(Config{
				Identity: election.Identity{Cluster: "c", Node: "self"},
				Timing:   tc.in,
				Queues:   []config.QueueConfig{queueCfg("q", 0)},
				Dial:     func(context.Context) (election.Backend, error) { return newFakeBackend(), nil },
				NewPool:  func(PoolSpec) Pool { return nil },
			})
			if tc.field != "" {
				var te *election.TimingError
				if !errors.As(err, &te) || te.Field != tc.field {
					t.Fatalf("New: %v, want a timing error of %s", err, tc.field)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sup.cfg.Timing != tc.want {
				t.Fatalf("timing %+v\nwant   %+v", sup.cfg.Timing, tc.want)
			}
		})
	}
}
