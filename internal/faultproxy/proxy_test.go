package faultproxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Bounds of the tests: wait is how long something that must happen may
// take on a loaded machine; quiet is how long something that must not
// happen is watched for.
const (
	wait  = 5 * time.Second
	quiet = 300 * time.Millisecond
)

// echo is a loopback echo server that reports what it accepts, reads and
// how each connection ends. At the end of its source a connection is
// half-closed, then closed once its echo is written.
type echo struct {
	ln       net.Listener
	accepted chan net.Conn
	got      chan []byte // every read
	ended    chan error  // the read error that ended a connection
	wg       sync.WaitGroup
}

func startEcho(t *testing.T) *echo {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echo{ln: ln, accepted: make(chan net.Conn, 16), got: make(chan []byte, 1024), ended: make(chan error, 16)}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.accepted <- c
			e.wg.Add(1)
			go e.serve(c)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		for {
			select {
			case c := <-e.accepted:
				_ = c.Close()
				continue
			default:
			}
			break
		}
		e.wg.Wait()
	})
	return e
}

func (e *echo) serve(c net.Conn) {
	defer e.wg.Done()
	defer c.Close()
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			e.got <- append([]byte(nil), buf[:n]...)
			if _, werr := c.Write(buf[:n]); werr != nil {
				e.ended <- werr
				return
			}
		}
		if err != nil {
			e.ended <- err
			return
		}
	}
}

// start starts a proxy in front of e, closed at the end of the test.
func start(t *testing.T, e *echo) *Proxy {
	t.Helper()
	p, err := Start(e.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// dial connects to p and waits until the server has accepted the
// connection (unless the path is held back: then see dialHeld).
func dial(t *testing.T, p *Proxy, e *echo) net.Conn {
	t.Helper()
	c := dialHeld(t, p)
	select {
	case s := <-e.accepted:
		t.Cleanup(func() { _ = s.Close() })
	case <-time.After(wait):
		t.Fatal("the server accepted no connection")
	}
	return c
}

// dialHeld connects to p without waiting for the server.
func dialHeld(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func send(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatalf("write %q: %v", s, err)
	}
}

// expect reads exactly want from c within d.
func expect(t *testing.T, c net.Conn, want string, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

// expectSilence checks that nothing arrives on c for quiet.
func expectSilence(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(quiet))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %q, %v; want nothing", buf[:n], err)
	}
}

// expectGot waits for the server to read want, in one or more reads.
func (e *echo) expectGot(t *testing.T, want string) {
	t.Helper()
	var got []byte
	deadline := time.After(wait)
	for len(got) < len(want) {
		select {
		case b := <-e.got:
			got = append(got, b...)
		case <-deadline:
			t.Fatalf("server read %q, want %q", got, want)
		}
	}
	if string(got) != want {
		t.Fatalf("server read %q, want %q", got, want)
	}
}

// expectNothingGot checks that the server reads nothing for quiet.
func (e *echo) expectNothingGot(t *testing.T) {
	t.Helper()
	select {
	case b := <-e.got:
		t.Fatalf("server read %q through a blackhole", b)
	case <-time.After(quiet):
	}
}

func (e *echo) expectEnded(t *testing.T) error {
	t.Helper()
	select {
	case err := <-e.ended:
		return err
	case <-time.After(wait):
		t.Fatal("the server's connection did not end")
		return nil
	}
}

func TestPass(t *testing.T) {
	e := startEcho(t)
	p := start(t, e)
	c := dial(t, p, e)
	send(t, c, "hello")
	expect(t, c, "hello", wait)
	e.expectGot(t, "hello")
	// A large transfer passes whole and in order.
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10)
	go func() { _, _ = c.Write(big) }()
	got := make([]byte, len(big))
	_ = c.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("1 MiB echo: %v, equal %v", err, bytes.Equal(got, big))
	}
}

