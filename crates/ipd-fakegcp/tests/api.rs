//! End-to-end tests of the fake over HTTP, against small bundles written in a tempdir with
//! the real shapes of `crates/ipd-model/testdata/` (copies of the reference examples).

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::time::Duration;

use ipd_fakegcp::{
    BundleOptions, FakeGcp, FakeOptions, Fault, IdentityOverrides, Running, Scenario, Source,
};
use serde_json::{Value, json};

const PROJECT_ID: &str = "shop-prod";
const NUMBER: &str = "123456789012";
const REGION: &str = "europe-west1";
const SERVICE: &str = "orders-api";

const GATE_403: &str = "The request was not authenticated. Either allow unauthenticated invocations or set the proper Authorization header. Read more at https://cloud.google.com/run/docs/securing/authenticating Additional troubleshooting documentation can be found at: https://cloud.google.com/run/docs/troubleshooting#unauthorized-client";

fn request_log(
    insert_id: &str,
    ts: &str,
    status: i64,
    severity: &str,
    text: Option<&str>,
) -> Value {
    let mut e = json!({
        "insertId": insert_id,
        "httpRequest": {
            "requestMethod": "GET",
            "requestUrl": format!("https://{SERVICE}-{NUMBER}.{REGION}.run.app/orders"),
            "requestSize": "733",
            "status": status,
            "userAgent": "curl/8.5.0",
            "remoteIp": "203.0.113.7",
            "latency": "0s",
            "protocol": "HTTP/1.1"
        },
        "resource": {"type": "cloud_run_revision", "labels": {
            "location": REGION, "configuration_name": SERVICE, "project_id": PROJECT_ID,
            "service_name": SERVICE, "revision_name": "orders-api-00007-abc"
        }},
        "timestamp": ts,
        "severity": severity,
        "labels": {"instanceId": "00f1"},
        "logName": format!("projects/{PROJECT_ID}/logs/run.googleapis.com%2Frequests"),
        "trace": format!("projects/{PROJECT_ID}/traces/6d1e82a184914a699a4638b5fed5ab90"),
        "receiveTimestamp": ts,
    });
    if let Some(t) = text {
        e["textPayload"] = json!(t);
    }
    e
}

fn logs() -> Value {
    let mut stdout = json!({
        "insertId": "s1",
        "textPayload": "listening on 8080",
        "resource": {"type": "cloud_run_revision", "labels": {"service_name": SERVICE, "location": REGION, "project_id": PROJECT_ID}},
        "timestamp": "2026-03-01T10:11:00Z",
        "logName": format!("projects/{PROJECT_ID}/logs/run.googleapis.com%2Fstdout"),
    });
    stdout["severity"] = json!("DEFAULT");
    // gcloud logging read: newest first.
    json!([
        stdout,
        request_log(
            "a3",
            "2026-03-01T10:10:00Z",
            401,
            "WARNING",
            Some("The request was not authorized to invoke this service.")
        ),
        request_log("a2", "2026-03-01T10:05:00.5Z", 200, "INFO", None),
        request_log(
            "a1",
            "2026-03-01T10:00:00.123456789Z",
            403,
            "WARNING",
            Some(GATE_403)
        ),
        request_log(
            "a0",
            "2026-03-01T10:00:00.123456789Z",
            403,
            "WARNING",
            Some(GATE_403)
        ),
    ])
}

fn v1_service() -> Value {
    json!({
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {
            "name": SERVICE,
            "namespace": NUMBER,
            "uid": "4d9c2cd0-a23c-499a-adaf-844db1fc7350",
            "generation": 7,
            "creationTimestamp": "2026-01-10T08:00:00.000000Z",
            "labels": {"cloud.googleapis.com/location": REGION, "team": "orders"},
            "annotations": {
                "run.googleapis.com/ingress": "internal-and-cloud-load-balancing",
                "run.googleapis.com/ingress-status": "internal-and-cloud-load-balancing",
                "run.googleapis.com/custom-audiences": "[\"https://orders.example.com\"]",
                "run.googleapis.com/urls": format!("[\"https://{SERVICE}-{NUMBER}.{REGION}.run.app\",\"https://{SERVICE}-x7k2qz-ew.a.run.app\"]"),
                "serving.knative.dev/creator": "dev@example.com"
            }
        },
        "spec": {"template": {
            "metadata": {"name": "orders-api-00007-abc"},
            "spec": {"serviceAccountName": "orders-runtime@shop-prod.iam.gserviceaccount.com",
                     "containers": [{"image": "europe-docker.pkg.dev/shop-prod/app/orders:1"}]}
        }},
        "status": {
            "url": format!("https://{SERVICE}-x7k2qz-ew.a.run.app"),
            "observedGeneration": 7,
            "latestReadyRevisionName": "orders-api-00007-abc",
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-10T08:01:00Z"},
                {"type": "RoutesReady", "status": "True"}
            ]
        }
    })
}

fn service_policy() -> Value {
    json!({
        "version": 3,
        "etag": "BwYq3kP3cXk=",
        "bindings": [
            {"role": "roles/run.invoker", "members": ["serviceAccount:caller@shop-prod.iam.gserviceaccount.com"]},
            {"role": "roles/run.invoker", "members": ["user:ana@example.com"],
             "condition": {"title": "until march", "expression": "request.time < timestamp('2026-03-01T00:00:00Z')"}}
        ]
    })
}

fn deny_policies() -> Value {
    json!([
        {
            "name": format!("policies/cloudresourcemanager.googleapis.com%2Fprojects%2F{NUMBER}/denypolicies/block-contractors"),
            "uid": "6665c437-a3b2-a018-6934-54dd16d3426e",
            "kind": "DenyPolicy",
            "displayName": "Block contractors",
            "etag": "MTc3NTU1NDQ3MA==",
            "createTime": "2026-02-01T00:00:00Z",
            "updateTime": "2026-02-01T00:00:00Z",
            "rules": [{"denyRule": {
                "deniedPrincipals": ["principalSet://goog/group/contractors@example.com"],
                "deniedPermissions": ["run.googleapis.com/routes.invoke"]
            }}]
        },
        {
            "name": "policies/cloudresourcemanager.googleapis.com%2Forganizations%2F222/denypolicies/org-wide",
            "kind": "DenyPolicy",
            "rules": [{"denyRule": {"deniedPrincipals": ["principalSet://goog/public:all"], "deniedPermissions": ["iam.googleapis.com/roles.delete"]}}]
        }
    ])
}

fn write(dir: &Path, name: &str, v: &Value) {
    std::fs::write(dir.join(name), serde_json::to_string_pretty(v).unwrap()).unwrap();
}

/// A bundle with every file kind.
fn full_bundle(dir: &Path) {
    write(dir, "service.json", &v1_service());
    write(dir, "service-iam-policy.json", &service_policy());
    write(
        dir,
        "project-iam-policy.json",
        &serde_json::from_str::<Value>(include_str!(
            "../../ipd-model/testdata/crm-v1-projects-getIamPolicy.gcpdiag-cloudrun1.json"
        ))
        .unwrap(),
    );
    write(
        dir,
        "folder-111-iam-policy.json",
        &json!({"version": 1, "etag": "BwF=", "bindings": [{"role": "roles/run.invoker", "members": ["group:ops@example.com"]}]}),
    );
    write(
        dir,
        "organization-222-iam-policy.json",
        &json!({"version": 1, "etag": "BwO=", "bindings": [{"role": "roles/owner", "members": ["user:boss@example.com"]}]}),
    );
    write(dir, "logs.json", &logs());
    write(
        dir,
        "org-policies.json",
        &json!([
            {"name": format!("projects/{NUMBER}/policies/run.managed.requireInvokerIam"), "etag": "x", "spec": {"etag": "y", "rules": [{"enforce": true}]}},
            {"constraint": "constraints/iam.allowedPolicyMemberDomains", "listPolicy": {"allowedValues": ["C0abc123"]}}
        ]),
    );
    write(
        dir,
        "role-invoker-lite.json",
        &json!({"name": "projects/shop-prod/roles/invokerLite", "title": "Invoker lite", "includedPermissions": ["run.routes.invoke"], "stage": "GA", "etag": "BwX="}),
    );
    write(
        dir,
        "role-org.json",
        &json!({"name": "organizations/222/roles/orgInvoker", "title": "Org invoker", "includedPermissions": ["run.routes.invoke"], "stage": "GA"}),
    );
    write(dir, "deny-policies.json", &deny_policies());
    std::fs::write(dir.join("token.txt"), "eyJhbGciOiJSUzI1NiJ9.e30.sig").unwrap();
    std::fs::write(dir.join("README.md"), "notes").unwrap();
}

struct Fx {
    fake: Running,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

struct Resp {
    status: u16,
    body: Value,
    headers: reqwest::header::HeaderMap,
}

impl Fx {
    async fn new(fill: impl FnOnce(&Path), options: FakeOptions) -> Fx {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path());
        let scenario = Scenario::from_bundle(dir.path()).unwrap();
        Fx::with(scenario, options, dir).await
    }

    async fn with(scenario: Scenario, options: FakeOptions, dir: tempfile::TempDir) -> Fx {
        let fake = FakeGcp::start(scenario, options).await.unwrap();
        Fx {
            fake,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.fake.base_url(), path.trim_start_matches('/'))
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Resp {
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Resp {
            status,
            body,
            headers,
        }
    }

    async fn get(&self, path: &str) -> Resp {
        self.send(self.http.get(self.url(path))).await
    }

    async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(self.http.post(self.url(path)).json(&body)).await
    }

    async fn entries(&self, body: Value) -> Resp {
        self.post("v2/entries:list", body).await
    }
}

fn svc_path(project: &str) -> String {
    format!("v2/projects/{project}/locations/{REGION}/services/{SERVICE}")
}

fn assert_envelope(r: &Resp, code: u16, status: &str) {
    assert_eq!(r.status, code, "{}", r.body);
    assert_eq!(r.body["error"]["code"], code, "{}", r.body);
    assert_eq!(r.body["error"]["status"], status, "{}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        r.body
    );
}

fn assert_denied(r: &Resp, permission: &str) {
    assert_envelope(r, 403, "PERMISSION_DENIED");
    let d = &r.body["error"]["details"][0];
    assert_eq!(d["@type"], "type.googleapis.com/google.rpc.ErrorInfo");
    assert_eq!(d["reason"], "IAM_PERMISSION_DENIED");
    assert_eq!(d["metadata"]["permission"], permission, "{}", r.body);
    let msg = r.body["error"]["message"].as_str().unwrap_or("");
    assert!(
        msg.starts_with(&format!("Permission '{permission}' denied on resource '")),
        "{msg}"
    );
}

