//! Serves a generated [`Org`] the way `scan` reads it, on the real paths:
//!
//! | source | method and path |
//! |---|---|
//! | `cloudasset.searchAllResources` | `GET /v1/{scope}:searchAllResources?assetTypes=T[&assetTypes=...]&readMask=M&pageSize=N&pageToken=X` |
//! | `cloudasset.searchAllIamPolicies` | `GET /v1/{scope}:searchAllIamPolicies?query=Q&pageSize=N&pageToken=X` |
//! | `logging.entries.list` | `POST /v2/entries:list` (Admin Activity entries; the [`crate::filter`] subset) |
//! | `orgpolicy.getEffectivePolicy` | `GET /v2/projects/{n}/policies/{c}:getEffectivePolicy` |
//! | `run.services.get` | `GET /v2/projects/{p}/locations/{l}/services/{s}` |
//! | callers' `get` | `GET /v1/projects/{p}/subscriptions/{s}`, `/v1/.../jobs/{j}`, `/v2/.../queues/{q}`, `/v1/.../triggers/{t}`, `/v1/.../workflows/{w}` |
//! | `folders.getIamPolicy`, `organizations.getIamPolicy` | `POST /v3/{folders\|organizations}/{id}:getIamPolicy` |
//!
//! Faithful: `scope` is `organizations/N`, `folders/N` or `projects/ID|NUMBER` and narrows
//! the results to what lies under it; `pageSize` above 500 is a 400 (both searches cap it at
//! 500), absent means 100; page tokens are bound to the request (another request's token is a
//! 400); `readMask` must name known fields and only with `versionedResources` (or `*`) do
//! results carry the resource data; IAM results hold only the matching bindings, with
//! `explanation.matchedPermissions` for permission queries; results name the project as
//! `projects/NUMBER`. Query subset: `policy.role.permissions:P`, `policy:TEXT` (a role equal
//! to TEXT or a member containing it), `memberTypes:TYPE`; searchAllResources takes no
//! `query`; anything else is a 400 `INVALID_ARGUMENT`. Errors use Google's envelope.
//!
//! Simplified: the index holds a workflow without its `sourceContents` (an assumption; the
//! scan then reads it with `get`); predefined roles' permissions are those of
//! [`ipd_model::roles::INVOKER_ROLES`] (each holds `run.routes.invoke`), custom roles come
//! from the org. Faults: a denied source answers 403 `IAM_PERMISSION_DENIED` naming its
//! permission, for every call or for one project's (`SOURCE@projects/NUMBER`).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::convert::percent_decode;
use crate::envelope::{self, Reply};
use crate::org::{Org, Place, PolicyAt, Resource};

/// How the org fake behaves.
#[derive(Debug, Clone, Default)]
pub struct OrgOptions {
    /// Added before every answer.
    pub latency: Duration,
    /// When set, every request must carry `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// Refused sources: `cloudasset.searchAllIamPolicies`, or `logging.entries.list@projects/N`.
    pub deny: Vec<String>,
}

struct Shared {
    org: Org,
    opts: OrgOptions,
    calls: Mutex<BTreeMap<String, u64>>,
}

/// A running org fake; dropping it stops the server.
pub struct RunningOrg {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningOrg {
    /// Serves `org` on a thread of its own.
    pub fn start(org: Org, opts: OrgOptions) -> std::io::Result<RunningOrg> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let std_listener = std::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let shared = Arc::new(Shared {
            org,
            opts,
            calls: Mutex::new(BTreeMap::new()),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let (tx, rx) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("ipd-fakegcp-org".into())
            .spawn(move || {
                rt.block_on(async move {
                    match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(listener) => crate::server::serve(listener, app, rx).await,
                        Err(e) => eprintln!("ipd-fakegcp: cannot serve: {e}"),
                    }
                });
            })?;
        Ok(RunningOrg {
            addr,
            shared,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn org(&self) -> &Org {
        &self.shared.org
    }

    /// Calls received, by source.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.shared
            .calls
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }
}

impl Drop for RunningOrg {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        if let Some(th) = self.thread.take() {
            let _ = th.join();
        }
    }
}

fn to_response(r: Reply) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&r.body).unwrap_or_default();
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    resp
}

fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

async fn handle(State(sh): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path().to_string();
    let query = query_pairs(parts.uri.query());
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    if let Some(expected) = &sh.opts.token {
        let ok = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == format!("Bearer {expected}"));
        if !ok {
            return to_response(envelope::unauthenticated(
                parts.headers.get(header::AUTHORIZATION).is_none(),
            ));
        }
    }
    if !sh.opts.latency.is_zero() {
        tokio::time::sleep(sh.opts.latency).await;
    }
    let (source, reply) = route(&sh, &method, &path, &query, &body);
    if let Ok(mut c) = sh.calls.lock() {
        *c.entry(source.to_string()).or_default() += 1;
    }
    to_response(reply)
}

fn denied(sh: &Shared, source: &str, project: Option<&str>) -> bool {
    sh.opts.deny.iter().any(|d| match d.split_once('@') {
        None => d == source,
        Some((s, p)) => s == source && project.is_some_and(|x| format!("projects/{x}") == p),
    })
}

fn route(
    sh: &Shared,
    method: &str,
    path: &str,
    query: &[(String, String)],
    body: &[u8],
) -> (&'static str, Reply) {
    let org = &sh.org;
    let deny = |source: &'static str, permission: &str, resource: &str, project: Option<&str>| {
        denied(sh, source, project)
            .then(|| (source, envelope::permission_denied(permission, resource)))
    };
    if method != "GET" && method != "POST" {
        return ("mutating", envelope::error(405, "the fake is read-only"));
    }
    let p = path.trim_start_matches('/');
    if let Some(rest) = p.strip_prefix("v1/")
        && let Some((scope, verb)) = rest.rsplit_once(':')
    {
        let scope = percent_decode(scope);
        match verb {
            "searchAllResources" => {
                if let Some(r) = deny(
                    "cloudasset.searchAllResources",
                    "cloudasset.assets.searchAllResources",
                    &scope,
                    None,
                ) {
                    return r;
                }
                return (
                    "cloudasset.searchAllResources",
                    search_resources(org, &scope, query),
                );
            }
            "searchAllIamPolicies" => {
                if let Some(r) = deny(
                    "cloudasset.searchAllIamPolicies",
                    "cloudasset.assets.searchAllIamPolicies",
                    &scope,
                    None,
                ) {
                    return r;
                }
                return (
                    "cloudasset.searchAllIamPolicies",
                    search_policies(org, &scope, query),
                );
            }
            _ => {}
        }
    }
    if p == "v2/entries:list" && method == "POST" {
        let b: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let project = b
            .get("resourceNames")
            .and_then(|r| r.get(0))
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("projects/"))
            .unwrap_or("")
            .to_string();
        if let Some(r) = deny(
            "logging.entries.list",
            "logging.logEntries.list",
            &format!("projects/{project}"),
            Some(&project),
        ) {
            return r;
        }
        return ("logging.entries.list", entries(org, &project, &b));
    }
    if let Some(rest) = p.strip_prefix("v3/")
        && let Some(res) = rest.strip_suffix(":getIamPolicy")
        && method == "POST"
    {
        let full = format!("//cloudresourcemanager.googleapis.com/{res}");
        let source = if res.starts_with("folders/") {
            "folders.getIamPolicy"
        } else {
            "organizations.getIamPolicy"
        };
        if let Some(r) = deny(source, &format!("resourcemanager.{}", source), res, None) {
            return r;
        }
        return (
            source,
            match org.policies.iter().find(|x| x.resource == full) {
                Some(pol) => Reply::ok(
                    json!({"version": 1, "etag": "BwYfake=", "bindings": pol.bindings.iter().map(|(r, m)| json!({"role": r, "members": m})).collect::<Vec<_>>()}),
                ),
                None => envelope::permission_denied(&format!("resourcemanager.{source}"), res),
            },
        );
    }
    if method != "GET" {
        return (
            "unserved",
            envelope::not_found(format!(
                "The requested URL /{p} was not found on this server."
            )),
        );
    }
    if let Some(rest) = p.strip_prefix("v2/")
        && let Some(name) = rest.strip_suffix(":getEffectivePolicy")
    {
        let segs: Vec<&str> = name.split('/').collect();
        if let ["projects", n, "policies", c] = segs.as_slice() {
            if let Some(r) = deny(
                "orgpolicy.getEffectivePolicy",
                "orgpolicy.policy.get",
                name,
                Some(n),
            ) {
                return r;
            }
            let found = org
                .org_policies
                .get(*n)
                .and_then(|v| {
                    v.iter()
                        .find(|x| x.get("name").and_then(Value::as_str) == Some(name))
                })
                .cloned();
            return (
                "orgpolicy.getEffectivePolicy",
                Reply::ok(found.unwrap_or_else(
                    || json!({"name": format!("projects/{n}/policies/{c}"), "spec": {}}),
                )),
            );
        }
    }
    // services.get and the callers' gets: the resource at its name.
    let (version, name) = match p.split_once('/') {
        Some((v @ ("v1" | "v2"), n)) => (v, n),
        _ => {
            return (
                "unserved",
                envelope::not_found(format!(
                    "The requested URL /{p} was not found on this server."
                )),
            );
        }
    };
    let hit = org.resources.iter().find(|r| {
        r.name.split_once(".googleapis.com/").map(|(_, n)| n) == Some(name)
            && matches!(
                (version, r.asset_type),
                (
                    "v2",
                    "run.googleapis.com/Service" | "cloudtasks.googleapis.com/Queue"
                ) | (
                    "v1",
                    "pubsub.googleapis.com/Subscription"
                        | "cloudscheduler.googleapis.com/Job"
                        | "eventarc.googleapis.com/Trigger"
                        | "workflows.googleapis.com/Workflow"
                )
            )
    });
    let source = if name.contains("/services/") {
        "run.services.get"
    } else if name.contains("/workflows/") {
        "workflows.workflows.get"
    } else if name.contains("/subscriptions/") {
        "pubsub.subscriptions.get"
    } else if name.contains("/jobs/") {
        "cloudscheduler.jobs.get"
    } else if name.contains("/queues/") {
        "cloudtasks.queues.get"
    } else if name.contains("/triggers/") {
        "eventarc.triggers.get"
    } else {
        "unserved"
    };
    let project = hit.map(|r| r.place.project_number.clone());
    if let Some(r) = deny(source, source, name, project.as_deref()) {
        return r;
    }
    match hit {
        Some(r) => (source, Reply::ok(r.data.clone())),
        None => (
            source,
            envelope::not_found(format!("Resource '{name}' was not found")),
        ),
    }
}

