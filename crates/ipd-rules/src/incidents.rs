//! `incidents`: which services are refusing whom since when, and the change that started it.
//!
//! Pure, like the rules: it takes log entries already gathered (request logs, policy-denied
//! and Data Access audit entries, Admin Activity entries) and a time window, and returns
//! groups. No clock, no network.
//!
//! 1. **Refusals** ([`refusals`]): request-log entries with status 401/403/404 that the gate
//!    produced (its texts, or zero latency), gate-less ones with latency (the application's
//!    own 401/403), VPC Service Controls refusals of `run.googleapis.com/HttpIngress` and IAP
//!    denials.
//! 2. **Groups**: by project × region × service × status × gate × caller hint (the user agent,
//!    named when it is a Google-managed caller), with counts, first and last time, and a
//!    per-minute histogram over the window.
//! 3. **Onset** ([`onset`]): the first refusal after the last quiet period of at least
//!    [`Options::quiet`], or the window start when refusals run from there.
//! 4. **Changes** ([`score_change`]): every Admin Activity change
//!    ([`ipd_model::audit::admin_changes`]) from [`Options::lookback`] before the onset to
//!    [`Options::after_onset`] after it, scored by how well it explains the group (table in
//!    [`score_change`]); below [`MIN_SCORE`] it is left out. None left: the report says that
//!    nothing in the Admin Activity log explains the group, so the cause is on the caller's
//!    side.
//! 5. Ingress changes leave no refusal in the logs (a request refused by ingress is never
//!    logged, facts §1.0 d). A change that closes a service to the internet (ingress not
//!    `all`, default URL disabled) with no logged group that it explains becomes a group of
//!    its own with `logged: false`, status 404 and a count of 0: the refusals are real but
//!    invisible, and the onset is the change.
//!
//! The diagnosis of each group (the normal engine on the group's newest refusal) is done by the
//! caller, which has the evidence of the service.

use std::collections::BTreeMap;

use chrono::{Duration, DurationRound};
use ipd_model::audit::{self, AdminChange, ChangeKind};
use ipd_model::logs::{GateMessage, LogEntry};
use ipd_model::principal::Principal;
use ipd_model::roles::{Grants, grants_invoke};
use ipd_model::service::Ingress;
use ipd_model::time::{Timestamp, fmt};
use serde::Serialize;

use crate::report::Report;

/// A change scoring below this explains nothing and is left out.
pub const MIN_SCORE: f64 = 0.15;

/// Tuning of the analysis.
#[derive(Debug, Clone)]
pub struct Options {
    /// A gap this long between refusals ends an episode: the next refusal is an onset.
    pub quiet: Duration,
    /// How far before the onset changes are looked at.
    pub lookback: Duration,
    /// Changes logged up to this long after the onset still count (log times and the first
    /// refusal can be a few seconds apart).
    pub after_onset: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            quiet: Duration::minutes(5),
            lookback: Duration::minutes(30),
            after_onset: Duration::minutes(1),
        }
    }
}

/// The time window looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    #[serde(serialize_with = "ser_time")]
    pub from: Timestamp,
    #[serde(serialize_with = "ser_time")]
    pub to: Timestamp,
}

fn ser_time<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&fmt(t))
}

fn ser_opt_time<S: serde::Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&fmt(t)),
        None => s.serialize_none(),
    }
}

/// Who refused (the contract's `gate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GateKind {
    NotAuthenticated,
    NotAuthorized,
    EmptyAuthorization,
    Iap,
    VpcSc,
    Ingress,
    Application,
}

impl GateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GateKind::NotAuthenticated => "not_authenticated",
            GateKind::NotAuthorized => "not_authorized",
            GateKind::EmptyAuthorization => "empty_authorization",
            GateKind::Iap => "iap",
            GateKind::VpcSc => "vpc_sc",
            GateKind::Ingress => "ingress",
            GateKind::Application => "application",
        }
    }

    /// A 403 of the invoker gate: the caller's identity lacks invoke (or it sent no token).
    fn is_iam_403(self) -> bool {
        matches!(
            self,
            GateKind::NotAuthenticated | GateKind::EmptyAuthorization
        )
    }
}

/// One refused request.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub project: Option<String>,
    pub region: Option<String>,
    pub service: Option<String>,
    pub status: i64,
    pub gate: GateKind,
    pub caller_hint: String,
    pub time: Timestamp,
    pub insert_id: Option<String>,
}

/// The Google-managed caller a user agent names, as the group's caller hint
/// (`Cloud Scheduler (Google-Cloud-Scheduler/1.0)`), else the user agent itself (80 chars at
/// most), or `(no user agent)`.
pub fn caller_hint(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent.map(str::trim).filter(|u| !u.is_empty()) else {
        return "(no user agent)".into();
    };
    let short: String = ua.chars().take(80).collect();
    let who = if ua.starts_with("Google-Cloud-Scheduler") {
        Some("Cloud Scheduler")
    } else if ua.starts_with("Google-Cloud-Tasks") {
        Some("Cloud Tasks")
    } else if ua.contains("GoogleCloudWorkflows") {
        Some("Workflows")
    } else if ua.starts_with("APIs-Google") {
        // Pub/Sub push (and Eventarc, which delivers through Pub/Sub).
        Some("Pub/Sub push or Eventarc")
    } else {
        None
    };
    match who {
        Some(w) => format!("{w} ({short})"),
        None => short,
    }
}

