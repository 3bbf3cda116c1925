//! Renderings of an [`Incidents`] analysis: text (a sparkline per group), JSON (the contract's
//! `incidents` object), Markdown, and one self-contained HTML page (inline CSS and SVG, no
//! script, no external asset) with each group's refusals per minute, the onset and the
//! candidate changes marked and labelled on the time axis, and the diagnosis under it.

use std::fmt::Write;

use colored::Colorize;
use ipd_model::time::{Timestamp, fmt, parse_rfc3339};
use ipd_rules::incidents::{Group, Incidents};

/// Colours of the HTML chart (a test looks for them in a screenshot).
pub const BAR_COLOUR: &str = "#d93025";
pub const ONSET_COLOUR: &str = "#1a73e8";
pub const CHANGE_COLOUR: &str = "#f9ab00";

/// The contract's JSON, pretty-printed.
pub fn json(inc: &Incidents) -> String {
    serde_json::to_string_pretty(inc)
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialize incidents: {e}\"}}"))
}

const BLOCKS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The series squeezed into at most `width` columns (sums per column), as block characters;
/// a column with any refusal shows at least `▁`.
pub fn sparkline(series: &[(String, usize)], width: usize) -> String {
    if series.is_empty() || width == 0 {
        return String::new();
    }
    let per = series.len().div_ceil(width);
    let cols: Vec<usize> = series
        .chunks(per)
        .map(|c| c.iter().map(|(_, n)| n).sum())
        .collect();
    let max = cols.iter().copied().max().unwrap_or(0);
    cols.iter()
        .map(|&n| {
            if n == 0 || max == 0 {
                BLOCKS[0]
            } else {
                BLOCKS[(1 + (n * 7) / max).min(8)]
            }
        })
        .collect()
}

fn hm(t: &Timestamp) -> String {
    t.format("%H:%M:%S").to_string()
}

fn where_(g: &Group) -> String {
    format!(
        "{} ({}/{})",
        g.service.as_deref().unwrap_or("unknown service"),
        g.project.as_deref().unwrap_or("?"),
        g.region.as_deref().unwrap_or("?")
    )
}

fn nothing_changed(lookback_min: i64) -> String {
    format!(
        "Nothing in the Admin Activity log in the {lookback_min} minutes before the onset explains it: no IAM, service, service-account, org-policy or deny-policy change. The cause is on the caller's side: its token, its audience, or a new client."
    )
}

/// The minutes of the lookback, as used in the analysis (for the sentence above).
pub const LOOKBACK_MINUTES: i64 = 30;

