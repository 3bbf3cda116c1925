//! A generated organization for `scan`: a `fixtures/org-*/org.yaml` description (folders,
//! projects, services, callers per service, seeded problems) expanded deterministically into
//! the resources, IAM policies, Admin Activity entries and org policies that
//! [`crate::org_server`] serves through Cloud Asset Inventory and the per-resource APIs.
//!
//! Every resource is written in its own API's JSON (the shapes of the bundle fixtures: Admin
//! API v2 services, Pub/Sub subscriptions, Scheduler jobs, Cloud Tasks queues, Eventarc
//! triggers, Workflows; audit `protoPayload`s of `SetIamPolicy`). A healthy caller sends an
//! OIDC token with the service URL as audience, as a service account bound to
//! `roles/run.invoker` (on the service, on its project for every 7th, or through a custom
//! organization role for every 11th). Each seeded problem breaks one pair or one service in
//! one known way and records the cause the scan must find ([`Seeded`]).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};

use ipd_model::doc::ParseError;

/// The description in `org.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgSpec {
    /// Organization number.
    pub organization: String,
    /// Folders directly under the organization.
    pub folders: usize,
    pub projects_per_folder: usize,
    pub regions: Vec<String>,
    /// Services in all, spread round-robin over the projects.
    pub services: usize,
    pub callers_per_service: usize,
    /// Services with a successful `allUsers` grant (meant public, public: healthy).
    #[serde(default)]
    pub public_services: Vec<usize>,
    #[serde(default)]
    pub problems: Vec<Problem>,
}

/// One seeded problem: `kind` applied to service `service` (and its caller `caller`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Problem {
    pub service: usize,
    #[serde(default)]
    pub caller: usize,
    pub kind: ProblemKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The caller's service account holds no invoke role.
    CallerNotInvoker,
    /// A Scheduler job that sends an OAuth access token.
    SchedulerOauthToken,
    /// A push subscription without `oidcToken`.
    PushWithoutOidc,
    /// The only binding names the caller as `deleted:serviceAccount:...`.
    DeletedServiceAccount,
    /// A push subscription whose OIDC audience defaults to the push URL, with a path.
    PushAudienceWithPath,
    /// A gen2 function whose caller holds only `roles/cloudfunctions.invoker`.
    FunctionsInvokerOnly,
    /// The owner's `allUsers` grant was refused by domain restricted sharing.
    PublicBlockedByDrs,
}

impl ProblemKind {
    /// The cause the scan must report for it.
    pub fn cause(self) -> &'static str {
        match self {
            ProblemKind::CallerNotInvoker => "missing_invoker_binding",
            ProblemKind::SchedulerOauthToken => "access_token_not_id_token",
            ProblemKind::PushWithoutOidc => "no_token",
            ProblemKind::DeletedServiceAccount => "deleted_principal",
            ProblemKind::PushAudienceWithPath => "wrong_audience",
            ProblemKind::FunctionsInvokerOnly => "functions_invoker_role_only",
            ProblemKind::PublicBlockedByDrs => "public_access_blocked_by_domain_restriction",
        }
    }

    /// The caller kind the problem needs, if any.
    fn caller_kind(self) -> Option<Kind> {
        match self {
            ProblemKind::SchedulerOauthToken => Some(Kind::Scheduler),
            ProblemKind::PushWithoutOidc | ProblemKind::PushAudienceWithPath => Some(Kind::Pubsub),
            _ => None,
        }
    }
}

/// What the scan must find: the service, the caller (`allUsers` for a public one), the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seeded {
    pub service: String,
    pub caller: String,
    pub cause: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pubsub,
    Scheduler,
    Eventarc,
    TasksQueue,
    Workflow,
}

const KINDS: [Kind; 5] = [
    Kind::Pubsub,
    Kind::Scheduler,
    Kind::Eventarc,
    Kind::TasksQueue,
    Kind::Workflow,
];

/// Where a resource sits.
#[derive(Debug, Clone)]
pub struct Place {
    pub project_id: String,
    pub project_number: String,
    /// Nearest first.
    pub folders: Vec<String>,
}

/// One resource as the index holds it.
#[derive(Debug, Clone)]
pub struct Resource {
    /// The full resource name.
    pub name: String,
    pub asset_type: &'static str,
    pub place: Place,
    pub location: Option<String>,
    /// The resource JSON of its own API (what `get` returns).
    pub data: Value,
    /// What the index holds of it (`versionedResources[0].resource`), when not `data`.
    pub indexed: Option<Value>,
    pub additional: Value,
}

