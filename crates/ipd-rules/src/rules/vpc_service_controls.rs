use ipd_model::audit::{VpcScViolation, vpcsc_violations};
use ipd_model::facts::Gate;

use crate::cx::Cx;
use crate::declare_rule;
use crate::fix::{Arg, Fix, FixKind, Safety};
use crate::rule::{Body, Check, RuleImpl, RuleMeta, Verdict};

declare_rule! {
    /// ## What it checks
    /// A 403 with no `cloud_run_revision` request-log entry, on a service whose ingress is
    /// `all`, and a VPC Service Controls violation for `run.googleapis.com/HttpIngress` in the
    /// policy-denied audit log (`cloudaudit.googleapis.com%2Fpolicy`).
    ///
    /// ## Why it breaks the request
    /// When the project is in a service perimeter that restricts Cloud Run, requests to the
    /// `run.app` URL from outside the perimeter (and not allowed by an ingress rule or access
    /// level) are refused with 403 before they reach the service: nothing is logged for the
    /// revision, and IAM is never consulted.
    ///
    /// ## Evidence used
    /// The request log (its absence), policy-denied audit entries in `logs.json`, the
    /// service's ingress. Without a matching audit entry the finding is `possible`.
    ///
    /// ## Example
    /// `fixtures/vpc-sc-perimeter-blocks-ingress`
    ///
    /// ## Fix
    /// Call from inside the perimeter, or have the perimeter's owners add an ingress rule or
    /// access level for the caller; the VPC-SC troubleshooter takes the violation's unique ID.
    ///
    /// ## Fix safety
    /// Perimeter changes open data paths: review with the perimeter's owners.
    ///
    /// ## References
    /// - https://cloud.google.com/run/docs/troubleshooting (403 without a request log)
    /// - https://cloud.google.com/vpc-service-controls/docs/troubleshooting
    pub struct VpcServiceControls {
        code: "IPD004",
        name: "vpc-service-controls",
        cause: "vpc_service_controls",
        title: "VPC Service Controls refused the request before it reached the service",
        severity: High,
    }
}

pub struct State {
    violation: Option<VpcScViolation>,
}

