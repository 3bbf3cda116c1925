#!/usr/bin/env bash
# The fuzz campaign: every target of fuzz/ for SECONDS each, one after the other, on one core
# at the lowest priority (the machine is shared). New inputs go to fuzz/corpus-work/TARGET
# (not checked in); fuzz/corpus/TARGET (checked in, minimised) is read only. Crashes land in
# fuzz/artifacts/TARGET/; each becomes a regression test in the crate's own tests.
# Prints one line per target: executions, exec/s, new coverage, crashes.
# Usage: scripts/fuzz-long.sh [SECONDS per target] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
export RUSTC_BOOTSTRAP=1
flags=(-O --debug-assertions -s none)
cargo fuzz build "${flags[@]}" >/dev/null
mkdir -p logs
printf '%-14s %12s %9s %8s %s\n' target executions exec/s cov crashes
for t in "${targets[@]}"; do
  mkdir -p "corpus-work/$t" "corpus/$t"
  max_len=16384
  [ "$t" = bundle ] && max_len=65536
  # -timeout: one input taking over 10 s is a finding (bounded time); -rss_limit_mb likewise.
  nice -n 19 cargo fuzz run "${flags[@]}" "$t" "corpus-work/$t" "corpus/$t" -- \
    -max_total_time="$secs" -max_len="$max_len" -timeout=10 -rss_limit_mb=1024 \
    -print_final_stats=1 >"logs/$t.log" 2>&1 || true
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' | tail -1)
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "logs/$t.log" | tail -1 | grep -o '[0-9]*')
  crashes=$(find "artifacts/$t" -type f 2>/dev/null | wc -l)
  printf '%-14s %12s %9s %8s %s\n' "$t" "${runs:-?}" "${speed:-?}" "${cov:-?}" "$crashes"
done
