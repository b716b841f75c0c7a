package fence_test

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/regentd/regent/fence"
)

func TestFromEnv(t *testing.T) {
	cases := []struct {
		name                   string
		key, owner, term, node *string
		want                   fence.Token
		errNames               string // the variable the error must name
	}{
		{name: "all", key: s("q"), owner: s("prod"), term: s("12"), node: s("n1"),
			want: fence.Token{Key: "q", Owner: "prod", Term: 12, Node: "n1"}},
		{name: "no node", key: s("q"), owner: s("prod"), term: s("0"),
			want: fence.Token{Key: "q", Owner: "prod", Term: 0}},
		{name: "no key", owner: s("prod"), term: s("1"), errNames: fence.EnvKey},
		{name: "empty key", key: s(""), owner: s("prod"), term: s("1"), errNames: fence.EnvKey},
		{name: "no owner", key: s("q"), term: s("1"), errNames: fence.EnvOwner},
		{name: "no term", key: s("q"), owner: s("o"), errNames: fence.EnvTerm},
		{name: "bad term", key: s("q"), owner: s("o"), term: s("x1"), errNames: fence.EnvTerm},
		{name: "negative term", key: s("q"), owner: s("o"), term: s("-1"), errNames: fence.EnvTerm},
		{name: "overflow term", key: s("q"), owner: s("o"), term: s("9223372036854775808"), errNames: fence.EnvTerm},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, v := range []struct {
				name string
				val  *string
			}{{fence.EnvKey, c.key}, {fence.EnvOwner, c.owner}, {fence.EnvTerm, c.term}, {fence.EnvNode, c.node}} {
				t.Setenv(v.name, "") // restored after the test
				if v.val != nil {
					t.Setenv(v.name, *v.val)
				}
			}
			got, err := fence.FromEnv()
			if c.errNames != "" {
				if !errors.Is(err, fence.ErrInvalidToken) || !strings.Contains(err.Error(), c.errNames) {
					t.Fatalf("err = %v; want one naming %s", err, c.errNames)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("FromEnv = %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}

func s(v string) *string { return &v }

func TestHeadersRoundTrip(t *testing.T) {
	for _, tok := range []fence.Token{
		{Key: "emails", Owner: "prod", Term: 9},
		{Key: "q/1 ü%", Owner: "team a\r\nx", Term: 1<<63 - 1, Node: "node 1"},
		{Key: "k", Owner: "o", Term: 0, Node: "n"},
	} {
		h := http.Header{}
		h.Set(fence.HeaderNode, "stale")
		tok.SetHeaders(h)
		for _, name := range []string{fence.HeaderKey, fence.HeaderOwner, fence.HeaderNode} {
			if strings.ContainsAny(h.Get(name), "\r\n") {
				t.Fatalf("header %s carries a line break: %q", name, h.Get(name))
			}
		}
		got, err := fence.TokenFromHeaders(h)
		if err != nil || got != tok {
			t.Fatalf("round trip of %+v = %+v, %v", tok, got, err)
		}
	}
	if h := (http.Header{}); true {
		fence.Token{Key: "emails", Owner: "prod", Term: 9}.SetHeaders(h)
		if h.Get("Regent-Fence-Key") != "emails" || h.Get("Regent-Fence-Term") != "9" || h.Get("Regent-Fence-Owner") != "prod" {
			t.Fatalf("plain values changed: %v", h)
		}
	}
	for _, c := range []struct {
		h    http.Header
		name string
	}{
		{http.Header{fence.HeaderTerm: {"1"}, fence.HeaderOwner: {"o"}}, fence.HeaderKey},
		{http.Header{fence.HeaderKey: {"k"}, fence.HeaderOwner: {"o"}}, fence.HeaderTerm},
		{http.Header{fence.HeaderKey: {"k"}, fence.HeaderTerm: {"1"}}, fence.HeaderOwner},
		{http.Header{fence.HeaderKey: {"k"}, fence.HeaderTerm: {"-3"}, fence.HeaderOwner: {"o"}}, fence.HeaderTerm},
		{http.Header{fence.HeaderKey: {"k%zz"}, fence.HeaderTerm: {"1"}, fence.HeaderOwner: {"o"}}, fence.HeaderKey},
	} {
		if _, err := fence.TokenFromHeaders(c.h); !errors.Is(err, fence.ErrInvalidToken) || !strings.Contains(err.Error(), c.name) {
			t.Fatalf("TokenFromHeaders(%v) = %v; want an error naming %s", c.h, err, c.name)
		}
	}
}

func TestChecker(t *testing.T) {
	var c fence.Checker
	steps := []struct {
		tok  fence.Token
		want error
	}{
		{fence.Token{Key: "k", Owner: "prod", Term: 5}, nil}, // first
		{fence.Token{Key: "k", Owner: "prod", Term: 5}, nil}, // same term
		{fence.Token{Key: "k", Owner: "prod", Term: 4}, fence.ErrStaleTerm},
		{fence.Token{Key: "k", Owner: "staging", Term: 9}, fence.ErrForeignOwner},
		{fence.Token{Key: "k", Owner: "staging", Term: 1}, fence.ErrForeignOwner}, // owner first
		{fence.Token{Key: "k", Owner: "prod", Term: 7}, nil},                      // moves
		{fence.Token{Key: "k", Owner: "prod", Term: 5}, fence.ErrStaleTerm},
		{fence.Token{Key: "other", Owner: "staging", Term: 1}, nil}, // keys are independent
		{fence.Token{Key: "", Owner: "prod", Term: 1}, fence.ErrInvalidToken},
	}
	for i, st := range steps {
		err := c.Check(st.tok)
		if (st.want == nil) != (err == nil) || (st.want != nil && !errors.Is(err, st.want)) {
			t.Fatalf("step %d %+v: %v; want %v", i, st.tok, err, st.want)
		}
	}
	if term, owner, ok := c.Current("k"); !ok || term != 7 || owner != "prod" {
		t.Fatalf("current = %d %s %v", term, owner, ok)
	}
	c.Transfer("k", "staging")
	if err := c.Check(fence.Token{Key: "k", Owner: "staging", Term: 1}); err != nil {
		t.Fatalf("new owner after transfer: %v", err)
	}
	if err := c.Check(fence.Token{Key: "k", Owner: "prod", Term: 8}); !errors.Is(err, fence.ErrForeignOwner) {
		t.Fatalf("old owner after transfer: %v", err)
	}
	c.Transfer("k", "staging") // same owner: the term stays
	if err := c.Check(fence.Token{Key: "k", Owner: "staging", Term: 0}); !errors.Is(err, fence.ErrStaleTerm) {
		t.Fatalf("same-owner transfer reset the term: %v", err)
	}
}

func TestCheckerConcurrent(t *testing.T) {
	var c fence.Checker
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for term := int64(0); term < 200; term++ {
				_ = c.Check(fence.Token{Key: "k", Owner: "o", Term: term + int64(i)})
			}
		})
	}
	wg.Wait()
	if term, _, _ := c.Current("k"); term != 199+7 {
		t.Fatalf("term = %d", term)
	}
}

func TestGrantSQL(t *testing.T) {
	got := fence.GrantSQL(`w"x`)
	want := "GRANT USAGE ON SCHEMA regent_fence TO \"w\"\"x\";\n" +
		"GRANT EXECUTE ON FUNCTION regent_fence.claim(text, bigint, text), regent_fence.record_refusal(text, bigint, text, text) TO \"w\"\"x\";\n"
	if got != want {
		t.Fatalf("GrantSQL =\n%s\nwant\n%s", got, want)
	}
}

func TestSQLIsOneTransaction(t *testing.T) {
	q := fence.SQL()
	if !strings.HasPrefix(q, "BEGIN;\n") || !strings.HasSuffix(q, "COMMIT;\n") || !strings.Contains(q, "pg_advisory_xact_lock") {
		t.Fatalf("SQL() is not one locked transaction:\n%.200s", q)
	}
}
