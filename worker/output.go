package worker

import (
	"bytes"
	"sync"
)

// OutputLine is one line a worker wrote on its stdout or stderr.
type OutputLine struct {
	// Index is the worker's index in its pool.
	Index int
	// PID is the worker's pid (0 if the line came before the guard told it).
	PID int
	// Stream is "stdout" or "stderr".
	Stream string
	// Text is the line, without its newline.
	Text string
}

// maxLineBytes caps one forwarded line; longer output is split.
const maxLineBytes = 16 << 10

// lineWriter splits what is written to it into lines and hands each to
// emit. It is the io.Writer behind a guard's stdout or stderr pipe.
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	emit func(text string)
}

// Write implements io.Writer. It never fails.
func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(string(bytes.TrimRight(w.buf[:i], "\r")))
		w.buf = w.buf[i+1:]
	}
	for len(w.buf) >= maxLineBytes {
		w.emit(string(w.buf[:maxLineBytes]))
		w.buf = w.buf[maxLineBytes:]
	}
	if len(w.buf) == 0 {
		w.buf = nil // let a large buffer go
	}
	return len(p), nil
}

// Flush emits a last unterminated line, if any.
func (w *lineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(string(w.buf))
		w.buf = nil
	}
}
