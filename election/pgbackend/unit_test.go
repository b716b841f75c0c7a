package pgbackend

import (
	"strings"
	"testing"
	"time"

	"github.com/regentd/regent/election"
)

func TestLockKey(t *testing.T) {
	k := LockKey("default", "emails")
	if k != LockKey("default", "emails") {
		t.Fatal("not deterministic")
	}
	seen := map[int64]string{}
	for _, c := range [][2]string{{"default", "emails"}, {"other", "emails"}, {"default", "email"}, {"defaulte", "mails"}, {"", "defaultemails"}} {
		k := LockKey(c[0], c[1])
		if prev, dup := seen[k]; dup {
			t.Fatalf("%v collides with %s", c, prev)
		}
		seen[k] = c[0] + "/" + c[1]
	}
	if k == schemaLockKey {
		t.Fatal("queue key equals the schema key")
	}
	classid, objid := lockIDs(-5000000000)
	if classid != 4294967294 || objid != 3589934592 {
		t.Fatalf("lock ids %d %d", classid, objid)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:secret@h:5432/db?sslmode=require":    "postgres://u:xxxxx@h:5432/db?sslmode=require",
		"postgresql://u@h/db?password=secret":              "postgresql://u@h/db?password=xxxxx",
		"host=h user=u password=secret dbname=d":           "host=h user=u password=xxxxx dbname=d",
		"host=h password = 'se cret' dbname=d":             "host=h password = xxxxx dbname=d",
		"postgres://u@h/db":                                "postgres://u@h/db",
		"postgres://u:secret@h:notaport/db%zz":             "postgres://xxxxx@h:notaport/db%zz",
		"postgres://u:secret@h1:5432,h2:5433/db?sslmode=x": "postgres://u:xxxxx@h1:5432,h2:5433/db?sslmode=x",
	} {
		got := RedactURL(in)
		if strings.Contains(got, "secret") || strings.Contains(got, "cret") {
			t.Errorf("RedactURL(%q) = %q leaks", in, got)
		}
		if got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestKeepaliveBound(t *testing.T) {
	for _, ttl := range []time.Duration{100 * time.Millisecond, time.Second, 1500 * time.Millisecond, 10 * time.Second, 37 * time.Second, time.Minute} {
		k := keepaliveFor(ttl)
		if k.bound() < ttl {
			t.Errorf("ttl %s: bound %s is shorter", ttl, k.bound())
		}
		if k.bound() > ttl+5*time.Second && k.bound() > 2*ttl {
			t.Errorf("ttl %s: bound %s is much longer", ttl, k.bound())
		}
		if k.idle < time.Second || k.interval < time.Second || k.idle%time.Second != 0 || k.interval%time.Second != 0 {
			t.Errorf("ttl %s: %+v not whole seconds", ttl, k)
		}
	}
	if got := keepaliveFor(10 * time.Second); got.idle != 5*time.Second || got.interval != 2*time.Second || got.count != 4 || got.bound() != 13*time.Second {
		t.Fatalf("10s: %+v bound %s", got, got.bound())
	}
}

func TestSettings(t *testing.T) {
	opts := election.Options{Identity: election.Identity{Cluster: "c", Node: "n"}}
	s, err := newSettings(Config{URL: "postgres://h/db"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if s.DialTimeout != DefaultDialTimeout || s.StatementTimeout != DefaultStatementTimeout || s.Timing != (election.Timing{}).WithDefaults() ||
		s.RenewInterval >= s.LeaseTTL || s.RetryInterval <= 0 || s.clientStatementTimeout <= s.StatementTimeout {
		t.Fatalf("defaults %+v", s)
	}
	if s.staleGrace != election.DefaultStaleGrace(s.LeaseTTL) || s.stepDownHold != election.DefaultStepDownHold(s.LeaseTTL) {
		t.Fatalf("stale grace %s, step-down hold %s: not election's defaults", s.staleGrace, s.stepDownHold)
	}
	bad := []func(*Config, *election.Options){
		func(c *Config, o *election.Options) { c.URL = "" },
		func(c *Config, o *election.Options) { o.Cluster = "" },
		func(c *Config, o *election.Options) { o.Node = "" },
		func(c *Config, o *election.Options) { o.LeaseTTL = time.Second; o.RenewInterval = time.Second },
		func(c *Config, o *election.Options) { o.LeaseTTL = time.Millisecond },
		func(c *Config, o *election.Options) {
			o.LeaseTTL = 800 * time.Millisecond
			o.RenewInterval = 200 * time.Millisecond
		},
		func(c *Config, o *election.Options) { o.RetryInterval = -time.Second },
	}
	for i, f := range bad {
		c, o := Config{URL: "postgres://h/db"}, opts
		f(&c, &o)
		if _, err := newSettings(c, o); err == nil {
			t.Errorf("case %d accepted", i)
		}
	}
	ro := opts
	ro.Node, ro.ReadOnly = "", true
	if _, err := newSettings(Config{URL: "x"}, ro); err != nil {
		t.Fatalf("read-only without node: %v", err)
	}
}

func TestDecodePayload(t *testing.T) {
	str := func(s string) *string { return &s }
	for _, c := range []struct {
		typ, text *string
		raw       []byte
		want      string
		isNil     bool
		bad       bool
	}{
		{nil, nil, nil, "", true, false},
		{nil, nil, []byte("opaque"), "opaque", false, false},
		{str("object"), str(`{"a": 1}`), []byte(`{"a":1.0}`), `{"a":1.0}`, false, false},
		{str("object"), str(`{"a": 2}`), []byte(`{"a":1}`), `{"a": 2}`, false, false},
		{str("object"), str(`{"a": 2}`), nil, `{"a": 2}`, false, false},
		{str("string"), str(`"x"`), []byte(`{"a":1}`), "", true, true},
		{str("null"), str(`null`), nil, "", true, true},
	} {
		got, err := decodePayload(c.typ, c.text, c.raw)
		if (err != nil) != c.bad || string(got) != c.want || (got == nil) != c.isNil {
			t.Errorf("%v %v %q: %q %v", c.typ, c.text, c.raw, got, err)
		}
	}
	if j, raw := encodePayload([]byte(` {"a":1}`)); j != ` {"a":1}` || string(raw) != ` {"a":1}` {
		t.Fatalf("%v %q", j, raw)
	}
	if j, raw := encodePayload([]byte(`[1]`)); j != nil || string(raw) != `[1]` {
		t.Fatalf("%v %q", j, raw)
	}
	if j, raw := encodePayload(nil); j != nil || raw != nil {
		t.Fatalf("%v %q", j, raw)
	}
}