fn label(e: &LogEntry, k: &str) -> Option<String> {
    e.resource_label(k).map(str::to_string)
}

fn project_of_log_name(e: &LogEntry) -> Option<String> {
    e.log_name
        .as_deref()?
        .strip_prefix("projects/")?
        .split('/')
        .next()
        .map(str::to_string)
}

/// Every refusal in `logs` (see the module documentation for what counts).
pub fn refusals(logs: &[LogEntry]) -> Vec<Refusal> {
    let mut out = Vec::new();
    for e in logs {
        let Some(time) = e.time() else { continue };
        if e.is_request_log() {
            let Some(status) = e.status().filter(|s| matches!(s, 401 | 403 | 404)) else {
                continue;
            };
            let gate = match e.gate_message() {
                GateMessage::NotAuthenticated => GateKind::NotAuthenticated,
                GateMessage::EmptyAuthorization => GateKind::EmptyAuthorization,
                GateMessage::NotAuthorized => GateKind::NotAuthorized,
                GateMessage::None if e.latency_secs().is_some_and(|l| l > 0.0) => {
                    GateKind::Application
                }
                // No text and zero latency: the gate, wording unknown.
                GateMessage::None if status == 401 => GateKind::NotAuthorized,
                GateMessage::None if status == 403 => GateKind::NotAuthenticated,
                GateMessage::None => continue,
            };
            out.push(Refusal {
                project: label(e, "project_id").or_else(|| project_of_log_name(e)),
                region: label(e, "location"),
                service: label(e, "service_name"),
                status,
                gate,
                caller_hint: caller_hint(e.user_agent()),
                time,
                insert_id: e.insert_id.clone(),
            });
        }
    }
    for v in audit::vpcsc_violations(logs) {
        let Some(time) = v.time else { continue };
        let e = logs
            .iter()
            .find(|e| v.insert_id.is_some() && e.insert_id == v.insert_id);
        // The violation names the service in `resourceName` when it names it at all.
        let svc = e
            .and_then(|e| e.proto_payload.as_ref())
            .and_then(|p| p.get("resourceName"))
            .and_then(|r| r.as_str())
            .and_then(audit::service_of_resource)
            .map(str::to_string);
        out.push(Refusal {
            project: e.and_then(|e| label(e, "project_id").or_else(|| project_of_log_name(e))),
            region: None,
            service: svc,
            status: 403,
            gate: GateKind::VpcSc,
            caller_hint: v
                .perimeter
                .map(|p| format!("outside perimeter {p}"))
                .unwrap_or_else(|| "outside the perimeter".into()),
            time,
            insert_id: v.insert_id,
        });
    }
    for (d, e) in audit::iap_denials(logs).into_iter().zip(
        logs.iter()
            .filter(|e| {
                e.log_name
                    .as_deref()
                    .is_some_and(|n| n.ends_with(audit::DATA_ACCESS_LOG))
            })
            .filter(|e| {
                e.proto_payload.as_ref().is_some_and(|p| {
                    p.get("serviceName").and_then(|s| s.as_str()) == Some("iap.googleapis.com")
                        && p.pointer("/status/code").and_then(|c| c.as_i64()) == Some(7)
                })
            }),
    ) {
        let Some(time) = d.time else { continue };
        out.push(Refusal {
            project: label(e, "project_id").or_else(|| project_of_log_name(e)),
            region: label(e, "location"),
            service: d
                .resource
                .as_deref()
                .and_then(audit::service_of_resource)
                .map(str::to_string)
                .or_else(|| label(e, "service_name")),
            status: 403,
            gate: GateKind::Iap,
            caller_hint: d
                .principal
                .map(|p| Principal::from_email(&p).to_string())
                .unwrap_or_else(|| "(unknown principal)".into()),
            time,
            insert_id: e.insert_id.clone(),
        });
    }
    out
}

/// A change as the report shows it (the contract's `changes[]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoredChange {
    pub insert_id: Option<String>,
    #[serde(serialize_with = "ser_opt_time")]
    pub time: Option<Timestamp>,
    pub method: String,
    pub principal: Option<String>,
    pub resource: Option<String>,
    pub summary: String,
    /// 0 to 1: how well the change explains the group.
    pub score: f64,
    /// Why it scores so (not in contract v1's list; extra).
    pub why: String,
    /// Minutes from the change to the onset (negative: before).
    pub minutes_before_onset: f64,
}

/// One group of refusals.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub project: Option<String>,
    pub region: Option<String>,
    pub service: Option<String>,
    pub status: i64,
    pub gate: GateKind,
    pub caller_hint: String,
    pub count: usize,
    #[serde(serialize_with = "ser_opt_time")]
    pub first: Option<Timestamp>,
    #[serde(serialize_with = "ser_opt_time")]
    pub last: Option<Timestamp>,
    #[serde(serialize_with = "ser_time")]
    pub onset: Timestamp,
    /// True when refusals run from the window's start (the onset may be earlier).
    pub onset_at_window_start: bool,
    /// `[["RFC3339 minute", count], ...]` over the whole window.
    pub per_minute: Vec<(String, usize)>,
    pub changes: Vec<ScoredChange>,
    /// False for a group inferred from a change whose refusals are never logged (ingress).
    pub logged: bool,
    /// The `insertId` of the newest refusal: the request the diagnosis is about.
    pub newest_insert_id: Option<String>,
    /// The diagnosis of the newest refusal; filled by the caller (null when not diagnosed).
    pub report: Option<Report>,
}

