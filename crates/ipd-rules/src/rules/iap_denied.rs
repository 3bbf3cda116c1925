use ipd_model::audit::iap_denials;
use ipd_model::facts::Gate;

use crate::cx::Cx;
use crate::declare_rule;
use crate::fix::{Arg, Fix, Safety};
use crate::rule::{Body, Check, RuleImpl, RuleMeta, Verdict};

declare_rule! {
    /// ## What it checks
    /// Whether Identity-Aware Proxy refused the request: IAP is enabled on the service
    /// (`iapEnabled`) or the response came from IAP (`x-goog-iap-generated-response`, an IAP
    /// page), with IAP authorization denials in the Data Access audit log; or IAP let the user
    /// through but its service agent, which calls Cloud Run, lacks `roles/run.invoker`.
    ///
    /// ## Why it breaks the request
    /// With IAP on a Cloud Run service, IAP checks first: the user needs `IAP-secured Web App
    /// User` (`roles/iap.httpsResourceAccessor`). Then IAP calls the service as its own service
    /// agent, `service-PROJECT_NUMBER@gcp-sa-iap.iam.gserviceaccount.com`, which needs
    /// `roles/run.invoker`. Pub/Sub and other service callers may stop working behind IAP.
    ///
    /// ## Evidence used
    /// The service (`iapEnabled`), IAP Data Access audit entries (`status.code` 7), the service
    /// IAM policy, the request log.
    ///
    /// ## Example
    /// `fixtures/iap-user-lacks-accessor-role`
    ///
    /// ## Fix
    /// Grant the user `roles/iap.httpsResourceAccessor` on the service's IAP resource; grant the
    /// IAP service agent `roles/run.invoker` on the service.
    ///
    /// ## Fix safety
    /// Both grants widen access: review the member.
    ///
    /// ## References
    /// - https://cloud.google.com/run/docs/securing/identity-aware-proxy-cloud-run
    /// - https://cloud.google.com/iap/docs/managing-access
    pub struct IapDenied {
        code: "IPD005",
        name: "iap-denied",
        cause: "iap_denied",
        title: "Identity-Aware Proxy refused the request",
        severity: High,
    }
}

pub enum State {
    /// IAP denied the user.
    User {
        principal: Option<String>,
        verdict: Verdict,
        audit: bool,
    },
    /// The IAP service agent cannot invoke the service.
    Agent { agent: String },
}

fn iap_agent(cx: &Cx) -> Option<String> {
    let num = cx.service().and_then(|s| s.project_number.clone())?;
    Some(format!(
        "serviceAccount:service-{num}@gcp-sa-iap.iam.gserviceaccount.com"
    ))
}

