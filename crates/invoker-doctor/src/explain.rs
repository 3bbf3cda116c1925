//! `invoker-doctor explain PASTE`: what the paste is, what it alone shows, and the diagnosis
//! it allows together with any evidence given.

use std::io::Read;

use anyhow::{Context, Result, anyhow};
use ipd_gather::Env;
use ipd_model::paste::{NextStep, Origin, Paste, PasteObject, Recognised, recognise};
use ipd_model::token::TokenKind;
use ipd_model::{Gathered, Inputs};
use serde::Serialize;

use crate::Output;
use crate::cli::{ExplainArgs, Format};
use crate::live::Lookup;

#[derive(Debug, Serialize)]
pub struct PasteOut {
    pub kind: &'static str,
    pub summary: String,
    pub hints: Vec<String>,
}

/// Where the request a paste names was looked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Looked {
    /// Nowhere (the paste names no request, or it carries its own entry).
    Nowhere,
    /// In `--bundle`'s logs: found or not (`None` when the paste names no request).
    Bundle(Option<bool>),
    /// In Cloud Logging of `project`; `found` is false when only the service given by
    /// --region/--service was read.
    Live { project: String, found: bool },
    /// In Cloud Logging of `project`, without success.
    NotFound { project: String, since: String },
    /// Live lookup was not possible.
    Unavailable(String),
}

/// `explain PASTE`: the paste is recognised (pure, `ipd_model::paste`), then it goes through
/// the pipeline `diagnose` uses: input → evidence (a bundle, a live gathering, or only the
/// paste) → report (`ipd_rules::diagnose`) → render, with the paste's own section in front.
pub fn run(a: &ExplainArgs, stdin: &mut dyn Read, env: &Env) -> Result<Output> {
    let text = read_paste(a, stdin)?;
    let recognised = recognise(&text);
    let (inputs, named) = inputs_for(a, &recognised)?;
    let token = crate::live::token_flag(&a.case, stdin)?;
    let mut got = evidence(a, &text, &recognised, inputs, named, token, env)?;
    let report = ipd_rules::diagnose(&got.ev);
    if let Some(g) = &mut got.live {
        got.warnings.extend(g.epilogue(&a.case, &a.live)?);
    }
    let stdout = render(a, &recognised, &got.looked, &report)?;
    Ok(Output {
        stdout,
        warnings: got.warnings,
        code: crate::exit_code(&report),
    })
}

fn read_paste(a: &ExplainArgs, stdin: &mut dyn Read) -> Result<String> {
    if a.paste != "-" {
        return Ok(a.paste.clone());
    }
    let mut s = String::new();
    stdin
        .read_to_string(&mut s)
        .context("cannot read the paste from standard input")?;
    Ok(s)
}

/// The flags' facts, completed from the paste: the status it shows, whether IAP answered,
/// the request it references, when it happened; and the service it names.
fn inputs_for(a: &ExplainArgs, r: &Recognised) -> Result<(Inputs, Option<ipd_gather::Target>)> {
    let mut inputs = crate::inputs(&a.case)?;
    inputs.request_ref = r.paste.request_ref();
    inputs.iap_response = r.origin == Origin::Iap;
    if let Some(s) = r.status.filter(|s| matches!(s, 401 | 403 | 404)) {
        inputs.status = inputs.status.or(Some(s));
    }
    // A refused request's paste says when it happened (a log timestamp, a `date:` header):
    // that time selects the failing request among the logs, as --at would.
    let about_a_request = matches!(
        r.origin,
        Origin::CloudRunGate
            | Origin::Application
            | Origin::Iap
            | Origin::Ingress
            | Origin::VpcServiceControls
            | Origin::Unknown
    );
    if about_a_request && inputs.at.is_none() {
        inputs.at = r
            .identifiers
            .time
            .as_deref()
            .and_then(ipd_model::time::parse_rfc3339);
    }
    // The service the paste names, for a live lookup without --region/--service.
    let ids = &r.identifiers;
    let named = match (
        &ids.service,
        &ids.region,
        ids.project.as_ref().or(ids.project_number.as_ref()),
    ) {
        (Some(s), Some(reg), Some(p)) if about_a_request => Some(ipd_gather::Target {
            project: p.clone(),
            region: reg.clone(),
            service: s.clone(),
        }),
        _ => None,
    };
    Ok((inputs, named))
}

