package worker

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	def := RestartPolicy{}
	noJitter := RestartPolicy{Jitter: -1}
	small := RestartPolicy{InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, MaxCrashes: 3, Jitter: -1}
	tests := []struct {
		name string
		p    RestartPolicy
		n    int
		r    float64
		want time.Duration
	}{
		{"first crash", noJitter, 1, 0, time.Second},
		{"zero n is first", noJitter, 0, 0, time.Second},
		{"second doubles", noJitter, 2, 0, 2 * time.Second},
		{"sixth", noJitter, 6, 0, 32 * time.Second},
		{"seventh capped", noJitter, 7, 0, time.Minute},
		{"far past cap", noJitter, 1000, 0, time.Minute},
		{"default jitter none drawn", def, 1, 0, time.Second},
		{"default jitter half", def, 1, 0.5, 950 * time.Millisecond},
		{"default jitter at most 10%", def, 7, 0.999999, 54*time.Second + 6*time.Microsecond},
		{"jitter never over cap", def, 20, 0, time.Minute},
		{"degraded at max crashes goes to cap", small, 3, 0, time.Second},
		{"before max crashes doubles", small, 2, 0, 200 * time.Millisecond},
		{"r above 1 clamps", RestartPolicy{Jitter: 0.5}, 1, 7, 500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Backoff(tt.p, tt.n, tt.r); got != tt.want {
				t.Errorf("Backoff(n=%d, r=%v) = %s, want %s", tt.n, tt.r, got, tt.want)
			}
		})
	}
}

func TestParseProcStat(t *testing.T) {
	line := "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 98765 1000000 321 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	s, err := parseProcStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	want := procStat{PID: 1234, PPID: 1, PGID: 1234, State: 'S', StartTime: 98765, RSSPages: 321}
	if s != want {
		t.Errorf("got %+v, want %+v", s, want)
	}
	if _, err := parseProcStat([]byte("1 (x) S 1")); err == nil {
		t.Error("short stat parsed")
	}
}

func TestProtocolExit(t *testing.T) {
	for _, es := range []ExitStatus{
		{Code: 0, Cause: CauseExited},
		{Code: -1, Signal: 9, Cause: CauseDeadline},
		{Code: 3, Cause: CauseOrphaned},
	} {
		verb, rest := splitMsg(formatExit(es) + "\n")
		if verb != msgExit {
			t.Fatalf("verb %q", verb)
		}
		got, err := parseExit(rest)
		if err != nil || got != es {
			t.Errorf("round trip %v: got %v, %v", es, got, err)
		}
	}
	if _, err := parseExit("1 2"); err == nil {
		t.Error("short exit parsed")
	}
}

func TestLineWriter(t *testing.T) {
	var got []string
	w := &lineWriter{emit: func(s string) { got = append(got, s) }}
	w.Write([]byte("a\r\nb"))
	w.Write([]byte("c\n\nd"))
	w.Flush()
	want := []string{"a", "bc", "", "d"}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}
