#!/usr/bin/env bash
# The long fault sweep: tests/it/faults.rs with KALANDRA_FAULT_SWEEP=long, i.e. the named
# offsets plus 47 evenly spaced ones and every named offset +-1..3, for cut, flip, duplicate
# (1 and 100 bytes), stall and a 400-byte drip, upstream and downstream, each way, over
# git://, smart HTTP (nginx + git http-backend) and ssh (sshd).
# One line per case ("fault-sweep ...") and the outcomes by exit code go to
# bench/results/fault-sweep-<UTC date>.txt. See docs/robustness.md, "Fault injection".
set -u -o pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
out=bench/results/fault-sweep-$(date -u +%Y%m%dT%H%M%SZ).txt
KALANDRA_FAULT_SWEEP=long cargo nextest run --no-fail-fast --test-threads 2 \
    -E 'test(faults_)' --no-capture 2>&1 |
    grep -E '^fault-sweep|panicked|FAIL|Summary' | tee "$out"
echo "cases: $(grep -c '^fault-sweep .* exit [0-9]' "$out")" | tee -a "$out"
