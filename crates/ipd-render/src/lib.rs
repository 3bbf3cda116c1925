//! Renders a [`Report`] as text (for a terminal), JSON (the contract) or Markdown (for a
//! ticket). Pure: returns strings; the binary prints them.
//!
//! Colour comes from `colored`, whose global override the binary sets (terminal detection,
//! `NO_COLOR`, `--color`). Everything reads the same without colour.

pub mod incidents;
pub mod scan;

use std::fmt::Write;

use colored::Colorize;
use ipd_model::denial::WHAT_WOULD_CHANGE_IT;
use ipd_model::facts::Gate;
use ipd_rules::crosscheck::{Agreement, ToolIam};
use ipd_rules::report::{CheckState, Finding, FixOut, Report};
use ipd_rules::{Safety, Verdict};

/// The contract's JSON report, pretty-printed.
pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report)
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialize report: {e}\"}}"))
}

pub(crate) fn verdict_label(v: Verdict) -> String {
    let s = v.as_str();
    match v {
        Verdict::Confirmed => s.red().bold().to_string(),
        Verdict::Likely => s.yellow().bold().to_string(),
        Verdict::Possible => s.cyan().to_string(),
    }
}

/// When Cloud Run's gate visibly refused the request but no rule explains it: what to look at.
fn unexplained_gate_refusal(report: &Report) -> Option<String> {
    if !report.findings.is_empty() {
        return None;
    }
    let what = match report.request.gate {
        Gate::NotAuthenticated | Gate::EmptyAuthorization => {
            "Cloud Run's gate refused the request as not authenticated (no token, or a token whose principal lacks `run.routes.invoke`)"
        }
        Gate::NotAuthorized => "Cloud Run's gate rejected the request's token (401)",
        _ => return None,
    };
    Some(format!(
        "But {what}, and the evidence does not show why. Check that the token or caller given is the one that request carried, and whether IAM changed between the failure and the moment the policies were read (a grant made after the request hides the cause; audit logs show when). Rerun live, or add the evidence the skipped checks name."
    ))
}

fn tool_label(t: ToolIam) -> &'static str {
    match t {
        ToolIam::Granted => "granted",
        ToolIam::NotGranted => "not granted",
        ToolIam::Denied => "denied by a deny policy",
        ToolIam::Uncertain => "undecided",
    }
}

fn agreement_label(a: Agreement) -> &'static str {
    match a {
        Agreement::Agrees => "agrees",
        Agreement::Disagrees => "DISAGREES",
        Agreement::Settles => "settles what the evidence could not",
        Agreement::Inconclusive => "inconclusive",
        Agreement::Unavailable => "unavailable",
        Agreement::CannotAsk => "cannot be asked about this principal type",
    }
}

fn safety_label(s: Safety) -> &'static str {
    match s {
        Safety::Safe => "safe",
        Safety::NeedsReview => "needs review: widens access or changes config",
        Safety::HasPlaceholders => "fill in the <PLACEHOLDERS> first",
    }
}

