package main

import (
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// setBuild sets the -X variables for one test.
func setBuild(t *testing.T, v, rev, d string) {
	t.Helper()
	ov, orev, od := version, revision, dirty
	version, revision, dirty = v, rev, d
	t.Cleanup(func() { version, revision, dirty = ov, orev, od })
}

// The values set with -X win; the line of --version names all of them.
func TestBuildFromLdflags(t *testing.T) {
	setBuild(t, "v1.2.0-3-g1a2b3c4-dirty", "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b", "true")
	b := currentBuild()
	if b.Version != "v1.2.0-3-g1a2b3c4-dirty" || b.Revision != "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b" || !b.Dirty || b.GoVersion != runtime.Version() {
		t.Fatalf("build %+v", b)
	}
	if got := regentVersion(); got != b.Version {
		t.Errorf("regentVersion %q, want %q", got, b.Version)
	}
	want := "v1.2.0-3-g1a2b3c4-dirty (revision 1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b, dirty, " + runtime.Version() + ")"
	if got := versionLine(); got != want {
		t.Errorf("versionLine %q, want %q", got, want)
	}
	setBuild(t, "v1.2.0", "1a2b3c4", "false")
	if got := versionLine(); !strings.Contains(got, ", clean, ") {
		t.Errorf("versionLine %q: want clean", got)
	}
}

// Without -X (go run, go test): "dev", never an empty version.
func TestBuildWithoutLdflags(t *testing.T) {
	setBuild(t, "", "", "")
	b := currentBuild()
	if b.Version == "" || !strings.HasPrefix(b.Version, "dev") {
		t.Errorf("version %q, want dev or dev-<revision>", b.Version)
	}
	if got := versionLine(); !strings.HasPrefix(got, b.Version+" (revision ") {
		t.Errorf("versionLine %q", got)
	}
}

// regent_build_info is 1 with the build's labels.
func TestBuildInfoMetric(t *testing.T) {
	setBuild(t, "v1.2.0", "1a2b3c4", "false")
	reg := prometheus.NewRegistry()
	registerBuildInfo(reg)
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || len(mfs[0].GetMetric()) != 1 {
		t.Fatalf("gather: %v %v", mfs, err)
	}
	m := mfs[0].GetMetric()[0]
	labels := map[string]string{}
	for _, l := range m.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if mfs[0].GetName() != "regent_build_info" || m.GetGauge().GetValue() != 1 ||
		labels["version"] != "v1.2.0" || labels["revision"] != "1a2b3c4" || labels["goversion"] != runtime.Version() || len(labels) != 3 {
		t.Errorf("regent_build_info: %v", mfs[0])
	}
}
