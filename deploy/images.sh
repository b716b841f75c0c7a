#!/usr/bin/env bash
# Builds the container images of regent's local cluster on this machine,
# from nothing a registry would have to serve:
#
#   regent           FROM scratch: the static regent binary, its lean worker guard
#                    (regent-guard) and its health probe
#                    (./Dockerfile)
#   regent-etcd      FROM scratch: etcd's server packages behind the etcd
#                    command line (deploy/etcd)
#   regent-postgres  FROM scratch: a root filesystem made from this machine's
#                    PostgreSQL packages (deploy/postgres)
#
# Each image is tagged NAME:HASH, HASH being a content hash of everything
# that goes into it (the Go files of the binaries' packages, go.mod, go.sum,
# the Go version, the Dockerfile, this script, and for PostgreSQL every host
# file copied), and NAME:local. A tag that already exists is not rebuilt, so
# a warm run costs a few seconds; older NAME:HASH tags are removed.
#
# Usage: deploy/images.sh [regent] [etcd] [postgres]   (default: all three)
# Prints REGENT_IMAGE=..., ETCD_IMAGE=..., POSTGRES_IMAGE=... on stdout (for
# eval); progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

GO=${GO:-go}
PG_MAJOR=${PG_MAJOR:-15}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
PG_LIB=$(dirname "$PG_BIN")/lib
PG_SHARE=${PG_SHARE:-/usr/share/postgresql/$PG_MAJOR}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

log() { echo "images: $*" >&2; }

# docker_build TAG DOCKERFILE CONTEXT [build args...]: BuildKit through buildx
# when the client has it, else the classic builder (enough for FROM scratch).
docker_build() {
  local tag=$1 file=$2 ctx=$3
  shift 3
  if docker buildx version >/dev/null 2>&1; then
    docker build -q -t "$tag" -f "$file" "$@" "$ctx" >/dev/null
  else
    DOCKER_BUILDKIT=0 docker build -q -t "$tag" -f "$file" "$@" "$ctx" 2> >(grep -v -e DEPRECATED -e 'BuildKit is currently disabled' -e 'environment-variable' -e '^ *$' >&2) >/dev/null
  fi
}

# go_inputs PKG...: the repository's own Go files that PKG compiles from
# (static build), relative to the repository root, one a line.
go_inputs() {
  CGO_ENABLED=0 "$GO" list -deps -f '{{if and .Module .Module.Main}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}
{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}
{{end}}{{end}}' "$@" | sed -e "s|^$root/||" -e '/^$/d' | sort -u
}