/// The whole analysis (the contract's `incidents` object).
#[derive(Debug, Clone, Serialize)]
pub struct Incidents {
    pub schema_version: u32,
    pub window: Window,
    pub groups: Vec<Group>,
    /// Admin Activity changes in the logs that could matter (not in contract v1's list; extra).
    pub changes_seen: usize,
    /// Log entries read (not in contract v1's list; extra).
    pub entries_read: usize,
}

/// The onset of a sorted, non-empty series: the first time after the last gap of at least
/// `quiet`; the window start (and `true`) when the series runs from within `quiet` of it.
pub fn onset(times: &[Timestamp], window: &Window, quiet: Duration) -> (Timestamp, bool) {
    let Some(first) = times.first() else {
        return (window.from, true);
    };
    let mut start = *first;
    let mut from_window_start = *first - window.from < quiet;
    for w in times.windows(2) {
        if w[1] - w[0] >= quiet {
            start = w[1];
            from_window_start = false;
        }
    }
    if from_window_start {
        (window.from, true)
    } else {
        (start, false)
    }
}

fn minute(t: Timestamp) -> Timestamp {
    t.duration_trunc(Duration::minutes(1)).unwrap_or(t)
}

/// The per-minute series of `times` over the window (every minute, zeros included).
pub fn per_minute(times: &[Timestamp], window: &Window) -> Vec<(String, usize)> {
    let start = minute(window.from);
    let end = minute(window.to);
    let mut counts: BTreeMap<Timestamp, usize> = BTreeMap::new();
    let mut m = start;
    // At most a week of minutes; a longer window is cut at the end (the flag says 7d at most).
    let mut n = 0;
    while m <= end && n < 7 * 24 * 60 {
        counts.insert(m, 0);
        m += Duration::minutes(1);
        n += 1;
    }
    for t in times {
        if let Some(c) = counts.get_mut(&minute(*t)) {
            *c += 1;
        }
    }
    counts
        .into_iter()
        .map(|(t, c)| (t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), c))
        .collect()
}

/// Facts about a group that score a change.
#[derive(Debug, Clone)]
pub struct GroupView<'a> {
    pub service: Option<&'a str>,
    pub status: i64,
    pub gate: GateKind,
    /// The caller, when known (a Google-managed caller's service account).
    pub caller: Option<&'a Principal>,
}

fn grants(role: &str) -> bool {
    // A custom role whose definition is unknown may grant invoke: count it.
    grants_invoke(role, &[]) != Grants::No
}

fn closes_to_internet(c: &AdminChange) -> bool {
    c.kind == ChangeKind::Service
        && (c.settings.ingress.is_some_and(|i| !i.admits_internet())
            || c.settings.default_uri_disabled == Some(true))
}

