package pgbackend

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/regentd/regent/election"
)

// The fuzz targets below need no server: they feed the pure decoders the
// column values a row of another version, a hand-edited row or a hostile
// writer could hold. Seeds: testdata/fuzz/<Target>/.

// Column NULL bits of the fuzz targets' nulls argument.
const (
	nullNode = 1 << iota
	nullHost
	nullPID
	nullTerm
	nullPType
	nullPText
	nullRaw
	nullElected
	nullRenewed
)

// checkCorrupt fails t unless err wraps election.ErrCorruptRecord, is one
// line and names what (the quoted queue or node).
func checkCorrupt(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, election.ErrCorruptRecord) {
		t.Fatalf("error %v does not wrap ErrCorruptRecord", err)
	}
	msg := err.Error()
	if strings.ContainsAny(msg, "\n\r") {
		t.Fatalf("multi-line error: %q", msg)
	}
	if !strings.Contains(msg, fmt.Sprintf("%q", what)) {
		t.Fatalf("error %q does not name %q", msg, what)
	}
}

// checkPayload fails t unless got is what decodePayload may return for
// the columns: raw when the jsonb column is NULL, else raw or the jsonb
// text.
func checkPayload(t *testing.T, got []byte, ptype, ptext *string, raw []byte) {
	t.Helper()
	switch {
	case ptype == nil:
		if !bytes.Equal(got, raw) || (got == nil) != (raw == nil) {
			t.Fatalf("payload %q, want the raw column %q", got, raw)
		}
	case ptext == nil:
		if got != nil {
			t.Fatalf("payload %q from a NULL jsonb text", got)
		}
	case !bytes.Equal(got, raw) && string(got) != *ptext:
		t.Fatalf("payload %q is neither the raw %q nor the jsonb %q", got, raw, *ptext)
	}
}

// unixTime is the timestamptz a fuzz argument stands for.
func unixTime(sec int64) time.Time { return time.Unix(sec, sec%1e9).In(time.Local) }

func FuzzLeaderRow(f *testing.F) {
	now := time.Date(2026, 11, 24, 3, 16, 43, 0, time.UTC).Unix()
	obj := `{"version":"v0.1.0","config":{"command":["w"],"concurrency":2}}`
	// A current record; one written before payload_raw existed; NULLs.
	f.Add("default", "host-a-1f2e3d", "host-a", int32(4242), int64(17), "object", obj, []byte(obj), now, now+2, uint16(0), false)
	f.Add("q", "n", "h", int32(1), int64(1), "object", `{"a": 1}`, []byte(nil), now, now, uint16(nullRaw), false)
	f.Add("q", "", "", int32(0), int64(0), "", "", []byte(nil), int64(0), int64(0), uint16(0x1ff), true)
	f.Add("q", "n", "h", int32(-1), int64(-5), "string", `"x"`, []byte(`{"a":1}`), now, now, uint16(0), false)
	f.Add("q", "n", "h", int32(1), int64(2), "object", `{"a": 2}`, []byte(`{"a":1.0}`), int64(253402300800), now, uint16(0), false)
	f.Fuzz(func(t *testing.T, queue, node, host string, pid int32, term int64, ptype, ptext string, raw []byte,
		elected, renewed int64, nulls uint16, noExpiry bool) {
		r := leaderRow{queue: queue, noExpiry: noExpiry}
		if nulls&nullNode == 0 {
			r.node = &node
		}
		if nulls&nullHost == 0 {
			r.host = &host
		}
		if nulls&nullPID == 0 {
			r.pid = &pid
		}
		if nulls&nullTerm == 0 {
			r.term = &term
		}
		if nulls&nullPType == 0 {
			r.ptype = &ptype
		}
		if nulls&nullPText == 0 {
			r.ptext = &ptext
		}
		if nulls&nullRaw == 0 && raw == nil {
			raw = []byte{}
		} else if nulls&nullRaw != 0 {
			raw = nil
		}
		r.raw = raw
		if nulls&nullElected == 0 {
			e := unixTime(elected)
			r.electedAt = &e
		}
		if nulls&nullRenewed == 0 {
			n := unixTime(renewed)
			r.renewedAt = &n
		}
		rec := decodeLeaderRow("c", r)
		if rec.Cluster != "c" || rec.Queue != queue {
			t.Fatalf("record %+v lost its key fields", rec)
		}
		wantBad := r.node == nil || node == "" || r.term == nil || term < 1 || r.electedAt == nil ||
			!encodable(*r.electedAt) || (r.renewedAt != nil && !encodable(*r.renewedAt)) || noExpiry ||
			(r.ptype != nil && ptype != "object")
		if wantBad != (rec.Err != nil) {
			t.Fatalf("Err = %v for a row that is corrupt: %v", rec.Err, wantBad)
		}
		if rec.Err != nil {
			checkCorrupt(t, rec.Err, queue)
			return
		}
		if rec.Node != node || rec.Term != term || !rec.ElectedAt.Equal(*r.electedAt) {
			t.Fatalf("record %+v does not hold the row's values", rec)
		}
		checkPayload(t, rec.Payload, r.ptype, r.ptext, raw)
		if _, err := json.Marshal(rec); err != nil {
			t.Fatalf("decoded record cannot be encoded for status: %v", err)
		}
	})
}

