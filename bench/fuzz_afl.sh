#!/usr/bin/env bash
# Coverage-guided fuzzing with AFL++ on the stable toolchain: every parser of bytes from a
# server, from git or from the user, behind one target (fuzz/targets/parsers.rs, first byte
# picks the parser), seeded with recorded git output (fuzz/seeds). Not part of the test suite.
#
#   bench/fuzz_afl.sh [SECONDS (3600)]
#
# Installs cargo-afl from crates.io if missing (it builds AFL++ on first use). Findings land in
# bench/work/afl/default/crashes and hangs; the summary goes to stdout and bench/results/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-3600}"
command -v cargo-afl >/dev/null 2>&1 || cargo install --locked cargo-afl
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/fuzz/target}"
(cd fuzz && cargo afl build --release --bin parsers)
# AFL++ refuses to start unless crashes reach it directly and CPU scaling is left alone.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
out=bench/work/afl
rm -rf "$out"
mkdir -p "$out" bench/results
(cd fuzz && cargo afl fuzz -V "$seconds" -i seeds -o "../$out" "$CARGO_TARGET_DIR/release/parsers") \
  >"$out.log" 2>&1 || true
summary="bench/results/afl-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
  echo "AFL++ run of ${seconds}s on fuzz/targets/parsers.rs"
  grep -E '^(execs_done|execs_per_sec|corpus_count|bitmap_cvg|saved_crashes|saved_hangs|run_time|cycles_done|stability)' \
    "$out/default/fuzzer_stats" || echo "no fuzzer_stats: see $out.log"
} | tee "$summary"
