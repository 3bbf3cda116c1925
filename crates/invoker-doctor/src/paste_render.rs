//! The paste section of `explain`'s text and Markdown reports: where the refusal came from
//! and what that means, what the paste names, the causes it leaves possible and rules out,
//! and the next steps. The JSON report carries the same as its `paste` object.

use std::fmt::Write;

use ipd_model::paste::PasteObject;

fn identifiers(p: &PasteObject) -> Vec<(&'static str, &str)> {
    let i = &p.identifiers;
    [
        ("url", &i.url),
        ("service", &i.service),
        ("project", &i.project),
        ("project number", &i.project_number),
        ("region", &i.region),
        ("principal", &i.principal),
        ("trace", &i.trace),
        ("insert id", &i.insert_id),
        ("time", &i.time),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
    .collect()
}

fn kind(p: &PasteObject) -> String {
    serde_json::to_value(p.kind)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
        .unwrap_or_default()
}

fn origin(p: &PasteObject) -> String {
    serde_json::to_value(p.origin)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// ` — SUMMARY`, or nothing.
fn summary_suffix(summary: &Option<String>) -> String {
    summary
        .as_deref()
        .map(|s| format!(" — {s}"))
        .unwrap_or_default()
}

/// `, status N`, or nothing.
fn status_suffix(p: &PasteObject) -> String {
    p.status
        .map(|s| format!(", status {s}"))
        .unwrap_or_default()
}

/// `summary` says what the paste is when that adds to the meaning (a token, a log entry).
pub fn text(p: &PasteObject, summary: &Option<String>) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "PASTE: {}{}", kind(p), summary_suffix(summary));
    let status = status_suffix(p);
    let _ = writeln!(o, "ORIGIN: {}{status} — {}", origin(p), p.meaning);
    let ids = identifiers(p);
    if !ids.is_empty() {
        let _ = writeln!(o, "IDENTIFIERS:");
        for (k, v) in ids {
            let _ = writeln!(o, "  {k}: {v}");
        }
    }
    if !p.possible_causes.is_empty() {
        let _ = writeln!(o, "POSSIBLE CAUSES: {}", p.possible_causes.join(", "));
    }
    if !p.ruled_out.is_empty() {
        let _ = writeln!(o, "RULED OUT: {}", p.ruled_out.join(", "));
    }
    if !p.next.is_empty() {
        let _ = writeln!(o, "NEXT:");
        for n in &p.next {
            if n.kind == "note" {
                let _ = writeln!(o, "  - {}", n.text);
            } else {
                let _ = writeln!(o, "  $ {}", n.text);
            }
        }
    }
    o
}

pub fn markdown(p: &PasteObject, summary: &Option<String>) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "**Pasted:** {}{}\n", kind(p), summary_suffix(summary));
    let status = status_suffix(p);
    let _ = writeln!(o, "**Origin:** `{}`{status} — {}\n", origin(p), p.meaning);
    let ids = identifiers(p);
    if !ids.is_empty() {
        let _ = writeln!(o, "| identifier | value |\n|---|---|");
        for (k, v) in ids {
            let _ = writeln!(o, "| {k} | `{}` |", v.replace('|', "\\|"));
        }
        let _ = writeln!(o);
    }
    if !p.possible_causes.is_empty() {
        let _ = writeln!(
            o,
            "**Possible causes:** {}\n",
            p.possible_causes
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !p.ruled_out.is_empty() {
        let _ = writeln!(
            o,
            "**Ruled out:** {}\n",
            p.ruled_out
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !p.next.is_empty() {
        let _ = writeln!(o, "**Next**\n");
        for n in &p.next {
            if n.kind == "note" {
                let _ = writeln!(o, "- {}", n.text);
            } else {
                let _ = writeln!(o, "```sh\n{}\n```", n.text);
            }
        }
    }
    o
}
