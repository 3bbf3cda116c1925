use crate::cx::{Cx, GrantRef};
use crate::declare_rule;
use crate::fix::{Arg, Fix, Safety};
use crate::rule::{Body, Check, RuleImpl, RuleMeta, Verdict};
use crate::rules::iam_common::cap;

declare_rule! {
    /// ## What it checks
    /// Whether the caller's only invoke-looking grant is `roles/cloudfunctions.invoker`.
    ///
    /// ## Why it breaks the request
    /// Cloud Functions (2nd gen) are Cloud Run services: invoking one checks
    /// `run.routes.invoke` on the Cloud Run service. `roles/cloudfunctions.invoker` carries
    /// `cloudfunctions.functions.invoke` only, which 2nd gen functions do not check, so the
    /// caller gets 403 although it "has the invoker role".
    ///
    /// ## Evidence used
    /// Service, project, folder and organization IAM policies; the caller.
    ///
    /// ## Example
    /// `fixtures/functions-invoker-role-project-level`
    ///
    /// ## Fix
    /// Grant `roles/run.invoker` on the function's Cloud Run service (`gcloud functions
    /// add-invoker-policy-binding` does exactly that for 2nd gen functions).
    ///
    /// ## Fix safety
    /// Grants invoke access to the caller: review the member.
    ///
    /// ## References
    /// - https://cloud.google.com/functions/docs/securing/managing-access-iam
    /// - https://cloud.google.com/run/docs/securing/managing-access
    pub struct FunctionsInvokerRoleOnly {
        code: "IPD021",
        name: "functions-invoker-role-only",
        cause: "functions_invoker_role_only",
        title: "the caller holds `roles/cloudfunctions.invoker`, which does not grant invoke on Cloud Run",
        severity: High,
    }
}

pub struct State {
    grants: Vec<GrantRef>,
}

impl RuleImpl for FunctionsInvokerRoleOnly {
    type State = State;

    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Cx) -> Check<State> {
        if cx.invoker_check_disabled() {
            return Check::NotApplicable("the invoker check is disabled".into());
        }
        if cx.caller().is_none() {
            return Check::Skip("the caller is unknown (pass --caller or --token)".into());
        }
        if cx.iam.functions_invoker.is_empty() {
            return Check::Pass(
                "the caller holds no `roles/cloudfunctions.invoker` binding".into(),
            );
        }
        if !cx.iam.definite.is_empty() || !cx.iam.conditional.is_empty() {
            return Check::Pass("the caller also holds a role with `run.routes.invoke`".into());
        }
        Check::Fire(State {
            grants: cx.iam.functions_invoker.clone(),
        })
    }

    fn finding(&self, s: &State, cx: &Cx) -> Body {
        let caller = cx
            .caller()
            .map(|c| c.principal.to_string())
            .unwrap_or_default();
        let mut evidence: Vec<String> = s
            .grants
            .iter()
            .map(|g| format!("binding {}", g.describe()))
            .collect();
        evidence.push(format!(
            "no binding with `run.routes.invoke` covers `{caller}`"
        ));
        if cx.service().is_some_and(|s| s.is_function()) {
            evidence.push("the service is a Cloud Functions (2nd gen) function".into());
        }
        let mut explanation = "A Cloud Functions 2nd gen function is a Cloud Run service, and invoking it checks `run.routes.invoke` on that service. `roles/cloudfunctions.invoker` does not include that permission, so it does not let the caller invoke the function.".to_string();
        if let Some(c) = cx.status_caveat(false) {
            explanation.push_str(&format!(" Note: {c}."));
        }
        Body {
            verdict: cap(Verdict::Confirmed, cx.iam_verdict_cap()),
            title: format!(
                "`{caller}` has `roles/cloudfunctions.invoker`, which does not grant `run.routes.invoke` on `{}`",
                cx.service_name_or("SERVICE")
            ),
            explanation,
            evidence,
        }
    }

    fn fixes(&self, _: &State, cx: &Cx) -> Vec<Fix> {
        let caller = cx
            .caller()
            .map(|c| c.principal.to_string())
            .unwrap_or_else(|| "<MEMBER>".into());
        vec![
            Fix::command(
                format!("grant `roles/run.invoker` on the function's service to `{caller}`"),
                vec![
                    "gcloud".into(),
                    "functions".into(),
                    "add-invoker-policy-binding".into(),
                    cx.service_arg(),
                    cx.region_flag(),
                    cx.project_flag(),
                    Arg::lit(format!("--member={caller}")),
                ],
                Safety::NeedsReview,
            ),
            Fix::command(
                "or grant it on the Cloud Run service directly",
                cx.grant_argv(&caller, "roles/run.invoker"),
                Safety::NeedsReview,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use serde_json::json;

    #[test]
    fn functions_invoker_alone_fires() {
        let mut ev = base();
        ev.project_policy = policy(
            json!({"bindings": [{"role": "roles/cloudfunctions.invoker", "members": [format!("serviceAccount:{SA}")]}]}),
        );
        ev.service_policy = policy(json!({"etag": "ACAB"}));
        ev.token = Some(sa_token(URL));
        assert_eq!(
            fired(&run(&FunctionsInvokerRoleOnly, &ev)),
            Some(Verdict::Confirmed)
        );
        ev.service_policy = policy(
            json!({"bindings": [{"role": "roles/run.invoker", "members": [format!("serviceAccount:{SA}")]}]}),
        );
        assert!(matches!(
            run(&FunctionsInvokerRoleOnly, &ev),
            crate::Outcome::Passed(_)
        ));
    }
}
