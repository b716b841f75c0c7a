package etcdbackend

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/regentd/regent/election"
)

// The fuzz targets below need no server: they feed the pure decoders the
// values a key might hold when written by another version, truncated or
// by a hostile writer. Seeds: testdata/fuzz/<Target>/.

// maxErrLen bounds a corrupt-record error: the value is quoted cut short.
const maxErrLen = 2000

// checkCorrupt fails t unless err wraps election.ErrCorruptRecord, names
// key, is one line and stays short whatever the value's size.
func checkCorrupt(t *testing.T, err error, key string) {
	t.Helper()
	if !errors.Is(err, election.ErrCorruptRecord) {
		t.Fatalf("error %v does not wrap ErrCorruptRecord", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, key) {
		t.Fatalf("error %q does not name the key %s", msg, key)
	}
	if strings.ContainsAny(msg, "\n\r") {
		t.Fatalf("multi-line error: %q", msg)
	}
	if len(msg) > maxErrLen {
		t.Fatalf("error of %d bytes", len(msg))
	}
}

// reencode marshals v, failing t if a decoded value cannot be written back.
func reencode(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("decoded value %+v cannot be encoded: %v", v, err)
	}
	return b
}

func FuzzDecodeLeader(f *testing.F) {
	at := time.Date(2026, 11, 24, 3, 16, 43, 0, time.UTC)
	f.Add([]byte(mustJSON(leaderValue{Cluster: "prod", Queue: "emails", Node: "host-a-1f2e3d", Host: "host-a", PID: 4242,
		ElectedAt: at, Payload: []byte(`{"version":"v0.1.0","config":{"command":["w"]}}`)})), int64(17))
	// An older shape (no payload, no cluster) and a newer one (extra fields).
	f.Add([]byte(`{"node":"n1","host":"h","pid":9,"elected_at":"2026-01-02T03:04:05Z"}`), int64(1))
	f.Add([]byte(`{"node":"n1","term":5,"lease":{"id":7},"payload":null,"v":2}`), int64(5))
	for _, raw := range hostile {
		if len(raw) < 4096 {
			f.Add(raw, int64(7))
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte, term int64) {
		const key = "/regent/c/queues/q/leader"
		rec := decodeLeader("c", "q", key, term, raw)
		if rec.Cluster != "c" || rec.Queue != "q" || rec.Term != term {
			t.Fatalf("record %+v lost its key fields", rec)
		}
		if rec.Err != nil {
			checkCorrupt(t, rec.Err, key)
			return
		}
		if err := validName("node", rec.Node); err != nil {
			t.Fatalf("record with a bad node accepted: %v", err)
		}
		back := decodeLeader("c", "q", key, term, reencode(t, leaderValue{Cluster: "c", Queue: "q", Node: rec.Node,
			Host: rec.Host, PID: rec.PID, ElectedAt: rec.ElectedAt, Payload: rec.Payload}))
		if back.Err != nil || back.Node != rec.Node || back.Host != rec.Host || back.PID != rec.PID ||
			!back.ElectedAt.Equal(rec.ElectedAt) || string(back.Payload) != string(rec.Payload) {
			t.Fatalf("record %+v reads back as %+v", rec, back)
		}
		reencode(t, rec)
	})
}

func FuzzDecodeMember(f *testing.F) {
	at := time.Date(2026, 11, 24, 3, 16, 43, 0, time.UTC)
	f.Add([]byte(mustJSON(memberValue{Host: "host-b", PID: 977, Role: election.RoleFollower, LastSeen: at,
		Payload: []byte(`{"version":"v0.1.0","queues":{"q":{"role":"follower"}}}`)})))
	f.Add([]byte(`{"host":"h","pid":1,"role":"leader"}`))
	f.Add([]byte(`{"host":"h","pid":1,"role":"observer","zone":"eu-1","last_seen":"2026-01-02T03:04:05.123456789+05:30"}`))
	f.Add([]byte(`{"host":"h","pid":1}`))
	for _, raw := range hostile {
		if len(raw) < 4096 {
			f.Add(raw)
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		const key = "/regent/c/members/n"
		rec := decodeMember("c", "n", key, raw)
		if rec.Cluster != "c" || rec.Node != "n" {
			t.Fatalf("record %+v lost its key fields", rec)
		}
		if rec.Err != nil {
			checkCorrupt(t, rec.Err, key)
			return
		}
		if rec.Role == "" {
			t.Fatalf("record %+v without a role", rec)
		}
		back := decodeMember("c", "n", key, reencode(t, memberValue{Host: rec.Host, PID: rec.PID, Role: rec.Role,
			LastSeen: rec.LastSeen, Payload: rec.Payload}))
		if back.Err != nil || back.Role != rec.Role || back.Host != rec.Host || back.PID != rec.PID ||
			!back.LastSeen.Equal(rec.LastSeen) || string(back.Payload) != string(rec.Payload) {
			t.Fatalf("record %+v reads back as %+v", rec, back)
		}
		reencode(t, rec)
	})
}

