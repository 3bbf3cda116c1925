//! The report: ranked findings, the checklist, gaps. Serializes to the contract's JSON.

use serde::Serialize;

use ipd_model::Evidence;
use ipd_model::denial::Denial;
use ipd_model::evidence::Gap;
use ipd_model::facts::Gate;
use ipd_model::time;
use ipd_model::token::{Claims, TokenKind};

use crate::crosscheck::{CrossCheck, cross_check};
use crate::cx::Cx;
use crate::fix::{Fix, FixKind, Safety};
use crate::registry::RULES;
use crate::rule::{Outcome, Severity, Verdict};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema_version: u32,
    /// Was anything denied at all? Derived once, before any rule (the contract's `denial`).
    pub denial: Denial,
    pub target: Target,
    pub request: RequestOut,
    pub caller: CallerOut,
    /// The caller's token as decoded (never verified, never in full); null when none was given.
    pub token: Option<TokenOut>,
    pub findings: Vec<Finding>,
    pub checks: Vec<CheckOut>,
    pub gaps: Vec<Gap>,
    /// Policy Troubleshooter's verdict beside the tool's (not in contract v1's list; extra);
    /// absent when the evidence holds no troubleshooter answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cross_check: Option<CrossCheck>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub project: Option<String>,
    pub region: Option<String>,
    pub service: Option<String>,
    pub urls: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RequestOut {
    pub status: Option<i64>,
    pub time: Option<String>,
    pub url: Option<String>,
    pub method: Option<String>,
    pub user_agent: Option<String>,
    pub log_insert_id: Option<String>,
    /// What the gate did, as far as the logs show (not in contract v1's list; extra).
    pub gate: Gate,
}

#[derive(Debug, Clone, Serialize)]
pub struct CallerOut {
    pub principal: Option<String>,
    pub source: Option<ipd_model::facts::CallerSource>,
    /// Why the owner is taken to want the service public (not in contract v1's list; extra):
    /// null when nothing says so.
    pub intent: Option<IntentOut>,
}