/// The evidence an explain diagnoses, and where the paste's request was looked for.
struct Acquired {
    ev: ipd_model::Evidence,
    warnings: Vec<String>,
    looked: Looked,
    live: Option<Box<crate::live::Gathered>>,
}

/// Evidence with nothing in it but the flags' facts: a paste-only explain.
fn only_the_paste(inputs: Inputs, why: &str) -> ipd_model::Evidence {
    ipd_model::Evidence {
        service: Gathered::missing(why),
        service_policy: Gathered::missing(why),
        project_policy: Gathered::missing(why),
        org_policies: Gathered::missing(why),
        logs: Gathered::missing(why),
        deny_policies: Gathered::missing(why),
        inputs,
        ..Default::default()
    }
}

/// `--bundle`, else a live lookup when the paste names a request or a service, else the paste
/// alone; then the paste's own token or log entry is added.
fn evidence(
    a: &ExplainArgs,
    text: &str,
    r: &Recognised,
    inputs: Inputs,
    named: Option<ipd_gather::Target>,
    token: Option<ipd_model::token::Token>,
    env: &Env,
) -> Result<Acquired> {
    let paste = &r.paste;
    let mut got = match &a.bundle {
        Some(dir) => {
            let l = ipd_model::bundle::load(dir, inputs).map_err(|e| anyhow!("{e}"))?;
            Acquired {
                ev: l.evidence,
                warnings: l.warnings,
                looked: Looked::Bundle(None),
                live: None,
            }
        }
        None => live_or_paste_only(a, text, paste, inputs, named, token.clone(), env)?,
    };
    let ev = &mut got.ev;
    match paste {
        Paste::Token(t) => ev.token = Some((**t).clone()),
        Paste::LogEntry(e) => {
            let entry = (**e).clone();
            match &mut ev.logs {
                Gathered::Present(v) => {
                    if !v
                        .iter()
                        .any(|x| x.insert_id.is_some() && x.insert_id == entry.insert_id)
                    {
                        v.push(entry);
                    }
                }
                other => *other = Gathered::Present(vec![entry]),
            }
        }
        _ => {}
    }
    if token.is_some() {
        ev.token = token;
    }
    if let Looked::Bundle(_) = got.looked {
        got.looked = Looked::Bundle(got.ev.inputs.request_ref.as_ref().map(|r| {
            got.ev.logs.present().is_some_and(|logs| {
                logs.iter()
                    .any(|e| e.insert_id.as_deref() == Some(r) || e.trace_id() == Some(r))
            })
        }));
    }
    Ok(got)
}

