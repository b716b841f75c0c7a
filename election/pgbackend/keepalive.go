package pgbackend

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// keepalive is the TCP keepalive configuration of the lock connection, set
// on both ends: on the client socket (so that a leader on a dead network
// errors out) and on the server session (so that the server frees a dead
// host's advisory locks within bound()).
type keepalive struct {
	idle, interval time.Duration
	count          int
	// userTimeout is TCP_USER_TIMEOUT: how long sent data may stay
	// unacknowledged before the socket is aborted.
	userTimeout time.Duration
}

// keepaliveFor derives the keepalive settings from the lease TTL:
// idle = ⌈TTL/2⌉ s, interval = ⌈TTL/8⌉ s, 4 probes, user timeout = TTL.
// Keepalive times have a granularity of one second.
func keepaliveFor(ttl time.Duration) keepalive {
	return keepalive{
		idle:        ceilSeconds(ttl / 2),
		interval:    ceilSeconds(ttl / 8),
		count:       4,
		userTimeout: ttl,
	}
}

// bound is the longest the server keeps the session of a host that has
// vanished: idle + count × interval when the session is idle, userTimeout
// when the server has data in flight. It is never shorter than the lease
// TTL, so a leader's own deadline (the send time of its last successful
// renewal plus the TTL) always falls before the server frees its lock.
func (k keepalive) bound() time.Duration {
	return max(k.idle+time.Duration(k.count)*k.interval, k.userTimeout)
}

func ceilSeconds(d time.Duration) time.Duration {
	s := (d + time.Second - 1) / time.Second
	return max(s, 1) * time.Second
}

// dial opens a TCP connection with client keepalives and TCP_USER_TIMEOUT
// set; Unix sockets are dialled plainly.
func (k keepalive) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{}
	if network == "tcp" || network == "tcp4" || network == "tcp6" {
		d.KeepAliveConfig = net.KeepAliveConfig{
			Enable:   true,
			Idle:     k.idle,
			Interval: k.interval,
			Count:    k.count,
		}
		ms := int(k.userTimeout / time.Millisecond)
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, ms)
			}); err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("set TCP_USER_TIMEOUT: %w", serr)
			}
			return nil
		}
	}
	return d.DialContext(ctx, network, addr)
}

// serverParams are the session settings that make the server drop a dead
// client within bound(). They are ignored by the server on Unix sockets.
func (k keepalive) serverParams() [][2]string {
	return [][2]string{
		{"tcp_keepalives_idle", strconv.Itoa(int(k.idle / time.Second))},
		{"tcp_keepalives_interval", strconv.Itoa(int(k.interval / time.Second))},
		{"tcp_keepalives_count", strconv.Itoa(k.count)},
		{"tcp_user_timeout", strconv.Itoa(int(k.userTimeout / time.Millisecond))},
	}
}
