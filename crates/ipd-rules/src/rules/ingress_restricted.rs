use ipd_model::facts::Gate;
use ipd_model::service::Ingress;

use crate::cx::Cx;
use crate::declare_rule;
use crate::fix::{Fix, FixKind, Safety};
use crate::rule::{Body, Check, RuleImpl, RuleMeta, Verdict};

declare_rule! {
    /// ## What it checks
    /// A 404 for which Cloud Logging has no request entry, on a service whose ingress is not
    /// `all` (`internal`, `internal-and-cloud-load-balancing`, `none`) or whose default
    /// `run.app` URL is disabled.
    ///
    /// ## Why it breaks the request
    /// Ingress is checked before anything else. A request that does not come from an allowed
    /// network path never reaches the invoker check or the container: the client gets a
    /// Google 404 page, and Cloud Logging records nothing, even with a `httpRequest.status=404`
    /// filter. Requests from the internet, and from Cloud Run, Cloud Functions or App Engine
    /// callers that do not egress through the VPC, are not "internal".
    ///
    /// ## Evidence used
    /// The service's ingress setting and `defaultUriDisabled` (v2) or the
    /// `run.googleapis.com/ingress` / `ingress-status` / `default-url-disabled` annotations
    /// (v1); the status the client saw (`--status`, `context.json`); the request log.
    /// Without logs the verdict is `likely`.
    ///
    /// ## Example
    /// `fixtures/ingress-internal-only-404-no-request-log`
    ///
    /// ## Fix
    /// Call the service from an allowed path (inside the VPC, or through the load balancer),
    /// or widen ingress with `gcloud run services update SERVICE --ingress=all`; re-enable
    /// the default URL with `--default-url`.
    ///
    /// ## Fix safety
    /// Changing ingress or the default URL exposes the service to more networks: review.
    ///
    /// ## References
    /// - https://cloud.google.com/run/docs/securing/ingress
    /// - https://cloud.google.com/run/docs/troubleshooting (HTTP 404 section)
    pub struct IngressRestricted {
        code: "IPD001",
        name: "ingress-restricted",
        cause: "ingress_restricted",
        title: "ingress or a disabled default URL keeps the request from reaching the service",
        severity: High,
    }
}

pub struct State {
    ingress: Ingress,
    default_url_disabled: bool,
    verdict: Verdict,
}