/// The text report: one block per group, largest first.
pub fn text(inc: &Incidents) -> String {
    let mut o = String::new();
    let total: usize = inc.groups.iter().map(|g| g.count).sum();
    let _ = writeln!(
        o,
        "{} {} → {}: {} group(s), {total} refusal(s), {} Admin Activity change(s) in the logs, {} entries read",
        "INCIDENTS".bold(),
        fmt(&inc.window.from),
        fmt(&inc.window.to),
        inc.groups.len(),
        inc.changes_seen,
        inc.entries_read
    );
    if inc.groups.is_empty() {
        let _ = writeln!(
            o,
            "No refusal by Cloud Run's gate, IAP or VPC Service Controls in the window, and no change that closes a service to the internet."
        );
        return o;
    }
    for (i, g) in inc.groups.iter().enumerate() {
        let _ = writeln!(
            o,
            "\n{} {}: {} {}, caller {}",
            format!("[{}]", i + 1).bold(),
            where_(g).bold(),
            g.status,
            g.gate.as_str(),
            g.caller_hint
        );
        if g.logged {
            let _ = writeln!(
                o,
                "    {} refusal(s), {} → {}, onset {}{}",
                g.count,
                g.first.as_ref().map(hm).unwrap_or_default(),
                g.last.as_ref().map(hm).unwrap_or_default(),
                fmt(&g.onset),
                if g.onset_at_window_start {
                    " (refusing since the window's start: the onset may be earlier; widen --since)"
                } else {
                    ""
                }
            );
            let _ = writeln!(o, "    |{}|", sparkline(&g.per_minute, 60));
        } else {
            let _ = writeln!(
                o,
                "    refusals not logged (Cloud Run never logs a request its ingress refuses); onset {} = the change",
                fmt(&g.onset)
            );
        }
        if g.changes.is_empty() {
            let _ = writeln!(o, "    {}", nothing_changed(LOOKBACK_MINUTES));
        }
        for c in &g.changes {
            let _ = writeln!(
                o,
                "    {} {:.2} {} ({} min before onset) {} by {}: {}",
                "CHANGE".yellow().bold(),
                c.score,
                c.time.as_ref().map(hm).unwrap_or_else(|| "?".into()),
                c.minutes_before_onset,
                c.method,
                c.principal.as_deref().unwrap_or("?"),
                c.summary
            );
        }
        match &g.report {
            Some(r) => match r.root_cause() {
                Some(f) => {
                    let _ = writeln!(
                        o,
                        "    {} ({}) {} {}: {}",
                        "ROOT CAUSE".bold(),
                        f.verdict.as_str(),
                        f.code,
                        f.cause,
                        f.title
                    );
                    if let Some(fix) = f.fixes.first() {
                        let _ = writeln!(o, "    {}: {}", "FIX".bold(), fix.title);
                        for l in fix.text.lines() {
                            let _ = writeln!(o, "      {l}");
                        }
                    }
                }
                None => {
                    let _ = writeln!(
                        o,
                        "    NO CAUSE FOUND by the diagnosis of the newest refusal ({} gap(s) in its evidence)",
                        r.gaps.len()
                    );
                }
            },
            None => {
                let _ = writeln!(o, "    (not diagnosed: only the top groups are)");
            }
        }
    }
    o
}

/// Markdown for a ticket.
pub fn markdown(inc: &Incidents) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "## invoker-doctor incidents: {} → {}\n",
        fmt(&inc.window.from),
        fmt(&inc.window.to)
    );
    let _ = writeln!(
        o,
        "| # | service | status | gate | caller | refusals | onset | top change | root cause |\n|---|---|---|---|---|---|---|---|---|"
    );
    for (i, g) in inc.groups.iter().enumerate() {
        let top = g
            .changes
            .first()
            .map(|c| format!("{} ({:.2})", c.summary.replace('|', "\\|"), c.score))
            .unwrap_or_else(|| "none in the Admin Activity log".into());
        let rc = g
            .report
            .as_ref()
            .and_then(|r| r.root_cause())
            .map(|f| format!("`{}` ({})", f.cause, f.verdict.as_str()))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            o,
            "| {} | `{}` | {} | {} | {} | {} | {} | {} | {} |",
            i + 1,
            g.service.as_deref().unwrap_or("?"),
            g.status,
            g.gate.as_str(),
            g.caller_hint.replace('|', "\\|"),
            if g.logged {
                g.count.to_string()
            } else {
                "not logged".into()
            },
            fmt(&g.onset),
            top,
            rc
        );
    }
    for (i, g) in inc.groups.iter().enumerate() {
        let _ = writeln!(o, "\n### {}. `{}`\n", i + 1, where_(g));
        if g.logged {
            let _ = writeln!(o, "`{}`\n", sparkline(&g.per_minute, 60));
        }
        if g.changes.is_empty() {
            let _ = writeln!(o, "{}\n", nothing_changed(LOOKBACK_MINUTES));
        }
        for c in &g.changes {
            let _ = writeln!(
                o,
                "- **{:.2}** {} `{}` by `{}`: {}",
                c.score,
                c.time.as_ref().map(fmt).unwrap_or_default(),
                c.method,
                c.principal.as_deref().unwrap_or("?"),
                c.summary
            );
        }
        if let Some(r) = &g.report {
            let _ = writeln!(o, "\n{}", crate::markdown(r).replace("\n## ", "\n#### "));
        }
    }
    o
}

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const W: f64 = 900.0;
const H: f64 = 230.0;
const LEFT: f64 = 50.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 60.0;
const BOTTOM: f64 = 40.0;

