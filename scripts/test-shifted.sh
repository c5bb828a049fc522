#!/usr/bin/env bash
# Runs the whole test suite (`cargo test --locked`, the README's command) with this machine's
# clock moved ahead (default a year), to prove that no test depends on today's date.
#
#   scripts/test-shifted.sh            # +365d
#   OFFSET=+3650d scripts/test-shifted.sh
#
# The clock is moved with Debian's libfaketime (installed when missing) for every process the
# tests start that reads the time through libc: the test binaries, `stepcache serve`, curl.
# Not shifted, and why:
# - kube-apiserver and etcd (../shared/envtest) are Go binaries, which read the clock without
#   libc; they keep the real time, as an API server whose clock is right would.
# - openssl, which makes the envtest kit's certificates: run at the real time, the kit's
#   10-year certificates are what a cluster set up before the clock moved would have, and the
#   real-time API server accepts them. The certificates the tests make themselves (the
#   webhook's, `stepcache certs`) are made at the shifted time and start a day before it.
# - PostgreSQL keeps running at the real time; the store takes every time from the webhook.
# Doc tests are left out (`--lib --bins --tests`): rustdoc hangs under libfaketime, and the three
# doc examples (duration parsing, staleness arithmetic) read no clock.
set -euo pipefail
cd "$(dirname "$0")/.."
OFFSET="${OFFSET:-+365d}"

lib=""
for candidate in /usr/lib/*/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1; do
  [[ -e "$candidate" ]] && lib="$candidate" && break
done
if [[ -z "$lib" ]]; then
  echo "installing Debian's faketime (libfaketime) for the shifted-clock run" >&2
  if [[ $(id -u) -eq 0 ]]; then apt-get update -qq && apt-get install -y -qq faketime >/dev/null
  else sudo -n apt-get update -qq && sudo -n apt-get install -y -qq faketime >/dev/null; fi
  for candidate in /usr/lib/*/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1; do
    [[ -e "$candidate" ]] && lib="$candidate" && break
  done
fi
[[ -n "$lib" ]] || { echo "libfaketime not found after installing faketime" >&2; exit 1; }

# Build at the real time (cargo's own clock plays no part in the result, but keep it honest).
cargo test --locked --lib --bins --tests --no-run

export LD_PRELOAD="$lib" FAKETIME="$OFFSET" FAKETIME_DONT_FAKE_MONOTONIC=1 FAKETIME_SKIP_CMDS=openssl
echo "::: clock for the tests: $(date -u +%Y-%m-%dT%H:%M:%SZ) (real: $(LD_PRELOAD= date -u +%Y-%m-%dT%H:%M:%SZ), offset $OFFSET)"
# The shifted clock must be in effect, or this run proves nothing.
shifted=$(date -u +%s)
real=$(LD_PRELOAD= date -u +%s)
if (( (shifted - real) * (shifted - real) < 3600 * 3600 )); then
  echo "libfaketime did not move the clock (shifted $shifted, real $real)" >&2
  exit 1
fi
cargo test --locked --lib --bins --tests