func FuzzDecodeStepDown(f *testing.F) {
	at := time.Date(2026, 11, 24, 3, 16, 43, 0, time.UTC)
	f.Add([]byte(mustJSON(stepDownValue{To: "host-b-9a8b7c", Term: 17, RequestedAt: at})))
	f.Add([]byte(mustJSON(stepDownValue{Term: 3, RequestedAt: at})))
	f.Add([]byte(`{"term":0}`))
	f.Add([]byte(`{"term":"17","to":["a"]}`))
	f.Add([]byte(`{"term":9223372036854775807,"to":"a\nb"}`))
	f.Add([]byte(`{"term":1,"requested_at":"10000-01-01T00:00:00Z"}`))
	for _, raw := range hostile {
		if len(raw) < 4096 {
			f.Add(raw)
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		const key = "/regent/c/stepdown/q"
		req, err := decodeStepDown("q", key, raw)
		if err != nil {
			checkCorrupt(t, err, key)
			if req != (election.StepDownRequest{}) {
				t.Fatalf("rejected request gives %+v", req)
			}
			return
		}
		if req.Queue != "q" || req.Term <= 0 {
			t.Fatalf("request %+v: want queue q and a term above 0", req)
		}
		if req.To != "" {
			if err := validName("to", req.To); err != nil {
				t.Fatalf("request to a bad node accepted: %v", err)
			}
		}
		back, err := decodeStepDown("q", key, reencode(t, stepDownValue{To: req.To, Term: req.Term, RequestedAt: req.RequestedAt}))
		if err != nil || back.To != req.To || back.Term != req.Term || !back.RequestedAt.Equal(req.RequestedAt) {
			t.Fatalf("request %+v reads back as %+v, %v", req, back, err)
		}
	})
}

func FuzzDecodeHistory(f *testing.F) {
	at := time.Date(2026, 11, 24, 3, 16, 43, 0, time.UTC)
	f.Add([]byte(mustJSON(historyValue{Node: "host-a-1f2e3d", Host: "host-a", From: at, To: at.Add(time.Hour), EndReason: election.EndResign})), int64(17))
	f.Add([]byte(`{"node":"n","end_reason":"expiry"}`), int64(2))
	f.Add([]byte(`{"node":"n","end_reason":"crashed"}`), int64(2))
	f.Add([]byte(`{"node":"n","from":"2026-01-02T03:04:05Z","to":"2026-01-02T03:04:06Z","end_reason":"lost","cause":"admin"}`), int64(3))
	for _, raw := range hostile {
		if len(raw) < 4096 {
			f.Add(raw, int64(7))
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte, term int64) {
		const key = "/regent/c/history/q/00000000000000000007"
		e, err := decodeHistory("q", key, term, raw)
		if err != nil {
			checkCorrupt(t, err, key)
			return
		}
		if e.Queue != "q" || e.Term != term {
			t.Fatalf("entry %+v lost its key fields", e)
		}
		if err := validName("node", e.Node); err != nil {
			t.Fatalf("entry with a bad node accepted: %v", err)
		}
		back, err := decodeHistory("q", key, term, reencode(t, historyValue{Node: e.Node, Host: e.Host, From: e.From, To: e.To, EndReason: e.EndReason}))
		if err != nil || back.Node != e.Node || back.EndReason != e.EndReason || !back.From.Equal(e.From) || !back.To.Equal(e.To) {
			t.Fatalf("entry %+v reads back as %+v, %v", e, back, err)
		}
		reencode(t, e)
	})
}

