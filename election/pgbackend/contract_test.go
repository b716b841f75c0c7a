package pgbackend

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"

	"github.com/regentd/regent/election"
	"github.com/regentd/regent/election/electiontest"
	"github.com/regentd/regent/internal/testenv"
)

// envHolderURL passes the contract database to holder processes.
const envHolderURL = "REGENT_CONTRACT_POSTGRES_URL"

// TestContract runs the shared backend contract suite against a real
// PostgreSQL, in a database of its own.
func TestContract(t *testing.T) {
	electiontest.Run(t, &pgHarness{url: testenv.NewDatabase(t)})
}

// pgHarness adapts the Postgres backend to the contract suite.
type pgHarness struct {
	url string // superuser URL of the contract database
	// replicaURL, when set, is the replicas' URL (another role, SSL);
	// empty: url.
	replicaURL string
}

// TestContractTLS runs the representative cases of the contract against
// a PostgreSQL that requires SSL and SCRAM, as a role that is not a
// superuser (it owns the contract database, so that it may create
// regent's tables).
func TestContractTLS(t *testing.T) {
	certs := testenv.NewCerts(t)
	p := testenv.NewPostgresWith(t, testenv.PostgresOptions{SSL: certs})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, p.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	for _, stmt := range []string{
		`CREATE ROLE regent LOGIN PASSWORD 'regent-secret-1' NOSUPERUSER NOCREATEDB NOCREATEROLE`,
		`CREATE DATABASE contract OWNER regent`,
	} {
		if _, err := admin.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	su, err := url.Parse(p.URL())
	if err != nil {
		t.Fatal(err)
	}
	su.Path = "/contract"
	replica := *su
	replica.User = url.UserPassword("regent", "regent-secret-1")
	replica.RawQuery = url.Values{"sslmode": {"verify-full"}, "sslrootcert": {certs.CAFile}}.Encode()
	electiontest.RunCases(t, &pgHarness{url: su.String(), replicaURL: replica.String()}, electiontest.Representative...)
}

func (h *pgHarness) Name() string { return "postgres" }

func (h *pgHarness) New(t testing.TB, opts election.Options) election.Backend {
	t.Helper()
	u := h.url
	if h.replicaURL != "" {
		u = h.replicaURL
	}
	return openContract(t, Config{URL: u}, opts)
}

// openContract opens a backend closed at the end of the test.
func openContract(t testing.TB, cfg Config, opts election.Options) *Backend {
	t.Helper()
	log := testenv.Logger(t, opts.Node)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := New(ctx, cfg, opts, log)
	if err != nil {
		t.Fatalf("open postgres backend for %s: %v", opts.Node, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Logf("close %s: %v", opts.Node, err)
		}
	})
	return b
}

