//! Reading one evidence document: JSON or YAML, detected from content, with errors that
//! name the file, line and column.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value;

/// A document that could not be read. Displays as `FILE:LINE:COLUMN: MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    pub file: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{}:{}: {}", self.file, l, c, self.message),
            (Some(l), None) => write!(f, "{}:{}: {}", self.file, l, self.message),
            _ => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl ParseError {
    pub fn new(file: &str, message: impl Into<String>) -> Self {
        ParseError {
            file: file.to_string(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    pub(crate) fn from_json(file: &str, e: &serde_json::Error) -> Self {
        // serde_json appends " at line L column C" to its Display; keep the bare message.
        let msg = e.to_string();
        let bare = match msg.rfind(" at line ") {
            Some(i) => msg[..i].to_string(),
            None => msg,
        };
        ParseError {
            file: file.to_string(),
            line: (e.line() > 0).then_some(e.line() as u64),
            column: (e.line() > 0).then_some(e.column() as u64),
            message: format!("invalid JSON: {bare}"),
        }
    }

    fn from_yaml(file: &str, e: &serde_saphyr::Error) -> Self {
        let loc = e.location();
        let msg = e.to_string();
        let first = msg
            .lines()
            .next()
            .unwrap_or("invalid YAML")
            .trim()
            .to_string();
        ParseError {
            file: file.to_string(),
            line: loc.as_ref().map(|l| l.line()).filter(|l| *l > 0),
            column: loc.as_ref().map(|l| l.column()).filter(|c| *c > 0),
            message: format!("invalid YAML: {first}"),
        }
    }
}

/// The syntax a document was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Json,
    Yaml,
}

/// JSON when the first non-blank character opens an object or array, YAML otherwise.
pub fn detect(text: &str) -> Syntax {
    let t = text.trim_start_matches('\u{feff}').trim_start();
    match t.chars().next() {
        Some('{') | Some('[') => Syntax::Json,
        _ => Syntax::Yaml,
    }
}

/// A Google API error as printed in place of a resource (`{"error": {...}}`), which is what a
/// customer's file holds when the gcloud command that should have produced it was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: Option<i64>,
    pub status: Option<String>,
    pub message: String,
    /// `ErrorInfo.reason` when present (`IAM_PERMISSION_DENIED`, `SERVICE_DISABLED`, ...).
    pub reason: Option<String>,
    /// `ErrorInfo.metadata.permission`, or the permission named in the message.
    pub permission: Option<String>,
}

impl ApiError {
    /// Reads Google's error envelope from a JSON value, if the value is one.
    pub fn from_envelope(v: &Value) -> Option<ApiError> {
        let err = v.as_object()?.get("error")?.as_object()?;
        // A resource never has a top-level `error` object next to nothing else, but be strict:
        // the envelope has `code` or `status` or `message`.
        if !(err.contains_key("code") || err.contains_key("status") || err.contains_key("message"))
        {
            return None;
        }
        let message = err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut reason = None;
        let mut permission = None;
        if let Some(details) = err.get("details").and_then(Value::as_array) {
            for d in details {
                let is_info = d
                    .get("@type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.ends_with("google.rpc.ErrorInfo"));
                if is_info {
                    reason = d.get("reason").and_then(Value::as_str).map(str::to_string);
                    permission = d
                        .get("metadata")
                        .and_then(|m| m.get("permission"))
                        .and_then(Value::as_str)
                        .map(str::to_string);
                }
            }
        }
        if permission.is_none() {
            permission = permission_in_message(&message);
        }
        Some(ApiError {
            code: err.get("code").and_then(Value::as_i64),
            status: err
                .get("status")
                .and_then(Value::as_str)
                .map(str::to_string),
            message,
            reason,
            permission,
        })
    }

    /// True for a refusal (403 / PERMISSION_DENIED that is not an API-disabled error).
    pub fn is_permission_denied(&self) -> bool {
        let disabled = matches!(
            self.reason.as_deref(),
            Some("SERVICE_DISABLED" | "API_DISABLED")
        );
        // An explicit status other than PERMISSION_DENIED wins over the code: a 403 that did
        // not come from the API (a proxy's page) is recorded with status UNKNOWN.
        let status_ok = match self.status.as_deref() {
            Some(s) => s == "PERMISSION_DENIED",
            None => self.code == Some(403),
        };
        !disabled && status_ok
    }
}

/// `Permission 'run.services.get' denied on resource ...` → `run.services.get`.
fn permission_in_message(message: &str) -> Option<String> {
    let rest = message.split("Permission '").nth(1)?;
    let end = rest.find('\'')?;
    Some(rest[..end].to_string())
}

/// What reading a document gave: the typed value, or the API error that stood in its place.
#[derive(Debug)]
pub enum Doc<T> {
    Value(T),
    Error(ApiError),
}

/// YAML limits: evidence YAML (`gcloud ... --format=export`) has no anchors and a few hundred
/// nodes, so anchors, aliases and events are capped far below the parser's defaults; an alias
/// bomb is refused within milliseconds. Nesting stays at the parser's 64 levels.
pub const YAML_MAX_ALIASES: usize = 1_000;
pub const YAML_MAX_EVENTS: usize = 200_000;

fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_aliases = YAML_MAX_ALIASES;
    budget.max_anchors = YAML_MAX_ALIASES;
    budget.max_events = YAML_MAX_EVENTS;
    budget.max_recorded_anchor_events = YAML_MAX_EVENTS;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// Parses `text` (JSON or YAML) into `T`. `file` names the document in errors.
pub fn parse<T: DeserializeOwned>(file: &str, text: &str) -> Result<Doc<T>, ParseError> {
    let text = text.trim_start_matches('\u{feff}');
    match detect(text) {
        Syntax::Json => {
            let v: Value =
                serde_json::from_str(text).map_err(|e| ParseError::from_json(file, &e))?;
            if let Some(err) = ApiError::from_envelope(&v) {
                return Ok(Doc::Error(err));
            }
            // Parse again from text (not from the Value) so type errors keep their position.
            serde_json::from_str(text)
                .map(Doc::Value)
                .map_err(|e| ParseError::from_json(file, &e))
        }
        Syntax::Yaml => {
            if text.trim().is_empty() {
                return Err(ParseError::new(file, "the file is empty"));
            }
            serde_saphyr::from_str_with_options(text, yaml_options())
                .map(Doc::Value)
                .map_err(|e| ParseError::from_yaml(file, &e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_name_line_and_column() {
        let e = parse::<Value>("service.json", "{\n  \"a\": 1,\n  \"b\": }").unwrap_err();
        assert_eq!(e.file, "service.json");
        assert_eq!(e.line, Some(3));
        assert!(e.column.is_some());
        assert!(e.to_string().starts_with("service.json:3:"), "{e}");
    }

    #[test]
    fn yaml_errors_name_a_line() {
        let e = parse::<Value>("service.yaml", "a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(e.line.is_some(), "{e:?}");
        assert!(e.to_string().starts_with("service.yaml:"), "{e}");
    }

    #[test]
    fn envelope_becomes_api_error_with_permission() {
        let text = r#"{"error":{"code":403,"message":"Permission 'run.services.getIamPolicy' denied on resource 'x' (or it may not exist).","status":"PERMISSION_DENIED"}}"#;
        match parse::<Value>("service-iam-policy.json", text).unwrap() {
            Doc::Error(e) => {
                assert!(e.is_permission_denied());
                assert_eq!(e.permission.as_deref(), Some("run.services.getIamPolicy"));
            }
            Doc::Value(_) => panic!("envelope not recognised"),
        }
    }

    #[test]
    fn service_disabled_is_not_a_permission_refusal() {
        let v: Value = serde_json::json!({"error": {"code": 403, "status": "PERMISSION_DENIED",
            "message": "Cloud Logging API has not been used in project 1 before or it is disabled.",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED"}]}});
        let e = ApiError::from_envelope(&v).unwrap();
        assert!(!e.is_permission_denied());
    }
}
