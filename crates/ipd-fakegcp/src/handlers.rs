//! The answers of each read method, computed from the scenario.

use std::cmp::Ordering;

use serde_json::{Map, Value, json};

use crate::convert::{self, encode_attachment};
use crate::envelope::{self, Reply};
use crate::filter;
use crate::routes::{CallerCollection, Target};
use crate::scenario::{Parent, Scenario, Stored, split_attachment, split_policy_name};

/// The empty IAM policy the APIs answer for a resource without bindings.
pub fn empty_policy() -> Value {
    json!({"etag": "ACAB"})
}

/// Default and maximum page sizes.
pub const RUN_DEFAULT_PAGE: usize = 100;
pub const RUN_MAX_PAGE: usize = 1000;
pub const LOGGING_DEFAULT_PAGE: usize = 50;
pub const LOGGING_MAX_PAGE: usize = 1000;

/// Per-request inputs besides the route.
pub struct Request<'a> {
    pub query: Vec<(String, String)>,
    pub body: &'a [u8],
    /// `FakeOptions::logging_empty_pages`.
    pub logging_empty_pages: u32,
    /// `FakeOptions::token`: the one access token tokeninfo knows (`None`: any).
    pub token: Option<&'a str>,
    /// `FakeOptions::identity`: the email tokeninfo tells for it.
    pub identity: Option<&'a str>,
    /// The `Host` header (Cloud Run v1's regional endpoints prefix the region to it).
    pub host: Option<&'a str>,
}

impl Request<'_> {
    fn param(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
}

fn stored_reply(s: &Stored, ok: impl FnOnce(&Value) -> Value) -> Reply {
    match s {
        Stored::Value(v) => Reply::ok(ok(v)),
        Stored::Error(e) => Reply {
            status: e.status,
            body: e.body.clone(),
            headers: Vec::new(),
        },
    }
}

/// 0, 1 or 3, from a query parameter or a JSON value; anything else is rejected.
fn policy_version(v: Option<&Value>) -> Result<i64, Reply> {
    let n = match v {
        None | Some(Value::Null) => return Ok(0),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(_) => None,
    };
    match n {
        Some(n @ (0 | 1 | 3)) => Ok(n),
        _ => Err(envelope::invalid_argument(format!(
            "Invalid requested policy version: {}. Valid values are 0, 1 and 3.",
            v.map(Value::to_string).unwrap_or_default()
        ))),
    }
}

fn body_json(body: &[u8]) -> Result<Value, Reply> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice::<Value>(body)
        .map_err(|e| envelope::invalid_argument(format!("Invalid JSON payload received. {e}")))
        .and_then(|v| {
            if v.is_object() {
                Ok(v)
            } else {
                Err(envelope::invalid_argument(
                    "Invalid JSON payload received. Expected an object.",
                ))
            }
        })
}

