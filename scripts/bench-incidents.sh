#!/usr/bin/env bash
# Benchmark of `incidents` live against fake-gcp (not a test): an hour of 50,000 refusals
# across 20 services (scripts/gen-incident-fixtures.py --bench), one bounded entries:list query,
# the top 3 groups diagnosed. Prints wall time, entries read and peak memory (/usr/bin/time -v).
#   scripts/bench-incidents.sh [MAX_ENTRIES]
set -euo pipefail
cd "$(dirname "$0")/.."
max="${1:-60000}"
cargo build --release -q -p invoker-doctor -p ipd-fakegcp
tmp="$(mktemp -d)"
trap 'kill "$fake_pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
python3 scripts/gen-incident-fixtures.py --bench "$tmp/bundle"
printf 'bench-token-not-a-secret' > "$tmp/token"
./target/release/fake-gcp --bundle "$tmp/bundle" --token bench-token-not-a-secret > "$tmp/url" &
fake_pid=$!
for _ in $(seq 100); do [ -s "$tmp/url" ] && break; sleep 0.1; done
base="$(head -n1 "$tmp/url")"
for api in RUN CLOUDRESOURCEMANAGER LOGGING ORGPOLICY IAM PUBSUB CLOUDSCHEDULER CLOUDTASKS EVENTARC WORKFLOWS OAUTH2 POLICYTROUBLESHOOTER; do
  export "CLOUDSDK_API_ENDPOINT_OVERRIDES_$api=$base"
done
export CLOUDSDK_CONFIG="$tmp/gcloud" HOME="$tmp"
set +e
/usr/bin/time -v ./target/release/invoker-doctor incidents --project shop-prod \
  --from 2026-11-20T10:00:00Z --to 2026-11-20T11:00:00Z --max-entries "$max" \
  --access-token-file "$tmp/token" --format json -v > "$tmp/out.json" 2> "$tmp/err"
status=$?
set -e
python3 - "$tmp/out.json" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
print(f"entries read: {v['entries_read']}, groups: {len(v['groups'])}, refusals grouped: {sum(g['count'] for g in v['groups'])}, diagnosed: {sum(1 for g in v['groups'] if g['report'])}")
PY
grep -E "API calls in|Elapsed \(wall|Maximum resident" "$tmp/err"
grep -c "entries:list\|entries.list" "$tmp/err" | sed 's/^/entries.list calls: /'
echo "(exit status $status)"