/// The owner's intent to make the service public, and the audit entry showing it.
#[derive(Debug, Clone, Serialize)]
pub struct IntentOut {
    /// `flag`, `bundle` or `audit_log`.
    pub source: ipd_model::facts::CallerSource,
    pub insert_id: Option<String>,
    pub time: Option<String>,
    /// Who made the attempt.
    pub principal: Option<String>,
    pub method: Option<String>,
    /// What was attempted ("grant `roles/run.invoker` to `allUsers`").
    pub attempted: Option<String>,
    /// Whether the attempt was refused (its status code is not 0).
    pub refused: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenOut {
    #[serde(flatten)]
    pub kind: TokenKind,
    /// Always false: the tool decodes tokens, it never verifies signatures.
    pub verified: bool,
    pub redacted: String,
    pub claims: Option<Claims>,
    pub signature_removed_by_google: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub rank: usize,
    pub code: &'static str,
    pub cause: &'static str,
    pub verdict: Verdict,
    pub severity: Severity,
    pub title: String,
    pub explanation: String,
    pub evidence: Vec<String>,
    pub fixes: Vec<FixOut>,
    /// Why this finding ranks where it does.
    pub rank_reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FixOut {
    pub kind: FixKind,
    pub text: String,
    pub title: String,
    pub safety: Safety,
}

impl From<&Fix> for FixOut {
    fn from(f: &Fix) -> FixOut {
        FixOut {
            kind: f.kind,
            text: f.rendered(),
            title: f.title.clone(),
            safety: f.safety,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckState {
    Fired,
    Passed,
    Skipped,
    NotApplicable,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckOut {
    pub code: &'static str,
    pub cause: &'static str,
    pub outcome: CheckState,
    pub reason: String,
}

impl Report {
    /// True when at least one finding is confirmed or likely (exit status 1).
    pub fn has_actionable(&self) -> bool {
        self.findings.iter().any(|f| f.verdict >= Verdict::Likely)
    }

    pub fn root_cause(&self) -> Option<&Finding> {
        self.findings.first()
    }
}

/// Runs every rule of the registry over the evidence and ranks what fired.
pub fn diagnose(ev: &Evidence) -> Report {
    // A multi-region service: read the region the request reached.
    let focused = ipd_model::regions::focus_on_request_region(ev);
    let ev = focused.as_ref().unwrap_or(ev);
    let cx = Cx::new(ev);
    let region_line = ipd_model::regions::region_line(ev, &cx.facts);
    // A finding about a multi-region service names its region in the title too.
    let in_region = ev
        .service
        .present()
        .filter(|s| s.is_multi_region())
        .and_then(|s| s.region.clone())
        .map(|r| format!(" in region `{r}`"));
    let mut fired = Vec::new();
    let mut checks = Vec::new();
    for (pos, rule) in RULES.iter().enumerate() {
        let meta = rule.meta();
        let (outcome, reason) = match cx.denial_policy(meta, || rule.run(&cx)) {
            Outcome::Fired(body, fixes) => {
                let reason = body.title.clone();
                fired.push((pos, meta, body, fixes));
                (CheckState::Fired, reason)
            }
            Outcome::Passed(r) => (CheckState::Passed, r),
            Outcome::Skipped(r) => (CheckState::Skipped, r),
            Outcome::NotApplicable(r) => (CheckState::NotApplicable, r),
        };
        checks.push(CheckOut {
            code: meta.code,
            cause: meta.cause,
            outcome,
            reason,
        });
    }
    // Verdict, then severity, then registry position (earlier in the request path first).
    fired.sort_by(|a, b| {
        b.2.verdict
            .cmp(&a.2.verdict)
            .then(b.1.severity.cmp(&a.1.severity))
            .then(a.0.cmp(&b.0))
    });
    let findings: Vec<Finding> = fired
        .into_iter()
        .enumerate()
        .map(|(i, (pos, meta, body, fixes))| Finding {
            rank: i + 1,
            code: meta.code,
            cause: meta.cause,
            verdict: body.verdict,
            severity: meta.severity,
            rank_reason: format!(
                "{} verdict, {} severity, position {} of {} in the request path",
                body.verdict.as_str(),
                meta.severity.as_str(),
                pos + 1,
                RULES.len()
            ),
            title: format!("{}{}", body.title, in_region.as_deref().unwrap_or("")),
            explanation: body.explanation,
            evidence: body
                .evidence
                .into_iter()
                .chain(region_line.clone())
                .collect(),
            fixes: fixes.iter().map(FixOut::from).collect(),
        })
        .collect();
    let f = &cx.facts;
    Report {
        schema_version: SCHEMA_VERSION,
        denial: f.denial.clone(),
        target: Target {
            project: ev.project(),
            region: ev.region(),
            service: ev.service_name(),
            urls: ev
                .service
                .present()
                .map(|s| s.urls.clone())
                .unwrap_or_default(),
        },
        request: RequestOut {
            status: f.request.status,
            time: f.request.time.as_ref().map(time::fmt),
            url: f.request.url.clone(),
            method: f.request.method.clone(),
            user_agent: f.request.user_agent.clone(),
            log_insert_id: f.request.log_insert_id.clone(),
            gate: f.gate,
        },
        caller: CallerOut {
            principal: f.caller.as_ref().map(|c| c.principal.to_string()),
            source: f.caller.as_ref().map(|c| c.source),
            intent: f.intent.as_ref().map(|i| {
                let a = i.attempt.as_ref();
                IntentOut {
                    source: i.source,
                    insert_id: a.and_then(|a| a.insert_id.clone()),
                    time: a.and_then(|a| a.time.as_ref().map(time::fmt)),
                    principal: a.and_then(|a| a.principal.clone()),
                    method: a.and_then(|a| a.method.clone()),
                    attempted: a.map(|a| a.what()),
                    refused: a.map(|a| a.refused()),
                }
            }),
        },
        token: ev.token.as_ref().map(|t| TokenOut {
            kind: t.kind.clone(),
            verified: false,
            redacted: t.raw.redacted(),
            claims: t.claims.clone(),
            signature_removed_by_google: t.signature_removed,
        }),
        cross_check: cross_check(&cx, &findings),
        findings,
        checks,
        gaps: ev.gaps(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use ipd_model::Gathered;
    use ipd_model::denial::DenialState;
    use serde_json::json;

    /// A caller bound nowhere, with the invoker check on: `missing_invoker_binding` material.
    fn unbound(logs: Vec<ipd_model::logs::LogEntry>) -> Evidence {
        let mut ev = base();
        ev.service_policy = policy(json!({"etag": "ACAB"}));
        ev.project_policy = policy(json!({"etag": "ACAB"}));
        ev.inputs.caller = Some(format!("serviceAccount:{SA}"));
        ev.logs = Gathered::Present(logs);
        ev
    }

    #[test]
    fn a_refusal_in_the_logs_lets_rules_confirm() {
        let r = diagnose(&unbound(vec![entry(403, Some(TEXT_403), "0s", "GET")]));
        assert_eq!(r.denial.state, DenialState::Seen);
        assert_eq!(r.findings[0].cause, "missing_invoker_binding");
        assert!(r.has_actionable());
    }

    #[test]
    fn no_denial_makes_refusal_rules_not_applicable_and_caps_the_rest() {
        let r = diagnose(&unbound(vec![entry(200, None, "0.02s", "GET")]));
        assert_eq!(r.denial.state, DenialState::NoneInEvidence);
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert!(!r.has_actionable());
        let mib = r
            .checks
            .iter()
            .find(|c| c.cause == "missing_invoker_binding")
            .expect("check");
        assert_eq!(mib.outcome, CheckState::NotApplicable);
        assert!(mib.reason.contains("no denial in the evidence"));

        // A cause that stands on its own evidence (the owner's refused public grant) still
        // fires, but only as possible.
        let mut ev = unbound(vec![entry(200, None, "0.02s", "GET")]);
        ev.inputs.caller = None;
        ev.inputs.expect_public = true;
        ev.org_policies = Gathered::Present(
            serde_json::from_value(
                json!([{"name": "projects/1/policies/iam.allowedPolicyMemberDomains",
                "spec": {"rules": [{"values": {"allowedValues": ["C0abc"]}}]}}]),
            )
            .unwrap(),
        );
        let r = diagnose(&ev);
        let f = r
            .findings
            .iter()
            .find(|f| f.cause == "public_access_blocked_by_domain_restriction")
            .expect("fires");
        assert_eq!(f.verdict, Verdict::Possible);
        assert!(
            f.explanation
                .contains("No request was refused in the evidence")
        );
        assert!(!r.has_actionable());
    }

    #[test]
    fn a_stated_success_overrides_a_refusal_in_the_logs() {
        let mut ev = unbound(vec![entry(403, Some(TEXT_403), "0s", "GET")]);
        ev.inputs.status = Some(204);
        let r = diagnose(&ev);
        assert_eq!(r.denial.state, DenialState::NoneInEvidence);
        assert!(!r.has_actionable());
    }
}
