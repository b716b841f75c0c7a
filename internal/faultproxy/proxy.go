// Package faultproxy is the TCP proxy every test puts between a client
// and a real server (etcd, Postgres) to inject network faults on command:
//
//   - Blackhole, BlackholeToServer, BlackholeToClient: bytes in one or both
//     directions are held back, connections stay open, as in a network
//     partition neither side can see; a connection opened while the path
//     to the server is held back does not reach the server (as a SYN would
//     not) until it opens again. SetMode(Pass) lets everything held back
//     through, in order, even on a connection whose client has closed or
//     reset it meanwhile (what a killed process had sent still arrives, as
//     on a real network); the server side is closed after it.
//   - SetDelay: a one-way delay in each direction, pipelined: every chunk
//     waits its own delay from the moment it was read, not behind the
//     delays of the chunks before it, so the proxy models a longer path (a
//     higher round trip) and never a slower link.
//   - CutServerSide: the asymmetric cut. The server side of every
//     connection is closed at once (the server frees the sessions and
//     their locks) while the clients hear nothing, until SetMode(Pass)
//     resets their connections as a healed network would (the server no
//     longer knows them).
//   - Reset: every connection is reset (RST) on both sides at once.
//
// The proxy listens on a loopback port; Close stops it and waits for all
// its goroutines.
package faultproxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is the proxy's fault mode.
type Mode int

// Fault modes.
const (
	// Pass forwards traffic both ways.
	Pass Mode = iota
	// Blackhole holds back traffic in both directions.
	Blackhole
	// BlackholeToServer holds back client-to-server traffic only.
	BlackholeToServer
	// BlackholeToClient holds back server-to-client traffic only.
	BlackholeToClient
)

// dialTimeout bounds the proxy's connection to the server.
const dialTimeout = 5 * time.Second

// queueLen bounds the chunks read but not yet written, per direction of a
// connection; a full queue stops the reading, as a full TCP window would.
const queueLen = 4096

// Proxy is a fault-injecting TCP proxy. Create it with Start.
type Proxy struct {
	ln     net.Listener
	target string
	delay  atomic.Int64 // one-way delay, nanoseconds

	mu     sync.Mutex
	cond   *sync.Cond // broadcast on every change of mode, links or closed
	mode   Mode
	links  map[*link]struct{}
	closed bool
	done   chan struct{} // closed by Close
	wg     sync.WaitGroup
}

// link is one client connection and its connection to the server.
// Fields are guarded by Proxy.mu.
type link struct {
	client net.Conn
	server net.Conn // nil until dialled
	// cut: the server side was closed by CutServerSide; the client side
	// stays open and silent until Pass, Reset or Close.
	cut bool
	// ended counts the directions whose source ended and whose end was
	// passed on (a half-close); at two the link is closed.
	ended int
}

// chunk is one read, due for writing at due: data, or the end of the
// source (err, io.EOF for a clean end).
type chunk struct {
	due  time.Time
	data []byte
	err  error
}

// Start listens on a free loopback port and forwards to target
// (host:port), in Pass mode with no delay.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, links: map[*link]struct{}{}, done: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's listening address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetMode changes the fault mode. Pass lets every held-back byte (and
// connection) through, and resets the client side of connections cut by
// CutServerSide.
func (p *Proxy) SetMode(m Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = m
	if m == Pass {
		for l := range p.links {
			if l.cut {
				reset(l.client)
				delete(p.links, l)
			}
		}
	}
	p.cond.Broadcast()
}

// SetDelay sets the one-way delay of both directions (0: none). Chunks
// already read keep the delay they were read with.
func (p *Proxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

// CutServerSide closes the server side of every open connection at once
// and blackholes their client side: the server frees the sessions (and
// their locks) immediately while the clients hear nothing. It sets the
// mode to Blackhole: new connections wait, unconnected, until
// SetMode(Pass).
func (p *Proxy) CutServerSide() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = Blackhole
	for l := range p.links {
		if l.server != nil {
			l.cut = true
			_ = l.server.Close()
		}
	}
	p.cond.Broadcast()
}

// Reset resets every open connection, on both sides at once (RST, not
// FIN), as a middlebox that drops its state would. The mode is unchanged.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for l := range p.links {
		reset(l.client)
		if l.server != nil {
			reset(l.server)
		}
		delete(p.links, l)
	}
	p.cond.Broadcast()
}

