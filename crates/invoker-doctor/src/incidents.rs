//! `invoker-doctor incidents`: reads the refusals and changes of a window (one bounded Logging
//! query per project, or a bundle's `logs.json`), groups them with the pure analysis in
//! `ipd_rules::incidents`, and diagnoses the top groups with the normal engine on each group's
//! newest refusal, gathering the service's evidence with the same gatherer as `diagnose`
//! (or reading it from the bundle's `services/SERVICE/`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use ipd_gather::{Env, IncidentQuery, Query, Target};
use ipd_model::caller::{CallerConfig, CallerKind};
use ipd_model::logs::LogEntry;
use ipd_model::time::{Timestamp, parse_rfc3339};
use ipd_model::{Evidence, Gathered, Inputs, Principal};
use ipd_rules::incidents::{self, Group, Incidents, Options, Window};
use serde_json::Value;

use crate::Output;
use crate::cli::{IncidentFormat, IncidentsArgs, LiveArgs};

/// Where a bundle keeps the evidence of each service: `services/SERVICE/` (the files of a
/// `diagnose` bundle: `service.json`, `service-iam-policy.json`, ...), over the top-level files.
pub const SERVICES_DIR: &str = "services";

fn time_flag(name: &str, v: &Option<String>) -> Result<Option<Timestamp>> {
    v.as_deref()
        .map(|s| {
            parse_rfc3339(s).ok_or_else(|| {
                anyhow!("--{name}: `{s}` is not an RFC 3339 time (e.g. 2026-11-20T10:15:00Z)")
            })
        })
        .transpose()
}

/// The kinds of Google-managed caller a group's caller hint names.
fn hinted_kinds(hint: &str) -> &'static [CallerKind] {
    if hint.starts_with("Cloud Scheduler") {
        &[CallerKind::SchedulerJob]
    } else if hint.starts_with("Cloud Tasks") {
        &[CallerKind::TasksTask, CallerKind::TasksQueue]
    } else if hint.starts_with("Workflows") {
        &[CallerKind::Workflow]
    } else if hint.starts_with("Pub/Sub push") {
        &[CallerKind::PubsubSubscription, CallerKind::EventarcTrigger]
    } else {
        &[]
    }
}

/// Whether a caller's configuration is the one behind a group: its kind is the one the user
/// agent names, and its target (when it has one) is the group's service.
fn config_fits(c: &CallerConfig, hint: &str, service: Option<&str>) -> bool {
    hinted_kinds(hint).contains(&c.kind)
        && match (c.target_url.as_deref(), service) {
            (Some(url), Some(s)) => url.split("://").nth(1).is_some_and(|h| {
                h.starts_with(&format!("{s}-")) || h.starts_with(&format!("{s}."))
            }),
            _ => true,
        }
}

/// The caller a group's hint names, when the evidence holds that caller's configuration.
fn caller_of(ev: &Evidence) -> impl Fn(&str, Option<&str>) -> Option<Principal> + '_ {
    move |hint: &str, service: Option<&str>| {
        ev.caller_configs
            .iter()
            .filter(|c| config_fits(c, hint, service))
            .find_map(|c| c.service_account())
            .map(Principal::from_email)
    }
}

fn minute_floor(t: Timestamp) -> Timestamp {
    use chrono::DurationRound;
    t.duration_trunc(chrono::Duration::minutes(1)).unwrap_or(t)
}

/// A bundle's window when `--from`/`--to` are not given: from the minute of its oldest
/// refusal to the minute after its newest (all entries when it has no refusal).
fn bundle_window(logs: &[LogEntry], from: Option<Timestamp>, to: Option<Timestamp>) -> Window {
    let rs = incidents::refusals(logs);
    let times: Vec<Timestamp> = if rs.is_empty() {
        logs.iter().filter_map(LogEntry::time).collect()
    } else {
        rs.iter().map(|r| r.time).collect()
    };
    let lo = times.iter().min().copied();
    let hi = times.iter().max().copied();
    let to = to
        .or_else(|| hi.map(|h| minute_floor(h) + chrono::Duration::minutes(1)))
        .unwrap_or_else(chrono::Utc::now);
    let from = from
        .or_else(|| lo.map(minute_floor))
        .unwrap_or(to - chrono::Duration::hours(1));
    Window { from, to }
}

