package integration

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regentd/regent/fence"
	"github.com/regentd/regent/internal/testenv"
)

// The fence commands and what status and the metrics make of the fence,
// on a real resource: install is idempotent; the deployment id reaches
// the workers as REGENT_FENCE_OWNER; transfer without --to names this
// deployment; a stale term refused makes stale_write_rejected (warning),
// another deployment's refused claim and a key owned by another
// deployment make foreign_owner (critical), in status --check and in the
// replica's metrics.
func TestFenceCommandsAndStatus(t *testing.T) {
	c := newCluster(t, postgresBackend(t))
	resource := testenv.NewDatabase(t)
	fenceFlag := []string{"--fence-postgres-url", resource}

	out, errOut, code := c.regentCmd(append([]string{"fence", "install"}, fenceFlag...)...)
	if code != 0 || !strings.Contains(out, "installed") {
		t.Fatalf("fence install: exit %d: %s%s", code, out, errOut)
	}
	out, errOut, code = c.regentCmd(append([]string{"fence", "install"}, fenceFlag...)...)
	if code != 0 || !strings.Contains(out, "already") {
		t.Fatalf("fence install again: exit %d: %s%s", code, out, errOut)
	}

	a := c.start(replicaOpts{node: "a", extra: fenceFlag})
	_, term := c.waitLeaderRunning("q", hangTimeout)

	// Transfer without --to gives the key to this deployment; the
	// owner it names is the workers' REGENT_FENCE_OWNER.
	out, errOut, code = c.regentCmd(append([]string{"fence", "transfer", "--key", "q"}, fenceFlag...)...)
	m := regexp.MustCompile(`transferred from nobody to (\S+)`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("fence transfer: exit %d: %s%s", code, out, errOut)
	}
	owner := m[1]
	if !strings.HasPrefix(owner, c.name+"/") {
		t.Fatalf("owner %q is not <cluster>/<deployment id> of cluster %s", owner, c.name)
	}
	eventually(t, hangTimeout, "a worker with its fence token", func() bool {
		for _, pid := range c.workerPIDsAlive("a") {
			env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
			if err != nil {
				continue
			}
			vars := strings.Split(string(env), "\x00")
			if slices.Contains(vars, "REGENT_FENCE_OWNER="+owner) && slices.Contains(vars, "REGENT_FENCE_KEY=q") &&
				slices.Contains(vars, "REGENT_TERM="+strconv.FormatInt(term, 10)) {
				return true
			}
		}
		return false
	})

	status := func() (fenceDoc, string, int) {
		t.Helper()
		out, errOut, code := c.regentCmd(append([]string{"status", "--json"}, fenceFlag...)...)
		var doc struct {
			Queues []struct {
				Fence    *fenceDoc `json:"fence"`
				Problems []struct{ Code, Message string }
			}
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Queues) != 1 || doc.Queues[0].Fence == nil {
			t.Fatalf("status --json: exit %d, %v: %s%s", code, err, out, errOut)
		}
		check, _, checkCode := c.regentCmd(append([]string{"status", "--check"}, fenceFlag...)...)
		return *doc.Queues[0].Fence, check, checkCode
	}
	f, check, code := status()
	if f.Key != "q" || f.Owner != owner || f.Term != 0 || f.At.IsZero() || code != 0 {
		t.Fatalf("after the transfer: fence %+v, check exit %d: %s", f, code, check)
	}

	ctx, cancel := context.WithTimeout(context.Background(), hangTimeout)
	defer cancel()
	claim := func(tok fence.Token) error {
		t.Helper()
		conn, err := pgx.Connect(ctx, resource)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tok.Claim(ctx, tx); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
	if err := claim(fence.Token{Key: "q", Owner: owner, Term: term + 5, Node: "a"}); err != nil {
		t.Fatalf("claim of term %d: %v", term+5, err)
	}
	if err := claim(fence.Token{Key: "q", Owner: owner, Term: term, Node: "old-node"}); !errors.Is(err, fence.ErrStaleTerm) {
		t.Fatalf("stale claim: %v, want ErrStaleTerm", err)
	}
	f, check, code = status()
	if f.Term != term+5 || code != 1 || !strings.Contains(check, "stale_write_rejected") || !strings.Contains(check, "old-node") {
		t.Fatalf("after a stale claim: fence %+v, check exit %d: %s", f, code, check)
	}

	const other = "elsewhere/0123456789abcdef"
	if err := claim(fence.Token{Key: "q", Owner: other, Term: 1, Node: "x"}); !errors.Is(err, fence.ErrForeignOwner) {
		t.Fatalf("foreign claim: %v, want ErrForeignOwner", err)
	}
	_, check, code = status()
	if code != 2 || !strings.Contains(check, "foreign_owner") || !strings.Contains(check, other) {
		t.Fatalf("after another deployment's claim: check exit %d: %s", code, check)
	}
	eventually(t, hangTimeout, "the replica's fence metrics", func() bool {
		return a.metric("regent_fence_foreign_owner", `{queue="q"}`) == 1 &&
			a.metric("regent_fence_stale_writes_rejected", `{queue="q"}`) == 1 &&
			a.metric("regent_fence_term", `{queue="q"}`) == float64(term+5)
	})

	// The key moved to another deployment on purpose: this one is foreign.
	out, errOut, code = c.regentCmd(append([]string{"fence", "transfer", "--key", "q", "--to", other}, fenceFlag...)...)
	if code != 0 || !strings.Contains(out, "from "+owner+" to "+other) {
		t.Fatalf("fence transfer --to: exit %d: %s%s", code, out, errOut)
	}
	f, check, code = status()
	if f.Owner != other || code != 2 || !strings.Contains(check, "owned by "+other) {
		t.Fatalf("after the transfer away: fence %+v, check exit %d: %s", f, code, check)
	}
	c.check()
}

// fenceDoc is the fence object of a queue in status --json.
type fenceDoc struct {
	Key   string    `json:"key"`
	Term  int64     `json:"term"`
	Owner string    `json:"owner"`
	At    time.Time `json:"at"`
}