/// How well `c` explains the group, with the reason; `None` when it has nothing to do with it
/// (another service, a failed call). `prev` is the previous logged change of the same
/// service, whose settings say what this one changed.
///
/// | change | group | score |
/// |---|---|---|
/// | `SetIamPolicy` removing a role with `run.routes.invoke` | gate 403 | 0.85 service, 0.75 project, 0.65 folder/org; +0.1 when the member removed is the caller or `allUsers` |
/// | `SetIamPolicy` with no delta (whole policy) on the service | gate 403 | 0.5 |
/// | `SetIamPolicy` adding only | any | 0.05 |
/// | service update closing ingress / disabling the default URL | 404 / ingress | 0.9 |
/// | service update turning the invoker check on (was off in the previous update) | gate 403 | 0.85; 0.35 when the previous state is not in the logs |
/// | service update changing custom audiences | 401 | 0.85 (audiences removed), 0.4 (previous unknown) |
/// | other service update | application gate 0.5, else 0.25 |
/// | service account re-created (delete, then create, of the same email) | gate 403 | 0.9 (the delete itself 0.5) |
/// | service account deleted or disabled | gate 403 | 0.6 (0.9 when it is the caller) |
/// | deny policy denying `run.googleapis.com/routes.invoke` | gate 403 | 0.85 |
/// | org policy `run.allowedIngress`, `run.managed.requireInvokerIam`, domain restriction | 404 / 403 | 0.6 / 0.5 |
///
/// The score then falls linearly with the distance to the onset, to 60 % at the far end of
/// the lookback.
pub fn score_change(
    c: &AdminChange,
    g: &GroupView<'_>,
    prev: Option<&AdminChange>,
    all: &[AdminChange],
) -> Option<(f64, String)> {
    let iam403 = g.gate.is_iam_403() || g.gate == GateKind::Iap;
    let ingressish = g.gate == GateKind::Ingress || g.status == 404;
    match c.kind {
        ChangeKind::IamPolicy => {
            if (c.level == Some("service") && c.service.as_deref() != g.service)
                || c.level == Some("service_account")
            {
                return None;
            }
            let removed: Vec<_> = c.removed.iter().filter(|b| grants(&b.role)).collect();
            if !removed.is_empty() {
                if !iam403 {
                    return Some((
                        0.1,
                        "removed an invoke grant, but the group's refusals are not IAM's".into(),
                    ));
                }
                let mut s = match c.level {
                    Some("service") => 0.85,
                    Some("project") => 0.75,
                    _ => 0.65,
                };
                let names_caller = removed.iter().any(|b| {
                    let m = Principal::parse(&b.member);
                    m.is_public() || g.caller.is_some_and(|c| *c == m)
                });
                // A known caller that none of the removed members can stand for (another user
                // or service account) did not lose its grant here.
                let others_only = g.caller.is_some()
                    && removed.iter().all(|b| {
                        matches!(
                            Principal::parse(&b.member),
                            Principal::User(_) | Principal::ServiceAccount(_)
                        )
                    })
                    && !names_caller;
                if others_only {
                    return Some((
                        0.1,
                        "removed invoke grants of other principals than the caller".into(),
                    ));
                }
                if names_caller {
                    s += 0.1;
                }
                return Some((
                    s,
                    format!(
                        "removed an invoke grant at the {} level{}",
                        c.level.unwrap_or("project"),
                        if names_caller {
                            " naming the caller (or allUsers)"
                        } else {
                            ""
                        }
                    ),
                ));
            }
            if c.added.iter().any(|b| b.action == "SET") && c.level == Some("service") && iam403 {
                return Some((
                    0.5,
                    "replaced the service's whole policy (no delta logged)".into(),
                ));
            }
            Some((0.05, "only added bindings".into()))
        }
        ChangeKind::Service => {
            if c.service.as_deref() != g.service {
                return None;
            }
            if closes_to_internet(c) {
                return Some(if ingressish {
                    (
                        0.9,
                        "closed the service to the internet (ingress or default URL)".into(),
                    )
                } else {
                    (
                        0.2,
                        "changed ingress, but the group is not refused by ingress".into(),
                    )
                });
            }
            let st = &c.settings;
            let ps = prev.map(|p| &p.settings);
            if iam403 && st.invoker_iam_disabled == Some(false) {
                return Some(match ps.and_then(|p| p.invoker_iam_disabled) {
                    Some(true) => (0.85, "turned the invoker IAM check back on".into()),
                    Some(false) => (0.25, "a deploy (the invoker check was already on)".into()),
                    None => (
                        0.35,
                        "a deploy with the invoker check on; whether it was off before is not in the logs".into(),
                    ),
                });
            }
            if g.status == 401
                && let Some(now) = &st.custom_audiences
            {
                match ps.and_then(|p| p.custom_audiences.as_ref()) {
                    Some(before) if before.iter().any(|a| !now.contains(a)) => {
                        return Some((0.85, "removed a custom audience".into()));
                    }
                    Some(_) => {}
                    None => {
                        return Some((
                            0.4,
                            "a deploy that sets the custom audiences; the previous ones are not in the logs".into(),
                        ));
                    }
                }
            }
            Some(if g.gate == GateKind::Application {
                (
                    0.5,
                    "a deploy: the refusals come from the application".into(),
                )
            } else {
                (0.25, "a deploy of the service".into())
            })
        }
        ChangeKind::ServiceAccount => {
            let lower = c.method.to_ascii_lowercase();
            let acct = c.account.as_deref().map(str::to_ascii_lowercase);
            let is_caller = g
                .caller
                .and_then(|p| p.email())
                .is_some_and(|e| acct.as_deref() == Some(e));
            if !iam403 {
                return Some((
                    0.1,
                    "a service-account change, but the refusals are not IAM's".into(),
                ));
            }
            if lower.starts_with("create") {
                let recreated = all.iter().any(|o| {
                    o.kind == ChangeKind::ServiceAccount
                        && o.method.to_ascii_lowercase().starts_with("delete")
                        && o.time <= c.time
                        && o.account.as_deref().map(str::to_ascii_lowercase) == acct
                });
                return Some(if recreated {
                    (
                        0.9,
                        "re-created a deleted service account: its bindings name the deleted one"
                            .into(),
                    )
                } else {
                    (0.15, "created a service account".into())
                });
            }
            if lower.starts_with("delete") || lower.starts_with("disable") {
                let recreated_later = all.iter().any(|o| {
                    o.kind == ChangeKind::ServiceAccount
                        && o.method.to_ascii_lowercase().starts_with("create")
                        && o.time >= c.time
                        && o.account.as_deref().map(str::to_ascii_lowercase) == acct
                });
                if recreated_later {
                    // A deleted account mints no token (nothing reaches Cloud Run); its
                    // re-creation is what the refusals follow.
                    return Some((
                        0.5,
                        "deleted a service account that was then re-created".into(),
                    ));
                }
                return Some(if is_caller {
                    (
                        0.9,
                        "deleted or disabled the caller's service account".into(),
                    )
                } else {
                    (0.6, "deleted or disabled a service account".into())
                });
            }
            Some((0.2, "restored a service account".into()))
        }
        ChangeKind::DenyPolicy => Some(if c.denies_invoke && iam403 {
            (
                0.85,
                "a deny policy on run.googleapis.com/routes.invoke".into(),
            )
        } else if iam403 {
            (0.3, "a deny-policy change".into())
        } else {
            (0.1, "a deny-policy change".into())
        }),
        ChangeKind::OrgPolicy => {
            let k = c.constraint.as_deref().unwrap_or("");
            Some(if k == "run.allowedIngress" && ingressish {
                (0.6, "the ingress constraint changed".into())
            } else if (k == "run.managed.requireInvokerIam"
                || k == "iam.allowedPolicyMemberDomains"
                || k == "iam.managed.allowedPolicyMembers")
                && iam403
            {
                (0.5, format!("org policy `{k}` changed"))
            } else {
                (0.15, format!("org policy `{k}` changed"))
            })
        }
    }
}

