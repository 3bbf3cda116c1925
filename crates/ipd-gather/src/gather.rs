//! Gathering every evidence source of one service, concurrently.
//!
//! Everything that needs no earlier answer starts at once: the service, its IAM policy, the
//! project's IAM policy, the project (to learn its parent), the request logs, the four org
//! policy constraints and the caller's configuration. Each answer that names more work starts
//! it as soon as it arrives: a project's parent starts that folder's `get` and IAM policy, a
//! folder's parent the next level, and every IAM policy the `roles.get` of the custom roles it
//! binds. So a diagnosis costs the longest chain of dependent calls, not their sum.
//!
//! The result is a [`Recording`]: the documents of an evidence bundle (the contract's file
//! format), each the resource or the error envelope that stood in its place.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{Duration as ChronoDuration, SecondsFormat};
use ipd_model::iam::Policy;
use ipd_model::logs::REQUEST_LOG_SUFFIX;
use ipd_model::orgpolicy::{ALLOWED_INGRESS, DRS_LEGACY, DRS_MANAGED, REQUIRE_INVOKER_IAM};
use ipd_model::principal::Principal;
use ipd_model::roles::{Grants, grants_invoke};
use ipd_model::time::Timestamp;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::endpoints::Api;
use crate::http::{BadName, Call, Client, Failure, check_name, check_policy_name};
use crate::record::Recording;

/// The constraints read with `getEffectivePolicy` (without `constraints/`).
pub const CONSTRAINTS: &[&str] = &[
    DRS_LEGACY,
    DRS_MANAGED,
    REQUIRE_INVOKER_IAM,
    ALLOWED_INGRESS,
];

/// The service a diagnosis is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Project ID or number.
    pub project: String,
    pub region: String,
    pub service: String,
}

impl Target {
    /// `projects/P/locations/R/services/S`, checked to be a well-formed name.
    pub fn resource_name(&self) -> Result<String, BadName> {
        let n = format!(
            "projects/{}/locations/{}/services/{}",
            self.project, self.region, self.service
        );
        check_name(&n)?;
        if [&self.project, &self.region, &self.service]
            .iter()
            .any(|s| s.contains('/'))
        {
            return Err(BadName(n));
        }
        Ok(n)
    }
}

/// A Google-managed caller named by `--caller-config KIND:RESOURCE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerConfigRef {
    pub kind: &'static str,
    pub api: Api,
    pub version: &'static str,
    pub name: String,
}

impl CallerConfigRef {
    /// What it is, for messages: `Pub/Sub subscription`, `Cloud Tasks queue`, ...
    pub fn label(&self) -> &'static str {
        match self.api {
            Api::PubSub => "Pub/Sub subscription",
            Api::CloudScheduler => "Cloud Scheduler job",
            Api::CloudTasks if self.name.contains("/tasks/") => "Cloud Tasks task",
            Api::CloudTasks => "Cloud Tasks queue",
            Api::Eventarc => "Eventarc trigger",
            Api::Workflows => "workflow",
            _ => "caller",
        }
    }

    /// The bundle file it is recorded as: `caller-pubsub.json`, `caller-scheduler.json`,
    /// `caller-tasks.json` (a task), `caller-tasks-queue.json`, `caller-eventarc.json`,
    /// `caller-workflows.json`. The name says the kind, so that a recorded refusal (which
    /// names no resource) still says which permission was missing.
    pub fn file_name(&self) -> String {
        if self.api == Api::CloudTasks && !self.name.contains("/tasks/") {
            "caller-tasks-queue.json".into()
        } else {
            format!("caller-{}.json", self.kind)
        }
    }

    /// `pubsub:projects/P/subscriptions/S`, `scheduler:projects/P/locations/L/jobs/J`,
    /// `tasks:projects/P/locations/L/queues/Q[/tasks/T]`, `eventarc:projects/P/locations/L/triggers/T`,
    /// `workflows:projects/P/locations/L/workflows/W`.
    pub fn parse(spec: &str) -> Result<CallerConfigRef, String> {
        let (kind, name) = spec.split_once(':').ok_or_else(|| {
            format!("`{spec}`: expected KIND:RESOURCE, e.g. pubsub:projects/P/subscriptions/S")
        })?;
        let name = name.trim().trim_start_matches('/');
        let segs: Vec<&str> = name.split('/').collect();
        let shape_ok = |pattern: &[&str]| {
            segs.len() == pattern.len()
                && segs
                    .iter()
                    .zip(pattern)
                    .all(|(s, p)| if p.is_empty() { !s.is_empty() } else { s == p })
        };
        let (kind, api, version, ok) = match kind.trim().to_ascii_lowercase().as_str() {
            "pubsub" => (
                "pubsub",
                Api::PubSub,
                "v1",
                shape_ok(&["projects", "", "subscriptions", ""]),
            ),
            "scheduler" | "cloudscheduler" => (
                "scheduler",
                Api::CloudScheduler,
                "v1",
                shape_ok(&["projects", "", "locations", "", "jobs", ""]),
            ),
            "tasks" | "cloudtasks" => (
                "tasks",
                Api::CloudTasks,
                "v2",
                shape_ok(&["projects", "", "locations", "", "queues", ""])
                    || shape_ok(&["projects", "", "locations", "", "queues", "", "tasks", ""]),
            ),
            "eventarc" => (
                "eventarc",
                Api::Eventarc,
                "v1",
                shape_ok(&["projects", "", "locations", "", "triggers", ""]),
            ),
            "workflows" | "workflow" => (
                "workflows",
                Api::Workflows,
                "v1",
                shape_ok(&["projects", "", "locations", "", "workflows", ""]),
            ),
            other => {
                return Err(format!(
                    "unknown caller kind `{other}` (pubsub, scheduler, tasks, eventarc, workflows)"
                ));
            }
        };
        if !ok || check_name(name).is_err() {
            return Err(format!("`{name}` is not a {kind} resource name"));
        }
        Ok(CallerConfigRef {
            kind,
            api,
            version,
            name: name.to_string(),
        })
    }
}

/// What to look for in the request logs, and any extra source.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// `--status`: only entries with this status (else 401, 403 and 404).
    pub status: Option<i64>,
    /// `--at`: the window is centred on it.
    pub at: Option<Timestamp>,
    /// Without `at`: the oldest entry looked at (`--freshness`).
    pub since: Option<Timestamp>,
    /// An entry already known (explain): kept in `logs.json` even if the query misses it.
    pub known_entry: Option<Value>,
    /// `--caller-config`.
    pub caller_config: Option<CallerConfigRef>,
    /// Ask Policy Troubleshooter about the caller as soon as the caller and the time are known
    /// (`None`: not asked).
    pub troubleshoot: Option<Ask>,
}

/// Limits of a gathering.
#[derive(Debug, Clone)]
pub struct Settings {
    pub log_page_size: u32,
    /// Successful requests read at most (one page), when no status is stated: they tell "no
    /// denial in the evidence" from "unknown". 0 turns the read off.
    pub successes_sample: u32,
    /// Pages with entries read at most (the newest come first).
    pub max_log_pages: u32,
    /// `entries:list` requests at most, empty "keep paging" pages included.
    pub max_log_requests: u32,
    /// Half-width of the log window around `--at`.
    pub at_margin: ChronoDuration,
    /// Default window without `--at`.
    pub default_freshness: ChronoDuration,
    /// Custom roles read at most.
    pub max_roles: usize,
    /// Folder levels walked at most (Google allows 10).
    pub max_folders: usize,
    /// Pages of `services.list` read at most, per region.
    pub max_list_pages: u32,
    /// Also read the project's audit logs: IAM policy changes and invoker-check changes of the
    /// service (Admin Activity), VPC-SC refusals of `run.googleapis.com/HttpIngress` (policy
    /// denied) and IAP refusals (Data Access).
    pub audit_logs: bool,
    /// Also read IAM deny policies on the project, its folders and organization.
    pub deny_policies: bool,
    /// Deny policies read at most.
    pub max_deny_policies: usize,
    /// Where the project's ancestry is remembered between runs (see [`AncestryCache`]);
    /// `None`: not remembered, the ancestors' reads wait for `getAncestry`.
    pub ancestry_cache: Option<std::path::PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            log_page_size: 100,
            successes_sample: 50,
            max_log_pages: 5,
            max_log_requests: 12,
            at_margin: ChronoDuration::hours(1),
            default_freshness: ChronoDuration::days(1),
            max_roles: 50,
            max_folders: 12,
            max_list_pages: 20,
            audit_logs: true,
            deny_policies: true,
            max_deny_policies: 100,
            ancestry_cache: None,
        }
    }
}