// ---------------------------------------------------------------- loading

#[test]
fn bundle_identity_hierarchy_and_warnings() {
    let dir = tempfile::tempdir().unwrap();
    full_bundle(dir.path());
    let s = Scenario::from_bundle(dir.path()).unwrap();
    assert_eq!(
        (
            s.identity.project_id.as_str(),
            s.identity.project_number.as_str()
        ),
        (PROJECT_ID, NUMBER)
    );
    assert_eq!(
        (s.identity.region.as_str(), s.identity.service.as_str()),
        (REGION, SERVICE)
    );
    assert_eq!(
        s.project_parent,
        Some(ipd_fakegcp::Parent::Folder("111".into()))
    );
    assert_eq!(
        s.folders["111"].parent,
        Some(ipd_fakegcp::Parent::Organization("222".into()))
    );
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert!(s.warnings[0].contains("README.md"));

    let opts = BundleOptions {
        overrides: IdentityOverrides {
            project_number: Some("42".into()),
            service: Some("other".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let s = Scenario::from_bundle_with(dir.path(), &opts).unwrap();
    assert_eq!(s.identity.project_number, "42");
    assert_eq!(s.identity.service, "other");
}

#[test]
fn malformed_bundle_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("logs.json"), "[{\"insertId\": }]").unwrap();
    let e = Scenario::from_bundle(dir.path()).unwrap_err().to_string();
    assert!(e.contains("logs.json:1:"), "{e}");
    assert!(Scenario::from_bundle(dir.path().join("missing")).is_err());
}

// ---------------------------------------------------------------- Cloud Run

/// What gcloud 528 calls: Cloud Run v1 on the regional host, v1/v2 CRM paths, and the IAM v2
/// attachment point encoded twice.
#[tokio::test]
async fn gcloud_paths_answer_like_the_live_ones() {
    let fx = Fx::new(full_bundle, FakeOptions::new()).await;
    let knative = format!("apis/serving.knative.dev/v1/namespaces/{PROJECT_ID}/services/{SERVICE}");
    let on = |host: &str| {
        fx.http
            .get(fx.url(&knative))
            .header("host", format!("{host}:443"))
    };
    let r = fx.send(on(&format!("{REGION}-fake-gcp.test"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["apiVersion"], "serving.knative.dev/v1");
    assert_eq!(r.body["metadata"]["name"], SERVICE);
    // Another region's endpoint does not have it.
    let r = fx.send(on("asia-east1-fake-gcp.test")).await;
    assert_envelope(&r, 404, "NOT_FOUND");
    let list = fx
        .get(&format!(
            "apis/serving.knative.dev/v1/namespaces/{NUMBER}/services"
        ))
        .await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.body["kind"], "ServiceList");
    assert_eq!(list.body["items"][0]["metadata"]["name"], SERVICE);
    let anc = fx
        .post(&format!("v1/projects/{PROJECT_ID}:getAncestry"), json!({}))
        .await;
    assert_eq!(anc.status, 200, "{}", anc.body);
    assert_eq!(anc.body["ancestor"][0]["resourceId"]["type"], "project");
    let v1 = fx
        .post(&format!("v1/projects/{PROJECT_ID}:getIamPolicy"), json!({}))
        .await;
    let v3 = fx
        .post(&format!("v3/projects/{PROJECT_ID}:getIamPolicy"), json!({}))
        .await;
    assert_eq!(v1.status, 200, "{}", v1.body);
    assert_eq!(v1.body, v3.body);
    let svc_v1 = fx
        .get(&format!(
            "v1/projects/{PROJECT_ID}/locations/{REGION}/services/{SERVICE}:getIamPolicy"
        ))
        .await;
    assert_eq!(svc_v1.status, 200, "{}", svc_v1.body);
    let once = fx
        .get(&format!(
            "v2/policies/cloudresourcemanager.googleapis.com%2Fprojects%2F{PROJECT_ID}/denypolicies"
        ))
        .await;
    let twice = fx
        .get(&format!(
            "v2/policies/cloudresourcemanager.googleapis.com%252Fprojects%252F{PROJECT_ID}/denypolicies"
        ))
        .await;
    assert_eq!(twice.status, 200, "{}", twice.body);
    assert_eq!(once.body, twice.body);
    assert!(fx.fake.mutating_calls().is_empty());
}

#[tokio::test]
async fn run_service_from_v1_bundle_is_a_v2_resource() {
    let fx = Fx::new(full_bundle, FakeOptions::new()).await;
    for p in [PROJECT_ID, NUMBER] {
        let r = fx.get(&svc_path(p)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let s = &r.body;
        assert_eq!(
            s["name"],
            format!("projects/{PROJECT_ID}/locations/{REGION}/services/{SERVICE}")
        );
        assert_eq!(s["uri"], format!("https://{SERVICE}-x7k2qz-ew.a.run.app"));
        let urls: Vec<&str> = s["urls"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            urls.contains(&format!("https://{SERVICE}-{NUMBER}.{REGION}.run.app").as_str()),
            "{urls:?}"
        );
        assert_eq!(s["customAudiences"], json!(["https://orders.example.com"]));
        assert_eq!(s["ingress"], "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER");
        assert!(s.get("invokerIamDisabled").is_none(), "false is left out");
        assert!(s.get("iapEnabled").is_none());
        assert_eq!(
            s["template"]["serviceAccount"],
            "orders-runtime@shop-prod.iam.gserviceaccount.com"
        );
        assert_eq!(s["labels"], json!({"team": "orders"}));
        assert_eq!(s["generation"], "7", "int64 is a string");
        assert_eq!(s["terminalCondition"]["state"], "CONDITION_SUCCEEDED");
        assert!(s.get("status").is_none() && s.get("metadata").is_none());
        // The model crate reads it back the same way.
        let parsed = ipd_model::service::parse("x", &s.to_string()).unwrap();
        let ipd_model::doc::Doc::Value(svc) = parsed else {
            panic!("error")
        };
        assert_eq!(svc.format, ipd_model::service::ServiceFormat::AdminV2);
    }
    let r = fx
        .get(&format!(
            "v2/projects/{PROJECT_ID}/locations/{REGION}/services/nope"
        ))
        .await;
    assert_envelope(&r, 404, "NOT_FOUND");
    let r = fx
        .get(&format!(
            "v2/projects/{PROJECT_ID}/locations/us-central1/services/{SERVICE}"
        ))
        .await;
    assert_envelope(&r, 404, "NOT_FOUND");
    let r = fx.get(&svc_path("someone-else")).await;
    assert_denied(&r, "run.services.get");
}

#[tokio::test]
async fn run_service_v2_file_is_served_verbatim() {
    let list: Value = serde_json::from_str(include_str!(
        "../../ipd-model/testdata/run-v2-services-list.gcpdiag-cloudrun1.json"
    ))
    .unwrap();
    let mut svc = list["services"][0].clone();
    svc["invokerIamDisabled"] = json!(true);
    let expected = svc.clone();
    let fx = Fx::new(move |d| write(d, "service.json", &svc), FakeOptions::new()).await;
    let id = &fx.fake.scenario().identity;
    assert_eq!(
        (
            id.project_id.as_str(),
            id.region.as_str(),
            id.service.as_str()
        ),
        ("gcpdiag-cloudrun1-aaaa", "us-central1", "cloudrun1")
    );
    assert_eq!(
        id.project_number, "123456789012",
        "default when the bundle has no number"
    );
    let r = fx
        .get("v2/projects/gcpdiag-cloudrun1-aaaa/locations/us-central1/services/cloudrun1")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, expected);
}

#[tokio::test]
async fn missing_service_file_is_404_and_policy_is_empty() {
    let fx = Fx::new(|_| {}, FakeOptions::new()).await;
    assert_envelope(&fx.get(&svc_path(PROJECT_ID)).await, 404, "NOT_FOUND");
    let r = fx
        .get(&format!(
            "{}:getIamPolicy?options.requestedPolicyVersion=3",
            svc_path(PROJECT_ID)
        ))
        .await;
    assert_eq!((r.status, r.body.clone()), (200, json!({"etag": "ACAB"})));
    let r = fx
        .post(
            &format!("v3/projects/{PROJECT_ID}:getIamPolicy"),
            json!({"options": {"requestedPolicyVersion": 3}}),
        )
        .await;
    assert_eq!((r.status, r.body.clone()), (200, json!({"etag": "ACAB"})));
    let r = fx
        .entries(json!({"resourceNames": [format!("projects/{PROJECT_ID}")]}))
        .await;
    assert_eq!((r.status, r.body.clone()), (200, json!({})));
    let r = fx
        .get(&format!(
            "v2/policies/cloudresourcemanager.googleapis.com%2Fprojects%2F{PROJECT_ID}/denypolicies"
        ))
        .await;
    assert_eq!((r.status, r.body.clone()), (200, json!({})));
    let r = fx.get(&format!("v3/projects/{PROJECT_ID}")).await;
    assert_eq!(r.body["name"], format!("projects/{NUMBER}"));
    assert!(r.body.get("parent").is_none(), "no ancestors in the bundle");
}

#[tokio::test]
async fn run_services_list_paginates_and_rejects_the_wildcard() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "service.json", &v1_service());
    let mut sc = Scenario::from_bundle(dir.path()).unwrap();
    for n in ["billing", "cart", "zeta"] {
        sc.other_services.push(json!({"name": format!("projects/{PROJECT_ID}/locations/{REGION}/services/{n}"), "uri": format!("https://{n}-x.a.run.app")}));
    }
    sc.other_services.push(
        json!({"name": format!("projects/{PROJECT_ID}/locations/us-east1/services/elsewhere")}),
    );
    let fx = Fx::with(sc, FakeOptions::new(), dir).await;
    let base = format!("v2/projects/{NUMBER}/locations/{REGION}/services");
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &token {
            Some(t) => format!("{base}?pageSize=2&pageToken={t}"),
            None => format!("{base}?pageSize=2"),
        };
        let r = fx.get(&q).await;
        assert_eq!(r.status, 200, "{}", r.body);
        pages += 1;
        for s in r.body["services"].as_array().unwrap() {
            names.push(
                s["name"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string(),
            );
        }
        token = r
            .body
            .get("nextPageToken")
            .and_then(Value::as_str)
            .map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(names, ["billing", "cart", "orders-api", "zeta"]);
    let r = fx
        .get(&format!(
            "v2/projects/{PROJECT_ID}/locations/us-east1/services"
        ))
        .await;
    assert_eq!(r.body["services"].as_array().map(Vec::len), Some(1));
    let r = fx
        .get(&format!(
            "v2/projects/{PROJECT_ID}/locations/asia-east1/services"
        ))
        .await;
    assert_eq!((r.status, r.body.clone()), (200, json!({})));
    let r = fx
        .get(&format!("v2/projects/{PROJECT_ID}/locations/-/services"))
        .await;
    assert_envelope(&r, 400, "INVALID_ARGUMENT");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"-\" wildcard")
    );
    assert_envelope(
        &fx.get(&format!("{base}?pageToken=garbage")).await,
        400,
        "INVALID_ARGUMENT",
    );
    assert_envelope(
        &fx.get(&format!("{base}?pageSize=-1")).await,
        400,
        "INVALID_ARGUMENT",
    );
    assert_denied(
        &fx.get("v2/projects/other/locations/europe-west1/services")
            .await,
        "run.services.list",
    );
}

