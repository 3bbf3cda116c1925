//! What `scan` reads through Cloud Asset Inventory v1: the Cloud Run services of a scope, the
//! Google-managed callers that target them, and every IAM binding that grants
//! `run.routes.invoke` (or `roles/cloudfunctions.invoker`), reduced page by page to the few
//! fields the rules need. Parsers of one `ResourceSearchResult` / `IamPolicySearchResult`
//! each; no I/O.
//!
//! Shapes (`discovery/cloudasset-v1.json`): a resource result has `name` (the full resource
//! name, `//run.googleapis.com/projects/P/locations/R/services/S`), `assetType`, `project`
//! (`projects/NUMBER`), `folders[]`, `organization`, `location`, `additionalAttributes` and,
//! with `readMask` naming it, `versionedResources[] {version, resource}`: the resource as its
//! own API defines it. For `run.googleapis.com/Service` the version held there (Admin API v2
//! or v1 Knative) is not confirmed; both are read with the same parser as `service.json`.
//! An IAM result has `resource`, `assetType`, `project`, `folders[]`, `organization`,
//! `policy` (only the bindings that match the query) and `explanation.matchedPermissions`
//! (role → permissions), from which custom roles that grant invoke are known without
//! `iam.roles.get`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::caller::CallerConfig;
use crate::evidence::Gap;
use crate::gathered::Gathered;
use crate::iam::{Binding, Policy};
use crate::logs::LogEntry;
use crate::orgpolicy::OrgPolicy;
use crate::roles::{INVOKE_PERMISSION, Role};
use crate::service::{RawService, Service};

pub const RUN_SERVICE: &str = "run.googleapis.com/Service";
pub const PUBSUB_SUBSCRIPTION: &str = "pubsub.googleapis.com/Subscription";
pub const SCHEDULER_JOB: &str = "cloudscheduler.googleapis.com/Job";
pub const EVENTARC_TRIGGER: &str = "eventarc.googleapis.com/Trigger";
pub const WORKFLOW: &str = "workflows.googleapis.com/Workflow";
pub const TASKS_QUEUE: &str = "cloudtasks.googleapis.com/Queue";
pub const PROJECT: &str = "cloudresourcemanager.googleapis.com/Project";

/// The caller asset types a scan searches.
pub const CALLER_TYPES: &[&str] = &[
    PUBSUB_SUBSCRIPTION,
    SCHEDULER_JOB,
    EVENTARC_TRIGGER,
    WORKFLOW,
    TASKS_QUEUE,
];

/// The IAM searches: every binding whose role carries the invoke permission; the Cloud
/// Functions invoker role, which does not (it matters for gen2 functions); and the Pub/Sub
/// service agents' grants (whether Pub/Sub can mint push tokens). A policy in the inventory
/// holds only the bindings these match, which is all the rules read of it.
pub const IAM_QUERIES: &[&str] = &[
    "policy.role.permissions:run.routes.invoke",
    "policy:roles/cloudfunctions.invoker",
    "policy:gcp-sa-pubsub.iam.gserviceaccount.com",
];

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

fn strings(v: &Value, k: &str) -> Vec<String> {
    v.get(k)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// The host of an `http(s)://` URL, lowercased, without userinfo, port or trailing dot.
pub fn url_host(url: &str) -> Option<String> {
    let u = url.trim();
    let lower = u.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))?;
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.rsplit('@').next()?;
    let host = host.split(':').next()?.trim_end_matches('.');
    (!host.is_empty()).then(|| host.to_string())
}

/// Where a resource sits: its project number and ancestors, as the search results say.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Placement {
    /// The project number (from `project: projects/NUMBER`).
    pub project_number: Option<String>,
    /// Folder numbers, as listed.
    pub folders: Vec<String>,
    pub organization: Option<String>,
}

impl Placement {
    fn of(v: &Value) -> Placement {
        Placement {
            project_number: s(v, "project").map(|p| p.trim_start_matches("projects/").to_string()),
            folders: strings(v, "folders")
                .into_iter()
                .map(|f| f.trim_start_matches("folders/").to_string())
                .collect(),
            organization: s(v, "organization")
                .map(|o| o.trim_start_matches("organizations/").to_string()),
        }
    }
}

