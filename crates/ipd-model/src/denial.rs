//! Was anything denied at all? What the evidence says about the failing request's outcome,
//! derived once (the contract's `denial`), before any rule looks for a cause.
//!
//! Pure: [`derive`] reads the stated status (flags, `context.json`), the request-log entry
//! chosen as the failing request, and the logs. Other commands (incidents, scan) reuse
//! [`is_refusal_status`] and [`derive`].

use serde::Serialize;

use crate::audit;
use crate::logs::LogEntry;
use crate::time::{self, Timestamp};

/// The statuses a refusal on the way to a Cloud Run service gives: the gate (401, 403), IAP
/// (401, 403), VPC Service Controls (403) and ingress (404).
pub fn is_refusal_status(status: i64) -> bool {
    matches!(status, 401 | 403 | 404)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DenialState {
    /// The evidence shows a 401/403/404 (stated, or in the logs), or a VPC-SC / IAP refusal.
    Seen,
    /// The stated status is not a refusal, or the service's request logs hold only
    /// non-refusals: no rule may be `confirmed` or `likely`.
    NoneInEvidence,
    /// Neither: no status stated and no request log to read.
    Unknown,
}

impl DenialState {
    pub fn as_str(self) -> &'static str {
        match self {
            DenialState::Seen => "seen",
            DenialState::NoneInEvidence => "none_in_evidence",
            DenialState::Unknown => "unknown",
        }
    }
}

/// The contract's `denial` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Denial {
    pub state: DenialState,
    pub detail: String,
}

impl Denial {
    pub fn none_in_evidence(&self) -> bool {
        self.state == DenialState::NoneInEvidence
    }
}

/// What would turn "no denial in the evidence" into a diagnosis (for the reports).
pub const WHAT_WOULD_CHANGE_IT: &str = "Give the failing request's time (--at), the status the client saw (--status) or its trace ID (`invoker-doctor explain TRACE_ID`). Ingress and VPC Service Controls refusals leave no request-log entry at all, so a client's 404 or 403 can hide behind a log of successes.";

/// Where a stated status came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusSource {
    Flag,
    Context,
}

/// Derives the denial state.
///
/// - `stated`: the status the person said the client saw (`--status`, else `context.json`);
///   it overrides the logs.
/// - `entry`: the request-log entry chosen as the failing request (if any).
/// - `logs`: the logs read (None when no logs were read), `service` the service's name to
///   keep other services' entries out.
pub fn derive(
    stated: Option<(i64, StatusSource)>,
    entry: Option<&LogEntry>,
    logs: Option<&[LogEntry]>,
    service: Option<&str>,
) -> Denial {
    if let Some((status, from)) = stated {
        let from = match from {
            StatusSource::Flag => "--status",
            StatusSource::Context => "context.json",
        };
        return if is_refusal_status(status) {
            Denial {
                state: DenialState::Seen,
                detail: format!("the client saw {status} (from {from})"),
            }
        } else {
            Denial {
                state: DenialState::NoneInEvidence,
                detail: format!(
                    "the client saw {status} (from {from}), which is not a refusal (401, 403 or 404)"
                ),
            }
        };
    }
    if let Some(e) = entry
        && let Some(status) = e.status()
    {
        let id = e.insert_id.as_deref().unwrap_or("?");
        let at = e
            .time()
            .map(|t| format!(" at {}", time::fmt(&t)))
            .unwrap_or_default();
        return if is_refusal_status(status) {
            Denial {
                state: DenialState::Seen,
                detail: format!("request-log entry `{id}`{at} shows {status}"),
            }
        } else {
            Denial {
                state: DenialState::NoneInEvidence,
                detail: format!(
                    "the request named, log entry `{id}`{at}, returned {status}, which is not a refusal"
                ),
            }
        };
    }
    let Some(logs) = logs else {
        return Denial {
            state: DenialState::Unknown,
            detail: "no status was stated (--status, context.json) and no request log was read"
                .into(),
        };
    };
    if let Some(v) = audit::vpcsc_violations(logs).first() {
        return Denial {
            state: DenialState::Seen,
            detail: format!(
                "a VPC Service Controls refusal of a request to Cloud Run{} is in the audit log",
                v.time
                    .map(|t| format!(" at {}", time::fmt(&t)))
                    .unwrap_or_default()
            ),
        };
    }
    if let Some(d) = audit::iap_denials(logs).first() {
        return Denial {
            state: DenialState::Seen,
            detail: format!(
                "an IAP refusal{} is in the audit log",
                d.time
                    .map(|t| format!(" at {}", time::fmt(&t)))
                    .unwrap_or_default()
            ),
        };
    }
    let requests: Vec<&LogEntry> = logs
        .iter()
        .filter(|e| e.is_request_log() && e.status().is_some())
        .filter(|e| match (service, e.resource_label("service_name")) {
            (Some(svc), Some(label)) => label == svc,
            _ => true,
        })
        .collect();
    if let Some(r) = requests
        .iter()
        .find(|e| e.status().is_some_and(is_refusal_status))
    {
        // Not chosen as the failing request (e.g. far from --at), but a refusal all the same.
        return Denial {
            state: DenialState::Seen,
            detail: format!(
                "request-log entry `{}` shows {}",
                r.insert_id.as_deref().unwrap_or("?"),
                r.status().unwrap_or_default()
            ),
        };
    }
    if requests.is_empty() {
        return Denial {
            state: DenialState::Unknown,
            detail: "no status was stated (--status, context.json) and the logs hold no request-log entry for the service".into(),
        };
    }
    Denial {
        state: DenialState::NoneInEvidence,
        detail: successes_summary(&requests),
    }
}

