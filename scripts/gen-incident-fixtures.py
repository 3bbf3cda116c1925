#!/usr/bin/env python3
"""Writes the `fixtures/incidents-*` bundles (deterministic; rerun after editing).

Shapes: the request-log entry is the real one in shared/reference/examples/
cloud-run-request-log-403-unauthenticated.json (fields, order of magnitude of ids); the audit
entries follow Cloud Audit Logs' AuditLog as Google writes it: SetIamPolicy with
`serviceData.policyDelta.bindingDeltas` (google.iam.v1.logging.AuditData), Cloud Run v1
`ReplaceService` with `resourceName: namespaces/P/services/S` and a
`google.cloud.run.v1.ReplaceServiceRequest`, v2 `UpdateService` with a
`google.cloud.run.v2.UpdateServiceRequest`, IAM Admin `DeleteServiceAccount` /
`CreateServiceAccount` (snake_case request fields, `response.email`), IAM v2
`google.iam.v2.Policies.CreatePolicy` on a deny-policy attachment point.

Also writes a large bundle for the benchmark with --bench DIR (50,000 refusals, 20 services).
"""

import hashlib
import json
import os
import random
import sys
from datetime import datetime, timedelta, timezone

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
PROJECT = "shop-prod"
NUMBER = "123456789012"
REGION = "europe-west1"

GATE_403 = ("The request was not authenticated. Either allow unauthenticated invocations or set "
            "the proper Authorization header. Read more at https://cloud.google.com/run/docs/"
            "securing/authenticating Additional troubleshooting documentation can be found at: "
            "https://cloud.google.com/run/docs/troubleshooting#unauthorized-client")
GATE_401 = ("The request was not authorized to invoke this service. Read more at "
            "https://cloud.google.com/run/docs/securing/authenticating Additional "
            "troubleshooting documentation can be found at: "
            "https://cloud.google.com/run/docs/troubleshooting#401")


