// Package deb tests the Debian package that deploy/deb/build.sh builds
// (make deb): its metadata and contents, the extracted binaries, config
// and unit, and a real dpkg install, reinstall, removal and purge in a
// throwaway root.
package deb

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	debFile   string
	buildErr  error
)

// TestMain removes the package the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if debFile != "" {
		os.RemoveAll(filepath.Dir(debFile))
	}
	os.Exit(code)
}

// build runs build.sh once into a temporary directory and returns the .deb.
func build(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not installed")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "regent-deb-test-")
		if err != nil {
			buildErr = err
			return
		}
		out, err := exec.Command("./build.sh", dir).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("build.sh: %v\n%s", err, out)
			os.RemoveAll(dir)
			return
		}
		debFile = filepath.Join(dir, filepath.Base(strings.TrimSpace(lastLine(string(out)))))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	if _, err := os.Stat(debFile); err != nil {
		t.Fatalf("build.sh: %v", err)
	}
	return debFile
}

// lastLine is the last non-empty line of s (build.sh prints the .deb's
// path last).
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// run runs a command and returns its stdout; it fails the test on error.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The package as built: control fields, the conffile, every file with
// its mode and owner, and nothing else.
func TestPackage(t *testing.T) {
	deb := build(t)
	version := strings.TrimSpace(run(t, "../version.sh", "deb"))
	if filepath.Base(deb) != "regent_"+version+"_"+debArch()+".deb" {
		t.Errorf("file name %s, want regent_%s_%s.deb", filepath.Base(deb), version, debArch())
	}
	fields := map[string]string{"Package": "regent", "Version": version, "Architecture": debArch(),
		"Depends": "passwd", "Section": "admin", "Priority": "optional"}
	for k, want := range fields {
		if got := strings.TrimSpace(run(t, "dpkg-deb", "-f", deb, k)); got != want {
			t.Errorf("control %s: %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"Maintainer", "Description", "Homepage"} {
		if strings.TrimSpace(run(t, "dpkg-deb", "-f", deb, k)) == "" {
			t.Errorf("control %s empty", k)
		}
	}
	if n, err := strconv.Atoi(strings.TrimSpace(run(t, "dpkg-deb", "-f", deb, "Installed-Size"))); err != nil || n < 1000 {
		t.Errorf("Installed-Size %d (%v): want the KiB of two static binaries", n, err)
	}
	if got := strings.TrimSpace(run(t, "dpkg-deb", "-I", deb, "conffiles")); got != "/etc/regent/regent.yaml" {
		t.Errorf("conffiles %q, want /etc/regent/regent.yaml", got)
	}

	// dpkg-deb -c: "-rwxr-xr-x root/root 33063074 2026-12-06 05:27 ./usr/bin/regent".
	want := map[string]string{
		"./usr/bin/regent":                     "-rwxr-xr-x",
		"./usr/bin/regent-guard":               "-rwxr-xr-x",
		"./lib/systemd/system/regent.service":  "-rw-r--r--",
		"./etc/regent/regent.yaml":             "-rw-r--r--",
		"./usr/share/doc/regent/copyright":     "-rw-r--r--",
		"./usr/share/doc/regent/changelog.gz":  "-rw-r--r--",
		"./usr/share/lintian/overrides/regent": "-rw-r--r--",
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "-c", deb)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb -c line %q", line)
		}
		if f[1] != "root/root" {
			t.Errorf("%s owned by %s, want root/root", f[5], f[1])
		}
		if !strings.HasPrefix(f[0], "d") {
			got[f[5]] = f[0]
		}
	}
	for p, mode := range want {
		if got[p] != mode {
			t.Errorf("%s: mode %q, want %q", p, got[p], mode)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("unexpected file %s", p)
		}
	}

	// The maintainer scripts: POSIX sh, executable.
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		if !strings.HasPrefix(run(t, "dpkg-deb", "-I", deb, s), "#!/bin/sh\n") {
			t.Errorf("%s: want a #!/bin/sh script", s)
		}
	}
}

// The extracted package: regent --version names this build's version and
// revision; the default config is valid; the unit runs /usr/bin/regent and
// systemd accepts it.
func TestExtracted(t *testing.T) {
	deb := build(t)
	dir := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, dir)

	ver := run(t, filepath.Join(dir, "usr/bin/regent"), "--version")
	version := strings.TrimSpace(run(t, "../version.sh"))
	if !strings.HasPrefix(ver, "regent version "+version+" (revision ") {
		t.Errorf("--version %q, want version %s", ver, version)
	}
	if rev, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
		if !strings.Contains(ver, "(revision "+strings.TrimSpace(string(rev))+", ") {
			t.Errorf("--version %q, want revision %s", ver, rev)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "usr/bin/regent-guard")); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("regent-guard beside regent: %v %v", fi, err)
	}
	run(t, filepath.Join(dir, "usr/bin/regent"), "config", "print", "--config", filepath.Join(dir, "etc/regent/regent.yaml"))

	unit, err := os.ReadFile(filepath.Join(dir, "lib/systemd/system/regent.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^ExecStart=/usr/bin/regent run --config /etc/regent/regent.yaml `).Match(unit) {
		t.Errorf("unit ExecStart: want /usr/bin/regent run --config /etc/regent/regent.yaml\n%s", unit)
	}
	if strings.Contains(string(unit), "/usr/local") {
		t.Errorf("unit names /usr/local")
	}
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: unit not verified")
		return
	}
	// verify checks that ExecStart is executable: point it at the
	// extracted binary.
	v := filepath.Join(t.TempDir(), "regent.service")
	if err := os.WriteFile(v, []byte(strings.ReplaceAll(string(unit), "/usr/bin/regent", filepath.Join(dir, "usr/bin/regent"))), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sa, "verify", "--man=no", v).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// A real dpkg install into a throwaway root (dpkg --root, the maintainer