fn chart(inc: &Incidents, g: &Group, idx: usize) -> String {
    let mut s = String::new();
    let from = inc.window.from.timestamp() as f64;
    let to = (inc.window.to.timestamp() as f64).max(from + 60.0);
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x = |t: f64| LEFT + (t - from) / (to - from) * pw;
    let max = g
        .per_minute
        .iter()
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(0)
        .max(1);
    let _ = write!(
        s,
        r#"<svg class="chart" id="chart-{idx}" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="refusals per minute">"#
    );
    let _ = write!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ccc"/>"##
    );
    let bw = (pw / g.per_minute.len().max(1) as f64).max(1.0);
    for (m, n) in &g.per_minute {
        if *n == 0 {
            continue;
        }
        let Some(t) = parse_rfc3339(m) else { continue };
        let h = (*n as f64) / (max as f64) * ph;
        let _ = write!(
            s,
            r#"<rect class="bar" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{BAR_COLOUR}"><title>{} {n}</title></rect>"#,
            x(t.timestamp() as f64),
            TOP + ph - h,
            bw,
            h,
            esc(m)
        );
    }
    // Time axis: a tick every tenth of the window.
    for k in 0..=10 {
        let t = from + (to - from) * f64::from(k) / 10.0;
        let xt = x(t);
        let label = chrono::DateTime::from_timestamp(t as i64, 0)
            .map(|d| d.format("%H:%M").to_string())
            .unwrap_or_default();
        let _ = write!(
            s,
            r##"<line x1="{xt:.1}" y1="{}" x2="{xt:.1}" y2="{}" stroke="#888"/><text x="{xt:.1}" y="{}" font-size="11" text-anchor="middle" fill="#444">{label}</text>"##,
            TOP + ph,
            TOP + ph + 5.0,
            TOP + ph + 18.0
        );
    }
    let _ = write!(
        s,
        r##"<text x="{}" y="{}" font-size="11" text-anchor="end" fill="#444">{max}/min</text>"##,
        LEFT - 4.0,
        TOP + 10.0
    );
    // Candidate changes, then the onset (drawn last, on top).
    for (i, c) in g.changes.iter().enumerate().take(5) {
        let Some(t) = c.time else { continue };
        let xc = x(t.timestamp() as f64).clamp(LEFT, W - RIGHT);
        let ly = 14.0 + 14.0 * (i % 3) as f64;
        // Near an edge the label runs inwards, so it is not cut.
        let anchor = if xc < LEFT + 90.0 {
            "start"
        } else if xc > W - RIGHT - 90.0 {
            "end"
        } else {
            "middle"
        };
        let _ = write!(
            s,
            r##"<line class="change" x1="{xc:.1}" y1="{}" x2="{xc:.1}" y2="{}" stroke="{CHANGE_COLOUR}" stroke-width="4"/><text class="change-label" x="{xc:.1}" y="{ly}" font-size="11" text-anchor="{anchor}" fill="#8a5a00">{} {} ({:.2})</text>"##,
            ly + 3.0,
            TOP + ph,
            esc(&c.method),
            hm(&t),
            c.score
        );
    }
    let xo = x(g.onset.timestamp() as f64).clamp(LEFT, W - RIGHT);
    let _ = write!(
        s,
        r#"<line class="onset" x1="{xo:.1}" y1="{}" x2="{xo:.1}" y2="{}" stroke="{ONSET_COLOUR}" stroke-width="3" stroke-dasharray="6,3"/><text class="onset-label" x="{xo:.1}" y="{}" font-size="12" font-weight="bold" text-anchor="start" fill="{ONSET_COLOUR}"> onset {}</text>"#,
        TOP - 4.0,
        TOP + ph,
        TOP + 12.0,
        hm(&g.onset)
    );
    s.push_str("</svg>");
    s
}