#[tokio::test]
async fn service_policy_versions_and_withcond() {
    let fx = Fx::new(full_bundle, FakeOptions::new()).await;
    let p = format!("{}:getIamPolicy", svc_path(PROJECT_ID));
    let r = fx
        .get(&format!("{p}?options.requestedPolicyVersion=3"))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, service_policy());
    for q in [
        "?options.requestedPolicyVersion=1",
        "",
        "?options.requestedPolicyVersion=0",
    ] {
        let r = fx.get(&format!("{p}{q}")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body["version"], 1);
        let b = &r.body["bindings"][1];
        assert!(
            b["role"]
                .as_str()
                .unwrap()
                .starts_with("roles/run.invoker_withcond_"),
            "{b}"
        );
        assert!(b.get("condition").is_none());
        assert_eq!(r.body["bindings"][0]["role"], "roles/run.invoker");
    }
    assert_envelope(
        &fx.get(&format!("{p}?options.requestedPolicyVersion=2"))
            .await,
        400,
        "INVALID_ARGUMENT",
    );
    assert_envelope(
        &fx.get(&format!(
            "v2/projects/{PROJECT_ID}/locations/{REGION}/services/nope:getIamPolicy"
        ))
        .await,
        404,
        "NOT_FOUND",
    );
    assert_denied(
        &fx.get(&format!(
            "v2/projects/x/locations/{REGION}/services/{SERVICE}:getIamPolicy"
        ))
        .await,
        "run.services.getIamPolicy",
    );
}

#[tokio::test]
async fn bundle_error_envelopes_are_served_with_their_code() {
    let denied: Value = serde_json::from_str(include_str!(
        "../../ipd-model/testdata/error-403-no-details.github-issue.json"
    ))
    .unwrap();
    let unavailable = json!({"error": {"status": "UNAVAILABLE", "message": "try later"}});
    let (d1, d2) = (denied.clone(), denied.clone());
    let fx = Fx::new(
        move |d| {
            write(d, "service-iam-policy.json", &d1);
            write(d, "logs.json", &unavailable);
            write(d, "org-policy-run.managed.requireInvokerIam.json", &d2);
            write(d, "service.json", &v1_service());
        },
        FakeOptions::new(),
    )
    .await;
    let r = fx
        .get(&format!(
            "{}:getIamPolicy?options.requestedPolicyVersion=3",
            svc_path(PROJECT_ID)
        ))
        .await;
    assert_eq!((r.status, r.body.clone()), (403, denied.clone()));
    let r = fx
        .entries(json!({"resourceNames": [format!("projects/{PROJECT_ID}")]}))
        .await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body["error"]["message"], "try later");
    let r = fx
        .get(&format!(
            "v2/projects/{PROJECT_ID}/policies/run.managed.requireInvokerIam:getEffectivePolicy"
        ))
        .await;
    assert_eq!((r.status, r.body.clone()), (403, denied));
}

// ---------------------------------------------------------------- Resource Manager

#[tokio::test]
async fn resource_manager_hierarchy_and_policies() {
    let fx = Fx::new(full_bundle, FakeOptions::new()).await;
    for p in [PROJECT_ID, NUMBER] {
        let r = fx.get(&format!("v3/projects/{p}")).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body,
            json!({"name": format!("projects/{NUMBER}"), "parent": "folders/111", "projectId": PROJECT_ID, "state": "ACTIVE", "displayName": PROJECT_ID})
        );
    }
    let r = fx.get("v3/folders/111").await;
    assert_eq!(r.body["parent"], "organizations/222");
    assert_eq!(r.body["state"], "ACTIVE");
    let r = fx.get("v3/organizations/222").await;
    assert_eq!(r.body["name"], "organizations/222");
    assert_denied(
        &fx.get("v3/folders/999").await,
        "resourcemanager.folders.get",
    );
    assert_denied(
        &fx.get("v3/organizations/999").await,
        "resourcemanager.organizations.get",
    );
    assert_denied(
        &fx.get("v3/projects/nope").await,
        "resourcemanager.projects.get",
    );

    let body = json!({"options": {"requestedPolicyVersion": 3}});
    let r = fx
        .post(&format!("v3/projects/{NUMBER}:getIamPolicy"), body.clone())
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["bindings"].as_array().map(Vec::len), Some(7));
    let r = fx.post("v3/folders/111:getIamPolicy", body.clone()).await;
    assert_eq!(r.body["bindings"][0]["members"][0], "group:ops@example.com");
    let r = fx
        .post("v3/organizations/222:getIamPolicy", json!({}))
        .await;
    assert_eq!(r.body["bindings"][0]["role"], "roles/owner");
    let r = fx
        .send(fx.http.post(fx.url("v3/organizations/222:getIamPolicy")))
        .await;
    assert_eq!(r.status, 200, "an empty body is accepted");
    assert_denied(
        &fx.post("v3/projects/nope:getIamPolicy", body.clone()).await,
        "resourcemanager.projects.getIamPolicy",
    );
    assert_denied(
        &fx.post("v3/folders/999:getIamPolicy", body.clone()).await,
        "resourcemanager.folders.getIamPolicy",
    );
    assert_denied(
        &fx.post("v3/organizations/9:getIamPolicy", body).await,
        "resourcemanager.organizations.getIamPolicy",
    );
    let bad = fx
        .send(
            fx.http
                .post(fx.url("v3/folders/111:getIamPolicy"))
                .body("{not json"),
        )
        .await;
    assert_envelope(&bad, 400, "INVALID_ARGUMENT");
    let r = fx
        .post(
            "v3/folders/111:getIamPolicy",
            json!({"options": {"requestedPolicyVersion": 7}}),
        )
        .await;
    assert_envelope(&r, 400, "INVALID_ARGUMENT");
    // The version goes in the body: GET is not this method.
    let r = fx
        .get(&format!("v3/projects/{PROJECT_ID}:getIamPolicy"))
        .await;
    assert_envelope(&r, 404, "NOT_FOUND");
    assert!(fx.fake.mutating_calls().is_empty());
}

#[tokio::test]
async fn get_ancestry_is_one_answer_bottom_up() {
    let two_folders = |dir: &Path| {
        full_bundle(dir);
        write(dir, "folder-333-iam-policy.json", &json!({"etag": "BwX="}));
    };
    let fx = Fx::new(two_folders, FakeOptions::new()).await;
    let want = json!({"ancestor": [
        {"resourceId": {"type": "project", "id": PROJECT_ID}},
        {"resourceId": {"type": "folder", "id": "111"}},
        {"resourceId": {"type": "folder", "id": "333"}},
        {"resourceId": {"type": "organization", "id": "222"}},
    ]});
    // The same chain the v3 walk finds, one hop at a time.
    assert_eq!(fx.get("v3/folders/111").await.body["parent"], "folders/333");
    assert_eq!(
        fx.get("v3/folders/333").await.body["parent"],
        "organizations/222"
    );
    for p in [PROJECT_ID, NUMBER] {
        let r = fx
            .post(&format!("v1/projects/{p}:getAncestry"), json!({}))
            .await;
        assert_eq!(r.status, 200, "{p}");
        assert_eq!(r.body, want, "{p}");
    }
    // gcloud sends no body at all; that is an empty request too.
    let r = fx
        .send(
            fx.http
                .post(fx.url(&format!("v1/projects/{PROJECT_ID}:getAncestry"))),
        )
        .await;
    assert_eq!(r.body, want);
    let r = fx
        .post("v1/projects/someone-else:getAncestry", json!({}))
        .await;
    assert_envelope(&r, 403, "PERMISSION_DENIED");
    assert_eq!(
        r.body["error"]["message"],
        "The caller does not have permission"
    );
    assert_eq!(r.body["error"]["errors"][0]["domain"], "global");
    let bad = fx
        .send(
            fx.http
                .post(fx.url(&format!("v1/projects/{PROJECT_ID}:getAncestry")))
                .body("[1]"),
        )
        .await;
    assert_envelope(&bad, 400, "INVALID_ARGUMENT");
    // v3 has no getAncestry, and GET is not the method.
    let r = fx
        .post(&format!("v3/projects/{PROJECT_ID}:getAncestry"), json!({}))
        .await;
    assert_envelope(&r, 404, "NOT_FOUND");
    let r = fx
        .get(&format!("v1/projects/{PROJECT_ID}:getAncestry"))
        .await;
    assert_envelope(&r, 404, "NOT_FOUND");
    let sources: Vec<_> = fx.fake.calls().iter().filter_map(|c| c.source).collect();
    assert_eq!(
        sources
            .iter()
            .filter(|s| **s == Source::ProjectsGetAncestry)
            .count(),
        5
    );
    assert!(fx.fake.mutating_calls().is_empty());
}

// ---------------------------------------------------------------- Logging