/// One line saying what the change did.
pub fn summarize(c: &AdminChange) -> String {
    let on = c.resource.clone().unwrap_or_else(|| "?".into());
    match c.kind {
        ChangeKind::IamPolicy => {
            let mut parts: Vec<String> = c
                .removed
                .iter()
                .map(|b| format!("removed {} from {}", b.role, b.member))
                .collect();
            let sets = c.added.iter().filter(|b| b.action == "SET").count();
            if sets > 0 && c.removed.is_empty() {
                parts.push(format!(
                    "set the whole policy ({sets} member grants; no delta logged)"
                ));
            } else {
                parts.extend(
                    c.added
                        .iter()
                        .filter(|b| b.action == "ADD")
                        .map(|b| format!("added {} to {}", b.role, b.member)),
                );
            }
            if parts.is_empty() {
                parts.push("set the IAM policy (no binding changed)".into());
            }
            format!("{} on {on}", parts.join("; "))
        }
        ChangeKind::Service => {
            let s = &c.settings;
            let mut parts = Vec::new();
            if let Some(i) = s.ingress {
                parts.push(format!("ingress {}", i.gcloud()));
            }
            if let Some(d) = s.invoker_iam_disabled {
                parts.push(if d {
                    "invoker IAM check disabled".to_string()
                } else {
                    "invoker IAM check on".to_string()
                });
            }
            if let Some(a) = &s.custom_audiences {
                parts.push(if a.is_empty() {
                    "no custom audiences".to_string()
                } else {
                    format!("custom audiences {}", a.join(", "))
                });
            }
            if s.default_uri_disabled == Some(true) {
                parts.push("default run.app URL disabled".into());
            }
            format!("{} of {on}: {}", c.method, parts.join(", "))
        }
        ChangeKind::ServiceAccount => format!("{} {}", c.method, c.account.clone().unwrap_or(on)),
        ChangeKind::OrgPolicy => format!(
            "{} constraint {} on {on}",
            c.method,
            c.constraint.as_deref().unwrap_or("?")
        ),
        ChangeKind::DenyPolicy => format!(
            "{} deny policy {on}{}",
            c.method,
            if c.denies_invoke {
                " (denies run.googleapis.com/routes.invoke)"
            } else {
                ""
            }
        ),
    }
}

/// The ranked changes that may explain a group whose onset is `onset`.
pub fn rank_changes(
    changes: &[AdminChange],
    g: &GroupView<'_>,
    onset: Timestamp,
    opts: &Options,
) -> Vec<ScoredChange> {
    let lookback_min = opts.lookback.num_seconds().max(1) as f64 / 60.0;
    let mut out: Vec<ScoredChange> = Vec::new();
    for (i, c) in changes.iter().enumerate() {
        let Some(t) = c.time else { continue };
        if t < onset - opts.lookback || t > onset + opts.after_onset {
            continue;
        }
        let prev = changes[..i]
            .iter()
            .rev()
            .find(|p| p.kind == ChangeKind::Service && p.service == c.service);
        let Some((base, why)) = score_change(c, g, prev, changes) else {
            continue;
        };
        let before = (onset - t).num_seconds() as f64 / 60.0;
        let decay = 1.0 - 0.4 * (before.max(0.0) / lookback_min).min(1.0);
        let score = ((base * decay).min(1.0) * 100.0).round() / 100.0;
        if score < MIN_SCORE {
            continue;
        }
        out.push(ScoredChange {
            insert_id: c.insert_id.clone(),
            time: c.time,
            method: c.method.clone(),
            principal: c.principal.clone(),
            resource: c.resource.clone(),
            summary: summarize(c),
            score,
            why,
            minutes_before_onset: (before * 10.0).round() / 10.0,
        });
    }
    out.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(b.time.cmp(&a.time))
    });
    out
}

type Key = (
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    GateKind,
    String,
);