func FuzzMemberRow(f *testing.F) {
	now := time.Date(2026, 11, 24, 3, 16, 43, 0, time.UTC).Unix()
	obj := `{"version":"v0.1.0","queues":{"q":{"role":"leader","term":3}}}`
	f.Add("host-a-1f2e3d", "host-a", "leader", int32(4242), "object", obj, []byte(obj), now, uint16(0))
	f.Add("n", "h", "follower", int32(1), "", "", []byte("opaque, not JSON"), now, uint16(nullPType|nullPText))
	f.Add("", "", "", int32(0), "", "", []byte(nil), int64(0), uint16(0x1ff))
	f.Add("n", "h", "leader", int32(1), "array", `[1]`, []byte(`[1]`), int64(-62135596801), uint16(0))
	f.Fuzz(func(t *testing.T, node, host, role string, pid int32, ptype, ptext string, raw []byte, seen int64, nulls uint16) {
		r := memberRow{node: node}
		if nulls&nullHost == 0 {
			r.host = &host
		}
		if nulls&nullNode == 0 {
			r.role = &role
		}
		if nulls&nullPID == 0 {
			r.pid = &pid
		}
		if nulls&nullPType == 0 {
			r.ptype = &ptype
		}
		if nulls&nullPText == 0 {
			r.ptext = &ptext
		}
		if nulls&nullRaw != 0 {
			raw = nil
		}
		r.raw = raw
		if nulls&nullRenewed == 0 {
			s := unixTime(seen)
			r.lastSeen = &s
		}
		rec := decodeMemberRow("c", r)
		if rec.Cluster != "c" || rec.Node != node {
			t.Fatalf("record %+v lost its key fields", rec)
		}
		wantBad := node == "" || r.role == nil || role == "" || (r.lastSeen != nil && !encodable(*r.lastSeen)) ||
			(r.ptype != nil && ptype != "object")
		if wantBad != (rec.Err != nil) {
			t.Fatalf("Err = %v for a row that is corrupt: %v", rec.Err, wantBad)
		}
		if rec.Err != nil {
			checkCorrupt(t, rec.Err, node)
			return
		}
		if rec.Role != role {
			t.Fatalf("role %q, want %q", rec.Role, role)
		}
		checkPayload(t, rec.Payload, r.ptype, r.ptext, raw)
		if _, err := json.Marshal(rec); err != nil {
			t.Fatalf("decoded record cannot be encoded for status: %v", err)
		}
	})
}