/// What the diagnosis of a group is told: its newest refusal, or for a group of unlogged
/// ingress refusals, a 404 just after the change with no log entry.
fn group_inputs(g: &Group) -> Inputs {
    let mut i = Inputs {
        project: g.project.clone(),
        region: g.region.clone(),
        service: g.service.clone(),
        ..Inputs::default()
    };
    if g.logged {
        i.request_ref = g.newest_insert_id.clone();
    } else {
        i.status = Some(g.status);
        i.at = Some(g.onset + chrono::Duration::minutes(2));
    }
    i
}

fn exit_code(inc: &Incidents) -> i32 {
    if inc
        .groups
        .iter()
        .filter_map(|g| g.report.as_ref())
        .any(|r| r.has_actionable())
    {
        crate::EXIT_FINDINGS
    } else {
        crate::EXIT_CLEAN
    }
}

fn render(inc: &Incidents, f: IncidentFormat) -> String {
    match f {
        IncidentFormat::Text => ipd_render::incidents::text(inc),
        IncidentFormat::Json => {
            let mut s = ipd_render::incidents::json(inc);
            s.push('\n');
            s
        }
        IncidentFormat::Markdown => ipd_render::incidents::markdown(inc),
        IncidentFormat::Html => ipd_render::incidents::html(inc),
    }
}

pub fn run(a: &IncidentsArgs, env: &Env) -> Result<Output> {
    let from = time_flag("from", &a.from)?;
    let to = time_flag("to", &a.to)?;
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        bail!("--from must be before --to");
    }
    if a.top > 50 {
        bail!("--top: at most 50 groups are diagnosed");
    }
    match &a.bundle {
        Some(dir) => from_bundle(a, dir, from, to),
        None => live(a, env, from, to),
    }
}

/// `a` overlaid by the sources `b` holds (those `b` does not leave missing).
fn overlay(mut a: Evidence, b: Evidence) -> Evidence {
    fn take<T>(to: &mut Gathered<T>, from: Gathered<T>) {
        if !matches!(from, Gathered::Missing { .. }) {
            *to = from;
        }
    }
    a.service = b.service;
    a.service_policy = b.service_policy;
    take(&mut a.project_policy, b.project_policy);
    take(&mut a.org_policies, b.org_policies);
    take(&mut a.deny_policies, b.deny_policies);
    if !b.ancestor_policies.is_empty() {
        a.ancestor_policies = b.ancestor_policies;
    }
    a.custom_roles.extend(b.custom_roles);
    a.caller_configs.extend(b.caller_configs);
    a.caller_config_gaps.extend(b.caller_config_gaps);
    if b.context.is_some() {
        a.context = b.context;
    }
    if let Gathered::Present(extra) = b.logs {
        match &mut a.logs {
            Gathered::Present(l) => {
                for e in extra {
                    if e.insert_id.is_none() || !l.iter().any(|x| x.insert_id == e.insert_id) {
                        l.push(e);
                    }
                }
            }
            other => *other = Gathered::Present(extra),
        }
    }
    a
}