fn ids(r: &Resp) -> Vec<String> {
    r.body["entries"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["insertId"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn logging_filters_orders_and_pages() {
    let fx = Fx::new(full_bundle, FakeOptions::new()).await;
    let rn = json!([format!("projects/{PROJECT_ID}")]);
    let filter = format!(
        "resource.type=\"cloud_run_revision\"\nresource.labels.service_name=\"{SERVICE}\"\nlogName=\"projects/{NUMBER}/logs/run.googleapis.com%2Frequests\"\nhttpRequest.status>=400\ntimestamp>=\"2026-03-01T00:00:00Z\""
    );
    let r = fx
        .entries(json!({"resourceNames": rn, "filter": filter, "orderBy": "timestamp desc"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        ids(&r),
        ["a3", "a1", "a0"],
        "newest first; equal timestamps by insertId"
    );
    assert!(r.body.get("nextPageToken").is_none());
    let r = fx
        .entries(json!({"resourceNames": rn, "filter": "httpRequest.status=(401 OR 403)"}))
        .await;
    assert_eq!(
        ids(&r),
        ["a0", "a1", "a3"],
        "default order is timestamp asc"
    );
    let r = fx
        .entries(json!({"resourceNames": rn, "filter": "log_id(\"run.googleapis.com/stdout\")"}))
        .await;
    assert_eq!(ids(&r), ["s1"]);
    let r = fx.entries(json!({"resourceNames": rn, "filter": "severity>=WARNING AND NOT textPayload:\"not authorized\""})).await;
    assert_eq!(ids(&r), ["a0", "a1"]);
    let r = fx.entries(json!({"resourceNames": rn, "filter": "timestamp>\"2026-03-01T10:05:00Z\" timestamp<\"2026-03-01T10:05:01Z\""})).await;
    assert_eq!(ids(&r), ["a2"], "timestamps compare as instants");

    // Paging: pageSize 2 over 5 entries.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut body = json!({"resourceNames": rn, "orderBy": "timestamp desc", "pageSize": 2});
        if let Some(t) = &token {
            body["pageToken"] = json!(t);
        }
        let r = fx.entries(body).await;
        assert_eq!(r.status, 200, "{}", r.body);
        pages += 1;
        seen.extend(ids(&r));
        token = r
            .body
            .get("nextPageToken")
            .and_then(Value::as_str)
            .map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["s1", "a3", "a2", "a1", "a0"]);
    // A token from another query is refused.
    let r = fx
        .entries(json!({"resourceNames": rn, "pageSize": 2}))
        .await;
    let tok = r.body["nextPageToken"].as_str().unwrap().to_string();
    let r = fx.entries(json!({"resourceNames": rn, "pageSize": 2, "filter": "severity=INFO", "pageToken": tok})).await;
    assert_envelope(&r, 400, "INVALID_ARGUMENT");
    // Default page size is 50: everything fits.
    let r = fx
        .entries(json!({"resourceNames": [format!("projects/{NUMBER}")]}))
        .await;
    assert_eq!(ids(&r).len(), 5);
    // Only other containers: no entries.
    let r = fx
        .entries(json!({"resourceNames": ["organizations/222"]}))
        .await;
    assert_eq!(r.body, json!({}));
}

#[tokio::test]
async fn logging_rejects_bad_requests() {
    let fx = Fx::new(full_bundle, FakeOptions::new()).await;
    let rn = json!([format!("projects/{PROJECT_ID}")]);
    for (body, code) in [
        (json!({}), 400),
        (json!({"resourceNames": []}), 400),
        (json!({"resourceNames": ["buckets/x"]}), 400),
        (
            json!({"resourceNames": rn, "orderBy": "insertId desc"}),
            400,
        ),
        (json!({"resourceNames": rn, "pageSize": -1}), 400),
        (
            json!({"resourceNames": rn, "filter": "\"just some text\""}),
            400,
        ),
        (
            json!({"resourceNames": rn, "filter": "textPayload=~\"auth.*\""}),
            400,
        ),
        (
            json!({"resourceNames": rn, "filter": "SEARCH(\"denied\")"}),
            400,
        ),
        (
            json!({"resourceNames": rn, "filter": "severity=ERROR and httpRequest.status=403"}),
            400,
        ),
        (
            json!({"resourceNames": rn, "filter": "httpRequest.status=403)"}),
            400,
        ),
        (
            json!({"resourceNames": rn, "filter": "timestamp>=\"last tuesday\""}),
            400,
        ),
        (json!({"resourceNames": ["projects/someone-else"]}), 403),
    ] {
        let r = fx.entries(body.clone()).await;
        assert_eq!(r.status, code, "{body} -> {}", r.body);
        if code == 400 {
            assert_envelope(&r, 400, "INVALID_ARGUMENT");
        }
    }
    let r = fx
        .entries(json!({"resourceNames": rn, "filter": "severity=ERROR\n\"free text\""}))
        .await;
    let msg = r.body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("global restriction") && msg.contains("line 2, column 1"),
        "{msg}"
    );
    assert_denied(
        &fx.entries(json!({"resourceNames": ["projects/someone-else"]}))
            .await,
        "logging.logEntries.list",
    );
}

#[tokio::test]
async fn logging_can_answer_empty_pages_first() {
    let fx = Fx::new(full_bundle, FakeOptions::new().logging_empty_pages(2)).await;
    let rn = json!([format!("projects/{PROJECT_ID}")]);
    let mut body = json!({"resourceNames": rn, "filter": "httpRequest.status=403"});
    let mut got = Vec::new();
    for _ in 0..5 {
        let r = fx.entries(body.clone()).await;
        got.push(ids(&r).len());
        match r.body.get("nextPageToken").and_then(Value::as_str) {
            Some(t) => body["pageToken"] = json!(t),
            None => break,
        }
    }
    assert_eq!(got, [0, 0, 2]);
}

// ---------------------------------------------------------------- Org Policy

#[tokio::test]
async fn org_policy_effective_policies() {
    let fx = Fx::new(full_bundle, FakeOptions::new()).await;
    let r = fx
        .get(&format!(
            "v2/projects/{PROJECT_ID}/policies/run.managed.requireInvokerIam:getEffectivePolicy"
        ))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!({"name": format!("projects/{NUMBER}/policies/run.managed.requireInvokerIam"), "spec": {"rules": [{"enforce": true}]}}),
        "number form, no etag"
    );
    let r = fx
        .get(&format!(
            "v2/projects/{NUMBER}/policies/iam.allowedPolicyMemberDomains:getEffectivePolicy"
        ))
        .await;
    assert_eq!(
        r.body["spec"]["rules"][0]["values"]["allowedValues"],
        json!(["C0abc123"])
    );
    let r = fx
        .get(&format!(
            "v2/projects/{PROJECT_ID}/policies/run.allowedIngress:getEffectivePolicy"
        ))
        .await;
    assert_eq!(
        r.body,
        json!({"name": format!("projects/{NUMBER}/policies/run.allowedIngress"), "spec": {}})
    );
    let r = fx
        .get("v2/folders/111/policies/run.managed.requireInvokerIam:getEffectivePolicy")
        .await;
    assert_eq!(
        r.body["name"],
        "folders/111/policies/run.managed.requireInvokerIam"
    );
    assert_denied(
        &fx.get("v2/folders/5/policies/x:getEffectivePolicy").await,
        "orgpolicy.policy.get",
    );
    // With the prefix the name has one more segment: not the API's path.
    let r = fx
        .get(&format!(
            "v2/projects/{PROJECT_ID}/policies/constraints/run.allowedIngress:getEffectivePolicy"
        ))
        .await;
    assert_envelope(&r, 404, "NOT_FOUND");

    let none = Fx::new(|_| {}, FakeOptions::new()).await;
    let r = none
        .get(&format!(
            "v2/projects/{PROJECT_ID}/policies/run.managed.requireInvokerIam:getEffectivePolicy"
        ))
        .await;
    assert_denied(&r, "orgpolicy.policy.get");
}

// ---------------------------------------------------------------- IAM

#[tokio::test]
async fn iam_roles() {
    let fx = Fx::new(full_bundle, FakeOptions::new()).await;
    for p in [PROJECT_ID, NUMBER] {
        let r = fx.get(&format!("v1/projects/{p}/roles/invokerLite")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body["includedPermissions"], json!(["run.routes.invoke"]));
    }
    assert_eq!(
        fx.get("v1/organizations/222/roles/orgInvoker").await.status,
        200
    );
    // Predefined roles of invoker-doctor's table are served (gcloud iam roles describe).
    let inv = fx.get("v1/roles/run.invoker").await;
    assert_eq!(inv.status, 200, "{}", inv.body);
    assert_eq!(inv.body["name"], "roles/run.invoker");
    assert_eq!(
        inv.body["includedPermissions"],
        json!(["run.routes.invoke"])
    );
    assert_envelope(&fx.get("v1/roles/no.suchRole").await, 404, "NOT_FOUND");
    assert_envelope(
        &fx.get(&format!("v1/projects/{PROJECT_ID}/roles/nope"))
            .await,
        404,
        "NOT_FOUND",
    );
    assert_denied(
        &fx.get("v1/projects/other/roles/invokerLite").await,
        "iam.roles.get",
    );
}

#[tokio::test]
async fn iam_deny_policies_on_the_raw_path() {
    let fx = Fx::new(full_bundle, FakeOptions::new()).await;
    for p in [PROJECT_ID, NUMBER] {
        let r = fx
            .get(&format!(
                "v2/policies/cloudresourcemanager.googleapis.com%2Fprojects%2F{p}/denypolicies"
            ))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let list = r.body["policies"].as_array().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(
            list[0]["name"],
            format!(
                "policies/cloudresourcemanager.googleapis.com%2Fprojects%2F{NUMBER}/denypolicies/block-contractors"
            )
        );
        assert!(list[0].get("rules").is_none(), "list returns metadata only");
        assert_eq!(list[0]["displayName"], "Block contractors");
    }
    let name = list_first_name(&fx).await;
    let r = fx.get(&format!("v2/{name}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["rules"][0]["denyRule"]["deniedPermissions"],
        json!(["run.googleapis.com/routes.invoke"])
    );
    let r = fx
        .get("v2/policies/cloudresourcemanager.googleapis.com%2Forganizations%2F222/denypolicies")
        .await;
    assert_eq!(r.body["policies"][0]["kind"], "DenyPolicy");
    let r = fx
        .get("v2/policies/cloudresourcemanager.googleapis.com%2Ffolders%2F111/denypolicies")
        .await;
    assert_eq!((r.status, r.body.clone()), (200, json!({})));
    let r = fx.get(&format!("v2/policies/cloudresourcemanager.googleapis.com%2Fprojects%2F{PROJECT_ID}/denypolicies/nope")).await;
    assert_envelope(&r, 404, "NOT_FOUND");
    // `/` not encoded: a different (unknown) path.
    let r = fx
        .get(&format!(
            "v2/policies/cloudresourcemanager.googleapis.com/projects/{PROJECT_ID}/denypolicies"
        ))
        .await;
    assert_envelope(&r, 404, "NOT_FOUND");
    assert_denied(
        &fx.get("v2/policies/cloudresourcemanager.googleapis.com%2Fprojects%2Fother/denypolicies")
            .await,
        "iam.denypolicies.list",
    );
    assert_envelope(
        &fx.get("v2/policies/storage.googleapis.com%2Fb/denypolicies")
            .await,
        400,
        "INVALID_ARGUMENT",
    );
    let calls = fx.fake.calls_to(Source::IamDenyPolicies);
    assert!(
        calls[0].path.contains("%2Fprojects%2F"),
        "the raw path is recorded: {}",
        calls[0].path
    );
}

async fn list_first_name(fx: &Fx) -> String {
    let r = fx
        .get(&format!(
            "v2/policies/cloudresourcemanager.googleapis.com%2Fprojects%2F{PROJECT_ID}/denypolicies"
        ))
        .await;
    r.body["policies"][0]["name"].as_str().unwrap().to_string()
}

// ---------------------------------------------------------------- callers and tokeninfo

const JOB: &str = "projects/shop-prod/locations/europe-west1/jobs/daily-order-report";
const QUEUE: &str = "projects/shop-prod/locations/europe-west1/queues/send-receipts";
const TASK: &str = "projects/shop-prod/locations/europe-west1/queues/send-receipts/tasks/3810";
const TRIGGER: &str = "projects/shop-prod/locations/europe-west1/triggers/order-import";
const WORKFLOW: &str = "projects/shop-prod/locations/europe-west1/workflows/fulfilment";

fn subscription() -> Value {
    json!({
        "name": "projects/shop-prod/subscriptions/orders-push",
        "topic": "projects/shop-prod/topics/orders",
        "pushConfig": {
            "pushEndpoint": format!("https://{SERVICE}-{NUMBER}.{REGION}.run.app/push"),
            "oidcToken": {"serviceAccountEmail": "push@shop-prod.iam.gserviceaccount.com"}
        },
        "ackDeadlineSeconds": 10,
        "state": "ACTIVE"
    })
}

/// The full bundle plus one caller configuration of each kind.
fn callers_bundle(dir: &Path) {
    full_bundle(dir);
    write(dir, "caller-subscription.json", &subscription());
    // A subscription in another project, pushing to this service.
    write(
        dir,
        "caller-subscription-other.json",
        &json!({"name": "projects/analytics-prod/subscriptions/orders-mirror", "topic": "projects/shop-prod/topics/orders", "pushConfig": {}}),
    );
    write(
        dir,
        "caller-job.json",
        &json!({"name": JOB, "schedule": "0 7 * * *", "state": "ENABLED", "httpTarget": {
            "uri": format!("https://{SERVICE}-{NUMBER}.{REGION}.run.app/jobs/daily"),
            "httpMethod": "POST",
            "oidcToken": {"serviceAccountEmail": "scheduler@shop-prod.iam.gserviceaccount.com"}}}),
    );
    write(
        dir,
        "caller-queue.json",
        &json!({"name": QUEUE, "state": "RUNNING", "httpTarget": {"uriOverride": {"host": "orders.example.com"}}}),
    );
    write(
        dir,
        "caller-task.json",
        &json!({"name": TASK, "httpRequest": {
            "url": format!("https://{SERVICE}-{NUMBER}.{REGION}.run.app/tasks/receipt"),
            "httpMethod": "POST", "headers": {"Content-Type": "application/json"},
            "body": "eyJvcmRlciI6IDF9"}, "dispatchCount": 4}),
    );
    write(
        dir,
        "caller-trigger.json",
        &json!({"name": TRIGGER, "serviceAccount": "events@shop-prod.iam.gserviceaccount.com",
            "destination": {"cloudRun": {"service": SERVICE, "region": REGION, "path": "/events"}},
            "eventFilters": [{"attribute": "type", "value": "google.cloud.storage.object.v1.finalized"}]}),
    );
    write(
        dir,
        "caller-workflow.json",
        &json!({"name": WORKFLOW, "revisionId": "000004-6d1", "state": "ACTIVE",
            "serviceAccount": "projects/shop-prod/serviceAccounts/wf@shop-prod.iam.gserviceaccount.com",
            "sourceContents": "main:\n  steps:\n    - call:\n        call: http.get\n"}),
    );
}

#[tokio::test]
async fn caller_configurations_are_served_at_their_names() {
    let fx = Fx::new(callers_bundle, FakeOptions::new().token("s3cret-token")).await;
    assert!(
        fx.fake
            .scenario()
            .warnings
            .iter()
            .all(|w| !w.contains("caller"))
    );
    let get = |path: String| fx.send(fx.http.get(fx.url(&path)).bearer_auth("s3cret-token"));
    // Each at its API's path, verbatim; the project may be named by number.
    let r = get("v1/projects/shop-prod/subscriptions/orders-push".into()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, subscription());
    let r = get(format!("v1/projects/{NUMBER}/subscriptions/orders-push")).await;
    assert_eq!(r.body, subscription());
    let r = get("v1/projects/analytics-prod/subscriptions/orders-mirror".into()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    for (path, name) in [
        (format!("v1/{JOB}"), JOB),
        (format!("v2/{QUEUE}"), QUEUE),
        (format!("v1/{TRIGGER}"), TRIGGER),
        (format!("v1/{WORKFLOW}"), WORKFLOW),
    ] {
        let r = get(path.clone()).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.body["name"], name);
        let model = ipd_model::caller::CallerConfig::from_value(&r.body);
        assert!(model.is_some(), "{path}: not a caller configuration");
    }
    // Cloud Tasks: BASIC (the default) leaves out the body, FULL keeps it.
    let r = get(format!("v2/{TASK}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["view"], "BASIC");
    assert_eq!(r.body["httpRequest"]["httpMethod"], "POST");
    assert!(r.body["httpRequest"].get("body").is_none(), "{}", r.body);
    let r = get(format!("v2/{TASK}?responseView=FULL")).await;
    assert_eq!(r.body["view"], "FULL");
    assert_eq!(r.body["httpRequest"]["body"], "eyJvcmRlciI6IDF9");
    assert_envelope(
        &get(format!("v2/{TASK}?responseView=EVERYTHING")).await,
        400,
        "INVALID_ARGUMENT",
    );
    // Workflows: the latest revision, or the one named.
    assert_eq!(
        get(format!("v1/{WORKFLOW}?revisionId=000004")).await.status,
        200
    );
    assert_eq!(
        get(format!("v1/{WORKFLOW}?revisionId=000004-6d1"))
            .await
            .status,
        200
    );
    assert_envelope(
        &get(format!("v1/{WORKFLOW}?revisionId=000001")).await,
        404,
        "NOT_FOUND",
    );
    // A name the bundle does not hold: Pub/Sub's wording, or the generic one.
    let r = get("v1/projects/shop-prod/subscriptions/orders-psh".into()).await;
    assert_envelope(&r, 404, "NOT_FOUND");
    assert_eq!(
        r.body["error"]["message"],
        "Resource not found (resource=orders-psh)."
    );
    let r = get("v1/projects/shop-prod/locations/europe-west1/jobs/nope".into()).await;
    assert_envelope(&r, 404, "NOT_FOUND");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("jobs/nope")
    );
    for path in [
        format!("v2/{QUEUE}/tasks/999"),
        "v1/projects/shop-prod/locations/europe-west1/triggers/nope".into(),
        "v1/projects/shop-prod/locations/europe-west1/workflows/nope".into(),
        "v2/projects/shop-prod/locations/europe-west1/queues/nope".into(),
    ] {
        assert_envelope(&get(path).await, 404, "NOT_FOUND");
    }
    // A project the fake knows nothing of: refused, as resources one cannot see are.
    assert_denied(
        &get("v1/projects/elsewhere/subscriptions/s".into()).await,
        "pubsub.subscriptions.get",
    );
    assert_denied(
        &get("v2/projects/elsewhere/locations/l/queues/q/tasks/t".into()).await,
        "cloudtasks.tasks.get",
    );
    // Still a bearer-token API.
    assert_envelope(
        &fx.get("v1/projects/shop-prod/subscriptions/orders-push")
            .await,
        401,
        "UNAUTHENTICATED",
    );
    let sources: Vec<Option<Source>> = fx.fake.calls().iter().map(|c| c.source).collect();
    for &s in Source::CALLERS {
        assert!(sources.contains(&Some(s)), "{s} never routed");
    }
    // What these APIs could change is refused and flagged.
    let auth = |rb: reqwest::RequestBuilder| rb.bearer_auth("s3cret-token");
    let before = fx.fake.mutating_calls().len();
    assert_eq!(before, 0);
    for rb in [
        fx.http
            .post(fx.url("v1/projects/shop-prod/subscriptions/orders-push:pull")),
        fx.http
            .post(fx.url("v1/projects/shop-prod/subscriptions/orders-push:modifyPushConfig")),
        fx.http
            .patch(fx.url("v1/projects/shop-prod/subscriptions/orders-push")),
        fx.http.post(fx.url(&format!("v1/{JOB}:run"))),
        fx.http.delete(fx.url(&format!("v2/{TASK}"))),
        fx.http.post(fx.url(&format!("v1/{WORKFLOW}/executions"))),
    ] {
        assert_eq!(fx.send(auth(rb)).await.status, 405);
    }
    assert_eq!(fx.fake.mutating_calls().len(), 6);
    let r = get("v1/projects/shop-prod/subscriptions/orders-push".into()).await;
    assert_eq!(r.body, subscription(), "the scenario is untouched");
}

#[tokio::test]
async fn caller_error_envelopes_and_faults() {
    let deny = json!({"error": {"code": 403, "status": "PERMISSION_DENIED",
        "message": "User not authorized to perform this action."}});
    let fx = Fx::new(
        |d| {
            write(d, "caller-subscription.json", &deny);
            write(
                d,
                "caller-job.json",
                &json!({"name": JOB, "httpTarget": {"uri": "https://x"}}),
            );
        },
        FakeOptions::new().fail(Source::SchedulerJobsGet, Fault::first(503, 1)),
    )
    .await;
    // The bundle's envelope answers for the collection its file name says.
    let r = fx.get("v1/projects/shop-prod/subscriptions/anything").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body, deny);
    assert_envelope(&fx.get(&format!("v2/{QUEUE}")).await, 404, "NOT_FOUND");
    // Faults apply as anywhere else.
    assert_envelope(&fx.get(&format!("v1/{JOB}")).await, 503, "UNAVAILABLE");
    assert_eq!(fx.get(&format!("v1/{JOB}")).await.status, 200);
}

/// An unsigned JWT with `claims`.
fn jwt(claims: &Value) -> String {
    use base64::Engine;
    let e = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.c2ln",
        e(&json!({"alg": "RS256", "typ": "JWT"})),
        e(claims)
    )
}

#[tokio::test]
async fn tokeninfo_tells_whose_the_token_is() {
    let opts = FakeOptions::new()
        .token("s3cret-token")
        .identity("user:bob@shop.example.com");
    let fx = Fx::new(|_| {}, opts).await;
    // No Authorization header: the token is the parameter. GET is accepted too.
    for rb in [
        fx.http
            .post(fx.url("oauth2/v2/tokeninfo?access_token=s3cret-token")),
        fx.http
            .get(fx.url("oauth2/v2/tokeninfo?access_token=s3cret-token")),
    ] {
        let r = fx.send(rb).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["email"], "bob@shop.example.com");
        assert_eq!(r.body["verified_email"], true);
        assert_eq!(r.body["expires_in"], 3599);
        assert_eq!(r.body["issued_to"], ipd_model::token::GCLOUD_CLIENT_ID);
        assert_eq!(r.body["audience"], ipd_model::token::GCLOUD_CLIENT_ID);
        assert!(r.body["scope"].as_str().unwrap().contains("userinfo.email"));
        let uid = r.body["user_id"].as_str().unwrap();
        assert!(
            uid.len() == 21 && uid.chars().all(|c| c.is_ascii_digit()),
            "{uid}"
        );
    }
    // A token it does not know: OAuth's error shape, not Google's API envelope.
    let r = fx
        .post("oauth2/v2/tokeninfo?access_token=ya29.other", json!(null))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        json!({"error": "invalid_token", "error_description": "Invalid Value"})
    );
    let r = fx.post("oauth2/v2/tokeninfo", json!(null)).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "invalid_request");
    // A Google ID token is read from its claims; an expired one or another issuer's is not.
    let now = chrono::Utc::now().timestamp();
    let id = jwt(
        &json!({"iss": "https://accounts.google.com", "aud": "https://x.run.app",
        "azp": "1234", "sub": "1099", "email": "ci@shop-prod.iam.gserviceaccount.com",
        "email_verified": true, "iat": now, "exp": now + 600}),
    );
    let r = fx
        .post(&format!("oauth2/v2/tokeninfo?id_token={id}"), json!(null))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["email"], "ci@shop-prod.iam.gserviceaccount.com");
    assert_eq!(r.body["audience"], "https://x.run.app");
    assert_eq!(r.body["issued_to"], "1234");
    assert_eq!(r.body["user_id"], "1099");
    assert!(
        r.body["expires_in"]
            .as_i64()
            .is_some_and(|s| s > 0 && s <= 600)
    );
    for bad in [
        jwt(&json!({"iss": "https://accounts.google.com", "aud": "a", "exp": now - 10})),
        jwt(&json!({"iss": "https://auth.example.com", "aud": "a", "exp": now + 600})),
        "not-a-jwt".to_string(),
    ] {
        let r = fx
            .post(&format!("oauth2/v2/tokeninfo?id_token={bad}"), json!(null))
            .await;
        assert_eq!(r.body["error"], "invalid_token", "{bad}");
    }
    let calls = fx.fake.calls();
    assert!(
        calls
            .iter()
            .all(|c| c.source == Some(Source::OAuth2TokenInfo))
    );
    assert!(calls.iter().all(|c| !c.authorization));
    assert!(fx.fake.mutating_calls().is_empty());
    let dump = format!("{calls:?}");
    assert!(!dump.contains("s3cret") && !dump.contains(&id), "{dump}");

    // Without an identity, the token's answer names no email (no userinfo.email scope).
    let fx = Fx::new(|_| {}, FakeOptions::new().token("t")).await;
    let r = fx
        .post("oauth2/v2/tokeninfo?access_token=t", json!(null))
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.get("email").is_none(), "{}", r.body);
}

