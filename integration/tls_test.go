package integration

import (
	"bufio"
	"context"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regentd/regent/internal/testenv"
)

// The three audiences of a deployment with authentication, as
// deploy/etcd/roles.sh and deploy/postgres/roles.sql name them.
const (
	userRunner   = "regent"
	userOperator = "operator"
	userMonitor  = "monitor"
)

// secrets are the passwords of one test's users: random, so that a grep
// of every output for them proves none leaked.
type secrets map[string]string

func newSecrets(users ...string) secrets {
	s := secrets{}
	for _, u := range users {
		s[u] = "pw-" + u + "-" + testenv.RandomHex(8)
	}
	return s
}

// assertNoSecret fails the test if any password occurs in any output.
func (s secrets) assertNoSecret(t *testing.T, what string, out string) {
	t.Helper()
	for u, pw := range s {
		if strings.Contains(out, pw) {
			t.Errorf("%s shows the password of %s", what, u)
		}
	}
}

// oneShot is the result of a one-shot regent command.
// assertOneLineError checks a refused command: exit 1, stderr one line
// containing every part, no stack trace.
func assertOneLineError(t *testing.T, what string, r oneShot, parts ...string) {
	t.Helper()
	msg := strings.TrimRight(r.stderr, "\n")
	t.Logf("%s: exit %d: %s", what, r.code, msg)
	if r.code != 1 {
		t.Errorf("%s: exit %d, want 1 (stdout %q)", what, r.code, r.stdout)
	}
	if strings.Count(msg, "\n") != 0 || msg == "" {
		t.Errorf("%s: want one error line, got:\n%s", what, r.stderr)
	}
	if strings.Contains(r.stderr, "goroutine ") || strings.Contains(r.stderr, "panic") {
		t.Errorf("%s: stack trace:\n%s", what, r.stderr)
	}
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			t.Errorf("%s: error line lacks %q", what, p)
		}
	}
}

// applyEtcdRoles runs the etcdctl lines of deploy/etcd/roles.sh through
// the Go client's Auth API, so that the script the README shows is the
// one tested. It knows the commands the script is kept to.
func applyEtcdRoles(t *testing.T, cli *clientv3.Client, cluster string, pw secrets) {
	t.Helper()
	f, err := os.Open("../deploy/etcd/roles.sh")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "etcdctl ") {
			continue
		}
		n++
		line = strings.ReplaceAll(line, `"/regent/$CLUSTER/`, `/regent/`+cluster+`/`)
		line = strings.ReplaceAll(line, `"`, "")
		f := strings.Fields(line)[1:]
		var err error
		switch {
		case len(f) == 3 && f[0] == "user" && f[1] == "add":
			p, ok := pw[f[2]]
			if !ok {
				t.Fatalf("roles.sh adds user %s, which the test has no password for", f[2])
			}
			_, err = cli.UserAdd(ctx, f[2], p)
		case len(f) == 3 && f[0] == "role" && f[1] == "add":
			_, err = cli.RoleAdd(ctx, f[2])
		case len(f) == 6 && f[0] == "role" && f[1] == "grant-permission" && f[3] == "--prefix=true":
			perm := map[string]clientv3.PermissionType{"read": clientv3.PermissionType(clientv3.PermRead),
				"write": clientv3.PermissionType(clientv3.PermWrite), "readwrite": clientv3.PermissionType(clientv3.PermReadWrite)}
			p, ok := perm[f[4]]
			if !ok {
				t.Fatalf("roles.sh: unknown permission in %q", line)
			}
			_, err = cli.RoleGrantPermission(ctx, f[2], f[5], clientv3.GetPrefixRangeEnd(f[5]), p)
		case len(f) == 4 && f[0] == "user" && f[1] == "grant-role":
			_, err = cli.UserGrantRole(ctx, f[2], f[3])
		case len(f) == 2 && f[0] == "auth" && f[1] == "enable":
			_, err = cli.AuthEnable(ctx)
		default:
			t.Fatalf("roles.sh: the test does not know %q", line)
		}
		if err != nil {
			t.Fatalf("roles.sh: %s: %v", line, err)
		}
	}
	if err := sc.Err(); err != nil || n == 0 {
		t.Fatalf("roles.sh: %d commands, %v", n, err)
	}
}

