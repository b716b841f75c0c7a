package integration

import (
	"bytes"
	"io"
	"os"
	"sync"
	"testing"

	"github.com/regentd/regent/integration/observer"
)

// tailReader reads the observer file incrementally: each call parses only
// what was appended since the last one (a long run writes hundreds of
// thousands of lines, too many to parse again at every poll). A torn last
// line is kept until its end arrives.
type tailReader struct {
	t    testing.TB
	path string

	mu      sync.Mutex
	off     int64
	partial []byte
	lines   []observer.Line
	bad     int
}

func newTailReader(t testing.TB, path string) *tailReader {
	return &tailReader{t: t, path: path}
}

// Lines returns every line read so far, after reading what was appended.
// The returned slice must not be modified.
func (r *tailReader) Lines() []observer.Line {
	r.mu.Lock()
	defer r.mu.Unlock()
	f, err := os.Open(r.path)
	if os.IsNotExist(err) {
		return r.lines
	}
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(r.off, io.SeekStart); err != nil {
		r.t.Fatal(err)
	}
	buf, err := io.ReadAll(f)
	if err != nil {
		r.t.Fatal(err)
	}
	r.off += int64(len(buf))
	data := append(r.partial, buf...)
	end := bytes.LastIndexByte(data, '\n')
	if end < 0 {
		r.partial = data
		return r.lines
	}
	ls, bad, err := observer.Parse(bytes.NewReader(data[:end+1]))
	if err != nil {
		r.t.Fatal(err)
	}
	r.bad += bad
	r.lines = append(r.lines, ls...)
	r.partial = append([]byte(nil), data[end+1:]...)
	return r.lines
}