// Each blackhole holds back its direction(s) on open connections and
// lets everything through, in order, on Pass.
func TestBlackhole(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mode     Mode
		toServer bool // client-to-server bytes pass while held
	}{
		{"both", Blackhole, false},
		{"to-server", BlackholeToServer, false},
		{"to-client", BlackholeToClient, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startEcho(t)
			p := start(t, e)
			c := dial(t, p, e)
			send(t, c, "a")
			expect(t, c, "a", wait)
			e.expectGot(t, "a")

			p.SetMode(tc.mode)
			send(t, c, "b")
			send(t, c, "c")
			if tc.toServer {
				e.expectGot(t, "bc")
			} else {
				e.expectNothingGot(t)
			}
			expectSilence(t, c)

			p.SetMode(Pass)
			if !tc.toServer {
				e.expectGot(t, "bc")
			}
			expect(t, c, "bc", wait)
		})
	}
}

// A connection opened while the path to the server is held back reaches
// the server only once it opens; the path back alone does not hold it.
func TestBlackholeNewConnection(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mode    Mode
		reaches bool
	}{
		{"both", Blackhole, false},
		{"to-server", BlackholeToServer, false},
		{"to-client", BlackholeToClient, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startEcho(t)
			p := start(t, e)
			p.SetMode(tc.mode)
			var c net.Conn
			if tc.reaches {
				c = dial(t, p, e)
			} else {
				c = dialHeld(t, p)
				select {
				case <-e.accepted:
					t.Fatal("a connection reached the server through a blackhole")
				case <-time.After(quiet):
				}
			}
			send(t, c, "x")
			expectSilence(t, c)
			p.SetMode(Pass)
			if !tc.reaches {
				select {
				case s := <-e.accepted:
					t.Cleanup(func() { _ = s.Close() })
				case <-time.After(wait):
					t.Fatal("the connection did not reach the server after Pass")
				}
			}
			expect(t, c, "x", wait)
		})
	}
}

// The delay is one way in each direction and pipelined: chunks sent
// apart arrive as far apart, each two delays after it was sent, not
// queued behind the delays of the others.
func TestDelay(t *testing.T) {
	const (
		delay  = 150 * time.Millisecond
		chunks = 10
		gap    = 20 * time.Millisecond
	)
	e := startEcho(t)
	p := start(t, e)
	c := dial(t, p, e)
	p.SetDelay(delay)

	sent := make(chan time.Time, chunks)
	go func() {
		for i := range chunks {
			sent <- time.Now()
			if _, err := c.Write([]byte{byte('a' + i)}); err != nil {
				return
			}
			time.Sleep(gap) // the pace of the sender, not a wait for a condition
		}
	}()
	first := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 1)
	for i := range chunks {
		if _, err := io.ReadFull(c, buf); err != nil || buf[0] != byte('a'+i) {
			t.Fatalf("chunk %d: %q, %v", i, buf, err)
		}
		if rtt := time.Since(<-sent); rtt < 2*delay {
			t.Fatalf("chunk %d back after %s, before two delays (%s)", i, rtt, 2*delay)
		}
	}
	// Pipelined, the last is back (chunks-1)·gap + 2·delay = 480ms after
	// the first was sent; delays served one after another would take more
	// than chunks·delay = 1.5s.
	if took := time.Since(first); took > time.Second {
		t.Fatalf("%d chunks took %s: the delays were not pipelined", chunks, took)
	}

	p.SetDelay(0)
	start := time.Now()
	send(t, c, "z")
	expect(t, c, "z", wait)
	if rtt := time.Since(start); rtt >= 2*delay {
		t.Fatalf("round trip %s after SetDelay(0)", rtt)
	}
}

// Reset ends every connection with an RST on both sides; new
// connections pass.
func TestReset(t *testing.T) {
	e := startEcho(t)
	p := start(t, e)
	c := dial(t, p, e)
	send(t, c, "a")
	expect(t, c, "a", wait)

	p.Reset()
	_ = c.SetReadDeadline(time.Now().Add(wait))
	_, err := c.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read after Reset: %v, want a reset", err)
	}
	if err := e.expectEnded(t); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("server read after Reset: %v, want a reset", err)
	}

	c2 := dial(t, p, e)
	send(t, c2, "b")
	expect(t, c2, "b", wait)
}