/// One Cloud Run service of the scope.
#[derive(Debug, Clone, PartialEq)]
pub struct ScannedService {
    /// `//run.googleapis.com/projects/P/locations/R/services/S`.
    pub full_name: String,
    /// The project segment of the name (ID or number).
    pub project: String,
    pub region: String,
    pub name: String,
    pub placement: Placement,
    /// The resource, from `versionedResources` or, when the search held none or it was stale,
    /// from `services.get`.
    pub service: Gathered<Service>,
    /// True once `services.get` confirmed the resource (the index can lag behind it).
    pub confirmed_by_get: bool,
}

impl ScannedService {
    /// `projects/P/locations/R/services/S`, the Admin API name.
    pub fn api_name(&self) -> String {
        format!(
            "projects/{}/locations/{}/services/{}",
            self.project, self.region, self.name
        )
    }
}

/// Where a caller sends its requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum CallerTarget {
    Url {
        url: String,
    },
    /// Eventarc's `destination.cloudRun`: a service by name in the trigger's project.
    RunService {
        region: String,
        service: String,
    },
}

/// One Google-managed caller of the scope.
#[derive(Debug, Clone, PartialEq)]
pub struct ScannedCaller {
    /// The full resource name (`//pubsub.googleapis.com/projects/P/subscriptions/S`).
    pub full_name: String,
    pub asset_type: String,
    pub placement: Placement,
    /// The configuration, when the search's resource data (or the fallback `get`) held it.
    pub config: Option<CallerConfig>,
    pub target: Option<CallerTarget>,
    /// The search's data lacks a field the rules need (a workflow's source, or no data at
    /// all): the scan reads the caller with its API's `get`.
    pub needs_get: bool,
}

impl ScannedCaller {
    /// `projects/P/...`, the caller's API name (the full name without its host).
    pub fn api_name(&self) -> String {
        self.full_name
            .trim_start_matches("//")
            .split_once('/')
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_default()
    }

    /// `KIND:projects/P/...`, the `--caller-config` spelling.
    pub fn label(&self) -> String {
        let kind = match self.asset_type.as_str() {
            PUBSUB_SUBSCRIPTION => "pubsub",
            SCHEDULER_JOB => "scheduler",
            EVENTARC_TRIGGER => "eventarc",
            WORKFLOW => "workflows",
            TASKS_QUEUE => "tasks",
            _ => "caller",
        };
        format!("{kind}:{}", self.api_name())
    }

    /// Reads a caller's configuration (the resource JSON of its API) into this caller.
    pub fn set_config(&mut self, resource: &Value) {
        self.config = CallerConfig::from_value(resource);
        self.target = caller_target(resource, self.config.as_ref());
        self.needs_get = self.asset_type == WORKFLOW && resource.get("sourceContents").is_none();
    }
}

/// The target of a caller from its resource JSON.
fn caller_target(resource: &Value, config: Option<&CallerConfig>) -> Option<CallerTarget> {
    if let Some(cr) = resource.get("destination").and_then(|d| d.get("cloudRun")) {
        return Some(CallerTarget::RunService {
            region: s(cr, "region").unwrap_or_default(),
            service: s(cr, "service")?,
        });
    }
    config
        .and_then(|c| c.target_url.clone())
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .map(|url| CallerTarget::Url { url })
}

/// The resource JSON of a result (the first of `versionedResources`).
fn resource_data(v: &Value) -> Option<&Value> {
    v.get("versionedResources")
        .and_then(Value::as_array)?
        .iter()
        .find_map(|r| r.get("resource"))
        .filter(|r| r.is_object())
}

/// A resource search result, read.
#[derive(Debug, Clone, PartialEq)]
pub enum Asset {
    Service(Box<ScannedService>),
    Caller(Box<ScannedCaller>),
    /// A project: number and ID.
    Project {
        number: String,
        id: String,
    },
}

