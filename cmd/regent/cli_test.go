package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var regentBin string

func TestMain(m *testing.M) {
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "-test.fuzzworker") {
			// A fuzz worker runs only the fuzz target: no binary needed.
			os.Exit(m.Run())
		}
	}
	dir, err := os.MkdirTemp("", "regent-cli-")
	if err != nil {
		panic(err)
	}
	regentBin = filepath.Join(dir, "regent")
	if out, err := exec.Command("go", "build", "-o", regentBin, ".").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runRegent runs the real binary and returns stdout, stderr and the code.
func runRegent(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(regentBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("regent %v hung", args)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// lastLine is the final stderr line (after any log lines).
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// User mistakes give one clear line, a documented exit code, and never a
// Go stack trace.
func TestUserErrors(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(cfgFile, []byte("lease_ttl: [\n"), 0o600)
	unknownKey := filepath.Join(t.TempDir(), "unknown.yaml")
	os.WriteFile(unknownKey, []byte("max_rss: 4096\n"), 0o600)
	cases := []struct {
		name string
		env  []string
		args []string
		code int
		want []string
	}{
		{"unknown flag", nil, []string{"run", "--bogus"}, 1, []string{"unknown flag: --bogus", "regent run --help"}},
		{"no command", nil, []string{"run"}, 1, []string{"no worker command", "after --"}},
		{"malformed config", nil, []string{"run", "--config", cfgFile, "--", "w"}, 1, []string{"bad.yaml", "fix the YAML"}},
		{"unknown config key", nil, []string{"run", "--config", unknownKey, "--", "w"}, 1, []string{"max_rss"}},
		{"missing config", nil, []string{"run", "--config", "/nonexistent.yaml", "--", "w"}, 1, []string{"not found"}},
		{"bad backend", nil, []string{"run", "--backend", "zk", "--", "w"}, 1, []string{"--backend"}},
		{"bad ttl", nil, []string{"run", "--lease-ttl", "1500ms", "--", "w"}, 1, []string{"lease_ttl", "whole seconds"}},
		{"bad duration flag", nil, []string{"run", "--lease-ttl", "soon", "--", "w"}, 1, []string{"lease-ttl"}},
		{"bad env", []string{"REGENT_CONCURRENCY=many"}, []string{"run", "--", "w"}, 1, []string{"concurrency"}},
		{"etcd unreachable", nil, []string{"run", "--etcd-endpoints", "127.0.0.1:1", "--etcd-dial-timeout", "1s", "--http-addr", "", "--", "w"}, 1, []string{"127.0.0.1:1", "unreachable"}},
		{"postgres unreachable", nil, []string{"run", "--backend", "postgres", "--postgres-url", "postgres://u:hunter2@127.0.0.1:1/db", "--postgres-dial-timeout", "1s", "--http-addr", "", "--", "w"}, 1, []string{"127.0.0.1:1", "--postgres-url"}},
		{"step-down without queue", nil, []string{"step-down"}, 1, []string{"--queue is required"}},
		{"pause without queue", nil, []string{"pause"}, 1, []string{"give either --queue Q or --all"}},
		{"resume with queue and all", nil, []string{"resume", "--queue", "q", "--all"}, 1, []string{"give either --queue Q or --all"}},
		{"restart without queue", nil, []string{"restart", "--rolling"}, 1, []string{"--queue is required"}},
		{"pause negative wait", nil, []string{"pause", "--queue", "q", "--wait", "-1s"}, 1, []string{"--wait -1s is negative"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, stderr, code := runRegent(t, tc.env, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			line := lastLine(stderr)
			if !strings.HasPrefix(line, "regent: ") {
				t.Errorf("last stderr line %q is not a one-line regent error", line)
			}
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("error %q does not mention %q", line, w)
				}
			}
			for _, bad := range []string{"goroutine ", "panic", "hunter2"} {
				if strings.Contains(stderr, bad) {
					t.Errorf("stderr contains %q:\n%s", bad, stderr)
				}
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %s to fail", d)
			}
		})
	}
}

// status --check answers UNKNOWN (3) when the backend is unreachable.
func TestStatusCheckUnknown(t *testing.T) {
	out, _, code := runRegent(t, nil, "status", "--check", "--etcd-endpoints", "127.0.0.1:1", "--etcd-dial-timeout", "1s")
	if code != 3 || !strings.HasPrefix(out, "REGENT UNKNOWN") {
		t.Fatalf("exit %d, output %q; want 3 and a REGENT UNKNOWN line", code, out)
	}
}

// config print shows the effective config with every secret redacted.
func TestConfigPrintRedacts(t *testing.T) {
	env := []string{"DATABASE_URL=postgres://app:s3cr3t-db@db:5432/app?sslmode=require", "REGENT_ETCD_PASSWORD=s3cr3t-etcd"}
	out, stderr, code := runRegent(t, env, "config", "print", "--backend", "postgres", "--etcd-username", "u",
		"--etcd-key-file", "/etc/regent/client.key", "--", "worker", "--api-key=s3cr3t-arg")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, secret := range []string{"s3cr3t-db", "s3cr3t-etcd", "s3cr3t-arg"} {
		if strings.Contains(out, secret) {
			t.Errorf("config print leaks %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{"postgres://app:REDACTED@db:5432/app?sslmode=require", "/etc/regent/client.key", "password: REDACTED"} {
		if !strings.Contains(out, want) {
			t.Errorf("config print lacks %q:\n%s", want, out)
		}
	}
}

// The README's config reference is generated from the settings table.
func TestReadmeReferenceInSync(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- BEGIN CONFIG REFERENCE", "<!-- END CONFIG REFERENCE -->"
	s := string(readme)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatal("README lacks the config reference markers")
	}
	got := s[i:j]
	got = got[strings.Index(got, "\n")+1:]
	var want bytes.Buffer
	writeReference(&want)
	if strings.TrimSpace(got) != strings.TrimSpace(want.String()) {
		t.Fatalf("README config reference is stale: run `go run ./cmd/regent config reference` and paste it between the markers")
	}
}

// The exit codes documented in run --help are the ones above.
func TestRunHelpDocumentsExitCodes(t *testing.T) {
	out, _, code := runRegent(t, nil, "run", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"0  clean stop", "1  usage or config error", "2  --exclusive"} {
		if !strings.Contains(out, want) {
			t.Errorf("run --help lacks %q", want)
		}
	}
}

// regent demo exits 0 within 30 s and leaves no process behind.
func TestDemo(t *testing.T) {
	start := time.Now()
	out, stderr, code := runRegent(t, nil, "demo")
	if code != 0 {
		t.Fatalf("demo exit %d\n%s\n%s", code, out, stderr)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("demo took %s, want under 30s", d)
	}
	for _, want := range []string{"SIGKILL", "new leader", "after the kill", "queue emails", "queue reports"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	// Nothing left: no replica, guard or sample worker of the demo.
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && len(stat) > i+2 && stat[i+2] == 'Z' {
			continue // a zombie of an init that does not reap is not running
		}
		c := string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
		if strings.HasPrefix(c, regentBin) && (strings.Contains(c, "--cluster demo") || strings.Contains(c, "demo-worker")) {
			t.Errorf("demo left process %s behind: %s", e.Name(), c)
		}
	}
}

// The operator commands' --help documents their exit codes and shows
// examples.
func TestOperatorHelp(t *testing.T) {
	for _, c := range []struct{ cmd, example string }{
		{"pause", "regent pause --queue billing --reason"},
		{"resume", "regent resume --queue billing"},
		{"restart", "regent restart --queue billing --rolling"},
	} {
		out, _, code := runRegent(t, nil, c.cmd, "--help")
		if code != 0 {
			t.Fatalf("%s --help: exit %d", c.cmd, code)
		}
		for _, want := range []string{"Exit codes: 0", "1 an", "--wait", "--reason", c.example} {
			if !strings.Contains(out, want) {
				t.Errorf("%s --help lacks %q", c.cmd, want)
			}
		}
	}
}
