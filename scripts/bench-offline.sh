#!/usr/bin/env bash
# Wall time of one offline diagnosis per fixture bundle, release build, with hyperfine.
# Usage: scripts/bench-offline.sh [FIXTURE...]   (default: every fixture)
# Exit status 1 is the contract for "a finding", so failures are not errors here (-i).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/invoker-doctor
[ -x "$bin" ] || cargo build --release -p invoker-doctor
command -v hyperfine >/dev/null || { echo "hyperfine is needed: apt-get install hyperfine" >&2; exit 2; }
# Every diagnose fixture: the directories with a case.toml (incidents, org and paste fixtures
# have their own benchmarks).
if [ $# -gt 0 ]; then fixtures=("$@"); else
  fixtures=(); for d in fixtures/*/; do [ -f "$d/case.toml" ] && fixtures+=("$d"); done
fi
out=$(mktemp -d)
cmds=()
for f in "${fixtures[@]}"; do
  f=${f%/}
  args=$(python3 -c 'import sys,tomllib; print(" ".join(tomllib.load(open(sys.argv[1],"rb"))["args"]))' "$f/case.toml")
  cmds+=("$bin diagnose --bundle $f $args --format json")
done
hyperfine -N -i --warmup 3 --min-runs 20 --export-json "$out/bench.json" "${cmds[@]}" >/dev/null
python3 - "$out/bench.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
rows = sorted(((x["mean"] * 1000, x["max"] * 1000, x["command"].split()[3]) for x in r), reverse=True)
print(f"{'fixture':55s} {'mean ms':>8s} {'max ms':>8s}")
for mean, mx, name in rows:
    print(f"{name:55s} {mean:8.2f} {mx:8.2f}")
print(f"\n{len(rows)} fixtures; slowest mean {rows[0][0]:.2f} ms, slowest max {max(x[1] for x in rows):.2f} ms")
PY