/// Whether something placed at `place` lies in `scope`.
fn in_scope(org: &Org, scope: &str, place: Option<&Place>, resource: &str) -> bool {
    match scope.split_once('/') {
        Some(("organizations", o)) => o == org.organization,
        Some(("folders", f)) => match place {
            Some(p) => p.folders.iter().any(|x| x == f),
            None => resource.ends_with(&format!("/folders/{f}")),
        },
        Some(("projects", x)) => place.is_some_and(|p| p.project_id == x || p.project_number == x),
        _ => false,
    }
}

fn placement(place: Option<&Place>, org: &Org) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    if let Some(p) = place {
        m.insert(
            "project".into(),
            json!(format!("projects/{}", p.project_number)),
        );
        m.insert(
            "folders".into(),
            json!(
                p.folders
                    .iter()
                    .map(|f| format!("folders/{f}"))
                    .collect::<Vec<_>>()
            ),
        );
    }
    m.insert(
        "organization".into(),
        json!(format!("organizations/{}", org.organization)),
    );
    m
}

/// A page of `items`, with a token bound to `fingerprint`.
fn page<T>(
    items: Vec<T>,
    query: &[(String, String)],
    fingerprint: &str,
    render: impl Fn(&T) -> Value,
) -> Reply {
    let get = |k: &str| query.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
    let size = match get("pageSize").map(str::parse::<usize>) {
        None => 100,
        Some(Ok(0)) => 100,
        Some(Ok(n)) if n <= 500 => n,
        Some(_) => {
            return envelope::invalid_argument(
                "Invalid value for page_size: must be between 0 and 500.",
            );
        }
    };
    let start = match get("pageToken") {
        None | Some("") => 0,
        Some(t) => match t.split_once('.') {
            Some((o, f)) if f == fingerprint => match o.parse::<usize>() {
                Ok(o) => o,
                Err(_) => return envelope::invalid_argument("Invalid page token."),
            },
            _ => return envelope::invalid_argument("Invalid page token."),
        },
    };
    let end = (start + size).min(items.len());
    let results: Vec<Value> = items
        .get(start..end)
        .unwrap_or(&[])
        .iter()
        .map(render)
        .collect();
    let mut out = json!({"results": results});
    if end < items.len() {
        out["nextPageToken"] = json!(format!("{end}.{fingerprint}"));
    }
    if results_empty(&out) {
        return Reply::ok(json!({}));
    }
    Reply::ok(out)
}

