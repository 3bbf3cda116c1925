//! Recognising whatever a person pastes: a token, a log entry, an ID, a Logs Explorer URL,
//! or the error text / HTML a client got. [`classify`] finds what the paste references (a
//! request, a token, an entry); [`recognise`] says where the refusal came from, what it names
//! and which causes it leaves open. Both are pure and total.

pub mod ids;
pub mod next;
pub mod recognise;

pub use ids::Identifiers;
pub use next::{NextStep, next_steps};
pub use recognise::{Kind, Origin, Recognised, Topic, recognise};

use serde::Serialize;

/// The contract's `paste` object (null members where unknown), plus `meaning`: the lead
/// sentence the text and Markdown reports open with.
#[derive(Debug, Clone, Serialize)]
pub struct PasteObject {
    pub kind: Kind,
    pub origin: Origin,
    pub status: Option<i64>,
    pub identifiers: Identifiers,
    pub possible_causes: Vec<&'static str>,
    pub ruled_out: Vec<&'static str>,
    pub next: Vec<NextStep>,
    pub meaning: String,
}

impl PasteObject {
    pub fn new(r: &Recognised) -> PasteObject {
        PasteObject {
            kind: r.kind,
            origin: r.origin,
            status: r.status,
            identifiers: r.identifiers.clone(),
            possible_causes: r.possible_causes.clone(),
            ruled_out: r.ruled_out.clone(),
            next: next_steps(r),
            meaning: r.meaning.clone(),
        }
    }
}

use crate::logs::LogEntry;
use crate::token::{Token, TokenKind};

#[derive(Debug, Clone, PartialEq)]
pub enum Paste {
    Token(Box<Token>),
    LogEntry(Box<LogEntry>),
    /// A 32-hex trace ID.
    TraceId(String),
    /// An `X-Cloud-Trace-Context` value `TRACE_ID/SPAN_ID;o=1`.
    TraceContext {
        trace: String,
        span: Option<String>,
    },
    /// A log entry's `insertId`.
    InsertId(String),
    /// A Logs Explorer URL, with the project and the query it carries.
    LogsExplorerUrl {
        project: Option<String>,
        query: Option<String>,
    },
    /// Any other text (an error page, a message, a transcript): [`recognise`] says what it
    /// shows.
    Text,
    /// Nothing (an empty paste).
    Unknown,
}

impl Paste {
    pub fn kind(&self) -> &'static str {
        match self {
            Paste::Token(_) => "token",
            Paste::LogEntry(_) => "log_entry",
            Paste::TraceId(_) => "trace_id",
            Paste::TraceContext { .. } => "trace_context",
            Paste::InsertId(_) => "insert_id",
            Paste::LogsExplorerUrl { .. } => "logs_explorer_url",
            Paste::Text => "text",
            Paste::Unknown => "unknown",
        }
    }

    /// The request reference (trace ID or insertId) the paste names, if any.
    pub fn request_ref(&self) -> Option<String> {
        match self {
            Paste::TraceId(t) | Paste::InsertId(t) => Some(t.clone()),
            Paste::TraceContext { trace, .. } => Some(trace.clone()),
            Paste::LogEntry(e) => e.insert_id.clone(),
            Paste::LogsExplorerUrl { query: Some(q), .. } => query_ref(q),
            _ => None,
        }
    }
}

fn is_hex(s: &str, n: usize) -> bool {
    s.len() == n && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// Classifies a paste. Never fails.
pub fn classify(input: &str) -> Paste {
    let s = input.trim().trim_start_matches('\u{feff}').trim();
    if s.is_empty() {
        return Paste::Unknown;
    }
    if s.starts_with('{')
        && let Ok(e) = serde_json::from_str::<LogEntry>(s)
        && (e.insert_id.is_some() || e.http_request.is_some() || e.log_name.is_some())
    {
        return Paste::LogEntry(Box::new(e));
    }
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("https://console.cloud.google.com/logs") {
        return logs_url(s);
    }
    let first_word = s.split_whitespace().next().unwrap_or("");
    let bearerish = lower.starts_with("bearer ")
        || lower.starts_with("authorization:")
        || lower.starts_with("x-serverless-authorization:");
    if bearerish || first_word.starts_with("eyJ") || first_word.starts_with("ya29.") {
        let t = Token::analyze(s);
        if t.kind != TokenKind::Empty {
            return Paste::Token(Box::new(t));
        }
    }
    let header_value = s
        .strip_prefix("X-Cloud-Trace-Context:")
        .or_else(|| s.strip_prefix("x-cloud-trace-context:"))
        .map(str::trim)
        .unwrap_or(s);
    if let Some((trace, rest)) = header_value.split_once('/')
        && is_hex(trace, 32)
        && !header_value.contains(' ')
    {
        let span = rest
            .split(';')
            .next()
            .filter(|x| !x.is_empty())
            .map(str::to_string);
        return Paste::TraceContext {
            trace: trace.to_lowercase(),
            span,
        };
    }
    if let Some(t) = s
        .strip_prefix("projects/")
        .and_then(|r| r.split_once("/traces/"))
        .map(|(_, t)| t)
        && is_hex(t, 32)
    {
        return Paste::TraceId(t.to_lowercase());
    }
    if is_hex(s, 32) {
        return Paste::TraceId(s.to_lowercase());
    }
    if !s.contains(char::is_whitespace)
        && (8..=64).contains(&s.len())
        && s.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return Paste::InsertId(s.to_string());
    }
    Paste::Text
}

