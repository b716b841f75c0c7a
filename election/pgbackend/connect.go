package pgbackend

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/regentd/regent/election"
)

// poolerMessage is the text of the error that refuses a transaction-mode
// pooler.
const poolerMessage = "the connection goes through a transaction-mode pooler (backend pid changed between statements); " +
	"session advisory locks need a direct or session-mode connection: " +
	"point --postgres-url at Postgres or at a session-mode pool"

// minServerVersion is the oldest PostgreSQL accepted (tcp_user_timeout).
const minServerVersion = 120000

// session is one open, checked connection.
type session struct {
	conn *pgx.Conn
	// pid is the server process id, read with pg_backend_pid() (a pooler's
	// BackendKeyData carries its own, fake, pid).
	pid int32
	// version is server_version_num.
	version int
}

// open dials, refuses poolers and standbys, applies the session settings
// and LISTENs. Connecting is bounded by DialTimeout; an unreachable server
// gives an error wrapping election.ErrUnavailable that names host:port.
func (b *Backend) open(ctx context.Context) (*session, error) {
	dctx, cancel := context.WithTimeout(ctx, b.s.DialTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(dctx, b.pgcfg)
	if err != nil {
		return nil, b.unavailable("connect", err)
	}
	sess := &session{conn: conn}
	if err := b.prepare(ctx, sess); err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
		return nil, err
	}
	return sess, nil
}

// unavailable wraps a connection failure in election.ErrUnavailable,
// naming the target and never the password.
func (b *Backend) unavailable(what string, err error) error {
	msg := strings.ReplaceAll(scrub(err.Error(), b.pgcfg.Password), "\n\t", "; ")
	return fmt.Errorf("%w: %s %s: %s", election.ErrUnavailable, what, targets(&b.pgcfg.Config), withHint(msg, err))
}

func (b *Backend) prepare(ctx context.Context, sess *session) error {
	sctx, cancel := context.WithTimeout(ctx, b.s.clientStatementTimeout)
	defer cancel()
	var inRecovery bool
	if err := sess.conn.QueryRow(sctx,
		`SELECT current_setting('server_version_num')::int, pg_is_in_recovery()`,
		pgx.QueryExecModeSimpleProtocol).Scan(&sess.version, &inRecovery); err != nil {
		return b.unavailable("check server", err)
	}
	if inRecovery {
		return fmt.Errorf("%w: %s is a read-only standby (pg_is_in_recovery); point the URL at the primary",
			election.ErrUnavailable, targets(&b.pgcfg.Config))
	}
	if sess.version < minServerVersion {
		return fmt.Errorf("pgbackend: PostgreSQL %d at %s is too old: 12 or newer is required",
			sess.version, targets(&b.pgcfg.Config))
	}
	if err := b.checkPooler(ctx, sess); err != nil {
		return err
	}

	params := [][2]string{
		{"statement_timeout", strconv.FormatInt(b.s.StatementTimeout.Milliseconds(), 10)},
	}
	if sess.version >= 140000 {
		// An idle lock connection must never be ended by the server.
		params = append(params, [2]string{"idle_session_timeout", "0"})
	}
	params = append(params, b.s.keepalive.serverParams()...)
	sql := "SELECT "
	args := make([]any, 0, 2*len(params))
	for i, p := range params {
		if i > 0 {
			sql += ", "
		}
		sql += fmt.Sprintf("set_config($%d, $%d, false)", 2*i+1, 2*i+2)
		args = append(args, p[0], p[1])
	}
	sctx, cancel = context.WithTimeout(ctx, b.s.clientStatementTimeout)
	defer cancel()
	if _, err := sess.conn.Exec(sctx, sql, args...); err != nil {
		return b.unavailable("configure session", err)
	}
	if _, err := sess.conn.Exec(sctx, "LISTEN "+NotifyChannel); err != nil {
		return b.unavailable("listen", err)
	}
	if !b.s.ReadOnly {
		if _, err := sess.conn.Exec(sctx, "LISTEN "+RenewalChannel); err != nil {
			return b.unavailable("listen", err)
		}
	}
	return nil
}