// exec runs one statement as superuser on the contract database and
// returns the number of rows it affected.
func (h *pgHarness) exec(t testing.TB, sql string, args ...any) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, h.url)
	if err != nil {
		t.Fatalf("admin connection: %v", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tag, err := conn.Exec(ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return tag.RowsAffected()
}

// count runs a count query as superuser on the contract database.
func (h *pgHarness) count(t testing.TB, sql string, args ...any) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, h.url)
	if err != nil {
		t.Fatalf("admin connection: %v", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n int
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func (h *pgHarness) KillSession(t testing.TB, b election.Backend) {
	t.Helper()
	pid := b.(*Backend).LockPID()
	if pid == 0 {
		t.Fatal("kill session: the backend has no lock connection")
	}
	if n := h.count(t, `SELECT count(*) FROM pg_terminate_backend($1) AS ok WHERE ok`, pid); n != 1 {
		t.Fatalf("pg_terminate_backend(%d) did not terminate it", pid)
	}
}

func (h *pgHarness) CorruptLeader(t testing.TB, cluster, queue string) {
	t.Helper()
	// A payload of the wrong shape: the backend stores objects only.
	if n := h.exec(t, `UPDATE regent_leaders SET payload = '[1, "two"]'::jsonb WHERE cluster = $1 AND queue = $2`,
		cluster, queue); n != 1 {
		t.Fatalf("corrupt leader of %s/%s: %d rows", cluster, queue, n)
	}
}

func (h *pgHarness) Connections(t testing.TB, cluster, node string) int {
	t.Helper()
	return h.count(t, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`,
		"regent:"+cluster+":"+node)
}

func (h *pgHarness) MaxConnections() int { return 2 }

func (h *pgHarness) HolderEnv(t testing.TB) []string {
	return []string{envHolderURL + "=" + h.url}
}

// openHolder opens the backend of a holder process (see HolderEnv).
func openHolder(ctx context.Context, opts election.Options, log hclog.Logger) (election.Backend, error) {
	return New(ctx, Config{URL: os.Getenv(envHolderURL)}, opts, log)
}

// contractOptions returns the suite's timings for a node of a fresh
// cluster.
func contractOptions(node string) election.Options {
	return election.Options{
		Identity: election.Identity{
			Cluster: "pooler-" + strconv.FormatUint(rand.Uint64(), 36),
			Node:    node,
			Host:    "host-" + node,
			PID:     os.Getpid(),
		},
		Timing: election.Timing{LeaseTTL: electiontest.LeaseTTL, RenewInterval: electiontest.RenewInterval, RetryInterval: electiontest.RetryInterval},
	}
}

// TestTransactionPoolerRefused: through a transaction-mode PgBouncer,
// session advisory locks do not hold, so New must refuse with a message
// that says what to use instead.
func TestTransactionPoolerRefused(t *testing.T) {
	url := testenv.PgBouncer(t, testenv.NewDatabase(t), testenv.PoolTransaction)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := New(ctx, Config{URL: url}, contractOptions("a"), testenv.Logger(t, "a"))
	if err == nil {
		_ = b.Close(ctx)
		t.Fatal("New accepted a transaction-mode pooler")
	}
	if !errors.Is(err, election.ErrUnsupportedPooler) {
		t.Fatalf("New through a transaction-mode pooler: %v, want ErrUnsupportedPooler", err)
	}
	msg := strings.ToLower(err.Error())
	if !strings.Contains(msg, "direct") || !strings.Contains(msg, "session") {
		t.Errorf("error %q does not tell to use a direct or session-mode connection", err)
	}
}

// TestSessionPoolerWorks: a session-mode PgBouncer keeps one server session
// per client, so the backend works through it.
func TestSessionPoolerWorks(t *testing.T) {
	url := testenv.PgBouncer(t, testenv.NewDatabase(t), testenv.PoolSession)
	opts := contractOptions("a")
	a := openContract(t, Config{URL: url}, opts)
	opts.Node = "b"
	b := openContract(t, Config{URL: url}, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	l, err := a.Campaign(ctx, "q", []byte(`{"via":"pgbouncer"}`))
	if err != nil {
		t.Fatalf("campaign through a session-mode pooler: %v", err)
	}
	rec, err := b.Leader(ctx, "q")
	if err != nil || rec.Node != "a" || rec.Term != l.Term() {
		t.Fatalf("leader through a session-mode pooler: %+v, %v", rec, err)
	}
	// Handover through the pooler: b waits, a resigns, b wins.
	var bErr error
	bDone := make(chan struct{})
	go func() {
		defer close(bDone)
		_, bErr = b.Campaign(ctx, "q", []byte(`{"via":"pgbouncer"}`))
	}()
	defer func() {
		cancel()
		<-bDone
	}()
	if err := l.Resign(ctx); err != nil {
		t.Fatalf("resign: %v", err)
	}
	select {
	case <-bDone:
		if bErr != nil {
			t.Fatalf("campaign of b: %v", bErr)
		}
	case <-time.After(electiontest.LeaseTTL):
		t.Fatal("b did not win within the lease TTL after a resigned")
	}
}