/// Reads one `ResourceSearchResult`; `None` for a type the scan does not use or a result
/// without a usable name.
pub fn parse_resource(v: &Value) -> Option<Asset> {
    let name = s(v, "name")?;
    let asset_type = s(v, "assetType")?;
    let placement = Placement::of(v);
    match asset_type.as_str() {
        RUN_SERVICE => {
            let path = name.strip_prefix("//run.googleapis.com/")?;
            let segs: Vec<&str> = path.split('/').collect();
            let ["projects", p, "locations", r, "services", svc] = segs.as_slice() else {
                return None;
            };
            let service = match resource_data(v) {
                None => Gathered::missing("the search returned no resource data for it"),
                Some(data) => match serde_json::from_value::<RawService>(data.clone())
                    .map_err(|e| e.to_string())
                    .and_then(|raw| {
                        Service::from_raw("versionedResources", raw).map_err(|e| e.to_string())
                    }) {
                    Ok(mut svc) => {
                        svc.project_number = svc
                            .project_number
                            .or_else(|| placement.project_number.clone());
                        if svc.region.is_none() {
                            svc.region = Some(r.to_string());
                        }
                        Gathered::Present(svc)
                    }
                    Err(e) => Gathered::Failed {
                        error: format!("its resource data could not be read: {e}"),
                    },
                },
            };
            Some(Asset::Service(Box::new(ScannedService {
                project: p.to_string(),
                region: r.to_string(),
                name: svc.to_string(),
                full_name: name,
                placement,
                service,
                confirmed_by_get: false,
            })))
        }
        t if CALLER_TYPES.contains(&t) => {
            let mut c = ScannedCaller {
                full_name: name,
                asset_type,
                placement,
                config: None,
                target: None,
                needs_get: true,
            };
            if let Some(data) = resource_data(v) {
                c.set_config(data);
            }
            Some(Asset::Caller(Box::new(c)))
        }
        PROJECT => {
            let number = placement
                .project_number
                .clone()
                .or_else(|| name.rsplit('/').next().map(str::to_string))?;
            let id = v
                .get("additionalAttributes")
                .and_then(|a| s(a, "projectId"))
                .or_else(|| resource_data(v).and_then(|d| s(d, "projectId")))?;
            Some(Asset::Project { number, id })
        }
        _ => None,
    }
}

/// Where an IAM policy is attached, normalised so that a project's ID and number agree.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum PolicyKey {
    /// Project number, region, service.
    Service(String, String, String),
    Project(String),
    Folder(String),
    Organization(String),
}

/// Reads one `IamPolicySearchResult`: where it is attached, the matching bindings, and the
/// custom roles the explanation shows to carry the invoke permission.
pub fn parse_policy(v: &Value) -> Option<(PolicyKey, Vec<Binding>, Vec<Role>)> {
    let resource = s(v, "resource")?;
    let placement = Placement::of(v);
    let key = if let Some(path) = resource.strip_prefix("//run.googleapis.com/") {
        let segs: Vec<&str> = path.split('/').collect();
        let ["projects", p, "locations", r, "services", svc] = segs.as_slice() else {
            return None;
        };
        let number = placement.project_number.clone().unwrap_or(p.to_string());
        PolicyKey::Service(number, r.to_string(), svc.to_string())
    } else if let Some(rest) = resource.strip_prefix("//cloudresourcemanager.googleapis.com/") {
        match rest.split_once('/') {
            Some(("projects", p)) => {
                PolicyKey::Project(placement.project_number.clone().unwrap_or(p.to_string()))
            }
            Some(("folders", f)) => PolicyKey::Folder(f.to_string()),
            Some(("organizations", o)) => PolicyKey::Organization(o.to_string()),
            _ => return None,
        }
    } else {
        return None;
    };
    let policy: Policy = v
        .get("policy")
        .cloned()
        .and_then(|p| serde_json::from_value(p).ok())
        .unwrap_or_default();
    let roles = v
        .get("explanation")
        .and_then(|e| e.get("matchedPermissions"))
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(role, _)| !role.starts_with("roles/"))
        .filter(|(_, p)| {
            strings(p, "permissions")
                .iter()
                .any(|p| p == INVOKE_PERMISSION)
        })
        .map(|(role, _)| Role {
            name: role.clone(),
            title: None,
            included_permissions: vec![INVOKE_PERMISSION.to_string()],
            stage: None,
            deleted: false,
        })
        .collect();
    Some((key, policy.bindings, roles))
}