// checkPooler refuses a connection whose statements may run in different
// server sessions, as with a transaction- or statement-mode pooler.
//
// Comparing pg_backend_pid() across statements of one client is not
// enough: an idle pooler hands the same server connection back each time.
// So a second, short-lived client opens a transaction (pinning a server
// connection through a pooler) and the first asks again. Directly, or
// through a session-mode pool, the first client keeps its own server
// session and its pid does not move; through a transaction-mode pooler the
// second client gets the server connection the first one just used, or the
// first one's next statement moves to another (or waits for one).
func (b *Backend) checkPooler(ctx context.Context, sess *session) error {
	pid := func(c *pgx.Conn, timeout time.Duration) (int32, error) {
		sctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		var p int32
		err := c.QueryRow(sctx, `SELECT pg_backend_pid()`, pgx.QueryExecModeSimpleProtocol).Scan(&p)
		return p, err
	}
	refuse := func() error {
		b.log.Error("transaction-mode pooler refused", "target", targets(&b.pgcfg.Config))
		return fmt.Errorf("%w: %s", election.ErrUnsupportedPooler, poolerMessage)
	}
	var first int32
	for i := range 3 {
		p, err := pid(sess.conn, b.s.clientStatementTimeout)
		if err != nil {
			return b.unavailable("check pooler", err)
		}
		if i == 0 {
			first = p
		} else if p != first {
			return refuse()
		}
	}
	sess.pid = first
	if uint32(first) != sess.conn.PgConn().PID() {
		b.log.Info("connection goes through a pooler", "target", targets(&b.pgcfg.Config))
	}

	probeCfg := b.pgcfg.Copy()
	probeCfg.RuntimeParams["application_name"] = probeApplicationName(b.s.Cluster, b.s.Node)
	pctx, cancel := context.WithTimeout(ctx, min(b.s.DialTimeout, 2*time.Second))
	defer cancel()
	probe, err := pgx.ConnectConfig(pctx, probeCfg)
	if err != nil {
		b.log.Debug("pooler probe skipped", "error", scrub(err.Error(), b.pgcfg.Password))
		return nil
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = probe.Close(cctx)
	}()
	if _, err := probe.Exec(pctx, "BEGIN"); err != nil {
		if isStatementPooling(err) {
			return refuse()
		}
		b.log.Debug("pooler probe skipped", "error", scrub(err.Error(), b.pgcfg.Password))
		return nil
	}
	other, err := pid(probe, min(b.s.DialTimeout, 2*time.Second))
	if err != nil {
		b.log.Debug("pooler probe skipped", "error", scrub(err.Error(), b.pgcfg.Password))
		return nil
	}
	if other == first {
		return refuse()
	}
	again, err := pid(sess.conn, b.s.clientStatementTimeout)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || sess.conn.IsClosed() {
			// The statement waited for a server connection that the probe
			// holds: the two clients share server sessions.
			return refuse()
		}
		return b.unavailable("check pooler", err)
	}
	if again != first {
		return refuse()
	}
	_, _ = probe.Exec(pctx, "ROLLBACK")
	return nil
}

// isStatementPooling recognises PgBouncer's refusal of a transaction
// block in statement pooling mode.
func isStatementPooling(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "08P01" && strings.Contains(pgErr.Message, "pooling mode")
}

// applicationName is the application_name of every regent connection.
func applicationName(cluster, node string) string {
	return "regent:" + cluster + ":" + node
}

// probeApplicationName names the short-lived pooler probe connection, so
// that it is never counted as one of the replica's connections.
func probeApplicationName(cluster, node string) string {
	return "regent-probe:" + cluster + ":" + node
}

// isFatal reports whether err ended the session (the connection is closed
// or unusable, or the server became read-only).
func isFatal(conn *pgx.Conn, err error) bool {
	if err == nil {
		return false
	}
	if conn == nil || conn.IsClosed() {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Severity == "FATAL" || pgErr.Severity == "PANIC":
			return true
		case len(pgErr.Code) >= 2 && pgErr.Code[:2] == "08": // connection exception
			return true
		case pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03": // shutdown
			return true
		case pgErr.Code == "25006": // read-only transaction: we are on a standby
			return true
		}
	}
	return false
}