fn indent(text: &str, by: &str) -> String {
    text.lines()
        .map(|l| format!("{by}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The human report: root cause and its fix first, then context, the other findings, the
/// checklist and the gaps.
pub fn text(report: &Report) -> String {
    text_with(report, true)
}

/// The text report; `checklist: false` leaves out CHECKLIST and GAPS (for a paste-only
/// `explain`, whose checks are all skipped for want of evidence: they stay in the JSON).
pub fn text_with(report: &Report, checklist: bool) -> String {
    let mut o = String::new();
    let no_denial = report.denial.none_in_evidence();
    if no_denial {
        let _ = writeln!(
            o,
            "{}: {}",
            "NO DENIAL IN THE EVIDENCE".green().bold(),
            report.denial.detail
        );
        let _ = writeln!(o, "{}", wrap(WHAT_WOULD_CHANGE_IT, 96));
    }
    match report.root_cause() {
        Some(f) => {
            let _ = writeln!(
                o,
                "{} ({}) {} {}: {}",
                if no_denial {
                    "WORTH A LOOK"
                } else {
                    "ROOT CAUSE"
                }
                .bold(),
                verdict_label(f.verdict),
                f.code,
                f.cause,
                f.title
            );
            if let Some(fix) = f.fixes.first() {
                let _ = writeln!(
                    o,
                    "{} ({}): {}",
                    "FIX".bold(),
                    safety_label(fix.safety),
                    fix.title
                );
                let _ = writeln!(o, "{}", indent(&fix.text, "  "));
            }
        }
        None if no_denial => {}
        None => {
            let _ = writeln!(
                o,
                "{}: nothing in the evidence explains a refusal",
                "NO CAUSE FOUND".bold()
            );
            let skipped = report
                .checks
                .iter()
                .filter(|c| c.outcome == CheckState::Skipped)
                .count();
            if skipped > 0 {
                let _ = writeln!(
                    o,
                    "{skipped} checks were skipped for lack of evidence; see CHECKLIST for what would let them decide"
                );
            }
            if let Some(hint) = unexplained_gate_refusal(report) {
                let _ = writeln!(o, "{}", wrap(&hint, 96));
            }
        }
    }
    if let Some(x) = report
        .cross_check
        .as_ref()
        .filter(|x| x.agreement == Agreement::Disagrees)
    {
        let _ = writeln!(
            o,
            "{}: Policy Troubleshooter says {} on IAM; see CROSS-CHECK",
            "WARNING".red().bold(),
            x.state.as_deref().unwrap_or("otherwise"),
        );
    }
    let _ = writeln!(o);
    context(&mut o, report);
    if let Some(f) = report.root_cause() {
        let _ = writeln!(o);
        details(&mut o, f, true);
    }
    let others: Vec<&Finding> = report.findings.iter().skip(1).collect();
    if !others.is_empty() {
        let _ = writeln!(o, "\n{}", "OTHER FINDINGS".bold());
        for f in others {
            let _ = writeln!(
                o,
                "{}. ({}) {} {}: {}",
                f.rank,
                verdict_label(f.verdict),
                f.code,
                f.cause,
                f.title
            );
            details(&mut o, f, false);
        }
    }
    if let Some(x) = &report.cross_check {
        let _ = writeln!(
            o,
            "\n{}",
            "CROSS-CHECK (Policy Troubleshooter, IAM only)".bold()
        );
        let head = match x.agreement {
            Agreement::Disagrees => "DISAGREES".red().bold().to_string(),
            Agreement::Agrees => "agrees".green().to_string(),
            Agreement::Settles => "settles what the evidence could not".to_string(),
            Agreement::Inconclusive => "inconclusive".yellow().to_string(),
            Agreement::Unavailable => "unavailable".yellow().to_string(),
            Agreement::CannotAsk => "cannot be asked about this principal type".to_string(),
        };
        let _ = writeln!(
            o,
            "  Google: {}   invoker-doctor: {}   → {head}",
            x.state.as_deref().unwrap_or("-"),
            tool_label(x.tool),
        );
        let _ = writeln!(o, "{}", indent(&wrap(&x.detail, 92), "  "));
        for b in &x.granted_by {
            let _ = writeln!(o, "  - granted by {b}");
        }
        for d in &x.denied_by {
            let _ = writeln!(o, "  - denied by {d}");
        }
    }
    if !checklist {
        return o;
    }
    let _ = writeln!(o, "\n{}", "CHECKLIST".bold());
    for c in &report.checks {
        let state = match c.outcome {
            CheckState::Fired => "fired  ".red().to_string(),
            CheckState::Passed => "passed ".green().to_string(),
            CheckState::Skipped => "skipped".yellow().to_string(),
            CheckState::NotApplicable => "n/a    ".dimmed().to_string(),
        };
        let _ = writeln!(o, "  {state} {} {}: {}", c.code, c.cause, c.reason);
    }
    if !report.gaps.is_empty() {
        let _ = writeln!(o, "\n{}", "GAPS (evidence the tool could not use)".bold());
        for g in &report.gaps {
            let state = serde_json::to_value(g.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let _ = write!(o, "  - {} ({state}): {}", g.source, g.detail);
            if let Some(p) = &g.needs_permission {
                let _ = write!(o, " [needs `{p}`]");
            }
            let _ = writeln!(o);
        }
    }
    o
}

fn context(o: &mut String, r: &Report) {
    if !r.denial.none_in_evidence() {
        let _ = writeln!(
            o,
            "denial: {} · {}",
            r.denial.state.as_str().replace('_', " "),
            r.denial.detail
        );
    }
    let t = &r.target;
    let _ = writeln!(
        o,
        "service: {} · project {} · region {}",
        t.service
            .as_deref()
            .map(|s| format!("`{s}`"))
            .unwrap_or_else(|| "unknown".into()),
        t.project
            .as_deref()
            .map(|s| format!("`{s}`"))
            .unwrap_or_else(|| "unknown".into()),
        t.region
            .as_deref()
            .map(|s| format!("`{s}`"))
            .unwrap_or_else(|| "unknown".into()),
    );
    let q = &r.request;
    let mut req = Vec::new();
    if let Some(s) = q.status {
        req.push(s.to_string());
    }
    if let Some(m) = &q.method {
        req.push(m.clone());
    }
    if let Some(u) = &q.url {
        req.push(u.clone());
    }
    if let Some(t) = &q.time {
        req.push(format!("at {t}"));
    }
    if let Some(i) = &q.log_insert_id {
        req.push(format!("(log entry {i})"));
    }
    let gate = serde_json::to_value(q.gate)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
        .unwrap_or_default();
    let _ = writeln!(
        o,
        "request: {} · gate: {gate}",
        if req.is_empty() {
            "unknown".into()
        } else {
            req.join(" ")
        }
    );
    let _ = writeln!(
        o,
        "caller: {}",
        match (&r.caller.principal, &r.caller.source) {
            (Some(p), Some(s)) => format!(
                "{p} (from {})",
                serde_json::to_value(s)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            ),
            _ => "unknown".into(),
        }
    );
    if let Some(i) = &r.caller.intent {
        let source = serde_json::to_value(i.source)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let mut line = format!("public on purpose? the owner wants it public (from {source})");
        if let Some(what) = &i.attempted {
            let _ = write!(
                line,
                "; audit entry `{}`{}{}: tried to {what}, {}",
                i.insert_id.as_deref().unwrap_or("?"),
                i.time
                    .as_deref()
                    .map(|t| format!(" at {t}"))
                    .unwrap_or_default(),
                i.principal
                    .as_deref()
                    .map(|p| format!(" by {p}"))
                    .unwrap_or_default(),
                if i.refused == Some(true) {
                    "refused"
                } else {
                    "applied"
                }
            );
        }
        let _ = writeln!(o, "{line}");
    }
    if let Some(tok) = &r.token {
        let kind = serde_json::to_value(&tok.kind)
            .ok()
            .and_then(|v| {
                v.get("kind")
                    .and_then(|k| k.as_str())
                    .map(|s| s.replace('_', " "))
            })
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "token: {kind} {} — decoded without verifying the signature",
            tok.redacted
        );
        if let Some(c) = &tok.claims {
            let mut parts = Vec::new();
            if let Some(i) = &c.iss {
                parts.push(format!("iss {i}"));
            }
            if !c.aud.is_empty() {
                parts.push(format!("aud {}", c.aud.join(",")));
            }
            if let Some(e) = &c.email {
                parts.push(format!("email {e}"));
            }
            if let Some(x) = c.exp.and_then(chrono_fmt) {
                parts.push(format!("exp {x}"));
            }
            if !parts.is_empty() {
                let _ = writeln!(o, "       {}", parts.join(" · "));
            }
        }
    }
}

fn chrono_fmt(secs: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(secs, 0).map(|t| ipd_model::time::fmt(&t))
}

fn details(o: &mut String, f: &Finding, root: bool) {
    let _ = writeln!(o, "{}", indent(&wrap(&f.explanation, 96), "   "));
    if !f.evidence.is_empty() {
        let _ = writeln!(o, "   evidence:");
        for e in &f.evidence {
            let _ = writeln!(o, "     - {e}");
        }
    }
    let fixes: Vec<&FixOut> = if root {
        f.fixes.iter().skip(1).collect()
    } else {
        f.fixes.iter().collect()
    };
    if !fixes.is_empty() {
        let _ = writeln!(o, "   {}:", if root { "more fixes" } else { "fixes" });
        for x in fixes {
            let _ = writeln!(o, "     * {} ({})", x.title, safety_label(x.safety));
            let _ = writeln!(o, "{}", indent(&x.text, "         "));
        }
    }
}

/// Wraps prose at `width` columns (words are never split).
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for w in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + w.chars().count() > width {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(w);
    }
    out.push_str(&line);
    out
}

/// Markdown for pasting into a ticket.
pub fn markdown(report: &Report) -> String {
    markdown_with(report, true)
}

/// The Markdown report; `checklist: false` leaves out the checks table and the gaps.
pub fn markdown_with(report: &Report, checklist: bool) -> String {
    let mut o = String::new();
    let t = &report.target;
    let _ = writeln!(
        o,
        "## invoker-doctor: `{}` (project `{}`, region `{}`)\n",
        t.service.as_deref().unwrap_or("unknown"),
        t.project.as_deref().unwrap_or("unknown"),
        t.region.as_deref().unwrap_or("unknown")
    );
    let no_denial = report.denial.none_in_evidence();
    if no_denial {
        let _ = writeln!(
            o,
            "**No denial in the evidence:** {}. {}\n",
            report.denial.detail, WHAT_WOULD_CHANGE_IT
        );
    } else {
        let _ = writeln!(
            o,
            "**Denial:** {} ({})\n",
            report.denial.state.as_str().replace('_', " "),
            report.denial.detail
        );
    }
    match report.root_cause() {
        Some(f) => {
            let _ = writeln!(
                o,
                "**{} ({}):** {} `{}` — {}\n",
                if no_denial {
                    "Worth a look"
                } else {
                    "Root cause"
                },
                f.verdict.as_str(),
                f.code,
                f.cause,
                f.title
            );
            let _ = writeln!(o, "{}\n", f.explanation);
            if !f.evidence.is_empty() {
                let _ = writeln!(o, "**Evidence**\n");
                for e in &f.evidence {
                    let _ = writeln!(o, "- {e}");
                }
                let _ = writeln!(o);
            }
            fixes_md(&mut o, &f.fixes);
        }
        None if no_denial => {}
        None => {
            let _ = writeln!(
                o,
                "**No cause found** in the evidence. Skipped checks below say what evidence would decide them.\n"
            );
            if let Some(hint) = unexplained_gate_refusal(report) {
                let _ = writeln!(o, "{hint}\n");
            }
        }
    }
    let q = &report.request;
    let _ = writeln!(
        o,
        "**Request:** status {} · {} {} · time {} · log entry {}  ",
        q.status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".into()),
        q.method.as_deref().unwrap_or("-"),
        q.url.as_deref().unwrap_or("-"),
        q.time.as_deref().unwrap_or("unknown"),
        q.log_insert_id.as_deref().unwrap_or("none")
    );
    let _ = writeln!(
        o,
        "**Caller:** {}  ",
        report
            .caller
            .principal
            .as_deref()
            .map(|p| format!("`{p}`"))
            .unwrap_or_else(|| "unknown".into())
    );
    if let Some(tok) = &report.token {
        let _ = writeln!(
            o,
            "**Token:** `{}` (decoded without verifying the signature)  ",
            tok.redacted
        );
    }
    let _ = writeln!(o);
    if report.findings.len() > 1 {
        let _ = writeln!(o, "### Other findings\n");
        for f in report.findings.iter().skip(1) {
            let _ = writeln!(
                o,
                "{}. **{}** {} `{}` — {}",
                f.rank,
                f.verdict.as_str(),
                f.code,
                f.cause,
                f.title
            );
        }
        let _ = writeln!(o);
    }
    if let Some(x) = &report.cross_check {
        let _ = writeln!(o, "### Cross-check: Policy Troubleshooter (IAM only)\n");
        let _ = writeln!(
            o,
            "Google: `{}` · invoker-doctor: `{}` · **{}**  ",
            x.state.as_deref().unwrap_or("-"),
            tool_label(x.tool),
            agreement_label(x.agreement)
        );
        let _ = writeln!(o, "{}\n", x.detail);
        for b in &x.granted_by {
            let _ = writeln!(o, "- granted by {b}");
        }
        for d in &x.denied_by {
            let _ = writeln!(o, "- denied by {d}");
        }
        if !(x.granted_by.is_empty() && x.denied_by.is_empty()) {
            let _ = writeln!(o);
        }
    }
    if !checklist {
        return o;
    }
    let _ = writeln!(
        o,
        "### Checks\n\n| code | cause | outcome | reason |\n|---|---|---|---|"
    );
    for c in &report.checks {
        let outcome = serde_json::to_value(c.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "| {} | `{}` | {} | {} |",
            c.code,
            c.cause,
            outcome,
            c.reason.replace('|', "\\|")
        );
    }
    if !report.gaps.is_empty() {
        let _ = writeln!(o, "\n### Gaps\n");
        for g in &report.gaps {
            let _ = writeln!(
                o,
                "- `{}`: {}{}",
                g.source,
                g.detail,
                g.needs_permission
                    .as_deref()
                    .map(|p| format!(" (needs `{p}`)"))
                    .unwrap_or_default()
            );
        }
    }
    o
}

fn fixes_md(o: &mut String, fixes: &[FixOut]) {
    if fixes.is_empty() {
        return;
    }
    let _ = writeln!(o, "**Fix**\n");
    for x in fixes {
        let lang = match x.kind {
            ipd_rules::FixKind::Gcloud => "sh",
            ipd_rules::FixKind::Terraform => "hcl",
            ipd_rules::FixKind::Yaml => "yaml",
            _ => "",
        };
        let _ = writeln!(o, "- {} _({})_", x.title, safety_label(x.safety));
        if lang.is_empty() {
            let _ = writeln!(o, "\n  {}\n", x.text);
        } else {
            let _ = writeln!(o, "\n  ```{lang}\n{}\n  ```\n", indent(&x.text, "  "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_keeps_words() {
        assert_eq!(wrap("aaa bbb ccc", 7), "aaa bbb\nccc");
        assert_eq!(wrap("", 7), "");
    }
}
