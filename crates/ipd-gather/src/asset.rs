//! `scan`'s gathering: Cloud Asset Inventory v1 searches over a scope (every page, streamed:
//! each page is reduced to the [`Inventory`]'s few fields and dropped), then the reads the
//! searches cannot replace, batched and concurrent over the shared [`Client`] (its retries,
//! its in-flight limit): a caller's `get` when the index lacks its configuration, the policies
//! of levels above the scope, one Admin Activity query per project (the owner's intent), the
//! effective org policies of projects with a service meant to be public, and, for the
//! services a prediction blames, `services.get` to confirm the index. Searches go through a
//! client-side rate limit (Cloud Asset Inventory allows 400 searches a minute per project by
//! default). Every refusal or failure becomes a gap; nothing here aborts.
//!
//! | call | permission |
//! |---|---|
//! | `searchAllResources` (Run services, the five caller types, projects) | `cloudasset.assets.searchAllResources` on the scope |
//! | `searchAllIamPolicies` (three queries) | `cloudasset.assets.searchAllIamPolicies` on the scope |
//! | a caller's `get` (workflows: the index holds no source) | `workflows.workflows.get`, ... |
//! | `getIamPolicy` of the organization / folders above the scope | `resourcemanager.{organizations,folders}.getIamPolicy` |
//! | `entries.list`, one per project | `logging.logEntries.list` |
//! | `getEffectivePolicy` (projects with a service meant public) | `orgpolicy.policy.get` |
//! | `services.get` (services a finding blames) | `run.services.get` |

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipd_model::Gathered;
use ipd_model::bundle::denied_or_failed;
use ipd_model::evidence::Gap;
use ipd_model::gathered::GapState;
use ipd_model::iam::Policy;
use ipd_model::inventory::{
    CALLER_TYPES, IAM_QUERIES, Inventory, PROJECT, PolicyKey, RUN_SERVICE, parse_policy,
    parse_resource,
};
use ipd_model::logs::LogEntry;
use ipd_model::orgpolicy::OrgPolicy;
use ipd_model::service::{RawService, Service};
use ipd_model::time::Timestamp;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use crate::gather::{CONSTRAINTS, CallerConfigRef, Gatherer, list_entries, org_policies, rfc3339};
use crate::http::{BadName, Call, Client, Failure, check_name};

/// What a scan covers: `organizations/O`, `folders/F` or `projects/P`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope(String);

