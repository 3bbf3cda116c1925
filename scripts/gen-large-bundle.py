#!/usr/bin/env python3
"""Writes a bundle with a large logs.json, for the offline benchmark.

Usage: scripts/gen-large-bundle.py OUT_DIR N [FIXTURE]

Copies fixtures/FIXTURE (default missing-binding-sa-not-bound-anywhere) without its logs.json
and writes N log entries as `gcloud logging read --format=json` prints them (a JSON array,
newest first, 2-space indent): mostly the gate's 403s of the fixture's own entry (varied
insertId, time, trace, client), with 200s that reached the container, application stdout
entries with a jsonPayload, and Admin Activity audit entries with a protoPayload, so every
shape the reader handles is in the stream. The fixture's own entries come first, unchanged,
so the diagnosis is the fixture's.
"""
import json
import random
import shutil
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

root = Path(__file__).resolve().parent.parent
out = Path(sys.argv[1])
n = int(sys.argv[2])
fixture = sys.argv[3] if len(sys.argv) > 3 else "missing-binding-sa-not-bound-anywhere"
src = root / "fixtures" / fixture
out.mkdir(parents=True, exist_ok=True)
for f in src.iterdir():
    if f.is_file() and f.name not in ("logs.json", "case.toml"):
        shutil.copy(f, out / f.name)
own = json.loads((src / "logs.json").read_text())
base = next(e for e in own if "httpRequest" in e)
rng = random.Random(13)
t0 = datetime(2026, 11, 20, 7, 0, tzinfo=timezone.utc)


def ts(i):
    return (t0 - timedelta(milliseconds=250 * i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def gate(i):
    e = json.loads(json.dumps(base))
    e["insertId"] = f"{rng.getrandbits(96):024x}"
    e["timestamp"] = ts(i)
    e["receiveTimestamp"] = ts(i)
    e["trace"] = f"projects/shop-prod/traces/{rng.getrandbits(128):032x}"
    e["spanId"] = f"{rng.getrandbits(64):016x}"
    e["httpRequest"]["remoteIp"] = f"34.78.{rng.randrange(256)}.{rng.randrange(256)}"
    e["httpRequest"]["userAgent"] = rng.choice(["Go-http-client/2.0", "curl/8.5.0", "python-requests/2.32.3"])
    return e


def ok(i):
    e = gate(i)
    e["httpRequest"]["status"] = 200
    e["httpRequest"]["latency"] = f"0.{rng.randrange(10**6):06d}s"
    e["severity"] = "INFO"
    del e["textPayload"]
    return e


def stdout(i):
    return {
        "insertId": f"{rng.getrandbits(64):016x}",
        "jsonPayload": {"message": "order accepted", "orderId": rng.randrange(10**9), "items": [{"sku": "A-1", "qty": 2}]},
        "labels": {"instanceId": f"00{rng.getrandbits(120):030x}"},
        "logName": "projects/shop-prod/logs/run.googleapis.com%2Fstdout",
        "receiveTimestamp": ts(i),
        "resource": base["resource"],
        "severity": "INFO",
        "timestamp": ts(i),
    }


def audit(i):
    return {
        "insertId": f"{rng.getrandbits(48):012x}",
        "logName": "projects/shop-prod/logs/cloudaudit.googleapis.com%2Factivity",
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "authenticationInfo": {"principalEmail": "ops@shop.example.com"},
            "methodName": "google.cloud.run.v2.Services.UpdateService",
            "resourceName": "projects/shop-prod/locations/europe-west1/services/orders-api",
            "serviceName": "run.googleapis.com",
            "status": {},
        },
        "receiveTimestamp": ts(i),
        "resource": {"labels": {"location": "europe-west1", "project_id": "shop-prod", "service_name": "orders-api"}, "type": "cloud_run_revision"},
        "severity": "NOTICE",
        "timestamp": ts(i),
    }


entries = list(own)
for i in range(len(own), n):
    r = rng.random()
    entries.append(gate(i) if r < 0.85 else ok(i) if r < 0.93 else stdout(i) if r < 0.99 else audit(i))
with open(out / "logs.json", "w") as f:
    json.dump(entries[:n], f, indent=2)
    f.write("\n")