// FuzzTermAndReleased feeds a queue's term and released keys to their
// decoders and to what a campaign does with them: the TTL it waits out,
// and the history entry it writes for the ended term, which must be one
// that History reads back.
func FuzzTermAndReleased(f *testing.F) {
	at := time.Date(2026, 11, 24, 3, 16, 43, 0, time.UTC)
	f.Add([]byte(mustJSON(termValue{Node: "host-a", Lease: 0x1f, TTLMillis: 10000, Host: "h", ElectedAt: at})),
		[]byte(mustJSON(releasedValue{Term: 17, Reason: election.EndReleased, At: at})), int64(17))
	// Written before host, elected_at, reason and at existed.
	f.Add([]byte(`{"node":"n","lease":5,"ttl_ms":2000}`), []byte(`{"term":4}`), int64(4))
	f.Add([]byte(`{"node":"n","lease":5,"ttl_ms":0}`), []byte(`{"term":"4"}`), int64(4))
	f.Add([]byte(`{"node":"n","ttl_ms":9223372036854775807}`), []byte(`null`), int64(9))
	f.Add([]byte(`{"node":"a/b","ttl_ms":1000}`), []byte(`{"term":3,"reason":"resign","at":"0000-01-01T00:00:00+01:00"}`), int64(3))
	f.Add([]byte(`{"node":"n","ttl_ms":1000,"elected_at":"9999-12-31T23:59:59-23:00"}`), []byte(`{"term":3,"at":"9999-12-31T23:59:59-23:00"}`), int64(3))
	f.Fuzz(func(t *testing.T, termRaw, releasedRaw []byte, termRev int64) {
		if tv, ok := decodeTerm(termRaw); ok {
			if ttl := time.Duration(tv.TTLMillis) * time.Millisecond; ttl <= 0 || ttl/time.Millisecond != time.Duration(tv.TTLMillis) {
				t.Fatalf("term key TTL %d ms gives a lease of %s", tv.TTLMillis, ttl)
			}
		}
		rv := decodeReleasedValue(releasedRaw)
		if decodeReleased(releasedRaw) != rv.Term {
			t.Fatal("decodeReleased and decodeReleasedValue disagree")
		}
		switch releasedReason(rv) {
		case election.EndResign, election.EndReleased, election.EndExpiry:
		default:
			t.Fatalf("released reason %q", releasedReason(rv))
		}
		c := &campaign{queue: "q"}
		st := snapshot{termRev: termRev, termRaw: termRaw, releasedRaw: releasedRaw}
		v, ok := c.previousEntry(st)
		if !ok {
			return
		}
		if _, err := decodeHistory("q", "k", termRev, []byte(v)); err != nil {
			t.Fatalf("history entry %s written for the ended term cannot be read back: %v", v, err)
		}
	})
}

// FuzzKeys checks that the key parsers accept only keys their builders
// make.
func FuzzKeys(f *testing.F) {
	k := keyspace{cluster: "prod"}
	f.Add(k.leader("emails"), "emails")
	f.Add(k.member("host-a-1f2e3d"), "q")
	f.Add(k.historyKey("q", 17), "q")
	f.Add(k.history("q")+"+0000000000000000017", "q")
	f.Add(k.history("q")+"-0000000000000000017", "q")
	f.Add(k.queues()+"a/b/leader", "a")
	f.Fuzz(func(t *testing.T, key, queue string) {
		if q, ok := k.queueOfLeader(key); ok && k.leader(q) != key {
			t.Fatalf("leader key %q gives queue %q", key, q)
		}
		if n, ok := k.nodeOfMember(key); ok && k.member(n) != key {
			t.Fatalf("member key %q gives node %q", key, n)
		}
		if term, ok := k.termOfHistory(queue, key); ok && (term <= 0 || k.historyKey(queue, term) != key) {
			t.Fatalf("history key %q of queue %q gives term %d", key, queue, term)
		}
	})
}