/// The evidence of a group's service in a bundle: the top-level files, overlaid by
/// `services/SERVICE/`; a top-level service file about another service is not used.
fn bundle_service_evidence(
    dir: &Path,
    top: &Evidence,
    logs: &Gathered<Vec<LogEntry>>,
    g: &Group,
    warnings: &mut Vec<String>,
) -> Result<Evidence> {
    let svc = g.service.clone().unwrap_or_default();
    // The group's own service's entries and the audit entries: all a diagnosis reads, without
    // copying every other service's refusals for each group.
    let mut ev = top.clone();
    ev.logs = match logs {
        Gathered::Present(l) => Gathered::Present(
            l.iter()
                .filter(|e| {
                    !e.is_request_log() || e.resource_label("service_name") == Some(svc.as_str())
                })
                .cloned()
                .collect(),
        ),
        other => other.clone(),
    };
    let sub: PathBuf = dir.join(SERVICES_DIR).join(&svc);
    if !svc.is_empty() && !svc.contains(['/', '\\', '.']) && sub.is_dir() {
        let loaded =
            ipd_model::bundle::load(&sub, Inputs::default()).map_err(|e| anyhow!("{e}"))?;
        warnings.extend(loaded.warnings);
        ev = overlay(ev, loaded.evidence);
    } else if top.service.present().map(|s| s.name.as_str()) != Some(svc.as_str()) {
        let why = format!(
            "no {SERVICES_DIR}/{svc}/service.json in the bundle (its top-level service is another one)"
        );
        ev.service = Gathered::missing(why.clone());
        ev.service_policy = Gathered::missing(why);
    }
    // Only the configuration of the caller behind this group says who the caller is.
    ev.caller_configs
        .retain(|c| config_fits(c, &g.caller_hint, g.service.as_deref()));
    ev.inputs = group_inputs(g);
    Ok(ev)
}

fn from_bundle(
    a: &IncidentsArgs,
    dir: &Path,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
) -> Result<Output> {
    let loaded = ipd_model::bundle::load(dir, Inputs::default()).map_err(|e| anyhow!("{e}"))?;
    let mut warnings = loaded.warnings;
    let mut top = loaded.evidence;
    // The logs apart from the rest, so that each group's evidence copies only its own.
    let all_logs = std::mem::replace(&mut top.logs, Gathered::missing("(set per group)"));
    let logs: &[LogEntry] = match &all_logs {
        Gathered::Present(l) => l,
        other => bail!(
            "{}: no logs to read ({})",
            dir.join("logs.json").display(),
            other.absence().unwrap_or_default()
        ),
    };
    let window = bundle_window(logs, from, to);
    let mut inc = incidents::analyze(
        logs,
        window,
        a.service.as_deref(),
        &caller_of(&top),
        &Options::default(),
    );
    for g in inc.groups.iter_mut().take(a.top) {
        let ev = bundle_service_evidence(dir, &top, &all_logs, g, &mut warnings)?;
        g.report = Some(ipd_rules::diagnose(&ev));
    }
    Ok(Output {
        stdout: render(&inc, a.format),
        warnings,
        code: exit_code(&inc),
    })
}

