//! Cloud Logging entries (`gcloud logging read --format=json`, or an `entries:list` response).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::time::{Timestamp, parse_duration_secs, parse_rfc3339};

/// The log a Cloud Run request entry is written to (log id URL-encoded, as in `logName`).
pub const REQUEST_LOG_SUFFIX: &str = "/logs/run.googleapis.com%2Frequests";

/// Gate texts (facts §1.2, §1.3). Matched as substrings; both doc wordings are accepted.
pub const GATE_403: &str = "The request was not authenticated";
pub const GATE_401: &str = "not authorized to invoke this service";
pub const EMPTY_AUTHORIZATION: &str = "Empty Authorization header value";

/// A string many entries repeat (the gate's message, the log name, the user agent, label keys
/// and values): read once and shared, so that 40,000 entries of a busy service's refusals
/// cost one copy of each, not 40,000.
pub type Shared = Arc<str>;

thread_local! {
    /// The strings shared while a logs file is read ([`Interning`]); `None` otherwise.
    static INTERN: RefCell<Option<rustc_hash::FxHashSet<Shared>>> = const { RefCell::new(None) };
}

/// At most this many distinct strings are remembered per file: a file of unique strings
/// costs a bounded set, not a second copy of itself.
const INTERN_MAX: usize = 4096;

/// While alive, strings read into [`Shared`] fields are shared; dropped at the end of a file.
struct Interning;

impl Interning {
    fn start() -> Self {
        INTERN.with(|i| *i.borrow_mut() = Some(Default::default()));
        Interning
    }
}

impl Drop for Interning {
    fn drop(&mut self) {
        INTERN.with(|i| *i.borrow_mut() = None);
    }
}

fn share(s: &str) -> Shared {
    INTERN.with(|i| match &mut *i.borrow_mut() {
        Some(set) => match set.get(s) {
            Some(x) => x.clone(),
            None => {
                let x: Shared = s.into();
                if set.len() < INTERN_MAX {
                    set.insert(x.clone());
                }
                x
            }
        },
        None => s.into(),
    })
}

/// A JSON string read straight into a [`Shared`] (no `String` in between).
struct SharedStr(Shared);

