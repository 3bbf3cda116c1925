#!/usr/bin/env bash
# The fuzz campaign: every target of fuzz/ until it has run RUNS executions in all (the sum over
# every session's logs, so an interrupted campaign resumes where it stopped), JOBS targets at a
# time, at the lowest priority so that builds and tests on the same machine go first.
#
# New inputs go to fuzz/corpus-work/TARGET (not checked in); fuzz/corpus/TARGET (checked in,
# minimised) is read only. Crashes land in fuzz/artifacts/TARGET/; each becomes a regression
# test in the crate's own tests. Each session of a target writes fuzz/logs/TARGET-STAMP.log.
#
# Usage: scripts/fuzz-long.sh [--runs N] [--jobs J] [--summary | --merge] [TARGET...]
#   --runs N    executions per target in all (default 10000000)
#   --jobs J    targets run at once (default 1; the machine has 2 cores)
#   --summary   print the table from the logs and run nothing
#   --merge     minimise fuzz/corpus/TARGET + fuzz/corpus-work/TARGET into fuzz/corpus/TARGET
#               (libFuzzer -merge=1 -use_counters=0: the smallest set of inputs that reaches
#               every edge the campaign reached; hit-count buckets would keep ~5x as many)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
runs=10000000
jobs=1
summary_only=0
merge=0
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --summary) summary_only=1; shift ;;
    --merge) merge=1; shift ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
mkdir -p logs

# Executions of TARGET so far: the sum of the final stats of every finished session, plus the
# last progress line ("#N ...") of a session cut short before it printed them.
done_runs() {
  local t=$1 sum=0 n f
  for f in logs/"$t"-*.log; do
    [ -e "$f" ] || continue
    n=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$f" | grep -o '[0-9]*$' | tail -1 || true)
    if [ -z "$n" ]; then
      n=$(grep -oE '^#[0-9]+' "$f" | tail -1 | tr -d '#' || true)
    fi
    sum=$((sum + ${n:-0}))
  done
  echo "$sum"
}

summary() {
  printf '%-14s %12s %9s %6s %8s %s\n' target executions exec/s cov corpus crashes
  local t f speed cov crashes corpus
  for t in "${targets[@]}"; do
    f=$(ls -t logs/"$t"-*.log 2>/dev/null | head -1 || true)
    speed=? cov=?
    if [ -n "$f" ]; then
      speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$f" | grep -o '[0-9]*$' | tail -1 || true)
      cov=$(grep -o 'cov: [0-9]*' "$f" | tail -1 | grep -o '[0-9]*' || true)
    fi
    crashes=$({ find "artifacts/$t" -type f 2>/dev/null || true; } | wc -l)
    corpus=$({ find "corpus-work/$t" "corpus/$t" -type f 2>/dev/null || true; } | sort -u | wc -l)
    printf '%-14s %12s %9s %6s %8s %s\n' "$t" "$(done_runs "$t")" "${speed:-?}" "${cov:-?}" \
      "$corpus" "$crashes"
  done
}

if [ "$summary_only" = 1 ]; then
  summary
  exit 0
fi

export RUSTC_BOOTSTRAP=1
flags=(-O --debug-assertions -s none)
cargo fuzz build "${flags[@]}" >/dev/null
bin=target/x86_64-unknown-linux-gnu/release

if [ "$merge" = 1 ]; then
  for t in "${targets[@]}"; do
    [ -d "corpus-work/$t" ] || continue
    rm -rf "corpus-merged/$t" && mkdir -p "corpus-merged/$t"
    "$bin/$t" -merge=1 -use_counters=0 "corpus-merged/$t" "corpus/$t" "corpus-work/$t" -max_len=65536 \
      -timeout=10 -rss_limit_mb=2048 >"logs/merge-$t.log" 2>&1
    rm -rf "corpus/$t" && mv "corpus-merged/$t" "corpus/$t"
    printf '%-14s %6s inputs %8s\n' "$t" "$(find "corpus/$t" -type f | wc -l)" \
      "$(du -sh "corpus/$t" | cut -f1)"
  done
  rmdir corpus-merged 2>/dev/null || true
  exit 0
fi

one() {
  local t=$1 left max_len=16384
  left=$((runs - $(done_runs "$t")))
  [ "$left" -gt 0 ] || return 0
  [ "$t" = bundle ] && max_len=65536
  mkdir -p "corpus-work/$t" "corpus/$t" "artifacts/$t"
  # -timeout: one input taking over 10 s is a finding (bounded time); -rss_limit_mb likewise.
  nice -n 19 "$bin/$t" "corpus-work/$t" "corpus/$t" -runs="$left" -max_len="$max_len" \
    -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 -artifact_prefix="artifacts/$t/" \
    >"logs/$t-$(date +%Y%m%dT%H%M%S).log" 2>&1 || true
}
export -f one done_runs
export runs bin
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'one {}'
summary
