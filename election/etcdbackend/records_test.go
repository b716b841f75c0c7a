package etcdbackend

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/regentd/regent/election"
)

// hostile lists values a leader, member or step-down key might hold.
var hostile = map[string][]byte{
	"empty":       {},
	"null":        []byte("null"),
	"truncated":   []byte(`{"node":"a","host":`),
	"wrong types": []byte(`{"node":5,"pid":"x","elected_at":true}`),
	"array":       []byte(`[1,2,3]`),
	"bad payload": []byte(`{"node":"a","payload":"%%%not base64"}`),
	"bad node":    []byte(`{"node":"a/b"}`),
	"binary":      {0xff, 0xfe, 0x00, 0x01},
	"deep":        []byte(strings.Repeat("[", 100000)),
	"huge":        []byte(`{"node":"` + strings.Repeat("x", 1<<20) + `"}`),
}

func TestDecodeLeaderHostile(t *testing.T) {
	for name, raw := range hostile {
		t.Run(name, func(t *testing.T) {
			rec := decodeLeader("c", "q", "/regent/c/queues/q/leader", 7, raw)
			if !errors.Is(rec.Err, election.ErrCorruptRecord) {
				t.Fatalf("Err = %v, want ErrCorruptRecord", rec.Err)
			}
			if !strings.Contains(rec.Err.Error(), "/regent/c/queues/q/leader") {
				t.Fatalf("error does not name the key: %v", rec.Err)
			}
			if len(rec.Err.Error()) > 1000 {
				t.Fatalf("error of %d bytes: the value must be cut short", len(rec.Err.Error()))
			}
			if rec.Cluster != "c" || rec.Queue != "q" || rec.Term != 7 {
				t.Fatalf("record %+v lost its key fields", rec)
			}
			if _, err := decodeStepDown("q", "k", raw); !errors.Is(err, election.ErrCorruptRecord) {
				t.Fatalf("step-down of %.40q: %v", raw, err)
			}
			if m := decodeMember("c", "n", "k", raw); !errors.Is(m.Err, election.ErrCorruptRecord) {
				t.Fatalf("member of %.40q: %v", raw, m.Err)
			}
		})
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	raw := mustJSON(leaderValue{Cluster: "c", Queue: "q", Node: "n1", Host: "h", PID: 9, ElectedAt: at, Payload: []byte(`{"x":1}`)})
	rec := decodeLeader("c", "q", "k", 42, []byte(raw))
	if rec.Err != nil || rec.Node != "n1" || rec.Host != "h" || rec.PID != 9 || !rec.ElectedAt.Equal(at) || string(rec.Payload) != `{"x":1}` || rec.Term != 42 {
		t.Fatalf("round trip: %+v", rec)
	}
	if strings.Contains(raw, `"term"`) {
		t.Fatalf("stored record holds a term: %s", raw)
	}
	req, err := decodeStepDown("q", "k", []byte(mustJSON(stepDownValue{To: "n2", Term: 3, RequestedAt: at})))
	if err != nil || req.To != "n2" || req.Term != 3 || req.Queue != "q" || !req.RequestedAt.Equal(at) {
		t.Fatalf("step-down round trip: %+v, %v", req, err)
	}
	if tv, ok := decodeTerm([]byte(mustJSON(termValue{Node: "n", Lease: 5, TTLMillis: 2000}))); !ok || tv.Lease != 5 || tv.TTLMillis != 2000 {
		t.Fatalf("term round trip: %+v, %v", tv, ok)
	}
	if _, ok := decodeTerm([]byte(`{"ttl_ms":-1}`)); ok {
		t.Fatal("a negative TTL decoded")
	}
	if got := decodeReleased([]byte(mustJSON(releasedValue{Term: 11}))); got != 11 {
		t.Fatalf("released round trip: %d", got)
	}
	if got := decodeReleased([]byte("junk")); got != 0 {
		t.Fatalf("released junk: %d", got)
	}
}

func TestKeyspace(t *testing.T) {
	k := keyspace{cluster: "prod"}
	if got := k.leader("q1"); got != "/regent/prod/queues/q1/leader" {
		t.Fatalf("leader key %s", got)
	}
	if q, ok := k.queueOfLeader(k.leader("q-1.x")); !ok || q != "q-1.x" {
		t.Fatalf("queueOfLeader = %q, %v", q, ok)
	}
	for _, key := range []string{k.term("q"), k.stepDown("q"), k.released("q"), "/regent/other/queues/q/leader", k.queues() + "/leader", k.queues() + "a/b/leader"} {
		if q, ok := k.queueOfLeader(key); ok {
			t.Fatalf("queueOfLeader(%s) = %q", key, q)
		}
	}
	if n, ok := k.nodeOfMember(k.member("n1")); !ok || n != "n1" {
		t.Fatalf("nodeOfMember = %q, %v", n, ok)
	}
	if !k.isHeartbeat(k.heartbeat(-1)) || k.isHeartbeat(k.member("n")) {
		t.Fatal("isHeartbeat")
	}
	if got := k.heartbeat(0x1f); got != "/regent/prod/leases/000000000000001f" {
		t.Fatalf("heartbeat key %s", got)
	}
	for _, bad := range []string{"", "a/b", "a b", "tab\t", "nl\n", ".", "..", strings.Repeat("x", maxNameLen+1), "\xff"} {
		if validName("queue", bad) == nil {
			t.Errorf("validName accepted %q", bad)
		}
	}
	for _, good := range []string{"q", "queue-1", "a.b_c", "ünïcode", strings.Repeat("x", maxNameLen)} {
		if err := validName("queue", good); err != nil {
			t.Errorf("validName(%q): %v", good, err)
		}
	}
}