/// Groups the refusals of `logs` in `window`, finds onsets and ranks the changes.
/// `caller_of` names a group's caller when the evidence knows it (from its caller hint and
/// service).
/// Groups come largest first; `report` is left empty.
pub fn analyze(
    logs: &[LogEntry],
    window: Window,
    service_filter: Option<&str>,
    caller_of: &dyn Fn(&str, Option<&str>) -> Option<Principal>,
    opts: &Options,
) -> Incidents {
    let changes = audit::admin_changes(logs);
    let mut groups: BTreeMap<Key, Vec<Refusal>> = BTreeMap::new();
    for r in refusals(logs) {
        if r.time < window.from || r.time > window.to {
            continue;
        }
        if service_filter.is_some_and(|s| r.service.as_deref() != Some(s)) {
            continue;
        }
        let k = (
            r.project.clone(),
            r.region.clone(),
            r.service.clone(),
            r.status,
            r.gate,
            r.caller_hint.clone(),
        );
        groups.entry(k).or_default().push(r);
    }
    let mut out: Vec<Group> = Vec::new();
    for ((project, region, service, status, gate, hint), mut rs) in groups {
        rs.sort_by(|a, b| a.time.cmp(&b.time).then(a.insert_id.cmp(&b.insert_id)));
        let times: Vec<Timestamp> = rs.iter().map(|r| r.time).collect();
        let (on, at_start) = onset(&times, &window, opts.quiet);
        let caller = caller_of(&hint, service.as_deref());
        let view = GroupView {
            service: service.as_deref(),
            status,
            gate,
            caller: caller.as_ref(),
        };
        let ranked = rank_changes(&changes, &view, on, opts);
        out.push(Group {
            count: rs.len(),
            first: times.first().copied(),
            last: times.last().copied(),
            onset: on,
            onset_at_window_start: at_start,
            per_minute: per_minute(&times, &window),
            changes: ranked,
            logged: true,
            newest_insert_id: rs.last().and_then(|r| r.insert_id.clone()),
            report: None,
            project,
            region,
            service,
            status,
            gate,
            caller_hint: hint,
        });
    }
    // Changes that close a service to the internet leave refusals nobody logs.
    for c in changes.iter().filter(|c| closes_to_internet(c)) {
        let Some(t) = c.time.filter(|t| *t >= window.from && *t <= window.to) else {
            continue;
        };
        if service_filter.is_some_and(|s| c.service.as_deref() != Some(s)) {
            continue;
        }
        let explained = out.iter().any(|g| {
            g.changes
                .iter()
                .any(|s| s.insert_id == c.insert_id && s.score >= 0.5)
        });
        if explained {
            continue;
        }
        let view = GroupView {
            service: c.service.as_deref(),
            status: 404,
            gate: GateKind::Ingress,
            caller: None,
        };
        let ranked = rank_changes(&changes, &view, t, opts);
        let (project, region) = c
            .resource
            .as_deref()
            .and_then(|r| {
                let segs: Vec<&str> = r.split('/').collect();
                match segs.as_slice() {
                    ["projects", p, "locations", l, "services", _] => {
                        Some((Some(p.to_string()), Some(l.to_string())))
                    }
                    ["namespaces", p, "services", _] => Some((Some(p.to_string()), None)),
                    _ => None,
                }
            })
            .unwrap_or((None, None));
        out.push(Group {
            project,
            region,
            service: c.service.clone(),
            status: 404,
            gate: GateKind::Ingress,
            caller_hint: "callers from outside the network boundary (refused before logging)"
                .into(),
            count: 0,
            first: None,
            last: None,
            onset: t,
            onset_at_window_start: false,
            per_minute: per_minute(&[], &window),
            changes: ranked,
            logged: false,
            newest_insert_id: None,
            report: None,
        });
    }
    out.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(b.logged.cmp(&a.logged))
            .then(a.service.cmp(&b.service))
            .then(a.status.cmp(&b.status))
    });
    let changes_seen = changes
        .iter()
        .filter(|c| {
            c.time
                .is_some_and(|t| t >= window.from - opts.lookback && t <= window.to)
        })
        .count();
    Incidents {
        schema_version: crate::report::SCHEMA_VERSION,
        window,
        groups: out,
        changes_seen,
        entries_read: logs.len(),
    }
}

