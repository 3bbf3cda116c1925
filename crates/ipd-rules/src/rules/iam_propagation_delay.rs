use chrono::Duration;
use ipd_model::Principal;
use ipd_model::audit::{binding_changes, invoker_check_changes};
use ipd_model::principal::Coverage;
use ipd_model::roles::{Grants, grants_invoke};
use ipd_model::time::{Timestamp, fmt};

use crate::cx::Cx;
use crate::declare_rule;
use crate::fix::Fix;
use crate::rule::{Body, Check, RuleImpl, RuleMeta, Verdict};

declare_rule! {
    /// ## What it checks
    /// Whether the change that should let the caller in — an IAM binding granting it
    /// `run.routes.invoke`, or disabling the invoker check for a public service — was made
    /// shortly before the failing request (Admin Activity audit logs), or after it.
    ///
    /// ## Why it breaks the request
    /// IAM allow-policy changes take effect after a delay: "typically 2 minutes, potentially 7
    /// minutes or longer"; group membership changes can take hours. A request in that window
    /// is refused with 403 although the policy already shows the grant. A grant made after
    /// the failure explains it too: the request simply came first.
    ///
    /// ## Evidence used
    /// `SetIamPolicy` entries in the Admin Activity audit log (`logs.json`, their
    /// `serviceData.policyDelta.bindingDeltas`), service updates that change
    /// `invokerIamDisabled`, and the request time. Skipped without a request time or logs.
    ///
    /// ## Example
    /// `fixtures/propagation-grant-two-minutes-before`
    ///
    /// ## Fix
    /// Wait until seven minutes after the change and retry; if it still fails after that,
    /// the other findings apply.
    ///
    /// ## Fix safety
    /// Waiting is safe.
    ///
    /// ## References
    /// - https://cloud.google.com/iam/docs/access-change-propagation
    pub struct IamPropagationDelay {
        code: "IPD025",
        name: "iam-propagation-delay",
        cause: "iam_propagation_delay",
        title: "the grant is newer than IAM propagation allows",
        severity: High,
    }
}

/// Allow-policy changes: "typically 2 minutes, potentially 7 minutes or longer".
pub const TYPICAL_SECS: i64 = 120;
pub const WINDOW_SECS: i64 = 420;

pub struct State {
    change_at: Timestamp,
    request_at: Timestamp,
    what: String,
    actor: Option<String>,
}

