//! Cloud Logging entries (`gcloud logging read --format=json`, or an `entries:list` response).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::time::{Timestamp, parse_duration_secs, parse_rfc3339};

/// The log a Cloud Run request entry is written to (log id URL-encoded, as in `logName`).
pub const REQUEST_LOG_SUFFIX: &str = "/logs/run.googleapis.com%2Frequests";

/// Gate texts (facts §1.2, §1.3). Matched as substrings; both doc wordings are accepted.
pub const GATE_403: &str = "The request was not authenticated";
pub const GATE_401: &str = "not authorized to invoke this service";
pub const EMPTY_AUTHORIZATION: &str = "Empty Authorization header value";

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    pub log_name: Option<String>,
    pub resource: Option<MonitoredResource>,
    pub timestamp: Option<String>,
    pub receive_timestamp: Option<String>,
    pub severity: Option<String>,
    pub insert_id: Option<String>,
    pub http_request: Option<HttpRequest>,
    pub text_payload: Option<String>,
    pub json_payload: Option<Value>,
    pub proto_payload: Option<Value>,
    pub trace: Option<String>,
    pub span_id: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct MonitoredResource {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequest {
    pub request_method: Option<String>,
    pub request_url: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub status: Option<i64>,
    pub user_agent: Option<String>,
    pub remote_ip: Option<String>,
    pub referer: Option<String>,
    pub latency: Option<String>,
    pub protocol: Option<String>,
}

/// proto3 JSON writes int32 as a number, but some tools quote it; accept both.
fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(match v {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
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
        self.resource
            .as_ref()
            .and_then(|r| r.labels.get(k))
            .map(String::as_str)
    }

    /// The text a reader would search: `textPayload`, or `jsonPayload.message`.
    pub fn message(&self) -> Option<&str> {
        self.text_payload.as_deref().or_else(|| {
            self.json_payload
                .as_ref()
                .and_then(|j| j.get("message"))
                .and_then(Value::as_str)
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
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum LogsFile {
    List(Vec<LogEntry>),
    Response {
        #[serde(default)]
        entries: Vec<LogEntry>,
    },
}

impl LogsFile {
    pub fn into_entries(self) -> Vec<LogEntry> {
        match self {
            LogsFile::List(v) => v,
            LogsFile::Response { entries } => entries,
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
