#!/usr/bin/env bash
# A live diagnosis against the local fake of the Google APIs (crates/ipd-fakegcp), serving one
# fixture bundle: starts `fake-gcp`, points gcloud's endpoint-override variables at it, runs
# `invoker-doctor diagnose --project --region --service`, stops the fake.
#   scripts/demo-live.sh [FIXTURE] [extra invoker-doctor args...]
set -euo pipefail
cd "$(dirname "$0")/.."
fixture="${1:-missing-binding-sa-not-bound-anywhere}"
shift || true
dir="fixtures/$fixture"
[ -d "$dir" ] || { echo "no fixture $dir" >&2; exit 2; }

cargo build --release -q -p invoker-doctor -p ipd-fakegcp
tmp="$(mktemp -d)"
trap 'kill "$fake_pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
printf 'demo-token-not-a-secret' > "$tmp/token"

# Service coordinates from the bundle's service resource (v1 or v2), as the fake serves them.
read -r project region service < <(python3 - "$dir" <<'PY'
import json, os, sys, re
d = sys.argv[1]
for f in ("service.json",):
    p = os.path.join(d, f)
    if os.path.exists(p):
        s = json.load(open(p))
        name = s.get("name", "")
        m = re.match(r"projects/([^/]+)/locations/([^/]+)/services/([^/]+)", name)
        if m:
            print(*m.groups()); sys.exit()
        md = s.get("metadata", {})
        labels = md.get("labels", {})
        print("shop-prod", labels.get("cloud.googleapis.com/location", "europe-west1"), md.get("name", "orders-api")); sys.exit()
print("shop-prod europe-west1 orders-api")
PY
)

./target/release/fake-gcp --bundle "$dir" --token demo-token-not-a-secret --latency-ms "${LATENCY_MS:-0}" > "$tmp/url" &
fake_pid=$!
for _ in $(seq 50); do [ -s "$tmp/url" ] && break; sleep 0.1; done
base="$(head -n1 "$tmp/url")"
echo "fake Google APIs at $base serving $dir" >&2
for api in RUN CLOUDRESOURCEMANAGER LOGGING ORGPOLICY IAM PUBSUB CLOUDSCHEDULER CLOUDTASKS EVENTARC WORKFLOWS OAUTH2 POLICYTROUBLESHOOTER; do
  export "CLOUDSDK_API_ENDPOINT_OVERRIDES_$api=$base"
done
extra=()
[ -f "$dir/token.txt" ] && extra+=(--token "@$dir/token.txt")
set +e
./target/release/invoker-doctor diagnose --project "$project" --region "$region" --service "$service" \
  --access-token-file "$tmp/token" --freshness 400d "${extra[@]}" "$@"
status=$?
set -e
echo "(exit status $status)" >&2
