//! Live mode: gather the evidence from Google Cloud APIs (through `ipd-gather`), diagnose it
//! with the same engine as a bundle, optionally record it as a bundle.

use std::io::Read;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use ipd_gather::{
    Ask, AuthOptions, CallRecord, CallerConfigRef, Env, Gatherer, Query, Recording, Settings,
    Target,
};
use ipd_model::token::Token;
use ipd_model::{Evidence, Inputs};
use serde_json::Value;

use crate::Output;
use crate::cli::{CaseArgs, DiagnoseArgs, LiveArgs};

/// `30m`, `6h`, `1d`, `2w`, `90s` (gcloud's `--freshness` spelling).
pub fn parse_freshness(s: &str) -> Result<chrono::Duration> {
    let t = s.trim();
    let bad = || anyhow!("--freshness: `{s}` is not a duration such as 30m, 6h, 1d or 7d");
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: i64 = num.parse().map_err(|_| bad())?;
    let d = match unit {
        "s" => chrono::Duration::try_seconds(n),
        "m" => chrono::Duration::try_minutes(n),
        "h" => chrono::Duration::try_hours(n),
        "d" => chrono::Duration::try_days(n),
        "w" => chrono::Duration::try_weeks(n),
        _ => None,
    }
    .ok_or_else(bad)?;
    if n <= 0 || d > chrono::Duration::days(400) {
        bail!("--freshness: `{s}` must be between 1s and 400d");
    }
    Ok(d)
}

fn auth_options(l: &LiveArgs) -> AuthOptions {
    credentials_auth(&l.credentials)
}

/// The credentials options of every live command, as the gatherer takes them.
pub(crate) fn credentials_auth(c: &crate::cli::CredentialArgs) -> AuthOptions {
    AuthOptions {
        access_token_file: c.access_token_file.clone(),
        impersonate_service_account: c.impersonate_service_account.clone(),
    }
}

/// A single-threaded runtime: the work is waiting on the network, not computing.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `--timeout`'s default: a call's slowest retry schedule when every attempt takes a few
/// seconds (4 attempts of up to 5 s, 1.75 s of backoff), plus a few seconds for the rest of the
/// run. Retry-After waits that would pass it are not waited.
pub const DEFAULT_TIMEOUT_SECS: f64 = 25.0;

pub fn parse_timeout(s: &str) -> std::result::Result<f64, String> {
    match s.trim().trim_end_matches('s').parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 3600.0 => Ok(v),
        _ => Err(format!(
            "`{s}` is not a number of seconds between 0 and 3600 (e.g. 30 or 2.5)"
        )),
    }
}

/// Connects and checks the credentials (a start error when there are none). Every call of the
/// gatherer ends by `--timeout` from here.
pub(crate) async fn connect(l: &LiveArgs, env: &Env) -> Result<Gatherer> {
    // 0: not given (a `LiveArgs::default()` built by another command), the default bound.
    let secs = if l.timeout > 0.0 {
        l.timeout
    } else {
        DEFAULT_TIMEOUT_SECS
    };
    let limit = std::time::Duration::from_secs_f64(secs);
    let retry = ipd_gather::RetryPolicy {
        deadline: Some(limit),
        ..ipd_gather::RetryPolicy::default()
    };
    let settings = Settings {
        ancestry_cache: env.cache_dir(),
        ..Settings::default()
    };
    let g = Gatherer::connect_with(&auth_options(l), env, settings, retry)?;
    match tokio::time::timeout(limit, g.client().auth().check()).await {
        Ok(r) => r?,
        Err(_) => anyhow::bail!(
            "no access token within --timeout ({secs} s): the credentials' token endpoint did not answer"
        ),
    }
    Ok(g)
}

/// The caller's token from `--token`, read before any network call so that a bad value is a
/// usage error.
pub(crate) fn token_flag(c: &CaseArgs, stdin: &mut dyn Read) -> Result<Option<Token>> {
    let mut scratch = Evidence::default();
    crate::apply_token_flag(&mut scratch, c, stdin)?;
    Ok(scratch.token)
}

/// The project when `--project` is not given: gcloud's default.
fn default_project(env: &Env, notes: &mut Vec<String>) -> Option<String> {
    let (p, from) = env.gcloud_default_project()?;
    notes.push(format!("note: using project `{p}` from {from}"));
    Some(p)
}