/// The log filter for the failing request (Logging query language; newlines are AND).
pub fn request_log_filter(
    t: &Target,
    status: Option<i64>,
    since: Timestamp,
    until: Option<Timestamp>,
) -> String {
    let statuses = match status {
        Some(s) => format!("httpRequest.status=({s})"),
        None => "httpRequest.status=(401 OR 403 OR 404)".into(),
    };
    service_requests_filter(t, &statuses, since, until)
}

/// The log filter for the service's requests that were not refused, newest first: read (one
/// small page) when no status is stated, so that a service whose logs hold only successes
/// shows "no denial in the evidence" live as it does from a bundle.
pub fn successes_log_filter(t: &Target, since: Timestamp, until: Option<Timestamp>) -> String {
    service_requests_filter(
        t,
        "NOT httpRequest.status=(401 OR 403 OR 404)",
        since,
        until,
    )
}

fn service_requests_filter(
    t: &Target,
    statuses: &str,
    since: Timestamp,
    until: Option<Timestamp>,
) -> String {
    let mut f = format!(
        "resource.type=\"cloud_run_revision\"\nresource.labels.service_name=\"{}\"\nresource.labels.location=\"{}\"\nlogName=\"projects/{}{}\"\n{statuses}\ntimestamp>=\"{}\"",
        quote(&t.service),
        quote(&t.region),
        quote(&t.project),
        REQUEST_LOG_SUFFIX,
        rfc3339(since)
    );
    if let Some(u) = until {
        f.push_str(&format!("\ntimestamp<=\"{}\"", rfc3339(u)));
    }
    f
}

/// The audit-log filter: IAM policy changes of the service or the project and changes of the
/// service itself (Admin Activity), VPC Service Controls refusals of requests to Cloud Run
/// (policy denied), and IAP decisions about the service (Data Access). Every `AND`/`OR` group is
/// parenthesized: in the Logging query language `OR` binds tighter than `AND`.
pub fn audit_log_filter(t: &Target, since: Timestamp, until: Option<Timestamp>) -> String {
    let mut f = format!(
        "{}\ntimestamp>=\"{}\"",
        audit_log_selector(t),
        rfc3339(since)
    );
    if let Some(u) = until {
        f.push_str(&format!("\ntimestamp<=\"{}\"", rfc3339(u)));
    }
    f
}

/// The audit entries [`audit_log_filter`] selects, without a time window (two lines, ANDed).
pub fn audit_log_selector(t: &Target) -> String {
    let p = quote(&t.project);
    let svc = format!("/services/{}", quote(&t.service));
    format!(
        "logName=(\"projects/{p}/logs/{act}\" OR \"projects/{p}/logs/{pol}\" OR \"projects/{p}/logs/{da}\")\n((protoPayload.methodName:\"SetIamPolicy\" AND (protoPayload.resourceName:\"{svc}\" OR protoPayload.serviceName=\"cloudresourcemanager.googleapis.com\")) OR (protoPayload.serviceName=\"run.googleapis.com\" AND protoPayload.resourceName:\"{svc}\" AND (protoPayload.methodName:\"UpdateService\" OR protoPayload.methodName:\"ReplaceService\" OR protoPayload.methodName:\"CreateService\")) OR resource.labels.method=\"{ingress}\" OR (protoPayload.serviceName=\"iap.googleapis.com\" AND protoPayload.resourceName:\"{svc}\"))",
        act = ipd_model::audit::ACTIVITY_LOG,
        pol = ipd_model::audit::POLICY_LOG,
        da = ipd_model::audit::DATA_ACCESS_LOG,
        ingress = ipd_model::audit::HTTP_INGRESS_METHOD,
    )
}

/// The filter that finds one request by trace ID or `insertId`.
pub fn lookup_filter(project: &str, reference: &str, since: Timestamp) -> String {
    let r = quote(reference);
    let is_trace = reference.len() == 32 && reference.chars().all(|c| c.is_ascii_hexdigit());
    let which = if is_trace {
        format!(
            "(trace=\"projects/{}/traces/{r}\" OR insertId=\"{r}\")",
            quote(project)
        )
    } else {
        format!("insertId=\"{r}\"")
    };
    format!(
        "resource.type=\"cloud_run_revision\"\n{which}\ntimestamp>=\"{}\"",
        rfc3339(since)
    )
}

pub(crate) fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

