#!/usr/bin/env bash
# The long fuzz run: the property tests of tests/it/properties.rs (every parser of bytes from
# a server, from git or from the user, over arbitrary and mutated recorded input), run again
# and again with many cases and a fresh random seed each round, until DURATION has passed.
# The test suite runs the same properties with 256 cases each.
#
#   bench/fuzz.sh [DURATION_SECS (3600)] [CASES_PER_ROUND (20000)]
#
# It uses the test profile on purpose: debug builds check integer overflow, so an overflow is
# a crash here too. A failing property stops its round; proptest shrinks the input, prints it,
# and records its seed under tests/proptest-regressions/ (commit that file with the fix: the
# seed is then replayed first by every later run). The summary goes to stdout and to
# bench/results/fuzz-<UTC date>.txt.
set -u -o pipefail
cd "$(dirname "$0")/.."

duration=${1:-3600}
cases=${2:-20000}
properties=$(grep -cF '    #[test]' tests/it/properties.rs)
mkdir -p bench/results
summary=bench/results/fuzz-$(date -u +%Y%m%dT%H%M%SZ).txt
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Built once and copied, so that edits and builds in the work tree during the run do not
# change what is being fuzzed.
built=$(cargo test --test it --no-run --message-format=json 2>/dev/null |
    grep -o '"executable":"[^"]*/deps/it-[^"]*"' | tail -n 1 | cut -d'"' -f4)
[[ -x $built ]] || { echo "fuzz.sh: cannot build the test binary" >&2; exit 1; }
binary=$(mktemp)
cp "$built" "$binary"
chmod +x "$binary"
trap 'rm -f "$log" "$binary"' EXIT
start=$(date +%s)
rounds=0
failed_rounds=0
while (($(date +%s) - start < duration)); do
    rounds=$((rounds + 1))
    if ! PROPTEST_CASES=$cases "$binary" properties:: --test-threads=2 >"$log" 2>&1; then
        if ! grep -q '^test result:' "$log"; then
            echo "fuzz.sh: the test binary did not run:" >&2
            tail -n 20 "$log" >&2
            exit 1
        fi
        failed_rounds=$((failed_rounds + 1))
        echo "--- round $rounds failed:"
        grep -E 'minimal failing input|Test failed|panicked at|^test .* FAILED' "$log" | sort -u
    fi
done
elapsed=$(($(date +%s) - start))

{
    echo "kalandra fuzz run, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD)"
    echo "duration: ${elapsed} s; rounds: ${rounds}; properties: ${properties}; cases per property per round: ${cases}"
    echo "cases run: $((rounds * properties * cases)) (before shrinking)"
    echo "rounds with a failing property: ${failed_rounds}"
} | tee "$summary"
((failed_rounds == 0))