// FuzzPayload checks decodePayload on any columns, and that what
// encodePayload stores reads back exactly.
func FuzzPayload(f *testing.F) {
	f.Add("object", `{"a": 1}`, []byte(`{"a":1.0}`), uint8(0))
	f.Add("object", `{"a": 2}`, []byte(`{"a":1}`), uint8(0))
	f.Add("null", `null`, []byte(nil), uint8(0))
	f.Add("", "", []byte("\x00\xff opaque"), uint8(3))
	f.Add("object", `{"a": "\u0000"}`, []byte(`{"a":"\u0000"}`), uint8(0))
	f.Add("object", `{"n": 1e400}`, []byte(`{"n": 1e400}`), uint8(0))
	f.Fuzz(func(t *testing.T, typ, text string, raw []byte, nulls uint8) {
		var pt, px *string
		if nulls&1 == 0 {
			pt = &typ
		}
		if nulls&2 == 0 {
			px = &text
		}
		got, err := decodePayload(pt, px, raw)
		if pt != nil && typ != "object" {
			if err == nil {
				t.Fatalf("jsonb %q accepted", typ)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("multi-line error: %q", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("decodePayload: %v", err)
		}
		checkPayload(t, got, pt, px, raw)

		// raw as a payload given to encodePayload, read back as stored.
		jsonText, stored := encodePayload(raw)
		var st, sx *string
		if s, ok := jsonText.(string); ok {
			obj := "object"
			st, sx = &obj, &s
		}
		back, err := decodePayload(st, sx, stored)
		if err != nil || !bytes.Equal(back, raw) || (back == nil) != (raw == nil) {
			t.Fatalf("payload %q read back as %q, %v", raw, back, err)
		}
	})
}

func FuzzHistoryRow(f *testing.F) {
	now := time.Date(2026, 11, 24, 3, 16, 43, 0, time.UTC).Unix()
	// Closed rows, an open row of the latest term, a row of an older
	// version without an end, NULLs, an unknown reason.
	f.Add(int64(17), "host-a-1f2e3d", "host-a", now-60, now, election.EndResign, false, false, now, false, uint8(0))
	f.Add(int64(18), "n", "h", now, int64(0), "", true, false, now+10, false, uint8(1<<3|1<<4))
	f.Add(int64(5), "n", "h", now, int64(0), "", false, false, int64(0), false, uint8(1<<3|1<<4|1<<5|1<<6))
	f.Add(int64(0), "", "", int64(0), int64(0), "", true, true, int64(0), true, uint8(0xff))
	f.Add(int64(3), "n", "h", now, now, "crashed", false, false, now, false, uint8(0))
	f.Add(int64(4), "n", "h", int64(253402300800), now, election.EndLost, false, false, now, false, uint8(0))
	f.Add(int64(4), "n", "h", now, now, "", true, false, int64(-62167219201), true, uint8(1<<4))
	f.Fuzz(func(t *testing.T, term int64, node, host string, from, to int64, reason string,
		latest, released bool, expiresAt int64, expired bool, nulls uint8) {
		r := historyRow{term: term, latest: latest}
		ptr := func(bit uint8, s string) *string {
			if nulls&bit != 0 {
				return nil
			}
			return &s
		}
		tm := func(bit uint8, sec int64) *time.Time {
			if nulls&bit != 0 {
				return nil
			}
			v := unixTime(sec)
			return &v
		}
		r.node, r.host = ptr(1<<0, node), ptr(1<<1, host)
		r.from, r.to = tm(1<<2, from), tm(1<<3, to)
		r.reason = ptr(1<<4, reason)
		if nulls&(1<<5) == 0 {
			r.released = &released
		}
		r.expiresAt = tm(1<<6, expiresAt)
		if nulls&(1<<7) == 0 {
			r.expired = &expired
		}
		e, err := r.entry("c", "q")
		if err != nil {
			checkCorrupt(t, err, "q")
			return
		}
		if e.Queue != "q" || e.Term != term || e.Node == "" || e.Node != node {
			t.Fatalf("entry %+v does not hold the row's values", e)
		}
		switch e.EndReason {
		case election.EndResign, election.EndReleased, election.EndExpiry, election.EndLost:
		case "":
			if !latest || r.reason != nil {
				t.Fatalf("entry %+v of a superseded or closed row has no end", e)
			}
		default:
			t.Fatalf("entry %+v has an unknown end reason", e)
		}
		if _, err := json.Marshal(e); err != nil {
			t.Fatalf("decoded entry cannot be encoded for status: %v", err)
		}
	})
}

func FuzzParseNotice(f *testing.F) {
	f.Add(noticePayload("prod", "emails", kindElected))
	f.Add(noticePayload("prod", "", kindMember))
	f.Add(`{"cluster":"prod","kind":"future-kind","extra":[1,2]}`)
	f.Add(`{"cluster":7}`)
	f.Add(`{"cluster":"prod","queue":"q","kind":"stepdown"`)
	f.Fuzz(func(t *testing.T, payload string) {
		n, ok := parseNotice(payload)
		if !ok {
			if n != (notice{}) {
				t.Fatalf("rejected notice gives %+v", n)
			}
			return
		}
		if n.Kind == "" {
			t.Fatalf("notice %+v without a kind", n)
		}
		back, ok := parseNotice(noticePayload(n.Cluster, n.Queue, n.Kind))
		if !ok || back != n {
			t.Fatalf("notice %+v reads back as %+v, %v", n, back, ok)
		}
	})
}

func FuzzParseRenewal(f *testing.F) {
	f.Add(`{"cluster" : "prod", "pid" : 4242, "row" : "73914"}`)
	f.Add(`{"cluster":"prod","pid":0,"row":"1"}`)
	f.Add(`{"cluster":"prod","pid":99999999999,"row":"1"}`)
	f.Add(`{"cluster":"prod","pid":"12","row":7}`)
	f.Add(`{"cluster":"prod","pid":12`)
	f.Fuzz(func(t *testing.T, payload string) {
		n, ok := parseRenewal(payload)
		if !ok {
			if n != (renewal{}) {
				t.Fatalf("rejected renewal notice gives %+v", n)
			}
			return
		}
		if n.PID == 0 || n.Row == "" {
			t.Fatalf("renewal notice %+v without a session or a version", n)
		}
	})
}
