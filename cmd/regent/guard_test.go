package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// regent runs the lean guard from beside its executable when it is there
// and speaks its protocol; otherwise regent itself, said in one log line.
func TestOpenGuardBinary(t *testing.T) {
	dir := t.TempDir()
	var logs strings.Builder
	log := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info})
	ctx := context.Background()

	g := openGuardIn(ctx, dir, log)
	if g.lean() || g.spec.GuardExe != "/proc/self/exe" || len(g.spec.GuardArgs) != 1 || g.spec.GuardArgs[0] != "guard" {
		t.Fatalf("no regent-guard: %+v, want the fallback", g.spec)
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 || !strings.Contains(logs.String(), "missing=") {
		t.Fatalf("fallback logged %d lines: %q", n, logs.String())
	}

	path := filepath.Join(dir, guardBinaryName)
	if err := os.WriteFile(path, []byte("#!/bin/sh\necho 'regent guard: protocol mismatch' >&2; exit 125\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	if g := openGuardIn(ctx, dir, log); g.lean() {
		t.Fatal("a regent-guard that fails its probe is used")
	}
	if !strings.Contains(logs.String(), "[WARN]") || !strings.Contains(logs.String(), "protocol mismatch") {
		t.Fatalf("unusable guard: log %q", logs.String())
	}

	os.Remove(path)
	if out, err := exec.Command("go", "build", "-o", path, "../regent-guard").CombinedOutput(); err != nil {
		t.Fatalf("go build regent-guard: %v\n%s", err, out)
	}
	logs.Reset()
	g = openGuardIn(ctx, dir, log)
	defer g.Close()
	if !g.lean() || g.spec.GuardExe != path || g.spec.HelperFile == nil || len(g.spec.GuardArgs) != 0 {
		t.Fatalf("lean guard: %+v (log %q)", g.spec, logs.String())
	}
	if logs.Len() != 0 {
		t.Fatalf("lean guard logged %q", logs.String())
	}
}