impl Scope {
    pub fn organization(id: &str) -> Result<Scope, BadName> {
        Scope::new(format!("organizations/{id}"))
    }
    pub fn folder(id: &str) -> Result<Scope, BadName> {
        Scope::new(format!("folders/{id}"))
    }
    pub fn project(id: &str) -> Result<Scope, BadName> {
        Scope::new(format!("projects/{id}"))
    }
    fn new(s: String) -> Result<Scope, BadName> {
        check_name(&s)?;
        Ok(Scope(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    fn id(&self) -> &str {
        self.0.split_once('/').map(|(_, i)| i).unwrap_or("")
    }
}

/// Limits of a scan.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    /// Cloud Asset Inventory searches per minute at most (`--max-calls-per-minute`).
    pub max_searches_per_minute: u32,
    /// The oldest Admin Activity entry read (`--since`).
    pub since: Timestamp,
    /// Pages of one search read at most (a safety stop, reported when hit).
    pub max_pages: u32,
    /// Settings of the Logging reads (page size, pages).
    pub logs: crate::gather::Settings,
}

impl ScanSettings {
    pub fn new(since: Timestamp) -> ScanSettings {
        ScanSettings {
            max_searches_per_minute: 400,
            since,
            max_pages: 2_000,
            logs: crate::gather::Settings {
                log_page_size: 1000,
                max_log_pages: 10,
                max_log_requests: 20,
                ..crate::gather::Settings::default()
            },
        }
    }
}

/// Counters a progress bar reads while the scan runs.
#[derive(Debug, Default)]
pub struct Progress {
    pub pages: AtomicU64,
    pub resources: AtomicU64,
    pub calls: AtomicU64,
}

impl Progress {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// A client-side rate limit: calls spaced by `60 s / per_minute`, with a burst of a tenth of a
/// minute's allowance.
#[derive(Debug)]
pub struct RateLimit {
    every: Duration,
    burst: u32,
    next: Mutex<Instant>,
}

impl RateLimit {
    pub fn per_minute(n: u32) -> RateLimit {
        let n = n.max(1);
        RateLimit {
            every: Duration::from_secs_f64(60.0 / f64::from(n)),
            burst: (n / 10).max(1),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this call's slot.
    pub async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let earliest = now.checked_sub(self.every * self.burst).unwrap_or(now);
            let slot = (*next).max(earliest);
            *next = slot + self.every;
            slot
        };
        let now = Instant::now();
        if slot > now {
            tokio::time::sleep(slot - now).await;
        }
    }
}

fn gap(source: String, g: &Gathered<impl Sized>, fallback_perm: &str) -> Option<Gap> {
    let state = g.gap_state()?;
    let (detail, perm) = match g {
        Gathered::Denied { permission, detail } => (
            detail.clone(),
            permission.clone().or(Some(fallback_perm.to_string())),
        ),
        Gathered::Failed { error } => (error.clone(), Some(fallback_perm.to_string())),
        Gathered::Missing { why } => (why.clone(), None),
        Gathered::Present(_) => return None,
    };
    Some(Gap {
        source,
        state,
        detail,
        needs_permission: perm,
    })
}

fn failed<T>(f: &Failure, call: &Call) -> Gathered<T> {
    denied_or_failed(f.api_error(), call.permission())
}

/// What one search produced.
enum Found {
    Resources(&'static str, Result<(), Failure>, bool),
    Policies(&'static str, Result<(), Failure>, bool),
}

/// Reads every page of one search, handing each parsed result to `sink` and dropping the page.
async fn pages(
    client: &Client,
    limit: &RateLimit,
    progress: &Progress,
    max_pages: u32,
    mut call: Call,
    mut sink: impl FnMut(&Value),
) -> (Result<(), Failure>, bool) {
    let mut n = 0;
    loop {
        limit.wait().await;
        let r = client.call(&call, n).await;
        Progress::add(&progress.calls, 1);
        let page = match r {
            Ok(p) => p,
            Err(f) => return (Err(f), false),
        };
        n += 1;
        Progress::add(&progress.pages, 1);
        let results = page.get("results").and_then(Value::as_array);
        for v in results.into_iter().flatten() {
            sink(v);
        }
        Progress::add(&progress.resources, results.map_or(0, |r| r.len() as u64));
        let next = page
            .get("nextPageToken")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        match next {
            None => return (Ok(()), false),
            Some(_) if n >= max_pages => return (Ok(()), true),
            Some(t) => match &mut call {
                Call::SearchAllResources { page_token, .. }
                | Call::SearchAllIamPolicies { page_token, .. } => *page_token = Some(t),
                _ => return (Ok(()), false),
            },
        }
    }
}

/// The Admin Activity filter of one project: the Cloud Run changes that say what the owner
/// meant (IAM policy grants, invoker-check changes), over `--since`.
pub fn intent_filter(project_number: &str, since: Timestamp) -> String {
    format!(
        "logName=\"projects/{project_number}/logs/{}\"\nprotoPayload.serviceName=\"run.googleapis.com\"\n(protoPayload.methodName:\"SetIamPolicy\" OR protoPayload.methodName:\"UpdateService\" OR protoPayload.methodName:\"ReplaceService\" OR protoPayload.methodName:\"CreateService\")\ntimestamp>=\"{}\"",
        ipd_model::audit::ACTIVITY_LOG,
        rfc3339(since)
    )
}

impl Gatherer {
    /// Reads the inventory of `scope`. Refusals and failures become gaps.
    pub async fn scan_inventory(
        &self,
        scope: &Scope,
        s: &ScanSettings,
        progress: Arc<Progress>,
    ) -> Inventory {
        let limit = Arc::new(RateLimit::per_minute(s.max_searches_per_minute));
        let inv = Arc::new(std::sync::Mutex::new(Inventory {
            scope: scope.as_str().to_string(),
            iam: Gathered::Present(()),
            ..Inventory::default()
        }));
        let mut set: JoinSet<Found> = JoinSet::new();
        let mut types: Vec<&'static str> = vec![RUN_SERVICE, PROJECT];
        types.extend(CALLER_TYPES.iter().copied());
        for t in types {
            let (client, limit, progress, inv) = (
                self.client.clone(),
                limit.clone(),
                progress.clone(),
                inv.clone(),
            );
            let call = Call::SearchAllResources {
                scope: scope.as_str().to_string(),
                asset_types: vec![t.to_string()],
                page_token: None,
            };
            let max = s.max_pages;
            set.spawn(async move {
                let (r, cut) = pages(&client, &limit, &progress, max, call, |v| {
                    if let Some(a) = parse_resource(v)
                        && let Ok(mut inv) = inv.lock()
                    {
                        inv.add_asset(a);
                    }
                })
                .await;
                Found::Resources(t, r, cut)
            });
        }
        for q in IAM_QUERIES {
            let (client, limit, progress, inv) = (
                self.client.clone(),
                limit.clone(),
                progress.clone(),
                inv.clone(),
            );
            let call = Call::SearchAllIamPolicies {
                scope: scope.as_str().to_string(),
                query: q.to_string(),
                page_token: None,
            };
            let max = s.max_pages;
            set.spawn(async move {
                let (r, cut) = pages(&client, &limit, &progress, max, call, |v| {
                    if let Some((k, b, roles)) = parse_policy(v)
                        && let Ok(mut inv) = inv.lock()
                    {
                        inv.add_policy(k, b, roles);
                    }
                })
                .await;
                Found::Policies(q, r, cut)
            });
        }
        let mut gaps = Vec::new();
        let mut iam: Gathered<()> = Gathered::Present(());
        while let Some(j) = set.join_next().await {
            let Ok(found) = j else { continue };
            let (what, r, cut, call) = match found {
                Found::Resources(t, r, cut) => (
                    format!("cloudasset.searchAllResources:{t}"),
                    r,
                    cut,
                    Call::SearchAllResources {
                        scope: String::new(),
                        asset_types: vec![],
                        page_token: None,
                    },
                ),
                Found::Policies(q, r, cut) => (
                    format!("cloudasset.searchAllIamPolicies:{q}"),
                    r,
                    cut,
                    Call::SearchAllIamPolicies {
                        scope: String::new(),
                        query: String::new(),
                        page_token: None,
                    },
                ),
            };
            let is_iam = matches!(call, Call::SearchAllIamPolicies { .. });
            match r {
                Err(f) => {
                    let g: Gathered<()> = failed(&f, &call);
                    gaps.extend(gap(what, &g, call.permission()));
                    if is_iam && iam.is_present() {
                        iam = g;
                    }
                }
                Ok(()) if cut => {
                    let g: Gathered<()> = Gathered::Failed {
                        error: format!("stopped after {} pages", s.max_pages),
                    };
                    gaps.extend(gap(what, &g, call.permission()));
                    if is_iam && iam.is_present() {
                        iam = g;
                    }
                }
                Ok(()) => {}
            }
        }
        let mut inv = match Arc::try_unwrap(inv) {
            Ok(m) => m.into_inner().unwrap_or_else(|e| e.into_inner()),
            Err(arc) => arc.lock().map(|i| i.clone()).unwrap_or_default(),
        };
        inv.iam = iam;
        inv.gaps = gaps;
        inv.services.sort_by(|a, b| a.full_name.cmp(&b.full_name));
        inv.callers.sort_by(|a, b| a.full_name.cmp(&b.full_name));
        self.fill_callers(&mut inv, &progress).await;
        self.read_outside(&mut inv, scope, &progress).await;
        self.read_intent(&mut inv, s, &progress).await;
        self.read_org_policies(&mut inv, &progress).await;
        inv
    }

    /// A caller's `get` where the index lacks its configuration.
    async fn fill_callers(&self, inv: &mut Inventory, progress: &Progress) {
        let mut set = JoinSet::new();
        for (i, c) in inv.callers.iter().enumerate().filter(|(_, c)| c.needs_get) {
            let Ok(r) = CallerConfigRef::parse(&c.label()) else {
                continue;
            };
            let call = Call::CallerConfigGet {
                api: r.api,
                version: r.version,
                name: r.name,
            };
            let client = self.client.clone();
            set.spawn(async move { (i, client.call(&call, 1).await, call) });
        }
        while let Some(j) = set.join_next().await {
            let Ok((i, r, call)) = j else { continue };
            Progress::add(&progress.calls, 1);
            let c = &mut inv.callers[i];
            match r {
                Ok(v) => c.set_config(&v),
                Err(f) => {
                    let g: Gathered<()> = failed(&f, &call);
                    inv.gaps.extend(gap(
                        format!("caller_config:{}", c.label()),
                        &g,
                        call.permission(),
                    ));
                }
            }
            c.needs_get = false;
        }
    }

    /// The levels above the scope: the organization of a folder or project scan, and the
    /// folders above a project (or above the scanned folder: those listed after it, as the
    /// index lists a resource's folders nearest first).
    async fn read_outside(&self, inv: &mut Inventory, scope: &Scope, progress: &Progress) {
        let mut keys: BTreeSet<PolicyKey> = BTreeSet::new();
        let kind = scope.as_str().split('/').next().unwrap_or("");
        for s in &inv.services {
            if kind != "organizations"
                && let Some(o) = &s.placement.organization
            {
                keys.insert(PolicyKey::Organization(o.clone()));
            }
            let folders = &s.placement.folders;
            let above: &[String] = match kind {
                "projects" => folders,
                "folders" => match folders.iter().position(|f| f == scope.id()) {
                    Some(p) => &folders[p + 1..],
                    None => &[],
                },
                _ => &[],
            };
            for f in above {
                keys.insert(PolicyKey::Folder(f.clone()));
            }
        }
        let mut set = JoinSet::new();
        for k in keys {
            let resource = match &k {
                PolicyKey::Folder(f) => format!("folders/{f}"),
                PolicyKey::Organization(o) => format!("organizations/{o}"),
                _ => continue,
            };
            if check_name(&resource).is_err() {
                continue;
            }
            let call = Call::CrmGetIamPolicy { resource };
            let client = self.client.clone();
            set.spawn(async move { (k, client.call(&call, 1).await, call) });
        }
        while let Some(j) = set.join_next().await {
            let Ok((k, r, call)) = j else { continue };
            Progress::add(&progress.calls, 1);
            let g = match r {
                Ok(v) => Gathered::Present(
                    serde_json::from_value::<Policy>(v)
                        .map(|p| p.bindings)
                        .unwrap_or_default(),
                ),
                Err(f) => {
                    let g = failed(&f, &call);
                    let name = match &k {
                        PolicyKey::Folder(f) => format!("folder_iam_policy:{f}"),
                        PolicyKey::Organization(o) => format!("organization_iam_policy:{o}"),
                        _ => String::new(),
                    };
                    inv.gaps.extend(gap(name, &g, call.permission()));
                    g
                }
            };
            inv.outside.insert(k, g);
        }
    }

    /// One bounded Admin Activity query per project with a service.
    async fn read_intent(&self, inv: &mut Inventory, s: &ScanSettings, progress: &Progress) {
        let projects: BTreeSet<String> = inv
            .services
            .iter()
            .map(|svc| inv.service_project_number(svc))
            .collect();
        let mut set = JoinSet::new();
        for p in projects {
            if check_name(&p).is_err() {
                continue;
            }
            let body = json!({
                "resourceNames": [format!("projects/{p}")],
                "filter": intent_filter(&p, s.since),
                "orderBy": "timestamp desc",
                "pageSize": s.logs.log_page_size,
            });
            let client = self.client.clone();
            let settings = s.logs.clone();
            set.spawn(async move {
                let (r, calls) = list_entries(&client, body, &settings, 1).await;
                (p, r, calls)
            });
        }
        let call = Call::EntriesList { body: json!({}) };
        while let Some(j) = set.join_next().await {
            let Ok((p, r, calls)) = j else { continue };
            Progress::add(&progress.calls, u64::from(calls));
            let g = match r {
                Ok(v) => Gathered::Present(
                    serde_json::from_value::<Vec<LogEntry>>(v).unwrap_or_default(),
                ),
                Err(f) => {
                    let g = failed(&f, &call);
                    inv.gaps.extend(gap(
                        format!("logs:projects/{}", inv.project_label(&p)),
                        &g,
                        call.permission(),
                    ));
                    g
                }
            };
            inv.audit.insert(p, g);
        }
    }

    /// The effective org policies of each project with a service meant to be public.
    async fn read_org_policies(&self, inv: &mut Inventory, progress: &Progress) {
        let projects: BTreeSet<String> = inv
            .services
            .iter()
            .filter(|svc| inv.public_intent(svc).is_some())
            .map(|svc| inv.service_project_number(svc))
            .collect();
        let mut set = JoinSet::new();
        for p in projects {
            for c in CONSTRAINTS {
                let call = Call::GetEffectivePolicy {
                    name: format!("projects/{p}/policies/{c}"),
                };
                let client = self.client.clone();
                let p = p.clone();
                set.spawn(async move { (p, *c, client.call(&call, 2).await) });
            }
        }
        let mut answers: BTreeMap<String, BTreeMap<String, Result<Value, Failure>>> =
            BTreeMap::new();
        while let Some(j) = set.join_next().await {
            let Ok((p, c, r)) = j else { continue };
            Progress::add(&progress.calls, 1);
            answers.entry(p).or_default().insert(c.to_string(), r);
        }
        let call = Call::GetEffectivePolicy {
            name: String::new(),
        };
        for (p, a) in answers {
            let mut notes = Vec::new();
            let g = match org_policies(a, &mut notes) {
                Ok(v) => Gathered::Present(
                    serde_json::from_value::<Vec<OrgPolicy>>(v).unwrap_or_default(),
                ),
                Err(f) => {
                    let g = failed(&f, &call);
                    inv.gaps.extend(gap(
                        format!("org_policies:projects/{}", inv.project_label(&p)),
                        &g,
                        call.permission(),
                    ));
                    g
                }
            };
            inv.org_policies.insert(p, g);
        }
    }

    /// Reads the services at `which` with `services.get`, the authoritative answer the index
    /// may lag behind, and replaces their resource with it.
    pub async fn confirm_services(
        &self,
        inv: &mut Inventory,
        which: &[usize],
        progress: &Progress,
    ) {
        let mut set = JoinSet::new();
        for &i in which {
            let Some(s) = inv.services.get(i) else {
                continue;
            };
            let name = s.api_name();
            if check_name(&name).is_err() {
                continue;
            }
            let call = Call::ServicesGet { name };
            let client = self.client.clone();
            set.spawn(async move { (i, client.call(&call, 2).await, call) });
        }
        while let Some(j) = set.join_next().await {
            let Ok((i, r, call)) = j else { continue };
            Progress::add(&progress.calls, 1);
            let s = &mut inv.services[i];
            s.confirmed_by_get = true;
            match r.map(|v| {
                serde_json::from_value::<RawService>(v)
                    .map_err(|e| e.to_string())
                    .and_then(|raw| {
                        Service::from_raw("services.get", raw).map_err(|e| e.to_string())
                    })
            }) {
                Ok(Ok(mut svc)) => {
                    svc.project_number = svc
                        .project_number
                        .or_else(|| s.placement.project_number.clone());
                    s.service = Gathered::Present(svc);
                }
                Ok(Err(e)) => {
                    inv.gaps.push(Gap {
                        source: format!("service:{}", s.api_name()),
                        state: GapState::Failed,
                        detail: format!("services.get answered something unreadable: {e}"),
                        needs_permission: None,
                    });
                }
                Err(f) => {
                    let g: Gathered<Service> = failed(&f, &call);
                    let detail = if s.service.is_present() {
                        "not confirmed with services.get; the index's copy was used"
                    } else {
                        "neither the index nor services.get gave the service"
                    };
                    if let Some(mut gp) =
                        gap(format!("service:{}", s.api_name()), &g, call.permission())
                    {
                        gp.detail = format!("{detail}: {}", gp.detail);
                        inv.gaps.push(gp);
                    }
                    if !s.service.is_present() {
                        s.service = g;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_checked() {
        assert_eq!(
            Scope::organization("123").map(|s| s.0),
            Ok("organizations/123".into())
        );
        assert!(Scope::project("a/../b").is_err());
        assert!(Scope::folder("").is_err());
    }

    #[test]
    fn the_intent_filter_names_the_activity_log_and_the_window() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
            .map(|t| t.with_timezone(&chrono::Utc))
            .expect("time");
        let f = intent_filter("123", t);
        assert!(f.contains("projects/123/logs/cloudaudit.googleapis.com%2Factivity"));
        assert!(f.contains("timestamp>=\"2026-11-01T00:00:00Z\""));
    }
}