// scripts run without chroot with DPKG_ROOT set): the regent user and
// group, the state directory and /etc/regent's permissions; installing
// again changes nothing; remove keeps the conffile, purge removes it and
// the state directory. Needs root (dpkg's own rule for --root installs).
func TestInstallInThrowawayRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("dpkg -i needs root")
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg not installed")
	}
	deb := build(t)
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/updates", "var/lib/dpkg/info", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range map[string]string{
		"var/lib/dpkg/status": "",
		"etc/passwd":          "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":           "root:x:0:\n",
		"etc/shadow":          "root:*::0:99999:7:::\n",
		"etc/gshadow":         "root:*::\n",
	} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	// The root has no passwd package: the dependency is the host's.
	dpkg := func(args ...string) string {
		t.Helper()
		return run(t, "dpkg", append([]string{"--root=" + root, "--force-script-chrootless", "--force-depends"}, args...)...)
	}
	users := func() (passwd, group string) {
		p, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
		g, _ := os.ReadFile(filepath.Join(root, "etc/group"))
		return string(p), string(g)
	}
	stat := func(p string) (os.FileMode, uint32, uint32, bool) {
		var st statT
		fi, err := os.Stat(filepath.Join(root, p))
		if err != nil {
			return 0, 0, 0, false
		}
		st = owner(fi)
		return fi.Mode(), st.uid, st.gid, true
	}

	for i := range 2 {
		dpkg("-i", deb)
		passwd, group := users()
		m := regexp.MustCompile(`(?m)^regent:x:(\d+):(\d+):[^:]*:/var/lib/regent:/usr/sbin/nologin$`).FindStringSubmatch(passwd)
		if m == nil || strings.Count(passwd, "\nregent:") != 1 {
			t.Fatalf("install %d: /etc/passwd has no single system user regent:\n%s", i+1, passwd)
		}
		uid, _ := strconv.Atoi(m[1])
		gid, _ := strconv.Atoi(m[2])
		if uid >= 1000 || !strings.Contains(group, "\nregent:x:"+m[2]+":") {
			t.Errorf("install %d: regent uid %d (want a system uid) gid %d, group file:\n%s", i+1, uid, gid, group)
		}
		if mode, u, g, ok := stat("var/lib/regent"); !ok || mode.Perm() != 0o750 || int(u) != uid || int(g) != gid {
			t.Errorf("install %d: /var/lib/regent %v %d:%d (exists %v), want 0750 regent:regent", i+1, mode, u, g, ok)
		}
		if mode, u, g, ok := stat("etc/regent"); !ok || mode.Perm() != 0o750 || u != 0 || int(g) != gid {
			t.Errorf("install %d: /etc/regent %v %d:%d, want 0750 root:regent", i+1, mode, u, g)
		}
		if _, _, _, ok := stat("usr/bin/regent-guard"); !ok {
			t.Errorf("install %d: /usr/bin/regent-guard missing", i+1)
		}
		if st := dpkg("-s", "regent"); !strings.Contains(st, "Status: install ok installed") {
			t.Errorf("install %d: dpkg -s:\n%s", i+1, st)
		}
	}

	dpkg("-r", "regent")
	if _, _, _, ok := stat("usr/bin/regent"); ok {
		t.Error("remove left /usr/bin/regent")
	}
	if _, _, _, ok := stat("etc/regent/regent.yaml"); !ok {
		t.Error("remove deleted the conffile /etc/regent/regent.yaml (only purge may)")
	}
	dpkg("-P", "regent")
	for _, p := range []string{"etc/regent", "var/lib/regent"} {
		if _, _, _, ok := stat(p); ok {
			t.Errorf("purge left /%s", p)
		}
	}
	if passwd, _ := users(); !strings.Contains(passwd, "\nregent:") {
		t.Error("purge removed the regent user (Debian keeps system users)")
	}
}

// debArch is Debian's name of this machine's Go architecture.
func debArch() string {
	switch runtime.GOARCH {
	case "386":
		return "i386"
	case "arm":
		return "armhf"
	}
	return runtime.GOARCH
}