impl RuleImpl for IngressRestricted {
    type State = State;

    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Cx) -> Check<State> {
        let Some(svc) = cx.service() else {
            return Check::Skip(format!(
                "service description not available: {}",
                cx.ev.service.absence().unwrap_or_default()
            ));
        };
        if svc.ingress.admits_internet() && !svc.default_url_disabled {
            return Check::Pass(format!(
                "ingress is `{}` and the default URL is enabled",
                svc.ingress.gcloud()
            ));
        }
        let verdict = match (cx.status(), cx.gate()) {
            (Some(404), Gate::NoLogEntry) => Verdict::Confirmed,
            (Some(404), Gate::Unknown) => Verdict::Likely,
            (Some(404), _) => {
                return Check::Pass(
                    "a request-log entry exists for the 404, so the request reached the service"
                        .into(),
                );
            }
            (None, Gate::NoLogEntry) => Verdict::Possible,
            (Some(s), _) => {
                return Check::NotApplicable(format!(
                    "the client saw {s}; ingress blocks answer 404"
                ));
            }
            (None, _) => {
                return Check::NotApplicable(
                    "the status is unknown and the logs do not point at ingress".into(),
                );
            }
        };
        Check::Fire(State {
            ingress: svc.ingress,
            default_url_disabled: svc.default_url_disabled,
            verdict,
        })
    }

    fn finding(&self, s: &State, cx: &Cx) -> Body {
        let svc = cx.service_name_or("SERVICE");
        let title = if s.default_url_disabled && s.ingress.admits_internet() {
            format!("the default URL of service `{svc}` is disabled, so requests to it get 404")
        } else {
            format!(
                "ingress `{}` on service `{svc}` rejects the request with 404 before it reaches the service",
                s.ingress.gcloud()
            )
        };
        let mut evidence = vec![format!("service `{svc}`: ingress `{}`", s.ingress.gcloud())];
        if s.default_url_disabled {
            evidence.push("service: default `run.app` URL disabled".into());
        }
        evidence.push(match cx.gate() {
            Gate::NoLogEntry => "Cloud Logging has no request entry for the failing request".into(),
            _ => "no request log was provided (a 404 from ingress leaves none)".into(),
        });
        if let Some(st) = cx.status() {
            evidence.push(format!("the client saw {st}"));
        }
        Body {
            verdict: s.verdict,
            title,
            explanation: "Ingress is enforced before the invoker check: a request that does not arrive through an allowed network path gets a Google 404 page and is not logged at all. Callers on the internet, and serverless callers that do not egress through the VPC, are not internal. The 404 is not an IAM problem; no binding will fix it.".into(),
            evidence,
        }
    }

    fn fixes(&self, s: &State, cx: &Cx) -> Vec<Fix> {
        let mut v = vec![Fix::note(
            "call the service through an allowed path",
            match s.ingress {
                Ingress::Internal => {
                    "Call from inside the VPC network (Direct VPC egress or a Serverless VPC Access connector routing all traffic), from the same project's VPC, Shared VPC, or a VPC-SC perimeter where Cloud Run is a restricted service."
                }
                Ingress::InternalAndCloudLoadBalancing => {
                    "Call through the external Application Load Balancer (serverless NEG) in front of the service, or from inside the VPC."
                }
                _ => {
                    "Call the URL that is enabled (the load balancer or custom domain in front of the service)."
                }
            },
        )];
        if !s.ingress.admits_internet() {
            v.push(Fix::command(
                "allow ingress from all networks",
                cx.update_argv(&["--ingress=all"]),
                Safety::NeedsReview,
            ));
            v.push(Fix::text(
                FixKind::Terraform,
                "the same in Terraform",
                cx.service_terraform("ingress = \"INGRESS_TRAFFIC_ALL\""),
                Safety::NeedsReview,
            ));
            v.push(Fix::text(
                FixKind::Yaml,
                "the same in the service YAML",
                cx.service_yaml(&[("run.googleapis.com/ingress", "all")]),
                Safety::NeedsReview,
            ));
        }
        if s.default_url_disabled {
            v.push(Fix::command(
                "re-enable the default `run.app` URL",
                cx.update_argv(&["--default-url"]),
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
    use serde_json::json;

    #[test]
    fn fires_on_404_without_log_entry() {
        let mut ev = base();
        ev.service =
            Gathered::Present(service(json!({"ingress": "INGRESS_TRAFFIC_INTERNAL_ONLY"})));
        ev.logs = Gathered::Present(vec![]);
        ev.inputs.status = Some(404);
        assert_eq!(
            fired(&run(&IngressRestricted, &ev)),
            Some(Verdict::Confirmed)
        );
        ev.logs = Gathered::missing("none");
        assert_eq!(fired(&run(&IngressRestricted, &ev)), Some(Verdict::Likely));
    }

    #[test]
    fn does_not_fire_on_403_or_open_ingress() {
        let mut ev = base();
        ev.inputs.status = Some(404);
        ev.logs = Gathered::Present(vec![]);
        assert!(matches!(
            run(&IngressRestricted, &ev),
            crate::Outcome::Passed(_)
        ));
        ev.service =
            Gathered::Present(service(json!({"ingress": "INGRESS_TRAFFIC_INTERNAL_ONLY"})));
        ev.inputs.status = Some(403);
        assert!(matches!(
            run(&IngressRestricted, &ev),
            crate::Outcome::NotApplicable(_)
        ));
    }

    #[test]
    fn default_url_disabled_counts() {
        let mut ev = base();
        ev.service = Gathered::Present(service(json!({"defaultUriDisabled": true})));
        ev.inputs.status = Some(404);
        ev.logs = Gathered::Present(vec![]);
        assert_eq!(
            fired(&run(&IngressRestricted, &ev)),
            Some(Verdict::Confirmed)
        );
    }
}