/// FNV-1a of the parameters a page token is bound to.
fn fingerprint(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PageToken {
    offset: usize,
    empties: u32,
}

fn make_token(fp: u64, t: PageToken) -> String {
    format!("{fp:016x}.{}.{}", t.offset, t.empties)
}

fn read_token(fp: u64, token: Option<&str>) -> Result<PageToken, Reply> {
    let Some(tok) = token.filter(|t| !t.is_empty()) else {
        return Ok(PageToken {
            offset: 0,
            empties: 0,
        });
    };
    let bad = || {
        envelope::invalid_argument(
            "The page token is invalid or does not match the other parameters of the request.",
        )
    };
    let mut parts = tok.split('.');
    let (Some(f), Some(o), Some(e), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if u64::from_str_radix(f, 16).ok() != Some(fp) {
        return Err(bad());
    }
    match (o.parse::<usize>(), e.parse::<u32>()) {
        (Ok(offset), Ok(empties)) => Ok(PageToken { offset, empties }),
        _ => Err(bad()),
    }
}

fn page_size(raw: Option<&Value>, default: usize, max: usize) -> Result<usize, Reply> {
    let n = match raw {
        None | Some(Value::Null) => return Ok(default),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(_) => None,
    };
    match n {
        Some(n) if n < 0 => Err(envelope::invalid_argument(format!(
            "page_size must not be negative, got {n}."
        ))),
        Some(0) => Ok(default),
        Some(n) => Ok(usize::try_from(n).unwrap_or(max).min(max)),
        None => Err(envelope::invalid_argument(
            "Invalid value for page_size: not an integer.",
        )),
    }
}

fn q_value(s: Option<&str>) -> Option<Value> {
    s.map(|s| Value::String(s.to_string()))
}

impl Scenario {
    fn number_or_id_name(&self, kind: &str, id: &str) -> String {
        if kind == "projects" && self.is_project(id) {
            format!("projects/{}", self.identity.project_number)
        } else {
            format!("{kind}/{id}")
        }
    }

    fn node_known(&self, kind: &str, id: &str) -> bool {
        match kind {
            "projects" => self.is_project(id),
            "folders" => self.folders.contains_key(id),
            "organizations" => self.organizations.contains_key(id),
            _ => false,
        }
    }

    /// All services the scenario holds: (location, service id, resource).
    fn services(&self) -> Vec<(String, String, &Value)> {
        let mut out = Vec::new();
        if let Some(Stored::Value(v)) = &self.service {
            out.push((
                self.identity.region.clone(),
                self.identity.service.clone(),
                v,
            ));
        }
        for v in &self.other_services {
            let name = v.get("name").and_then(Value::as_str).unwrap_or("");
            if let ["projects", _, "locations", l, "services", s] =
                name.split('/').collect::<Vec<_>>().as_slice()
            {
                out.push((l.to_string(), s.to_string(), v));
            }
        }
        out
    }

    /// `GetAncestryResponse.ancestor`: the project (by ID), then each parent up to the top,
    /// bottom-up. A folder the scenario does not hold ends the walk (its parent is unknown);
    /// a cycle is cut at the first repeat.
    fn ancestry(&self) -> Vec<Value> {
        let node = |kind: &str, id: &str| json!({"resourceId": {"type": kind, "id": id}});
        let mut out = vec![node("project", &self.identity.project_id)];
        let mut seen = std::collections::BTreeSet::new();
        let mut next = self.project_parent.clone();
        while let Some(parent) = next.take() {
            match parent {
                Parent::Organization(o) => out.push(node("organization", &o)),
                Parent::Folder(f) => {
                    if !seen.insert(f.clone()) {
                        break;
                    }
                    out.push(node("folder", &f));
                    next = self.folders.get(&f).and_then(|x| x.parent.clone());
                }
            }
        }
        out
    }

    fn service_exists(&self, location: &str, service: &str) -> bool {
        (location == self.identity.region && service == self.identity.service)
            || self
                .services()
                .iter()
                .any(|(l, s, _)| l == location && s == service)
    }
}

/// Answers one read method.
pub fn answer(sc: &Scenario, target: &Target, req: &Request<'_>) -> Reply {
    let denied = || {
        envelope::permission_denied(
            target.permission(),
            &target.resource(&sc.identity.project_id),
        )
    };
    match target {
        Target::Service {
            project,
            location,
            service,
        } => {
            if !sc.is_project(project) {
                return denied();
            }
            if location == &sc.identity.region
                && service == &sc.identity.service
                && let Some(s) = &sc.service
            {
                return stored_reply(s, Value::clone);
            }
            match sc
                .services()
                .into_iter()
                .find(|(l, s, _)| l == location && s == service)
            {
                Some((_, _, v)) => Reply::ok(v.clone()),
                None => envelope::not_found(format!(
                    "Resource '{}' was not found",
                    target.resource(&sc.identity.project_id)
                )),
            }
        }
        Target::ServiceList { project, location } => {
            if location == "-" {
                return envelope::invalid_argument(
                    "Location must be a valid Google Cloud region, and cannot be the \"-\" wildcard.",
                );
            }
            if !sc.is_project(project) {
                return denied();
            }
            if location == &sc.identity.region
                && let Some(Stored::Error(e)) = &sc.service
            {
                return Reply {
                    status: e.status,
                    body: e.body.clone(),
                    headers: Vec::new(),
                };
            }
            let mut items: Vec<(String, &Value)> = sc
                .services()
                .into_iter()
                .filter(|(l, _, _)| l == location)
                .map(|(_, s, v)| (s, v))
                .collect();
            items.sort_by(|a, b| a.0.cmp(&b.0));
            let size = match page_size(
                q_value(req.param("pageSize")).as_ref(),
                RUN_DEFAULT_PAGE,
                RUN_MAX_PAGE,
            ) {
                Ok(n) => n,
                Err(r) => return r,
            };
            let fp = fingerprint(&format!("run.list\n{project}\n{location}"));
            let tok = match read_token(fp, req.param("pageToken")) {
                Ok(t) => t,
                Err(r) => return r,
            };
            let start = tok.offset.min(items.len());
            let end = (start + size).min(items.len());
            let mut out = Map::new();
            if end > start {
                out.insert(
                    "services".into(),
                    Value::Array(
                        items[start..end]
                            .iter()
                            .map(|(_, v)| (*v).clone())
                            .collect(),
                    ),
                );
            }
            if end < items.len() {
                out.insert(
                    "nextPageToken".into(),
                    json!(make_token(
                        fp,
                        PageToken {
                            offset: end,
                            empties: 0
                        }
                    )),
                );
            }
            Reply::ok(Value::Object(out))
        }
        Target::ServicePolicy {
            project,
            location,
            service,
        } => {
            let version =
                match policy_version(q_value(req.param("options.requestedPolicyVersion")).as_ref())
                {
                    Ok(v) => v,
                    Err(r) => return r,
                };
            if !sc.is_project(project) {
                return denied();
            }
            if !sc.service_exists(location, service) {
                return envelope::not_found(format!(
                    "Resource '{}' was not found",
                    target.resource(&sc.identity.project_id)
                ));
            }
            let main = location == &sc.identity.region && service == &sc.identity.service;
            let other = sc.service_policies.iter().find(|(n, _)| {
                let segs: Vec<&str> = n.split('/').collect();
                matches!(segs.as_slice(), ["projects", p, "locations", l, "services", s]
                    if sc.is_project(p) && l == location && s == service)
            });
            let regional = (service == &sc.identity.service)
                .then(|| sc.regional_policies.get(location.as_str()))
                .flatten();
            match (&sc.service_policy, main, regional, other) {
                (Some(s), true, _, _) | (_, false, Some(s), _) | (_, _, _, Some((_, s))) => {
                    stored_reply(s, |v| convert::policy_for_version(v, version))
                }
                _ => Reply::ok(empty_policy()),
            }
        }
        Target::Project(p) => {
            if !sc.is_project(p) {
                return denied();
            }
            let mut m = Map::new();
            m.insert(
                "name".into(),
                json!(format!("projects/{}", sc.identity.project_number)),
            );
            if let Some(parent) = &sc.project_parent {
                m.insert("parent".into(), json!(parent.name()));
            }
            m.insert("projectId".into(), json!(sc.identity.project_id));
            m.insert("state".into(), json!("ACTIVE"));
            m.insert(
                "displayName".into(),
                json!(
                    sc.project_display_name
                        .clone()
                        .unwrap_or_else(|| sc.identity.project_id.clone())
                ),
            );
            Reply::ok(Value::Object(m))
        }
        Target::ProjectAncestry(p) => {
            if let Err(r) = body_json(req.body) {
                return r;
            }
            if !sc.is_project(p) {
                return envelope::permission_denied_v1();
            }
            Reply::ok(json!({"ancestor": sc.ancestry()}))
        }
        Target::Folder(id) => match sc.folders.get(id) {
            None => denied(),
            Some(f) => {
                let mut m = Map::new();
                m.insert("name".into(), json!(format!("folders/{id}")));
                if let Some(p) = &f.parent {
                    m.insert("parent".into(), json!(p.name()));
                }
                m.insert(
                    "displayName".into(),
                    json!(
                        f.display_name
                            .clone()
                            .unwrap_or_else(|| format!("folder-{id}"))
                    ),
                );
                m.insert("state".into(), json!("ACTIVE"));
                Reply::ok(Value::Object(m))
            }
        },
        Target::Organization(id) => match sc.organizations.get(id) {
            None => denied(),
            Some(o) => {
                let mut m = Map::new();
                m.insert("name".into(), json!(format!("organizations/{id}")));
                m.insert(
                    "displayName".into(),
                    json!(
                        o.display_name
                            .clone()
                            .unwrap_or_else(|| format!("organization-{id}"))
                    ),
                );
                if let Some(c) = &o.directory_customer_id {
                    m.insert("directoryCustomerId".into(), json!(c));
                }
                m.insert("state".into(), json!("ACTIVE"));
                Reply::ok(Value::Object(m))
            }
        },
        Target::ProjectPolicy(_) | Target::FolderPolicy(_) | Target::OrganizationPolicy(_) => {
            let body = match body_json(req.body) {
                Ok(b) => b,
                Err(r) => return r,
            };
            let version = match policy_version(body.pointer("/options/requestedPolicyVersion")) {
                Ok(v) => v,
                Err(r) => return r,
            };
            let stored = match target {
                Target::ProjectPolicy(p) if sc.is_project(p) => Some(sc.project_policy.as_ref()),
                Target::FolderPolicy(f) => sc.folders.get(f).map(|f| f.iam_policy.as_ref()),
                Target::OrganizationPolicy(o) => {
                    sc.organizations.get(o).map(|o| o.iam_policy.as_ref())
                }
                _ => None,
            };
            match stored {
                None => denied(),
                Some(None) => Reply::ok(empty_policy()),
                Some(Some(s)) => stored_reply(s, |v| convert::policy_for_version(v, version)),
            }
        }
        Target::Entries => entries_list(sc, req),
        Target::Caller { collection, name } => caller_get(sc, *collection, name, req),
        Target::TokenInfo => tokeninfo(req),
        Target::Troubleshoot => troubleshoot(sc, req),
        Target::KnativeService { namespace, service } => {
            crate::gcloud::knative_get(sc, namespace, service, req)
        }
        Target::KnativeList { namespace } => crate::gcloud::knative_list(sc, namespace, req),
        Target::EffectivePolicy {
            kind,
            id,
            constraint,
        } => {
            if !sc.node_known(kind, id) {
                return denied();
            }
            let Some(org) = &sc.org_policies else {
                return denied();
            };
            if let Some(e) = org.errors.get(constraint).or(org.blanket_error.as_ref()) {
                return Reply {
                    status: e.status,
                    body: e.body.clone(),
                    headers: Vec::new(),
                };
            }
            let name = format!("{}/policies/{constraint}", sc.number_or_id_name(kind, id));
            match org.policies.get(constraint) {
                Some(p) => Reply::ok(convert::effective(p.clone(), &name)),
                None => Reply::ok(json!({"name": name, "spec": {}})),
            }
        }
        Target::CustomConstraint(name) => {
            let org = name.split('/').nth(1).unwrap_or("");
            if !sc.node_known("organizations", org) {
                return denied();
            }
            match sc
                .custom_constraints
                .iter()
                .find(|c| c.get("name").and_then(Value::as_str) == Some(name.as_str()))
            {
                Some(c) => Reply::ok(c.clone()),
                None => {
                    crate::envelope::error(404, format!("Requested entity was not found: {name}"))
                }
            }
        }
        Target::CustomConstraints(id) => {
            if !sc.node_known("organizations", id) {
                return denied();
            }
            let prefix = format!("organizations/{id}/customConstraints/");
            let list: Vec<Value> = sc
                .custom_constraints
                .iter()
                .filter(|c| {
                    c.get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| n.starts_with(&prefix))
                })
                .cloned()
                .collect();
            if list.is_empty() {
                Reply::ok(json!({}))
            } else {
                Reply::ok(json!({ "customConstraints": list }))
            }
        }
        Target::Role(name) => {
            if let Some(p) = name
                .strip_prefix("projects/")
                .and_then(|r| r.split('/').next())
                && !sc.is_project(p)
            {
                return denied();
            }
            let want = normalize_project(sc, name);
            match sc.roles.iter().find(|r| {
                r.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| normalize_project(sc, n) == want)
            }) {
                Some(r) => Reply::ok(r.clone()),
                None => match crate::gcloud::predefined_role(name) {
                    Some(r) => Reply::ok(r),
                    None => envelope::not_found(format!("The role named {name} was not found.")),
                },
            }
        }
        Target::DenyList { attachment, kind }
        | Target::DenyGet {
            attachment, kind, ..
        } => {
            let Some((node_kind, node_id)) = split_attachment(attachment) else {
                return envelope::invalid_argument(format!(
                    "Invalid attachment point '{attachment}': expected cloudresourcemanager.googleapis.com/{{projects|folders|organizations}}/ID, URL-encoded."
                ));
            };
            if kind != "denypolicies" {
                return envelope::invalid_argument(format!("Unsupported policy kind '{kind}'."));
            }
            if !sc.node_known(node_kind, node_id) {
                return denied();
            }
            let want = normalize_attachment(sc, attachment);
            let list = match &sc.deny_policies {
                None => Vec::new(),
                Some(Stored::Error(e)) => {
                    return Reply {
                        status: e.status,
                        body: e.body.clone(),
                        headers: Vec::new(),
                    };
                }
                Some(Stored::Value(v)) => v.as_array().cloned().unwrap_or_default(),
            };
            let mine = list.into_iter().filter_map(|p| {
                let (att, k, id) = p
                    .get("name")
                    .and_then(Value::as_str)
                    .and_then(split_policy_name)?;
                (k == "denypolicies" && normalize_attachment(sc, &att) == want).then(|| {
                    let mut p = p.clone();
                    if let Some(o) = p.as_object_mut() {
                        o.insert(
                            "name".into(),
                            json!(format!(
                                "policies/{}/denypolicies/{id}",
                                encode_attachment(&want)
                            )),
                        );
                    }
                    (id, p)
                })
            });
            match target {
                Target::DenyGet { id, .. } => match mine.into_iter().find(|(pid, _)| pid == id) {
                    Some((_, p)) => Reply::ok(p),
                    None => envelope::not_found(format!(
                        "Policy '{}' not found.",
                        target.resource(&sc.identity.project_id)
                    )),
                },
                _ => {
                    let metadata: Vec<Value> = mine
                        .map(|(_, mut p)| {
                            if let Some(o) = p.as_object_mut() {
                                o.remove("rules");
                            }
                            p
                        })
                        .collect();
                    if metadata.is_empty() {
                        Reply::ok(json!({}))
                    } else {
                        Reply::ok(json!({"policies": metadata}))
                    }
                }
            }
        }
    }
}

