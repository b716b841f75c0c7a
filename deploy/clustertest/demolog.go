package clustertest

import (
	"bufio"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/regentd/regent/integration/observer"
)

// ParseDemoLog reads the lines that `regent demo-worker` appends,
//
//	queue node term pid unix-nanos
//
// and returns them as observer lines, for observer.Check. A line that
// does not parse (a torn last write) is counted in bad, never fatal.
func ParseDemoLog(r io.Reader) (lines []observer.Line, bad int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 5 {
			bad++
			continue
		}
		term, err1 := strconv.ParseInt(f[2], 10, 64)
		pid, err2 := strconv.Atoi(f[3])
		ns, err3 := strconv.ParseInt(f[4], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			bad++
			continue
		}
		lines = append(lines, observer.Line{Queue: f[0], Node: f[1], Term: term, PID: pid, At: time.Unix(0, ns)})
	}
	return lines, bad, sc.Err()
}

// FirstAfter returns the earliest line of queue whose term is above term;
// ok is false when there is none.
func FirstAfter(lines []observer.Line, queue string, term int64) (first observer.Line, ok bool) {
	for _, l := range lines {
		if l.Queue != queue || l.Term <= term {
			continue
		}
		if !ok || l.At.Before(first.At) {
			first, ok = l, true
		}
	}
	return first, ok
}

// LastOf returns the latest line of queue with exactly term; ok is false
// when there is none.
func LastOf(lines []observer.Line, queue string, term int64) (last observer.Line, ok bool) {
	for _, l := range lines {
		if l.Queue != queue || l.Term != term {
			continue
		}
		if !ok || l.At.After(last.At) {
			last, ok = l, true
		}
	}
	return last, ok
}
