use ipd_model::orgpolicy::{DRS_LEGACY, DRS_MANAGED, Effective, REQUIRE_INVOKER_IAM};

use crate::cx::{Cx, public_binding};
use crate::declare_rule;
use crate::fix::{Fix, FixKind, Safety};
use crate::rule::{Body, Check, RuleImpl, RuleMeta, Verdict};

declare_rule! {
    /// ## What it checks
    /// For a service the owner wants public (`--expect-public`, or `expect_public` in
    /// `context.json`): `allUsers` is not bound, the invoker check is on, and domain
    /// restricted sharing — the list constraint `iam.allowedPolicyMemberDomains` with allowed
    /// customer IDs, or the managed `iam.managed.allowedPolicyMembers` enforced without
    /// `principalSet://goog/public:all` — forbids adding `allUsers`.
    ///
    /// ## Why it breaks the request
    /// `gcloud run deploy --allow-unauthenticated` deploys the service but the IAM step fails
    /// ("One or more users named in the policy do not belong to a permitted customer"), so the
    /// service stays private and every anonymous request gets 403. Adding `allUsers` by hand
    /// fails the same way. Google's recommended way to make a service public under domain
    /// restricted sharing is to disable the invoker IAM check instead.
    ///
    /// ## Evidence used
    /// Effective org policies (`gcloud org-policies describe … --effective`), the service's
    /// IAM policy and invoker-check setting.
    ///
    /// ## Example
    /// `fixtures/public-blocked-by-drs-allowed-customer`
    ///
    /// ## Fix
    /// `gcloud run services update SERVICE --no-invoker-iam-check` (unless
    /// `run.managed.requireInvokerIam` is enforced too; then an org-policy exception or IAP is
    /// needed).
    ///
    /// ## Fix safety
    /// Makes the service reachable by anyone: review that it is meant to be public.
    ///
    /// ## References
    /// - https://cloud.google.com/run/docs/authenticating/public
    /// - https://cloud.google.com/resource-manager/docs/organization-policy/restricting-domains
    pub struct PublicAccessBlockedByDomainRestriction {
        code: "IPD030",
        name: "public-access-blocked-by-domain-restriction",
        cause: "public_access_blocked_by_domain_restriction",
        title: "domain restricted sharing blocks the `allUsers` binding a public service needs",
        severity: Critical,
        needs_refusal: false,
    }
}

pub struct State {
    policy: Effective,
}

/// The owner wants the service public, it is not, and nothing already makes it public.
pub fn wants_public_but_is_not(cx: &Cx) -> Result<(), Check<State>> {
    if !cx.facts.expect_public {
        return Err(Check::NotApplicable(
            "the owner does not expect the service to be public (--expect-public)".into(),
        ));
    }
    if cx.invoker_check_disabled() {
        return Err(Check::NotApplicable(
            "the invoker check is disabled: the service is already public".into(),
        ));
    }
    if let Some(role) = public_binding(cx.ev) {
        return Err(Check::Pass(format!(
            "`allUsers` already holds `{role}` on the service"
        )));
    }
    if let Some(why) = cx.ev.org_policies.absence() {
        return Err(Check::Skip(format!(
            "effective org policies not available: {why}"
        )));
    }
    Ok(())
}

