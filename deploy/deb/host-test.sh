#!/usr/bin/env bash
# CI's check of the Debian package on the machine itself (make
# deb-host-test; .ci/run runs it, never make test, since it installs a
# package on the host): lintian reports no error (overrides carry their
# reasons), `dpkg -i` twice installs the files and the regent user and
# starts nothing (no systemd runs in CI), regent --version answers, and
# `dpkg -r` then `dpkg -P` remove it. Safe to run twice: it starts by
# purging any regent package left over.
set -euo pipefail
cd "$(dirname "$0")/../.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
fail() { echo "deb-host-test: $*" >&2; exit 1; }

rm -rf dist/host-test
deb=$(bash deploy/deb/build.sh dist/host-test)
echo "deb-host-test: $deb"
if command -v lintian >/dev/null; then
  out=$(lintian --allow-root "$deb" 2>&1 || true)
  echo "$out"
  if echo "$out" | grep -q '^E: '; then fail "lintian reports errors"; fi
else
  fail "lintian is not installed (.ci/run installs it)"
fi
$SUDO dpkg -P regent >/dev/null 2>&1 || true
for i in 1 2; do
  $SUDO dpkg -i "$deb" >/dev/null || fail "dpkg -i (run $i) failed"
done
for f in /usr/bin/regent /usr/bin/regent-guard /lib/systemd/system/regent.service /etc/regent/regent.yaml /usr/share/doc/regent/copyright; do
  [ -e "$f" ] || fail "$f missing after install"
done
id regent >/dev/null 2>&1 || fail "no regent user after install"
[ "$(stat -c %U /var/lib/regent)" = regent ] || fail "/var/lib/regent not owned by regent"
version=$(/usr/bin/regent --version) || fail "regent --version failed"
echo "deb-host-test: $version"
echo "$version" | grep -q "$(deploy/version.sh)" || fail "regent --version does not show $(deploy/version.sh)"
/usr/bin/regent config print --config /etc/regent/regent.yaml >/dev/null || fail "the shipped config does not load"
if pgrep -x regent >/dev/null && [ ! -d /run/systemd/system ]; then fail "installing started regent"; fi
$SUDO dpkg -r regent >/dev/null || fail "dpkg -r failed"
[ ! -e /usr/bin/regent ] || fail "/usr/bin/regent left after dpkg -r"
[ -e /etc/regent/regent.yaml ] || fail "dpkg -r removed the conffile (only purge should)"
$SUDO dpkg -P regent >/dev/null || fail "dpkg -P failed"
[ ! -e /etc/regent/regent.yaml ] || fail "/etc/regent/regent.yaml left after purge"
rm -rf dist/host-test
echo "deb-host-test: ok"