/// One IAM policy.
#[derive(Debug, Clone)]
pub struct PolicyAt {
    pub resource: String,
    pub asset_type: &'static str,
    /// `None` for folders and the organization.
    pub place: Option<Place>,
    pub bindings: Vec<(String, Vec<String>)>,
}

/// The organization, expanded.
#[derive(Debug, Clone)]
pub struct Org {
    pub organization: String,
    pub folders: Vec<String>,
    pub projects: Vec<Place>,
    pub resources: Vec<Resource>,
    pub policies: Vec<PolicyAt>,
    /// Admin Activity entries per project number (timestamps relative to `now`).
    pub audit: BTreeMap<String, Vec<Value>>,
    /// Effective org policies per project number, by constraint.
    pub org_policies: BTreeMap<String, Vec<Value>>,
    /// Custom roles: name → permissions.
    pub custom_roles: BTreeMap<String, Vec<String>>,
    pub seeded: Vec<Seeded>,
    pub service_count: usize,
    pub caller_count: usize,
}

/// Reads `org.yaml`.
pub fn load_spec(path: &Path) -> Result<OrgSpec, ParseError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ParseError::new(&file, format!("cannot read: {e}")))?;
    serde_saphyr::from_str::<OrgSpec>(&text).map_err(|e| ParseError::new(&file, e.to_string()))
}

fn sa(account: &str, project: &str) -> String {
    format!("{account}@{project}.iam.gserviceaccount.com")
}