impl RuleImpl for PublicAccessBlockedByDomainRestriction {
    type State = State;

    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Cx) -> Check<State> {
        if let Err(c) = wants_public_but_is_not(cx) {
            return c;
        }
        if let Some(p) = cx
            .ev
            .constraint(DRS_LEGACY)
            .filter(Effective::restricts_members)
        {
            return Check::Fire(State { policy: p });
        }
        if let Some(p) = cx
            .ev
            .constraint(DRS_MANAGED)
            .filter(Effective::blocks_public_members)
        {
            return Check::Fire(State { policy: p });
        }
        match (cx.ev.constraint(DRS_LEGACY), cx.ev.constraint(DRS_MANAGED)) {
            (None, None) => Check::Skip(format!(
                "neither `{DRS_LEGACY}` nor `{DRS_MANAGED}` is among the org policies provided"
            )),
            _ => Check::Pass("domain restricted sharing does not block `allUsers`".into()),
        }
    }

    fn finding(&self, s: &State, cx: &Cx) -> Body {
        let svc = cx.service_name_or("SERVICE");
        let mut evidence = vec![format!(
            "effective org policy `constraints/{}`: {}",
            s.policy.constraint,
            if s.policy.constraint == DRS_LEGACY {
                if s.policy.deny_all {
                    "denyAll".to_string()
                } else {
                    format!("allowed customers {}", s.policy.allowed_values.join(", "))
                }
            } else {
                "enforced without `principalSet://goog/public:all` among allowed principal sets"
                    .to_string()
            }
        )];
        evidence.push(format!(
            "service `{svc}`: invoker check on, no `allUsers` binding"
        ));
        if let Some(st) = cx.status() {
            evidence.push(format!("the client saw {st}"));
        }
        Body {
            verdict: Verdict::Confirmed,
            title: format!("domain restricted sharing (`{}`) blocks making `{svc}` public with `allUsers`", s.policy.constraint),
            explanation: "The owner wants the service public, but `allUsers` is not bound and the organization's domain restricted sharing policy rejects adding it (\"One or more users named in the policy do not belong to a permitted customer\"). `gcloud run deploy --allow-unauthenticated` only warns about the failed IAM step, so the service stayed private and anonymous requests get 403. Under domain restricted sharing, disable the invoker IAM check instead.".into(),
            evidence,
        }
    }

    fn fixes(&self, _: &State, cx: &Cx) -> Vec<Fix> {
        let enforced = cx
            .ev
            .constraint(REQUIRE_INVOKER_IAM)
            .is_some_and(|p| p.enforced);
        if enforced {
            return vec![Fix::note(
                "`run.managed.requireInvokerIam` also forbids disabling the invoker check",
                "Neither public path is open: ask the organization's policy administrators for a project-level exception to one of the two constraints, or put IAP or a load balancer in front and keep the service private (see IPD031).",
            )];
        }
        vec![
            Fix::command(
                "disable the invoker IAM check to make the service public",
                cx.update_argv(&["--no-invoker-iam-check"]),
                Safety::NeedsReview,
            ),
            Fix::text(
                FixKind::Terraform,
                "the same in Terraform",
                cx.service_terraform("invoker_iam_disabled = true"),
                Safety::NeedsReview,
            ),
            Fix::text(
                FixKind::Yaml,
                "the same in the service YAML (`gcloud run services replace`)",
                cx.service_yaml(&[("run.googleapis.com/invoker-iam-disabled", "true")]),
                Safety::NeedsReview,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use ipd_model::Gathered;
    use serde_json::json;

    fn org(v: serde_json::Value) -> Gathered<Vec<ipd_model::orgpolicy::OrgPolicy>> {
        Gathered::Present(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn drs_fires_when_public_wanted() {
        let mut ev = base();
        ev.inputs.expect_public = true;
        ev.service_policy = policy(json!({"etag": "ACAB"}));
        ev.org_policies = org(
            json!([{"name": "projects/1/policies/iam.allowedPolicyMemberDomains", "spec": {"rules": [{"values": {"allowedValues": ["C0abc"]}}]}}]),
        );
        assert_eq!(
            fired(&run(&PublicAccessBlockedByDomainRestriction, &ev)),
            Some(Verdict::Confirmed)
        );
        ev.inputs.expect_public = false;
        assert!(matches!(
            run(&PublicAccessBlockedByDomainRestriction, &ev),
            crate::Outcome::NotApplicable(_)
        ));
    }

    #[test]
    fn allow_all_passes() {
        let mut ev = base();
        ev.inputs.expect_public = true;
        ev.org_policies = org(
            json!([{"name": "projects/1/policies/iam.allowedPolicyMemberDomains", "spec": {"rules": [{"allowAll": true}]}}]),
        );
        assert!(matches!(
            run(&PublicAccessBlockedByDomainRestriction, &ev),
            crate::Outcome::Passed(_)
        ));
    }
}