/// One self-contained HTML page (no script, no external reference).
pub fn html(inc: &Incidents) -> String {
    let mut o = String::new();
    let title = format!(
        "invoker-doctor incidents {} → {}",
        fmt(&inc.window.from),
        fmt(&inc.window.to)
    );
    let _ = write!(
        o,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>{}</title>
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#202124;max-width:960px}}
h1{{font-size:20px}} h2{{font-size:16px;margin-top:32px;border-top:1px solid #ddd;padding-top:16px}}
.meta{{color:#5f6368}} .nochange{{background:#e8f0fe;padding:8px;border-radius:4px}}
table{{border-collapse:collapse;font-size:13px}} td,th{{border:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}}
pre{{background:#f1f3f4;padding:8px;overflow-x:auto;white-space:pre-wrap}}
.rc{{font-weight:bold;color:#a50e0e}}
</style></head><body>
<h1>{}</h1>
<p class="meta">{} group(s), {} refusal(s), {} Admin Activity change(s), {} log entries read.</p>
"#,
        esc(&title),
        esc(&title),
        inc.groups.len(),
        inc.groups.iter().map(|g| g.count).sum::<usize>(),
        inc.changes_seen,
        inc.entries_read
    );
    if inc.groups.is_empty() {
        o.push_str("<p>No refusal in the window.</p>");
    }
    for (i, g) in inc.groups.iter().enumerate() {
        let _ = write!(
            o,
            r#"<section class="group" id="group-{i}"><h2>{}. {} — {} {} — caller {}</h2>"#,
            i + 1,
            esc(&where_(g)),
            g.status,
            esc(g.gate.as_str()),
            esc(&g.caller_hint)
        );
        if g.logged {
            let _ = write!(
                o,
                r#"<p class="meta">{} refusal(s), first {}, last {}, onset <b>{}</b>{}</p>"#,
                g.count,
                esc(&g.first.as_ref().map(fmt).unwrap_or_default()),
                esc(&g.last.as_ref().map(fmt).unwrap_or_default()),
                esc(&fmt(&g.onset)),
                if g.onset_at_window_start {
                    " (since the window's start)"
                } else {
                    ""
                }
            );
        } else {
            let _ = write!(
                o,
                r#"<p class="meta">Refusals not logged: Cloud Run never logs a request its ingress refuses. Onset <b>{}</b> is the change.</p>"#,
                esc(&fmt(&g.onset))
            );
        }
        o.push_str(&chart(inc, g, i));
        if g.changes.is_empty() {
            let _ = write!(
                o,
                r#"<p class="nochange">{}</p>"#,
                esc(&nothing_changed(LOOKBACK_MINUTES))
            );
        } else {
            o.push_str("<table><tr><th>score</th><th>time</th><th>method</th><th>by</th><th>what changed</th><th>why</th></tr>");
            for c in &g.changes {
                let _ = write!(
                    o,
                    "<tr><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    c.score,
                    esc(&c.time.as_ref().map(fmt).unwrap_or_default()),
                    esc(&c.method),
                    esc(c.principal.as_deref().unwrap_or("?")),
                    esc(&c.summary),
                    esc(&c.why)
                );
            }
            o.push_str("</table>");
        }
        match g.report.as_ref() {
            Some(r) => match r.root_cause() {
                Some(f) => {
                    let _ = write!(
                        o,
                        r#"<p class="rc">Root cause ({}): {} {} — {}</p><p>{}</p>"#,
                        esc(f.verdict.as_str()),
                        esc(f.code),
                        esc(f.cause),
                        esc(&f.title),
                        esc(&f.explanation)
                    );
                    for fix in &f.fixes {
                        let _ = write!(
                            o,
                            "<p>Fix: {}</p><pre>{}</pre>",
                            esc(&fix.title),
                            esc(&fix.text)
                        );
                    }
                }
                None => o.push_str("<p>No cause found by the diagnosis of the newest refusal.</p>"),
            },
            None => o.push_str("<p>Not diagnosed (only the top groups are).</p>"),
        }
        o.push_str("</section>\n");
    }
    o.push_str("</body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_scales_and_squeezes() {
        let s: Vec<(String, usize)> = (0..120).map(|i| (i.to_string(), i / 60)).collect();
        let line = sparkline(&s, 60);
        assert_eq!(line.chars().count(), 60);
        assert!(line.starts_with(' '));
        assert!(line.ends_with('█'));
        assert_eq!(sparkline(&[], 60), "");
    }

    #[test]
    fn escapes() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