fn live(
    a: &IncidentsArgs,
    env: &Env,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
) -> Result<Output> {
    if a.projects.is_empty() {
        bail!("incidents needs --project P (repeat it for several), or --bundle DIR");
    }
    let now = chrono::Utc::now();
    let to = to.unwrap_or(now);
    let from = match (from, &a.since) {
        (Some(f), _) => f,
        (None, Some(s)) => {
            to - crate::live::parse_freshness(s).map_err(|e| {
                anyhow!(
                    "--since: {}",
                    e.to_string().trim_start_matches("--freshness: ")
                )
            })?
        }
        (None, None) => to - chrono::Duration::hours(1),
    };
    if to - from > chrono::Duration::days(7) {
        bail!("the window is at most 7 days (--since 7d)");
    }
    if a.max_entries == 0 {
        bail!("--max-entries must be at least 1");
    }
    let live_args = LiveArgs {
        credentials: a.credentials.clone(),
        record: a.record.clone(),
        no_troubleshooter: true,
        // LiveArgs::default() has no --timeout (0 s); incidents takes live mode's default.
        timeout: crate::live::DEFAULT_TIMEOUT_SECS,
        ..LiveArgs::default()
    };
    let opts = Options::default();
    let window = Window { from, to };
    let rt = crate::live::runtime()?;
    let started = std::time::Instant::now();
    let (inc, warnings, trace, logs_json, recordings) = rt.block_on(async {
        let g = crate::live::connect(&live_args, env).await?;
        let q = IncidentQuery {
            from,
            to,
            lookback: opts.lookback,
            service: a.service.clone(),
            page_size: 1000,
            max_entries: a.max_entries,
        };
        let mut warnings: Vec<String> = Vec::new();
        let mut all: Vec<Value> = Vec::new();
        for p in &a.projects {
            let read = g
                .read_incidents(p, &q)
                .await
                .map_err(|e| anyhow!("--project: {e}: a project ID is a plain name"))?;
            match read.entries {
                Ok(Value::Array(v)) => {
                    if read.capped {
                        warnings.push(format!(
                            "project `{p}`: stopped after {} entries (--max-entries): older refusals and the changes before them were not read; narrow --since or --service, or raise --max-entries",
                            v.len()
                        ));
                    }
                    all.extend(v);
                }
                Ok(_) => {}
                Err(f) => warnings.push(format!(
                    "project `{p}`: the logs could not be read ({}){}",
                    f.summary(),
                    if f.is_permission_denied() {
                        "; it needs logging.logEntries.list (roles/logging.viewer; the Admin Activity log is in it)"
                    } else {
                        ""
                    }
                )),
            }
        }
        let logs: Vec<LogEntry> = all
            .iter()
            .filter_map(|v| serde_json::from_value(v.clone()).ok())
            .collect();
        let none = Evidence::default();
        let mut inc = incidents::analyze(&logs, window, a.service.as_deref(), &caller_of(&none), &opts);
        let mut recordings = Vec::new();
        for grp in inc.groups.iter_mut().take(a.top) {
            let (Some(project), Some(region), Some(service)) =
                (grp.project.clone(), grp.region.clone(), grp.service.clone())
            else {
                warnings.push(format!(
                    "a group of {} refusal(s) names no project, region or service; not diagnosed",
                    grp.count
                ));
                continue;
            };
            let target = Target {
                project,
                region,
                service,
            };
            if target.resource_name().is_err() {
                warnings.push(format!(
                    "the logs name an unexpected service `{}`; not diagnosed",
                    target.service
                ));
                continue;
            }
            let inputs = group_inputs(grp);
            let known = grp.newest_insert_id.as_ref().and_then(|id| {
                all.iter()
                    .find(|e| e.get("insertId").and_then(Value::as_str) == Some(id))
                    .cloned()
            });
            let query = Query {
                status: Some(grp.status),
                at: known
                    .as_ref()
                    .and_then(|e| e.get("timestamp"))
                    .and_then(Value::as_str)
                    .and_then(parse_rfc3339)
                    .or(inputs.at),
                since: None,
                known_entry: known,
                caller_config: None,
                troubleshoot: None,
            };
            let rec = g.gather(&target, &query).await?;
            let gathered = crate::live::Gathered::new(
                rec.clone(),
                target.clone(),
                inputs.clone(),
                None,
                Vec::new(),
                std::time::Duration::ZERO,
                Vec::new(),
            )?;
            let mut ev = gathered.ev;
            ev.inputs.request_ref = inputs.request_ref.clone();
            ev.inputs.status = inputs.status;
            ev.inputs.at = inputs.at;
            grp.report = Some(ipd_rules::diagnose(&ev));
            warnings.extend(rec.warnings.iter().cloned());
            recordings.push((target.service.clone(), rec));
        }
        anyhow::Ok((inc, warnings, g.client().trace(), all, recordings))
    })?;
    let mut out_warnings = Vec::new();
    if a.credentials.verbose {
        out_warnings.extend(crate::live::trace_lines(&trace, started.elapsed()));
    }
    out_warnings.extend(warnings);
    if let Some(dir) = &a.record {
        let logs = logs_json;
        let mut top = ipd_gather::Recording::default();
        top.files.insert("logs.json".into(), Value::Array(logs));
        top.redact();
        let mut n = top
            .write(dir)
            .with_context(|| format!("--record {}: cannot write", dir.display()))?
            .len();
        for (svc, rec) in &recordings {
            let sub = dir.join(SERVICES_DIR).join(svc);
            n += rec
                .write(&sub)
                .with_context(|| format!("--record {}: cannot write", sub.display()))?
                .len();
        }
        out_warnings.push(format!(
            "note: recorded {n} files in {} (replay with incidents --bundle {0} --from {} --to {})",
            dir.display(),
            ipd_model::time::fmt(&from),
            ipd_model::time::fmt(&to)
        ));
    }
    Ok(Output {
        stdout: render(&inc, a.format),
        warnings: out_warnings,
        code: exit_code(&inc),
    })
}
