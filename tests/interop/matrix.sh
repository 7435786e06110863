#!/usr/bin/env bash
# Runs the interoperability matrix (tests/it/interop/) alone and generates
# docs/compatibility.md from the outcomes of its cells, failed ones included.
# Needs what tests/run.sh installs (nginx, sshd, jgit-cli, gitolite3,
# python3-dulwich and tests/interop/.venv): run that once first on a fresh machine.
#
#   tests/interop/matrix.sh              # every cell, then the page
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

if [ ! -x tests/interop/.venv/bin/python ]; then
  echo "tests/interop/matrix.sh: tests/interop/.venv is missing; run tests/run.sh once" >&2
  exit 1
fi

results=$PWD/tests/interop/results
rm -rf "$results"
mkdir -p "$results"
export KALANDRA_INTEROP_RESULTS=$results
export GIX_TEST_IGNORE_ARCHIVES=1

status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --test it --no-fail-fast interop || status=$?
else
  cargo test --test it interop || status=$?
fi

python3 tests/interop/gen_compat.py "$results" docs/compatibility.md
echo "tests/interop/matrix.sh: wrote docs/compatibility.md from $(cat "$results"/*.jsonl | wc -l) cells" >&2
exit "$status"
