#!/usr/bin/env bash
# The version regent is built with, from git: one home for the rule that
# `make build`, the image (deploy/images.sh) and the package (make deb)
# share.
#
#   deploy/version.sh            the version: `git describe --tags --always
#                                --dirty` (v1.2.0, v1.2.0-3-g1a2b3c4-dirty),
#                                "dev-1a2b3c4" while no tag exists, "dev"
#                                outside git
#   deploy/version.sh ldflags    -X flags setting main.version, main.revision
#                                and main.dirty (cmd/regent/buildinfo.go)
#   deploy/version.sh deb        the version as a Debian version (digits
#                                first, no hyphen): 1.2.0, 1.2.0+3.g1a2b3c4.dirty,
#                                0.0~dev.1a2b3c4
#
# REGENT_VERSION in the environment overrides the version (a release build
# from an exported tree); the revision and dirty flag still come from git
# when there is one.
#
# Why not Go's own stamp: `go build` records vcs.revision only when -buildvcs
# is on (this machine sets GOFLAGS=-buildvcs=false), the `.git` it finds is a
# directory (a git worktree has a `.git` file: no stamp at all), and the
# command is build or install (`go run` and `go test` never stamp). -X works
# for every one of them.
set -euo pipefail
cd "$(dirname "$0")/.."

revision="" dirty=false
if git rev-parse --git-dir >/dev/null 2>&1; then
  revision=$(git rev-parse HEAD 2>/dev/null || true)
  if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then dirty=true; fi
fi

version=${REGENT_VERSION:-}
if [ -z "$version" ]; then
  if [ -n "$revision" ]; then
    if ! version=$(git describe --tags --dirty 2>/dev/null); then
      # No tag yet: the abbreviated hash (which may begin with a digit).
      version="dev-$(git describe --always --dirty 2>/dev/null || echo "${revision:0:7}")"
    fi
  else
    version=dev
  fi
fi

case ${1:-} in
  "") echo "$version" ;;
  ldflags) echo "-X main.version=$version -X main.revision=$revision -X main.dirty=$dirty" ;;
  deb)
    v=${version#v}
    case $v in
      [0-9]*) ;;
      dev-*) v="0.0~dev.${v#dev-}" ;;
      *) v="0.0~$v" ;;
    esac
    # v1.2.0-3-g1a2b3c4-dirty: the first hyphen starts the commits since
    # the tag (sorts after 1.2.0), the others separate words.
    v=${v/-/+}
    echo "${v//-/.}"
    ;;
  *)
    echo "usage: deploy/version.sh [ldflags|deb]" >&2
    exit 2
    ;;
esac