// ---------------------------------------------------------------- auth, faults, guard

#[tokio::test]
async fn bearer_token_is_required_and_never_recorded() {
    let fx = Fx::new(full_bundle, FakeOptions::new().token("s3cret-token")).await;
    let r = fx.get(&svc_path(PROJECT_ID)).await;
    assert_envelope(&r, 401, "UNAUTHENTICATED");
    assert_eq!(
        r.body["error"]["details"][0]["reason"],
        "CREDENTIALS_MISSING"
    );
    assert!(r.headers.get("www-authenticate").is_some());
    let r = fx
        .send(
            fx.http
                .get(fx.url(&svc_path(PROJECT_ID)))
                .bearer_auth("wrong"),
        )
        .await;
    assert_envelope(&r, 401, "UNAUTHENTICATED");
    let r = fx
        .send(fx.http.get(fx.url(&format!(
            "{}?access_token=s3cret-token",
            svc_path(PROJECT_ID)
        ))))
        .await;
    assert_eq!(r.status, 401, "only the header is accepted");
    let r = fx
        .send(
            fx.http
                .get(fx.url(&svc_path(PROJECT_ID)))
                .bearer_auth("s3cret-token"),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = fx
        .send(
            fx.http
                .post(fx.url("v2/entries:list"))
                .bearer_auth("s3cret-token")
                .json(&json!({"resourceNames": [format!("projects/{PROJECT_ID}")]})),
        )
        .await;
    assert_eq!(r.status, 200);
    let calls = fx.fake.calls();
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        [401, 401, 401, 200, 200]
    );
    assert_eq!(
        calls.iter().map(|c| c.authorization).collect::<Vec<_>>(),
        [false, true, false, true, true]
    );
    let dump = format!("{calls:?}");
    assert!(!dump.contains("s3cret"), "{dump}");
}