fn live_or_paste_only(
    a: &ExplainArgs,
    text: &str,
    paste: &Paste,
    inputs: Inputs,
    named: Option<ipd_gather::Target>,
    token: Option<ipd_model::token::Token>,
    env: &Env,
) -> Result<Acquired> {
    let (reference, entry, hint) = match paste {
        Paste::LogEntry(_) => (
            None,
            serde_json::from_str::<serde_json::Value>(text.trim().trim_start_matches('\u{feff}'))
                .ok(),
            None,
        ),
        Paste::LogsExplorerUrl { project, .. } => (paste.request_ref(), None, project.clone()),
        _ => (paste.request_ref(), None, None),
    };
    let target_given = (a.region.is_some() && a.service.is_some()) || named.is_some();
    let offline = |inputs, why: &str, looked| Acquired {
        ev: only_the_paste(inputs, why),
        warnings: vec![],
        looked,
        live: None,
    };
    if reference.is_none() && entry.is_none() && !target_given {
        return Ok(offline(
            inputs,
            "no evidence bundle given (--bundle DIR)",
            Looked::Nowhere,
        ));
    }
    let pasted = crate::live::Pasted {
        reference: reference.as_deref(),
        entry,
        project_hint: hint.as_deref(),
        token: match paste {
            Paste::Token(t) => Some(&**t),
            _ => None,
        },
        named,
    };
    Ok(
        match crate::live::explain(a, pasted, inputs.clone(), token, env)? {
            Lookup::Found {
                project,
                found_entry,
                gathered,
            } => Acquired {
                ev: gathered.ev.clone(),
                warnings: vec![],
                looked: Looked::Live {
                    project,
                    found: found_entry,
                },
                live: Some(gathered),
            },
            Lookup::NotFound { project, since } => offline(
                inputs,
                "the request was not found in Cloud Logging",
                Looked::NotFound { project, since },
            ),
            Lookup::Unavailable(reason) => offline(
                inputs,
                "no evidence: live lookup was not possible",
                Looked::Unavailable(reason),
            ),
        },
    )
}

/// The paste's section (its `paste` object in JSON), then the report. Paste-only: nothing
/// but the paste to go on, so every check is skipped; the checklist stays in the JSON and is
/// not printed.
fn render(
    a: &ExplainArgs,
    r: &Recognised,
    looked: &Looked,
    report: &ipd_rules::Report,
) -> Result<String> {
    let out = describe(&r.paste, looked);
    let mut object = PasteObject::new(r);
    object.next.extend(out.hints.iter().map(|h| NextStep {
        kind: "note",
        text: h.clone(),
    }));
    let summary = match &r.paste {
        Paste::Text | Paste::Unknown => None,
        _ => Some(out.summary.clone()),
    };
    let paste_only = a.bundle.is_none() && !matches!(looked, Looked::Live { .. });
    let with_report = !(paste_only && report.findings.is_empty());
    Ok(match a.case.format {
        Format::Json => {
            let mut v = serde_json::to_value(report).context("cannot serialize the report")?;
            if let Some(o) = v.as_object_mut() {
                o.insert(
                    "paste".into(),
                    serde_json::to_value(&object).context("cannot serialize the paste")?,
                );
            }
            let mut s = serde_json::to_string_pretty(&v).context("cannot serialize the report")?;
            s.push('\n');
            s
        }
        Format::Text => {
            let mut s = crate::paste_render::text(&object, &summary);
            if with_report {
                s.push('\n');
                s.push_str(&ipd_render::text_with(report, !paste_only));
            }
            s
        }
        Format::Markdown => {
            let mut s = crate::paste_render::markdown(&object, &summary);
            if with_report {
                s.push('\n');
                s.push_str(&ipd_render::markdown_with(report, !paste_only));
            }
            s
        }
    })
}