fn logs_url(s: &str) -> Paste {
    let project = s
        .split(['?', '&', ';'])
        .find_map(|p| p.strip_prefix("project="))
        .map(|p| percent_decode(p.split('#').next().unwrap_or(p)));
    let query = s
        .split(['?', '&', ';'])
        .find_map(|p| p.strip_prefix("query="))
        .map(percent_decode);
    Paste::LogsExplorerUrl { project, query }
}

/// A trace ID or insertId named in a Logs Explorer query (`trace="projects/p/traces/ID"`,
/// `insertId="ID"`).
fn query_ref(q: &str) -> Option<String> {
    for key in ["insertId=", "trace="] {
        if let Some(rest) = q.split(key).nth(1) {
            let v = rest.trim_start_matches('"');
            let v: String = v
                .chars()
                .take_while(|c| *c != '"' && !c.is_whitespace())
                .collect();
            let v = v.rsplit('/').next().unwrap_or(&v).to_string();
            if !v.is_empty() {
                return Some(v);
            }
        }
    }
    None
}

/// Decodes `%XX` escapes (and leaves malformed ones as they are).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_headers() {
        assert_eq!(
            classify("6d1e82a184914a699a4638b5fed5ab90"),
            Paste::TraceId("6d1e82a184914a699a4638b5fed5ab90".into())
        );
        assert_eq!(
            classify("6D1E82A184914A699A4638B5FED5AB90/123;o=1"),
            Paste::TraceContext {
                trace: "6d1e82a184914a699a4638b5fed5ab90".into(),
                span: Some("123".into())
            }
        );
        assert_eq!(
            classify("68f714bb000325e525216f18"),
            Paste::InsertId("68f714bb000325e525216f18".into())
        );
        assert!(matches!(classify("Bearer ya29.abc"), Paste::Token(_)));
    }

    #[test]
    fn real_log_entry_and_pages() {
        let e = include_str!("../../testdata/cloud-run-request-log-403-unauthenticated.json");
        let p = classify(e);
        assert_eq!(p.kind(), "log_entry");
        assert_eq!(p.request_ref().as_deref(), Some("68f714bb000325e525216f18"));
        // Pages and messages are text: `recognise` reads them (and the corpus tests it).
        let html = "<html><head><title>403 Forbidden</title></head><body><h1>Error: Forbidden</h1><h2>Your client does not have permission to get URL <code>/</code> from this server.</h2></body></html>";
        assert_eq!(classify(html), Paste::Text);
        let r = recognise(html);
        assert_eq!((r.origin, r.status), (Origin::Unknown, Some(403)));
        let r = recognise("Invalid IAP credentials: Unable to parse JWT");
        assert_eq!((r.origin, r.status), (Origin::Iap, Some(401)));
        assert_eq!(classify("  \n"), Paste::Unknown);
    }

    #[test]
    fn logs_explorer_url() {
        let u = "https://console.cloud.google.com/logs/query;query=trace%3D%22projects%2Fshop-prod%2Ftraces%2F6d1e82a184914a699a4638b5fed5ab90%22;duration=PT1H?project=shop-prod";
        let p = classify(u);
        assert_eq!(
            p,
            Paste::LogsExplorerUrl {
                project: Some("shop-prod".into()),
                query: Some(
                    "trace=\"projects/shop-prod/traces/6d1e82a184914a699a4638b5fed5ab90\"".into()
                )
            }
        );
        assert_eq!(
            p.request_ref().as_deref(),
            Some("6d1e82a184914a699a4638b5fed5ab90")
        );
    }

    #[test]
    fn percent_decoding_is_total() {
        assert_eq!(percent_decode("a%2Fb%"), "a/b%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