#[tokio::test]
async fn faults_deny_throttle_and_recover() {
    let opts = FakeOptions::new()
        .fail(Source::ProjectsGetIamPolicy, Fault::deny())
        .fail(Source::LoggingEntriesList, Fault::first(429, 2))
        .fail(Source::RunServicesGet, Fault::first(503, 1))
        .retry_after(7);
    let fx = Fx::new(full_bundle, opts).await;
    let r = fx
        .post(&format!("v3/projects/{PROJECT_ID}:getIamPolicy"), json!({}))
        .await;
    assert_denied(&r, "resourcemanager.projects.getIamPolicy");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("'projects/{PROJECT_ID}'"))
    );
    let parsed = ipd_model::doc::ApiError::from_envelope(&r.body).unwrap();
    assert!(parsed.is_permission_denied());

    let body = json!({"resourceNames": [format!("projects/{PROJECT_ID}")]});
    for _ in 0..2 {
        let r = fx.entries(body.clone()).await;
        assert_envelope(&r, 429, "RESOURCE_EXHAUSTED");
        assert_eq!(
            r.headers.get("retry-after").and_then(|v| v.to_str().ok()),
            Some("7")
        );
    }
    assert_eq!(fx.entries(body).await.status, 200);

    let r = fx.get(&svc_path(PROJECT_ID)).await;
    assert_envelope(&r, 503, "UNAVAILABLE");
    assert_eq!(
        r.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("7")
    );
    assert_eq!(fx.get(&svc_path(PROJECT_ID)).await.status, 200);

    // Changed while running.
    fx.fake
        .set_fault(Source::RunServicesGet, Some(Fault::deny()));
    assert_denied(&fx.get(&svc_path(PROJECT_ID)).await, "run.services.get");
    fx.fake.set_fault(Source::RunServicesGet, None);
    assert_eq!(fx.get(&svc_path(PROJECT_ID)).await.status, 200);

    let injected: Vec<_> = fx
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.injected)
        .map(|c| (c.source, c.status))
        .collect();
    assert_eq!(
        injected,
        [
            (Some(Source::ProjectsGetIamPolicy), 403),
            (Some(Source::LoggingEntriesList), 429),
            (Some(Source::LoggingEntriesList), 429),
            (Some(Source::RunServicesGet), 503),
            (Some(Source::RunServicesGet), 403),
        ]
    );
}