impl<'de> Deserialize<'de> for SharedStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SharedStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SharedStr, E> {
                Ok(SharedStr(share(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A label's value: a string (shared), a number or boolean (as its text), else `None`.
struct LabelValue(Option<Shared>);

impl<'de> Deserialize<'de> for LabelValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LabelValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a label value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LabelValue, E> {
                Ok(LabelValue(Some(share(v))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LabelValue, E> {
                Ok(LabelValue(Some(share(&v.to_string()))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LabelValue, E> {
                Ok(LabelValue(Some(share(&v.to_string()))))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<LabelValue, E> {
                Ok(LabelValue(Some(share(&v.to_string()))))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<LabelValue, E> {
                Ok(LabelValue(Some(share(if v { "true" } else { "false" }))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LabelValue, E> {
                Ok(LabelValue(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<LabelValue, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LabelValue(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<LabelValue, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(LabelValue(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// An optional string field read into a [`Shared`]: `null` or absent is `None`, a string is
/// shared, anything else is an error (as for `Option<String>`).
fn shared<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Shared>, D::Error> {
    Ok(Option::<SharedStr>::deserialize(d)?.map(|s| s.0))
}

/// The members of a LogEntry the rules read; the others (`receiveTimestamp`, `spanId`,
/// `httpRequest.remoteIp`, ...) are skipped unread.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    #[serde(default, deserialize_with = "shared")]
    pub log_name: Option<Shared>,
    pub resource: Option<MonitoredResource>,
    pub timestamp: Option<String>,
    #[serde(default, deserialize_with = "shared")]
    pub severity: Option<Shared>,
    pub insert_id: Option<String>,
    pub http_request: Option<HttpRequest>,
    #[serde(default, deserialize_with = "shared")]
    pub text_payload: Option<Shared>,
    /// Only what the rules read of an application's structured log (`message`).
    pub json_payload: Option<JsonPayload>,
    /// An audit entry's `AuditLog` (read by [`crate::audit`]); request logs have none.
    pub proto_payload: Option<Value>,
    pub trace: Option<String>,
    #[serde(default)]
    pub labels: Labels,
}

/// A LogEntry's or a resource's `labels`: a few string pairs, kept as a small vector (a
/// `BTreeMap` node per entry would be most of an entry's memory on a large file).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Labels(Vec<(Shared, Shared)>);

impl Labels {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.as_ref() == key)
            .map(|(_, v)| v.as_ref())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(String, String)> for Labels {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(it: I) -> Self {
        let m: BTreeMap<String, String> = it.into_iter().collect();
        Labels(
            m.into_iter()
                .map(|(k, v)| (Shared::from(k), Shared::from(v)))
                .collect(),
        )
    }
}

impl Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Labels;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of string labels")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Labels, E> {
                Ok(Labels::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Labels, A::Error> {
                let mut v: Vec<(Shared, Shared)> = Vec::with_capacity(a.size_hint().unwrap_or(4));
                while let Some((SharedStr(k), LabelValue(val))) =
                    a.next_entry::<SharedStr, LabelValue>()?
                {
                    // A value that is not a string (hand-edited bundles): dropped, not fatal.
                    let Some(val) = val else { continue };
                    // A repeated key: the last one wins, as in a map.
                    match v.iter_mut().find(|(x, _)| *x == k) {
                        Some(slot) => slot.1 = val,
                        None => v.push((k, val)),
                    }
                }
                v.sort();
                Ok(Labels(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// `jsonPayload`, of which only `message` is kept (a string; anything else is dropped).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct JsonPayload {
    #[serde(default, deserialize_with = "string_or_none")]
    pub message: Option<String>,
}

/// One JSON value read for a scalar field: a string, an integer, or anything else (skipped
/// without being built).
enum Scalar {
    Str(String),
    Int(Option<i64>),
    Other,
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar::Str(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(Some(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Int(i64::try_from(v).ok()))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
                d.deserialize_any(V)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Scalar, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Scalar, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// A string, or `None` for any other JSON value.
fn string_or_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Scalar::deserialize(d)? {
        Scalar::Str(s) => Some(s),
        _ => None,
    })
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct MonitoredResource {
    #[serde(rename = "type", default, deserialize_with = "shared")]
    pub kind: Option<Shared>,
    #[serde(default)]
    pub labels: Labels,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequest {
    #[serde(default, deserialize_with = "shared")]
    pub request_method: Option<Shared>,
    #[serde(default, deserialize_with = "shared")]
    pub request_url: Option<Shared>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub status: Option<i64>,
    #[serde(default, deserialize_with = "shared")]
    pub user_agent: Option<Shared>,
    pub latency: Option<String>,
}

/// proto3 JSON writes int32 as a number, but some tools quote it; accept both (anything else
/// is `None`), without building an intermediate value.
fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match Scalar::deserialize(d)? {
        Scalar::Int(n) => n,
        Scalar::Str(s) => s.trim().parse().ok(),
        Scalar::Other => None,
    })
}

/// What the gate said about a request, read from a request-log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GateMessage {
    /// 403 "The request was not authenticated…" (no token, or no permission).
    NotAuthenticated,
    /// 403 with "Empty Authorization header value." (no token at all).
    EmptyAuthorization,
    /// 401 "The request was not authorized to invoke this service" (bad token).
    NotAuthorized,
    /// No gate text.
    None,
}

impl LogEntry {
    pub fn is_request_log(&self) -> bool {
        self.log_name
            .as_deref()
            .is_some_and(|n| n.ends_with(REQUEST_LOG_SUFFIX))
            || (self.http_request.is_some()
                && self.resource.as_ref().and_then(|r| r.kind.as_deref())
                    == Some("cloud_run_revision")
                && self.log_name.is_none())
    }

    pub fn status(&self) -> Option<i64> {
        self.http_request.as_ref().and_then(|h| h.status)
    }

    pub fn time(&self) -> Option<Timestamp> {
        self.timestamp.as_deref().and_then(parse_rfc3339)
    }

    pub fn latency_secs(&self) -> Option<f64> {
        self.http_request
            .as_ref()
            .and_then(|h| h.latency.as_deref())
            .and_then(parse_duration_secs)
    }

    pub fn method(&self) -> Option<&str> {
        self.http_request
            .as_ref()
            .and_then(|h| h.request_method.as_deref())
    }

    pub fn user_agent(&self) -> Option<&str> {
        self.http_request
            .as_ref()
            .and_then(|h| h.user_agent.as_deref())
    }

    pub fn url(&self) -> Option<&str> {
        self.http_request
            .as_ref()
            .and_then(|h| h.request_url.as_deref())
    }

    pub fn resource_label(&self, k: &str) -> Option<&str> {
        self.resource.as_ref().and_then(|r| r.labels.get(k))
    }

    /// The text a reader would search: `textPayload`, or `jsonPayload.message`.
    pub fn message(&self) -> Option<&str> {
        self.text_payload.as_deref().or_else(|| {
            self.json_payload
                .as_ref()
                .and_then(|j| j.message.as_deref())
        })
    }

    pub fn gate_message(&self) -> GateMessage {
        let Some(t) = self.text_payload.as_deref() else {
            return GateMessage::None;
        };
        if t.contains(EMPTY_AUTHORIZATION) {
            GateMessage::EmptyAuthorization
        } else if t.contains(GATE_403) {
            GateMessage::NotAuthenticated
        } else if t.contains(GATE_401) {
            GateMessage::NotAuthorized
        } else {
            GateMessage::None
        }
    }

    /// One line for evidence: `insertId: METHOD URL → STATUS, latency L, user agent `UA``.
    pub fn summary(&self) -> String {
        let h = self.http_request.as_ref();
        format!(
            "request log entry `{}`: {} {} → {}, latency {}, user agent `{}`",
            self.insert_id.as_deref().unwrap_or("?"),
            self.method().unwrap_or("?"),
            self.url().unwrap_or("?"),
            self.status()
                .map(|s| s.to_string())
                .unwrap_or_else(|| "?".into()),
            h.and_then(|h| h.latency.as_deref()).unwrap_or("?"),
            self.user_agent().unwrap_or("?")
        )
    }

    /// The trace ID (32 hex) from `trace` (`projects/P/traces/ID` or bare).
    pub fn trace_id(&self) -> Option<&str> {
        self.trace
            .as_deref()
            .map(|t| t.rsplit('/').next().unwrap_or(t))
    }
}

/// `logs.json`: an array of entries, or an `entries:list` response.
///
/// Read in one pass straight into [`LogEntry`] values: no `serde_json::Value` of the file or
/// of an entry (only an audit entry's `protoPayload` is one), and no buffering of the whole
/// document as an untagged enum would. Members of a response other than `entries` are
/// skipped unread; an `error` member makes it Google's error envelope ([`LogsFile::Error`]).
#[derive(Debug)]
pub enum LogsFile {
    List(Vec<LogEntry>),
    Response {
        entries: Vec<LogEntry>,
    },
    /// `{"error": {...}}`: the API's error envelope in place of the entries.
    Error(Value),
}

impl<'de> Deserialize<'de> for LogsFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LogsFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON array of LogEntry or an entries:list response object")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<LogsFile, A::Error> {
                let mut v = Vec::with_capacity(a.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(e) = a.next_element::<LogEntry>()? {
                    v.push(e);
                }
                Ok(LogsFile::List(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<LogsFile, A::Error> {
                let mut entries: Option<Vec<LogEntry>> = None;
                let mut error: Option<Value> = None;
                while let Some(k) = a.next_key::<std::borrow::Cow<'de, str>>()? {
                    match k.as_ref() {
                        "entries" => {
                            entries =
                                Some(a.next_value::<Option<Vec<LogEntry>>>()?.unwrap_or_default())
                        }
                        "error" => error = Some(a.next_value::<Value>()?),
                        _ => {
                            a.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(match (entries, error) {
                    (None, Some(e)) => LogsFile::Error(serde_json::json!({ "error": e })),
                    (entries, _) => LogsFile::Response {
                        entries: entries.unwrap_or_default(),
                    },
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses `logs.json` (`file` names it in errors) in one pass: JSON straight into entries, or
/// the API's error envelope; YAML through the generic reader.
pub fn parse_logs(
    file: &str,
    text: &str,
) -> Result<crate::doc::Doc<LogsFile>, crate::doc::ParseError> {
    use crate::doc::{ApiError, Doc, ParseError};
    let _shared = Interning::start();
    let body = text.trim_start_matches('\u{feff}');
    if !body.trim_start().starts_with(['[', '{']) {
        return crate::doc::parse::<LogsFile>(file, text);
    }
    match serde_json::from_str::<LogsFile>(body) {
        Ok(LogsFile::Error(v)) => match ApiError::from_envelope(&v) {
            Some(e) => Ok(Doc::Error(e)),
            None => Ok(Doc::Value(LogsFile::Response {
                entries: Vec::new(),
            })),
        },
        Ok(f) => Ok(Doc::Value(f)),
        Err(e) => Err(ParseError::from_json(file, &e)),
    }
}

impl LogsFile {
    pub fn into_entries(self) -> Vec<LogEntry> {
        match self {
            LogsFile::List(v) => v,
            LogsFile::Response { entries } => entries,
            LogsFile::Error(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_403_entry() {
        let e: LogEntry = serde_json::from_str(include_str!(
            "../testdata/cloud-run-request-log-403-unauthenticated.json"
        ))
        .unwrap();
        assert!(e.is_request_log());
        assert_eq!(e.status(), Some(403));
        assert_eq!(e.gate_message(), GateMessage::NotAuthenticated);
        assert_eq!(e.latency_secs(), Some(0.0));
        assert_eq!(e.method(), Some("OPTIONS"));
        assert_eq!(e.trace_id(), Some("6d1e82a184914a699a4638b5fed5ab90"));
        assert!(e.time().is_some());
    }

    #[test]
    fn real_502_entry_has_no_gate_text() {
        let e: LogEntry = serde_json::from_str(include_str!(
            "../testdata/cloud-run-request-log-502-cloud-scheduler.json"
        ))
        .unwrap();
        assert_eq!(e.gate_message(), GateMessage::None);
        assert!(e.latency_secs().unwrap() > 60.0);
    }

    fn entries(text: &str) -> Vec<LogEntry> {
        match parse_logs("logs.json", text).unwrap() {
            crate::doc::Doc::Value(f) => f.into_entries(),
            crate::doc::Doc::Error(e) => panic!("an envelope: {e:?}"),
        }
    }

    #[test]
    fn one_pass_reader_keeps_what_the_rules_read() {
        let real = include_str!("../testdata/cloud-run-request-log-403-unauthenticated.json");
        let list = entries(&format!("[{real}, {real}]"));
        assert_eq!(list.len(), 2);
        let one: LogEntry = serde_json::from_str(real).unwrap();
        assert_eq!(list[0], one);
        // An entries:list response: other members are skipped, `entries: null` is none.
        let resp = entries(&format!(
            r#"{{"nextPageToken": "t", "entries": [{real}], "extra": {{"deep": [1, {{"x": null}}]}}}}"#
        ));
        assert_eq!(resp, vec![one]);
        assert!(entries(r#"{"entries": null}"#).is_empty());
        assert!(entries("{}").is_empty());
        assert!(entries("\u{feff}[]").is_empty());
        // jsonPayload: only a string `message` is kept; status as a number or a quoted number.
        let e = &entries(
            r#"[{"jsonPayload": {"message": "boom", "stack": ["a", {"b": 1}]}, "httpRequest": {"status": "403"}},
                {"jsonPayload": {"message": {"not": "text"}}, "httpRequest": {"status": 4.5}},
                {"protoPayload": {"methodName": "SetIamPolicy"}, "httpRequest": {"status": null}}]"#,
        );
        assert_eq!(e[0].message(), Some("boom"));
        assert_eq!(e[0].status(), Some(403));
        assert_eq!(e[1].message(), None);
        assert_eq!(e[1].status(), None);
        assert_eq!(e[2].status(), None);
        assert_eq!(
            e[2].proto_payload
                .as_ref()
                .and_then(|p| p.get("methodName")),
            Some(&serde_json::json!("SetIamPolicy"))
        );
    }

    #[test]
    fn envelope_and_errors_with_positions() {
        let env = r#"{"error": {"code": 403, "message": "Permission 'logging.logEntries.list' denied on resource 'projects/p' (or it may not exist).", "status": "PERMISSION_DENIED"}}"#;
        match parse_logs("logs.json", env).unwrap() {
            crate::doc::Doc::Error(e) => {
                assert!(e.is_permission_denied());
                assert_eq!(e.permission.as_deref(), Some("logging.logEntries.list"));
            }
            crate::doc::Doc::Value(_) => panic!("the envelope was not recognised"),
        }
        // An `error` that is no envelope, next to no entries: an empty response, as before.
        assert!(entries(r#"{"error": "x"}"#).is_empty());
        let bad = parse_logs(
            "b/logs.json",
            "[\n  {\"insertId\": \"a\"},\n  {\"insertId\": 7}\n]",
        )
        .unwrap_err();
        assert_eq!(bad.file, "b/logs.json");
        assert_eq!(bad.line, Some(3));
        let bad = parse_logs("logs.json", "[{\"insertId\": \"a\"}").unwrap_err();
        assert!(bad.line.is_some(), "{bad:?}");
        assert!(parse_logs("logs.json", "42").is_err());
        assert!(parse_logs("logs.json", "[1]").is_err());
    }

    #[test]
    fn both_file_shapes() {
        let a: LogsFile = serde_json::from_str("[]").unwrap();
        assert!(a.into_entries().is_empty());
        let b: LogsFile =
            serde_json::from_str(r#"{"entries": [{"insertId": "x"}], "nextPageToken": "t"}"#)
                .unwrap();
        assert_eq!(b.into_entries().len(), 1);
        let c: LogsFile = serde_json::from_str("{}").unwrap();
        assert!(c.into_entries().is_empty());
    }
}

/// Bytes read from a `logs.json` at a time by [`read_logs_file`].
const CHUNK: usize = 4 << 20;

/// Reads a bundle's `logs.json` from disk as a stream: a JSON array (what `gcloud logging
/// read --format=json` prints) is split into its elements by a byte scanner and each element
/// is parsed straight into a [`LogEntry`], so memory holds the entries plus one chunk of the
/// file, never the whole text. Any other shape (an `entries:list` response, an error
/// envelope, YAML) is read whole and goes through [`parse_logs`]. Errors name `shown` and the
/// line and column in the file.
pub fn read_logs_file(
    path: &std::path::Path,
    shown: &str,
) -> Result<crate::doc::Doc<LogsFile>, crate::doc::ParseError> {
    read_logs_chunked(path, shown, CHUNK)
}

/// Files at least this large are read by two threads, one from each half (see
/// [`read_logs_chunked`]).
const PARALLEL_MIN: u64 = 16 << 20;

fn read_logs_chunked(
    path: &std::path::Path,
    shown: &str,
    chunk: usize,
) -> Result<crate::doc::Doc<LogsFile>, crate::doc::ParseError> {
    read_logs_split(path, shown, chunk, PARALLEL_MIN)
}

/// Reads a logs file; one at least `parallel_min` bytes long (on a machine with more than one
/// core) is read in two halves at once: a second thread starts at the first thing that looks
/// like the start of an entry after the middle (`}`, `,`, `{`), and the first thread reads up to
/// there. The guess is taken only when the first thread's own walk of the array lands on it
/// exactly, so a guess inside a string cannot change the result; any disagreement or error
/// falls back to one thread from the start (which names the error's line and column).
fn read_logs_split(
    path: &std::path::Path,
    shown: &str,
    chunk: usize,
    parallel_min: u64,
) -> Result<crate::doc::Doc<LogsFile>, crate::doc::ParseError> {
    use crate::doc::Doc;
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    if len >= parallel_min
        && cores > 1
        && let Some(mid) = entry_start_after(path, len / 2)
    {
        let (first, second) = std::thread::scope(|sc| {
            let second = sc.spawn(|| scan(path, shown, chunk, Some(mid), None));
            (scan(path, shown, chunk, None, Some(mid)), second.join())
        });
        match (first, second) {
            (Ok(Scan::Entries(mut a, Some(at))), Ok(Ok(Scan::Entries(b, _)))) if at == mid => {
                a.extend(b);
                return Ok(Doc::Value(LogsFile::List(a)));
            }
            // Not an array, or an error before the middle: that is the file's answer.
            (Ok(Scan::Whole(d)), _) => return Ok(d),
            (Err(e), _) => return Err(e),
            _ => {}
        }
    }
    match scan(path, shown, chunk, None, None)? {
        Scan::Entries(v, _) => Ok(Doc::Value(LogsFile::List(v))),
        Scan::Whole(d) => Ok(d),
    }
}

/// The offset of the first `{` after `at` that follows `}` `,` (with whitespace between): a
/// likely start of an entry in a top-level array of objects. `None` within 1 MiB.
fn entry_start_after(path: &std::path::Path, at: u64) -> Option<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    f.seek(SeekFrom::Start(at)).ok()?;
    let mut buf = Vec::with_capacity(1 << 20);
    f.take(1 << 20).read_to_end(&mut buf).ok()?;
    let mut i = 0;
    while let Some(k) = buf[i..].iter().position(|&b| b == b'}') {
        let mut j = i + k + 1;
        let skip = |j: &mut usize| {
            while buf.get(*j).is_some_and(u8::is_ascii_whitespace) {
                *j += 1;
            }
        };
        skip(&mut j);
        if buf.get(j) == Some(&b',') {
            j += 1;
            skip(&mut j);
            if buf.get(j) == Some(&b'{') {
                return Some(at + j as u64);
            }
        }
        i += k + 1;
    }
    None
}

/// What one reader found.
enum Scan {
    /// The entries read, and (when asked to stop) the file offset of the entry it stopped at.
    Entries(Vec<LogEntry>, Option<u64>),
    /// Not an array: the whole text, parsed.
    Whole(crate::doc::Doc<LogsFile>),
}

/// Reads the array from its start (`from` None), or from an entry starting at file offset
/// `from`; stops before the first entry starting at or after `stop_at`.
fn scan(
    path: &std::path::Path,
    shown: &str,
    chunk: usize,
    from: Option<u64>,
    stop_at: Option<u64>,
) -> Result<Scan, crate::doc::ParseError> {
    use std::io::{Read, Seek, SeekFrom};

    use crate::doc::ParseError;
    let io = |e: std::io::Error| ParseError::new(shown, format!("cannot read: {e}"));
    let mut f = std::fs::File::open(path).map_err(io)?;
    let _shared = Interning::start();
    let mut buf: Vec<u8> = Vec::with_capacity(chunk);
    let fill = |f: &mut std::fs::File, buf: &mut Vec<u8>, n: usize| -> Result<usize, ParseError> {
        // `take(..).read_to_end` fills the spare capacity without zeroing it first.
        let n = std::io::Read::by_ref(f)
            .take(n as u64)
            .read_to_end(buf)
            .map_err(io)?;
        Ok(n)
    };
    let mut s = match from {
        Some(at) => {
            f.seek(SeekFrom::Start(at)).map_err(io)?;
            fill(&mut f, &mut buf, chunk)?;
            Splitter {
                consumed_lines: 0,
                consumed_bytes: at,
                consumed_col: 0,
                pos: 0,
                state: State::BeforeElement(false),
            }
        }
        None => {
            fill(&mut f, &mut buf, chunk)?;
            let bom = if buf.starts_with("\u{feff}".as_bytes()) {
                3
            } else {
                0
            };
            let first = buf[bom..].iter().position(|b| !b.is_ascii_whitespace());
            if first.map(|i| buf[bom + i]) != Some(b'[') {
                // Not an array: read the rest and parse the text whole.
                f.read_to_end(&mut buf).map_err(io)?;
                let text = String::from_utf8(buf).map_err(|e| {
                    ParseError::new(
                        shown,
                        format!(
                            "not UTF-8 text (invalid byte at offset {})",
                            e.utf8_error().valid_up_to()
                        ),
                    )
                })?;
                return parse_logs(shown, &text).map(Scan::Whole);
            }
            Splitter {
                consumed_lines: 0,
                consumed_bytes: 0,
                consumed_col: 0,
                pos: bom + first.unwrap_or(0) + 1,
                state: State::BeforeElement(true),
            }
        }
    };
    let mut entries = Vec::new();
    let mut eof = false;
    // How much the next read asks for: one chunk, doubled while one element outgrows the
    // buffer (so a huge element is re-parsed a logarithmic number of times, not once a chunk).
    let mut want = chunk;
    loop {
        let step = match s.next(&buf, eof) {
            Step::Element(start) => {
                let at = s.consumed_bytes + start as u64;
                if stop_at.is_some_and(|stop| at >= stop) {
                    return Ok(Scan::Entries(entries, Some(at)));
                }
                // serde_json reads the element in place and says where it ended: one pass over
                // the bytes, UTF-8 checked inside strings as it goes.
                let mut it =
                    serde_json::Deserializer::from_slice(&buf[start..]).into_iter::<LogEntry>();
                match it.next() {
                    Some(Ok(e)) => {
                        entries.push(e);
                        s.pos = start + it.byte_offset();
                        s.state = State::AfterElement;
                        want = chunk;
                        continue;
                    }
                    Some(Err(e)) if e.is_eof() && !eof => Step::Need,
                    Some(Err(e)) => return Err(s.element_error(&buf, start, &e, shown)),
                    None => Step::Need,
                }
            }
            other => other,
        };
        match step {
            Step::Element(_) => unreachable!("handled above"),
            Step::Done => break,
            Step::Need => {
                if eof {
                    let (line, column) = s.position(&buf, buf.len());
                    return Err(ParseError {
                        file: shown.to_string(),
                        line: Some(line),
                        column: Some(column),
                        message: "EOF while parsing a list".into(),
                    });
                }
                // Keep the element in progress, drop what is done, read more.
                let keep = s.keep_from();
                if keep == 0 && buf.len() >= want {
                    want = want.saturating_mul(2);
                }
                s.consume(&buf[..keep]);
                buf.drain(..keep);
                eof = fill(&mut f, &mut buf, want)? == 0;
            }
            Step::Bad(at, msg) => {
                let (line, column) = s.position(&buf, at);
                return Err(ParseError {
                    file: shown.to_string(),
                    line: Some(line),
                    column: Some(column),
                    message: msg.into(),
                });
            }
        }
    }
    Ok(Scan::Entries(entries, None))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// After `[` (true) or `,`: whitespace, then an element (or `]` right after `[`).
    BeforeElement(bool),
    /// An element starts at `start` and is not yet complete in the buffer.
    InElement { start: usize },
    /// After an element: `,` or `]`.
    AfterElement,
    /// After the closing `]`: only whitespace.
    Trailing,
}

enum Step {
    /// An element starts here; the caller parses it and moves `pos` past it.
    Element(usize),
    Need,
    Done,
    Bad(usize, &'static str),
}

/// Walks the punctuation of a top-level JSON array (the elements themselves are parsed in
/// place by serde_json) in a buffer that grows at the end and is drained at the front; tracks
/// lines and columns of what was drained, for error positions.
struct Splitter {
    consumed_lines: u64,
    /// Bytes drained from the front of the buffer so far.
    consumed_bytes: u64,
    /// Bytes since the last newline, at the end of what was drained.
    consumed_col: u64,
    pos: usize,
    state: State,
}

impl Splitter {
    fn next(&mut self, buf: &[u8], eof: bool) -> Step {
        loop {
            match self.state {
                State::BeforeElement(first) => {
                    while self.pos < buf.len() && buf[self.pos].is_ascii_whitespace() {
                        self.pos += 1;
                    }
                    let Some(&c) = buf.get(self.pos) else {
                        return Step::Need;
                    };
                    if c == b']' && first {
                        self.pos += 1;
                        self.state = State::Trailing;
                        continue;
                    }
                    if c == b']' || c == b',' {
                        return Step::Bad(self.pos, "expected a log entry");
                    }
                    self.state = State::InElement { start: self.pos };
                }
                State::InElement { start } => return Step::Element(start),
                State::AfterElement => {
                    while self.pos < buf.len() && buf[self.pos].is_ascii_whitespace() {
                        self.pos += 1;
                    }
                    match buf.get(self.pos) {
                        None => return Step::Need,
                        Some(b',') => {
                            self.pos += 1;
                            self.state = State::BeforeElement(false);
                        }
                        Some(b']') => {
                            self.pos += 1;
                            self.state = State::Trailing;
                        }
                        Some(_) => return Step::Bad(self.pos, "expected `,` or `]`"),
                    }
                }
                State::Trailing => {
                    while self.pos < buf.len() && buf[self.pos].is_ascii_whitespace() {
                        self.pos += 1;
                    }
                    if self.pos < buf.len() {
                        return Step::Bad(self.pos, "trailing characters after the list");
                    }
                    return if eof { Step::Done } else { Step::Need };
                }
            }
        }
    }

    /// Where the buffer may be drained up to (the start of the element in progress).
    fn keep_from(&self) -> usize {
        match self.state {
            State::InElement { start } => start,
            _ => self.pos,
        }
    }

    /// Accounts for `drained` leaving the front of the buffer.
    fn consume(&mut self, drained: &[u8]) {
        let n = drained.len();
        self.consumed_bytes += n as u64;
        match drained.iter().rposition(|&b| b == b'\n') {
            Some(last) => {
                self.consumed_lines += drained.iter().filter(|&&b| b == b'\n').count() as u64;
                self.consumed_col = (n - last - 1) as u64;
            }
            None => self.consumed_col += n as u64,
        }
        self.pos -= n;
        if let State::InElement { start } = &mut self.state {
            *start -= n;
        }
    }

    /// 1-based line and column of buffer offset `at`.
    fn position(&self, buf: &[u8], at: usize) -> (u64, u64) {
        let before = &buf[..at.min(buf.len())];
        match before.iter().rposition(|&b| b == b'\n') {
            Some(last) => (
                self.consumed_lines + before.iter().filter(|&&b| b == b'\n').count() as u64 + 1,
                (at - last) as u64,
            ),
            None => (self.consumed_lines + 1, self.consumed_col + at as u64 + 1),
        }
    }

    /// The error for the element at `start`: "not UTF-8" when a byte up to where serde_json
    /// stopped is not UTF-8 (serde_json would call it an invalid code point), else its own.
    fn element_error(
        &self,
        buf: &[u8],
        start: usize,
        e: &serde_json::Error,
        shown: &str,
    ) -> crate::doc::ParseError {
        let el = &buf[start..];
        // serde_json's line and column (1-based, columns in bytes) as an offset into `el`.
        let mut at = 0usize;
        for _ in 1..e.line() {
            match el[at..].iter().position(|&b| b == b'\n') {
                Some(k) => at += k + 1,
                None => break,
            }
        }
        let upto = (at + e.column() + 4).min(el.len());
        if let Err(u) = std::str::from_utf8(&el[..upto]) {
            // `error_len` is None for a character cut by the end of the window: not an error.
            if u.error_len().is_some() {
                let bad = start + u.valid_up_to();
                let (line, column) = self.position(buf, bad);
                let bad = self.consumed_bytes + bad as u64;
                return crate::doc::ParseError {
                    file: shown.to_string(),
                    line: Some(line),
                    column: Some(column),
                    message: format!("not UTF-8 text (invalid byte at offset {bad})"),
                };
            }
        }
        // serde_json's position is relative to the element: rebase it on the file.
        let (l0, c0) = self.position(buf, start);
        let (line, column) = match (e.line() as u64, e.column() as u64) {
            (0, _) => (l0, c0),
            (1, c) => (l0, c0 + c.saturating_sub(1)),
            (l, c) => (l0 + l - 1, c),
        };
        let mut pe = crate::doc::ParseError::from_json(shown, e);
        pe.line = Some(line);
        pe.column = Some(column);
        pe
    }
}

#[cfg(test)]
mod stream_tests {
    use super::*;
    use crate::doc::Doc;

    fn via_file(text: &str, chunk: usize) -> Result<Vec<LogEntry>, (Option<u64>, Option<u64>)> {
        let dir = std::env::temp_dir().join(format!(
            "ipd-model-stream-{}-{}",
            std::process::id(),
            std::thread::current()
                .name()
                .unwrap_or("t")
                .replace(':', "_")
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("logs.json");
        std::fs::write(&f, text).unwrap();
        let r = read_logs_chunked(&f, "logs.json", chunk);
        let _ = std::fs::remove_dir_all(&dir);
        match r {
            Ok(Doc::Value(v)) => Ok(v.into_entries()),
            Ok(Doc::Error(_)) => Err((None, None)),
            Err(e) => Err((e.line, e.column)),
        }
    }

    fn via_text(text: &str) -> Result<Vec<LogEntry>, (Option<u64>, Option<u64>)> {
        match parse_logs("logs.json", text) {
            Ok(Doc::Value(v)) => Ok(v.into_entries()),
            Ok(Doc::Error(_)) => Err((None, None)),
            Err(e) => Err((e.line, e.column)),
        }
    }

    #[test]
    fn the_stream_reads_what_the_whole_text_reads_at_every_chunk_size() {
        let real = include_str!("../testdata/cloud-run-request-log-403-unauthenticated.json");
        let tricky = r#"{"insertId": "q\"}]{[,", "textPayload": "a ] } [ { , \\", "labels": {"k": "v\u00e9"}}"#;
        let cases = [
            format!("[{real},\n{tricky}, {real}]\n"),
            "[]".to_string(),
            " \n [ ] \n".to_string(),
            format!("{}[{tricky}]", "\u{feff}"),
            format!("[\n  {tricky},\n  {{\"insertId\": 7}}\n]"),
            format!("[{real}, ]"),
            format!("[{real} {real}]"),
            format!("[{real}] x"),
            "[{\"insertId\": \"a\"}".to_string(),
            "[1]".to_string(),
            "[,]".to_string(),
            format!("{{\"entries\": [{real}]}}"),
        ];
        for c in &cases {
            let want = via_text(c);
            for chunk in [1, 2, 3, 7, 64, 1 << 20] {
                let got = via_file(c, chunk);
                match (&want, &got) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b, "chunk {chunk}: {c}"),
                    (Err(_), Err((l, col))) => {
                        assert!(
                            l.is_some() && col.is_some(),
                            "chunk {chunk}: {c}: no position"
                        );
                    }
                    _ => panic!("chunk {chunk}: {c}: {want:?} vs {got:?}"),
                }
            }
        }
        // Where the whole-text parser and the stream both name a position, it is the same.
        let bad = "[\n  {\"insertId\": \"a\"},\n  {\"insertId\": 7}\n]";
        for chunk in [1, 5, 1 << 20] {
            assert_eq!(
                via_file(bad, chunk).unwrap_err(),
                via_text(bad).unwrap_err()
            );
        }
        assert_eq!(via_file(bad, 3).unwrap_err().0, Some(3));
    }

    #[test]
    fn two_threads_read_what_one_reads_even_when_the_middle_guess_is_inside_a_string() {
        let real = include_str!("../testdata/cloud-run-request-log-403-unauthenticated.json");
        // Strings full of `}, {` around the middle: the second thread's guess may start inside
        // one; the result must not change.
        let trap = r#"{"textPayload": "x}, {\"insertId\": \"fake\"}, {y"}"#;
        let mut parts = Vec::new();
        for i in 0..200 {
            parts.push(if i % 3 == 0 {
                trap.to_string()
            } else {
                real.to_string()
            });
        }
        let good = format!("[{}]", parts.join(",\n"));
        let bad_late = format!("[{}, {{\"insertId\": 7}}]", parts.join(","));
        let bad_early = format!("[{{\"insertId\": 7}}, {}]", parts.join(","));
        let dir = std::env::temp_dir().join(format!("ipd-model-split-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("logs.json");
        for text in [&good, &bad_late, &bad_early] {
            std::fs::write(&f, text).unwrap();
            let flat = |r: Result<Doc<LogsFile>, crate::doc::ParseError>| {
                r.map(|d| match d {
                    Doc::Value(v) => v.into_entries(),
                    Doc::Error(_) => panic!("not an error envelope"),
                })
            };
            let one = flat(read_logs_split(&f, "logs.json", 1 << 20, u64::MAX));
            for chunk in [4096, 1 << 20] {
                let two = flat(read_logs_split(&f, "logs.json", chunk, 0));
                match (&one, &two) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b),
                    (Err(a), Err(b)) => assert_eq!((a.line, a.column), (b.line, b.column)),
                    _ => panic!("one thread and two disagree"),
                }
            }
        }
        assert_eq!(
            match read_logs_split(&f, "logs.json", 4096, u64::MAX) {
                Err(e) => e.line,
                Ok(_) => None,
            },
            Some(1)
        );
        // Every offset of the good file as the second thread's start: only true entry starts
        // are taken, and the result is always the same.
        std::fs::write(&f, &good).unwrap();
        let want = match read_logs_split(&f, "logs.json", 1 << 20, u64::MAX) {
            Ok(Doc::Value(v)) => v.into_entries(),
            _ => panic!("good file"),
        };
        assert_eq!(want.len(), 200);
        let (mut taken, mut refused) = (0, 0);
        for at in (0..good.len() as u64).step_by(997) {
            let Some(mid) = entry_start_after(&f, at) else {
                continue;
            };
            let (a, b) = (
                scan(&f, "logs.json", 1 << 20, None, Some(mid)),
                scan(&f, "logs.json", 1 << 20, Some(mid), None),
            );
            if let (Ok(Scan::Entries(mut a, Some(m))), Ok(Scan::Entries(b, _))) = (a, b)
                && m == mid
            {
                a.extend(b);
                assert_eq!(a, want, "split at {mid}");
                taken += 1;
            } else {
                refused += 1;
            }
        }
        assert!(
            taken > 10 && refused >= 1,
            "taken {taken}, refused {refused}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn label_values_that_are_not_strings_do_not_lose_the_file() {
        let text = r#"[{"insertId": "a", "labels": {"n": 7, "b": true, "x": null, "o": {"k": 1}, "s": "v"},
            "resource": {"type": "cloud_run_revision", "labels": {"service_name": "orders-api", "k": [1]}}}]"#;
        let got = via_file(text, 1 << 20).unwrap();
        let l = &got[0].labels;
        assert_eq!(
            (l.get("n"), l.get("b"), l.get("s")),
            (Some("7"), Some("true"), Some("v"))
        );
        assert_eq!((l.get("x"), l.get("o")), (None, None));
        let r = got[0].resource.as_ref().unwrap();
        assert_eq!(r.labels.get("service_name"), Some("orders-api"));
        assert_eq!(r.labels.len(), 1);
    }

    #[test]
    fn an_element_larger_than_the_chunk_is_read_whole() {
        // One 300 KB entry through a 1 KiB chunk: the read grows until the element fits.
        let big = "x".repeat(300_000);
        let text = format!("[{{\"insertId\": \"a\"}}, {{\"textPayload\": \"{big}\"}}]");
        let got = via_file(&text, 1024).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].text_payload.as_deref().map(str::len), Some(300_000));
    }

    #[test]
    fn a_bad_byte_far_into_the_file_is_named_by_its_file_offset() {
        let real = include_str!("../testdata/cloud-run-request-log-403-unauthenticated.json");
        let head = format!("[{}", vec![real; 50].join(",\n"));
        let mut bytes = head.clone().into_bytes();
        bytes.extend_from_slice(b",\n{\"textPayload\": \"\xc3\x28\"}]");
        let dir = std::env::temp_dir().join(format!("ipd-model-utf8-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("logs.json");
        std::fs::write(&f, &bytes).unwrap();
        let bad = bytes.windows(2).position(|w| w == b"\xc3\x28").unwrap();
        let lines = bytes[..bad].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        for chunk in [512, 4096, 1 << 20] {
            let e = read_logs_chunked(&f, "logs.json", chunk).unwrap_err();
            assert_eq!(
                e.message,
                format!("not UTF-8 text (invalid byte at offset {bad})"),
                "chunk {chunk}"
            );
            assert_eq!(e.line, Some(lines), "chunk {chunk}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_stream_keeps_one_chunk_not_the_file() {
        // 2,000 entries through a 4 KiB window: every element crosses a chunk edge at some size.
        let real = include_str!("../testdata/cloud-run-request-log-403-unauthenticated.json");
        let text = format!("[{}]", vec![real; 2000].join(",\n"));
        let got = via_file(&text, 4096).unwrap();
        assert_eq!(got.len(), 2000);
        assert!(got.iter().all(|e| e.status() == Some(403)));
    }
}
