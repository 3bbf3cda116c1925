use ipd_model::facts::Gate;

use crate::cx::Cx;
use crate::declare_rule;
use crate::fix::{Arg, Fix, Safety};
use crate::rule::{Body, Check, RuleImpl, RuleMeta, Verdict};

declare_rule! {
    /// ## What it checks
    /// Whether the 401/403 came from the container's own code rather than Cloud Run's
    /// invoker gate: the request-log entry has a non-zero latency and none of the gate's
    /// texts, or the invoker check is disabled and a 401/403 entry exists.
    ///
    /// ## Why it breaks the request
    /// Cloud Run's gate answers in 0 s and writes "The request was not authenticated" (403)
    /// or "The request was not authorized to invoke this service" (401) into the request log.
    /// An entry with latency and no such text means the request passed the gate — IAM let it
    /// in — and the application (its auth middleware, a framework's CSRF check, an upstream
    /// call it proxies) returned the status. IAM changes will not help.
    ///
    /// ## Evidence used
    /// The request-log entry of the failing request (`logs.json`); the invoker-check setting.
    ///
    /// ## Example
    /// `fixtures/app-denied-403-after-gate`
    ///
    /// ## Fix
    /// Read the application's logs for the same trace and fix the application's own check.
    /// If the application expects its own token in `Authorization`, send the Google ID token
    /// in `X-Serverless-Authorization`.
    ///
    /// ## Fix safety
    /// The suggested commands only read logs.
    ///
    /// ## References
    /// - https://cloud.google.com/run/docs/troubleshooting
    /// - https://cloud.google.com/run/docs/logging#request-logs
    pub struct ApplicationDenied {
        code: "IPD003",
        name: "application-denied",
        cause: "application_denied",
        title: "the container's own code refused the request, not Cloud Run's gate",
        severity: High,
    }
}

pub struct State {
    verdict: Verdict,
}

impl RuleImpl for ApplicationDenied {
    type State = State;

    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Cx) -> Check<State> {
        match cx.gate() {
            Gate::PassedGate => Check::Fire(State {
                verdict: Verdict::Confirmed,
            }),
            Gate::Unclear if cx.invoker_check_disabled() => Check::Fire(State {
                verdict: Verdict::Likely,
            }),
            Gate::Unclear => Check::Skip(
                "the request entry has no gate text and zero latency: cannot tell who answered"
                    .into(),
            ),
            Gate::Unknown => Check::Skip(format!(
                "no request log: {}",
                cx.ev.logs.absence().unwrap_or_default()
            )),
            Gate::NoLogEntry => Check::NotApplicable(
                "no request-log entry for the failing request: it never reached the service".into(),
            ),
            g => Check::Pass(format!(
                "Cloud Run's gate refused the request ({})",
                gate_text(g)
            )),
        }
    }

    fn finding(&self, s: &State, cx: &Cx) -> Body {
        let svc = cx.service_name_or("SERVICE");
        let mut evidence = Vec::new();
        if let Some(e) = &cx.facts.entry {
            evidence.push(format!("{}, no gate message", e.summary()));
        }
        if cx.invoker_check_disabled() {
            evidence.push(format!("service `{svc}`: invoker IAM check disabled"));
        }
        Body {
            verdict: s.verdict,
            title: format!("the application in `{svc}` returned the {}, not Cloud Run's invoker check", cx.status().map(|s| s.to_string()).unwrap_or_else(|| "refusal".into())),
            explanation: "Cloud Run's gate refuses requests in 0 s and logs \"The request was not authenticated\" (403) or \"The request was not authorized to invoke this service\" (401). This request took time and carries no such text: it passed the gate, and the container's own code produced the status. Look at the application's authentication (middleware, framework checks, an upstream it calls).".into(),
            evidence,
        }
    }

    fn fixes(&self, _: &State, cx: &Cx) -> Vec<Fix> {
        let mut filter = String::from("resource.type=\"cloud_run_revision\"");
        if let Some(s) = cx.ev.service_name() {
            filter.push_str(&format!(" AND resource.labels.service_name=\"{s}\""));
        }
        if let (Some(tr), Some(p)) = (
            cx.facts.entry.as_ref().and_then(|e| e.trace.clone()),
            cx.ev.project(),
        ) {
            let id = tr.rsplit('/').next().unwrap_or(&tr).to_string();
            filter.push_str(&format!(" AND trace=\"projects/{p}/traces/{id}\""));
        } else {
            filter.push_str(" AND logName:\"run.googleapis.com%2Fstdout\"");
        }
        vec![
            Fix::command(
                "read what the application logged for this request",
                vec![
                    "gcloud".into(),
                    "logging".into(),
                    "read".into(),
                    Arg::lit(filter),
                    cx.project_flag(),
                    "--limit=50".into(),
                    "--format=json".into(),
                ],
                Safety::Safe,
            ),
            Fix::note(
                "if the application checks its own token in `Authorization`",
                "Send the Google ID token for the invoker check in `X-Serverless-Authorization: Bearer TOKEN` and keep the application's token in `Authorization`; Cloud Run checks the former and passes the latter through.",
            ),
        ]
    }
}

fn gate_text(g: Gate) -> &'static str {
    match g {
        Gate::NotAuthenticated => "403 \"not authenticated\"",
        Gate::EmptyAuthorization => "403, empty Authorization header",
        Gate::NotAuthorized => "401 \"not authorized to invoke\"",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use ipd_model::Gathered;

    #[test]
    fn latency_without_gate_text_is_the_app() {
        let mut ev = base();
        ev.logs = Gathered::Present(vec![entry(403, None, "0.183s", "POST")]);
        assert_eq!(
            fired(&run(&ApplicationDenied, &ev)),
            Some(Verdict::Confirmed)
        );
    }

    #[test]
    fn gate_text_passes() {
        let mut ev = base();
        ev.logs = Gathered::Present(vec![entry(403, Some(TEXT_403), "0s", "POST")]);
        assert!(matches!(
            run(&ApplicationDenied, &ev),
            crate::Outcome::Passed(_)
        ));
    }
}
