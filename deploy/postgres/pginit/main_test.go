package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSettingsFromEnv(t *testing.T) {
	for _, v := range []string{"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "POSTGRES_HOST_AUTH_METHOD", "POSTGRES_INITDB_ARGS"} {
		t.Setenv(v, "")
	}
	s := settingsFromEnv()
	if s.user != "postgres" || s.db != "postgres" || s.hostAuth != "scram-sha-256" || len(s.initdbArgs) != 0 {
		t.Errorf("defaults: %+v", s)
	}
	t.Setenv("POSTGRES_USER", "regent")
	t.Setenv("POSTGRES_INITDB_ARGS", "--data-checksums  --no-sync")
	s = settingsFromEnv()
	if s.user != "regent" || s.db != "regent" {
		t.Errorf("user %q db %q, want regent for both (the database defaults to the user)", s.user, s.db)
	}
	if strings.Join(s.initdbArgs, "|") != "--data-checksums|--no-sync" {
		t.Errorf("initdb args %q", s.initdbArgs)
	}
}

func TestInitClusterNeedsPassword(t *testing.T) {
	err := initCluster(t.TempDir(), settings{user: "u", db: "u", hostAuth: "scram-sha-256"})
	if err == nil || !strings.Contains(err.Error(), "POSTGRES_PASSWORD") {
		t.Errorf("err = %v, want one naming POSTGRES_PASSWORD", err)
	}
}

func TestAppendFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pg_hba.conf")
	if err := os.WriteFile(p, []byte("local all all trust\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := appendFile(p, "host all all all md5\n"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if string(b) != "local all all trust\nhost all all all md5\n" {
		t.Errorf("file = %q", b)
	}
}
