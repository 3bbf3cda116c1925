use ipd_model::Principal;
use ipd_model::audit::{
    PERMISSION_DENIED, PublicAttempt, PublicAttemptKind, access_attempts, has_activity_entries,
};
use ipd_model::principal::Coverage;

use crate::cx::Cx;
use crate::declare_rule;
use crate::fix::{Arg, Fix, Safety};
use crate::rule::{Body, Check, RuleImpl, RuleMeta, Verdict};

declare_rule! {
    /// ## What it checks
    /// The Admin Activity audit log holds an attempt to make the service public (a
    /// `SetIamPolicy` adding `allUsers` / `allAuthenticatedUsers` to an invoke role, or an
    /// update disabling the invoker check) or to grant the caller an invoke role, refused with
    /// `status.code` 7 (`PERMISSION_DENIED`) because the principal making it lacked
    /// `run.services.setIamPolicy`; and the binding (or switch) is still not in place.
    ///
    /// ## Why it breaks the request
    /// `gcloud run deploy --allow-unauthenticated`, Firebase and Terraform deploys set the
    /// `allUsers` binding in a separate `SetIamPolicy` call. When the deployer lacks
    /// `run.services.setIamPolicy` (`roles/run.developer` does not have it), the deploy itself
    /// succeeds, the binding never lands and the service stays private: every anonymous
    /// request gets 403. Disabling the invoker check needs the same permission ("Changes to
    /// invoker_iam_disabled require run.services.setIamPolicy permissions").
    ///
    /// ## Evidence used
    /// Admin Activity audit entries for the service (`logs.json`: `methodName`, `status`,
    /// `request.policy` or `serviceData.policyDelta`, `authenticationInfo.principalEmail`), the
    /// service's IAM policy and invoker-check setting, the caller.
    ///
    /// ## Example
    /// `fixtures/public-grant-refused-deployer-lacks-set-iam-policy`
    ///
    /// ## Fix
    /// Have an account with `run.services.setIamPolicy` (`roles/run.admin`, or a project
    /// owner) make the binding, or grant the deployer `roles/run.admin` on the service and
    /// deploy again; or disable the invoker check (which needs the same permission).
    ///
    /// ## Fix safety
    /// Making the service public lets anyone call it, and `roles/run.admin` lets the deployer
    /// change who may: review both.
    ///
    /// ## References
    /// - https://cloud.google.com/run/docs/authenticating/public
    /// - https://cloud.google.com/run/docs/securing/managing-access
    /// - https://github.com/google-github-actions/deploy-cloudrun/issues/473
    pub struct PublicGrantNotApplied {
        code: "IPD026",
        name: "public-grant-not-applied",
        cause: "public_grant_not_applied",
        title: "an attempt to make the service public (or grant the caller) was refused: the deployer lacks `run.services.setIamPolicy`",
        severity: Critical,
        needs_refusal: false,
    }
}

pub struct State {
    attempt: PublicAttempt,
    /// The current service policy was read (the binding's absence is seen, not assumed).
    policy_read: bool,
}

