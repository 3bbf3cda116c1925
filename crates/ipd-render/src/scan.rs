//! Renders a [`ScanReport`]: a table sorted by verdict and severity (service, caller, cause,
//! fix), totals per cause and per project, then the gaps; JSON is the contract's `scan` report.

use std::fmt::Write;

use colored::Colorize;
use ipd_rules::scan::{ScanFinding, ScanReport};

use crate::verdict_label;

/// The contract's `scan` JSON, pretty-printed.
pub fn json(report: &ScanReport) -> String {
    serde_json::to_string_pretty(report)
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialize report: {e}\"}}"))
}

/// `projects/P/locations/R/services/S` → `P/R/S`, the short form for a table.
fn short_service(full: &str) -> String {
    let path = full.strip_prefix("//run.googleapis.com/").unwrap_or(full);
    let segs: Vec<&str> = path.split('/').collect();
    match segs.as_slice() {
        ["projects", p, "locations", r, "services", s] => format!("{p}/{r}/{s}"),
        _ => path.to_string(),
    }
}

fn first_fix(f: &ScanFinding) -> String {
    f.fixes
        .first()
        .map(|x| x.text.replace('\n', " "))
        .unwrap_or_else(|| "(see the finding)".into())
}

fn pad(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n >= w {
        s.to_string()
    } else {
        format!("{s}{}", " ".repeat(w - n))
    }
}

/// Plain text for a terminal.
pub fn text(r: &ScanReport) -> String {
    let mut o = String::new();
    let t = &r.totals;
    let _ = writeln!(
        o,
        "{} {}: {} services, {} callers, {} predicted refusals ({} services meant to be public)",
        "scan".bold(),
        r.scope,
        t.services,
        t.callers,
        t.findings,
        t.meant_public
    );
    if r.findings.is_empty() {
        let _ = writeln!(
            o,
            "\nNo refusal predicted from the configuration read{}.",
            if r.gaps.is_empty() {
                ""
            } else {
                " (but see the gaps below: what was not read was not checked)"
            }
        );
    } else {
        let rows: Vec<[String; 5]> = r
            .findings
            .iter()
            .map(|f| {
                [
                    f.verdict.as_str().to_string(),
                    short_service(&f.service),
                    f.caller.clone(),
                    format!("{} ({})", f.cause, f.code),
                    first_fix(f),
                ]
            })
            .collect();
        let head = ["VERDICT", "SERVICE", "CALLER", "CAUSE", "FIX"];
        let mut w = head.map(str::len);
        for row in &rows {
            for (i, c) in row.iter().enumerate().take(4) {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{}",
            format!(
                "{}  {}  {}  {}  {}",
                pad(head[0], w[0]),
                pad(head[1], w[1]),
                pad(head[2], w[2]),
                pad(head[3], w[3]),
                head[4]
            )
            .bold()
        );
        for (row, f) in rows.iter().zip(&r.findings) {
            let verdict = verdict_label(f.verdict);
            let extra = verdict.len() - row[0].len();
            let _ = writeln!(
                o,
                "{}  {}  {}  {}  {}",
                pad(&verdict, w[0] + extra),
                pad(&row[1], w[1]),
                pad(&row[2], w[2]),
                pad(&row[3], w[3]),
                row[4]
            );
        }
        let _ = writeln!(o, "\n{}", "Per cause".bold());
        let mut causes: Vec<_> = r.by_cause.iter().collect();
        causes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (c, n) in causes {
            let _ = writeln!(o, "  {n:>5}  {c}");
        }
        let _ = writeln!(o, "\n{}", "Per project".bold());
        let mut projects: Vec<_> = r.by_project.iter().collect();
        projects.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (p, n) in projects {
            let _ = writeln!(o, "  {n:>5}  {p}");
        }
    }
    if !r.gaps.is_empty() {
        let _ = writeln!(
            o,
            "\n{}",
            "Not read (checks that needed these were skipped)".bold()
        );
        for g in &r.gaps {
            let _ = writeln!(
                o,
                "  {} [{}] {}{}",
                g.source,
                serde_json::to_value(g.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
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

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Markdown, for a ticket or a pull request.
pub fn markdown(r: &ScanReport) -> String {
    let mut o = String::new();
    let t = &r.totals;
    let _ = writeln!(o, "# invoker-doctor scan of `{}`\n", r.scope);
    let _ = writeln!(
        o,
        "{} services, {} callers, **{} predicted refusals**, {} services meant to be public.\n",
        t.services, t.callers, t.findings, t.meant_public
    );
    if !r.findings.is_empty() {
        let _ = writeln!(o, "| verdict | service | caller | cause | fix |");
        let _ = writeln!(o, "|---|---|---|---|---|");
        for f in &r.findings {
            let _ = writeln!(
                o,
                "| {} | `{}` | `{}` | {} (`{}`) | `{}` |",
                f.verdict.as_str(),
                md_cell(&short_service(&f.service)),
                md_cell(&f.caller),
                f.cause,
                f.code,
                md_cell(&first_fix(f))
            );
        }
        let _ = writeln!(o, "\n## Per cause\n");
        for (c, n) in &r.by_cause {
            let _ = writeln!(o, "- `{c}`: {n}");
        }
        let _ = writeln!(o, "\n## Per project\n");
        for (p, n) in &r.by_project {
            let _ = writeln!(o, "- `{p}`: {n}");
        }
    }
    if !r.gaps.is_empty() {
        let _ = writeln!(o, "\n## Not read\n");
        for g in &r.gaps {
            let _ = writeln!(
                o,
                "- `{}`: {}{}",
                g.source,
                md_cell(&g.detail),
                g.needs_permission
                    .as_deref()
                    .map(|p| format!(" (needs `{p}`)"))
                    .unwrap_or_default()
            );
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_are_shortened_for_the_table() {
        assert_eq!(
            short_service("//run.googleapis.com/projects/p/locations/r/services/s"),
            "p/r/s"
        );
        assert_eq!(short_service("x"), "x");
    }
}