/// Everything a scan gathered, kept small: no raw page survives its parsing.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// `organizations/O`, `folders/F` or `projects/P`.
    pub scope: String,
    pub services: Vec<ScannedService>,
    pub callers: Vec<ScannedCaller>,
    /// Project number → ID.
    pub project_ids: BTreeMap<String, String>,
    /// Invoke bindings by where they are attached. A level missing here holds none.
    pub bindings: BTreeMap<PolicyKey, Vec<Binding>>,
    /// Levels above the scope (the organization of a folder or project scan, the folders of
    /// a project scan), read apart with `getIamPolicy`: all their bindings, or why not.
    pub outside: BTreeMap<PolicyKey, Gathered<Vec<Binding>>>,
    /// Custom roles known (from the search's explanation) to grant invoke.
    pub custom_roles: Vec<Role>,
    /// Whether the IAM searches were read in full; otherwise why not (every level is then
    /// unknown, never "no binding").
    pub iam: Gathered<()>,
    /// Admin Activity entries per project number (the owner's intent), when read.
    pub audit: BTreeMap<String, Gathered<Vec<LogEntry>>>,
    /// Effective org policies per project number, read for projects with a service meant to
    /// be public.
    pub org_policies: BTreeMap<String, Gathered<Vec<OrgPolicy>>>,
    /// Sources that could not be read (per project or per API).
    pub gaps: Vec<Gap>,
}

impl Inventory {
    /// Adds one parsed resource.
    pub fn add_asset(&mut self, a: Asset) {
        match a {
            Asset::Service(s) => self.services.push(*s),
            Asset::Caller(c) => self.callers.push(*c),
            Asset::Project { number, id } => {
                self.project_ids.insert(number, id);
            }
        }
    }

    /// Adds one parsed IAM result.
    pub fn add_policy(&mut self, key: PolicyKey, bindings: Vec<Binding>, roles: Vec<Role>) {
        let slot = self.bindings.entry(key).or_default();
        for b in bindings {
            if !slot.contains(&b) {
                slot.push(b);
            }
        }
        for r in roles {
            if !self.custom_roles.iter().any(|x| x.name == r.name) {
                self.custom_roles.push(r);
            }
        }
    }

    /// The project's ID when known, else its number.
    pub fn project_label(&self, number: &str) -> String {
        self.project_ids
            .get(number)
            .cloned()
            .unwrap_or_else(|| number.to_string())
    }

    /// The Admin Activity entries about `s`, when its project's were read.
    pub fn service_entries(&self, s: &ScannedService) -> Vec<LogEntry> {
        service_entries_of(self, s)
    }

    /// Why the owner meant `s` to be public ([`crate::audit::public_intent`] over its
    /// Admin Activity entries), as an evidence line; `None` when the log shows no standing
    /// attempt.
    pub fn public_intent(&self, s: &ScannedService) -> Option<String> {
        crate::audit::public_intent(&self.service_entries(s), Some(&s.name)).map(|a| a.describe())
    }

    /// The project number of a service (from the search's `project`, or its name).
    pub fn service_project_number(&self, s: &ScannedService) -> String {
        s.placement.project_number.clone().unwrap_or_else(|| {
            self.project_ids
                .iter()
                .find(|(_, id)| **id == s.project)
                .map(|(n, _)| n.clone())
                .unwrap_or_else(|| s.project.clone())
        })
    }
}