fn results_empty(v: &Value) -> bool {
    v.get("results")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
        && v.get("nextPageToken").is_none()
}

fn fingerprint(parts: &[&str]) -> String {
    // FNV-1a: stable and small; not a secret.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parts.join("\u{1}").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

const READ_MASK_FIELDS: &[&str] = &[
    "*",
    "name",
    "assetType",
    "project",
    "folders",
    "organization",
    "displayName",
    "description",
    "location",
    "labels",
    "tags",
    "effectiveTags",
    "networkTags",
    "kmsKeys",
    "createTime",
    "updateTime",
    "state",
    "additionalAttributes",
    "parentFullResourceName",
    "parentAssetType",
    "versionedResources",
    "attachedResources",
];

fn search_resources(org: &Org, scope: &str, query: &[(String, String)]) -> Reply {
    let types: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "assetTypes")
        .flat_map(|(_, v)| v.split(',').map(str::to_string).collect::<Vec<_>>())
        .collect();
    if query.iter().any(|(k, v)| k == "query" && !v.is_empty()) {
        return envelope::invalid_argument("this fake serves searchAllResources without `query`");
    }
    let mask = query
        .iter()
        .find(|(k, _)| k == "readMask")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let fields: Vec<&str> = mask
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .collect();
    if let Some(bad) = fields.iter().find(|f| !READ_MASK_FIELDS.contains(f)) {
        return envelope::invalid_argument(format!("Invalid field path in read_mask: {bad}"));
    }
    let data = fields
        .iter()
        .any(|f| *f == "*" || *f == "versionedResources");
    let items: Vec<&Resource> = org
        .resources
        .iter()
        .filter(|r| types.is_empty() || types.iter().any(|t| t == r.asset_type))
        .filter(|r| in_scope(org, scope, Some(&r.place), &r.name))
        .collect();
    let fp = fingerprint(&[scope, &types.join(","), &mask]);
    page(items, query, &fp, |r| {
        let mut m = placement(Some(&r.place), org);
        m.insert("name".into(), json!(r.name));
        m.insert("assetType".into(), json!(r.asset_type));
        m.insert(
            "displayName".into(),
            json!(r.name.rsplit('/').next().unwrap_or("")),
        );
        if let Some(l) = &r.location {
            m.insert("location".into(), json!(l));
        }
        if r.additional.as_object().is_some_and(|o| !o.is_empty()) {
            m.insert("additionalAttributes".into(), r.additional.clone());
        }
        if data {
            let version =
                if r.asset_type.starts_with("run.") || r.asset_type.starts_with("cloudtasks.") {
                    "v2"
                } else {
                    "v1"
                };
            m.insert(
                "versionedResources".into(),
                json!([{"version": version, "resource": r.indexed.clone().unwrap_or_else(|| r.data.clone())}]),
            );
        }
        Value::Object(m)
    })
}