// CutServerSide ends the server side at once while the client hears
// nothing, even when it writes; Pass resets the client's connection.
func TestCutServerSide(t *testing.T) {
	e := startEcho(t)
	p := start(t, e)
	c := dial(t, p, e)
	send(t, c, "a")
	expect(t, c, "a", wait)
	e.expectGot(t, "a")

	p.CutServerSide()
	if err := e.expectEnded(t); !errors.Is(err, io.EOF) {
		t.Fatalf("server read after the cut: %v, want EOF", err)
	}
	send(t, c, "b")
	expectSilence(t, c)
	e.expectNothingGot(t)

	// New connections wait, unconnected, like the blackhole's.
	c2 := dialHeld(t, p)
	select {
	case <-e.accepted:
		t.Fatal("a new connection reached the server after the cut")
	case <-time.After(quiet):
	}

	p.SetMode(Pass)
	_ = c.SetReadDeadline(time.Now().Add(wait))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("cut client read after Pass: %v, want a reset", err)
	}
	select {
	case s := <-e.accepted:
		t.Cleanup(func() { _ = s.Close() })
	case <-time.After(wait):
		t.Fatal("the waiting connection did not reach the server after Pass")
	}
	send(t, c2, "c")
	expect(t, c2, "c", wait)
}

// An end of stream passes like bytes do: a half-close reaches the
// server, the server's answer and end come back, after the delay.
func TestHalfClose(t *testing.T) {
	for _, d := range []time.Duration{0, 50 * time.Millisecond} {
		e := startEcho(t)
		p := start(t, e)
		p.SetDelay(d)
		c := dial(t, p, e)
		send(t, c, "last words")
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(wait))
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "last words" {
			t.Fatalf("delay %s: read %q, %v; want the echo, then EOF", d, got, err)
		}
		if err := e.expectEnded(t); !errors.Is(err, io.EOF) {
			t.Fatalf("delay %s: server read %v, want EOF", d, err)
		}
	}
}

// The server's close reaches the client.
func TestServerClose(t *testing.T) {
	e := startEcho(t)
	p := start(t, e)
	c := dialHeld(t, p)
	var s net.Conn
	select {
	case s = <-e.accepted:
	case <-time.After(wait):
		t.Fatal("no connection")
	}
	_ = s.Close()
	_ = c.SetReadDeadline(time.Now().Add(wait))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after the server closed: %v, want EOF", err)
	}
}

// Close ends every connection, whatever it waits on (a blackhole, the
// delay line, a cut, the path to the server), and every goroutine
// (TestMain checks for leaks); it is idempotent.
func TestClose(t *testing.T) {
	e := startEcho(t)
	p, err := Start(e.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cut := dial(t, p, e)
	send(t, cut, "a")
	expect(t, cut, "a", wait)
	p.CutServerSide()
	p.SetMode(Pass)
	// reset by Pass; the next ones wait in the delay line, a blackhole, and
	// for the path to the server.
	delayed := dial(t, p, e)
	p.SetDelay(time.Hour)
	send(t, delayed, "b")
	held := dial(t, p, e)
	p.SetMode(Blackhole)
	send(t, held, "c")
	unconnected := dialHeld(t, p)

	done := make(chan struct{})
	go func() { p.Close(); p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("Close did not return")
	}
	for _, c := range []net.Conn{delayed, held, unconnected} {
		_ = c.SetReadDeadline(time.Now().Add(wait))
		if _, err := c.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) || err == nil {
			t.Fatalf("connection still open after Close: %v", err)
		}
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), wait); err == nil {
		t.Fatal("the proxy still accepts after Close")
	}
}

// Bytes held back towards the server are delivered on Pass even when the
// client closed (FIN) or reset (RST) its connection meanwhile, as a
// network delivers what a dead process had sent; then the server side is
// closed. This is the delayed write of a killed worker.
func TestBlackholeDeliversAfterClientClosed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reset bool
	}{{"fin", false}, {"rst", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := startEcho(t)
			p := start(t, e)
			c := dial(t, p, e)
			send(t, c, "a")
			expect(t, c, "a", wait)
			e.expectGot(t, "a")

			p.SetMode(BlackholeToServer)
			send(t, c, "late write")
			if tc.reset {
				reset(c)
			} else {
				_ = c.Close()
			}
			e.expectNothingGot(t)

			p.SetMode(Pass)
			e.expectGot(t, "late write")
			_ = e.expectEnded(t)
		})
	}
}