/// The Admin Activity entries about one service (its `resourceName`).
fn service_entries_of(inv: &Inventory, s: &ScannedService) -> Vec<LogEntry> {
    let number = inv.service_project_number(s);
    let suffix = format!("/locations/{}/services/{}", s.region, s.name);
    let Some(Gathered::Present(entries)) = inv.audit.get(&number) else {
        return vec![];
    };
    entries
        .iter()
        .filter(|e| {
            e.proto_payload
                .as_ref()
                .and_then(|p| p.get("resourceName"))
                .and_then(|r| r.as_str())
                .is_some_and(|r| r.ends_with(&suffix))
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_service_result_with_v2_data_is_read() {
        let v = json!({
            "name": "//run.googleapis.com/projects/shop-prod/locations/europe-west1/services/orders-api",
            "assetType": RUN_SERVICE, "project": "projects/123456789012",
            "folders": ["folders/44"], "organization": "organizations/9",
            "versionedResources": [{"version": "v2", "resource": {
                "name": "projects/shop-prod/locations/europe-west1/services/orders-api",
                "uri": "https://orders-api-123456789012.europe-west1.run.app",
                "ingress": "INGRESS_TRAFFIC_ALL"}}]
        });
        let Some(Asset::Service(s)) = parse_resource(&v) else {
            panic!("not a service")
        };
        assert_eq!(s.name, "orders-api");
        assert_eq!(s.placement.folders, vec!["44"]);
        assert_eq!(s.placement.organization.as_deref(), Some("9"));
        let svc = s.service.present().expect("data");
        assert_eq!(
            svc.urls[0],
            "https://orders-api-123456789012.europe-west1.run.app"
        );
    }

    #[test]
    fn a_service_without_data_needs_a_get() {
        let v = json!({"name": "//run.googleapis.com/projects/p/locations/r/services/s",
                       "assetType": RUN_SERVICE});
        let Some(Asset::Service(s)) = parse_resource(&v) else {
            panic!()
        };
        assert!(!s.service.is_present());
    }

    #[test]
    fn callers_read_their_target_and_workflows_without_source_need_a_get() {
        let sub = json!({"name": "//pubsub.googleapis.com/projects/p/subscriptions/s",
            "assetType": PUBSUB_SUBSCRIPTION, "project": "projects/1",
            "versionedResources": [{"version": "v1", "resource": {"name": "projects/p/subscriptions/s",
                "pushConfig": {"pushEndpoint": "https://a-1.r.run.app/push",
                               "oidcToken": {"serviceAccountEmail": "x@p.iam.gserviceaccount.com"}}}}]});
        let Some(Asset::Caller(c)) = parse_resource(&sub) else {
            panic!()
        };
        assert_eq!(
            c.target,
            Some(CallerTarget::Url {
                url: "https://a-1.r.run.app/push".into()
            })
        );
        assert!(!c.needs_get);
        assert_eq!(c.label(), "pubsub:projects/p/subscriptions/s");
        let trig = json!({"name": "//eventarc.googleapis.com/projects/p/locations/r/triggers/t",
            "assetType": EVENTARC_TRIGGER,
            "versionedResources": [{"version": "v1", "resource": {"name": "projects/p/locations/r/triggers/t",
                "eventFilters": [], "serviceAccount": "t@p.iam.gserviceaccount.com",
                "destination": {"cloudRun": {"service": "orders", "region": "r", "path": "/e"}}}}]});
        let Some(Asset::Caller(c)) = parse_resource(&trig) else {
            panic!()
        };
        assert_eq!(
            c.target,
            Some(CallerTarget::RunService {
                region: "r".into(),
                service: "orders".into()
            })
        );
        let wf = json!({"name": "//workflows.googleapis.com/projects/p/locations/r/workflows/w",
            "assetType": WORKFLOW,
            "versionedResources": [{"version": "v1", "resource": {"name": "projects/p/locations/r/workflows/w"}}]});
        let Some(Asset::Caller(c)) = parse_resource(&wf) else {
            panic!()
        };
        assert!(c.needs_get);
    }

    #[test]
    fn policy_results_key_by_project_number_and_name_custom_roles() {
        let v = json!({"resource": "//run.googleapis.com/projects/shop-prod/locations/r/services/s",
            "assetType": RUN_SERVICE, "project": "projects/77",
            "policy": {"bindings": [{"role": "organizations/9/roles/caller", "members": ["serviceAccount:a@p.iam.gserviceaccount.com"]}]},
            "explanation": {"matchedPermissions": {"organizations/9/roles/caller": {"permissions": ["run.routes.invoke"]}}}});
        let (key, bindings, roles) = parse_policy(&v).expect("parsed");
        assert_eq!(key, PolicyKey::Service("77".into(), "r".into(), "s".into()));
        assert_eq!(bindings.len(), 1);
        assert_eq!(roles[0].name, "organizations/9/roles/caller");
        let p = json!({"resource": "//cloudresourcemanager.googleapis.com/projects/shop-prod",
            "project": "projects/77", "policy": {}});
        assert_eq!(
            parse_policy(&p).expect("p").0,
            PolicyKey::Project("77".into())
        );
        let f =
            json!({"resource": "//cloudresourcemanager.googleapis.com/folders/5", "policy": {}});
        assert_eq!(
            parse_policy(&f).expect("f").0,
            PolicyKey::Folder("5".into())
        );
        assert!(parse_policy(&json!({"resource": "//storage.googleapis.com/b"})).is_none());
    }
}