/// Responses always use the numeric project ID in attachment points.
fn normalize_attachment(sc: &Scenario, att: &str) -> String {
    match split_attachment(att) {
        Some(("projects", p)) if sc.is_project(p) => {
            format!(
                "cloudresourcemanager.googleapis.com/projects/{}",
                sc.identity.project_number
            )
        }
        _ => att.to_string(),
    }
}

fn timestamp_of(e: &Value) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    e.get("timestamp")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
}

fn entry_order(a: &Value, b: &Value) -> Ordering {
    let ia = a.get("insertId").and_then(Value::as_str).unwrap_or("");
    let ib = b.get("insertId").and_then(Value::as_str).unwrap_or("");
    timestamp_of(a)
        .cmp(&timestamp_of(b))
        .then_with(|| ia.cmp(ib))
}

fn entries_list(sc: &Scenario, req: &Request<'_>) -> Reply {
    let body = match body_json(req.body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut names: Vec<String> = Vec::new();
    for key in ["resourceNames", "resource_names"] {
        if let Some(v) = body.get(key) {
            let Some(a) = v.as_array() else {
                return envelope::invalid_argument("resource_names must be a list of strings.");
            };
            for n in a {
                let Some(s) = n.as_str() else {
                    return envelope::invalid_argument("resource_names must be a list of strings.");
                };
                names.push(s.to_string());
            }
        }
    }
    if let Some(ids) = body.get("projectIds").and_then(Value::as_array) {
        names.extend(
            ids.iter()
                .filter_map(Value::as_str)
                .map(|p| format!("projects/{p}")),
        );
    }
    if names.is_empty() {
        return envelope::invalid_argument(
            "resource_names: at least one resource name is required.",
        );
    }
    if names.len() > 100 {
        return envelope::invalid_argument(
            "resource_names: at most 100 resource names are allowed.",
        );
    }
    let mut ours = false;
    for n in &names {
        let parts: Vec<&str> = n.split('/').collect();
        match parts.as_slice() {
            ["projects", p] | ["projects", p, "locations", _, "buckets", _, "views", _]
                if !p.is_empty() =>
            {
                if !sc.is_project(p) {
                    return envelope::permission_denied(
                        "logging.logEntries.list",
                        &format!("projects/{p}"),
                    );
                }
                ours = true;
            }
            ["organizations" | "folders" | "billingAccounts", id] if !id.is_empty() => {}
            _ => return envelope::invalid_argument(format!("Invalid resource name: '{n}'.")),
        }
    }
    let size = match page_size(body.get("pageSize"), LOGGING_DEFAULT_PAGE, LOGGING_MAX_PAGE) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let order = body.get("orderBy").and_then(Value::as_str).unwrap_or("");
    let order_norm = order
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase();
    let desc = match order_norm.as_str() {
        "" | "timestamp asc" | "timestamp" => false,
        "timestamp desc" => true,
        _ => {
            return envelope::invalid_argument(format!(
                "Invalid order_by: '{order}'. Only \"timestamp asc\" and \"timestamp desc\" are supported."
            ));
        }
    };
    let filter_text = match body.get("filter") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return envelope::invalid_argument("filter must be a string."),
    };
    let mut f = match filter::parse(filter_text) {
        Ok(f) => f,
        Err(e) => return envelope::invalid_argument(e.to_string()),
    };
    f.translate_project_number(&sc.identity.project_number, &sc.identity.project_id);
    let fp = fingerprint(&format!(
        "logging\n{}\n{filter_text}\n{order_norm}",
        names.join(",")
    ));
    let tok = match read_token(fp, body.get("pageToken").and_then(Value::as_str)) {
        Ok(t) => t,
        Err(r) => return r,
    };
    if tok.empties < req.logging_empty_pages {
        let next = PageToken {
            offset: tok.offset,
            empties: tok.empties + 1,
        };
        return Reply::ok(json!({"nextPageToken": make_token(fp, next)}));
    }
    let all = match &sc.logs {
        None => Vec::new(),
        Some(Stored::Error(e)) => {
            return Reply {
                status: e.status,
                body: e.body.clone(),
                headers: Vec::new(),
            };
        }
        Some(Stored::Value(v)) => v.as_array().cloned().unwrap_or_default(),
    };
    let mut hits: Vec<Value> = if ours {
        all.into_iter().filter(|e| f.matches(e)).collect()
    } else {
        Vec::new()
    };
    hits.sort_by(entry_order);
    if desc {
        hits.reverse();
    }
    let start = tok.offset.min(hits.len());
    let end = (start + size).min(hits.len());
    let mut out = Map::new();
    if end > start {
        out.insert("entries".into(), Value::Array(hits[start..end].to_vec()));
    }
    if end < hits.len() {
        out.insert(
            "nextPageToken".into(),
            json!(make_token(
                fp,
                PageToken {
                    offset: end,
                    empties: tok.empties
                }
            )),
        );
    }
    Reply::ok(Value::Object(out))
}