impl RuleImpl for IamPropagationDelay {
    type State = State;

    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Cx) -> Check<State> {
        let Some(logs) = cx.ev.logs.present() else {
            return Check::Skip(format!(
                "no audit logs: {}",
                cx.ev.logs.absence().unwrap_or_default()
            ));
        };
        let Some(at) = cx.facts.request.time else {
            return Check::Skip("the request time is unknown (pass --at)".into());
        };
        let Some(caller) = cx.caller() else {
            return Check::Skip("the caller is unknown (pass --caller or --token)".into());
        };
        let mut candidates: Vec<(Timestamp, String, Option<String>)> = Vec::new();
        for c in binding_changes(logs) {
            if c.action != "ADD" || grants_invoke(&c.role, &cx.ev.custom_roles) != Grants::Yes {
                continue;
            }
            if Principal::parse(&c.member).covers(&caller.principal) == Coverage::Yes
                && let Some(t) = c.time
            {
                let on = c
                    .resource
                    .as_deref()
                    .map(|r| format!(" on `{r}`"))
                    .unwrap_or_default();
                candidates.push((
                    t,
                    format!("`{}` granted to `{}`{on}", c.role, c.member),
                    c.actor.clone(),
                ));
            }
        }
        if caller.public || cx.facts.expect_public {
            for c in invoker_check_changes(logs)
                .into_iter()
                .filter(|c| c.disabled)
            {
                if let Some(t) = c.time {
                    candidates.push((t, "the invoker IAM check disabled".into(), c.actor.clone()));
                }
            }
        }
        if candidates.is_empty() {
            return Check::Pass("no grant for the caller in the audit logs provided".into());
        }
        // The change nearest before the request, or else the first one after it.
        let before = candidates
            .iter()
            .filter(|(t, _, _)| *t <= at)
            .max_by_key(|(t, _, _)| *t);
        let after = candidates
            .iter()
            .filter(|(t, _, _)| *t > at)
            .min_by_key(|(t, _, _)| *t);
        let pick = match (before, after) {
            (Some(b), _) if (at - b.0).num_seconds() <= WINDOW_SECS => b,
            (_, Some(a)) => a,
            (Some(b), None) => {
                return Check::Pass(format!(
                    "the grant ({}) was made at {}, {} min before the request: propagated",
                    b.1,
                    fmt(&b.0),
                    (at - b.0).num_minutes()
                ));
            }
            (None, None) => return Check::Pass("no grant near the request".into()),
        };
        Check::Fire(State {
            change_at: pick.0,
            request_at: at,
            what: pick.1.clone(),
            actor: pick.2.clone(),
        })
    }

    fn finding(&self, s: &State, _cx: &Cx) -> Body {
        let delta = (s.request_at - s.change_at).num_seconds();
        let retry_at = s.change_at + Duration::seconds(WINDOW_SECS);
        let mut evidence = vec![format!(
            "audit log: {} at {}{}",
            s.what,
            fmt(&s.change_at),
            s.actor
                .as_deref()
                .map(|a| format!(" by `{a}`"))
                .unwrap_or_default()
        )];
        evidence.push(format!("failing request at {}", fmt(&s.request_at)));
        let (title, explanation) = if delta < 0 {
            (
                format!("the grant was made {} s after the failing request", -delta),
                format!(
                    "The change that lets the caller in ({}) was made after the request failed, so the failure predates it. Retry now (allowing for propagation until {}).",
                    s.what,
                    fmt(&retry_at)
                ),
            )
        } else {
            (
                format!(
                    "the grant was made {delta} s before the failing request, inside IAM's propagation window"
                ),
                format!(
                    "IAM changes take effect after a delay: typically {} minutes, potentially {} minutes or longer (group membership changes longer still). The request came {delta} s after the change, so it was likely checked against the old policy. Retry after {}.",
                    TYPICAL_SECS / 60,
                    WINDOW_SECS / 60,
                    fmt(&retry_at)
                ),
            )
        };
        Body {
            verdict: Verdict::Likely,
            title,
            explanation,
            evidence,
        }
    }

    fn fixes(&self, s: &State, _cx: &Cx) -> Vec<Fix> {
        vec![Fix::note(
            format!(
                "retry after {}",
                fmt(&(s.change_at + Duration::seconds(WINDOW_SECS)))
            ),
            "If the request still fails well after the propagation window, the grant does not cover the caller that is actually sent: re-run the diagnosis with the token the client sends.",
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use ipd_model::Gathered;
    use serde_json::json;

    fn ev(grant_at: &str) -> ipd_model::Evidence {
        let mut ev = base();
        ev.token = Some(sa_token(URL));
        let audit: ipd_model::logs::LogEntry = serde_json::from_value(json!({
            "logName": "projects/shop-prod/logs/cloudaudit.googleapis.com%2Factivity", "timestamp": grant_at,
            "protoPayload": {"methodName": "google.cloud.run.v2.Services.SetIamPolicy", "resourceName": "projects/shop-prod/locations/europe-west1/services/orders-api",
                "serviceData": {"policyDelta": {"bindingDeltas": [{"action": "ADD", "role": "roles/run.invoker", "member": format!("serviceAccount:{SA}")}]}}}
        })).unwrap();
        ev.logs = Gathered::Present(vec![entry(403, Some(TEXT_403), "0s", "GET"), audit]); // request at 10:15:00
        ev
    }

    #[test]
    fn recent_grant_fires_old_grant_passes() {
        assert_eq!(
            fired(&run(&IamPropagationDelay, &ev("2026-11-20T10:13:30Z"))),
            Some(Verdict::Likely)
        );
        assert_eq!(
            fired(&run(&IamPropagationDelay, &ev("2026-11-20T10:20:00Z"))),
            Some(Verdict::Likely)
        );
        assert!(matches!(
            run(&IamPropagationDelay, &ev("2026-11-20T09:00:00Z")),
            crate::Outcome::Passed(_)
        ));
    }
}