// regent over an etcd that requires TLS client certificates and
// passwords, as the three users of deploy/etcd/roles.sh: two replicas as
// the runner elect a leader and fail over after a SIGKILL; the monitor's
// status --check works and its step-down is refused; the operator's
// step-down works; a wrong password, an unknown certificate and a missing
// client certificate each give one error line and exit 1; no password
// shows in any output.
func TestTLSEtcd(t *testing.T) {
	certs := testenv.NewCerts(t)
	e := testenv.NewEtcdWith(t, testenv.EtcdOptions{TLS: certs})
	pw := newSecrets("root", userRunner, userOperator, userMonitor)
	tlsArgs := []string{"--backend", "etcd", "--etcd-endpoints", strings.Join(e.Endpoints(), ","),
		"--etcd-ca-file", certs.CAFile, "--etcd-cert-file", certs.ClientCert, "--etcd-key-file", certs.ClientKey,
		"--etcd-dial-timeout", "3s"}
	c := newCluster(t, backend{name: "etcd-tls", args: tlsArgs})
	applyEtcdRoles(t, e.Client(t, "", ""), c.name, pw)
	as := func(user string) ([]string, []string) {
		return append(append([]string{}, tlsArgs...), "--etcd-username", user), []string{"REGENT_ETCD_PASSWORD=" + pw[user]}
	}
	runAs := func(user string, args ...string) oneShot {
		flags, env := as(user)
		return c.runWith(env, append(append(args, "--cluster", c.name), flags...)...)
	}

	runnerFlags, runnerEnv := as(userRunner)
	replicas := map[string]*replica{}
	for _, n := range []string{"a", "b"} {
		replicas[n] = c.start(replicaOpts{node: n, backend: runnerFlags, env: runnerEnv})
	}
	leader, term := c.waitLeaderRunning("q", hangTimeout)
	t.Logf("%s leads q, term %d", leader, term)

	var outputs []string
	st := runAs(userMonitor, "status", "--check")
	outputs = append(outputs, st.stdout, st.stderr)
	if st.code != 0 || !strings.HasPrefix(st.stdout, "REGENT OK") {
		t.Errorf("status --check as monitor: exit %d\n%s%s", st.code, st.stdout, st.stderr)
	}
	st = runAs(userMonitor, "status", "--json")
	outputs = append(outputs, st.stdout, st.stderr)
	if st.code != 0 || !strings.Contains(st.stdout, `"node": "`+leader+`"`) {
		t.Errorf("status --json as monitor: exit %d\n%s%s", st.code, st.stdout, st.stderr)
	}
	// The monitor only reads: a step-down is refused, naming the cause.
	st = runAs(userMonitor, "step-down", "--queue", "q")
	outputs = append(outputs, st.stdout, st.stderr)
	assertOneLineError(t, "step-down as monitor", st, "permission denied")

	// The operator hands the queue over.
	st = runAs(userOperator, "step-down", "--queue", "q")
	outputs = append(outputs, st.stdout, st.stderr)
	if st.code != 0 {
		t.Fatalf("step-down as operator: exit %d\n%s%s", st.code, st.stdout, st.stderr)
	}
	eventually(t, hangTimeout, "q handed over", func() bool {
		n, _ := c.runningOnly("q")
		return n != "" && n != leader
	})
	leader, _ = c.runningOnly("q")
	t.Logf("step-down as operator: %s leads q", leader)

	// Failover after a SIGKILL of the leader.
	replicas[leader].signal(syscall.SIGKILL)
	killed := time.Now()
	eventually(t, hangTimeout, "failover after SIGKILL", func() bool {
		n, _ := c.runningOnly("q")
		return n != "" && n != leader
	})
	t.Logf("failover after SIGKILL of %s: %s", leader, time.Since(killed).Round(time.Millisecond))

	// Refusals: one line, exit 1, nothing secret.
	flags, _ := as(userMonitor)
	wrong := c.runWith([]string{"REGENT_ETCD_PASSWORD=" + pw[userMonitor] + "x"},
		append([]string{"status", "--cluster", c.name}, flags...)...)
	outputs = append(outputs, wrong.stdout, wrong.stderr)
	assertOneLineError(t, "wrong password", wrong, "refused the credentials", `"monitor"`)
	other := replaceArgs(flags, map[string]string{certs.ClientCert: certs.OtherClientCert, certs.ClientKey: certs.OtherClientKey})
	bad := c.runWith([]string{"REGENT_ETCD_PASSWORD=" + pw[userMonitor]}, append([]string{"status", "--cluster", c.name}, other...)...)
	outputs = append(outputs, bad.stdout, bad.stderr)
	assertOneLineError(t, "client certificate of another CA", bad, "refused this client's TLS certificate", "--etcd-cert-file")
	other = replaceArgs(flags, map[string]string{certs.CAFile: certs.OtherCAFile})
	bad = c.runWith([]string{"REGENT_ETCD_PASSWORD=" + pw[userMonitor]}, append([]string{"status", "--cluster", c.name}, other...)...)
	outputs = append(outputs, bad.stdout, bad.stderr)
	assertOneLineError(t, "server certificate of an unknown CA", bad, "does not accept", "--etcd-ca-file")
	other = replaceArgs(flags, map[string]string{certs.ClientCert: certs.ExpiredClientCert, certs.ClientKey: certs.ExpiredClientKey})
	bad = c.runWith([]string{"REGENT_ETCD_PASSWORD=" + pw[userMonitor]}, append([]string{"status", "--cluster", c.name}, other...)...)
	outputs = append(outputs, bad.stdout, bad.stderr)
	assertOneLineError(t, "expired client certificate", bad, "refused this client's TLS certificate", "--etcd-cert-file")
	// The certificate is for 127.0.0.1 and ::1; "localhost" reaches the
	// same server, whose certificate is then for another host.
	byName := strings.ReplaceAll(strings.Join(e.Endpoints(), ","), "127.0.0.1", "localhost")
	other = replaceArgs(flags, map[string]string{strings.Join(e.Endpoints(), ","): byName})
	bad = c.runWith([]string{"REGENT_ETCD_PASSWORD=" + pw[userMonitor]}, append([]string{"status", "--cluster", c.name}, other...)...)
	outputs = append(outputs, bad.stdout, bad.stderr)
	assertOneLineError(t, "server certificate for another host", bad, "does not accept", "localhost")
	r := c.start(replicaOpts{node: "w", backend: flags, env: []string{"REGENT_ETCD_PASSWORD=wrong-" + pw[userRunner]}})
	if code := r.wait(hangTimeout); code != 1 {
		t.Errorf("run with a wrong password: exit %d, want 1", code)
	}
	if !r.log.contains("refused the credentials", `"monitor"`) {
		t.Errorf("run with a wrong password: no error line naming the cause:\n%s", r.log.String())
	}

	for n, rep := range replicas {
		outputs = append(outputs, rep.log.String())
		pw.assertNoSecret(t, "replica "+n+" log", rep.log.String())
	}
	pw.assertNoSecret(t, "the run refused", r.log.String())
	pw.assertNoSecret(t, "the commands' output", strings.Join(outputs, "\n"))
}

