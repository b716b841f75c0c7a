package integration

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// delayProxy is a TCP proxy that adds a one-way delay to every chunk in
// each direction, pipelined: a chunk waits its own delay from the moment it
// was read, not behind the delays of the chunks before it, so the proxy
// models a longer network path (a higher round-trip time) and never a
// slower link. (faultproxy's SetLatency sleeps in the copy loop, which
// serialises the delays: a busy connection, such as an etcd client's with
// its watch streams, then falls further and further behind.)
type delayProxy struct {
	ln     net.Listener
	target string
	delay  atomic.Int64 // one-way delay in nanoseconds

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// chunk is one read, due for writing at due.
type chunk struct {
	due  time.Time
	data []byte
}

// startDelayProxy listens on a free loopback port and forwards to target;
// it is closed at the end of the test.
func startDelayProxy(t testing.TB, target string) *delayProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &delayProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's listening address (host:port).
func (p *delayProxy) Addr() string { return p.ln.Addr().String() }

// SetDelay sets the one-way delay of both directions (0: none). Chunks
// already queued keep the delay they were read with.
func (p *delayProxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

// close stops the proxy, closes every connection and waits for every
// goroutine.
func (p *delayProxy) close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	_ = p.ln.Close()
	p.wg.Wait()
}

// track registers c; it returns false (and closes c) once the proxy is
// closed.
func (p *delayProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *delayProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
		_ = c.Close()
	}
}

func (p *delayProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(client) {
			return
		}
		server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			p.untrack(client)
			continue
		}
		if !p.track(server) {
			p.untrack(client)
			return
		}
		// Four goroutines per connection: a reader and a writer for each
		// direction. Each writer closes both sides when its direction
		// ends, which ends the other direction's reader, then writer.
		for _, dir := range [][2]net.Conn{{client, server}, {server, client}} {
			ch := make(chan chunk, 4096)
			p.wg.Add(2)
			go p.read(dir[0], ch)
			go p.write(dir[1], dir[0], ch)
		}
	}
}

// read stamps every chunk read from src with its due time and queues it;
// it closes ch when src ends.
func (p *delayProxy) read(src net.Conn, ch chan<- chunk) {
	defer p.wg.Done()
	defer close(ch)
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			data := append([]byte(nil), buf[:n]...)
			ch <- chunk{due: time.Now().Add(time.Duration(p.delay.Load())), data: data}
		}
		if err != nil {
			return
		}
	}
}

// write writes every queued chunk to dst once it is due, then closes both
// connections of the pair.
func (p *delayProxy) write(dst, src net.Conn, ch <-chan chunk) {
	defer p.wg.Done()
	defer p.untrack(dst, src)
	for c := range ch {
		if d := time.Until(c.due); d > 0 {
			time.Sleep(d) // the delay line itself, not a wait for a condition
		}
		if _, err := dst.Write(c.data); err != nil {
			// Unblock the reader (it may wait on a full queue) and drain.
			p.untrack(dst, src)
			for range ch {
			}
			return
		}
	}
}