/// "N request-log entries for the service from T1 to T2, none a refusal (statuses 200×N)".
fn successes_summary(requests: &[&LogEntry]) -> String {
    let mut statuses: std::collections::BTreeMap<i64, usize> = Default::default();
    for e in requests {
        if let Some(s) = e.status() {
            *statuses.entry(s).or_default() += 1;
        }
    }
    let times: Vec<Timestamp> = requests.iter().filter_map(|e| e.time()).collect();
    let span = match (times.iter().min(), times.iter().max()) {
        (Some(a), Some(b)) if a == b => format!(" at {}", time::fmt(a)),
        (Some(a), Some(b)) => format!(" from {} to {}", time::fmt(a), time::fmt(b)),
        _ => String::new(),
    };
    let n = requests.len();
    format!(
        "{n} request-log {} for the service{span}, none a refusal (status {})",
        if n == 1 { "entry" } else { "entries" },
        statuses
            .iter()
            .map(|(s, c)| format!("{s}×{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(status: i64, at: &str, svc: &str) -> LogEntry {
        serde_json::from_value(json!({
            "logName": "projects/p/logs/run.googleapis.com%2Frequests",
            "insertId": format!("id-{status}-{at}"),
            "timestamp": at,
            "resource": {"type": "cloud_run_revision", "labels": {"service_name": svc}},
            "httpRequest": {"status": status, "requestMethod": "GET"}
        }))
        .unwrap()
    }

    #[test]
    fn stated_status_overrides_logs() {
        let logs = [req(403, "2026-11-20T10:00:00Z", "s")];
        let d = derive(
            Some((200, StatusSource::Flag)),
            None,
            Some(&logs),
            Some("s"),
        );
        assert_eq!(d.state, DenialState::NoneInEvidence);
        assert!(d.detail.contains("200 (from --status)"), "{}", d.detail);
        let d = derive(
            Some((403, StatusSource::Context)),
            None,
            Some(&[]),
            Some("s"),
        );
        assert_eq!(d.state, DenialState::Seen);
        assert!(d.detail.contains("context.json"));
        // 5xx and 429 are failures, but not refusals.
        let d = derive(Some((503, StatusSource::Flag)), None, None, None);
        assert_eq!(d.state, DenialState::NoneInEvidence);
    }

    #[test]
    fn logs_of_successes_only_say_how_many_and_when() {
        let logs = [
            req(200, "2026-11-20T10:00:00Z", "s"),
            req(302, "2026-11-20T10:05:00Z", "s"),
            req(403, "2026-11-20T10:06:00Z", "other"),
        ];
        let d = derive(None, None, Some(&logs), Some("s"));
        assert_eq!(d.state, DenialState::NoneInEvidence);
        assert!(
            d.detail.starts_with("2 request-log entries"),
            "{}",
            d.detail
        );
        assert!(
            d.detail
                .contains("from 2026-11-20T10:00:00Z to 2026-11-20T10:05:00Z")
        );
        assert!(d.detail.contains("200×1, 302×1"), "{}", d.detail);
    }

    #[test]
    fn a_refusal_anywhere_in_the_service_logs_is_seen() {
        let logs = [
            req(200, "2026-11-20T10:00:00Z", "s"),
            req(404, "2026-11-20T09:00:00Z", "s"),
        ];
        assert_eq!(
            derive(None, None, Some(&logs), Some("s")).state,
            DenialState::Seen
        );
        let e = req(401, "2026-11-20T10:00:00Z", "s");
        assert_eq!(
            derive(None, Some(&e), Some(std::slice::from_ref(&e)), Some("s")).state,
            DenialState::Seen
        );
    }

    #[test]
    fn nothing_to_go_on_is_unknown() {
        assert_eq!(derive(None, None, None, None).state, DenialState::Unknown);
        let other = [req(200, "2026-11-20T10:00:00Z", "other")];
        assert_eq!(
            derive(None, None, Some(&other), Some("s")).state,
            DenialState::Unknown
        );
    }

    #[test]
    fn a_vpcsc_refusal_in_the_audit_log_is_seen() {
        let v: LogEntry = serde_json::from_value(json!({
            "logName": "projects/p/logs/cloudaudit.googleapis.com%2Fpolicy",
            "resource": {"type": "audited_resource", "labels": {"method": "run.googleapis.com/HttpIngress"}},
            "protoPayload": {"metadata": {"violationReason": "NO_MATCHING_ACCESS_LEVEL"}}
        }))
        .unwrap();
        let logs = [v, req(200, "2026-11-20T10:00:00Z", "s")];
        assert_eq!(
            derive(None, None, Some(&logs), Some("s")).state,
            DenialState::Seen
        );
    }
}