/// Bindings as (role, members).
type Bindings = Vec<(String, Vec<String>)>;

enum IamQuery {
    Permission(String),
    Text(String),
    MemberType(String),
}

fn role_permissions(org: &Org, role: &str) -> Vec<String> {
    if let Some(p) = org.custom_roles.get(role) {
        return p.clone();
    }
    if ipd_model::roles::INVOKER_ROLES.contains(&role) {
        return vec![ipd_model::roles::INVOKE_PERMISSION.to_string()];
    }
    vec![]
}

fn member_type(m: &str) -> &str {
    match m {
        "allUsers" | "allAuthenticatedUsers" => m,
        _ => m.split(':').next().unwrap_or(""),
    }
}

fn search_policies(org: &Org, scope: &str, query: &[(String, String)]) -> Reply {
    let q = query
        .iter()
        .find(|(k, _)| k == "query")
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let parsed = if let Some(p) = q.strip_prefix("policy.role.permissions:") {
        IamQuery::Permission(p.to_string())
    } else if let Some(t) = q.strip_prefix("policy:") {
        IamQuery::Text(t.trim_matches('"').to_ascii_lowercase())
    } else if let Some(t) = q.strip_prefix("memberTypes:") {
        IamQuery::MemberType(t.to_string())
    } else {
        return envelope::invalid_argument(format!(
            "this fake does not understand the query `{q}`"
        ));
    };
    let items: Vec<(&PolicyAt, Bindings)> = org
        .policies
        .iter()
        .filter(|p| in_scope(org, scope, p.place.as_ref(), &p.resource))
        .filter_map(|p| {
            let matched: Bindings = p
                .bindings
                .iter()
                .filter(|(role, members)| match &parsed {
                    IamQuery::Permission(perm) => role_permissions(org, role).contains(perm),
                    IamQuery::Text(t) => {
                        role.to_ascii_lowercase() == *t
                            || members
                                .iter()
                                .any(|m| m.to_ascii_lowercase().contains(t.as_str()))
                    }
                    IamQuery::MemberType(t) => members.iter().any(|m| member_type(m) == t),
                })
                .cloned()
                .collect();
            (!matched.is_empty()).then_some((p, matched))
        })
        .collect();
    let fp = fingerprint(&[scope, &q]);
    page(items, query, &fp, |(p, matched)| {
        let mut m = placement(p.place.as_ref(), org);
        m.insert("resource".into(), json!(p.resource));
        m.insert("assetType".into(), json!(p.asset_type));
        m.insert(
            "policy".into(),
            json!({"bindings": matched.iter().map(|(r, ms)| json!({"role": r, "members": ms})).collect::<Vec<_>>()}),
        );
        if let IamQuery::Permission(perm) = &parsed {
            let mp: serde_json::Map<String, Value> = matched
                .iter()
                .map(|(r, _)| (r.clone(), json!({"permissions": [perm]})))
                .collect();
            m.insert("explanation".into(), json!({"matchedPermissions": mp}));
        }
        Value::Object(m)
    })
}

fn entries(org: &Org, project: &str, body: &Value) -> Reply {
    let filter = body.get("filter").and_then(Value::as_str).unwrap_or("");
    let f = match crate::filter::parse(filter) {
        Ok(f) => f,
        Err(e) => return envelope::invalid_argument(format!("Invalid filter: {e}")),
    };
    let list: Vec<Value> = org
        .audit
        .get(project)
        .into_iter()
        .flatten()
        .filter(|e| f.matches(e))
        .cloned()
        .collect();
    if list.is_empty() {
        return Reply::ok(json!({}));
    }
    Reply::ok(json!({"entries": list}))
}