pub(crate) fn rfc3339(t: Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// One unit of work, and what its answer is for.
#[derive(Debug, Clone)]
enum Job {
    Service,
    ServicePolicy,
    ProjectPolicy,
    ProjectGet,
    Ancestry,
    FolderGet(String),
    FolderPolicy(String),
    OrganizationGet(String),
    OrganizationPolicy(String),
    Logs,
    SuccessLogs,
    AuditLogs,
    DenyList(String),
    /// The attachment point and the policy's name.
    DenyGet(String, String),
    Constraint(String),
    CustomConstraints(String),
    Role(String),
    CallerConfig(CallerConfigRef),
    Troubleshoot(TsQuestion),
    /// Another region of a multi-region service: its service, IAM policy, request logs.
    RegionalService(String),
    RegionalPolicy(String),
    RegionalLogs(String),
}

struct Done {
    job: Job,
    /// Length of the chain of calls that ends here.
    chain: u32,
    result: Result<Value, Failure>,
}

/// Gathers evidence over a shared client.
#[derive(Clone)]
pub struct Gatherer {
    pub(crate) client: Arc<Client>,
    settings: Settings,
}

impl Gatherer {
    pub fn new(client: Client, settings: Settings) -> Gatherer {
        Gatherer {
            client: Arc::new(client),
            settings,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn spawn(&self, set: &mut JoinSet<Done>, job: Job, call: Call, chain: u32) {
        let client = self.client.clone();
        set.spawn(async move {
            let result = client.call(&call, chain).await;
            Done {
                job,
                chain: chain + 1,
                result,
            }
        });
    }

    fn spawn_entries(&self, set: &mut JoinSet<Done>, job: Job, body: Value) {
        self.spawn_entries_at(set, job, body, 0)
    }

    /// [`Gatherer::spawn_entries`] after a chain of `chain` calls.
    fn spawn_entries_at(&self, set: &mut JoinSet<Done>, job: Job, body: Value, chain: u32) {
        let client = self.client.clone();
        let settings = self.settings.clone();
        set.spawn(async move {
            let (result, calls) = list_entries(&client, body, &settings, chain).await;
            Done {
                job,
                chain: chain + calls,
                result,
            }
        });
    }

    /// Lists the deny policies attached to `attachment` (all pages); the answer is the array
    /// of their names.
    fn spawn_deny_list(&self, set: &mut JoinSet<Done>, attachment: String, chain: u32) {
        let client = self.client.clone();
        set.spawn(async move {
            let mut names = Vec::new();
            let mut token: Option<String> = None;
            let mut calls = 0;
            let result = loop {
                let r = client
                    .call(
                        &Call::DenyPoliciesList {
                            attachment: attachment.clone(),
                            page_token: token.clone(),
                        },
                        chain + calls,
                    )
                    .await;
                calls += 1;
                let page = match r {
                    Ok(p) => p,
                    Err(f) => break Err(f),
                };
                // Google omits an empty list; a `policies` that is not a list is no answer.
                if !page.is_object()
                    || page.get("policies").is_some_and(|p| !p.is_array())
                    || page.get("nextPageToken").is_some_and(|t| !t.is_string())
                {
                    break Err(Failure::synthetic(
                        200,
                        "UNKNOWN",
                        "the deny-policy list has an unexpected shape (`policies` is not a list)",
                    ));
                }
                names.extend(
                    page.get("policies")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|p| p.get("name").and_then(Value::as_str))
                        .map(|n| Value::String(n.to_string())),
                );
                token = page
                    .get("nextPageToken")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string);
                if token.is_none() || calls >= 10 {
                    break Ok(Value::Array(std::mem::take(&mut names)));
                }
            };
            Done {
                job: Job::DenyList(attachment),
                chain: chain + calls,
                result,
            }
        });
    }

    /// A multi-region service: reads the service, its IAM policy and its request logs in every
    /// other region, concurrently with the rest (each region has its own policy, and the
    /// request-log filter names one region).
    fn spawn_other_regions(
        &self,
        set: &mut JoinSet<Done>,
        t: &Target,
        status: Option<i64>,
        (since, until): (Timestamp, Option<Timestamp>),
        service: &Value,
        chain: u32,
    ) -> usize {
        let mut logs = 0;
        for r in other_regions(t, service) {
            let rt = Target {
                region: r.clone(),
                ..t.clone()
            };
            let Ok(name) = rt.resource_name() else {
                continue;
            };
            self.spawn(
                set,
                Job::RegionalService(r.clone()),
                Call::ServicesGet { name: name.clone() },
                chain,
            );
            self.spawn(
                set,
                Job::RegionalPolicy(r.clone()),
                Call::ServicesGetIamPolicy { resource: name },
                chain,
            );
            let body = json!({
                "resourceNames": [format!("projects/{}", t.project)],
                "filter": request_log_filter(&rt, status, since, until),
                "orderBy": "timestamp desc",
                "pageSize": self.settings.log_page_size,
            });
            self.spawn_entries_at(set, Job::RegionalLogs(r), body, chain);
            logs += 1;
        }
        logs
    }

    /// Reads every source of `t`. Refusals and failures become error envelopes in the
    /// recording (gaps in the report); nothing here aborts.
    ///
    /// The ancestry comes from one `projects.getAncestry` (started at t = 0 with the rest);
    /// when the ancestry cache ([`Settings::ancestry_cache`]) knows the project, the folders'
    /// and the organization's policies and deny policies start at t = 0 as well, and the
    /// answer only confirms them (a moved project starts the reads it lacks then and drops
    /// the stale ones). When `getAncestry` is refused, the v3 walk (`projects.get` → parent →
    /// `folders.get` ...) takes over. With [`Query::troubleshoot`], Policy Troubleshooter is
    /// asked as soon as the caller and the request time are known: at t = 0 when the flags or
    /// the token say them, else when the logs (or the caller's configuration) arrive.
    pub async fn gather(&self, t: &Target, q: &Query) -> Result<Recording, BadName> {
        let service_name = t.resource_name()?;
        let project = format!("projects/{}", t.project);
        let mut rec = Recording::default();
        let mut set: JoinSet<Done> = JoinSet::new();

        self.spawn(
            &mut set,
            Job::Service,
            Call::ServicesGet {
                name: service_name.clone(),
            },
            0,
        );
        self.spawn(
            &mut set,
            Job::ServicePolicy,
            Call::ServicesGetIamPolicy {
                resource: service_name.clone(),
            },
            0,
        );
        self.spawn(
            &mut set,
            Job::ProjectPolicy,
            Call::CrmGetIamPolicy {
                resource: project.clone(),
            },
            0,
        );
        self.spawn(
            &mut set,
            Job::ProjectGet,
            Call::ProjectsGet {
                name: project.clone(),
            },
            0,
        );
        self.spawn(
            &mut set,
            Job::Ancestry,
            Call::ProjectsGetAncestry {
                project: t.project.clone(),
            },
            0,
        );
        let cache = self
            .settings
            .ancestry_cache
            .as_deref()
            .map(|d| AncestryCache::new(d, &t.project));
        let mut hier = Hierarchy::default();
        if let Some(cached) = cache.as_ref().and_then(AncestryCache::read) {
            for a in cached.iter().take(self.settings.max_folders + 1) {
                self.start_ancestor(&mut set, &mut hier, a, 0);
            }
        }
        for c in CONSTRAINTS {
            self.spawn(
                &mut set,
                Job::Constraint(c.to_string()),
                Call::GetEffectivePolicy {
                    name: format!("{project}/policies/{c}"),
                },
                0,
            );
        }
        if let Some(cc) = &q.caller_config {
            self.spawn(
                &mut set,
                Job::CallerConfig(cc.clone()),
                Call::CallerConfigGet {
                    api: cc.api,
                    version: cc.version,
                    name: cc.name.clone(),
                },
                0,
            );
        }
        let window = {
            let (since, until) = match q.at {
                Some(at) => (
                    at - self.settings.at_margin,
                    Some(at + self.settings.at_margin),
                ),
                None => (
                    q.since
                        .unwrap_or_else(|| chrono::Utc::now() - self.settings.default_freshness),
                    None,
                ),
            };
            let body = json!({
                "resourceNames": [project.clone()],
                "filter": request_log_filter(t, q.status, since, until),
                "orderBy": "timestamp desc",
                "pageSize": self.settings.log_page_size,
            });
            self.spawn_entries(&mut set, Job::Logs, body);
            if q.status.is_none() && self.settings.successes_sample > 0 {
                let body = json!({
                    "resourceNames": [project.clone()],
                    "filter": successes_log_filter(t, since, until),
                    "orderBy": "timestamp desc",
                    "pageSize": self.settings.successes_sample,
                });
                let one_page = Settings {
                    max_log_pages: 1,
                    ..self.settings.clone()
                };
                let client = self.client.clone();
                set.spawn(async move {
                    let (result, calls) = list_entries(&client, body, &one_page, 0).await;
                    Done {
                        job: Job::SuccessLogs,
                        chain: calls,
                        result,
                    }
                });
            }
            if self.settings.audit_logs {
                let body = json!({
                    "resourceNames": [project.clone()],
                    "filter": audit_log_filter(t, since, until),
                    "orderBy": "timestamp desc",
                    "pageSize": self.settings.log_page_size,
                });
                self.spawn_entries(&mut set, Job::AuditLogs, body);
            }
            (since, until)
        };
        if self.settings.deny_policies {
            self.spawn_deny_list(&mut set, format!("{CRM}/{project}"), 0);
        }
        // Policy Troubleshooter: what its question waits for.
        let mut ts = q.troubleshoot.as_ref().map(|ask| TroubleshootState {
            waits_logs: ask.inputs.at.is_none() || !ask.caller_known(),
            waits_caller_config: !ask.caller_known() && q.caller_config.is_some(),
            attempted: false,
        });
        if let (Some(ask), Some(st)) = (&q.troubleshoot, &mut ts)
            && !st.waits_logs
            && !st.waits_caller_config
        {
            // Let the reads above go out first: deriving the question takes a moment.
            tokio::task::yield_now().await;
            self.ask_early(&mut set, &rec, ask, st, t, 0);
        }

        let mut roles_seen: BTreeSet<String> = BTreeSet::new();
        let mut roles_skipped = 0usize;
        let mut constraints: BTreeMap<String, Result<Value, Failure>> = BTreeMap::new();
        let mut folders_walked = 0usize;
        let mut hierarchy_gap: Option<(String, Failure)> = None;
        let mut saw_401 = false;
        let mut logs = LogAnswers {
            pending: 1
                + usize::from(q.status.is_none() && self.settings.successes_sample > 0)
                + usize::from(self.settings.audit_logs),
            ..LogAnswers::default()
        };
        let mut deny: Vec<(String, Result<Value, Failure>)> = Vec::new();
        let mut deny_seen: BTreeSet<String> = BTreeSet::new();
        // Answers about ancestors, recorded once the ancestry confirms them.
        let mut ancestor_files: Vec<(String, String, Result<Value, Failure>)> = Vec::new();
        let mut troubleshoot_answer: Option<(Result<Value, Failure>, TsQuestion)> = None;

        while let Some(joined) = set.join_next().await {
            let Done { job, chain, result } = match joined {
                Ok(d) => d,
                Err(e) => {
                    rec.warnings
                        .push(format!("an evidence task stopped unexpectedly: {e}"));
                    continue;
                }
            };
            if matches!(&result, Err(f) if f.http_status == 401) {
                saw_401 = true;
            }
            // Every IAM policy that arrives starts the reads of the custom roles it binds.
            if matches!(
                job,
                Job::ServicePolicy
                    | Job::ProjectPolicy
                    | Job::FolderPolicy(_)
                    | Job::OrganizationPolicy(_)
            ) && let Ok(v) = &result
            {
                for role in custom_roles(v) {
                    if roles_seen.contains(&role) {
                        continue;
                    }
                    if roles_seen.len() >= self.settings.max_roles {
                        roles_skipped += 1;
                        continue;
                    }
                    roles_seen.insert(role.clone());
                    self.spawn(
                        &mut set,
                        Job::Role(role.clone()),
                        Call::RolesGet { name: role },
                        chain,
                    );
                }
            }
            let mut arrived_caller_config = false;
            match job {
                Job::Service => {
                    if let Err(f) = &result
                        && f.http_status == 404
                    {
                        rec.warnings.push(format!(
                            "no service `{service_name}` ({}): check the project, region and service name",
                            f.summary()
                        ));
                    }
                    if let Ok(v) = &result {
                        logs.pending +=
                            self.spawn_other_regions(&mut set, t, q.status, window, v, chain);
                    }
                    logs.service_arrived = true;
                    rec.put("service.json", result)
                }
                Job::RegionalService(r) => rec.put(&ipd_model::regions::service_file(&r), result),
                Job::RegionalPolicy(r) => rec.put(&ipd_model::regions::policy_file(&r), result),
                Job::RegionalLogs(r) => {
                    logs.pending = logs.pending.saturating_sub(1);
                    logs.regional.push((r, result))
                }
                Job::ServicePolicy => rec.put("service-iam-policy.json", result),
                Job::ProjectPolicy => rec.put("project-iam-policy.json", result),
                Job::Ancestry => match result.map(|v| ancestry_names(&v)) {
                    Ok(Ok((project_id, mut names))) => {
                        if rec.project_id.is_none() {
                            rec.project_id = project_id;
                        }
                        if names.len() > self.settings.max_folders + 1 {
                            rec.warnings.push(format!(
                                "stopped following the resource hierarchy after {} folders",
                                self.settings.max_folders
                            ));
                            names.truncate(self.settings.max_folders + 1);
                        }
                        for n in &names {
                            self.start_ancestor(&mut set, &mut hier, n, chain);
                        }
                        if let Some(c) = &cache {
                            c.write(&names);
                        }
                        hier.confirmed.extend(names);
                        hier.settled = true;
                    }
                    Ok(Err(bad)) => {
                        rec.warnings.push(format!(
                            "projects.getAncestry answered an unexpected ancestry ({bad}); walking the hierarchy instead"
                        ));
                        hier.ancestry_failed = true;
                    }
                    Err(f) => {
                        rec.warnings.push(format!(
                            "projects.getAncestry was refused ({}); walking the hierarchy one level at a time",
                            f.summary()
                        ));
                        hier.ancestry_failed = true;
                    }
                },
                Job::ProjectGet | Job::FolderGet(_) => match result {
                    Ok(v) => {
                        if let Job::ProjectGet = job {
                            if let Some(id) = v.get("projectId").and_then(Value::as_str) {
                                rec.project_id = Some(id.to_string());
                            }
                            rec.project_number = v
                                .get("name")
                                .and_then(Value::as_str)
                                .and_then(|n| n.strip_prefix("projects/"))
                                .map(str::to_string);
                        }
                        let parent = v
                            .get("parent")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string();
                        hier.pending_parent = Some((parent, chain));
                    }
                    Err(f) => {
                        let at = match &job {
                            Job::FolderGet(id) => format!("folders/{id}"),
                            _ => project.clone(),
                        };
                        hier.walk_failure = Some((at, f));
                    }
                },
                Job::FolderPolicy(id) => ancestor_files.push((
                    format!("folders/{id}"),
                    format!("folder-{id}-iam-policy.json"),
                    result,
                )),
                Job::OrganizationPolicy(id) => ancestor_files.push((
                    format!("organizations/{id}"),
                    format!("organization-{id}-iam-policy.json"),
                    result,
                )),
                Job::OrganizationGet(id) => {
                    if let Err(f) = result {
                        rec.notes.push(format!(
                            "organizations/{id}: not readable ({}); its IAM policy is read separately",
                            f.summary()
                        ));
                    }
                }
                Job::Logs => {
                    logs.pending = logs.pending.saturating_sub(1);
                    logs.request = Some(result)
                }
                Job::AuditLogs => {
                    logs.pending = logs.pending.saturating_sub(1);
                    logs.audit = Some(result)
                }
                Job::SuccessLogs => {
                    logs.pending = logs.pending.saturating_sub(1);
                    logs.successes = Some(result)
                }
                Job::DenyList(attachment) => match result {
                    Ok(Value::Array(names)) => {
                        for n in names.iter().filter_map(Value::as_str) {
                            if check_policy_name(n).is_err() {
                                rec.warnings.push(format!(
                                    "deny policy `{n}` on {attachment} has an unexpected name; not read"
                                ));
                                continue;
                            }
                            if deny_seen.len() >= self.settings.max_deny_policies {
                                rec.warnings.push(format!(
                                    "more than {} deny policies; the rest were not read",
                                    self.settings.max_deny_policies
                                ));
                                break;
                            }
                            if deny_seen.insert(n.to_string()) {
                                self.spawn(
                                    &mut set,
                                    Job::DenyGet(attachment.clone(), n.to_string()),
                                    Call::DenyPolicyGet {
                                        name: n.to_string(),
                                    },
                                    chain,
                                );
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(f) => deny.push((attachment, Err(f))),
                },
                Job::DenyGet(attachment, name) => match result {
                    // Deleted between the list and the get: nothing denies through it.
                    Err(f) if f.http_status == 404 => rec
                        .notes
                        .push(format!("deny policy `{name}` is gone ({})", f.summary())),
                    r => deny.push((attachment, r)),
                },
                Job::Constraint(c) => {
                    constraints.insert(c, result);
                }
                // Custom constraints on IAM allow policies can refuse a public grant: record
                // each definition and read its effective policy on the project.
                Job::CustomConstraints(id) => match result {
                    Ok(v) => {
                        for c in v
                            .get("customConstraints")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            let governs = c
                                .get("resourceTypes")
                                .and_then(Value::as_array)
                                .is_some_and(|t| {
                                    t.iter().any(|t| {
                                        t.as_str() == Some(ipd_model::orgpolicy::ALLOW_POLICY_RESOURCE)
                                    })
                                });
                            let short = c
                                .get("name")
                                .and_then(Value::as_str)
                                .and_then(|n| n.rsplit_once("/customConstraints/"))
                                .map(|(_, s)| s.to_string())
                                .filter(|s| {
                                    s.starts_with("custom.")
                                        && s.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '.' || ch == '_')
                                });
                            let Some(short) = short.filter(|_| governs) else {
                                continue;
                            };
                            rec.put(&format!("org-policy-custom-{short}.json"), Ok(c.clone()));
                            self.spawn(
                                &mut set,
                                Job::Constraint(short.clone()),
                                Call::GetEffectivePolicy {
                                    name: format!("{project}/policies/{short}"),
                                },
                                chain,
                            );
                        }
                    }
                    Err(f) => rec.notes.push(format!(
                        "the custom org-policy constraints of organizations/{id} could not be listed ({}); a custom constraint refusing public grants is seen only in the audit log",
                        f.summary()
                    )),
                },
                Job::Role(name) => {
                    let file = role_file_name(&name, &rec);
                    if let Err(f) = &result {
                        rec.warnings.push(format!(
                            "custom role `{name}` could not be read ({}); whether it grants run.routes.invoke is unknown",
                            f.summary()
                        ));
                    }
                    rec.put(&file, result);
                }
                Job::CallerConfig(cc) => {
                    // A mistyped name: say so plainly, the report only has a gap.
                    if let Err(f) = &result
                        && f.http_status == 404
                    {
                        rec.warnings.push(format!(
                            "--caller-config: {} `{}` not found ({}): check the name",
                            cc.label(),
                            cc.name,
                            f.summary()
                        ));
                    }
                    rec.put(&cc.file_name(), result);
                    arrived_caller_config = true;
                }
                Job::Troubleshoot(question) => troubleshoot_answer = Some((result, question)),
            }
            // The walk, when getAncestry was refused: each parent starts the next level.
            if hier.ancestry_failed && !hier.settled {
                if let Some((parent, pchain)) = hier.pending_parent.take() {
                    match parent.as_str() {
                        p if p.starts_with("folders/") && check_name(p).is_ok() => {
                            if folders_walked >= self.settings.max_folders {
                                rec.warnings.push(format!(
                                    "stopped walking the resource hierarchy after {folders_walked} folders"
                                ));
                                hier.settled = true;
                            } else {
                                folders_walked += 1;
                                hier.confirmed.push(p.to_string());
                                self.start_ancestor(&mut set, &mut hier, p, pchain);
                                self.spawn(
                                    &mut set,
                                    Job::FolderGet(p.trim_start_matches("folders/").to_string()),
                                    Call::FoldersGet {
                                        name: p.to_string(),
                                    },
                                    pchain,
                                );
                            }
                        }
                        p if p.starts_with("organizations/") && check_name(p).is_ok() => {
                            hier.confirmed.push(p.to_string());
                            self.start_ancestor(&mut set, &mut hier, p, pchain);
                            self.spawn(
                                &mut set,
                                Job::OrganizationGet(
                                    p.trim_start_matches("organizations/").to_string(),
                                ),
                                Call::OrganizationsGet {
                                    name: p.to_string(),
                                },
                                pchain,
                            );
                            hier.settled = true;
                        }
                        "" => hier.settled = true,
                        p => {
                            rec.warnings.push(format!(
                                "the resource hierarchy names an unexpected parent `{p}`; not followed"
                            ));
                            hier.settled = true;
                        }
                    }
                }
                if let Some(gap) = hier.walk_failure.take() {
                    hierarchy_gap.get_or_insert(gap);
                    hier.settled = true;
                }
            }
            // Every log query answered: the logs are evidence from now on.
            if logs.service_arrived
                && logs.pending == 0
                && let Some(merged) = logs.merged(q.known_entry.as_ref(), &mut rec.warnings)
            {
                rec.put("logs.json", merged);
                if let Some(st) = &mut ts {
                    st.waits_logs = false;
                }
            }
            if arrived_caller_config && let Some(st) = &mut ts {
                st.waits_caller_config = false;
            }
            if let (Some(ask), Some(st)) = (&q.troubleshoot, &mut ts)
                && !st.attempted
                && !st.waits_logs
                && !st.waits_caller_config
            {
                self.ask_early(&mut set, &rec, ask, st, t, chain);
            }
        }

        if !hier.settled && !hier.ancestry_failed {
            // Neither answer settled it (an unusual task failure): say the levels are unknown.
            rec.warnings
                .push("the resource hierarchy could not be read".into());
        }
        // Only the ancestors the ancestry confirms are evidence; a stale cache entry's reads
        // are dropped.
        let confirmed: BTreeSet<&str> = hier.confirmed.iter().map(String::as_str).collect();
        let stale: BTreeSet<String> = hier
            .started
            .iter()
            .filter(|a| !confirmed.contains(a.as_str()))
            .cloned()
            .collect();
        if !stale.is_empty() {
            rec.notes.push(format!(
                "the project is no longer under {}: what was read there is left out",
                stale.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        for (ancestor, file, r) in ancestor_files {
            if confirmed.contains(ancestor.as_str()) {
                rec.put(&file, r);
            }
        }
        let deny: Vec<Result<Value, Failure>> = deny
            .into_iter()
            .filter(|(att, _)| {
                att.strip_prefix(&format!("{CRM}/"))
                    .is_none_or(|a| a.starts_with("projects/") || confirmed.contains(a))
            })
            .map(|(_, r)| r)
            .collect();

        if let Some((at, f)) = hierarchy_gap {
            // The levels above are unknown: record that as a gap of its own, so a rule that
            // found no grant does not read "no ancestor grants it".
            rec.warnings.push(format!(
                "the resource hierarchy above {at} is unknown ({}); IAM grants inherited from there are not seen",
                f.summary()
            ));
            rec.put(
                "organization-unknown-iam-policy.json",
                Err::<Value, Failure>(f),
            );
        }
        if roles_skipped > 0 {
            rec.warnings.push(format!(
                "{roles_skipped} more custom roles were not read (at most {} are)",
                self.settings.max_roles
            ));
        }
        let org = org_policies(constraints, &mut rec.notes);
        rec.put("org-policies.json", org);
        // A log task that stopped unexpectedly: what did answer is still evidence.
        if let Some(merged) = logs.merged(q.known_entry.as_ref(), &mut rec.warnings) {
            rec.put("logs.json", merged);
        }
        if self.settings.deny_policies {
            rec.put("deny-policies.json", deny_policies(deny));
        }
        if saw_401 {
            rec.warnings.push(
                "the APIs refused the credentials (401 UNAUTHENTICATED): the access token may have expired; get a new one (gcloud auth print-access-token, or gcloud auth application-default login)".into(),
            );
        }
        if let Some(ask) = &q.troubleshoot {
            // The question the whole evidence asks; an early answer to another is not kept.
            let fin = troubleshoot_question(&rec, ask);
            match (troubleshoot_answer, fin) {
                (Some((r, asked)), Some(fin)) if asked == fin => {
                    record_troubleshoot(&mut rec, r);
                }
                // Asked too early about another caller or time, or not yet: ask now.
                (_, Some((caller, at))) => {
                    self.troubleshoot(&mut rec, t, &caller, at).await;
                }
                (_, None) => {}
            }
        }
        rec.redact();
        Ok(rec)
    }

    /// Starts the IAM policy and deny-policy reads of an ancestor (`folders/F`,
    /// `organizations/O`) unless they are already under way.
    fn start_ancestor(
        &self,
        set: &mut JoinSet<Done>,
        hier: &mut Hierarchy,
        name: &str,
        chain: u32,
    ) {
        if check_name(name).is_err() || !hier.started.insert(name.to_string()) {
            return;
        }
        let job = match name.split_once('/') {
            Some(("folders", id)) => Job::FolderPolicy(id.to_string()),
            Some(("organizations", id)) => {
                self.spawn(
                    set,
                    Job::CustomConstraints(id.to_string()),
                    Call::CustomConstraintsList {
                        parent: name.to_string(),
                    },
                    chain,
                );
                Job::OrganizationPolicy(id.to_string())
            }
            _ => return,
        };
        if self.settings.deny_policies {
            self.spawn_deny_list(set, format!("{CRM}/{name}"), chain);
        }
        self.spawn(
            set,
            job,
            Call::CrmGetIamPolicy {
                resource: name.to_string(),
            },
            chain,
        );
    }

    /// Asks Policy Troubleshooter the question the evidence so far gives, without waiting.
    fn ask_early(
        &self,
        set: &mut JoinSet<Done>,
        rec: &Recording,
        ask: &Ask,
        st: &mut TroubleshootState,
        t: &Target,
        chain: u32,
    ) {
        st.attempted = true;
        let Some((caller, at)) = troubleshoot_question(rec, ask) else {
            return;
        };
        // A question that cannot be asked is noted once, at the end.
        if let Ok(call) = troubleshoot_call(&caller, at, t) {
            self.spawn(set, Job::Troubleshoot((caller, at)), call, chain);
        }
    }

    /// Asks Policy Troubleshooter whether `caller` holds `run.routes.invoke` on the service of
    /// `t`, with `at` (the failing request's time) as the condition context when known, and
    /// records the answer, or the error envelope that stands in its place, as
    /// `troubleshoot.json`: the file `--bundle` reads, so a replay shows the same cross-check.
    ///
    /// Returns false and records nothing when `caller` cannot be asked (see
    /// [`troubleshooter_email`]). The caller and the time are known only from the gathered
    /// evidence, so the call comes after the gathering: one more link on the chain.
    pub async fn troubleshoot(
        &self,
        rec: &mut Recording,
        t: &Target,
        caller: &Principal,
        at: Option<Timestamp>,
    ) -> bool {
        let call = match troubleshoot_call(caller, at, t) {
            Ok(c) => c,
            Err(note) => {
                rec.notes.push(note);
                return false;
            }
        };
        let chain = self
            .client
            .trace()
            .iter()
            .map(|c| c.chain)
            .max()
            .unwrap_or(0);
        let r = self.client.call(&call, chain).await;
        record_troubleshoot(rec, r);
        rec.redact();
        true
    }

    /// Finds the request-log entry (or any Cloud Run entry) for a trace ID or `insertId`.
    pub async fn find_entry(
        &self,
        project: &str,
        reference: &str,
        since: Timestamp,
    ) -> Result<Option<Value>, Failure> {
        check_name(&format!("projects/{project}"))
            .map_err(|e| Failure::synthetic(400, "INVALID_ARGUMENT", e.to_string()))?;
        let body = json!({
            "resourceNames": [format!("projects/{project}")],
            "filter": lookup_filter(project, reference, since),
            "orderBy": "timestamp desc",
            "pageSize": 50,
        });
        let settings = Settings {
            max_log_pages: 2,
            ..self.settings.clone()
        };
        let (r, _) = list_entries(&self.client, body, &settings, 0).await;
        let entries = match r? {
            Value::Array(a) => a,
            _ => Vec::new(),
        };
        let is_request = |e: &&Value| {
            e.get("logName")
                .and_then(Value::as_str)
                .is_some_and(|n| n.ends_with(REQUEST_LOG_SUFFIX))
        };
        Ok(entries
            .iter()
            .find(is_request)
            .or_else(|| entries.first())
            .cloned())
    }
}

/// The answers of the log queries, until they are merged into one `logs.json`.
#[derive(Default)]
struct LogAnswers {
    request: Option<Result<Value, Failure>>,
    regional: Vec<(String, Result<Value, Failure>)>,
    successes: Option<Result<Value, Failure>>,
    audit: Option<Result<Value, Failure>>,
    /// Queries not answered yet (the other regions' start when the service arrives).
    pending: usize,
    service_arrived: bool,
}

impl LogAnswers {
    /// The request logs with the other regions', the sample of successes, the audit entries
    /// and a known entry, as one `logs.json`; `None` once taken or before the request logs.
    fn merged(
        &mut self,
        known: Option<&Value>,
        warnings: &mut Vec<String>,
    ) -> Option<Result<Value, Failure>> {
        let r = self.request.take()?;
        Some(all_logs(
            r,
            std::mem::take(&mut self.regional),
            self.successes.take(),
            self.audit.take(),
            known,
            warnings,
        ))
    }
}

fn all_logs(
    r: Result<Value, Failure>,
    regional: Vec<(String, Result<Value, Failure>)>,
    successes: Option<Result<Value, Failure>>,
    audit: Option<Result<Value, Failure>>,
    known: Option<&Value>,
    warnings: &mut Vec<String>,
) -> Result<Value, Failure> {
    let r = merge_regional_logs(r, regional, warnings);
    let r = r.map(|v| match (v, successes) {
        (Value::Array(mut a), Some(Ok(Value::Array(ok)))) => {
            a.extend(ok);
            Value::Array(a)
        }
        (v, Some(Err(f))) => {
            warnings.push(format!(
                "the service's successful requests could not be read ({}): whether nothing was denied cannot be told from the logs",
                f.summary()
            ));
            v
        }
        (v, _) => v,
    });
    merge_logs(r, audit, warnings).map(|v| merge_known_entry(v, known))
}

/// Policy Troubleshooter's question: the caller and the request's time.
type TsQuestion = (Principal, Option<Timestamp>);

/// What asking Policy Troubleshooter during the gathering needs: the inputs the evidence is
/// built with (`--caller`, `--at`, ...) and the caller's token, as the rules will see them.
#[derive(Debug, Clone, Default)]
pub struct Ask {
    pub inputs: ipd_model::Inputs,
    pub token: Option<ipd_model::token::Token>,
}

impl Ask {
    /// The caller is known without any evidence (a flag or the token names it).
    fn caller_known(&self) -> bool {
        self.inputs.caller.is_some() || self.token.as_ref().and_then(|t| t.principal()).is_some()
    }
}

struct TroubleshootState {
    waits_logs: bool,
    waits_caller_config: bool,
    attempted: bool,
}

/// Where the walk of the resource hierarchy stands.
#[derive(Default)]
struct Hierarchy {
    /// Ancestors (`folders/F`, `organizations/O`) whose reads have started.
    started: BTreeSet<String>,
    /// Ancestors the answers confirm, nearest first.
    confirmed: Vec<String>,
    /// Nothing more to learn about the ancestry.
    settled: bool,
    /// `getAncestry` was refused (or unusable): the v3 walk decides.
    ancestry_failed: bool,
    /// A `get` answered with this parent (and the chain it ended), not yet followed.
    pending_parent: Option<(String, u32)>,
    /// A `get` of the walk failed: the levels above are unknown.
    walk_failure: Option<(String, Failure)>,
}

/// The project's ancestors as last seen, so that their reads can start at t = 0 next time.
/// One small file per project (`ancestry-PROJECT.json`, a JSON array of `folders/F` /
/// `organizations/O`, nearest first); it holds names only, never a token. Unreadable or
/// malformed: ignored (the answer of `getAncestry` is what counts).
pub struct AncestryCache {
    path: std::path::PathBuf,
}

impl AncestryCache {
    pub fn new(dir: &std::path::Path, project: &str) -> AncestryCache {
        let safe: String = project
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        AncestryCache {
            path: dir.join(format!("ancestry-{safe}.json")),
        }
    }

    pub fn read(&self) -> Option<Vec<String>> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let names: Vec<String> = serde_json::from_str(&text).ok()?;
        names
            .iter()
            .all(|n| {
                (n.starts_with("folders/") || n.starts_with("organizations/"))
                    && check_name(n).is_ok()
            })
            .then_some(names)
    }

    /// Best effort: a cache that cannot be written only costs a round trip next time.
    pub fn write(&self, names: &[String]) {
        if self.read().as_deref() == Some(names) {
            return;
        }
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Ok(text) = serde_json::to_string(names) {
            let tmp = self
                .path
                .with_extension(format!("tmp{}", std::process::id()));
            if std::fs::write(&tmp, text).is_ok() {
                let _ = std::fs::rename(&tmp, &self.path);
            }
        }
    }
}

/// `GetAncestryResponse` → the project's ID and its ancestors (`folders/F`,
/// `organizations/O`), nearest first. Err: the answer is not an ancestry.
fn ancestry_names(v: &Value) -> Result<(Option<String>, Vec<String>), String> {
    let list = v
        .get("ancestor")
        .and_then(Value::as_array)
        .ok_or("no `ancestor` list")?;
    let mut project = None;
    let mut out = Vec::new();
    for (i, a) in list.iter().enumerate() {
        let kind = a.pointer("/resourceId/type").and_then(Value::as_str);
        let id = a.pointer("/resourceId/id").and_then(Value::as_str);
        let (Some(kind), Some(id)) = (kind, id) else {
            return Err(format!("ancestor {i} has no resourceId type and id"));
        };
        let name = match kind {
            "project" if i == 0 => {
                project = Some(id.to_string());
                continue;
            }
            "folder" => format!("folders/{id}"),
            "organization" => format!("organizations/{id}"),
            other => return Err(format!("ancestor {i} is a `{other}`")),
        };
        if id.is_empty() || id.contains('/') || check_name(&name).is_err() {
            return Err(format!("ancestor {i} is named `{name}`"));
        }
        out.push(name);
    }
    Ok((project, out))
}

/// The question the recording so far asks: its caller (not a public one) and the time of the
/// failing request, derived as the rules derive them.
fn troubleshoot_question(rec: &Recording, ask: &Ask) -> Option<TsQuestion> {
    let loaded = rec.evidence(ask.inputs.clone()).ok()?;
    let mut ev = loaded.evidence;
    if let Some(t) = &ask.token {
        ev.token = Some(t.clone());
    }
    let facts = ipd_model::facts::Facts::derive(&ev);
    let caller = facts.caller.filter(|c| !c.public)?;
    Some((caller.principal, facts.request.time))
}

/// The troubleshooter call for `caller`, or the note saying why it cannot be asked.
fn troubleshoot_call(
    caller: &Principal,
    at: Option<Timestamp>,
    t: &Target,
) -> Result<Call, String> {
    let Some(email) = troubleshooter_email(caller) else {
        return Err(format!(
            "Policy Troubleshooter not asked: it cannot be asked about this principal type (it takes a user's or a service account's email, and the caller is `{caller}`)"
        ));
    };
    t.resource_name()
        .and_then(|svc| Call::troubleshoot(email, &svc, at))
        .map_err(|e| format!("Policy Troubleshooter not asked: {e}"))
}

/// Records the troubleshooter's answer (or the envelope in its place) with a note on failure.
fn record_troubleshoot(rec: &mut Recording, r: Result<Value, Failure>) {
    if let Err(f) = &r {
        let disabled = f.api_error().reason.as_deref() == Some("SERVICE_DISABLED");
        rec.notes.push(if disabled {
            format!(
                "Policy Troubleshooter is not enabled in the project of the credentials ({}); enable policytroubleshooter.googleapis.com for the cross-check, or pass --no-troubleshooter",
                f.summary()
            )
        } else {
            format!("Policy Troubleshooter did not answer ({})", f.summary())
        });
    }
    rec.put(TROUBLESHOOT_FILE, r);
}

/// The bundle file of Policy Troubleshooter's answer.
pub const TROUBLESHOOT_FILE: &str = "troubleshoot.json";

/// The email Policy Troubleshooter can be asked about: a user's or a service account's, bare
/// (`alice@example.com`). Groups, domains, `allUsers`, deleted and federated principals cannot
/// be asked.
pub fn troubleshooter_email(p: &Principal) -> Option<&str> {
    p.troubleshooter_email()
}

/// The regions of a multi-region service (v2 `multiRegionSettings.regions`) other than
/// `t`'s, at most [`MAX_REGIONS`], each a well-formed region name.
pub fn other_regions(t: &Target, service: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in service
        .pointer("/multiRegionSettings/regions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if r != t.region
            && ipd_model::service::is_region_name(r)
            && !out.iter().any(|x| x == r)
            && out.len() < MAX_REGIONS
        {
            out.push(r.to_string());
        }
    }
    out
}

/// At most this many other regions of a multi-region service are read.
pub const MAX_REGIONS: usize = 10;

/// The request logs of the other regions join the named region's (an entry names its region
/// in `resource.labels.location`); a region whose logs could not be read is a warning.
fn merge_regional_logs(
    main: Result<Value, Failure>,
    regional: Vec<(String, Result<Value, Failure>)>,
    warnings: &mut Vec<String>,
) -> Result<Value, Failure> {
    let mut list = match main? {
        Value::Array(a) => a,
        _ => Vec::new(),
    };
    for (r, res) in regional {
        match res {
            Ok(Value::Array(a)) => list.extend(a),
            Ok(_) => {}
            Err(f) => warnings.push(format!(
                "the request logs of region {r} could not be read ({}); a refusal there is not seen",
                f.summary()
            )),
        }
    }
    Ok(Value::Array(list))
}

/// Reads `entries:list` pages: keeps paging through empty pages with a `nextPageToken` (the
/// API's "still searching"), stops after `max_log_pages` pages with entries or
/// `max_log_requests` requests. Returns the entries (a JSON array) and the calls made.
pub(crate) async fn list_entries(
    client: &Client,
    mut body: Value,
    s: &Settings,
    chain: u32,
) -> (Result<Value, Failure>, u32) {
    let mut entries: Vec<Value> = Vec::new();
    let mut pages_with_entries = 0;
    let mut calls = 0;
    loop {
        let r = client
            .call(&Call::EntriesList { body: body.clone() }, chain + calls)
            .await;
        calls += 1;
        let page = match r {
            Ok(p) => p,
            // A failure after some pages keeps what was read (the newest entries).
            Err(_) if !entries.is_empty() => break,
            Err(f) => return (Err(f), calls),
        };
        match page.get("entries") {
            Some(Value::Array(a)) => {
                if !a.is_empty() {
                    pages_with_entries += 1;
                }
                entries.extend(a.iter().cloned());
            }
            None if page.is_object() => {}
            // Valid JSON of another shape is no "no entries": the source failed.
            _ => {
                let f = Failure::synthetic(
                    502,
                    "INTERNAL",
                    "the answer is not an entries:list response (`entries` is not a list)",
                );
                return (Err(f), calls);
            }
        }
        let next = page
            .get("nextPageToken")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty());
        match next {
            Some(t) if pages_with_entries < s.max_log_pages && calls < s.max_log_requests => {
                if let Some(o) = body.as_object_mut() {
                    o.insert("pageToken".into(), Value::String(t.to_string()));
                }
            }
            _ => break,
        }
    }
    (Ok(Value::Array(entries)), calls)
}

/// The custom roles a policy binds (ones the built-in table cannot judge).
fn custom_roles(policy: &Value) -> Vec<String> {
    let Ok(p) = serde_json::from_value::<Policy>(policy.clone()) else {
        return Vec::new();
    };
    let mut out: Vec<String> = p
        .bindings
        .iter()
        .map(|b| b.role.clone())
        .filter(|r| {
            (r.starts_with("projects/") || r.starts_with("organizations/"))
                && grants_invoke(r, &[]) == Grants::Unknown
                && check_name(r).is_ok()
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `role-ID.json`, with the parent in the name when two roles share an ID.
fn role_file_name(name: &str, rec: &Recording) -> String {
    let id = name.rsplit('/').next().unwrap_or(name);
    let simple = format!("role-{id}.json");
    if !rec.files.contains_key(&simple) {
        return simple;
    }
    format!("role-{}.json", name.replace('/', "-"))
}

/// The four effective policies as one `org-policies.json`: the array when all were read,
/// else the envelope of the failure (a refusal first), so the source is a gap rather than a
/// partial answer that would read as "nothing set". A constraint the API does not know
/// (400/404) counts as not set.
pub(crate) fn org_policies(
    answers: BTreeMap<String, Result<Value, Failure>>,
    notes: &mut Vec<String>,
) -> Result<Value, Failure> {
    let mut ok = Vec::new();
    let mut fail: Option<Failure> = None;
    for (c, r) in answers {
        match r {
            Ok(v) => ok.push(v),
            Err(f) if matches!(f.http_status, 400 | 404) => notes.push(format!(
                "org policy constraint `{c}` is not known to the API ({}); taken as not set",
                f.summary()
            )),
            Err(f) => {
                let better = match &fail {
                    None => true,
                    Some(prev) => f.is_permission_denied() && !prev.is_permission_denied(),
                };
                if better {
                    fail = Some(f);
                }
            }
        }
    }
    match fail {
        Some(f) => Err(f),
        None => Ok(Value::Array(ok)),
    }
}

/// `cloudresourcemanager.googleapis.com`: the service of deny-policy attachment points.
const CRM: &str = "cloudresourcemanager.googleapis.com";

fn entry_time(e: &Value) -> Option<Timestamp> {
    e.get("timestamp")
        .and_then(Value::as_str)
        .and_then(ipd_model::time::parse_rfc3339)
}

/// Request logs and audit logs as one `logs.json` (newest first). Without request logs the
/// source is a gap; without audit logs it is not, but the person is told what is missing.
fn merge_logs(
    requests: Result<Value, Failure>,
    audit: Option<Result<Value, Failure>>,
    warnings: &mut Vec<String>,
) -> Result<Value, Failure> {
    let mut list = match requests? {
        Value::Array(a) => a,
        _ => Vec::new(),
    };
    match audit {
        Some(Ok(Value::Array(a))) => list.extend(a),
        Some(Ok(_)) | None => {}
        Some(Err(f)) => warnings.push(format!(
            "the audit logs could not be read ({}): IAM grant times, VPC Service Controls and IAP refusals are not considered",
            f.summary()
        )),
    }
    list.sort_by_key(|e| std::cmp::Reverse(entry_time(e)));
    Ok(Value::Array(list))
}

/// Every deny policy read, as one `deny-policies.json`; a refusal or failure anywhere makes
/// the whole source a gap (a partial set would read as "nothing denies").
fn deny_policies(results: Vec<Result<Value, Failure>>) -> Result<Value, Failure> {
    let mut ok = Vec::new();
    let mut fail: Option<Failure> = None;
    for r in results {
        match r {
            Ok(v) => ok.push(v),
            Err(f) => {
                let better = match &fail {
                    None => true,
                    Some(prev) => f.is_permission_denied() && !prev.is_permission_denied(),
                };
                if better {
                    fail = Some(f);
                }
            }
        }
    }
    if let Some(f) = fail {
        return Err(f);
    }
    ok.sort_by(|a, b| {
        let n = |v: &Value| v.get("name").and_then(Value::as_str).map(str::to_string);
        n(a).cmp(&n(b))
    });
    Ok(Value::Array(ok))
}

/// Adds an entry found by a lookup to the listed ones (newest first), unless already there.
fn merge_known_entry(v: Value, known: Option<&Value>) -> Value {
    let Some(k) = known else { return v };
    let mut list = match v {
        Value::Array(a) => a,
        _ => Vec::new(),
    };
    let id = k.get("insertId").and_then(Value::as_str);
    let present = id.is_some()
        && list
            .iter()
            .any(|e| e.get("insertId").and_then(Value::as_str) == id);
    if !present {
        list.push(k.clone());
        list.sort_by(|a, b| {
            let t = |e: &Value| {
                e.get("timestamp")
                    .and_then(Value::as_str)
                    .and_then(ipd_model::time::parse_rfc3339)
            };
            t(b).cmp(&t(a))
        });
    }
    Value::Array(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Target {
        Target {
            project: "shop-prod".into(),
            region: "europe-west1".into(),
            service: "orders-api".into(),
        }
    }

    #[test]
    fn filters_are_tight_and_bounded() {
        let since = ipd_model::time::parse_rfc3339("2026-11-20T10:00:00Z").unwrap();
        let f = request_log_filter(&t(), None, since, None);
        assert!(f.contains("resource.type=\"cloud_run_revision\""));
        assert!(f.contains("resource.labels.service_name=\"orders-api\""));
        assert!(f.contains("logName=\"projects/shop-prod/logs/run.googleapis.com%2Frequests\""));
        assert!(f.contains("httpRequest.status=(401 OR 403 OR 404)"));
        assert!(f.contains("timestamp>=\"2026-11-20T10:00:00Z\""));
        let f = request_log_filter(&t(), Some(401), since, Some(since));
        assert!(f.contains("httpRequest.status=(401)"));
        assert!(f.contains("timestamp<=\"2026-11-20T10:00:00Z\""));
        let ok = successes_log_filter(&t(), since, None);
        assert!(
            ok.contains("\nNOT httpRequest.status=(401 OR 403 OR 404)\n"),
            "{ok}"
        );
        assert!(ok.contains("resource.labels.service_name="), "{ok}");
        let l = lookup_filter("p", "6d1e82a184914a699a4638b5fed5ab90", since);
        assert!(
            l.contains("trace=\"projects/p/traces/6d1e82a184914a699a4638b5fed5ab90\" OR insertId=")
        );
        let l = lookup_filter("p", "ab\"c", since);
        assert!(l.contains("insertId=\"ab\\\"c\""));
    }

    #[test]
    fn target_names_are_checked() {
        assert_eq!(
            t().resource_name().unwrap(),
            "projects/shop-prod/locations/europe-west1/services/orders-api"
        );
        let bad = Target {
            service: "x/../y".into(),
            ..t()
        };
        assert!(bad.resource_name().is_err());
    }

    #[test]
    fn custom_roles_only() {
        let p = json!({"bindings": [
            {"role": "roles/run.invoker", "members": ["user:a@b.c"]},
            {"role": "projects/p/roles/ordersInvoker", "members": ["user:a@b.c"]},
            {"role": "organizations/1/roles/x", "members": []},
            {"role": "projects/p/roles/ordersInvoker", "members": ["user:d@b.c"]}
        ]});
        assert_eq!(
            custom_roles(&p),
            vec!["organizations/1/roles/x", "projects/p/roles/ordersInvoker"]
        );
    }

    #[test]
    fn caller_config_specs() {
        let c = CallerConfigRef::parse("pubsub:projects/p/subscriptions/s").unwrap();
        assert_eq!((c.kind, c.api, c.version), ("pubsub", Api::PubSub, "v1"));
        assert!(CallerConfigRef::parse("tasks:projects/p/locations/l/queues/q/tasks/t").is_ok());
        assert!(CallerConfigRef::parse("pubsub:projects/p/topics/t").is_err());
        assert_eq!(c.file_name(), "caller-pubsub.json");
        let q = CallerConfigRef::parse("tasks:projects/p/locations/l/queues/q").unwrap();
        assert_eq!(
            (q.file_name().as_str(), q.label()),
            ("caller-tasks-queue.json", "Cloud Tasks queue")
        );
        let t = CallerConfigRef::parse("tasks:projects/p/locations/l/queues/q/tasks/t").unwrap();
        assert_eq!(
            (t.file_name().as_str(), t.label()),
            ("caller-tasks.json", "Cloud Tasks task")
        );
        assert!(CallerConfigRef::parse("smtp:x").is_err());
        assert!(CallerConfigRef::parse("nocolon").is_err());
    }

    #[test]
    fn org_policy_answers_become_one_source() {
        let mut notes = vec![];
        let ok = json!({"name": "projects/1/policies/run.allowedIngress", "spec": {}});
        let denied = Failure::synthetic(
            403,
            "PERMISSION_DENIED",
            "Permission 'orgpolicy.policy.get' denied",
        );
        let flaky = Failure::synthetic(503, "UNAVAILABLE", "x");
        let r = org_policies(
            BTreeMap::from([
                ("a".to_string(), Ok(ok.clone())),
                ("b".to_string(), Err(flaky)),
                ("c".to_string(), Err(denied.clone())),
            ]),
            &mut notes,
        );
        assert_eq!(r, Err(denied));
        let unknown = Failure::synthetic(404, "NOT_FOUND", "no such constraint");
        let r = org_policies(
            BTreeMap::from([
                ("a".to_string(), Ok(ok.clone())),
                ("b".to_string(), Err(unknown)),
            ]),
            &mut notes,
        );
        assert_eq!(r, Ok(Value::Array(vec![ok])));
        assert_eq!(notes.len(), 1);
    }

    #[test]
    fn only_users_and_service_accounts_are_asked_about() {
        let email = |s: &str| troubleshooter_email(&Principal::parse(s)).map(str::to_string);
        assert_eq!(email("user:a@b.c").as_deref(), Some("a@b.c"));
        assert_eq!(
            email("serviceAccount:sa@p.iam.gserviceaccount.com").as_deref(),
            Some("sa@p.iam.gserviceaccount.com")
        );
        for other in [
            "group:g@b.c",
            "domain:b.c",
            "allUsers",
            "allAuthenticatedUsers",
            "deleted:user:a@b.c?uid=1",
            "principal://iam.googleapis.com/x",
        ] {
            assert_eq!(email(other), None, "{other}");
        }
    }

    #[test]
    fn known_entry_is_merged_once_newest_first() {
        let list = json!([{"insertId": "b", "timestamp": "2026-01-01T00:00:02Z"}]);
        let k = json!({"insertId": "a", "timestamp": "2026-01-01T00:00:05Z"});
        let m = merge_known_entry(list.clone(), Some(&k));
        assert_eq!(m[0]["insertId"], "a");
        let again = merge_known_entry(m.clone(), Some(&k));
        assert_eq!(again.as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn other_regions_of_a_multi_region_service() {
        let t = Target {
            project: "shop-prod".into(),
            region: "europe-west1".into(),
            service: "orders-api".into(),
        };
        let v = json!({"multiRegionSettings": {"regions": ["europe-west1", "us-central1", "us-central1", "bad/region", "asia-east1"]}});
        assert_eq!(other_regions(&t, &v), vec!["us-central1", "asia-east1"]);
        assert!(other_regions(&t, &json!({"name": "x"})).is_empty());
    }
}
