#!/usr/bin/env bash
# The manual runbook, timed: the README's gcloud commands for the same evidence a live
# diagnosis gathers, run one after another with the real gcloud CLI pointed at fake-gcp
# (100 ms per call by default), next to invoker-doctor's own live diagnosis in the same run.
# Usage: scripts/bench-runbook.sh [LATENCY_MS] [FIXTURE]
# gcloud's Cloud Run client puts the region in front of the endpoint's host name, so the fake
# is reached as ipd-fakegcp and REGION-ipd-fakegcp: both are appended to /etc/hosts if absent.
set -euo pipefail
cd "$(dirname "$0")/.."
latency=${1:-100}
fixture=${2:-functions-invoker-role-two-folders-and-org}
fake=${FAKE:-target/release/fake-gcp}
bin=${BIN:-target/release/invoker-doctor}
[ -x "$fake" ] && [ -x "$bin" ] || cargo build --release -p invoker-doctor -p ipd-fakegcp --bins
command -v gcloud >/dev/null || { echo "gcloud is needed" >&2; exit 2; }
region=europe-west1 svc=orders-api project=shop-prod
caller=alice@shop.example.com
grep -q ' ipd-fakegcp$' /etc/hosts || echo "127.0.0.1 ipd-fakegcp" >>/etc/hosts
grep -q " $region-ipd-fakegcp\$" /etc/hosts || echo "127.0.0.1 $region-ipd-fakegcp" >>/etc/hosts
work=$(mktemp -d)
trap 'kill $fpid 2>/dev/null || true; rm -rf "$work"' EXIT
token="ya29.runbook-$$"
echo "$token" >"$work/token"
"$fake" --bundle "fixtures/$fixture" --token "$token" --latency-ms "$latency" >"$work/url" 2>"$work/fake.err" &
fpid=$!
for _ in $(seq 50); do [ -s "$work/url" ] && break; sleep 0.1; done
port=$(sed -E 's#.*:([0-9]+)/.*#\1#' "$work/url")
base="http://ipd-fakegcp:$port/"
export CLOUDSDK_CONFIG="$work/gcloud" CLOUDSDK_AUTH_ACCESS_TOKEN_FILE="$work/token" \
  CLOUDSDK_CORE_DISABLE_USAGE_REPORTING=1 CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK=1 \
  CLOUDSDK_CORE_CHECK_GCE_METADATA=false CLOUDSDK_CORE_DISABLE_PROMPTS=1
for api in RUN CLOUDRESOURCEMANAGER LOGGING ORGPOLICY IAM POLICYTROUBLESHOOTER; do
  export "CLOUDSDK_API_ENDPOINT_OVERRIDES_$api=$base"
done
mkdir -p "$CLOUDSDK_CONFIG"
cmds=(
  "gcloud run services describe $svc --region $region --project $project --format=json"
  "gcloud run services get-iam-policy $svc --region $region --project $project --format=json"
  "gcloud projects get-iam-policy $project --format=json"
  "gcloud projects get-ancestors $project --format=json"
  "gcloud resource-manager folders get-iam-policy 555000111222 --format=json"
  "gcloud resource-manager folders get-iam-policy 777000111222 --format=json"
  "gcloud organizations get-iam-policy 987654321098 --format=json"
  "gcloud org-policies describe iam.allowedPolicyMemberDomains --effective --project $project --format=json"
  "gcloud org-policies describe iam.managed.allowedPolicyMembers --effective --project $project --format=json"
  "gcloud org-policies describe run.managed.requireInvokerIam --effective --project $project --format=json"
  "gcloud logging read resource.type=\"cloud_run_revision\" --project $project --freshness 1d --format=json"
  "gcloud iam policies list --attachment-point=cloudresourcemanager.googleapis.com/projects/$project --kind=denypolicies --format=json"
  "gcloud policy-intelligence troubleshoot-policy iam //run.googleapis.com/projects/$project/locations/$region/services/$svc --principal-email=$caller --permission=run.routes.invoke --format=json"
)
printf '| # | gcloud command | exit | wall ms |\n|---:|---|---:|---:|\n'
total=0 i=0
for c in "${cmds[@]}"; do
  i=$((i + 1))
  t0=$(date +%s%N)
  set +e; eval "$c" >"$work/out-$i" 2>"$work/err-$i"; code=$?; set -e
  ms=$((($(date +%s%N) - t0) / 1000000))
  total=$((total + ms))
  printf '| %d | `%s` | %d | %d |\n' "$i" "${c%% --format=json}" "$code" "$ms"
done
ours_cmd=("$bin" diagnose --project $project --region $region --service $svc
  --caller "user:$caller" --at 2026-11-20T18:40:09Z --format json)
HOME="$work" "${ours_cmd[@]}" >/dev/null 2>&1 || true   # warm-up: remembers the ancestry
t0=$(date +%s%N)
set +e; HOME="$work" "${ours_cmd[@]}" >"$work/ours" 2>"$work/ours.err"; code=$?; set -e
ours=$((($(date +%s%N) - t0) / 1000000))
echo
echo "runbook: ${#cmds[@]} gcloud commands, $total ms in all, at $latency ms per call"
echo "invoker-doctor diagnose (same evidence and more, ancestry remembered; exit $code): $ours ms"
python3 -c "print(f'ratio runbook / invoker-doctor: {$total / max($ours, 1):.1f}x')"
for i in $(seq ${#cmds[@]}); do
  if [ -s "$work/err-$i" ] && ! grep -q . "$work/out-$i"; then
    echo "command $i said: $(head -c 300 "$work/err-$i" | tr '\n' ' ')"
  fi
done