/// `projects/NUMBER/...` and `projects/ID/...` name the same resource.
fn normalize_project(sc: &Scenario, name: &str) -> String {
    match name
        .strip_prefix("projects/")
        .and_then(|r| r.split_once('/'))
    {
        Some((p, rest)) if sc.is_project(p) => {
            format!("projects/{}/{rest}", sc.identity.project_id)
        }
        _ => name.to_string(),
    }
}

/// The `get` of a Google-managed caller's API (Pub/Sub, Scheduler, Tasks, Eventarc,
/// Workflows): the stored configuration with that name.
fn caller_get(sc: &Scenario, collection: CallerCollection, name: &str, req: &Request<'_>) -> Reply {
    // Cloud Tasks `tasks.get?responseView=`: BASIC (the default) leaves out the body.
    let full_view = match (collection, req.param("responseView")) {
        (CallerCollection::Task, None | Some("" | "VIEW_UNSPECIFIED" | "BASIC")) => false,
        (CallerCollection::Task, Some("FULL")) => true,
        (CallerCollection::Task, Some(other)) => {
            return envelope::invalid_argument(format!(
                "Invalid value at 'response_view' (type.googleapis.com/google.cloud.tasks.v2.Task.View), \"{other}\""
            ));
        }
        _ => false,
    };
    let want = normalize_project(sc, name);
    let found = sc.callers.iter().find(|v| {
        v.get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| normalize_project(sc, n) == want)
    });
    let Some(v) = found else {
        if let Some((_, e)) = sc
            .caller_errors
            .iter()
            .find(|(c, _)| c.is_none_or(|c| c == collection))
        {
            return Reply {
                status: e.status,
                body: e.body.clone(),
                headers: Vec::new(),
            };
        }
        let project = name.split('/').nth(1).unwrap_or("");
        let project_known = sc.is_project(project)
            || sc.callers.iter().any(|v| {
                v.get("name")
                    .and_then(Value::as_str)
                    .and_then(|n| n.split('/').nth(1))
                    == Some(project)
            });
        if !project_known {
            return envelope::permission_denied(collection.source().permission(), name);
        }
        return match collection {
            // Pub/Sub names the missing resource by its ID.
            CallerCollection::Subscription => envelope::not_found(format!(
                "Resource not found (resource={}).",
                name.rsplit('/').next().unwrap_or(name)
            )),
            _ => envelope::not_found(format!("Resource '{name}' was not found")),
        };
    };
    let mut v = v.clone();
    match collection {
        CallerCollection::Task => {
            if let Some(o) = v.as_object_mut() {
                if !full_view {
                    for key in ["httpRequest", "appEngineHttpRequest"] {
                        if let Some(r) = o.get_mut(key).and_then(Value::as_object_mut) {
                            r.remove("body");
                        }
                    }
                }
                o.insert(
                    "view".into(),
                    json!(if full_view { "FULL" } else { "BASIC" }),
                );
            }
        }
        CallerCollection::Workflow => {
            if let Some(rev) = req.param("revisionId").filter(|r| !r.is_empty()) {
                let stored = v.get("revisionId").and_then(Value::as_str).unwrap_or("");
                let number = stored.split('-').next().unwrap_or("");
                if rev != stored && rev != number {
                    return envelope::not_found(format!(
                        "Resource '{name}' with revision '{rev}' was not found"
                    ));
                }
            }
        }
        _ => {}
    }
    Reply::ok(v)
}