impl RuleImpl for VpcServiceControls {
    type State = State;

    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Cx) -> Check<State> {
        let Some(logs) = cx.ev.logs.present() else {
            return Check::Skip(format!(
                "no logs: {}",
                cx.ev.logs.absence().unwrap_or_default()
            ));
        };
        if cx.gate() != Gate::NoLogEntry {
            return Check::NotApplicable(
                "the request reached Cloud Run (it has a request-log entry)".into(),
            );
        }
        if let Some(s) = cx.status().filter(|s| *s != 403) {
            return Check::NotApplicable(format!(
                "the client saw {s}; VPC Service Controls answers 403"
            ));
        }
        if cx.service().is_some_and(|s| !s.ingress.admits_internet()) {
            return Check::NotApplicable(
                "ingress is not `all`; an outside request would get 404 from ingress first".into(),
            );
        }
        let at = cx.facts.request.time;
        let near = |v: &VpcScViolation| match (at, v.time) {
            (Some(a), Some(t)) => {
                (a - t).num_seconds().abs() <= ipd_model::facts::MATCH_WINDOW_SECS
            }
            _ => true,
        };
        let violation = vpcsc_violations(logs).into_iter().find(|v| near(v));
        if violation.is_none() && cx.status().is_none() {
            return Check::NotApplicable("no status and no VPC-SC violation in the logs".into());
        }
        if violation.is_none() && cx.service().is_some_and(|s| s.iap_enabled) {
            return Check::NotApplicable(
                "IAP is enabled; a 403 without a request log is IAP's (IPD005)".into(),
            );
        }
        Check::Fire(State { violation })
    }

    fn finding(&self, s: &State, cx: &Cx) -> Body {
        let svc = cx.service_name_or("SERVICE");
        let mut evidence = vec![
            "Cloud Logging has no `cloud_run_revision` request entry for the failing request"
                .to_string(),
        ];
        if let Some(v) = &s.violation {
            evidence.push(format!(
                "policy-denied audit entry{}: `{}` refused{}{}{}",
                v.insert_id
                    .as_deref()
                    .map(|i| format!(" `{i}`"))
                    .unwrap_or_default(),
                v.method
                    .as_deref()
                    .unwrap_or("run.googleapis.com/HttpIngress"),
                v.perimeter
                    .as_deref()
                    .map(|p| format!(" by perimeter `{p}`"))
                    .unwrap_or_default(),
                v.reason
                    .as_deref()
                    .map(|r| format!(", reason `{r}`"))
                    .unwrap_or_default(),
                v.unique_id
                    .as_deref()
                    .map(|u| format!(", unique ID `{u}`"))
                    .unwrap_or_default(),
            ));
        } else {
            evidence
                .push("no policy-denied audit entry among the logs provided (query below)".into());
        }
        if let Some(st) = cx.status() {
            evidence.push(format!("the client saw {st}"));
        }
        let perimeter = s.violation.as_ref().and_then(|v| v.perimeter.clone());
        Body {
            verdict: match (&s.violation, cx.facts.request.time) {
                (Some(_), Some(_)) => Verdict::Confirmed,
                (Some(_), None) => Verdict::Likely,
                (None, _) => Verdict::Possible,
            },
            title: match &perimeter {
                Some(p) => format!("VPC Service Controls perimeter `{p}` refused the request to `{svc}`"),
                None => format!("a 403 with no request log for `{svc}` points at VPC Service Controls (or a proxy in front)"),
            },
            explanation: "A VPC Service Controls perimeter that restricts Cloud Run refuses requests from outside it with 403 before they reach the service: the revision logs nothing and IAM is never consulted, so IAM bindings will not help.".into(),
            evidence,
        }
    }

    fn fixes(&self, s: &State, cx: &Cx) -> Vec<Fix> {
        let filter = "log_id(\"cloudaudit.googleapis.com/policy\") AND resource.labels.method=\"run.googleapis.com/HttpIngress\"";
        let mut v = vec![Fix::command(
            "read the VPC Service Controls violations for Cloud Run ingress",
            vec![
                "gcloud".into(),
                "logging".into(),
                "read".into(),
                Arg::lit(filter),
                cx.project_flag(),
                "--freshness=1d".into(),
                "--format=json".into(),
            ],
            Safety::Safe,
        )];
        v.push(Fix::text(
            FixKind::Note,
            "call from inside the perimeter, or ask for an ingress rule",
            format!(
                "The perimeter's owners can add an ingress rule or access level for this caller{}; the VPC-SC troubleshooter in the console takes the violation's unique ID{}.",
                s.violation.as_ref().and_then(|x| x.perimeter.clone()).map(|p| format!(" to `{p}` (gcloud access-context-manager perimeters update ... --set-ingress-policies=FILE)")).unwrap_or_default(),
                s.violation.as_ref().and_then(|x| x.unique_id.clone()).map(|u| format!(" (`{u}`)")).unwrap_or_default()
            ),
            Safety::NeedsReview,
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
    fn violation_without_request_log_fires() {
        let mut ev = base();
        ev.inputs.status = Some(403);
        let v: ipd_model::logs::LogEntry = serde_json::from_value(json!({
            "logName": "projects/shop-prod/logs/cloudaudit.googleapis.com%2Fpolicy",
            "timestamp": "2026-11-20T10:15:01Z",
            "resource": {"type": "audited_resource", "labels": {"method": "run.googleapis.com/HttpIngress", "service": "run.googleapis.com"}},
            "protoPayload": {"metadata": {"securityPolicyInfo": {"servicePerimeterName": "accessPolicies/1/servicePerimeters/prod"}, "violationReason": "NO_MATCHING_ACCESS_LEVEL"}}
        })).unwrap();
        ev.logs = Gathered::Present(vec![v]);
        assert_eq!(
            fired(&run(&VpcServiceControls, &ev)),
            Some(Verdict::Likely),
            "no request time"
        );
        ev.inputs.at = ipd_model::time::parse_rfc3339("2026-11-20T10:15:00Z");
        assert_eq!(
            fired(&run(&VpcServiceControls, &ev)),
            Some(Verdict::Confirmed)
        );
        ev.logs = Gathered::Present(vec![]);
        assert_eq!(
            fired(&run(&VpcServiceControls, &ev)),
            Some(Verdict::Possible)
        );
        ev.logs = Gathered::Present(vec![entry(403, Some(TEXT_403), "0s", "GET")]);
        assert!(matches!(
            run(&VpcServiceControls, &ev),
            crate::Outcome::NotApplicable(_)
        ));
    }
}