/// Expands `spec`; audit timestamps are `now` minus a few days.
pub fn generate(spec: &OrgSpec, now: chrono::DateTime<chrono::Utc>) -> Org {
    let org = spec.organization.clone();
    let folders: Vec<String> = (0..spec.folders.max(1))
        .map(|f| format!("{}", 200_000_000_000u64 + f as u64))
        .collect();
    let mut projects = Vec::new();
    for (fi, f) in folders.iter().enumerate() {
        for p in 0..spec.projects_per_folder.max(1) {
            let k = projects.len();
            projects.push(Place {
                project_id: format!("shop-f{fi}-p{p}"),
                project_number: format!("{}", 300_000_000_000u64 + k as u64),
                folders: vec![f.clone()],
            });
        }
    }
    let custom_role = format!("organizations/{org}/roles/runCaller");
    let mut out = Org {
        organization: org.clone(),
        folders: folders.clone(),
        projects: projects.clone(),
        resources: Vec::new(),
        policies: Vec::new(),
        audit: BTreeMap::new(),
        org_policies: BTreeMap::new(),
        custom_roles: BTreeMap::from([(
            custom_role.clone(),
            vec![
                "run.routes.invoke".to_string(),
                "run.services.get".to_string(),
            ],
        )]),
        seeded: Vec::new(),
        service_count: spec.services,
        caller_count: spec.services * spec.callers_per_service,
    };
    let mut project_bindings: BTreeMap<String, Vec<(String, Vec<String>)>> = BTreeMap::new();
    for p in &projects {
        project_bindings.insert(
            p.project_number.clone(),
            vec![(
                "roles/pubsub.serviceAgent".into(),
                vec![format!(
                    "serviceAccount:service-{}@gcp-sa-pubsub.iam.gserviceaccount.com",
                    p.project_number
                )],
            )],
        );
        out.resources.push(Resource {
            name: format!(
                "//cloudresourcemanager.googleapis.com/projects/{}",
                p.project_number
            ),
            asset_type: "cloudresourcemanager.googleapis.com/Project",
            place: p.clone(),
            location: Some("global".into()),
            data: json!({"projectNumber": p.project_number, "projectId": p.project_id,
                         "lifecycleState": "ACTIVE",
                         "parent": {"type": "folder", "id": p.folders[0]}}),
            indexed: None,
            additional: json!({"projectId": p.project_id}),
        });
    }
    let ago = |days: i64| {
        (now - chrono::Duration::days(days)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    };
    for j in 0..spec.services {
        let place = projects[j % projects.len()].clone();
        let region = spec.regions[j % spec.regions.len().max(1)].clone();
        let name = format!("svc-{j:04}");
        let (pid, pnum) = (place.project_id.clone(), place.project_number.clone());
        let host = format!("{name}-{pnum}.{region}.run.app");
        let url = format!("https://{host}");
        let api_name = format!("projects/{pid}/locations/{region}/services/{name}");
        let full = format!("//run.googleapis.com/{api_name}");
        let problems: Vec<&Problem> = spec.problems.iter().filter(|p| p.service == j).collect();
        let is_function = problems
            .iter()
            .any(|p| p.kind == ProblemKind::FunctionsInvokerOnly);
        let mut labels = serde_json::Map::new();
        if is_function {
            labels.insert("goog-managed-by".into(), json!("cloudfunctions"));
        }
        let data = json!({
            "name": api_name, "uid": format!("uid-{j}"), "uri": url, "urls": [url],
            "ingress": "INGRESS_TRAFFIC_ALL", "labels": labels,
            "template": {"serviceAccount": sa("runtime", &pid),
                         "containers": [{"image": "europe-docker.pkg.dev/shop/app:1"}]},
        });
        out.resources.push(Resource {
            name: full.clone(),
            asset_type: "run.googleapis.com/Service",
            place: place.clone(),
            location: Some(region.clone()),
            data,
            indexed: None,
            additional: json!({}),
        });
        let mut service_bindings: Vec<(String, Vec<String>)> = Vec::new();
        let mut bind = |role: &str, member: String, at_project: bool| {
            let target = if at_project {
                project_bindings.entry(pnum.clone()).or_default()
            } else {
                &mut service_bindings
            };
            match target.iter_mut().find(|(r, _)| r == role) {
                Some((_, m)) => m.push(member),
                None => target.push((role.to_string(), vec![member])),
            }
        };
        for c in 0..spec.callers_per_service {
            let problem = problems
                .iter()
                .find(|p| p.caller == c && p.kind != ProblemKind::PublicBlockedByDrs)
                .map(|p| p.kind);
            let kind = problem
                .and_then(ProblemKind::caller_kind)
                .unwrap_or(KINDS[(j * spec.callers_per_service + c) % KINDS.len()]);
            let account = sa(&format!("caller-{j}-{c}"), &pid);
            let (full_caller, data, indexed, asset_type, label) = caller_resource(
                kind, &pid, &region, &name, j, c, &url, &host, &account, problem,
            );
            out.resources.push(Resource {
                name: full_caller,
                asset_type,
                place: place.clone(),
                location: Some(region.clone()),
                data,
                indexed,
                additional: json!({}),
            });
            let member = format!("serviceAccount:{account}");
            match problem {
                Some(ProblemKind::CallerNotInvoker) => {}
                Some(ProblemKind::DeletedServiceAccount) => bind(
                    "roles/run.invoker",
                    format!("deleted:{member}?uid=1{j:05}{c:02}"),
                    false,
                ),
                Some(ProblemKind::FunctionsInvokerOnly) => {
                    bind("roles/cloudfunctions.invoker", member, false)
                }
                _ if (j + c) % 11 == 10 => bind(&custom_role, member, false),
                _ if (j + c) % 7 == 6 => bind("roles/run.invoker", member, true),
                _ => bind("roles/run.invoker", member, false),
            }
            if let Some(p) = problem {
                out.seeded.push(Seeded {
                    service: full.clone(),
                    caller: label,
                    cause: p.cause(),
                });
            }
        }
        let owner = format!("ops-admin@{pid}.example.com");
        let audit = out.audit.entry(pnum.clone()).or_default();
        if spec.public_services.contains(&j) {
            bind("roles/run.invoker", "allUsers".into(), false);
            audit.push(set_iam_entry(&pnum, &api_name, &owner, &ago(3), 0, j));
        }
        if problems
            .iter()
            .any(|p| p.kind == ProblemKind::PublicBlockedByDrs)
        {
            audit.push(set_iam_entry(&pnum, &api_name, &owner, &ago(2), 9, j));
            out.org_policies.insert(
                pnum.clone(),
                vec![json!({
                    "name": format!("projects/{pnum}/policies/iam.allowedPolicyMemberDomains"),
                    "spec": {"rules": [{"values": {"allowedValues": ["C03xk2a9b"]}}]}
                })],
            );
            out.seeded.push(Seeded {
                service: full.clone(),
                caller: "allUsers".into(),
                cause: ProblemKind::PublicBlockedByDrs.cause(),
            });
        }
        if !service_bindings.is_empty() {
            out.policies.push(PolicyAt {
                resource: full.clone(),
                asset_type: "run.googleapis.com/Service",
                place: Some(place.clone()),
                bindings: service_bindings,
            });
        }
    }
    for p in &projects {
        out.policies.push(PolicyAt {
            resource: format!(
                "//cloudresourcemanager.googleapis.com/projects/{}",
                p.project_number
            ),
            asset_type: "cloudresourcemanager.googleapis.com/Project",
            place: Some(p.clone()),
            bindings: project_bindings
                .remove(&p.project_number)
                .unwrap_or_default(),
        });
    }
    for f in &folders {
        out.policies.push(PolicyAt {
            resource: format!("//cloudresourcemanager.googleapis.com/folders/{f}"),
            asset_type: "cloudresourcemanager.googleapis.com/Folder",
            place: None,
            bindings: vec![(
                "roles/resourcemanager.folderViewer".into(),
                vec!["group:platform@shop.example.com".into()],
            )],
        });
    }
    out.policies.push(PolicyAt {
        resource: format!("//cloudresourcemanager.googleapis.com/organizations/{org}"),
        asset_type: "cloudresourcemanager.googleapis.com/Organization",
        place: None,
        bindings: vec![(
            "roles/run.admin".into(),
            vec!["user:platform-admin@shop.example.com".into()],
        )],
    });
    out
}

/// The resource of one caller: (full name, API JSON, what the index holds when it differs,
/// asset type, `--caller-config` label).
#[allow(clippy::too_many_arguments)]
fn caller_resource(
    kind: Kind,
    pid: &str,
    region: &str,
    service: &str,
    j: usize,
    c: usize,
    url: &str,
    host: &str,
    account: &str,
    problem: Option<ProblemKind>,
) -> (String, Value, Option<Value>, &'static str, String) {
    let oidc = json!({"serviceAccountEmail": account, "audience": url});
    match kind {
        Kind::Pubsub => {
            let name = format!("projects/{pid}/subscriptions/sub-{j}-{c}");
            let mut push = json!({"pushEndpoint": format!("{url}/pubsub/push"),
                                  "attributes": {"x-goog-version": "v1"}});
            match problem {
                Some(ProblemKind::PushWithoutOidc) => {}
                Some(ProblemKind::PushAudienceWithPath) => {
                    push["oidcToken"] = json!({"serviceAccountEmail": account})
                }
                _ => push["oidcToken"] = oidc,
            }
            let data = json!({"name": name, "topic": format!("projects/{pid}/topics/events-{j}"),
                "pushConfig": push, "ackDeadlineSeconds": 10, "messageRetentionDuration": "604800s",
                "state": "ACTIVE"});
            (
                format!("//pubsub.googleapis.com/{name}"),
                data,
                None,
                "pubsub.googleapis.com/Subscription",
                format!("pubsub:{name}"),
            )
        }
        Kind::Scheduler => {
            let name = format!("projects/{pid}/locations/{region}/jobs/job-{j}-{c}");
            let mut target = json!({"uri": format!("{url}/tasks/tick"), "httpMethod": "POST"});
            if problem == Some(ProblemKind::SchedulerOauthToken) {
                target["oauthToken"] = json!({"serviceAccountEmail": account,
                    "scope": "https://www.googleapis.com/auth/cloud-platform"});
            } else {
                target["oidcToken"] = oidc;
            }
            let data = json!({"name": name, "httpTarget": target, "schedule": "0 2 * * *",
                "timeZone": "Etc/UTC", "state": "ENABLED"});
            (
                format!("//cloudscheduler.googleapis.com/{name}"),
                data,
                None,
                "cloudscheduler.googleapis.com/Job",
                format!("scheduler:{name}"),
            )
        }
        Kind::Eventarc => {
            let name = format!("projects/{pid}/locations/{region}/triggers/trg-{j}-{c}");
            let data = json!({"name": name, "uid": format!("t-{j}-{c}"),
                "eventFilters": [{"attribute": "type", "value": "google.cloud.storage.object.v1.finalized"},
                                 {"attribute": "bucket", "value": format!("{pid}-uploads")}],
                "serviceAccount": account,
                "destination": {"cloudRun": {"service": service, "region": region, "path": "/events"}},
                "transport": {"pubsub": {"topic": format!("projects/{pid}/topics/eventarc-{j}-{c}")}}});
            (
                format!("//eventarc.googleapis.com/{name}"),
                data,
                None,
                "eventarc.googleapis.com/Trigger",
                format!("eventarc:{name}"),
            )
        }
        Kind::TasksQueue => {
            let name = format!("projects/{pid}/locations/{region}/queues/q-{j}-{c}");
            let data = json!({"name": name, "state": "RUNNING",
                "httpTarget": {"uriOverride": {"scheme": "HTTPS", "host": host,
                                               "pathOverride": {"path": "/work"}},
                               "httpMethod": "POST", "oidcToken": oidc},
                "rateLimits": {"maxDispatchesPerSecond": 10}});
            (
                format!("//cloudtasks.googleapis.com/{name}"),
                data,
                None,
                "cloudtasks.googleapis.com/Queue",
                format!("tasks:{name}"),
            )
        }
        Kind::Workflow => {
            let name = format!("projects/{pid}/locations/{region}/workflows/wf-{j}-{c}");
            let source = format!(
                "main:\n  steps:\n    - call_service:\n        call: http.post\n        args:\n          url: {url}/run\n          auth:\n            type: OIDC\n            audience: {url}\n        result: r\n    - done:\n        return: ${{r.body}}\n"
            );
            let data = json!({"name": name, "state": "ACTIVE", "revisionId": "000001-a1b",
                "serviceAccount": format!("projects/{pid}/serviceAccounts/{account}"),
                "sourceContents": source});
            // The index is assumed to leave the (large) source out: the scan must `get` it.
            let mut indexed = data.clone();
            if let Some(o) = indexed.as_object_mut() {
                o.remove("sourceContents");
            }
            (
                format!("//workflows.googleapis.com/{name}"),
                data,
                Some(indexed),
                "workflows.googleapis.com/Workflow",
                format!("workflows:{name}"),
            )
        }
    }
}

/// A `SetIamPolicy` Admin Activity entry adding `allUsers` as invoker: `code` 0 landed, 9
/// refused by domain restricted sharing (`FAILED_PRECONDITION`, facts §8.1/§8.2).
fn set_iam_entry(pnum: &str, resource: &str, who: &str, time: &str, code: i64, j: usize) -> Value {
    let mut p = json!({
        "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
        "authenticationInfo": {"principalEmail": who},
        "methodName": "google.cloud.run.v2.Services.SetIamPolicy",
        "serviceName": "run.googleapis.com",
        "resourceName": resource,
        "request": {"@type": "type.googleapis.com/google.iam.v1.SetIamPolicyRequest",
                    "resource": resource,
                    "policy": {"bindings": [{"role": "roles/run.invoker", "members": ["allUsers"]}]}},
    });
    if code == 0 {
        p["serviceData"] = json!({"@type": "type.googleapis.com/google.iam.v1.logging.AuditData",
            "policyDelta": {"bindingDeltas": [{"action": "ADD", "role": "roles/run.invoker", "member": "allUsers"}]}});
    } else {
        p["status"] = json!({"code": code,
            "message": "One or more users named in the policy do not belong to a permitted customer.",
            "details": [{"@type": "type.googleapis.com/google.rpc.PreconditionFailure",
                "violations": [{"type": "constraints/iam.allowedPolicyMemberDomains",
                    "subject": "orgpolicy:projects/".to_string() + pnum,
                    "description": "User allUsers is not in permitted organization."}]}]});
    }
    json!({
        "insertId": format!("audit-{j:05}-{code}"),
        "logName": format!("projects/{pnum}/logs/cloudaudit.googleapis.com%2Factivity"),
        "protoPayload": p,
        "receiveTimestamp": time,
        "timestamp": time,
        "resource": {"type": "cloud_run_revision", "labels": {"project_id": pnum, "service_name": resource.rsplit('/').next().unwrap_or(""), "location": ""}},
        "severity": if code == 0 { "NOTICE" } else { "ERROR" },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> OrgSpec {
        OrgSpec {
            organization: "100000000001".into(),
            folders: 2,
            projects_per_folder: 2,
            regions: vec!["europe-west1".into(), "us-central1".into()],
            services: 10,
            callers_per_service: 2,
            public_services: vec![3],
            problems: vec![
                Problem {
                    service: 1,
                    caller: 0,
                    kind: ProblemKind::SchedulerOauthToken,
                },
                Problem {
                    service: 2,
                    caller: 0,
                    kind: ProblemKind::PublicBlockedByDrs,
                },
            ],
        }
    }

    #[test]
    fn generation_is_deterministic_and_counts_match() {
        let now = chrono::Utc::now();
        let a = generate(&spec(), now);
        let b = generate(&spec(), now);
        assert_eq!(a.resources.len(), b.resources.len());
        assert_eq!(
            a.resources.iter().map(|r| &r.name).collect::<Vec<_>>(),
            b.resources.iter().map(|r| &r.name).collect::<Vec<_>>()
        );
        let services = a
            .resources
            .iter()
            .filter(|r| r.asset_type == "run.googleapis.com/Service")
            .count();
        assert_eq!(services, 10);
        assert_eq!(a.caller_count, 20);
        assert_eq!(a.seeded.len(), 2);
        assert_eq!(a.seeded[0].cause, "access_token_not_id_token");
        assert!(a.seeded[0].caller.starts_with("scheduler:"));
    }
}