def ts(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def hexid(seed, n=24):
    return hashlib.sha256(seed.encode()).hexdigest()[:n]


def request(svc, t, status, text, ua, path="/", method="POST", ip="34.78.112.45"):
    seed = f"{svc}{t.isoformat()}{ua}{status}"
    return {
        "httpRequest": {
            "latency": "0s", "protocol": "HTTP/1.1", "remoteIp": ip,
            "requestMethod": method, "requestSize": "1497",
            "requestUrl": f"https://{svc}-{NUMBER}.{REGION}.run.app{path}",
            "serverIp": "216.239.36.53", "status": status, "userAgent": ua,
        },
        "insertId": hexid(seed),
        "logName": f"projects/{PROJECT}/logs/run.googleapis.com%2Frequests",
        "receiveTimestamp": ts(t + timedelta(milliseconds=92)),
        "resource": {"labels": {"configuration_name": svc, "location": REGION,
                                "project_id": PROJECT, "revision_name": f"{svc}-00042-kx7",
                                "service_name": svc}, "type": "cloud_run_revision"},
        "severity": "WARNING",
        "spanId": hexid(seed + "s", 16),
        "textPayload": text,
        "timestamp": ts(t),
        "trace": f"projects/{PROJECT}/traces/{hexid(seed + 't', 32)}",
        "traceSampled": True,
    }


def audit(t, service_name, method, resource, who, extra, resource_type, labels):
    payload = {
        "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
        "authenticationInfo": {"principalEmail": who},
        "authorizationInfo": [{"granted": True, "resource": resource,
                               "permission": extra.pop("_permission", "")}],
        "methodName": method,
        "requestMetadata": {"callerIp": "35.205.9.14",
                            "callerSuppliedUserAgent": extra.pop("_ua", "google-cloud-sdk gcloud/548.0.0")},
        "resourceName": resource,
        "serviceName": service_name,
    }
    payload.update(extra)
    return {
        "insertId": hexid(f"{method}{resource}{t.isoformat()}", 12),
        "logName": f"projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Factivity",
        "protoPayload": payload,
        "receiveTimestamp": ts(t + timedelta(milliseconds=640)),
        "resource": {"labels": labels, "type": resource_type},
        "severity": "NOTICE",
        "timestamp": ts(t),
    }


def run_set_iam(t, svc, who, deltas, v="v1"):
    res = f"projects/{PROJECT}/locations/{REGION}/services/{svc}"
    return audit(t, "run.googleapis.com", f"google.cloud.run.{v}.Services.SetIamPolicy", res, who, {
        "_permission": "run.services.setIamPolicy",
        "_ua": "Terraform/1.9.8 (+https://www.terraform.io) terraform-provider-google/6.12.0",
        "request": {"@type": "type.googleapis.com/google.iam.v1.SetIamPolicyRequest", "resource": res,
                    "policy": {"bindings": [], "etag": "BwYJ9tk8Fyc="}},
        "response": {"@type": "type.googleapis.com/google.iam.v1.Policy", "etag": "BwYJ9wB1V6c="},
        "serviceData": {"@type": "type.googleapis.com/google.iam.v1.logging.AuditData",
                        "policyDelta": {"bindingDeltas": [
                            {"action": a, "role": r, "member": m} for (a, r, m) in deltas]}},
    }, "cloud_run_revision", {"configuration_name": "", "location": REGION, "project_id": PROJECT,
                              "revision_name": "", "service_name": svc})


def project_set_iam(t, who, deltas):
    res = f"projects/{PROJECT}"
    return audit(t, "cloudresourcemanager.googleapis.com", "SetIamPolicy", res, who, {
        "_permission": "resourcemanager.projects.setIamPolicy",
        "request": {"@type": "type.googleapis.com/google.iam.v1.SetIamPolicyRequest", "resource": PROJECT,
                    "policy": {"bindings": [], "etag": "BwYJ9tk8Fyc="}},
        "response": {"@type": "type.googleapis.com/google.iam.v1.Policy", "etag": "BwYJ9wB1V6c="},
        "serviceData": {"@type": "type.googleapis.com/google.iam.v1.logging.AuditData",
                        "policyDelta": {"bindingDeltas": [
                            {"action": a, "role": r, "member": m} for (a, r, m) in deltas]}},
    }, "project", {"project_id": PROJECT})


def replace_service_v1(t, svc, who, annotations):
    return audit(t, "run.googleapis.com", "google.cloud.run.v1.Services.ReplaceService",
                 f"namespaces/{PROJECT}/services/{svc}", who, {
        "_permission": "run.services.update",
        "request": {"@type": "type.googleapis.com/google.cloud.run.v1.ReplaceServiceRequest",
                    "name": f"projects/{PROJECT}/locations/{REGION}/services/{svc}", "region": REGION,
                    "service": {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                                "metadata": {"name": svc, "namespace": NUMBER, "annotations": annotations},
                                "spec": {"template": {"spec": {"containers": [
                                    {"image": f"europe-west1-docker.pkg.dev/{PROJECT}/app/{svc}:v2"}]}}}}},
    }, "cloud_run_revision", {"configuration_name": "", "location": REGION, "project_id": PROJECT,
                              "revision_name": "", "service_name": svc})


def update_service_v2(t, svc, who, service_fields):
    name = f"projects/{PROJECT}/locations/{REGION}/services/{svc}"
    body = {"name": name}
    body.update(service_fields)
    return audit(t, "run.googleapis.com", "google.cloud.run.v2.Services.UpdateService", name, who, {
        "_permission": "run.services.update",
        "request": {"@type": "type.googleapis.com/google.cloud.run.v2.UpdateServiceRequest", "service": body},
    }, "cloud_run_revision", {"configuration_name": "", "location": REGION, "project_id": PROJECT,
                              "revision_name": "", "service_name": svc})


def sa_op(t, op, email, who, unique_id):
    if op == "Delete":
        extra = {"_permission": "iam.serviceAccounts.delete",
                 "request": {"@type": "type.googleapis.com/google.iam.admin.v1.DeleteServiceAccountRequest",
                             "name": f"projects/-/serviceAccounts/{email}"}}
        res = f"projects/-/serviceAccounts/{unique_id}"
    else:
        account_id = email.split("@")[0]
        extra = {"_permission": "iam.serviceAccounts.create",
                 "request": {"@type": "type.googleapis.com/google.iam.admin.v1.CreateServiceAccountRequest",
                             "account_id": account_id, "name": f"projects/{PROJECT}",
                             "service_account": {"display_name": account_id}},
                 "response": {"@type": "type.googleapis.com/google.iam.admin.v1.ServiceAccount",
                              "email": email, "name": f"projects/{PROJECT}/serviceAccounts/{email}",
                              "project_id": PROJECT, "unique_id": unique_id}}
        res = f"projects/{PROJECT}/serviceAccounts/{unique_id}"
    return audit(t, "iam.googleapis.com", f"google.iam.admin.v1.{op}ServiceAccount", res, who, extra,
                 "service_account", {"email_id": email, "project_id": PROJECT, "unique_id": unique_id})


def deny_create(t, who, policy):
    att = f"cloudresourcemanager.googleapis.com%2Fprojects%2F{NUMBER}"
    res = f"policies/{att}/denypolicies/{policy['name'].rsplit('/', 1)[1]}"
    return audit(t, "iam.googleapis.com", "google.iam.v2.Policies.CreatePolicy", res, who, {
        "_permission": "iam.denypolicies.create",
        "request": {"@type": "type.googleapis.com/google.iam.v2.CreatePolicyRequest",
                    "parent": f"policies/{att}/denypolicies", "policyId": policy["name"].rsplit("/", 1)[1],
                    "policy": {"displayName": policy["displayName"], "rules": policy["rules"]}},
    }, "audited_resource", {"method": "google.iam.v2.Policies.CreatePolicy", "service": "iam.googleapis.com"})


def service_v2(svc, ingress="INGRESS_TRAFFIC_ALL", sa=None, extra=None):
    v = {
        "name": f"projects/{PROJECT}/locations/{REGION}/services/{svc}",
        "uid": hexid(svc, 8) + "-" + hexid(svc + "u", 4) + "-4c1e-9b7a-" + hexid(svc + "x", 12),
        "generation": "14", "createTime": "2025-03-11T08:14:52.337104Z",
        "updateTime": "2026-11-18T15:02:41.918322Z", "creator": "ops-admin@shop.example.com",
        "lastModifier": "deployer@shop-prod.iam.gserviceaccount.com", "client": "gcloud",
        "ingress": ingress, "launchStage": "GA",
        "template": {"serviceAccount": sa or f"{svc}-runtime@{PROJECT}.iam.gserviceaccount.com",
                     "containers": [{"image": f"europe-west1-docker.pkg.dev/{PROJECT}/app/{svc}:v2",
                                     "ports": [{"name": "http1", "containerPort": 8080}]}],
                     "maxInstanceRequestConcurrency": 80, "timeout": "300s"},
        "traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}],
        "uri": f"https://{svc}-ab12cd34ef-ew.a.run.app",
        "urls": [f"https://{svc}-{NUMBER}.{REGION}.run.app", f"https://{svc}-ab12cd34ef-ew.a.run.app"],
        "conditions": [{"type": "RoutesReady", "state": "CONDITION_SUCCEEDED",
                        "lastTransitionTime": "2026-11-18T15:03:07.551920Z"}],
        "latestReadyRevision": f"projects/{PROJECT}/locations/{REGION}/services/{svc}/revisions/{svc}-00042-kx7",
        "latestCreatedRevision": f"projects/{PROJECT}/locations/{REGION}/services/{svc}/revisions/{svc}-00042-kx7",
        "observedGeneration": "14", "etag": "\"CKHw7MkGEMDbxbUD\"",
    }
    v.update(extra or {})
    return v


def policy(bindings):
    return {"bindings": [{"role": r, "members": m} for (r, m) in bindings], "etag": "BwYJ9wB1V6c=", "version": 1}


PROJECT_POLICY = policy([
    ("roles/editor", [f"serviceAccount:{NUMBER}-compute@developer.gserviceaccount.com"]),
    ("roles/owner", ["user:ops-admin@shop.example.com"]),
    ("roles/run.admin", [f"serviceAccount:terraform@{PROJECT}.iam.gserviceaccount.com",
                         f"serviceAccount:deployer@{PROJECT}.iam.gserviceaccount.com"]),
])


def scheduler_job(name, svc, sa):
    return {
        "attemptDeadline": "180s",
        "httpTarget": {"headers": {"User-Agent": "Google-Cloud-Scheduler"}, "httpMethod": "POST",
                       "oidcToken": {"audience": f"https://{svc}-{NUMBER}.{REGION}.run.app",
                                     "serviceAccountEmail": sa},
                       "uri": f"https://{svc}-{NUMBER}.{REGION}.run.app/jobs/{name}"},
        "name": f"projects/{PROJECT}/locations/{REGION}/jobs/{name}",
        "retryConfig": {"maxBackoffDuration": "3600s", "maxDoublings": 5, "maxRetryDuration": "0s",
                        "minBackoffDuration": "5s"},
        "schedule": "* * * * *", "state": "ENABLED", "status": {}, "timeZone": "Europe/Brussels",
        "userUpdateTime": "2026-11-03T10:15:27Z",
    }


def pubsub_sub(name, svc, sa):
    return {
        "ackDeadlineSeconds": 60,
        "expirationPolicy": {},
        "messageRetentionDuration": "604800s",
        "name": f"projects/{PROJECT}/subscriptions/{name}",
        "pushConfig": {"oidcToken": {"audience": f"https://{svc}-{NUMBER}.{REGION}.run.app",
                                     "serviceAccountEmail": sa},
                       "pushEndpoint": f"https://{svc}-{NUMBER}.{REGION}.run.app/pubsub"},
        "state": "ACTIVE",
        "topic": f"projects/{PROJECT}/topics/{name}",
    }


def every(start, end, step_s, jitter, rnd):
    t = start
    while t < end:
        yield t
        t += timedelta(seconds=step_s + rnd.uniform(-jitter, jitter))


T0 = datetime(2026, 11, 20, 10, 0, 0, tzinfo=timezone.utc)
# The window the bundle was recorded for, as `incidents --record` notes it.
WINDOW = 'args = ["--from", "2026-11-20T10:00:00Z", "--to", "2026-11-20T11:00:00Z"]\n'

SCHED_UA = "Google-Cloud-Scheduler"
PUBSUB_UA = "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"


def write(slug, files, expect):
    d = os.path.join(ROOT, slug)
    os.makedirs(d, exist_ok=True)
    for name, v in files.items():
        p = os.path.join(d, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            json.dump(v, f, indent=2, sort_keys=True)
            f.write("\n")
    os.makedirs(os.path.join(d, "expected"), exist_ok=True)
    with open(os.path.join(d, "expected", "incident.toml"), "w") as f:
        f.write(WINDOW + expect)


def newest_first(entries):
    return sorted(entries, key=lambda e: e["timestamp"], reverse=True)


def terraform_wipe():
    rnd = random.Random(1)
    svc = "orders-api"
    sa_checkout = f"checkout@{PROJECT}.iam.gserviceaccount.com"
    sa_sched = f"scheduler-invoker@{PROJECT}.iam.gserviceaccount.com"
    wipe = T0 + timedelta(minutes=14, seconds=32)
    logs = [
        # Distractors: a deploy of orders-api 25 minutes before, a grant on another service.
        replace_service_v1(T0 - timedelta(minutes=11), svc, "deployer@shop-prod.iam.gserviceaccount.com",
                           {"run.googleapis.com/ingress": "all"}),
        run_set_iam(T0 + timedelta(minutes=5), "billing-api", "ops-admin@shop.example.com",
                    [("ADD", "roles/run.invoker", f"serviceAccount:ledger@{PROJECT}.iam.gserviceaccount.com")]),
        # `terraform apply` of an authoritative google_cloud_run_service_iam_policy that lists
        # only the admin: every other binding goes.
        run_set_iam(wipe, svc, f"terraform@{PROJECT}.iam.gserviceaccount.com", [
            ("REMOVE", "roles/run.invoker", f"serviceAccount:{sa_checkout}"),
            ("REMOVE", "roles/run.invoker", f"serviceAccount:{sa_sched}"),
            ("ADD", "roles/run.admin", "user:ops-admin@shop.example.com"),
        ]),
    ]
    for t in every(wipe + timedelta(seconds=40), T0 + timedelta(minutes=45), 2.0, 1.5, rnd):
        logs.append(request(svc, t, 403, GATE_403, "Go-http-client/2.0", "/v1/orders"))
    for t in every(wipe + timedelta(seconds=28), T0 + timedelta(minutes=45), 60, 0.3, rnd):
        logs.append(request(svc, t, 403, GATE_403, SCHED_UA, "/jobs/sync-stock", ip="107.178.194.12"))
    files = {
        "logs.json": newest_first(logs),
        "project-iam-policy.json": PROJECT_POLICY,
        "caller-scheduler.json": scheduler_job("sync-stock", svc, sa_sched),
        f"services/{svc}/service.json": service_v2(svc),
        f"services/{svc}/service-iam-policy.json": policy([("roles/run.admin", ["user:ops-admin@shop.example.com"])]),
    }
    write("incidents-terraform-policy-wipe", files, f'''summary = "terraform apply of an authoritative google_cloud_run_service_iam_policy on orders-api wiped the invoker bindings of checkout and the Scheduler job"
exit = 1

# The caller behind Go-http-client is not in the evidence: the diagnosis cannot name it.
[[group]]
service = "{svc}"
status = 403
gate = "not_authenticated"
caller = "Go-http-client"
onset = "2026-11-20T10:15:"
change = "{logs[2]['insertId']}"
change_says = "removed roles/run.invoker from serviceAccount:{sa_checkout}"

[[group]]
service = "{svc}"
status = 403
gate = "not_authenticated"
caller = "Cloud Scheduler"
onset = "2026-11-20T10:15:"
change = "{logs[2]['insertId']}"
root_cause = "missing_invoker_binding"
''')


def sa_recreated():
    rnd = random.Random(2)
    svc = "ledger-api"
    sa = f"reconciler@{PROJECT}.iam.gserviceaccount.com"
    dele = T0 + timedelta(minutes=20, seconds=3)
    crea = T0 + timedelta(minutes=21, seconds=40)
    logs = [
        sa_op(dele, "Delete", sa, "ops-admin@shop.example.com", "112233445566778899001"),
        sa_op(crea, "Create", sa, "ops-admin@shop.example.com", "998877665544332211009"),
        # Distractor: a deploy of another service in the same minutes.
        update_service_v2(T0 + timedelta(minutes=19), "orders-api", "deployer@shop-prod.iam.gserviceaccount.com",
                          {"ingress": "INGRESS_TRAFFIC_ALL"}),
    ]
    for t in every(crea + timedelta(seconds=50), T0 + timedelta(minutes=50), 60, 0.3, rnd):
        logs.append(request(svc, t, 403, GATE_403, SCHED_UA, "/reconcile", ip="107.178.194.12"))
    files = {
        "logs.json": newest_first(logs),
        "project-iam-policy.json": PROJECT_POLICY,
        "caller-scheduler.json": scheduler_job("nightly-reconcile", svc, sa),
        f"services/{svc}/service.json": service_v2(svc),
        f"services/{svc}/service-iam-policy.json": policy([
            ("roles/run.invoker", [f"deleted:serviceAccount:{sa}?uid=112233445566778899001"])]),
    }
    write("incidents-sa-deleted-recreated", files, f'''summary = "a cleanup deleted the reconciler service account and re-created it under the same name; the service's binding names the deleted one"
exit = 1

[[group]]
service = "{svc}"
status = 403
gate = "not_authenticated"
caller = "Cloud Scheduler"
onset = "2026-11-20T10:22:"
change = "{logs[1]['insertId']}"
change_says = "CreateServiceAccount {sa}"
root_cause = "deleted_principal"
''')


def ingress_change():
    svc = "storefront"
    change = T0 + timedelta(minutes=30, seconds=11)
    logs = [
        # Distractor: a grant added on the same service, well before.
        run_set_iam(T0 + timedelta(minutes=8), svc, "ops-admin@shop.example.com",
                    [("ADD", "roles/run.invoker", "user:qa@shop.example.com")], v="v2"),
        update_service_v2(change, svc, "dev@shop.example.com", {
            "ingress": "INGRESS_TRAFFIC_INTERNAL_ONLY", "invokerIamDisabled": True,
            "template": {"containers": [{"image": f"europe-west1-docker.pkg.dev/{PROJECT}/app/{svc}:v9"}]}}),
    ]
    files = {
        "logs.json": newest_first(logs),
        "project-iam-policy.json": PROJECT_POLICY,
        f"services/{svc}/service.json": service_v2(svc, ingress="INGRESS_TRAFFIC_INTERNAL_ONLY",
                                                   extra={"invokerIamDisabled": True}),
        f"services/{svc}/service-iam-policy.json": policy([("roles/run.invoker", ["user:qa@shop.example.com"])]),
    }
    write("incidents-ingress-internal-only", files, f'''summary = "a developer set storefront's ingress to internal; browsers get 404 and Cloud Run logs nothing"
exit = 1

[[group]]
service = "{svc}"
status = 404
gate = "ingress"
caller = "callers from outside"
onset = "2026-11-20T10:30:11"
logged = false
change = "{logs[1]['insertId']}"
change_says = "ingress internal"
root_cause = "ingress_restricted"
''')


def caller_side():
    rnd = random.Random(4)
    svc = "payments-api"
    logs = [
        # Changes, but none that explains a 401 on payments-api in the 30 minutes before.
        run_set_iam(T0 - timedelta(minutes=50), svc, "ops-admin@shop.example.com",
                    [("ADD", "roles/run.invoker", f"serviceAccount:checkout@{PROJECT}.iam.gserviceaccount.com")]),
        replace_service_v1(T0 + timedelta(minutes=31), "orders-api", "deployer@shop-prod.iam.gserviceaccount.com",
                           {"run.googleapis.com/ingress": "all"}),
    ]
    for t in every(T0 + timedelta(minutes=40, seconds=5), T0 + timedelta(minutes=55), 4, 2, rnd):
        logs.append(request(svc, t, 401, GATE_401, "python-requests/2.32.3", "/v1/charge"))
    # Healthy traffic is not read: only refusals are.
    files = {
        "logs.json": newest_first(logs),
        "project-iam-policy.json": PROJECT_POLICY,
        f"services/{svc}/service.json": service_v2(svc),
        f"services/{svc}/service-iam-policy.json": policy([
            ("roles/run.invoker", [f"serviceAccount:checkout@{PROJECT}.iam.gserviceaccount.com"])]),
    }
    write("incidents-caller-side-no-change", files, f'''summary = "a new client release of the payments caller sends tokens Cloud Run rejects (401); nothing changed on the Google Cloud side"
exit = 0

[[group]]
service = "{svc}"
status = 401
gate = "not_authorized"
caller = "python-requests"
onset = "2026-11-20T10:40:0"
root_cause = "none"
''')


def two_services():
    rnd = random.Random(5)
    sched_sa = f"stock-sync@{PROJECT}.iam.gserviceaccount.com"
    push_sa = f"events-pusher@{PROJECT}.iam.gserviceaccount.com"
    deny = {
        "name": f"policies/cloudresourcemanager.googleapis.com%2Fprojects%2F{NUMBER}/denypolicies/freeze-events-pusher",
        "displayName": "Freeze events-pusher (INC-4412)",
        "kind": "DenyPolicy", "uid": "4c0f3a1e-7d55-4a51-9e0b-2b1f0c6d2e11", "etag": "BwZNC2VP1rM=",
        "createTime": ts(T0 + timedelta(minutes=25, seconds=2)),
        "updateTime": ts(T0 + timedelta(minutes=25, seconds=2)),
        "rules": [{"description": "events-pusher key leaked; deny invoke until rotated",
                   "denyRule": {"deniedPermissions": ["run.googleapis.com/routes.invoke"],
                                "deniedPrincipals": [f"principal://iam.googleapis.com/projects/-/serviceAccounts/{push_sa}"]}}],
    }
    proj_change = T0 + timedelta(minutes=12, seconds=5)
    deny_change = T0 + timedelta(minutes=25, seconds=2)
    logs = [
        project_set_iam(proj_change, "ops-admin@shop.example.com",
                        [("REMOVE", "roles/run.invoker", f"serviceAccount:{sched_sa}")]),
        deny_create(deny_change, "security@shop.example.com", deny),
    ]
    for t in every(proj_change + timedelta(seconds=55), T0 + timedelta(minutes=50), 60, 0.3, rnd):
        logs.append(request("inventory-api", t, 403, GATE_403, SCHED_UA, "/sync", ip="107.178.194.12"))
    for t in every(deny_change + timedelta(seconds=70), T0 + timedelta(minutes=50), 3, 2, rnd):
        logs.append(request("events-api", t, 403, GATE_403, PUBSUB_UA, "/pubsub", ip="66.102.6.12"))
    pp = json.loads(json.dumps(PROJECT_POLICY))
    files = {
        "logs.json": newest_first(logs),
        "project-iam-policy.json": pp,
        "deny-policies.json": [deny],
        "caller-scheduler.json": scheduler_job("stock-sync", "inventory-api", sched_sa),
        "caller-pubsub.json": pubsub_sub("order-events", "events-api", push_sa),
        "services/inventory-api/service.json": service_v2("inventory-api"),
        "services/inventory-api/service-iam-policy.json": policy([("roles/run.admin", ["user:ops-admin@shop.example.com"])]),
        "services/events-api/service.json": service_v2("events-api"),
        "services/events-api/service-iam-policy.json": policy([("roles/run.invoker", [f"serviceAccount:{push_sa}"])]),
    }
    write("incidents-two-services-two-causes", files, f'''summary = "at once: the Scheduler job of inventory-api lost its project-level invoker grant, and a deny policy froze the Pub/Sub pusher of events-api"
exit = 1

[[group]]
service = "events-api"
status = 403
gate = "not_authenticated"
caller = "Pub/Sub push"
onset = "2026-11-20T10:26:"
change = "{logs[1]['insertId']}"
change_says = "denies run.googleapis.com/routes.invoke"
root_cause = "deny_policy"

[[group]]
service = "inventory-api"
status = 403
gate = "not_authenticated"
caller = "Cloud Scheduler"
onset = "2026-11-20T10:13:"
change = "{logs[0]['insertId']}"
change_says = "removed roles/run.invoker from serviceAccount:{sched_sa} on projects/{PROJECT}"
root_cause = "missing_invoker_binding"
''')


def bench(out, n=50_000, services=20):
    """An hour of `n` refusals across `services` services, plus a wipe per service."""
    rnd = random.Random(7)
    logs = []
    names = [f"svc-{i:02d}" for i in range(services)]
    for i, s in enumerate(names):
        logs.append(run_set_iam(T0 + timedelta(minutes=2 * i, seconds=5), s,
                                f"terraform@{PROJECT}.iam.gserviceaccount.com",
                                [("REMOVE", "roles/run.invoker", f"serviceAccount:caller-{i}@{PROJECT}.iam.gserviceaccount.com")]))
    for k in range(n):
        i = rnd.randrange(services)
        t = T0 + timedelta(minutes=2 * i + 1, seconds=rnd.uniform(0, 3600 - 120 * i - 61))
        ua = [SCHED_UA, "Go-http-client/2.0", PUBSUB_UA][k % 3]
        e = request(names[i], t, 403, GATE_403, ua)
        e["insertId"] = hexid(f"bench{k}")
        logs.append(e)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "logs.json"), "w") as f:
        json.dump(newest_first(logs), f)
    with open(os.path.join(out, "project-iam-policy.json"), "w") as f:
        json.dump(PROJECT_POLICY, f)
    for s in names:
        d = os.path.join(out, "services", s)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "service.json"), "w") as f:
            json.dump(service_v2(s), f)
        with open(os.path.join(d, "service-iam-policy.json"), "w") as f:
            json.dump(policy([("roles/run.admin", ["group:platform@shop.example.com"])]), f)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--bench":
        bench(sys.argv[2])
    else:
        terraform_wipe()
        sa_recreated()
        ingress_change()
        caller_side()
        two_services()
