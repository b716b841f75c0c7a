package fence_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/regentd/regent/fence"
)

// FuzzDecodeRow: DecodeRow never panics, refuses with ErrInvalidRecord,
// and what it accepts is valid and survives a JSON round trip.
func FuzzDecodeRow(f *testing.F) {
	for _, s := range []string{
		`{"key":"emails","term":9,"owner":"prod","owner_since":"2026-03-01T10:00:00.123456Z","at":"2026-03-02T11:00:00Z"}`,
		`{"key":"k","term":0,"owner":"o","owner_since":"2026-03-01T10:00:00+02:00","at":"2026-03-01T10:00:00-05:30","extra":[1,2]}`,
		`{"key":"k","term":9223372036854775807,"owner":"ü","owner_since":"0001-01-01T00:00:00Z","at":"9999-12-31T23:59:59.999999999Z"}`,
		`{"key":"","term":1,"owner":"o","owner_since":"2026-03-01T10:00:00Z","at":"2026-03-01T10:00:00Z"}`,
		`{"key":"k","term":-1,"owner":"o","owner_since":"2026-03-01T10:00:00Z","at":"2026-03-01T10:00:00Z"}`,
		`{"key":"k","term":1e3,"owner":"o"}`,
		`{"key":"k","term":1,"owner":null,"owner_since":"x","at":"2026-03-01T10:00:00Z"}`,
		`null`, `[]`, `{}`, `{"key":`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := fence.DecodeRow(b)
		if err != nil {
			if !errors.Is(err, fence.ErrInvalidRecord) {
				t.Fatalf("error without ErrInvalidRecord: %v", err)
			}
			return
		}
		if r.Key == "" || r.Owner == "" || r.Term < 0 {
			t.Fatalf("accepted an invalid row: %+v", r)
		}
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("marshal %+v: %v", r, err)
		}
		r2, err := fence.DecodeRow(out)
		if err != nil {
			t.Fatalf("decode of %s: %v", out, err)
		}
		if r2.Key != r.Key || r2.Term != r.Term || r2.Owner != r.Owner ||
			!r2.OwnerSince.Equal(r.OwnerSince) || !r2.At.Equal(r.At) {
			t.Fatalf("round trip: %+v != %+v", r2, r)
		}
	})
}

// FuzzDecodeRefusal: as FuzzDecodeRow, for refusals.
func FuzzDecodeRefusal(f *testing.F) {
	for _, s := range []string{
		`{"at":"2026-03-01T10:00:00.5Z","key":"emails","term":7,"owner":"prod","node":"n1","code":"RF001","current_term":9,"current_owner":"prod"}`,
		`{"at":"2026-03-01T10:00:00Z","key":"k","term":12,"owner":"staging","node":"","code":"RF002","current_term":0,"current_owner":"prod"}`,
		`{"at":"2026-03-01T10:00:00Z","key":"k","term":1,"owner":"o","code":"RF002","current_term":0,"current_owner":"p"}`,
		`{"at":"2026-03-01T10:00:00Z","key":"k","term":1,"owner":"o","code":"RF003","current_term":0,"current_owner":"p"}`,
		`{"at":"2026-03-01T10:00:00Z","key":"k","term":1,"owner":"o","code":"RF001","current_term":-4,"current_owner":"p"}`,
		`{"key":"k","term":1,"owner":"o","code":"RF001","current_term":2,"current_owner":"p"}`,
		`{"at":"yesterday"}`, `0`, `"x"`, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := fence.DecodeRefusal(b)
		if err != nil {
			if !errors.Is(err, fence.ErrInvalidRecord) {
				t.Fatalf("error without ErrInvalidRecord: %v", err)
			}
			return
		}
		if r.Key == "" || r.Owner == "" || r.CurrentOwner == "" || r.Term < 0 || r.CurrentTerm < 0 ||
			(r.Code != fence.CodeStaleTerm && r.Code != fence.CodeForeignOwner) {
			t.Fatalf("accepted an invalid refusal: %+v", r)
		}
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("marshal %+v: %v", r, err)
		}
		r2, err := fence.DecodeRefusal(out)
		if err != nil {
			t.Fatalf("decode of %s: %v", out, err)
		}
		at, at2 := r.At, r2.At
		r.At, r2.At = at.UTC(), at2.UTC()
		if r2 != r || !at.Equal(at2) {
			t.Fatalf("round trip: %+v != %+v", r2, r)
		}
	})
}