/// OAuth2 v2 `tokeninfo`, with `access_token` (the token the fake accepts) or `id_token` (a
/// Google ID token, read without checking its signature).
/// The fields of a `TroubleshootIamPolicyRequest` (proto JSON names), by object path: a name
/// not in the schema is a 400, as Google's JSON mapping answers it.
const TROUBLESHOOT_FIELDS: &[(&str, &[&str])] = &[
    ("", &["accessTuple"]),
    (
        "access_tuple",
        &[
            "principal",
            "fullResourceName",
            "permission",
            "permissionFqdn",
            "conditionContext",
        ],
    ),
    (
        "access_tuple.condition_context",
        &["resource", "destination", "request", "effectiveTags"],
    ),
    ("access_tuple.condition_context.request", &["receiveTime"]),
];

fn unknown_troubleshoot_field(body: &Value) -> Option<Reply> {
    let mut at = vec![("", body)];
    while let Some((path, v)) = at.pop() {
        let (Some(o), Some((_, known))) = (
            v.as_object(),
            TROUBLESHOOT_FIELDS.iter().find(|(p, _)| *p == path),
        ) else {
            continue;
        };
        for (k, child) in o {
            if !known.contains(&k.as_str()) {
                let at = if path.is_empty() {
                    String::new()
                } else {
                    format!(" at '{path}'")
                };
                return Some(envelope::invalid_argument(format!(
                    "Invalid JSON payload received. Unknown name \"{k}\"{at}: Cannot find field."
                )));
            }
            let snake = match k.as_str() {
                "accessTuple" => "access_tuple",
                "conditionContext" => "condition_context",
                other => other,
            };
            let child_path = if path.is_empty() {
                snake.to_string()
            } else {
                format!("{path}.{snake}")
            };
            if let Some((p, _)) = TROUBLESHOOT_FIELDS.iter().find(|(p, _)| *p == child_path) {
                at.push((p, child));
            }
        }
    }
    None
}

