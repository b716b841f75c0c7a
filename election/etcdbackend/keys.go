package etcdbackend

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxNameLen bounds cluster, queue and node names, which become key parts.
const maxNameLen = 200

// keyspace builds the keys of one cluster. See doc.go for the layout.
type keyspace struct {
	cluster string
}

// root is the prefix of every key of the cluster.
func (k keyspace) root() string { return "/regent/" + k.cluster + "/" }

// queues is the prefix of every per-queue key.
func (k keyspace) queues() string { return k.root() + "queues/" }

// queue is the prefix of the keys of one queue.
func (k keyspace) queue(q string) string { return k.queues() + q + "/" }

// leader is the queue's election key: it exists while somebody leads, is
// attached to the leader's lease, and its CreateRevision is the term.
func (k keyspace) leader(q string) string { return k.queue(q) + "leader" }

// term is written, without a lease, in the same transaction that creates
// the leader key: its ModRevision is the term of the latest leadership and
// its value names that leadership's lease and TTL.
func (k keyspace) term(q string) string { return k.queue(q) + "term" }

// released is written, without a lease, in the same transaction that
// deletes the leader key on a clean resign; its value is the released term.
func (k keyspace) released(q string) string { return k.queue(q) + "released" }

// stepDown holds the pending step-down request of the queue, on its own
// short lease.
func (k keyspace) stepDown(q string) string { return k.stepDowns() + q }

// stepDowns is the prefix of every queue's step-down request, kept apart
// from the queues' keys so that all pending requests are one cheap range.
func (k keyspace) stepDowns() string { return k.root() + "stepdown/" }

// deployment holds the cluster's deployment id, without a lease: written
// once by the first replica that asks, never changed.
func (k keyspace) deployment() string { return k.root() + "deployment" }

// controls is the prefix of the operator records, without a lease.
func (k keyspace) controls() string { return k.root() + "control/" }

// control is the operator record (kind, name).
func (k keyspace) control(kind, name string) string { return k.controls() + kind + "/" + name }

// actions is the prefix of the operator log's entries, without a lease,
// ordered by their CreateRevision.
func (k keyspace) actions() string { return k.root() + "actions/" }

// members is the prefix of the member records.
func (k keyspace) members() string { return k.root() + "members/" }

// member is the member record of one node, attached to its lease.
func (k keyspace) member(node string) string { return k.members() + node }

// leases is the prefix of the lease heartbeat keys.
func (k keyspace) leases() string { return k.root() + "leases/" }

// heartbeat is rewritten by a leading replica after each lease renewal.
func (k keyspace) heartbeat(lease int64) string {
	return fmt.Sprintf("%s%016x", k.leases(), uint64(lease))
}

// queueOfLeader returns the queue named by a leader key of this cluster,
// or false if key is not a leader key.
func (k keyspace) queueOfLeader(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, k.queues())
	if !ok {
		return "", false
	}
	q, ok := strings.CutSuffix(rest, "/leader")
	if !ok || q == "" || strings.Contains(q, "/") {
		return "", false
	}
	return q, true
}

// nodeOfMember returns the node named by a member key of this cluster.
func (k keyspace) nodeOfMember(key string) (string, bool) {
	n, ok := strings.CutPrefix(key, k.members())
	if !ok || n == "" || strings.Contains(n, "/") {
		return "", false
	}
	return n, true
}

// isHeartbeat reports whether key is a lease heartbeat key; heartbeats are
// not record changes.
func (k keyspace) isHeartbeat(key string) bool {
	return strings.HasPrefix(key, k.leases())
}

// validName checks a name that becomes one part of a key: not empty, at
// most maxNameLen bytes, valid UTF-8, no '/' and no control or space
// characters. what names the field in the error ("queue", "node id").
func validName(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("etcd: %s is empty", what)
	case len(s) > maxNameLen:
		return fmt.Errorf("etcd: %s %.20q... is longer than %d bytes", what, s, maxNameLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("etcd: %s %q is not valid UTF-8", what, s)
	case s == "." || s == "..":
		return fmt.Errorf("etcd: %s %q is not allowed", what, s)
	}
	for _, r := range s {
		if r == '/' || unicode.IsControl(r) || unicode.IsSpace(r) {
			return fmt.Errorf("etcd: %s %q contains %q; use letters, digits, '-', '_' or '.'", what, s, r)
		}
	}
	return nil
}
