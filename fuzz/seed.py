#!/usr/bin/env python3
"""Builds the raw seed corpora of the fuzz targets from the repository's fixtures (real
formats: gcloud output, API answers, public threads). `just fuzz-seed` runs this and then
minimises each corpus with `cargo fuzz cmin` into corpus/TARGET (checked in)."""
import json, os, pathlib, shutil

root = pathlib.Path(__file__).resolve().parent.parent
out = root / "fuzz" / "corpus-work"
shutil.rmtree(out, ignore_errors=True)

# target -> file-name predicate
TARGETS = {
    "service": lambda n: n.startswith("service.") and n.endswith(("json", "yaml", "yml")),
    "iam_policy": lambda n: n.endswith("-iam-policy.json"),
    "logs": lambda n: n == "logs.json",
    "org_policies": lambda n: n.startswith("org-policy") and not n.startswith("org-policy-custom"),
    "deny_policies": lambda n: n == "deny-policies.json",
    "role": lambda n: n.startswith("role-"),
    "caller": lambda n: n.startswith("caller-"),
    "troubleshoot": lambda n: n == "troubleshoot.json",
    "context": lambda n: n == "context.json",
    "token": lambda n: n == "token.txt",
}
fixtures = sorted(p for p in (root / "fixtures").iterdir() if p.is_dir())
testdata = sorted((root / "crates" / "ipd-model" / "testdata").glob("*.*"))

def put(target, name, data):
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)

for fx in fixtures:
    files = sorted(p for p in fx.iterdir() if p.is_file() and p.name != "case.toml")
    for f in files:
        for t, pred in TARGETS.items():
            if pred(f.name):
                put(t, f"{fx.name}--{f.name}", f.read_bytes())
    # the whole bundle, in the `bundle` target's text form
    parts = []
    case = (fx / "case.toml").read_text() if (fx / "case.toml").exists() else ""
    for line in case.splitlines():
        k, _, v = line.partition("=")
        k, v = k.strip(), v.strip().strip('"')
        if k == "status":
            parts.append(f"@status {v}\n")
        elif k == "at":
            parts.append(f"@at {v}\n")
        elif k == "caller":
            parts.append(f"@caller {v}\n")
        elif k == "expect_public" and v == "true":
            parts.append("@public\n")
    for f in files:
        parts.append(f"=== {f.name}\n" + f.read_text(errors="replace"))
    put("bundle", fx.name, "".join(parts).encode())
    # pastes: tokens, single log entries
    if (fx / "token.txt").exists():
        put("paste", f"{fx.name}--token", (fx / "token.txt").read_bytes())
    if (fx / "logs.json").exists():
        try:
            v = json.loads((fx / "logs.json").read_text())
            entries = v if isinstance(v, list) else v.get("entries", [])
            if entries:
                put("paste", f"{fx.name}--entry", json.dumps(entries[0], indent=2).encode())
        except Exception:
            pass

for f in testdata:
    if f.suffix == ".gz":
        continue
    n = f.name
    for t, key in [("logs", "request-log"), ("iam_policy", "getIamPolicy"), ("iam_policy", "iam-policy"),
                   ("service", "run-v"), ("org_policies", "OrgPolicy"), ("paste", "error-")]:
        if key in n:
            put(t, f"testdata--{n}", f.read_bytes())

PASTES = [
    "<html><head><title>401 Unauthorized</title></head><body><h1>Error: Unauthorized</h1><h2>Your client does not have permission to the requested URL <code>/endpoint</code>.</h2></body></html>",
    "<html><head><title>403 Forbidden</title></head><body><h1>Error: Forbidden</h1><h2>Your client does not have permission to get URL <code>/</code> from this server.</h2></body></html>",
    "6d1e82a184914a699a4638b5fed5ab90",
    "6D1E82A184914A699A4638B5FED5AB90/123;o=1",
    "68f714bb000325e525216f18",
    "Bearer ya29.abc",
    "Invalid IAP credentials: Unable to parse JWT",
    "https://console.cloud.google.com/logs/query;query=resource.type%3D%22cloud_run_revision%22%0Atrace%3D%22projects%2Fp%2Ftraces%2F6d1e82a184914a699a4638b5fed5ab90%22;timeRange=PT1H?project=shop-prod",
    "curl -H \"Authorization: Bearer $(gcloud auth print-identity-token)\" https://orders-api-abc123-ew.a.run.app/",
    "ERROR: (gcloud.run.services.add-iam-policy-binding) FAILED_PRECONDITION: One or more users named in the policy do not belong to a permitted customer.",
    "google.auth.exceptions.RefreshError: ('Failed to retrieve http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/identity?audience=x', 'Not Found')",
]
for i, p in enumerate(PASTES):
    put("paste", f"handwritten-{i:02}", p.encode())
print("raw seeds:", {d.name: len(list(d.iterdir())) for d in sorted(out.iterdir())})