/// `invoker-doctor diagnose --project P --region R --service S` / `--url URL`.
pub fn diagnose(d: &DiagnoseArgs, stdin: &mut dyn Read, env: &Env) -> Result<Output> {
    let mut inputs = crate::inputs(&d.case)?;
    let token = token_flag(&d.case, stdin)?;
    let caller_config = d
        .caller_config
        .as_deref()
        .map(CallerConfigRef::parse)
        .transpose()
        .map_err(|e| anyhow!("--caller-config: {e}"))?;
    let freshness = d
        .live
        .freshness
        .as_deref()
        .map(parse_freshness)
        .transpose()?;
    if d.url.is_none() && (d.region.is_none() || d.service.is_none()) {
        bail!(
            "live mode needs --region R and --service S (with --project P, or gcloud's default project), or --url URL"
        );
    }
    let mut notes: Vec<String> = Vec::new();
    // A deterministic URL names its project (by number); gcloud's default project is only a
    // fallback when nothing else does.
    let url_project = d
        .url
        .as_deref()
        .and_then(ipd_gather::parse_run_url)
        .map(|(_, number, _)| number);
    let project_flag = match (&d.project, &url_project) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(n)) => Some(n.clone()),
        (None, None) => default_project(env, &mut notes),
    };
    let rt = runtime()?;
    let (rec, target, trace, wall) = rt.block_on(async {
        let g = connect(&d.live, env).await?;
        let target = match (&d.url, &d.region, &d.service) {
            // Everything named: the URL only says which request failed.
            (Some(_), Some(r), Some(s)) => Target {
                project: project_flag
                    .clone()
                    .ok_or_else(|| anyhow!("no project: pass --project P"))?,
                region: r.clone(),
                service: s.clone(),
            },
            (Some(url), _, _) => {
                let mut t = g
                    .resolve_url(url, project_flag.as_deref(), d.region.as_deref())
                    .await?;
                if let Some(s) = &d.service {
                    t.service = s.clone();
                }
                t
            }
            (None, _, _) => Target {
                project: project_flag.clone().ok_or_else(|| {
                    anyhow!("no project: pass --project P (or set one with `gcloud config set project P`)")
                })?,
                region: d.region.clone().unwrap_or_default(),
                service: d.service.clone().unwrap_or_default(),
            },
        };
        target
            .resource_name()
            .map_err(|e| anyhow!("{e}: project, region and service must be plain names"))?;
        if d.live.as_me {
            inputs.caller = as_me(&g).await?;
        }
        let started = std::time::Instant::now();
        let q = Query {
            status: inputs.status,
            at: inputs.at,
            since: freshness.map(|f| chrono::Utc::now() - f),
            known_entry: None,
            caller_config,
            troubleshoot: (!d.live.no_troubleshooter).then(|| Ask {
                inputs: inputs.clone(),
                token: token.clone(),
            }),
        };
        let rec = g.gather(&target, &q).await?;
        anyhow::Ok((rec, target, g.client().trace(), started.elapsed()))
    })?;
    let request_url = d.url.clone().filter(|u| names_a_request(u));
    let mut g = Gathered::new(rec, target, inputs, token, trace, wall, notes)?;
    g.set_request_url(request_url);
    if !d.live.no_troubleshooter {
        g.mark_unaskable_caller();
    }
    let report = ipd_rules::diagnose(&g.ev);
    let warnings = g.epilogue(&d.case, &d.live)?;
    Ok(Output {
        stdout: crate::render(&report, d.case.format),
        warnings,
        code: crate::exit_code(&report),
    })
}

