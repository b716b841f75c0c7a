package worker

import "testing"

// Control lines parse without allocating: a guard reads a renewal every
// few seconds for as long as its worker runs.
func TestParseControl(t *testing.T) {
	for _, c := range []struct {
		line string
		want ctlMsg
	}{
		{"deadline 1234567890123456789", ctlMsg{verb: msgDeadline, at: 1234567890123456789}},
		{"deadline 5\r", ctlMsg{verb: msgDeadline, at: 5}},
		{"deadline x", ctlMsg{}},
		{"deadline", ctlMsg{}},
		{"term", ctlMsg{verb: msgTerm}},
		{"kill", ctlMsg{verb: msgKill}},
		{"future 1 2", ctlMsg{}},
		{"", ctlMsg{}},
	} {
		if got := parseControl([]byte(c.line)); got != c.want {
			t.Errorf("parseControl(%q) = %+v, want %+v", c.line, got, c.want)
		}
	}
	line := []byte("deadline 1234567890123456789")
	if n := testing.AllocsPerRun(100, func() { parseControl(line) }); n != 0 {
		t.Errorf("parseControl allocates %.0f times per line", n)
	}
}
