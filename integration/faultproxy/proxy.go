// Package faultproxy is a TCP proxy for tests that sits between a client
// and a real server and injects network faults on command: blackholing
// traffic in one or both directions (the connections stay open, bytes are
// silently held back, as in a network partition), and the asymmetric cut,
// where the server side of every connection is closed at once while the
// client hears nothing.
package faultproxy

import (
	"errors"
	"io"
	"net"
	"sync"
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

// Proxy is a fault-injecting TCP proxy. Create it with Start.
type Proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cond  *sync.Cond
	mode  Mode
	conns map[*link]struct{}
	done  bool
	delay time.Duration
	wg    sync.WaitGroup
}

type link struct {
	client, server net.Conn
	serverCut      bool
}

// Start listens on a free loopback port and forwards to target.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[*link]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's listening address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetMode changes the fault mode; held-back bytes flow again on Pass.
func (p *Proxy) SetMode(m Mode) {
	p.mu.Lock()
	p.mode = m
	p.cond.Broadcast()
	p.mu.Unlock()
}

// SetLatency delays every forwarded chunk by d in each direction (0 for
// none), to push a replica's backend round trips near its deadlines.
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// CutServerSide closes the server side of every open connection at once,
// and blackholes their client side: the server frees the sessions (and
// their locks) immediately while the clients hear nothing. New connections
// are blackholed until SetMode(Pass).
func (p *Proxy) CutServerSide() {
	p.mu.Lock()
	p.mode = Blackhole
	for l := range p.conns {
		l.serverCut = true
		_ = l.server.Close()
	}
	p.cond.Broadcast()
	p.mu.Unlock()
}

// DropAll closes both sides of every open connection (a reset).
func (p *Proxy) DropAll() {
	p.mu.Lock()
	for l := range p.conns {
		_ = l.server.Close()
		_ = l.client.Close()
	}
	p.mu.Unlock()
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.done = true
	for l := range p.conns {
		_ = l.server.Close()
		_ = l.client.Close()
	}
	p.cond.Broadcast()
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
		s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			_ = c.Close()
			continue
		}
		l := &link{client: c, server: s}
		p.mu.Lock()
		if p.done {
			p.mu.Unlock()
			_ = c.Close()
			_ = s.Close()
			return
		}
		p.conns[l] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(l, c, s, true)
		go p.pipe(l, s, c, false)
	}
}

// pipe copies src to dst, holding bytes back while the mode says so.
func (p *Proxy) pipe(l *link, src, dst net.Conn, toServer bool) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		cut := l.serverCut
		p.mu.Unlock()
		if cut {
			// Asymmetric cut: keep the client side open and silent until
			// the proxy closes.
			if !toServer {
				p.waitDoneOrPass()
			}
			return
		}
		_ = dst.Close()
		_ = src.Close()
		p.mu.Lock()
		delete(p.conns, l)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitForward(l, toServer) {
				return
			}
			p.mu.Lock()
			d := p.delay
			p.mu.Unlock()
			if d > 0 {
				time.Sleep(d)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return
			}
			return
		}
	}
}

// waitForward blocks while traffic in this direction is held back; it
// returns false if the link is cut or the proxy closed.
func (p *Proxy) waitForward(l *link, toServer bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if p.done || l.serverCut {
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

func (p *Proxy) waitDoneOrPass() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for !p.done {
		p.cond.Wait()
	}
}