/// `//run.googleapis.com/projects/NUMBER/...` with the project ID instead of the number.
fn full_name_by_id(sc: &Scenario, name: &str) -> String {
    let number = format!("/projects/{}/", sc.identity.project_number);
    name.replacen(
        &number,
        &format!("/projects/{}/", sc.identity.project_id),
        1,
    )
}

/// Policy Troubleshooter v3 `iam.troubleshoot`. The request is checked as the API documents it
/// (`principal`, `fullResourceName` and `permission` required; the principal a bare email;
/// `receiveTime` RFC 3339; no unknown field). The fake evaluates no policy: it answers the
/// bundle's `troubleshoot.json`, whose `accessTuple` says which question it answers; another
/// question is a 400 naming both, so a client asking the wrong thing fails its test instead of
/// reading someone else's answer. Without `troubleshoot.json` the API is not enabled.
fn troubleshoot(sc: &Scenario, req: &Request<'_>) -> Reply {
    let body = match body_json(req.body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Some(r) = unknown_troubleshoot_field(&body) {
        return r;
    }
    let asked = |k: &str| {
        body.pointer(&format!("/accessTuple/{k}"))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    for (k, snake) in [
        ("principal", "principal"),
        ("fullResourceName", "full_resource_name"),
        ("permission", "permission"),
    ] {
        if asked(k).is_none() {
            return envelope::invalid_argument(format!(
                "Request contains an invalid argument: access_tuple.{snake} is required."
            ));
        }
    }
    let principal = asked("principal").unwrap_or_default();
    if principal.contains(':') || principal.split('@').count() != 2 {
        return envelope::invalid_argument(format!(
            "Request contains an invalid argument: access_tuple.principal `{principal}` is not the email address of a Google Account or a service account."
        ));
    }
    if let Some(t) = body.pointer("/accessTuple/conditionContext/request/receiveTime")
        && t.as_str()
            .is_none_or(|t| chrono::DateTime::parse_from_rfc3339(t).is_err())
    {
        return envelope::invalid_argument(format!(
            "Invalid value at 'access_tuple.condition_context.request.receive_time' (type.googleapis.com/google.protobuf.Timestamp), {t}"
        ));
    }
    let stored = match &sc.troubleshoot {
        None => {
            return envelope::service_disabled(
                "Policy Troubleshooter API",
                "policytroubleshooter.googleapis.com",
                &sc.identity.project_number,
            );
        }
        Some(Stored::Error(e)) => {
            return Reply {
                status: e.status,
                body: e.body.clone(),
                headers: Vec::new(),
            };
        }
        Some(Stored::Value(v)) => v,
    };
    for k in ["principal", "fullResourceName", "permission"] {
        let Some(want) = stored
            .pointer(&format!("/accessTuple/{k}"))
            .and_then(Value::as_str)
        else {
            continue;
        };
        let got = asked(k).unwrap_or_default();
        let same = match k {
            "principal" => want.eq_ignore_ascii_case(got),
            "fullResourceName" => full_name_by_id(sc, want) == full_name_by_id(sc, got),
            _ => want == got,
        };
        if !same {
            return envelope::invalid_argument(format!(
                "ipd-fakegcp cannot evaluate policies: its troubleshoot.json answers for {k} `{want}`, and `{got}` was asked."
            ));
        }
    }
    Reply::ok(stored.clone())
}

fn tokeninfo(req: &Request<'_>) -> Reply {
    let given = |k: &str| req.param(k).map(str::trim).filter(|t| !t.is_empty());
    if let Some(t) = given("access_token") {
        if req.token.is_some_and(|expected| expected != t) {
            return envelope::invalid_token();
        }
        let mut m = Map::new();
        let scope = match req.identity {
            Some(email) => {
                let uid = user_id(email);
                // A service account's token is issued to its own OAuth client (its unique ID);
                // a user's, to gcloud's client.
                let client = if email.ends_with(".gserviceaccount.com") {
                    uid.clone()
                } else {
                    ipd_model::token::GCLOUD_CLIENT_ID.to_string()
                };
                m.insert("issued_to".into(), json!(client));
                m.insert("audience".into(), json!(client));
                m.insert("user_id".into(), json!(uid));
                m.insert("email".into(), json!(email));
                m.insert("verified_email".into(), json!(true));
                "https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/cloud-platform openid"
            }
            None => {
                let client = ipd_model::token::GCLOUD_CLIENT_ID;
                m.insert("issued_to".into(), json!(client));
                m.insert("audience".into(), json!(client));
                "https://www.googleapis.com/auth/cloud-platform"
            }
        };
        m.insert("scope".into(), json!(scope));
        m.insert("expires_in".into(), json!(TOKEN_EXPIRES_IN));
        return Reply::ok(Value::Object(m));
    }
    if let Some(t) = given("id_token") {
        let token = ipd_model::token::Token::analyze(t);
        // Only Google's own ID tokens are known to it.
        let Some(c) = token
            .claims
            .filter(|_| token.kind == ipd_model::token::TokenKind::GoogleIdToken)
        else {
            return envelope::invalid_token();
        };
        let left = c.exp.map(|e| e - chrono::Utc::now().timestamp());
        if left.is_none_or(|l| l <= 0) {
            return envelope::invalid_token();
        }
        let mut m = Map::new();
        if let Some(a) = c.azp.clone().or_else(|| c.aud.first().cloned()) {
            m.insert("issued_to".into(), json!(a));
        }
        if let Some(a) = c.aud.first() {
            m.insert("audience".into(), json!(a));
        }
        if let Some(sub) = &c.sub {
            m.insert("user_id".into(), json!(sub));
        }
        m.insert("expires_in".into(), json!(left));
        if let Some(e) = &c.email {
            m.insert("email".into(), json!(e));
            m.insert(
                "verified_email".into(),
                json!(c.email_verified.unwrap_or(false)),
            );
        }
        return Reply::ok(Value::Object(m));
    }
    envelope::oauth_error(
        400,
        "invalid_request",
        "either access_token, id_token, or token_handle required",
    )
}

/// Seconds left on the accepted access token, as tokeninfo tells it (fixed: no clock in
/// answers that tests compare).
pub const TOKEN_EXPIRES_IN: i64 = 3599;

/// A stable, obfuscated-looking numeric user ID for an email (21 digits, as Google's).
fn user_id(email: &str) -> String {
    format!("1{:020}", fingerprint(email))
}

#[cfg(test)]
mod ancestry_tests {
    use super::*;

    fn ids(sc: &Scenario) -> Vec<(String, String)> {
        let req = Request {
            query: Vec::new(),
            body: b"",
            logging_empty_pages: 0,
            token: None,
            identity: None,
            host: None,
        };
        let r = answer(
            sc,
            &Target::ProjectAncestry(sc.identity.project_id.clone()),
            &req,
        );
        assert_eq!(r.status, 200);
        r.body["ancestor"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                (
                    a["resourceId"]["type"].as_str().unwrap_or("").to_string(),
                    a["resourceId"]["id"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn a_project_without_parent_is_its_own_ancestry() {
        let sc = Scenario::default();
        assert_eq!(
            ids(&sc),
            vec![("project".to_string(), sc.identity.project_id.clone())]
        );
    }

    #[test]
    fn a_folder_cycle_is_cut_and_an_unknown_folder_ends_the_walk() {
        let mut sc = Scenario::default()
            .with_folder("1", Some(Parent::Folder("2".into())), None)
            .with_folder("2", Some(Parent::Folder("1".into())), None);
        sc.project_parent = Some(Parent::Folder("1".into()));
        let got: Vec<String> = ids(&sc).into_iter().map(|(_, id)| id).collect();
        assert_eq!(got[1..], ["1".to_string(), "2".to_string()]);
        let sc = Scenario {
            project_parent: Some(Parent::Folder("9".into())),
            ..Scenario::default()
        };
        let got = ids(&sc);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], ("folder".to_string(), "9".to_string()));
    }
}