// Close stops the proxy, closes every connection and waits for every
// goroutine of the proxy. It is idempotent.
func (p *Proxy) Close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.done)
		for l := range p.links {
			p.closeLink(l)
		}
		p.cond.Broadcast()
	}
	p.mu.Unlock()
	_ = p.ln.Close()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = c.Close()
			return
		}
		l := &link{client: c}
		p.links[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(l)
	}
}

// serve connects l to the server once the path to it is open, then starts
// a reader and a writer for each direction.
func (p *Proxy) serve(l *link) {
	defer p.wg.Done()
	if !p.waitDial(l) {
		return
	}
	s, err := net.DialTimeout("tcp", p.target, dialTimeout)
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, live := p.links[l]; err != nil || !live || p.closed {
		if s != nil {
			_ = s.Close()
		}
		p.closeLink(l)
		return
	}
	l.server = s
	for _, toServer := range []bool{true, false} {
		src, dst := l.client, l.server
		if !toServer {
			src, dst = dst, src
		}
		ch := make(chan chunk, queueLen)
		p.wg.Add(2)
		go p.read(src, ch)
		go p.write(l, dst, toServer, ch)
	}
}

// waitDial blocks while the path to the server is held back; false once
// the link or the proxy is closed.
func (p *Proxy) waitDial(l *link) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if _, live := p.links[l]; !live || p.closed {
			return false
		}
		if p.mode != Blackhole && p.mode != BlackholeToServer {
			return true
		}
		p.cond.Wait()
	}
}

// read stamps every chunk read from src with its due time and queues it,
// then the end of src; it closes ch when src ends (or is closed).
func (p *Proxy) read(src net.Conn, ch chan<- chunk) {
	defer p.wg.Done()
	defer close(ch)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		due := time.Now().Add(time.Duration(p.delay.Load()))
		if n > 0 {
			ch <- chunk{due: due, data: append([]byte(nil), buf[:n]...)}
		}
		if err != nil {
			ch <- chunk{due: due, err: err}
			return
		}
	}
}

// write writes every queued chunk to dst once it is due and its direction
// passes. When the source ends it passes the end on, held back like the
// bytes before it: a half-close of dst, and the link closes once both
// directions ended. When the link fails (or is cut, reset or closed) it
// closes the link, the client side of a cut one excepted, and drains the
// queue so that the reader can end.
func (p *Proxy) write(l *link, dst net.Conn, toServer bool, ch <-chan chunk) {
	defer p.wg.Done()
	ok := false // the source ended cleanly and its end may pass
	for c := range ch {
		if !p.sleepUntil(c.due) || !p.waitForward(l, toServer) {
			break
		}
		if c.err != nil {
			ok = errors.Is(c.err, io.EOF)
			break
		}
		if _, err := dst.Write(c.data); err != nil {
			break
		}
	}
	p.mu.Lock()
	switch {
	case ok:
		l.ended++
		if tc, half := dst.(*net.TCPConn); half && l.ended < 2 {
			_ = tc.CloseWrite()
		} else {
			p.closeLink(l)
		}
	case !l.cut || p.closed:
		p.closeLink(l)
	}
	p.mu.Unlock()
	for range ch {
	}
}

// sleepUntil waits until t; false if the proxy closed first. It is the
// delay line itself, not a wait for a condition.
func (p *Proxy) sleepUntil(t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-p.done:
		return false
	}
}

// waitForward blocks while traffic in this direction is held back; false
// if the link is cut or closed, or the proxy closed.
func (p *Proxy) waitForward(l *link, toServer bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if _, live := p.links[l]; !live || l.cut || p.closed {
			return false
		}
		switch p.mode {
		case Pass:
			return true
		case BlackholeToServer:
			if !toServer {
				return true
			}
		case BlackholeToClient:
			if toServer {
				return true
			}
		}
		p.cond.Wait()
	}
}

// closeLink closes both sides of l and forgets it. p.mu is held.
func (p *Proxy) closeLink(l *link) {
	_ = l.client.Close()
	if l.server != nil {
		_ = l.server.Close()
	}
	if _, live := p.links[l]; live {
		delete(p.links, l)
		p.cond.Broadcast()
	}
}

// reset closes c with an RST instead of a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
