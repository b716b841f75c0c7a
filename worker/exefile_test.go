package worker

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// copyExecutable copies src to dst, mode 0755.
func copyExecutable(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// replaceFile puts body at path as a package upgrade does: a new file
// renamed over the old one.
func replaceFile(t *testing.T, path, body string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// A guard run through descriptors (Spec.GuardFile, Spec.HelperFile) is the
// version the supervisor opened, even after an upgrade replaced both files,
// under every containment the kernel allows here (exec of /proc/self/fd/N
// in a new PID and user namespace); the worker inherits neither
// descriptor; the orphan hook runs the helper that was opened.
func TestGuardRunsFromDescriptors(t *testing.T) {
	needTestworker(t)
	for _, c := range Containments {
		t.Run(string(c), func(t *testing.T) {
			dir := t.TempDir()
			guardPath := filepath.Join(dir, "guard")
			copyExecutable(t, os.Args[0], guardPath)
			helperPath := filepath.Join(dir, "helper")
			if err := os.WriteFile(helperPath, []byte("#!/bin/sh\necho \"helper v1 $1\" > \"$1\"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			guardFile, err := OpenExecutable(guardPath)
			if err != nil {
				t.Fatal(err)
			}
			defer guardFile.Close()
			helperFile, err := OpenExecutable(helperPath)
			if err != nil {
				t.Fatal(err)
			}
			defer helperFile.Close()
			// The upgrade: both paths now name programs that fail.
			replaceFile(t, guardPath, "#!/bin/sh\nexit 99\n")
			replaceFile(t, helperPath, "#!/bin/sh\necho \"helper v2\" > \"$1\"\n")

			spec := Spec{GuardExe: guardPath, GuardFile: guardFile, GuardArgs: []string{testHelperGuardArg}, Containment: c}
			if err := ProbeGuard(t.Context(), spec); err != nil {
				t.Fatalf("probe: %v", err)
			}
			if c != ContainmentNone {
				if err := probeContainment(t.Context(), spec.guardDefaults(), c); err != nil {
					t.Skipf("containment %s not allowed here: %v", c, err)
				}
			}
			out := &outputs{}
			spec = testSpec(t, out)
			spec.GuardExe, spec.GuardFile, spec.HelperFile = guardPath, guardFile, helperFile
			spec.GuardArgs = []string{testHelperGuardArg}
			spec.Containment = c
			helperOut := filepath.Join(dir, "helper.out")
			spec.GuardMeta = map[string]string{"helper_out": helperOut}
			p := startTest(t, spec, out)

			comm, _ := os.ReadFile("/proc/" + strconv.Itoa(p.GuardPID()) + "/comm")
			if got := strings.TrimSpace(string(comm)); got != "guard" {
				t.Errorf("guard comm %q, want %q", got, "guard")
			}
			for _, pid := range []int{p.GuardPID(), p.PID()} {
				fds, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
				for _, fd := range fds {
					target, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + fd.Name())
					isGuard := strings.HasPrefix(target, guardPath)
					isHelper := strings.HasPrefix(target, helperPath)
					if isGuard || (isHelper && pid == p.PID()) {
						t.Errorf("pid %d (guard %d) holds fd %s → %s", pid, p.GuardPID(), fd.Name(), target)
					}
				}
			}
			p.abandon()
			waitDone(t, p, 10*time.Second)
			b, err := os.ReadFile(helperOut)
			if err != nil {
				t.Fatalf("the helper did not run: %v", err)
			}
			if got, want := strings.TrimSpace(string(b)), "helper v1 "+helperOut; got != want {
				t.Fatalf("helper wrote %q, want %q (the version opened before the upgrade)", got, want)
			}
		})
	}
}