/// What the paste is and what it shows on its own.
pub fn describe(p: &Paste, looked: &Looked) -> PasteOut {
    let mut hints = Vec::new();
    let lookup = |hints: &mut Vec<String>| {
        match looked {
        Looked::Bundle(Some(true)) => hints.push("found in the bundle's logs.json: that entry is taken as the failing request".into()),
        Looked::Bundle(Some(false)) => hints.push("not found in the evidence's logs: pass --bundle with the logs.json of that time (gcloud logging read 'trace=\"projects/P/traces/ID\" OR insertId=\"ID\"' --format=json)".into()),
        Looked::Live { project, found: true } => hints.push(format!("found in Cloud Logging of project `{project}`: that entry is taken as the failing request, and its service was read live")),
        Looked::Live { project, found: false } => hints.push(format!("not found in Cloud Logging of project `{project}`; the service named by --region/--service was read live")),
        Looked::NotFound { project, since } => hints.push(format!("not found in Cloud Logging of project `{project}` since {since}: check the project (--project P) or look further back (--freshness 30d)")),
        Looked::Unavailable(reason) => hints.push(format!("live lookup was not possible ({reason}); what follows is what the paste alone shows")),
        Looked::Bundle(None) | Looked::Nowhere => {}
    }
    };
    let summary = match p {
        Paste::Token(t) => {
            let who = t
                .claims
                .as_ref()
                .and_then(|c| c.email.clone())
                .map(|e| format!(" for `{e}`"))
                .unwrap_or_default();
            let aud = t
                .claims
                .as_ref()
                .map(|c| c.aud.join(", "))
                .filter(|a| !a.is_empty())
                .map(|a| format!(", audience `{a}`"))
                .unwrap_or_default();
            match &t.kind {
                TokenKind::GoogleIdToken => {
                    hints.push("Cloud Run accepts it only if `aud` is a URL or custom audience of the service and it has not expired; its principal then needs `run.routes.invoke` (pass --bundle to check both)".into());
                    format!(
                        "a Google ID token{who}{aud} ({}; decoded without verifying the signature)",
                        t.raw.redacted()
                    )
                }
                TokenKind::AccessToken => {
                    hints.push("Cloud Run refuses access tokens with 401: send an ID token (gcloud auth print-identity-token)".into());
                    format!(
                        "an OAuth access token ({}), not an ID token",
                        t.raw.redacted()
                    )
                }
                TokenKind::FirebaseIdToken { project } => {
                    hints.push("Cloud Run's invoker check refuses Firebase tokens with 401: send a Google ID token (in X-Serverless-Authorization if the app needs its own token)".into());
                    format!(
                        "a Firebase Authentication ID token for project `{project}`{who} ({})",
                        t.raw.redacted()
                    )
                }
                TokenKind::OtherIssuer { issuer } => {
                    hints
                        .push("only Google-signed ID tokens pass Cloud Run's invoker check".into());
                    format!(
                        "a JWT from issuer `{}` ({})",
                        issuer.as_deref().unwrap_or("none"),
                        t.raw.redacted()
                    )
                }
                TokenKind::Malformed { reason } => {
                    format!("a token that is not a valid JWT: {reason}")
                }
                TokenKind::Multiple { count } => {
                    format!("{count} tokens in one value; Cloud Run needs exactly one")
                }
                TokenKind::RefreshToken => {
                    "an OAuth refresh token, which is never a bearer token".into()
                }
                TokenKind::Empty => "an empty token".into(),
            }
        }
        Paste::LogEntry(e) => {
            format!(
                "a Cloud Logging entry `{}`: {} {} → {}",
                e.insert_id.as_deref().unwrap_or("?"),
                e.method().unwrap_or("?"),
                e.url().unwrap_or("?"),
                e.status()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "?".into())
            )
        }
        Paste::TraceId(t) => {
            lookup(&mut hints);
            format!("a trace ID `{t}`")
        }
        Paste::TraceContext { trace, .. } => {
            lookup(&mut hints);
            format!("an X-Cloud-Trace-Context value (trace `{trace}`)")
        }
        Paste::InsertId(i) => {
            lookup(&mut hints);
            format!("a log entry insertId `{i}`")
        }
        Paste::LogsExplorerUrl { project, query } => {
            lookup(&mut hints);
            format!(
                "a Logs Explorer URL (project `{}`, query `{}`)",
                project.as_deref().unwrap_or("?"),
                query.as_deref().unwrap_or("")
            )
        }
        Paste::Text | Paste::Unknown => "text".into(),
    };
    if !matches!(
        p,
        Paste::TraceId(_)
            | Paste::TraceContext { .. }
            | Paste::InsertId(_)
            | Paste::LogsExplorerUrl { .. }
    ) {
        match looked {
            Looked::Live { project, .. } => hints.push(format!(
                "the service was read live from project `{project}`"
            )),
            Looked::Unavailable(reason) => hints.push(format!(
                "live lookup was not possible ({reason}); what follows is what the paste alone shows"
            )),
            _ => {}
        }
    }
    PasteOut {
        kind: p.kind(),
        summary,
        hints,
    }
}
