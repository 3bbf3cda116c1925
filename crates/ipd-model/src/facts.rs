//! Facts derived from the evidence once, for every rule: the failing request, what the gate
//! said, who the caller is.

use serde::Serialize;

use crate::audit::{self, PublicAttempt, PublicAttemptKind};
use crate::denial::{self, Denial, StatusSource};
use crate::evidence::Evidence;
use crate::logs::{GateMessage, LogEntry};
use crate::principal::Principal;
use crate::time::{Timestamp, parse_rfc3339};

/// How far from `--at` a log entry may be and still be "the" failing request.
pub const MATCH_WINDOW_SECS: i64 = 300;

/// Where the caller's identity came from (the contract's `caller.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallerSource {
    Token,
    Flag,
    Bundle,
    Adc,
    CallerConfig,
    /// The owner's attempt to make the service public, in the Admin Activity audit log.
    AuditLog,
}

/// The owner wants the service public: who says so, and the audit entry when it is there.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Intent {
    /// `flag` (--expect-public), `bundle` (context.json) or `audit_log`.
    pub source: CallerSource,
    /// The newest attempt to make the service public in the audit log (applied or refused),
    /// whatever the source of the intent.
    pub attempt: Option<PublicAttempt>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Caller {
    pub principal: Principal,
    pub source: CallerSource,
    /// True when the caller stands for "anyone" because the owner wants a public service.
    pub public: bool,
}

/// What the gate did with the failing request, as far as the logs show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// 403 "not authenticated" (no token, or a token without permission).
    NotAuthenticated,
    /// 403 with "Empty Authorization header value.": no token at all.
    EmptyAuthorization,
    /// 401 "not authorized to invoke": the token was rejected.
    NotAuthorized,
    /// The entry has no gate text and a non-zero latency: the container answered.
    PassedGate,
    /// Logs were read, but there is no request entry for the failing request.
    NoLogEntry,
    /// There is an entry but it says nothing conclusive (no gate text, zero latency).
    Unclear,
    /// No logs.
    Unknown,
}

/// The failing request.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Request {
    pub status: Option<i64>,
    pub time: Option<Timestamp>,
    pub url: Option<String>,
    pub method: Option<String>,
    pub user_agent: Option<String>,
    pub log_insert_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub request: Request,
    /// The request-log entry of the failing request.
    pub entry: Option<LogEntry>,
    pub gate: Gate,
    pub caller: Option<Caller>,
    /// A caller named on the flag that differs from the token's identity.
    pub token_principal: Option<Principal>,
    pub expect_public: bool,
    /// Why the owner is taken to want the service public (None: no sign of it).
    pub intent: Option<Intent>,
    /// Was anything denied at all (the contract's `denial`)?
    pub denial: Denial,
}

