package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Set at build time by `make build`, the image and the package, from
// deploy/version.sh:
//
//	go build -ldflags "-X main.version=v1.2.0 -X main.revision=<sha> -X main.dirty=false"
//
// Go's own VCS stamp is only a fallback: it is missing from `go run`, from
// a build in a git worktree and wherever -buildvcs is off.
var (
	version  = ""
	revision = ""
	dirty    = ""
)

// buildInfo is what this binary knows of its own build.
type buildInfo struct {
	Version   string // v1.2.0, v1.2.0-3-g1a2b3c4-dirty, dev-1a2b3c4, or dev
	Revision  string // the full commit hash, or "" when unknown
	Dirty     bool   // built from a tree with uncommitted changes
	GoVersion string
}

// currentBuild reads the values set with -X, then Go's build info for
// what they leave unset (a `go install module@v1.2.0` has a module
// version; a `go build` in a repository with -buildvcs a VCS stamp).
func currentBuild() buildInfo {
	b := buildInfo{Version: version, Revision: revision, Dirty: dirty == "true", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		if b.Version == "" {
			b.Version = "dev"
		}
		return b
	}
	stamped := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if b.Revision == "" {
				b.Revision, stamped = s.Value, true
			}
		case "vcs.modified":
			if dirty == "" && s.Value == "true" {
				b.Dirty = true
			}
		}
	}
	if b.Version == "" {
		switch v := bi.Main.Version; {
		case v != "" && v != "(devel)":
			b.Version = v
		case stamped && len(b.Revision) >= 12:
			b.Version = "dev-" + b.Revision[:12]
		default:
			b.Version = "dev"
		}
	}
	return b
}

// regentVersion is the version the leader and member records, status and
// the log carry.
func regentVersion() string { return currentBuild().Version }

// versionLine is what `regent --version` prints after "regent version ".
func versionLine() string {
	b := currentBuild()
	rev := b.Revision
	if rev == "" {
		rev = "unknown"
	}
	state := "clean"
	if b.Dirty {
		state = "dirty"
	}
	return fmt.Sprintf("%s (revision %s, %s, %s)", b.Version, rev, state, b.GoVersion)
}

// registerBuildInfo registers regent_build_info, 1 with the build's
// labels, so that a rolling upgrade can be followed replica by replica:
// count by (version) (regent_build_info).
func registerBuildInfo(reg prometheus.Registerer) {
	b := currentBuild()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "regent_build_info",
		Help: "1, labelled with the version, VCS revision and Go version regent was built with.",
		ConstLabels: prometheus.Labels{
			"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion,
		},
	})
	g.Set(1)
	reg.MustRegister(g)
}