#[tokio::test]
async fn every_source_can_be_denied_with_its_permission() {
    let mut opts = FakeOptions::new();
    for s in Source::ALL {
        opts = opts.fail(*s, Fault::deny());
    }
    let fx = Fx::new(full_bundle, opts).await;
    let deny = format!(
        "v2/policies/cloudresourcemanager.googleapis.com%2Fprojects%2F{PROJECT_ID}/denypolicies"
    );
    let cases: Vec<(Resp, &str)> = vec![
        (fx.get(&svc_path(PROJECT_ID)).await, "run.services.get"),
        (
            fx.get(&format!(
                "v2/projects/{PROJECT_ID}/locations/{REGION}/services"
            ))
            .await,
            "run.services.list",
        ),
        (
            fx.get(&format!("{}:getIamPolicy", svc_path(PROJECT_ID)))
                .await,
            "run.services.getIamPolicy",
        ),
        (
            fx.get(&format!("v3/projects/{PROJECT_ID}")).await,
            "resourcemanager.projects.get",
        ),
        (
            fx.get("v3/folders/111").await,
            "resourcemanager.folders.get",
        ),
        (
            fx.get("v3/organizations/222").await,
            "resourcemanager.organizations.get",
        ),
        (
            fx.post(&format!("v3/projects/{PROJECT_ID}:getIamPolicy"), json!({}))
                .await,
            "resourcemanager.projects.getIamPolicy",
        ),
        (
            fx.post("v3/folders/111:getIamPolicy", json!({})).await,
            "resourcemanager.folders.getIamPolicy",
        ),
        (
            fx.post("v3/organizations/222:getIamPolicy", json!({}))
                .await,
            "resourcemanager.organizations.getIamPolicy",
        ),
        (
            fx.entries(json!({"resourceNames": [format!("projects/{PROJECT_ID}")]}))
                .await,
            "logging.logEntries.list",
        ),
        (
            fx.get(&format!(
                "v2/projects/{PROJECT_ID}/policies/x:getEffectivePolicy"
            ))
            .await,
            "orgpolicy.policy.get",
        ),
        (
            fx.get("v2/organizations/987654321098/customConstraints")
                .await,
            "orgpolicy.customConstraints.list",
        ),
        (
            fx.get(&format!("v1/projects/{PROJECT_ID}/roles/invokerLite"))
                .await,
            "iam.roles.get",
        ),
        (fx.get(&deny).await, "iam.denypolicies.list"),
        (
            fx.get(&format!(
                "v1/projects/{PROJECT_ID}/subscriptions/orders-push"
            ))
            .await,
            "pubsub.subscriptions.get",
        ),
        (
            fx.get(&format!("v1/{JOB}")).await,
            "cloudscheduler.jobs.get",
        ),
        (
            fx.get(&format!("v2/{QUEUE}")).await,
            "cloudtasks.queues.get",
        ),
        (
            fx.get(&format!("v2/{QUEUE}/tasks/1")).await,
            "cloudtasks.tasks.get",
        ),
        (
            fx.get(&format!("v1/{TRIGGER}")).await,
            "eventarc.triggers.get",
        ),
        (
            fx.get(&format!("v1/{WORKFLOW}")).await,
            "workflows.workflows.get",
        ),
    ];
    for (r, perm) in &cases {
        assert_denied(r, perm);
    }
    // Resource Manager v1 refuses in its own (legacy) envelope, naming no permission.
    let r = fx
        .post(&format!("v1/projects/{PROJECT_ID}:getAncestry"), json!({}))
        .await;
    assert_envelope(&r, 403, "PERMISSION_DENIED");
    assert_eq!(r.body["error"]["errors"][0]["reason"], "forbidden");
    let r = fx
        .post("v3/iam:troubleshoot", troubleshoot_request(ALICE))
        .await;
    assert_denied(&r, "run.services.getIamPolicy");
    // tokeninfo checks no permission: a refusal there is its `invalid_token`.
    let r = fx
        .post("oauth2/v2/tokeninfo?access_token=x", json!(null))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "invalid_token");
    assert_eq!(fx.fake.calls().len(), Source::ALL.len());
    assert!(fx.fake.calls().iter().all(|c| c.injected));
}

#[tokio::test]
async fn latency_is_applied_and_recorded() {
    let opts = FakeOptions::new()
        .latency(Duration::from_millis(5))
        .source_latency(Source::LoggingEntriesList, Duration::from_millis(20));
    let fx = Fx::new(full_bundle, opts).await;
    fx.get(&svc_path(PROJECT_ID)).await;
    fx.entries(json!({"resourceNames": [format!("projects/{PROJECT_ID}")]}))
        .await;
    let calls = fx.fake.calls();
    assert_eq!(calls[0].latency, Duration::from_millis(5));
    assert_eq!(calls[1].latency, Duration::from_millis(25));
    assert_eq!(calls[1].source, Some(Source::LoggingEntriesList));
    assert_eq!(
        calls[1]
            .body_json()
            .and_then(|b| b["resourceNames"][0].as_str().map(str::to_string))
            .as_deref(),
        Some("projects/shop-prod")
    );
}

#[tokio::test]
async fn scenario_marked_failure_applies() {
    let dir = tempfile::tempdir().unwrap();
    full_bundle(dir.path());
    let sc = Scenario::from_bundle(dir.path())
        .unwrap()
        .fail(Source::OrganizationsGetIamPolicy, Fault::always(503));
    let fx = Fx::with(sc, FakeOptions::new(), dir).await;
    assert_envelope(
        &fx.post("v3/organizations/222:getIamPolicy", json!({}))
            .await,
        503,
        "UNAVAILABLE",
    );
}

#[tokio::test]
async fn mutating_calls_are_refused_and_flagged() {
    let fx = Fx::new(full_bundle, FakeOptions::new()).await;
    let svc = svc_path(PROJECT_ID);
    let set =
        json!({"policy": {"bindings": [{"role": "roles/run.invoker", "members": ["allUsers"]}]}});
    let mut refused = vec![
        fx.post(&format!("{svc}:setIamPolicy"), set.clone()).await,
        fx.post(&format!("v3/projects/{PROJECT_ID}:setIamPolicy"), set)
            .await,
        fx.send(
            fx.http
                .patch(fx.url(&svc))
                .json(&json!({"invokerIamDisabled": true})),
        )
        .await,
        fx.send(fx.http.delete(fx.url(&svc))).await,
        fx.post(
            &format!("v2/projects/{PROJECT_ID}/locations/{REGION}/services?serviceId=x"),
            json!({}),
        )
        .await,
        fx.send(fx.http.put(fx.url("v1/projects/p/roles/r"))).await,
        fx.post("v2/entries:write", json!({})).await,
    ];
    for r in refused.drain(..) {
        assert_eq!(r.status, 405, "{}", r.body);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("read-only")
        );
    }
    // Not mutating: unknown reads and read-only methods the fake does not serve.
    assert_envelope(&fx.get("v9/whatever").await, 404, "NOT_FOUND");
    assert_envelope(
        &fx.post("v1/projects/p/serviceAccounts/a:getIamPolicy", json!({}))
            .await,
        404,
        "NOT_FOUND",
    );
    let m = fx.fake.mutating_calls();
    assert_eq!(m.len(), 7);
    assert_eq!(m[0].method, "POST");
    assert!(m[0].path.ends_with(":setIamPolicy"));
    assert_eq!(m[2].method, "PATCH");
    assert!(m.iter().all(|c| c.status == 405 && c.source.is_none()));
    assert_eq!(fx.fake.calls().len(), 9);
    // The scenario is untouched.
    let r = fx
        .get(&format!(
            "{svc}:getIamPolicy?options.requestedPolicyVersion=3"
        ))
        .await;
    assert_eq!(r.body, service_policy());
}

// ---------------------------------------------------------------- Policy Troubleshooter

const ALICE: &str = "alice@shop.example.com";

fn full_resource_name(project: &str) -> String {
    format!("//run.googleapis.com/projects/{project}/locations/{REGION}/services/{SERVICE}")
}

fn troubleshoot_request(principal: &str) -> Value {
    json!({"accessTuple": {
        "principal": principal,
        "fullResourceName": full_resource_name(PROJECT_ID),
        "permission": "run.routes.invoke",
        "conditionContext": {"request": {"receiveTime": "2026-03-01T10:00:00.123Z"}}
    }})
}

fn troubleshoot_answer() -> Value {
    json!({
        "accessTuple": {
            "principal": ALICE,
            "fullResourceName": full_resource_name(PROJECT_ID),
            "permission": "run.routes.invoke",
            "permissionFqdn": "run.googleapis.com/routes.invoke"
        },
        "overallAccessState": "CAN_ACCESS",
        "allowPolicyExplanation": {"allowAccessState": "ALLOW_ACCESS_STATE_GRANTED"}
    })
}

fn troubleshoot_bundle(dir: &Path) {
    full_bundle(dir);
    write(dir, "troubleshoot.json", &troubleshoot_answer());
}

#[tokio::test]
async fn policy_troubleshooter_answers_the_stored_question_only() {
    let fx = Fx::new(troubleshoot_bundle, FakeOptions::new()).await;
    // troubleshoot.json is a file of the bundle, not an unknown one.
    assert!(
        !fx.fake
            .scenario()
            .warnings
            .iter()
            .any(|w| w.contains("troubleshoot.json"))
    );
    let r = fx
        .post("v3/iam:troubleshoot", troubleshoot_request(ALICE))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, troubleshoot_answer());
    // The project by number, the email in another case: the same question.
    let mut q = troubleshoot_request("Alice@Shop.Example.com");
    q["accessTuple"]["fullResourceName"] = json!(full_resource_name(NUMBER));
    q["accessTuple"]
        .as_object_mut()
        .unwrap()
        .remove("conditionContext");
    assert_eq!(fx.post("v3/iam:troubleshoot", q).await.status, 200);
    // Another principal, resource or permission: the fake cannot answer it, and says so.
    let r = fx
        .post(
            "v3/iam:troubleshoot",
            troubleshoot_request("bob@shop.example.com"),
        )
        .await;
    assert_envelope(&r, 400, "INVALID_ARGUMENT");
    let msg = r.body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(ALICE) && msg.contains("bob@shop.example.com"),
        "{msg}"
    );
    let mut q = troubleshoot_request(ALICE);
    q["accessTuple"]["permission"] = json!("run.services.get");
    assert_envelope(
        &fx.post("v3/iam:troubleshoot", q).await,
        400,
        "INVALID_ARGUMENT",
    );
    let mut q = troubleshoot_request(ALICE);
    q["accessTuple"]["fullResourceName"] = json!(full_resource_name("other-project"));
    assert_envelope(
        &fx.post("v3/iam:troubleshoot", q).await,
        400,
        "INVALID_ARGUMENT",
    );
    // What was asked is recorded; nothing counts as mutating.
    let asked: Vec<String> = fx
        .fake
        .calls_to(Source::PolicyTroubleshooterIamTroubleshoot)
        .iter()
        .filter_map(|c| c.body_json())
        .filter_map(|b| b["accessTuple"]["principal"].as_str().map(str::to_string))
        .collect();
    assert_eq!(asked[0], ALICE);
    assert_eq!(asked[2], "bob@shop.example.com");
    assert!(fx.fake.mutating_calls().is_empty());
}

