#!/usr/bin/env bash
# Builds the Debian package of regent with dpkg-deb alone (no network, no
# debhelper): make deb, or deploy/deb/build.sh [OUTDIR] (default dist/).
# Prints the path of the .deb on stdout; progress goes to stderr.
#
#   /usr/bin/regent, /usr/bin/regent-guard   static, with the version of
#       deploy/version.sh (-X); regent runs its guards from regent-guard
#       beside itself, so both ship and are replaced together
#   /lib/systemd/system/regent.service       deploy/regent.service with the
#       /usr/bin path (not enabled nor started by the package)
#   /etc/regent/regent.yaml                  a commented default config, a
#       conffile (an edited copy survives upgrades, purge removes it)
#   postinst / prerm / postrm                the regent system user, state
#       directory and permissions; stop on removal; purge (deploy/deb/*)
#
# GOARCH selects the architecture (default: Go's); REGENT_VERSION overrides
# the version (deploy/version.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
GO=${GO:-go}
out=${1:-dist}

log() { echo "deb: $*" >&2; }

goarch=${GOARCH:-$("$GO" env GOARCH)}
case $goarch in
  amd64 | arm64 | riscv64 | ppc64le | s390x) arch=$goarch ;;
  386) arch=i386 ;;
  arm) arch=armhf ;;
  *) log "no Debian architecture for GOARCH=$goarch"; exit 2 ;;
esac
version=$(deploy/version.sh deb)
ldflags=$(deploy/version.sh ldflags)

stage=$(mktemp -d "${TMPDIR:-/tmp}/regent-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root

log "go build (static, $goarch) regent $version"
CGO_ENABLED=0 GOARCH=$goarch "$GO" build -trimpath -ldflags "-s -w $ldflags" -o "$root/usr/bin/" ./cmd/regent ./cmd/regent-guard

install -D -m 0644 deploy/deb/regent.yaml "$root/etc/regent/regent.yaml"
# The example unit without its manual-install header, regent in /usr/bin.
install -d "$root/lib/systemd/system"
{
  echo "# regent as a systemd service: one replica per host (Debian package regent)."
  echo "# Configure /etc/regent/regent.yaml (secrets in /etc/regent/regent.env),"
  echo "# then: systemctl enable --now regent"
  echo
  sed -n '/^\[Unit\]/,$p' deploy/regent.service | sed 's|/usr/local/bin/regent|/usr/bin/regent|g'
} >"$root/lib/systemd/system/regent.service"
chmod 0644 "$root/lib/systemd/system/regent.service"
if grep -q /usr/local "$root/lib/systemd/system/regent.service"; then
  log "the packaged unit still names /usr/local"
  exit 1
fi

# Debian policy: the copyright file, a changelog (native package), and
# lintian overrides, each with its reason.
doc=$root/usr/share/doc/regent
install -d "$doc" "$root/usr/share/lintian/overrides"
cat >"$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: regent
Source: https://github.com/regentd/regent

Files: *
Copyright: 2026 The regent maintainers
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
{
  echo "regent ($version) unstable; urgency=medium"
  echo
  echo "  * Built from revision $(git rev-parse HEAD 2>/dev/null || echo unknown)."
  echo
  echo " -- regent maintainers <regent@regentd.invalid>  $(date -R -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")"
} | gzip -9n >"$doc/changelog.gz"
cp deploy/deb/lintian-overrides "$root/usr/share/lintian/overrides/regent"
chmod 0644 "$doc/copyright" "$doc/changelog.gz" "$root/usr/share/lintian/overrides/regent"

install -d -m 0755 "$root/DEBIAN"
for f in postinst prerm postrm; do install -m 0755 "deploy/deb/$f" "$root/DEBIAN/$f"; done
echo /etc/regent/regent.yaml >"$root/DEBIAN/conffiles"
(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: regent
Version: $version
Architecture: $arch
Maintainer: regent maintainers <regent@regentd.invalid>
Installed-Size: $size
Depends: passwd
Section: admin
Priority: optional
Homepage: https://github.com/regentd/regent
Description: leader-election supervisor: exactly one supervisor per queue
 regent campaigns for leadership of each queue through etcd or PostgreSQL;
 only a queue's leader runs that queue's workers, the other replicas stand
 by hot. Run one replica per host, every host with the same configuration.
CONTROL

mkdir -p "$out"
deb="$out/regent_${version}_${arch}.deb"
# gzip: a few seconds instead of xz's tens on two static binaries.
dpkg-deb --root-owner-group -Zgzip --build "$root" "$deb" >/dev/null
log "built $deb"
echo "$deb"
