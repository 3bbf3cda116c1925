use crate::cx::Cx;
use crate::declare_rule;
use crate::fix::{Arg, Fix, FixKind, Safety};
use crate::rule::{Body, Check, RuleImpl, RuleMeta, Verdict};

declare_rule! {
    /// ## What it checks
    /// Whether the service's invoker IAM check is disabled (`invokerIamDisabled: true`, or the
    /// v1 annotation `run.googleapis.com/invoker-iam-disabled: "true"`) while the client saw
    /// 401 or 403.
    ///
    /// ## Why it breaks the request
    /// It does not: with the check off, Cloud Run performs no IAM check at all and ignores the
    /// `Authorization` header, so the service is public. A 401/403 then comes from somewhere
    /// else — the container's own code, IAP, VPC Service Controls, or a proxy in front — and
    /// adding IAM bindings changes nothing. This finding stops the hunt in the wrong place.
    ///
    /// ## Evidence used
    /// The service description; the status the client saw.
    ///
    /// ## Example
    /// `fixtures/invoker-check-disabled-v2-403`
    ///
    /// ## Fix
    /// Look for the component that refused the request: the application's logs for the same
    /// trace, IAP, or VPC Service Controls. If the service was meant to be private, re-enable
    /// the check with `gcloud run services update SERVICE --invoker-iam-check`.
    ///
    /// ## Fix safety
    /// Re-enabling the check makes the service private: every caller then needs
    /// `roles/run.invoker`. Review before running.
    ///
    /// ## References
    /// - https://cloud.google.com/run/docs/securing/managing-access#invoker_check
    /// - https://cloud.google.com/run/docs/authenticating/public
    pub struct InvokerCheckDisabled {
        code: "IPD002",
        name: "invoker-check-disabled",
        cause: "invoker_check_disabled",
        title: "the invoker IAM check is disabled, so IAM is not what refuses the request",
        severity: Medium,
    }
}

impl RuleImpl for InvokerCheckDisabled {
    type State = ();

    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Cx) -> Check<()> {
        let Some(svc) = cx.service() else {
            return Check::Skip(format!(
                "service description not available: {}",
                cx.ev.service.absence().unwrap_or_default()
            ));
        };
        if !svc.invoker_iam_disabled {
            return Check::Pass("the invoker IAM check is enabled".into());
        }
        match cx.status() {
            Some(404) => Check::NotApplicable(
                "the client saw 404, which is not an authorization answer".into(),
            ),
            _ => Check::Fire(()),
        }
    }

    fn finding(&self, _: &(), cx: &Cx) -> Body {
        let svc = cx.service_name_or("SERVICE");
        let mut evidence = vec![format!(
            "service `{svc}`: invoker IAM check disabled (the service is public)"
        )];
        if let Some(s) = cx.status() {
            evidence.push(format!("the client saw {s}"));
        }
        if let Some(iid) = &cx.facts.request.log_insert_id {
            evidence.push(format!("request log entry `{iid}`"));
        }
        Body {
            verdict: Verdict::Confirmed,
            title: format!("the invoker IAM check of service `{svc}` is disabled, so IAM is not what refused the request"),
            explanation: "With the invoker IAM check disabled, Cloud Run does no IAM check and ignores the Authorization header: anyone who reaches the service is let in. The 401/403 came from the container's own code, IAP, VPC Service Controls, or a proxy in front of the service. IAM bindings will not change it.".into(),
            evidence,
        }
    }

    fn fixes(&self, _: &(), cx: &Cx) -> Vec<Fix> {
        let svc = cx.service_arg();
        let filter = match &svc {
            Arg::Lit(s) => format!(
                "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"{s}\" AND httpRequest.status>=401"
            ),
            _ => "resource.type=\"cloud_run_revision\" AND httpRequest.status>=401".to_string(),
        };
        vec![
            Fix::command(
                "read the service's refused requests and the application logs around them",
                vec![
                    "gcloud".into(),
                    "logging".into(),
                    "read".into(),
                    Arg::lit(filter),
                    cx.project_flag(),
                    "--limit=20".into(),
                    "--format=json".into(),
                ],
                Safety::Safe,
            ),
            Fix::command(
                "re-enable the invoker IAM check if the service must be private",
                cx.update_argv(&["--invoker-iam-check"]),
                Safety::NeedsReview,
            ),
            Fix::text(
                FixKind::Terraform,
                "the same in Terraform",
                cx.service_terraform("invoker_iam_disabled = false"),
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

    #[test]
    fn fires_when_disabled() {
        let mut ev = base();
        ev.service = Gathered::Present(service(json!({"invokerIamDisabled": true})));
        ev.inputs.status = Some(403);
        assert_eq!(
            fired(&run(&InvokerCheckDisabled, &ev)),
            Some(Verdict::Confirmed)
        );
    }

    #[test]
    fn passes_when_enabled_and_skips_without_service() {
        let ev = base();
        assert!(matches!(
            run(&InvokerCheckDisabled, &ev),
            crate::Outcome::Passed(_)
        ));
        let ev = ipd_model::Evidence::default();
        assert!(matches!(
            run(&InvokerCheckDisabled, &ev),
            crate::Outcome::Skipped(_)
        ));
    }
}