#[tokio::test]
async fn policy_troubleshooter_validates_the_request() {
    let fx = Fx::new(troubleshoot_bundle, FakeOptions::new()).await;
    for field in ["principal", "fullResourceName", "permission"] {
        let mut q = troubleshoot_request(ALICE);
        q["accessTuple"].as_object_mut().unwrap().remove(field);
        let r = fx.post("v3/iam:troubleshoot", q.clone()).await;
        assert_envelope(&r, 400, "INVALID_ARGUMENT");
        q["accessTuple"][field] = json!("");
        let r = fx.post("v3/iam:troubleshoot", q).await;
        assert_envelope(&r, 400, "INVALID_ARGUMENT");
    }
    assert_envelope(
        &fx.post("v3/iam:troubleshoot", json!({})).await,
        400,
        "INVALID_ARGUMENT",
    );
    // A member-syntax principal, a misspelt field, a time that is not RFC 3339.
    let r = fx
        .post(
            "v3/iam:troubleshoot",
            troubleshoot_request(&format!("user:{ALICE}")),
        )
        .await;
    assert_envelope(&r, 400, "INVALID_ARGUMENT");
    let mut q = troubleshoot_request(ALICE);
    q["accessTuple"]["conditionContext"]["request"] =
        json!({"recieveTime": "2026-03-01T10:00:00Z"});
    let r = fx.post("v3/iam:troubleshoot", q).await;
    assert_envelope(&r, 400, "INVALID_ARGUMENT");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Unknown name \"recieveTime\" at 'access_tuple.condition_context.request'"),
        "{}",
        r.body
    );
    let mut q = troubleshoot_request(ALICE);
    q["principal"] = json!(ALICE);
    assert_envelope(
        &fx.post("v3/iam:troubleshoot", q).await,
        400,
        "INVALID_ARGUMENT",
    );
    let mut q = troubleshoot_request(ALICE);
    q["accessTuple"]["conditionContext"]["request"]["receiveTime"] = json!("yesterday");
    assert_envelope(
        &fx.post("v3/iam:troubleshoot", q).await,
        400,
        "INVALID_ARGUMENT",
    );
    // Only POST: a GET is an unknown path, a PUT could change state.
    assert_envelope(&fx.get("v3/iam:troubleshoot").await, 404, "NOT_FOUND");
    let r = fx
        .send(
            fx.http
                .put(fx.url("v3/iam:troubleshoot"))
                .json(&troubleshoot_request(ALICE)),
        )
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(fx.fake.mutating_calls().len(), 1);
}

#[tokio::test]
async fn policy_troubleshooter_without_an_answer_is_not_enabled() {
    // No troubleshoot.json: the envelope Google answers when the API is off, exactly as the
    // fixture recorded it.
    let fx = Fx::new(full_bundle, FakeOptions::new()).await;
    let r = fx
        .post("v3/iam:troubleshoot", troubleshoot_request(ALICE))
        .await;
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "../../fixtures/crosscheck-troubleshooter-api-disabled-healthy/troubleshoot.json",
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.body, fixture);
    let api = ipd_model::doc::ApiError::from_envelope(&r.body).unwrap();
    assert_eq!(api.reason.as_deref(), Some("SERVICE_DISABLED"));
    // A stored envelope is answered with its code, after the request is checked.
    let fx = Fx::new(
        |d| {
            full_bundle(d);
            write(
                d,
                "troubleshoot.json",
                &json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Quota exceeded."}}),
            );
        },
        FakeOptions::new(),
    )
    .await;
    let r = fx
        .post("v3/iam:troubleshoot", troubleshoot_request("bob@x.example"))
        .await;
    assert_envelope(&r, 429, "RESOURCE_EXHAUSTED");
    assert_envelope(
        &fx.post("v3/iam:troubleshoot", json!({})).await,
        400,
        "INVALID_ARGUMENT",
    );
}

#[tokio::test]
async fn policy_troubleshooter_needs_the_bearer_token_and_takes_faults() {
    let opts = FakeOptions::new().token("s3cret-token").fail(
        Source::PolicyTroubleshooterIamTroubleshoot,
        Fault::first(503, 1),
    );
    let fx = Fx::new(troubleshoot_bundle, opts).await;
    let r = fx
        .post("v3/iam:troubleshoot", troubleshoot_request(ALICE))
        .await;
    assert_envelope(&r, 401, "UNAUTHENTICATED");
    let authed = || {
        fx.http
            .post(fx.url("v3/iam:troubleshoot"))
            .bearer_auth("s3cret-token")
            .json(&troubleshoot_request(ALICE))
    };
    assert_envelope(&fx.send(authed()).await, 503, "UNAVAILABLE");
    let r = fx.send(authed()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let calls = fx
        .fake
        .calls_to(Source::PolicyTroubleshooterIamTroubleshoot);
    assert_eq!(
        calls
            .iter()
            .map(|c| (c.status, c.injected))
            .collect::<Vec<_>>(),
        [(401, false), (503, true), (200, false)]
    );
    assert!(!format!("{calls:?}").contains("s3cret"));
}

// ---------------------------------------------------------------- lifecycle and binary

fn raw_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn background_server_for_synchronous_callers() {
    let dir = tempfile::tempdir().unwrap();
    full_bundle(dir.path());
    let fake = FakeGcp::start_in_background(
        Scenario::from_bundle(dir.path()).unwrap(),
        FakeOptions::new(),
    )
    .unwrap();
    assert!(fake.base_url().starts_with("http://127.0.0.1:") && fake.base_url().ends_with('/'));
    let resp = raw_get(fake.addr(), &format!("/v3/projects/{PROJECT_ID}"));
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"projectId\": \"shop-prod\""), "{resp}");
    assert_eq!(fake.calls().len(), 1);
    let addr = fake.addr();
    drop(fake);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "stopped on drop"
    );
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let fake = FakeGcp::start(Scenario::default(), FakeOptions::new())
        .await
        .unwrap();
    let addr = fake.addr();
    let r = reqwest::get(format!("{}v3/projects/{PROJECT_ID}", fake.base_url()))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    fake.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[test]
fn binary_prints_the_base_url_and_serves_the_bundle() {
    let dir = tempfile::tempdir().unwrap();
    full_bundle(dir.path());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fake-gcp"))
        .args([
            "--bundle",
            dir.path().to_str().unwrap(),
            "--token",
            "tok",
            "--fail",
            "iam.roles.get=429x1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let base = line.trim().to_string();
    let result = std::panic::catch_unwind(|| {
        assert!(
            base.starts_with("http://127.0.0.1:") && base.ends_with('/'),
            "{base:?}"
        );
        let addr: std::net::SocketAddr = base
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap();
        let resp = raw_get(addr, &format!("/v3/projects/{PROJECT_ID}"));
        assert!(resp.starts_with("HTTP/1.1 401"), "token required: {resp}");
    });
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("tok)") && !stderr.contains("\"tok\""),
        "{stderr}"
    );
    assert!(stderr.contains("README.md"), "warnings on stderr: {stderr}");
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_fake-gcp"))
        .args(["--bundle"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

// ---------------------------------------------------------------- the repository's fixtures

/// Every fixture bundle that the model crate can read is served so that the same evidence
/// comes back over HTTP (whatever fixtures exist; none are required).
#[tokio::test]
async fn fixture_bundles_round_trip_through_the_apis() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let Ok(rd) = std::fs::read_dir(&root) else {
        return;
    };
    let mut dirs: Vec<_> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        // Incident bundles keep each service in services/S/, which the fake serves and a
        // single-service load does not read: crates/invoker-doctor/tests/it/incidents.rs
        // checks them live.
        .filter(|p| p.is_dir() && !p.join("services").is_dir())
        .collect();
    dirs.sort();
    let http = reqwest::Client::new();
    let mut served = 0;
    for dir in dirs {
        let Ok(loaded) = ipd_model::bundle::load(&dir, ipd_model::Inputs::default()) else {
            continue;
        };
        served += 1;
        let ev = loaded.evidence;
        let sc = match Scenario::from_bundle(&dir) {
            Ok(s) => s,
            Err(e) => panic!(
                "{}: the model reads it but the fake does not: {e}",
                dir.display()
            ),
        };
        let id = sc.identity.clone();
        let fake = FakeGcp::start(sc, FakeOptions::new()).await.unwrap();
        let base = fake.base_url();
        let what = dir.display().to_string();

        let r = http
            .get(format!(
                "{base}v2/projects/{}/locations/{}/services/{}",
                id.project_id, id.region, id.service
            ))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        match &ev.service {
            ipd_model::Gathered::Present(want) => {
                assert_eq!(status, 200, "{what}: {text}");
                let ipd_model::doc::Doc::Value(got) =
                    ipd_model::service::parse("served", &text).unwrap()
                else {
                    panic!("{what}")
                };
                assert_eq!(got.name, want.name, "{what}");
                assert_eq!(
                    got.invoker_iam_disabled, want.invoker_iam_disabled,
                    "{what}"
                );
                assert_eq!(got.ingress, want.ingress, "{what}");
                assert_eq!(
                    got.default_url_disabled, want.default_url_disabled,
                    "{what}"
                );
                assert_eq!(got.custom_audiences, want.custom_audiences, "{what}");
                assert_eq!(
                    got.runtime_service_account, want.runtime_service_account,
                    "{what}"
                );
                let served: Vec<&String> = got.all_urls().collect();
                for u in &want.urls {
                    assert!(served.contains(&u), "{what}: {u} not served in {served:?}");
                }
            }
            ipd_model::Gathered::Missing { .. } => assert_eq!(status, 404, "{what}"),
            _ => assert!(status >= 400, "{what}"),
        }

        let r = http
            .get(format!("{base}v2/projects/{}/locations/{}/services/{}:getIamPolicy?options.requestedPolicyVersion=3", id.project_id, id.region, id.service))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        match &ev.service_policy {
            ipd_model::Gathered::Present(want) => {
                let got: ipd_model::iam::Policy = serde_json::from_value(body).unwrap();
                assert_eq!(&got, want, "{what}");
            }
            ipd_model::Gathered::Missing { .. } => {
                assert_eq!(body, json!({"etag": "ACAB"}), "{what}")
            }
            _ => assert_eq!(status, 403, "{what}"),
        }

        let r = http
            .post(format!("{base}v2/entries:list"))
            .json(&json!({"resourceNames": [format!("projects/{}", id.project_id)], "pageSize": 1000}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        match &ev.logs {
            ipd_model::Gathered::Present(want) => {
                assert_eq!(status, 200, "{what}: {body}");
                let n = body["entries"].as_array().map(Vec::len).unwrap_or(0);
                assert_eq!(n, want.len(), "{what}");
            }
            ipd_model::Gathered::Missing { .. } => assert_eq!(body, json!({}), "{what}"),
            _ => assert!(status >= 400, "{what}"),
        }

        for p in ev.org_policies.present().into_iter().flatten() {
            let Some(c) = ipd_model::orgpolicy::constraint_of(p) else {
                continue;
            };
            let r = http
                .get(format!(
                    "{base}v2/projects/{}/policies/{c}:getEffectivePolicy",
                    id.project_id
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200, "{what}: {c}");
            let got: ipd_model::orgpolicy::OrgPolicy = r.json().await.unwrap();
            let (a, b) = (
                ipd_model::orgpolicy::Effective::from_policy(&got),
                ipd_model::orgpolicy::Effective::from_policy(p),
            );
            assert_eq!(a, b, "{what}: {c}");
        }
        fake.shutdown().await;
    }
    eprintln!("{served} fixture bundles served");
}
