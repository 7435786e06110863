#!/usr/bin/env bash
# Load benchmark (not a test): COUNT concurrent syncs in one process, through the library
# (examples/load.rs), from a local path and from a git daemon on 127.0.0.1. Prints one JSON
# line per run: wall time, errors, open file descriptors and RSS at baseline, peak and after.
#
#   bench/load.sh [COUNT]          (default 200; upstream: a bare clone of this repository)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
count="${1:-200}"
work="$(mktemp -d /tmp/kalandra-load.XXXXXX)"
daemon_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill -- "-$daemon_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export TZ=UTC LANG=C LC_ALL=C GIT_CONFIG_NOSYSTEM=1
git clone -q --bare . "$work/up.git"
cargo build -q --release --example load
bin=target/release/examples/load
ulimit -n 65536 2>/dev/null || true

echo "== $count syncs from a local path"
"$bin" "$work/up.git" "$work/file" "$count"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
setsid git daemon --reuseaddr --listen=127.0.0.1 --port="$port" --base-path="$work" \
  --export-all --max-connections=0 "$work" >/dev/null 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
echo "== $count syncs from git://127.0.0.1:$port"
LOAD_UPSTREAM_PATH="$work/up.git" "$bin" "git://127.0.0.1:$port/up.git" "$work/daemon" "$count"
