use ipd_model::audit::{DRS_DENIAL, PublicAttempt, public_attempts};
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
    /// The effective policy, when read.
    policy: Option<Effective>,
    /// The refused attempt in the audit log, when there is one.
    attempt: Option<PublicAttempt>,
    /// The constraint: `iam.allowedPolicyMemberDomains` or `iam.managed.allowedPolicyMembers`
    /// (from the policy, or `PreconditionFailure.violations[].type`), else None (the refusal's
    /// text does not say which).
    constraint: Option<String>,
}

/// The newest refused attempt to make the service public whose status names `constraint`
/// (in `violations[].type` or the message), or whose message contains `text`.
pub fn refused_attempt(
    cx: &Cx,
    constraints: &[&str],
    text: Option<&str>,
) -> Option<(PublicAttempt, Option<String>)> {
    let logs = cx.ev.logs.present()?;
    let service = cx.ev.service_name();
    public_attempts(logs, service.as_deref())
        .into_iter()
        .filter_map(|a| {
            let st = a.status.as_ref().filter(|s| !s.ok())?;
            let named = st
                .named_constraint()
                .map(|c| c.trim_start_matches("constraints/").to_string())
                .filter(|c| constraints.contains(&c.as_str()));
            let by_text =
                text.is_some_and(|t| st.message.as_deref().is_some_and(|m| m.contains(t)));
            (named.is_some() || by_text).then(|| (a.clone(), named))
        })
        .next_back()
}

/// The owner wants the service public, it is not, and nothing already makes it public.
pub fn wants_public_but_is_not<S>(cx: &Cx) -> Result<(), Check<S>> {
    if !cx.facts.expect_public {
        return Err(Check::NotApplicable(
            "nothing says the owner wants the service public (audit log, --expect-public, context.json)".into(),
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
    Ok(())
}

/// Skip when the effective org policies are not in the evidence.
pub fn org_policies_read<S>(cx: &Cx) -> Result<(), Check<S>> {
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
        let legacy = cx
            .ev
            .constraint(DRS_LEGACY)
            .filter(Effective::restricts_members);
        let managed = cx
            .ev
            .constraint(DRS_MANAGED)
            .filter(Effective::blocks_public_members);
        if let Some((attempt, named)) =
            refused_attempt(cx, &[DRS_LEGACY, DRS_MANAGED], Some(DRS_DENIAL))
        {
            let policy = match named.as_deref() {
                Some(DRS_MANAGED) => managed,
                Some(DRS_LEGACY) => legacy,
                _ => legacy.or(managed),
            };
            return Check::Fire(State {
                constraint: named.or_else(|| policy.as_ref().map(|p| p.constraint.clone())),
                policy,
                attempt: Some(attempt),
            });
        }
        if let Err(c) = org_policies_read(cx) {
            return c;
        }
        if let Some(p) = legacy.or(managed) {
            return Check::Fire(State {
                constraint: Some(p.constraint.clone()),
                policy: Some(p),
                attempt: None,
            });
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
        let mut evidence = Vec::new();
        if let Some(a) = &s.attempt {
            evidence.push(a.describe());
            if let Some(v) = a
                .status
                .as_ref()
                .and_then(|st| st.violations.iter().find(|v| v.kind.is_some()))
            {
                evidence.push(format!(
                    "PreconditionFailure violation `{}`{}",
                    v.kind.as_deref().unwrap_or("?"),
                    v.description
                        .as_deref()
                        .map(|d| format!(": \"{d}\""))
                        .unwrap_or_default()
                ));
            }
        }
        if let Some(p) = &s.policy {
            evidence.push(format!(
                "effective org policy `constraints/{}`: {}",
                p.constraint,
                if p.constraint == DRS_LEGACY {
                    if p.deny_all {
                        "denyAll".to_string()
                    } else {
                        format!("allowed customers {}", p.allowed_values.join(", "))
                    }
                } else {
                    "enforced without `principalSet://goog/public:all` among allowed principal sets"
                        .to_string()
                }
            ));
        }
        if let Some(origin) = cx.intent_origin().filter(|_| s.attempt.is_none()) {
            evidence.push(format!("the owner wants the service public: {origin}"));
        }
        evidence.push(format!(
            "service `{svc}`: invoker check on, no `allUsers` binding"
        ));
        if let Some(st) = cx.status() {
            evidence.push(format!("the client saw {st}"));
        }
        Body {
            verdict: Verdict::Confirmed,
            title: match &s.constraint {
                Some(c) => format!("domain restricted sharing (`{c}`) blocks making `{svc}` public with `allUsers`"),
                None => format!("domain restricted sharing blocks making `{svc}` public with `allUsers`"),
            },
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