// runningOnly returns the one node running workers of queue in the last
// 100 ms, or "" if none or several.
func (c *cluster) runningOnly(queue string) (string, int64) {
	nodes := c.runningNodes(queue, 100*time.Millisecond)
	if len(nodes) != 1 {
		return "", 0
	}
	for n, term := range nodes {
		return n, term
	}
	return "", 0
}

// replaceArgs returns args with each value found in repl replaced.
func replaceArgs(args []string, repl map[string]string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if r, ok := repl[a]; ok {
			a = r
		}
		out[i] = a
	}
	return out
}

// pgExecFile runs a SQL file (several statements, no parameters) on u.
func pgExecFile(t *testing.T, u, path string) {
	t.Helper()
	sql, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("%s: connect: %v", path, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, string(sql)); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// regent over a PostgreSQL that requires SSL and SCRAM (pg_hba hostssl
// scram-sha-256 only), with the roles of deploy/postgres/roles.sql and
// grants.sql: the owner creates the schema; two replicas as regent, over
// sslmode=verify-full, elect a leader and fail over after a SIGKILL; the
// monitor's status --check works and its step-down is refused; the
// operator's step-down works; a wrong password gives one error line and
// exit 1; no password shows in any output.
func TestTLSPostgres(t *testing.T) {
	certs := testenv.NewCerts(t)
	p := testenv.NewPostgresWith(t, testenv.PostgresOptions{SSL: certs})
	pgExecFile(t, p.URL(), "../deploy/postgres/roles.sql")
	pw := newSecrets("regent_owner", "regent", "regent_operator", "regent_monitor")
	for role, secret := range pw {
		pgExecFile(t, p.URL(), writeTemp(t, "ALTER ROLE "+pgx.Identifier{role}.Sanitize()+" PASSWORD '"+secret+"'"))
	}
	su, err := url.Parse(p.URL())
	if err != nil {
		t.Fatal(err)
	}
	roleURL := func(role string) string {
		u := *su
		u.User = url.User(role)
		u.RawQuery = url.Values{"sslmode": {"verify-full"}, "sslrootcert": {certs.CAFile}}.Encode()
		return u.String()
	}
	as := func(role string) ([]string, []string) {
		return []string{"--backend", "postgres", "--postgres-url", roleURL(role)}, []string{"PGPASSWORD=" + pw[role]}
	}
	c := newCluster(t, backend{name: "postgres-tls"})
	runAs := func(role string, args ...string) oneShot {
		flags, env := as(role)
		return c.runWith(env, append(append(args, "--cluster", c.name), flags...)...)
	}
	var outputs []string
	// The schema owner migrates once (status migrates, then reads).
	st := runAs("regent_owner", "status")
	outputs = append(outputs, st.stdout, st.stderr)
	if st.code != 0 {
		t.Fatalf("status as regent_owner (migration): exit %d\n%s%s", st.code, st.stdout, st.stderr)
	}
	withPW := func(role string) string {
		u, _ := url.Parse(roleURL(role))
		u.User = url.UserPassword(role, pw[role])
		return u.String()
	}
	pgExecFile(t, withPW("regent_owner"), "../deploy/postgres/grants.sql")

	runnerFlags, runnerEnv := as("regent")
	replicas := map[string]*replica{}
	for _, n := range []string{"a", "b"} {
		replicas[n] = c.start(replicaOpts{node: n, backend: runnerFlags, env: runnerEnv})
	}
	leader, term := c.waitLeaderRunning("q", hangTimeout)
	t.Logf("%s leads q, term %d", leader, term)

	st = runAs("regent_monitor", "status", "--check")
	outputs = append(outputs, st.stdout, st.stderr)
	if st.code != 0 || !strings.HasPrefix(st.stdout, "REGENT OK") {
		t.Errorf("status --check as regent_monitor: exit %d\n%s%s", st.code, st.stdout, st.stderr)
	}
	st = runAs("regent_monitor", "step-down", "--queue", "q")
	outputs = append(outputs, st.stdout, st.stderr)
	assertOneLineError(t, "step-down as regent_monitor", st, "permission denied", "grants.sql")

	st = runAs("regent_operator", "step-down", "--queue", "q")
	outputs = append(outputs, st.stdout, st.stderr)
	if st.code != 0 {
		t.Fatalf("step-down as regent_operator: exit %d\n%s%s", st.code, st.stdout, st.stderr)
	}
	eventually(t, hangTimeout, "q handed over", func() bool {
		n, _ := c.runningOnly("q")
		return n != "" && n != leader
	})
	leader, _ = c.runningOnly("q")
	t.Logf("step-down as regent_operator: %s leads q", leader)

	replicas[leader].signal(syscall.SIGKILL)
	killed := time.Now()
	eventually(t, hangTimeout, "failover after SIGKILL", func() bool {
		n, _ := c.runningOnly("q")
		return n != "" && n != leader
	})
	t.Logf("failover after SIGKILL of %s: %s", leader, time.Since(killed).Round(time.Millisecond))

	flags, _ := as("regent_monitor")
	wrong := c.runWith([]string{"PGPASSWORD=x" + pw["regent_monitor"]}, append([]string{"status", "--cluster", c.name}, flags...)...)
	outputs = append(outputs, wrong.stdout, wrong.stderr)
	assertOneLineError(t, "wrong password", wrong, "password authentication failed", "PGPASSWORD")
	other := replaceArgs(flags, map[string]string{roleURL("regent_monitor"): strings.Replace(roleURL("regent_monitor"),
		url.QueryEscape(certs.CAFile), url.QueryEscape(certs.OtherCAFile), 1)})
	bad := c.runWith([]string{"PGPASSWORD=" + pw["regent_monitor"]}, append([]string{"status", "--cluster", c.name}, other...)...)
	outputs = append(outputs, bad.stdout, bad.stderr)
	assertOneLineError(t, "server certificate of an unknown CA", bad, "unknown authority", "sslrootcert")
	other = replaceArgs(flags, map[string]string{roleURL("regent_monitor"): strings.Replace(roleURL("regent_monitor"), "127.0.0.1", "localhost", 1)})
	bad = c.runWith([]string{"PGPASSWORD=" + pw["regent_monitor"]}, append([]string{"status", "--cluster", c.name}, other...)...)
	outputs = append(outputs, bad.stdout, bad.stderr)
	assertOneLineError(t, "server certificate for another host", bad, "localhost", "certificate is for another host")

	for n, rep := range replicas {
		pw.assertNoSecret(t, "replica "+n+" log", rep.log.String())
	}
	pw.assertNoSecret(t, "the commands' output", strings.Join(outputs, "\n"))
}

// writeTemp writes content to a file of the test's temp dir.
func writeTemp(t *testing.T, content string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}
