package testenv

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
)

// LogDumpMarker starts a process log that a test prints when it fails
// ("--- log of replica r1 ---"). The recap that Main prints after a failed
// run skips these logs and repeats the lines a failed test printed just
// before them: its failure messages, which a long log would otherwise bury
// far above the end of the output.
const LogDumpMarker = "--- log of "

// Recap sizes: how many test lines before each log dump are repeated, how
// long a repeated line may be, and how many lines the recap holds at most.
const (
	recapContext  = 6
	recapLineMax  = 400
	recapMaxLines = 40
)

// testLine matches a line a test printed with t.Log or t.Error: indented,
// then "file.go:line: ".
var testLine = regexp.MustCompile(`^(\s*)\S+\.go:\d+: `)

// recapper reads a test binary's standard output as it is written and
// keeps what a recap repeats: every "--- FAIL:" line, and the last test
// lines before each log dump.
type recapper struct {
	recent     []string // test lines since the last log dump, at most recapContext
	recap      []string
	inDump     bool
	dumpIndent int
}

// line takes one line of output.
func (r *recapper) line(s string) {
	indent := len(s) - len(strings.TrimLeft(s, " \t"))
	if r.inDump && indent > r.dumpIndent {
		return // a line of the process log being dumped
	}
	r.inDump = false
	trimmed := strings.TrimSpace(s)
	if strings.HasPrefix(trimmed, "--- FAIL:") {
		r.add(s)
		r.recent = r.recent[:0]
		return
	}
	m := testLine.FindStringSubmatch(s)
	if m == nil {
		return
	}
	if strings.Contains(s, LogDumpMarker) {
		for _, l := range r.recent {
			r.add(l)
		}
		r.recent = r.recent[:0]
		r.inDump, r.dumpIndent = true, len(m[1])
		return
	}
	if len(r.recent) == recapContext {
		r.recent = append(r.recent[:0], r.recent[1:]...)
	}
	r.recent = append(r.recent, s)
}

func (r *recapper) add(s string) {
	if len(s) > recapLineMax {
		s = s[:recapLineMax] + " …"
	}
	r.recap = append(r.recap, s)
}

// write prints the recap to w, if there is anything to repeat.
func (r *recapper) write(w io.Writer) {
	lines := r.recap
	if len(lines) == 0 {
		return
	}
	if len(lines) > recapMaxLines {
		lines = lines[len(lines)-recapMaxLines:]
	}
	fmt.Fprintln(w, "=== recap: failed tests and the lines each printed before its process logs (full output above)")
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
}

// teeStdout replaces os.Stdout with a pipe whose output is copied to the
// real standard output and read by a recapper. The returned function
// restores os.Stdout and, if failed, prints the recap.
func teeStdout() (finish func(failed bool)) {
	real := os.Stdout
	pr, pw, err := os.Pipe()
	if err != nil {
		return func(bool) {}
	}
	os.Stdout = pw
	rec := &recapper{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
		for sc.Scan() {
			_, _ = real.Write(append(sc.Bytes(), '\n'))
			rec.line(sc.Text())
		}
		// A line too long to scan: copy the rest unread.
		_, _ = io.Copy(real, pr)
	}()
	return func(failed bool) {
		os.Stdout = real
		_ = pw.Close()
		<-done
		_ = pr.Close()
		if failed {
			rec.write(real)
		}
	}
}
