#!/usr/bin/env bash
# Offline diagnosis of bundles with large logs.json files (1k, 10k, 40k, 200k entries and a
# ~300 MB one), release build: wall time (hyperfine), MB/s of logs.json, peak memory (GNU time),
# next to `python3 -c 'import json; json.load(open(F))'` on the same file in the same run.
# Usage: scripts/bench-logs.sh [N...]   (default: 1000 10000 40000 200000 220000)
# Needs hyperfine and /usr/bin/time (apt-get install hyperfine time). Keep it short: it runs
# each command a few times only.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/invoker-doctor
[ -x "$bin" ] || cargo build --release -p invoker-doctor
command -v hyperfine >/dev/null || { echo "hyperfine is needed: apt-get install hyperfine" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "GNU time is needed: apt-get install time" >&2; exit 2; }
if [ $# -gt 0 ]; then sizes=("$@"); else sizes=(1000 10000 40000 200000 220000); fi
work=${BENCH_DIR:-$(mktemp -d)}
printf '| entries | logs.json MB | invoker-doctor ms | MB/s | peak MB | exit | python json.load ms | MB/s | peak MB |\n'
printf '|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for n in "${sizes[@]}"; do
  b="$work/logs-$n"
  [ -f "$b/logs.json" ] || python3 scripts/gen-large-bundle.py "$b" "$n"
  bytes=$(stat -c %s "$b/logs.json")
  runs=5; [ "$n" -ge 100000 ] && runs=2
  hyperfine -N -i --warmup 1 --runs "$runs" --export-json "$work/h-$n.json" \
    "$bin diagnose --bundle $b --format json" \
    "python3 -c 'import json; json.load(open(\"$b/logs.json\"))'" >/dev/null 2>&1
  set +e
  /usr/bin/time -f %M -o "$work/m-$n" "$bin" diagnose --bundle "$b" --format json >"$work/out-$n.json" 2>"$work/err-$n"
  code=$?
  /usr/bin/time -f %M -o "$work/p-$n" python3 -c "import json; json.load(open('$b/logs.json'))"
  set -e
  python3 - "$work/h-$n.json" "$bytes" "$(tail -1 "$work/m-$n")" "$(tail -1 "$work/p-$n")" "$n" "$code" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
mb = int(sys.argv[2]) / 1e6
ours, py = r[0]["median"], r[1]["median"]
print(f"| {sys.argv[5]} | {mb:.1f} | {ours*1000:.0f} | {mb/ours:.0f} | {int(sys.argv[3])/1024:.0f} | {sys.argv[6]} | {py*1000:.0f} | {mb/py:.0f} | {int(sys.argv[4])/1024:.0f} |")
PY
done
echo
echo "bundles in $work (the fixture missing-binding-sa-not-bound-anywhere with generated logs); exit 1 = a finding"
