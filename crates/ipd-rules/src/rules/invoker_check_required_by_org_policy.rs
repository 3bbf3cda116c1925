use ipd_model::orgpolicy::{DRS_LEGACY, DRS_MANAGED, Effective, REQUIRE_INVOKER_IAM};

use crate::cx::Cx;
use crate::declare_rule;
use crate::fix::{Arg, Fix, FixKind, Safety};
use crate::rule::{Body, Check, RuleImpl, RuleMeta, Verdict};
use crate::rules::public_access_blocked_by_domain_restriction::{
    org_policies_read, refused_attempt, wants_public_but_is_not,
};
use ipd_model::audit::{PublicAttempt, PublicAttemptKind};

declare_rule! {
    /// ## What it checks
    /// For a service the owner wants public: `allUsers` is not bound and the managed
    /// constraint `run.managed.requireInvokerIam` is enforced.
    ///
    /// ## Why it breaks the request
    /// The constraint forbids disabling the invoker IAM check (`--no-invoker-iam-check`,
    /// `invokerIamDisabled`), the recommended way to make a service public. Deploys or
    /// updates that try are rejected, so the service keeps requiring IAM and anonymous
    /// requests get 403. The constraint does not govern `allUsers` bindings: those are for
    /// domain restricted sharing to allow or block.
    ///
    /// ## Evidence used
    /// Effective org policies; the service's IAM policy and invoker-check setting.
    ///
    /// ## Example
    /// `fixtures/require-invoker-iam-blocks-public`
    ///
    /// ## Fix
    /// Grant `roles/run.invoker` to `allUsers` when domain restricted sharing allows it; else
    /// a project-level exception to the constraint (reviewed by the org's policy admins), or
    /// IAP in front of a private service.
    ///
    /// ## Fix safety
    /// Public access and policy exceptions both need review.
    ///
    /// ## References
    /// - https://cloud.google.com/run/docs/securing/managing-access#invoker_check
    /// - https://cloud.google.com/resource-manager/docs/organization-policy/using-constraints
    pub struct InvokerCheckRequiredByOrgPolicy {
        code: "IPD031",
        name: "invoker-check-required-by-org-policy",
        cause: "invoker_check_required_by_org_policy",
        title: "`run.managed.requireInvokerIam` forbids disabling the invoker check for a public service",
        severity: Critical,
        needs_refusal: false,
    }
}

pub struct State {
    drs_blocks: bool,
    /// The refused attempt to disable the invoker check, when the audit log has it.
    attempt: Option<PublicAttempt>,
}

impl RuleImpl for InvokerCheckRequiredByOrgPolicy {
    type State = State;

    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Cx) -> Check<State> {
        if let Err(c) = wants_public_but_is_not(cx) {
            return c;
        }
        let drs_blocks = cx
            .ev
            .constraint(DRS_LEGACY)
            .is_some_and(|p| p.restricts_members())
            || cx
                .ev
                .constraint(DRS_MANAGED)
                .is_some_and(|p: Effective| p.blocks_public_members());
        // A refused attempt to disable the invoker check whose status names the constraint
        // (the exact refusal text is not documented: only the constraint's name is matched).
        if let Some((attempt, _)) = refused_attempt(cx, &[REQUIRE_INVOKER_IAM], None)
            .filter(|(a, _)| a.kind == PublicAttemptKind::DisableInvokerCheck)
        {
            return Check::Fire(State {
                drs_blocks,
                attempt: Some(attempt),
            });
        }
        if let Err(c) = org_policies_read(cx) {
            return c;
        }
        match cx.ev.constraint(REQUIRE_INVOKER_IAM) {
            None => Check::Skip(format!(
                "`{REQUIRE_INVOKER_IAM}` is not among the org policies provided"
            )),
            Some(p) if p.enforced => Check::Fire(State {
                drs_blocks,
                attempt: None,
            }),
            Some(_) => Check::Pass(format!("`{REQUIRE_INVOKER_IAM}` is not enforced")),
        }
    }

    fn finding(&self, s: &State, cx: &Cx) -> Body {
        let svc = cx.service_name_or("SERVICE");
        let mut evidence = Vec::new();
        match &s.attempt {
            Some(a) => evidence.push(a.describe()),
            None => evidence.push(format!(
                "effective org policy `constraints/{REQUIRE_INVOKER_IAM}`: enforced"
            )),
        }
        evidence.push(format!(
            "service `{svc}`: invoker check on, no `allUsers` binding"
        ));
        if s.drs_blocks {
            evidence.push("domain restricted sharing also blocks `allUsers` (see IPD030)".into());
        }
        let explanation = if s.drs_blocks {
            "The owner wants the service public, but the organization enforces `run.managed.requireInvokerIam`, which rejects disabling the invoker IAM check, and domain restricted sharing rejects binding `allUsers`. No public path is open without a policy exception.".to_string()
        } else {
            "The owner wants the service public, but the organization enforces `run.managed.requireInvokerIam`, which rejects `--no-invoker-iam-check`. The service therefore still requires IAM, and `allUsers` is not bound: anonymous requests get 403. This constraint does not forbid an `allUsers` binding, so that is the way to go public here.".to_string()
        };
        Body {
            verdict: Verdict::Confirmed,
            title: format!(
                "`run.managed.requireInvokerIam` keeps the invoker check on for `{svc}`, and `allUsers` is not bound"
            ),
            explanation,
            evidence,
        }
    }

    fn fixes(&self, s: &State, cx: &Cx) -> Vec<Fix> {
        let project = cx.project_or("PROJECT_ID");
        let exception = Fix::text(
            FixKind::Yaml,
            "or ask for a project-level exception (policy.yaml, applied with `gcloud org-policies set-policy policy.yaml`)",
            format!(
                "name: projects/{project}/policies/{REQUIRE_INVOKER_IAM}\nspec:\n  rules:\n  - enforce: false"
            ),
            Safety::NeedsReview,
        );
        let mut v = Vec::new();
        if !s.drs_blocks {
            v.push(Fix::command(
                "grant `roles/run.invoker` to `allUsers`",
                cx.grant_argv("allUsers", "roles/run.invoker"),
                Safety::NeedsReview,
            ));
        }
        v.push(exception);
        v.push(Fix::command(
            "read the effective constraint to confirm",
            vec![
                "gcloud".into(),
                "org-policies".into(),
                "describe".into(),
                Arg::lit(format!("constraints/{REQUIRE_INVOKER_IAM}")),
                "--effective".into(),
                cx.project_flag(),
            ],
            Safety::Safe,
        ));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use ipd_model::Gathered;
    use serde_json::json;

    #[test]
    fn enforced_constraint_fires() {
        let mut ev = base();
        ev.inputs.expect_public = true;
        ev.service_policy = policy(json!({"etag": "ACAB"}));
        ev.org_policies = Gathered::Present(serde_json::from_value(json!([{"name": "projects/1/policies/run.managed.requireInvokerIam", "spec": {"rules": [{"enforce": true}]}}])).unwrap());
        assert_eq!(
            fired(&run(&InvokerCheckRequiredByOrgPolicy, &ev)),
            Some(Verdict::Confirmed)
        );
        ev.service_policy =
            policy(json!({"bindings": [{"role": "roles/run.invoker", "members": ["allUsers"]}]}));
        assert!(matches!(
            run(&InvokerCheckRequiredByOrgPolicy, &ev),
            crate::Outcome::Passed(_)
        ));
    }
}