/// A URL with a path or query names the request that failed, not only the service.
/// `--as-me`: the credentials' principal. Bad credentials stop the run (nothing else can be
/// read with them); a tokeninfo that cannot answer (refused, unavailable, garbage) is a
/// warning, and the diagnosis goes on without a caller.
async fn as_me(g: &Gatherer) -> Result<Option<String>, ipd_gather::WhoamiError> {
    match g.whoami().await {
        Ok(p) => Ok(Some(p)),
        Err(e) if e.1 == ipd_gather::WhoamiFailure::Unanswered => {
            eprintln!("warning: {e}; diagnosing without a caller");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn names_a_request(url: &str) -> bool {
    let rest = url.trim().split_once("://").map(|(_, r)| r).unwrap_or(url);
    match rest.find(['/', '?']) {
        Some(i) => {
            let tail = &rest[i..];
            !tail.is_empty() && tail != "/"
        }
        None => false,
    }
}

/// A live gathering turned into evidence, with what is left to say and record.
pub(crate) struct Gathered {
    pub ev: Evidence,
    rec: Recording,
    inputs: Inputs,
    token: Option<Token>,
    trace: Vec<CallRecord>,
    wall: Duration,
    /// Warnings and notes so far (gcloud default project, recording and parsing warnings).
    warnings: Vec<String>,
    /// The URL the client called, when given (`--url` with a path).
    request_url: Option<String>,
}

impl Gathered {
    /// When the caller is a principal type Policy Troubleshooter takes no question about (a
    /// group, a federated or agent identity, a principal set), nothing was asked; the
    /// cross-check says so rather than staying silent.
    pub(crate) fn mark_unaskable_caller(&mut self) {
        if self.ev.troubleshoot.is_some() {
            return;
        }
        let facts = ipd_model::facts::Facts::derive(&self.ev);
        if let Some(c) = facts.caller.filter(|c| !c.public)
            && c.principal.troubleshooter_email().is_none()
        {
            self.ev.troubleshoot = Some(ipd_model::Gathered::Missing {
                why: "not asked: Policy Troubleshooter cannot be asked about this principal type"
                    .into(),
            });
        }
    }

    pub(crate) fn new(
        rec: Recording,
        target: Target,
        mut inputs: Inputs,
        token: Option<Token>,
        trace: Vec<CallRecord>,
        wall: Duration,
        notes: Vec<String>,
    ) -> Result<Gathered> {
        // A project number (from a URL) reads worse in fix commands than the ID.
        let is_number = target.project.chars().all(|c| c.is_ascii_digit());
        inputs.project = match (&rec.project_id, is_number) {
            (Some(id), true) => Some(id.clone()),
            _ => Some(target.project.clone()),
        };
        inputs.region = Some(target.region.clone());
        inputs.service = Some(target.service.clone());
        let loaded = rec
            .evidence(inputs.clone())
            .map_err(|e| anyhow!("an API answer could not be read: {e}"))?;
        let mut ev = loaded.evidence;
        if token.is_some() {
            ev.token = token.clone();
        }
        let mut warnings = notes;
        warnings.extend(rec.warnings.iter().cloned());
        warnings.extend(loaded.warnings);
        Ok(Gathered {
            ev,
            rec,
            inputs,
            token,
            trace,
            wall,
            warnings,
            request_url: None,
        })
    }

    /// The URL the client called: a fact for the rules (IAM conditions on `request.path`),
    /// as `context.json`'s `request.url` is in a bundle.
    pub(crate) fn set_request_url(&mut self, url: Option<String>) {
        if let Some(u) = &url {
            self.ev.context = Some(ipd_model::context::Context {
                caller: None,
                expect_public: None,
                request: Some(ipd_model::context::RequestContext {
                    url: Some(u.clone()),
                    method: None,
                    status: None,
                    time: None,
                }),
            });
        }
        self.request_url = url;
    }

    /// `-v` lines, warnings, and `--record`. Returns the lines for stderr.
    pub(crate) fn epilogue(&mut self, case: &CaseArgs, live: &LiveArgs) -> Result<Vec<String>> {
        let mut out = Vec::new();
        if live.credentials.verbose {
            out.extend(trace_lines(&self.trace, self.wall));
            out.extend(self.rec.notes.iter().map(|n| format!("note: {n}")));
        }
        out.append(&mut self.warnings);
        if let Some(dir) = &live.record {
            let caller = self.inputs.caller.clone().or_else(|| {
                self.token
                    .as_ref()
                    .and_then(|t| t.principal())
                    .map(|p| p.to_string())
            });
            self.rec.set_context(
                caller.as_deref(),
                self.inputs.expect_public,
                self.inputs.status,
                case.at.as_deref(),
                self.request_url.as_deref(),
            );
            let written = self
                .rec
                .write(dir)
                .with_context(|| format!("--record {}: cannot write the bundle", dir.display()))?;
            out.push(format!(
                "note: recorded {} files in {}{}",
                written.len(),
                dir.display(),
                if self.token.is_some() {
                    "; tokens are never recorded: pass the same --token when replaying it with --bundle"
                } else {
                    ""
                }
            ));
        }
        Ok(out)
    }
}

/// `-v`: every call, in start order, then the totals. No URL, header or token is shown.
pub fn trace_lines(trace: &[CallRecord], wall: Duration) -> Vec<String> {
    let mut t = trace.to_vec();
    t.sort_by_key(|c| c.start);
    let origin = t.first().map(|c| c.start).unwrap_or_default();
    let mut out = Vec::new();
    for c in &t {
        let status = c
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "---".into());
        let mut line = format!(
            "note: call +{:>6.3}s {:>6.3}s {status} {} {}",
            c.start.saturating_sub(origin).as_secs_f64(),
            c.elapsed.as_secs_f64(),
            c.method,
            c.subject
        );
        if c.attempts > 1 || !c.notes.is_empty() {
            line.push_str(&format!(
                " [{} attempts: {}]",
                c.attempts,
                c.notes.join("; ")
            ));
        }
        line.push_str(&format!(" (chain {})", c.chain));
        out.push(line);
    }
    let chain = t.iter().map(|c| c.chain).max().unwrap_or(0);
    out.push(format!(
        "note: {} API calls in {:.3} s; longest chain of dependent calls: {chain}",
        t.len(),
        wall.as_secs_f64()
    ));
    out
}

/// A gathering done for `explain`: the recording, its target and inputs, whether the request's
/// entry was found, the call trace and the wall time.
type LiveStep = (Recording, Target, Inputs, bool, Vec<CallRecord>, Duration);

/// What a live `explain` found, or why it could not look.
pub(crate) enum Lookup {
    /// The request was looked up (or given as a LogEntry) and its service gathered.
    Found {
        project: String,
        found_entry: bool,
        gathered: Box<Gathered>,
    },
    /// Looked, but the reference is not in the logs of `project`.
    NotFound { project: String, since: String },
    /// Live lookup was not possible (no credentials, no project, refused).
    Unavailable(String),
}

/// The target a log entry names (`resource.labels`, the project also from `logName`).
pub(crate) fn target_of_entry(e: &Value) -> Option<Target> {
    let l = |k: &str| {
        e.pointer(&format!("/resource/labels/{k}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let project = l("project_id").or_else(|| {
        e.get("logName")
            .and_then(Value::as_str)
            .and_then(|n| n.strip_prefix("projects/"))
            .and_then(|r| r.split('/').next())
            .map(str::to_string)
    })?;
    Some(Target {
        project,
        region: l("location")?,
        service: l("service_name")?,
    })
}

/// What a paste gives live `explain`.
pub(crate) struct Pasted<'a> {
    /// A trace ID or insertId to look up.
    pub reference: Option<&'a str>,
    /// A pasted LogEntry.
    pub entry: Option<Value>,
    /// The project a Logs Explorer URL names.
    pub project_hint: Option<&'a str>,
    /// A pasted token: whose it is says who the caller is (Policy Troubleshooter is asked
    /// about them); `explain` puts it on the evidence itself.
    pub token: Option<&'a Token>,
    /// The service the paste itself names (a run.app URL, resource names): the target when
    /// --region and --service are not given.
    pub named: Option<Target>,
}

/// Live `explain`: find the request in Cloud Logging (`reference`: a trace ID or insertId),
/// or take the pasted `entry`, derive its service, gather, and hand back the evidence.
/// `project_hint` is the project a Logs Explorer URL names.
pub(crate) fn explain(
    a: &crate::cli::ExplainArgs,
    pasted: Pasted<'_>,
    inputs: Inputs,
    token: Option<Token>,
    env: &Env,
) -> Result<Lookup> {
    let Pasted {
        reference,
        entry,
        project_hint,
        token: pasted_token,
        named,
    } = pasted;
    let freshness = match a.live.freshness.as_deref() {
        Some(f) => parse_freshness(f)?,
        None => chrono::Duration::days(7),
    };
    let mut notes = Vec::new();
    let project = a
        .project
        .clone()
        .or_else(|| project_hint.map(str::to_string))
        .or_else(|| entry.as_ref().and_then(target_of_entry).map(|t| t.project))
        .or_else(|| named.as_ref().map(|t| t.project.clone()))
        .or_else(|| default_project(env, &mut notes));
    let explicit_target = match (&a.region, &a.service) {
        (Some(r), Some(s)) => project.clone().map(|p| Target {
            project: p,
            region: r.clone(),
            service: s.clone(),
        }),
        _ => named.filter(|n| Some(&n.project) == project.as_ref()),
    };
    if reference.is_none() && entry.is_none() && explicit_target.is_none() {
        return Ok(Lookup::Unavailable(
            "the paste names no request: pass --project, --region and --service to check it against the live service".into(),
        ));
    }
    let Some(project) = project else {
        return Ok(Lookup::Unavailable(
            "no project: pass --project P (or set gcloud's default project)".into(),
        ));
    };
    let since = chrono::Utc::now() - freshness;
    let rt = runtime()?;
    let step: std::result::Result<Option<LiveStep>, String> =
        rt.block_on(async {
            let g = connect(&a.live, env).await.map_err(|e| format!("{e:#}"))?;
            let started = std::time::Instant::now();
            let found = match (&entry, reference) {
                (Some(e), _) => Some(e.clone()),
                (None, Some(r)) => g.find_entry(&project, r, since).await.map_err(|f| {
                    format!(
                        "reading the logs of project `{project}` failed: {}",
                        f.summary()
                    )
                })?,
                (None, None) => None,
            };
            let target = match (explicit_target.clone(), found.as_ref().and_then(target_of_entry)) {
                (Some(t), _) | (None, Some(t)) => t,
                (None, None) if found.is_some() => {
                    return Err(
                        "the log entry names no Cloud Run service (resource.labels): pass --region and --service".into(),
                    );
                }
                (None, None) => return Ok(None),
            };
            target.resource_name().map_err(|_| {
                format!(
                    "`{}/{}/{}` is not a valid project/region/service",
                    target.project, target.region, target.service
                )
            })?;
            let mut inputs = inputs.clone();
            if a.live.as_me {
                inputs.caller = as_me(&g).await.map_err(|e| e.to_string())?;
            }
            let at_entry = found
                .as_ref()
                .and_then(|e| e.get("timestamp"))
                .and_then(Value::as_str)
                .and_then(ipd_model::time::parse_rfc3339);
            let q = Query {
                status: inputs.status,
                at: inputs.at.or(at_entry),
                since: Some(since),
                known_entry: found.clone(),
                caller_config: None,
                // --token outranks a pasted token, as on the evidence.
                troubleshoot: (!a.live.no_troubleshooter).then(|| Ask {
                    inputs: inputs.clone(),
                    token: token.as_ref().or(pasted_token).cloned(),
                }),
            };
            let rec = g.gather(&target, &q).await.map_err(|e| e.to_string())?;
            Ok(Some((
                rec,
                target,
                inputs,
                found.is_some(),
                g.client().trace(),
                started.elapsed(),
            )))
        });
    match step {
        Err(reason) => Ok(Lookup::Unavailable(reason)),
        Ok(None) => Ok(Lookup::NotFound {
            project,
            since: ipd_model::time::fmt(&since),
        }),
        Ok(Some((rec, target, inputs, found_entry, trace, wall))) => {
            let mut gathered = Gathered::new(rec, target, inputs, token, trace, wall, notes)?;
            if !a.live.no_troubleshooter {
                gathered.mark_unaskable_caller();
            }
            Ok(Lookup::Found {
                project,
                found_entry,
                gathered: Box::new(gathered),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness() {
        assert_eq!(
            parse_freshness("30m").ok(),
            Some(chrono::Duration::minutes(30))
        );
        assert_eq!(parse_freshness("7d").ok(), Some(chrono::Duration::days(7)));
        for bad in ["", "d", "7", "7y", "0h", "-1d", "999d"] {
            assert!(parse_freshness(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_that_name_a_request() {
        assert!(names_a_request("https://s-1.r.run.app/v1/orders"));
        assert!(names_a_request("https://s-1.r.run.app?x=1"));
        assert!(!names_a_request("https://s-1.r.run.app"));
        assert!(!names_a_request("https://s-1.r.run.app/"));
    }

    #[test]
    fn entry_target() {
        let e = serde_json::json!({"logName": "projects/p/logs/x", "resource": {"labels": {"location": "r", "service_name": "s"}}});
        assert_eq!(
            target_of_entry(&e),
            Some(Target {
                project: "p".into(),
                region: "r".into(),
                service: "s".into()
            })
        );
        assert_eq!(target_of_entry(&serde_json::json!({})), None);
    }
}