# content_hash FILE...: a short hash of the files' names and contents, of
# this script and of the Go version.
content_hash() {
  { sha256sum "$@" deploy/images.sh; "$GO" version; } | sha256sum | cut -c1-16
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# finish NAME TAG: tag NAME:local, drop NAME's other content-hash tags.
finish() {
  local name=$1 tag=$2 old
  docker tag "$tag" "$name:local"
  for old in $(docker images "$name" --format '{{.Repository}}:{{.Tag}}'); do
    case $old in
      "$tag" | "$name:local") ;;
      "$name":[0-9a-f]*) [ "${#old}" -eq $((${#name} + 17)) ] && docker rmi "$old" >/dev/null 2>&1 || true ;;
    esac
  done
}

stage=""
cleanup() { if [ -n "$stage" ]; then rm -rf "$stage"; fi; }
trap cleanup EXIT
new_stage() {
  if [ -z "$stage" ]; then stage=$(mktemp -d "${TMPDIR:-/tmp}/regent-images.XXXXXX"); fi
  mkdir -p "$stage/$1"
  echo "$stage/$1"
}

# go_build DIR PKG...: static binaries of PKG into DIR, with regent's
# version, revision and dirty flag (deploy/version.sh).
go_build() {
  local dir=$1
  shift
  log "go build (static) $*"
  CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-s -w $version_ldflags" -o "$dir/" "$@"
}
version_ldflags=$(deploy/version.sh ldflags)

# base_rootfs DIR USER UID HOME: /etc/passwd, /etc/group and /tmp.
base_rootfs() {
  local dir=$1 user=$2 uid=$3 home=$4
  mkdir -p "$dir/etc" "$dir/tmp"
  chmod 1777 "$dir/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\n%s:x:%s:%s:%s:%s:/sbin/nologin\n' "$user" "$uid" "$uid" "$user" "$home" >"$dir/etc/passwd"
  printf 'root:x:0:\n%s:x:%s:\n' "$user" "$uid" >"$dir/etc/group"
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$dir/etc/nsswitch.conf"
}

build_regent() {
  local files hash tag ctx
  files=$(go_inputs ./cmd/regent ./cmd/regent-guard ./deploy/httpcheck)
  local extra=()
  if [ -r "$CA_BUNDLE" ]; then extra+=("$CA_BUNDLE"); fi
  # shellcheck disable=SC2086
  # The version is part of the hash: a new commit or tag is a new image.
  hash=$(content_hash $files go.mod go.sum Dockerfile "${extra[@]}" <(echo "$version_ldflags"))
  tag="regent:$hash"
  if have_image "$tag"; then
    log "$tag is cached"
  else
    log "building $tag"
    ctx=$(new_stage regent)
    go_build "$ctx/bin" ./cmd/regent ./cmd/regent-guard ./deploy/httpcheck
    base_rootfs "$ctx/rootfs" regent 65532 /var/lib/regent
    if [ -r "$CA_BUNDLE" ]; then
      install -D -m 0644 "$CA_BUNDLE" "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
    fi
    mkdir -p "$ctx/owned/var/lib/regent"
    docker_build "$tag" Dockerfile "$ctx"
  fi
  finish regent "$tag"
  echo "REGENT_IMAGE=$tag"
}

build_etcd() {
  local files hash tag ctx
  files=$(go_inputs ./deploy/etcd)
  # shellcheck disable=SC2086
  hash=$(content_hash $files go.mod go.sum deploy/etcd/Dockerfile)
  tag="regent-etcd:$hash"
  if have_image "$tag"; then
    log "$tag is cached"
  else
    log "building $tag"
    ctx=$(new_stage etcd)
    go_build "$ctx" ./deploy/etcd
    base_rootfs "$ctx/rootfs" etcd 65532 /var/lib/etcd
    mkdir -p "$ctx/owned/var/lib/etcd"
    docker_build "$tag" deploy/etcd/Dockerfile "$ctx"
  fi
  finish regent-etcd "$tag"
  echo "ETCD_IMAGE=$tag"
}

# pg_host_files: every host file the PostgreSQL image copies: the programs,
# the extension modules (without the LLVM JIT), the share files, zoneinfo,
# /bin/sh and the closure of their shared libraries, loader included.
pg_host_files() {
  local elves=() f
  for f in postgres initdb pg_isready psql; do elves+=("$PG_BIN/$f"); done
  while IFS= read -r f; do elves+=("$f"); done < <(find "$PG_LIB" -maxdepth 1 -name '*.so' ! -name 'llvmjit*' | sort)
  elves+=("$(readlink -f /bin/sh)")
  printf '%s\n' "${elves[@]}"
  # ldd prints "name => /path (addr)" for libraries, "/path (addr)" for the
  # loader and a "/file:" header per file.
  ldd "${elves[@]}" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// && $2 ~ /^\(/ {print $1}' | sort -u
  find "$PG_SHARE" /usr/share/zoneinfo -type f | sort
}

build_postgres() {
  local files hash tag ctx f
  if [ ! -x "$PG_BIN/postgres" ] || [ ! -x "$PG_BIN/initdb" ]; then
    log "PostgreSQL $PG_MAJOR is not installed in $PG_BIN (apt-get install postgresql-$PG_MAJOR)"
    return 1
  fi
  files=$(pg_host_files)
  local pginit
  pginit=$(go_inputs ./deploy/postgres/pginit)
  # shellcheck disable=SC2086
  hash=$(content_hash $files $pginit go.mod deploy/postgres/Dockerfile)
  tag="regent-postgres:$hash"
  if have_image "$tag"; then
    log "$tag is cached"
  else
    log "building $tag from $PG_BIN"
    ctx=$(new_stage postgres)
    go_build "$ctx/rootfs/usr/local/bin" ./deploy/postgres/pginit
    # Each file at the path ldd or find named (symlinks followed), so that
    # the loader finds every library where the binaries expect it.
    while IFS= read -r f; do
      install -D -m "$(stat -L -c '%a' "$f")" "$f" "$ctx/rootfs$f"
    done <<<"$files"
    install -D -m 0755 "$(readlink -f /bin/sh)" "$ctx/rootfs/bin/sh"
    base_rootfs "$ctx/rootfs" postgres 999 /var/lib/postgresql
    mkdir -p "$ctx/owned/var/lib/postgresql/data" "$ctx/owned/var/run/postgresql"
    chmod 0700 "$ctx/owned/var/lib/postgresql/data"
    chmod 2775 "$ctx/owned/var/run/postgresql"
    docker_build "$tag" deploy/postgres/Dockerfile "$ctx" --build-arg "PG_MAJOR=$PG_MAJOR"
  fi
  finish regent-postgres "$tag"
  echo "POSTGRES_IMAGE=$tag"
}

want=("$@")
if [ ${#want[@]} -eq 0 ]; then want=(regent etcd postgres); fi
for w in "${want[@]}"; do
  case $w in
    regent) build_regent ;;
    etcd) build_etcd ;;
    postgres) build_postgres ;;
    *)
      log "unknown image $w (want regent, etcd or postgres)"
      exit 2
      ;;
  esac
done