impl RuleImpl for PublicGrantNotApplied {
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
        // Request logs alone say nothing about refused grants: not a pass.
        if !has_activity_entries(logs) {
            return Check::Skip(
                "the logs hold no Admin Activity audit entries (`cloudaudit.googleapis.com%2Factivity`), so a refused grant cannot be seen".into(),
            );
        }
        let service = cx.ev.service_name();
        let caller = cx.caller().filter(|c| !c.public).map(|c| &c.principal);
        let refused: Vec<PublicAttempt> = access_attempts(logs, service.as_deref())
            .into_iter()
            .filter(|a| {
                a.status
                    .as_ref()
                    .is_some_and(|s| s.code == PERMISSION_DENIED)
            })
            .filter(|a| {
                a.is_public()
                    || match (&a.kind, caller) {
                        (PublicAttemptKind::Grant { member, .. }, Some(c)) => {
                            Principal::parse(member).covers(c) == Coverage::Yes
                        }
                        _ => false,
                    }
            })
            .collect();
        let Some(attempt) = refused.into_iter().last() else {
            return Check::Pass(
                "no refused (PERMISSION_DENIED) grant or invoker-check change for the service in the audit logs".into(),
            );
        };
        // Did it land after all (a later attempt by someone who could)?
        if attempt.is_public() && cx.public_on_purpose() {
            return Check::Pass(format!(
                "an attempt to make the service public was refused ({}), but the service is public now",
                attempt.insert_id.as_deref().unwrap_or("?")
            ));
        }
        if !attempt.is_public() && !cx.iam.definite.is_empty() {
            return Check::Pass(
                "a grant to the caller was refused once, but the caller holds an invoke role now"
                    .into(),
            );
        }
        Check::Fire(State {
            attempt,
            policy_read: cx.ev.service_policy.is_present(),
        })
    }

    fn finding(&self, s: &State, cx: &Cx) -> Body {
        let svc = cx.service_name_or("SERVICE");
        let a = &s.attempt;
        let who = a.principal.as_deref().unwrap_or("the deployer");
        let mut evidence = vec![a.describe()];
        if let Some(line) = cx.caller_line() {
            evidence.push(line);
        }
        if s.policy_read {
            evidence.push(match &a.kind {
                PublicAttemptKind::Grant { member, .. } => {
                    format!(
                        "service `{svc}`'s IAM policy still has no invoke binding for `{member}`"
                    )
                }
                PublicAttemptKind::DisableInvokerCheck => {
                    format!("service `{svc}`: the invoker check is still on")
                }
            });
        } else if let Some(why) = cx.ev.service_policy.absence() {
            evidence.push(format!("service IAM policy not available: {why}"));
        }
        if let Some(st) = cx.status() {
            evidence.push(format!("the client saw {st}"));
        }
        let verdict = if s.policy_read {
            Verdict::Confirmed
        } else {
            Verdict::Likely
        }
        .min(cx.iam_verdict_cap());
        let when = a
            .time
            .map(|t| format!(" at {}", ipd_model::time::fmt(&t)))
            .unwrap_or_default();
        Body {
            verdict,
            title: format!(
                "`{who}` tried to {} on `{svc}`{when}, but lacked `run.services.setIamPolicy`: it never applied",
                a.what()
            ),
            explanation: format!(
                "The audit log shows the attempt refused with PERMISSION_DENIED (code 7). A deploy with `--allow-unauthenticated` (or a Firebase / Terraform deploy) succeeds even when its separate SetIamPolicy call fails, so the service stayed {}. The principal that made the attempt needs `run.services.setIamPolicy` on the service (in `roles/run.admin`, not in `roles/run.developer`), or someone who has it must make the change.",
                if a.is_public() {
                    "private and anonymous requests get 403"
                } else {
                    "closed to the caller"
                }
            ),
            evidence,
        }
    }

    fn fixes(&self, s: &State, cx: &Cx) -> Vec<Fix> {
        let a = &s.attempt;
        let mut v = Vec::new();
        match &a.kind {
            PublicAttemptKind::Grant { role, member } => v.push(Fix::command(
                format!(
                    "as an account with `run.services.setIamPolicy`, grant `{role}` to `{member}`"
                ),
                cx.grant_argv(member, role),
                Safety::NeedsReview,
            )),
            PublicAttemptKind::DisableInvokerCheck => v.push(Fix::command(
                "as an account with `run.services.setIamPolicy`, disable the invoker IAM check",
                cx.update_argv(&["--no-invoker-iam-check"]),
                Safety::NeedsReview,
            )),
        }
        let deployer = match a.principal.as_deref() {
            Some(p) => Arg::lit(format!("--member={}", Principal::from_email(p))),
            None => Arg::FlagPlaceholder("--member", "DEPLOYER"),
        };
        v.push(Fix::command(
            "or let the deployer do it: grant it `roles/run.admin` on the service, then deploy again",
            vec![
                "gcloud".into(),
                "run".into(),
                "services".into(),
                "add-iam-policy-binding".into(),
                cx.service_arg(),
                cx.region_flag(),
                cx.project_flag(),
                deployer,
                Arg::lit("--role=roles/run.admin"),
            ],
            Safety::NeedsReview,
        ));
        if matches!(a.kind, PublicAttemptKind::Grant { .. }) && a.is_public() {
            v.push(Fix::command(
                "or make it public by disabling the invoker IAM check (needs the same permission)",
                cx.update_argv(&["--no-invoker-iam-check"]),
                Safety::NeedsReview,
            ));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use ipd_model::Gathered;
    use serde_json::{Value, json};

    /// A refused `SetIamPolicy` adding `member`, as the Admin Activity log records it.
    pub fn refused_set_iam(member: &str, code: i64, message: &str) -> Value {
        json!({
            "insertId": "1x7k2ce1a2b3",
            "logName": "projects/shop-prod/logs/cloudaudit.googleapis.com%2Factivity",
            "timestamp": "2026-11-20T09:58:12.402118Z",
            "protoPayload": {
                "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
                "status": {"code": code, "message": message},
                "authenticationInfo": {"principalEmail": "deployer@shop-prod.iam.gserviceaccount.com"},
                "serviceName": "run.googleapis.com",
                "methodName": "google.cloud.run.v1.Services.SetIamPolicy",
                "resourceName": "projects/shop-prod/locations/europe-west1/services/orders-api",
                "request": {"@type": "type.googleapis.com/google.iam.v1.SetIamPolicyRequest",
                    "resource": "projects/shop-prod/locations/europe-west1/services/orders-api",
                    "policy": {"bindings": [{"role": "roles/run.invoker", "members": [member]}]}}
            }
        })
    }

    fn ev_with(entries: Vec<Value>) -> ipd_model::Evidence {
        let mut ev = base();
        ev.service_policy = policy(json!({"etag": "ACAB"}));
        ev.logs = Gathered::Present(
            entries
                .into_iter()
                .map(|v| serde_json::from_value(v).unwrap())
                .collect(),
        );
        ev
    }

    #[test]
    fn a_refused_public_grant_fires_without_expect_public() {
        let ev = ev_with(vec![refused_set_iam(
            "allUsers",
            7,
            "Permission 'run.services.setIamPolicy' denied on resource",
        )]);
        assert_eq!(
            fired(&run(&PublicGrantNotApplied, &ev)),
            Some(Verdict::Confirmed)
        );
    }

    #[test]
    fn other_refusals_and_landed_grants_do_not_fire() {
        // Code 9 is an org policy's refusal (IPD030 / IPD032), not a missing permission.
        let ev = ev_with(vec![refused_set_iam(
            "allUsers",
            9,
            "One or more users named in the policy do not belong to a permitted customer.",
        )]);
        assert!(matches!(
            run(&PublicGrantNotApplied, &ev),
            crate::Outcome::Passed(_)
        ));
        // Refused once, then bound by someone who could.
        let mut ev = ev_with(vec![refused_set_iam("allUsers", 7, "denied")]);
        ev.service_policy =
            policy(json!({"bindings": [{"role": "roles/run.invoker", "members": ["allUsers"]}]}));
        assert!(matches!(
            run(&PublicGrantNotApplied, &ev),
            crate::Outcome::Passed(_)
        ));
        // A refused grant to somebody else is not the caller's problem.
        let mut ev = ev_with(vec![refused_set_iam(
            "serviceAccount:other@shop-prod.iam.gserviceaccount.com",
            7,
            "denied",
        )]);
        ev.inputs.caller = Some(format!("serviceAccount:{SA}"));
        assert!(matches!(
            run(&PublicGrantNotApplied, &ev),
            crate::Outcome::Passed(_)
        ));
        ev.logs = Gathered::missing("no logs.json");
        assert!(matches!(
            run(&PublicGrantNotApplied, &ev),
            crate::Outcome::Skipped(_)
        ));
    }

    #[test]
    fn a_refused_grant_to_the_caller_fires() {
        let mut ev = ev_with(vec![refused_set_iam(
            &format!("serviceAccount:{SA}"),
            7,
            "denied",
        )]);
        ev.inputs.caller = Some(format!("serviceAccount:{SA}"));
        assert_eq!(
            fired(&run(&PublicGrantNotApplied, &ev)),
            Some(Verdict::Confirmed)
        );
    }
}