impl RuleImpl for IapDenied {
    type State = State;

    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Cx) -> Check<State> {
        let enabled = cx.service().is_some_and(|s| s.iap_enabled);
        // IAP denials that concern this request: near its time, and for this service unless
        // IAP is known to be in front of it.
        let at = cx.facts.request.time;
        let svc = cx.ev.service_name();
        let denials: Vec<_> = cx
            .ev
            .logs
            .present()
            .map(|l| iap_denials(l))
            .unwrap_or_default()
            .into_iter()
            .filter(|d| match (at, d.time) {
                (Some(a), Some(t)) => {
                    (a - t).num_seconds().abs() <= ipd_model::facts::MATCH_WINDOW_SECS
                }
                _ => true,
            })
            .filter(|d| {
                enabled
                    || svc
                        .as_deref()
                        .is_some_and(|s| d.resource.as_deref().is_some_and(|r| r.contains(s)))
            })
            .collect();
        if !enabled && denials.is_empty() && !cx.ev.inputs.iap_response {
            return Check::NotApplicable(
                "IAP is not enabled on the service and no IAP response or denial for it is in the evidence".into(),
            );
        }
        if let Some(d) = denials.first() {
            return Check::Fire(State::User {
                principal: d.principal.clone(),
                verdict: Verdict::Confirmed,
                audit: true,
            });
        }
        if cx.ev.inputs.iap_response {
            return Check::Fire(State::User {
                principal: None,
                verdict: Verdict::Confirmed,
                audit: false,
            });
        }
        // IAP is on. Did the request get past IAP to Cloud Run's gate?
        if matches!(
            cx.gate(),
            Gate::NotAuthenticated | Gate::NotAuthorized | Gate::EmptyAuthorization
        ) {
            let Some(agent) = iap_agent(cx) else {
                return Check::Skip(
                    "the project number is unknown, so the IAP service agent cannot be named"
                        .into(),
                );
            };
            if !cx.ev.service_policy.is_present() && !cx.ev.project_policy.is_present() {
                return Check::Skip(format!(
                    "the service IAM policy is not available: {}",
                    cx.ev.service_policy.absence().unwrap_or_default()
                ));
            }
            let view = crate::cx::evaluate_iam(cx.ev, &ipd_model::Principal::parse(&agent));
            if let Some(g) = view.definite.first() {
                return Check::Pass(format!(
                    "the IAP service agent holds an invoker role ({}); Cloud Run's gate refused for another reason",
                    g.describe()
                ));
            }
            return Check::Fire(State::Agent { agent });
        }
        match (cx.status(), cx.gate()) {
            (Some(401 | 403) | None, Gate::NoLogEntry | Gate::Unknown) => {
                Check::Fire(State::User {
                    principal: None,
                    verdict: if cx.status().is_some() {
                        Verdict::Likely
                    } else {
                        Verdict::Possible
                    },
                    audit: false,
                })
            }
            _ => Check::Pass("the request passed IAP".into()),
        }
    }

    fn finding(&self, s: &State, cx: &Cx) -> Body {
        let svc = cx.service_name_or("SERVICE");
        match s {
            State::User { principal, verdict, audit } => {
                let mut evidence = Vec::new();
                if cx.service().is_some_and(|s| s.iap_enabled) {
                    evidence.push(format!("service `{svc}`: IAP enabled"));
                }
                if *audit {
                    evidence.push(format!(
                        "IAP Data Access audit entry: authorization denied (code 7){}",
                        principal.as_deref().map(|p| format!(" for `{p}`")).unwrap_or_default()
                    ));
                }
                if cx.ev.inputs.iap_response {
                    evidence.push("the response was generated by IAP (`x-goog-iap-generated-response` / IAP page)".into());
                }
                if cx.gate() == Gate::NoLogEntry {
                    evidence.push("no `cloud_run_revision` request entry: the request never reached Cloud Run".into());
                }
                Body {
                    verdict: *verdict,
                    title: match principal {
                        Some(p) => format!("IAP refused `{p}`, who lacks `IAP-secured Web App User` on `{svc}`"),
                        None => format!("Identity-Aware Proxy in front of `{svc}` refused the request"),
                    },
                    explanation: "IAP checks before Cloud Run: a signed-in user needs `IAP-secured Web App User` (roles/iap.httpsResourceAccessor) on the service, and a bad or missing IAP credential is refused with IAP's own page. The invoker check and its IAM bindings are not involved.".into(),
                    evidence,
                }
            }
            State::Agent { agent } => Body {
                verdict: Verdict::Confirmed,
                title: format!("the IAP service agent `{agent}` cannot invoke `{svc}`"),
                explanation: "IAP let the user through and called Cloud Run as its own service agent, which Cloud Run refused: the agent needs `roles/run.invoker` on the service. (\"IAP for Cloud Run app is not set up correctly\" is the page users see.)".into(),
                evidence: vec![format!("service `{svc}`: IAP enabled"), format!("service policy: no invoker role for `{agent}`"), format!("Cloud Run's gate refused the request ({:?})", cx.gate())],
            },
        }
    }

    fn fixes(&self, s: &State, cx: &Cx) -> Vec<Fix> {
        match s {
            State::Agent { agent } => vec![Fix::command(
                "grant the IAP service agent `roles/run.invoker` on the service",
                cx.grant_argv(agent, "roles/run.invoker"),
                Safety::NeedsReview,
            )],
            State::User { principal, .. } => {
                // The denied principal (`principalEmail`), else the caller the evidence names.
                let member = principal
                    .as_deref()
                    .map(|p| ipd_model::Principal::parse(p).to_string())
                    .or_else(|| {
                        cx.caller()
                            .filter(|c| !c.public)
                            .map(|c| c.principal.to_string())
                    })
                    .map(|m| Arg::lit(format!("--member={m}")))
                    .unwrap_or(Arg::FlagPlaceholder("--member", "user:EMAIL"));
                let mut argv: Vec<Arg> = vec![
                    "gcloud".into(),
                    "iap".into(),
                    "web".into(),
                    "add-iam-policy-binding".into(),
                    "--resource-type=cloud-run".into(),
                    Arg::lit(format!("--service={}", cx.service_name_or("SERVICE"))),
                ];
                argv.push(cx.region_flag());
                argv.push(cx.project_flag());
                argv.push(member);
                argv.push("--role=roles/iap.httpsResourceAccessor".into());
                let mut v = vec![Fix::command(
                    "grant the user `IAP-secured Web App User` on the service",
                    argv,
                    Safety::NeedsReview,
                )];
                if let Some(agent) = iap_agent(cx) {
                    v.push(Fix::command(
                        "make sure the IAP service agent can invoke the service",
                        cx.grant_argv(&agent, "roles/run.invoker"),
                        Safety::NeedsReview,
                    ));
                }
                v
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use ipd_model::Gathered;
    use serde_json::json;

    #[test]
    fn audit_denial_fires() {
        let mut ev = base();
        ev.service = Gathered::Present(service(json!({"iapEnabled": true})));
        let d: ipd_model::logs::LogEntry = serde_json::from_value(json!({"logName": "projects/p/logs/cloudaudit.googleapis.com%2Fdata_access",
            "protoPayload": {"serviceName": "iap.googleapis.com", "status": {"code": 7}, "authenticationInfo": {"principalEmail": "bob@shop.example.com"}}})).unwrap();
        ev.logs = Gathered::Present(vec![d]);
        assert_eq!(fired(&run(&IapDenied, &ev)), Some(Verdict::Confirmed));
    }

    #[test]
    fn the_grant_names_the_denied_service_account_as_one() {
        let mut ev = base();
        ev.service = Gathered::Present(service(json!({"iapEnabled": true})));
        let d: ipd_model::logs::LogEntry = serde_json::from_value(json!({"logName": "projects/p/logs/cloudaudit.googleapis.com%2Fdata_access",
            "protoPayload": {"serviceName": "iap.googleapis.com", "status": {"code": 7}, "authenticationInfo": {"principalEmail": SA}}})).unwrap();
        ev.logs = Gathered::Present(vec![d]);
        let crate::Outcome::Fired(_, fixes) = run(&IapDenied, &ev) else {
            panic!("iap_denied should fire")
        };
        let grant = fixes[0].rendered();
        assert!(
            grant.contains(&format!("--member=serviceAccount:{SA}")),
            "{grant}"
        );
    }

    #[test]
    fn agent_without_invoker_fires_and_no_iap_is_na() {
        let mut ev = base();
        assert!(matches!(
            run(&IapDenied, &ev),
            crate::Outcome::NotApplicable(_)
        ));
        ev.service = Gathered::Present(service(json!({"iapEnabled": true})));
        ev.service_policy = policy(json!({"etag": "ACAB"}));
        ev.logs = Gathered::Present(vec![entry(403, Some(TEXT_403), "0s", "GET")]);
        assert_eq!(fired(&run(&IapDenied, &ev)), Some(Verdict::Confirmed));
        ev.service_policy = policy(
            json!({"bindings": [{"role": "roles/run.invoker", "members": ["serviceAccount:service-123456789012@gcp-sa-iap.iam.gserviceaccount.com"]}]}),
        );
        assert!(matches!(run(&IapDenied, &ev), crate::Outcome::Passed(_)));
    }
}