impl Facts {
    pub fn derive(ev: &Evidence) -> Facts {
        let ctx_req = ev.context.as_ref().and_then(|c| c.request.as_ref());
        let stated = match (ev.inputs.status, ctx_req.and_then(|r| r.status)) {
            (Some(s), _) => Some((s, StatusSource::Flag)),
            (None, Some(s)) => Some((s, StatusSource::Context)),
            (None, None) => None,
        };
        let status_hint = stated.map(|(s, _)| s);
        let time_hint = ev.inputs.at.or_else(|| {
            ctx_req
                .and_then(|r| r.time.as_deref())
                .and_then(parse_rfc3339)
        });
        let entry = ev
            .logs
            .present()
            .and_then(|logs| match &ev.inputs.request_ref {
                Some(r) => logs
                    .iter()
                    .find(|e| e.insert_id.as_deref() == Some(r) || e.trace_id() == Some(r))
                    .cloned(),
                None => pick_entry(logs, status_hint, time_hint, ev.service_name().as_deref()),
            });
        let gate = match (&entry, ev.logs.is_present()) {
            (_, false) => Gate::Unknown,
            (None, true) => Gate::NoLogEntry,
            (Some(e), true) => match e.gate_message() {
                GateMessage::EmptyAuthorization => Gate::EmptyAuthorization,
                GateMessage::NotAuthenticated => Gate::NotAuthenticated,
                GateMessage::NotAuthorized => Gate::NotAuthorized,
                GateMessage::None if e.latency_secs().is_some_and(|l| l > 0.0) => Gate::PassedGate,
                GateMessage::None => Gate::Unclear,
            },
        };
        let request = Request {
            status: status_hint.or_else(|| entry.as_ref().and_then(LogEntry::status)),
            time: time_hint.or_else(|| entry.as_ref().and_then(LogEntry::time)),
            url: ctx_req
                .and_then(|r| r.url.clone())
                .or_else(|| entry.as_ref().and_then(|e| e.url().map(str::to_string))),
            method: ctx_req
                .and_then(|r| r.method.clone())
                .or_else(|| entry.as_ref().and_then(|e| e.method().map(str::to_string))),
            user_agent: entry
                .as_ref()
                .and_then(|e| e.user_agent().map(str::to_string)),
            log_insert_id: entry.as_ref().and_then(|e| e.insert_id.clone()),
        };
        let token_principal = ev.token.as_ref().and_then(|t| t.principal());
        let service = ev.service_name();
        let attempt = ev
            .logs
            .present()
            .and_then(|logs| audit::public_intent(logs, service.as_deref()));
        let intent_source = if ev.inputs.expect_public {
            Some(CallerSource::Flag)
        } else if ev.context.as_ref().and_then(|c| c.expect_public) == Some(true) {
            Some(CallerSource::Bundle)
        } else if attempt.is_some() {
            Some(CallerSource::AuditLog)
        } else {
            None
        };
        let intent = intent_source.map(|source| Intent { source, attempt });
        let expect_public = intent.is_some();
        let caller = if let Some(c) = &ev.inputs.caller {
            Some(Caller {
                principal: Principal::parse(c),
                source: CallerSource::Flag,
                public: false,
            })
        } else if let Some(p) = &token_principal {
            Some(Caller {
                principal: p.clone(),
                source: CallerSource::Token,
                public: false,
            })
        } else if let Some(c) = ev.context.as_ref().and_then(|c| c.caller.as_ref()) {
            Some(Caller {
                principal: Principal::parse(c),
                source: CallerSource::Bundle,
                public: false,
            })
        } else if let Some(sa) = ev.caller_configs.iter().find_map(|c| c.service_account()) {
            Some(Caller {
                principal: Principal::from_email(sa),
                source: CallerSource::CallerConfig,
                public: false,
            })
        } else if let Some(i) = &intent {
            let principal = match i.attempt.as_ref().map(|a| &a.kind) {
                Some(PublicAttemptKind::Grant { member, .. }) => Principal::parse(member),
                _ => Principal::AllUsers,
            };
            Some(Caller {
                principal,
                source: i.source,
                public: true,
            })
        } else {
            None
        };
        let denial = denial::derive(
            stated,
            entry.as_ref(),
            ev.logs.present().map(Vec::as_slice),
            service.as_deref(),
        );
        Facts {
            denial,
            request,
            entry,
            gate,
            caller,
            token_principal,
            expect_public,
            intent,
        }
    }

    /// The status the client saw, if known.
    pub fn status(&self) -> Option<i64> {
        self.request.status
    }
}

/// Chooses the request-log entry of the failing request.
fn pick_entry(
    logs: &[LogEntry],
    status: Option<i64>,
    at: Option<Timestamp>,
    service: Option<&str>,
) -> Option<LogEntry> {
    let wanted = |s: i64| match status {
        Some(want) => s == want,
        None => matches!(s, 401 | 403 | 404),
    };
    let candidates = logs.iter().filter(|e| {
        e.is_request_log()
            && e.status().is_some_and(wanted)
            && match (service, e.resource_label("service_name")) {
                (Some(svc), Some(label)) => label == svc,
                _ => true,
            }
    });
    match at {
        Some(at) => candidates
            .filter_map(|e| e.time().map(|t| ((t - at).num_seconds().abs(), e)))
            .filter(|(d, _)| *d <= MATCH_WINDOW_SECS)
            .min_by_key(|(d, _)| *d)
            .map(|(_, e)| e.clone()),
        // Newest first (gcloud's order), but sort to be independent of file order.
        None => candidates.max_by_key(|e| e.time()).cloned(),
    }
}
