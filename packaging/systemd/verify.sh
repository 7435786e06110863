#!/usr/bin/env bash
# Checks the unit files with systemd-analyze (Debian package `systemd`), offline:
#   packaging/systemd/verify.sh [KALANDRA]
# `verify` needs ExecStart's binary to exist: the units are checked as copies whose
# /usr/local/bin/kalandra is KALANDRA (default: the kalandra on PATH). Then
# `security --offline=yes` prints each service's exposure score (systemd >= 250).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$(command -v kalandra || true)}
[ -x "$bin" ] || { echo "verify.sh: give the path of a kalandra binary" >&2; exit 2; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for u in "$here"/*.service "$here"/*.timer; do
    sed "s|/usr/local/bin/kalandra|$bin|g" "$u" > "$work/$(basename "$u")"
done
cd "$work"
# Any message (unknown key, bad value, missing binary) is a failure, not only the exit code.
out=$(systemd-analyze verify ./*.service ./*.timer 2>&1) || { echo "$out"; exit 1; }
[ -z "$out" ] || { echo "$out"; echo "verify.sh: systemd-analyze verify printed the above" >&2; exit 1; }
echo "verify.sh: systemd-analyze verify: no messages for $(ls | tr '\n' ' ')"
for s in kalandra-watch.service kalandra-sync.service; do
    systemd-analyze security --offline=yes --no-pager "./$s" | tail -n 1 | sed "s|^|verify.sh: $s: |"
done