/// The ingress a group inferred from a change names (for the text).
pub fn ingress_of(c: &AdminChange) -> Option<Ingress> {
    c.settings.ingress
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn t(s: &str) -> Timestamp {
        ipd_model::time::parse_rfc3339(s).unwrap()
    }

    fn win() -> Window {
        Window {
            from: t("2026-11-20T10:00:00Z"),
            to: t("2026-11-20T11:00:00Z"),
        }
    }

    fn req(svc: &str, time: &str, status: i64, text: &str, ua: &str, id: &str) -> Value {
        json!({"logName": "projects/p/logs/run.googleapis.com%2Frequests",
            "resource": {"type": "cloud_run_revision", "labels": {"project_id": "p", "location": "r", "service_name": svc}},
            "timestamp": time, "insertId": id, "textPayload": text,
            "httpRequest": {"status": status, "latency": "0s", "userAgent": ua}})
    }

    fn set_iam(time: &str, resource: &str, action: &str, member: &str, id: &str) -> Value {
        json!({"logName": "projects/p/logs/cloudaudit.googleapis.com%2Factivity", "timestamp": time, "insertId": id,
            "protoPayload": {"@type": "type.googleapis.com/google.cloud.audit.AuditLog", "serviceName": "run.googleapis.com",
                "methodName": "google.cloud.run.v2.Services.SetIamPolicy", "resourceName": resource,
                "authenticationInfo": {"principalEmail": "terraform@p.iam.gserviceaccount.com"},
                "serviceData": {"@type": "type.googleapis.com/google.iam.v1.logging.AuditData",
                    "policyDelta": {"bindingDeltas": [{"action": action, "role": "roles/run.invoker", "member": member}]}}}})
    }

    fn entries(v: Vec<Value>) -> Vec<LogEntry> {
        v.into_iter()
            .map(|e| serde_json::from_value(e).unwrap())
            .collect()
    }

    const G403: &str = "The request was not authenticated. Either allow unauthenticated invocations or set the proper Authorization header.";

    #[test]
    fn onset_after_quiet_period_or_window_start() {
        let w = win();
        let q = Duration::minutes(5);
        let ts = [t("2026-11-20T10:01:00Z"), t("2026-11-20T10:02:00Z")];
        assert_eq!(onset(&ts, &w, q), (w.from, true));
        let ts = [
            t("2026-11-20T10:10:00Z"),
            t("2026-11-20T10:30:00Z"),
            t("2026-11-20T10:31:00Z"),
        ];
        assert_eq!(onset(&ts, &w, q), (t("2026-11-20T10:30:00Z"), false));
        let ts = [t("2026-11-20T10:20:00Z"), t("2026-11-20T10:21:00Z")];
        assert_eq!(onset(&ts, &w, q), (t("2026-11-20T10:20:00Z"), false));
    }

    #[test]
    fn histogram_covers_the_window() {
        let w = win();
        let pm = per_minute(&[t("2026-11-20T10:05:10Z"), t("2026-11-20T10:05:50Z")], &w);
        assert_eq!(pm.len(), 61);
        assert_eq!(pm[5], ("2026-11-20T10:05:00Z".to_string(), 2));
        assert_eq!(pm.iter().map(|(_, c)| c).sum::<usize>(), 2);
    }

    #[test]
    fn groups_by_service_status_gate_and_caller() {
        let logs = entries(vec![
            req(
                "a",
                "2026-11-20T10:20:00Z",
                403,
                G403,
                "Google-Cloud-Scheduler",
                "1",
            ),
            req(
                "a",
                "2026-11-20T10:21:00Z",
                403,
                G403,
                "Google-Cloud-Scheduler",
                "2",
            ),
            req("a", "2026-11-20T10:21:30Z", 403, G403, "curl/8.5.0", "3"),
            req(
                "b",
                "2026-11-20T10:22:00Z",
                401,
                "The request was not authorized to invoke this service.",
                "curl/8.5.0",
                "4",
            ),
            // 200s and 5xx are not refusals; outside the window neither.
            req("a", "2026-11-20T10:23:00Z", 200, "", "curl/8.5.0", "5"),
            req("a", "2026-11-20T09:00:00Z", 403, G403, "curl/8.5.0", "6"),
        ]);
        let inc = analyze(&logs, win(), None, &|_, _| None, &Options::default());
        assert_eq!(inc.groups.len(), 3);
        let g = &inc.groups[0];
        assert_eq!((g.service.as_deref(), g.count), (Some("a"), 2));
        assert_eq!(g.caller_hint, "Cloud Scheduler (Google-Cloud-Scheduler)");
        assert_eq!(g.newest_insert_id.as_deref(), Some("2"));
        assert!(
            inc.groups
                .iter()
                .any(|g| g.gate == GateKind::NotAuthorized && g.status == 401)
        );
        let only_b = analyze(&logs, win(), Some("b"), &|_, _| None, &Options::default());
        assert_eq!(only_b.groups.len(), 1);
    }

    #[test]
    fn removal_before_onset_ranks_first_addition_and_other_service_do_not() {
        let logs = entries(vec![
            set_iam(
                "2026-11-20T10:18:00Z",
                "projects/p/locations/r/services/a",
                "ADD",
                "user:x@example.com",
                "c0",
            ),
            set_iam(
                "2026-11-20T10:19:00Z",
                "projects/p/locations/r/services/a",
                "REMOVE",
                "serviceAccount:sa@p.iam.gserviceaccount.com",
                "c1",
            ),
            set_iam(
                "2026-11-20T10:19:30Z",
                "projects/p/locations/r/services/other",
                "REMOVE",
                "serviceAccount:sa@p.iam.gserviceaccount.com",
                "c2",
            ),
            req(
                "a",
                "2026-11-20T10:20:00Z",
                403,
                G403,
                "Go-http-client/2.0",
                "1",
            ),
            req(
                "a",
                "2026-11-20T10:23:00Z",
                403,
                G403,
                "Go-http-client/2.0",
                "2",
            ),
        ]);
        let inc = analyze(&logs, win(), None, &|_, _| None, &Options::default());
        let g = &inc.groups[0];
        assert_eq!(g.onset, t("2026-11-20T10:20:00Z"));
        assert_eq!(g.changes.len(), 1, "{:?}", g.changes);
        assert_eq!(g.changes[0].insert_id.as_deref(), Some("c1"));
        assert!(g.changes[0].score > 0.8);
        assert!(g.changes[0].summary.contains(
            "removed roles/run.invoker from serviceAccount:sa@p.iam.gserviceaccount.com"
        ));
        // The same removal explains a 401 poorly: tokens are checked before IAM.
        let logs401 = entries(vec![
            set_iam(
                "2026-11-20T10:19:00Z",
                "projects/p/locations/r/services/a",
                "REMOVE",
                "user:y@example.com",
                "c1",
            ),
            req(
                "a",
                "2026-11-20T10:20:00Z",
                401,
                "The request was not authorized to invoke this service",
                "curl",
                "1",
            ),
        ]);
        let inc = analyze(&logs401, win(), None, &|_, _| None, &Options::default());
        assert!(inc.groups[0].changes.is_empty());
    }

    #[test]
    fn removal_naming_the_caller_scores_higher_and_nearer_is_better() {
        let sa = Principal::parse("serviceAccount:sa@p.iam.gserviceaccount.com");
        let logs = entries(vec![
            set_iam(
                "2026-11-20T10:00:30Z",
                "projects/p/locations/r/services/a",
                "REMOVE",
                "serviceAccount:sa@p.iam.gserviceaccount.com",
                "far",
            ),
            set_iam(
                "2026-11-20T10:28:00Z",
                "projects/p/locations/r/services/a",
                "REMOVE",
                "serviceAccount:other@p.iam.gserviceaccount.com",
                "other",
            ),
            set_iam(
                "2026-11-20T10:29:00Z",
                "projects/p/locations/r/services/a",
                "REMOVE",
                "serviceAccount:sa@p.iam.gserviceaccount.com",
                "near",
            ),
            req(
                "a",
                "2026-11-20T10:30:00Z",
                403,
                G403,
                "Google-Cloud-Scheduler",
                "1",
            ),
        ]);
        let caller =
            |h: &str, _: Option<&str>| h.starts_with("Cloud Scheduler").then(|| sa.clone());
        let inc = analyze(&logs, win(), None, &caller, &Options::default());
        let ch = &inc.groups[0].changes;
        assert_eq!(ch[0].insert_id.as_deref(), Some("near"));
        assert!(ch[0].score > ch[1].score);
        assert!(ch[0].why.contains("naming the caller"));
        // Removing another service account's grant does not explain the caller's refusals.
        assert_eq!(ch.len(), 2, "{ch:?}");
    }

    #[test]
    fn ingress_change_makes_an_unlogged_group() {
        let logs = entries(vec![
            json!({"logName": "projects/p/logs/cloudaudit.googleapis.com%2Factivity",
            "timestamp": "2026-11-20T10:40:00Z", "insertId": "ing",
            "protoPayload": {"serviceName": "run.googleapis.com", "methodName": "google.cloud.run.v2.Services.UpdateService",
                "resourceName": "projects/p/locations/r/services/a",
                "authenticationInfo": {"principalEmail": "dev@example.com"},
                "request": {"@type": "type.googleapis.com/google.cloud.run.v2.UpdateServiceRequest",
                    "service": {"name": "projects/p/locations/r/services/a", "ingress": "INGRESS_TRAFFIC_INTERNAL_ONLY"}}}}),
        ]);
        let inc = analyze(&logs, win(), None, &|_, _| None, &Options::default());
        assert_eq!(inc.groups.len(), 1);
        let g = &inc.groups[0];
        assert!(!g.logged);
        assert_eq!((g.status, g.gate, g.count), (404, GateKind::Ingress, 0));
        assert_eq!(g.changes[0].insert_id.as_deref(), Some("ing"));
        assert!(g.changes[0].summary.contains("ingress internal"));
    }

    #[test]
    fn nothing_changed_leaves_changes_empty() {
        let logs = entries(vec![req(
            "a",
            "2026-11-20T10:20:00Z",
            401,
            "The request was not authorized to invoke this service",
            "python-requests/2.32",
            "1",
        )]);
        let inc = analyze(&logs, win(), None, &|_, _| None, &Options::default());
        assert!(inc.groups[0].changes.is_empty());
        assert_eq!(inc.changes_seen, 0);
    }

    #[test]
    fn failed_changes_are_not_changes() {
        let mut e = set_iam(
            "2026-11-20T10:19:00Z",
            "projects/p/locations/r/services/a",
            "REMOVE",
            "user:a@example.com",
            "c1",
        );
        e["protoPayload"]["status"] = json!({"code": 7, "message": "Permission denied"});
        assert!(audit::admin_changes(&entries(vec![e])).is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 200, .. Default::default() })]

        /// Over random refusals and removals: counts add up, every minute series sums to its
        /// count, the onset lies in the window at or before the first refusal after it, and
        /// changes are in the lookback, scored within bounds, best first.
        #[test]
        fn analysis_invariants(
            reqs in proptest::collection::vec((0u32..60, 0u32..60, 0usize..3, 0usize..3, 0usize..3), 0..40),
            changes in proptest::collection::vec((0u32..60, 0usize..3, proptest::bool::ANY), 0..6),
        ) {
            let svcs = ["a", "b", "c"];
            let mut v = Vec::new();
            for (i, (m, sec, s, st, ua)) in reqs.iter().enumerate() {
                let (status, text) = [(403, G403), (401, "The request was not authorized to invoke this service"), (404, "")][*st];
                v.push(req(svcs[*s], &format!("2026-11-20T10:{m:02}:{sec:02}Z"), status, text, ["curl", "Google-Cloud-Scheduler", "APIs-Google"][*ua], &format!("r{i}")));
            }
            for (i, (m, s, remove)) in changes.iter().enumerate() {
                v.push(set_iam(&format!("2026-11-20T10:{m:02}:30Z"), &format!("projects/p/locations/r/services/{}", svcs[*s]),
                    if *remove { "REMOVE" } else { "ADD" }, "user:u@example.com", &format!("c{i}")));
            }
            let logs = entries(v);
            let w = win();
            let opts = Options::default();
            let inc = analyze(&logs, w, None, &|_, _| None, &opts);
            let logged: usize = inc.groups.iter().filter(|g| g.logged).map(|g| g.count).sum();
            let expected = reqs.iter().filter(|r| r.3 != 2).count();
            proptest::prop_assert_eq!(logged, expected);
            for g in &inc.groups {
                let sum: usize = g.per_minute.iter().map(|(_, n)| n).sum();
                proptest::prop_assert_eq!(sum, g.count);
                proptest::prop_assert!(g.onset >= w.from && g.onset <= w.to);
                if let (Some(f), Some(l), false) = (g.first, g.last, g.onset_at_window_start) {
                    proptest::prop_assert!(g.onset >= f && g.onset <= l);
                }
                for c in &g.changes {
                    proptest::prop_assert!(c.score >= MIN_SCORE && c.score <= 1.0);
                    let t = c.time.unwrap();
                    proptest::prop_assert!(t >= g.onset - opts.lookback && t <= g.onset + opts.after_onset);
                    proptest::prop_assert_eq!(c.method.as_str(), "SetIamPolicy");
                }
                for p in g.changes.windows(2) { proptest::prop_assert!(p[0].score >= p[1].score); }
            }
        }
    }
}
