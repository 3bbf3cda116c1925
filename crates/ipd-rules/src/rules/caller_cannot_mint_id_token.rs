use ipd_model::Principal;
use ipd_model::caller::{CallerAuth, CallerKind};
use ipd_model::facts::Gate;

use crate::cx::Cx;
use crate::declare_rule;
use crate::fix::{Arg, Fix, Safety};
use crate::rule::{Body, Check, RuleImpl, RuleMeta, Verdict};

declare_rule! {
    /// ## What it checks
    /// Whether the caller's credentials can produce a Google ID token for the service at
    /// all. Two cases the evidence can show: the caller is a workload identity federation
    /// principal (`principal://iam.googleapis.com/…/workloadIdentityPools/…`, from `--caller`
    /// or `context.json`: external-account credentials, e.g. a CI job) and no token reached
    /// the gate; or a Pub/Sub push subscription asks for an OIDC token but the project's Pub/Sub
    /// service agent, which mints it, holds neither `roles/pubsub.serviceAgent` nor
    /// `roles/iam.serviceAccountTokenCreator` (needed in projects created on or before
    /// 2021-04-08).
    ///
    /// ## Why it breaks the request
    /// Workload identity federation (external-account) credentials cannot mint a Google ID
    /// token on their own:
    /// `gcloud auth print-identity-token` answers "No identity token can be obtained from
    /// the current credentials", and several client libraries refuse external-account, user
    /// or impersonated credentials for ID tokens. (Workforce identity federation users are
    /// not judged here: Google documents them as able to invoke.) The request then goes out without a
    /// token and the gate refuses it with 403. Minting a token for another service account
    /// needs Token Creator (or OpenID Connect Identity Token Creator) on it; without it the
    /// Pub/Sub agent cannot mint the push token and pushes fail.
    ///
    /// ## Evidence used
    /// The caller (`--caller`, `context.json`), the token if one was given, the request-log
    /// entry (gate text), Pub/Sub subscription configurations and the project IAM policy.
    ///
    /// ## Example
    /// `fixtures/mint-federated-caller-empty-authorization`
    ///
    /// ## Fix
    /// Let the federated identity impersonate a service account that may invoke the service
    /// (`roles/iam.workloadIdentityUser` on it) and mint the token as that account:
    /// `gcloud auth print-identity-token --impersonate-service-account=SA --audiences=URL
    /// --include-email`, or `generateIdToken` on the service account. For Pub/Sub, grant the
    /// service agent `roles/iam.serviceAccountTokenCreator`.
    ///
    /// ## Fix safety
    /// Impersonation and Token Creator let the identity act as the service account: grant
    /// them on that one account, not project-wide, and review.
    ///
    /// ## References
    /// - https://cloud.google.com/run/docs/authenticating/service-to-service (Workload Identity Federation from outside Google Cloud)
    /// - https://cloud.google.com/docs/authentication/get-id-token
    /// - https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions
    /// - https://github.com/google-github-actions/auth/issues/291
    pub struct CallerCannotMintIdToken {
        code: "IPD015",
        name: "caller-cannot-mint-id-token",
        cause: "caller_cannot_mint_id_token",
        title: "the caller's credentials cannot produce a Google ID token",
        severity: High,
    }
}

pub enum Why {
    /// A federation principal with no token at the gate.
    Federated { principal: String },
    /// A push subscription with an OIDC token whose project's Pub/Sub service agent holds
    /// neither `roles/pubsub.serviceAgent` nor Token Creator.
    PubsubAgent {
        subscription: String,
        agent: String,
        project: String,
    },
}

pub struct State {
    why: Why,
    verdict: Verdict,
}

/// A workload identity federation principal (external-account credentials). Workforce pool
/// users are not: Google documents workforce identity federation as the way for non-Google
/// accounts to invoke a service.
fn federated(p: &Principal) -> Option<&str> {
    let Principal::Uri(u) = p else { return None };
    (u.starts_with("principal://iam.googleapis.com/")
        || u.starts_with("principalSet://iam.googleapis.com/"))
    .then_some(())
    .filter(|_| u.contains("/workloadIdentityPools/"))
    .map(|_| u.as_str())
}

impl RuleImpl for CallerCannotMintIdToken {
    type State = State;

    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Cx) -> Check<State> {
        if cx.invoker_check_disabled() {
            return Check::NotApplicable(
                "the invoker check is disabled; no token is needed".into(),
            );
        }
        if cx.token().is_some() {
            return Check::Pass("a token was given: the caller did mint one".into());
        }
        if let Some(p) = cx.caller().and_then(|c| federated(&c.principal)) {
            let verdict = match cx.gate() {
                Gate::EmptyAuthorization => Verdict::Confirmed,
                Gate::NotAuthenticated => Verdict::Likely,
                Gate::NotAuthorized | Gate::PassedGate => {
                    return Check::Pass(
                        "the request carried a token (the gate did not answer 403 \"not authenticated\")"
                            .into(),
                    );
                }
                _ if cx.status() == Some(403) => Verdict::Possible,
                _ => {
                    return Check::Skip(
                        "a federated caller, but no refused request to tell whether a token was sent"
                            .into(),
                    );
                }
            };
            return Check::Fire(State {
                why: Why::Federated {
                    principal: p.to_string(),
                },
                verdict,
            });
        }
        if matches!(
            cx.gate(),
            Gate::Unknown | Gate::NoLogEntry | Gate::EmptyAuthorization | Gate::NotAuthenticated
        ) && let Some(why) = pubsub_agent_cannot_mint(cx)
        {
            return Check::Fire(State {
                why,
                verdict: Verdict::Possible,
            });
        }
        match cx.caller() {
            Some(_) => {
                Check::Pass("the caller is not a workload identity federation principal".into())
            }
            None => Check::Skip("the caller is unknown (pass --caller)".into()),
        }
    }

    fn finding(&self, s: &State, cx: &Cx) -> Body {
        let svc = cx.service_name_or("SERVICE");
        let mut evidence = Vec::new();
        if let Some(e) = &cx.facts.entry {
            evidence.push(e.summary().to_string());
            if let Some(t) = &e.text_payload {
                // The gate text ends with links; the sentences before them say what happened.
                let cut = t.find(" Read more at").unwrap_or(t.len());
                evidence.push(format!("log text: \"{}\"", &t[..cut]));
            }
        }
        let (title, explanation) = match &s.why {
            Why::Federated { principal } => {
                evidence.push(format!(
                    "caller: `{principal}` (a workload identity federation principal)"
                ));
                (
                    format!("the federated caller cannot mint a Google ID token for `{svc}`"),
                    "The caller is a workload identity federation principal. Its external-account credentials do not produce a Google ID token by themselves (`gcloud auth print-identity-token` answers \"No identity token can be obtained from the current credentials\", and several client libraries refuse external-account credentials for ID tokens), so the request reached Cloud Run without one and the gate refused it. The documented path is to impersonate a service account and mint the ID token as that account.".to_string(),
                )
            }
            Why::PubsubAgent {
                subscription,
                agent,
                ..
            } => {
                if let Some(c) = cx
                    .ev
                    .caller_configs
                    .iter()
                    .find(|c| &c.name == subscription)
                {
                    evidence.push(format!(
                        "push subscription `{subscription}` sends an OIDC token as `{}` to {}",
                        c.service_account().unwrap_or("the default service account"),
                        c.target_url.as_deref().unwrap_or("its push endpoint")
                    ));
                }
                evidence.push(format!(
                    "project policy: `serviceAccount:{agent}` holds neither `roles/pubsub.serviceAgent` nor `roles/iam.serviceAccountTokenCreator`"
                ));
                if cx.facts.entry.is_none() {
                    evidence
                        .push("no refused request from Pub/Sub in the request logs read".into());
                }
                (
                    format!(
                        "Pub/Sub may be unable to mint the OIDC token of push subscription `{subscription}`"
                    ),
                    format!(
                        "The subscription is configured to send an OIDC token, which Pub/Sub's service agent `{agent}` mints. In projects created on or before 2021-04-08 the agent needs `roles/iam.serviceAccountTokenCreator` unless it holds `roles/pubsub.serviceAgent`; the project policy read gives it neither. Without it the token cannot be minted and pushes fail. The project's creation date and grants on the push service account itself are not in the evidence, so this is possible, not certain."
                    ),
                )
            }
        };
        Body {
            verdict: s.verdict,
            title,
            explanation,
            evidence,
        }
    }

    fn fixes(&self, s: &State, cx: &Cx) -> Vec<Fix> {
        match &s.why {
            Why::Federated { principal } => {
                let url = cx.main_url().unwrap_or_else(|| "SERVICE_URL".into());
                let member = principal.clone();
                vec![
                    Fix::command(
                        "let the federated identity impersonate a service account that may invoke the service",
                        vec![
                            "gcloud".into(),
                            "iam".into(),
                            "service-accounts".into(),
                            "add-iam-policy-binding".into(),
                            Arg::Placeholder("INVOKER_SA_EMAIL"),
                            Arg::lit(format!("--member={member}")),
                            "--role=roles/iam.workloadIdentityUser".into(),
                        ],
                        Safety::NeedsReview,
                    ),
                    Fix::note(
                        "mint the ID token as that service account",
                        format!(
                            "gcloud auth print-identity-token --impersonate-service-account=INVOKER_SA_EMAIL --audiences={url} --include-email (or call iamcredentials generateIdToken on it); the service account needs roles/run.invoker on the service"
                        ),
                    ),
                ]
            }
            Why::PubsubAgent { agent, project, .. } => vec![Fix::command(
                "let the Pub/Sub service agent mint tokens (needed in projects created on or before 2021-04-08)",
                vec![
                    "gcloud".into(),
                    "projects".into(),
                    "add-iam-policy-binding".into(),
                    Arg::lit(project.clone()),
                    Arg::lit(format!("--member=serviceAccount:{agent}")),
                    "--role=roles/iam.serviceAccountTokenCreator".into(),
                ],
                Safety::NeedsReview,
            )],
        }
    }
}

/// A Pub/Sub push subscription with an OIDC token, in the service's own project, whose Pub/Sub
/// service agent the (read) project policy gives neither `roles/pubsub.serviceAgent` nor
/// `roles/iam.serviceAccountTokenCreator`.
fn pubsub_agent_cannot_mint(cx: &Cx) -> Option<Why> {
    let sub = cx.ev.caller_configs.iter().find(|c| {
        c.kind == CallerKind::PubsubSubscription
            && c.target_url.is_some()
            && matches!(c.auth, CallerAuth::Oidc { .. })
    })?;
    let sub_project = sub.name.strip_prefix("projects/")?.split('/').next()?;
    let policy = cx.ev.project_policy.present()?;
    if cx.ev.project().as_deref() != Some(sub_project) {
        return None; // the agent of another project: its policy is not in the evidence
    }
    let number = project_number(cx)?;
    let agent = format!("service-{number}@gcp-sa-pubsub.iam.gserviceaccount.com");
    let member = format!("serviceAccount:{agent}");
    let holds = policy.bindings.iter().any(|b| {
        b.condition.is_none()
            && matches!(
                b.role.as_str(),
                "roles/pubsub.serviceAgent" | "roles/iam.serviceAccountTokenCreator"
            )
            && b.members.iter().any(|m| m == &member)
    });
    (!holds).then(|| Why::PubsubAgent {
        subscription: sub.name.clone(),
        agent,
        project: sub_project.to_string(),
    })
}

/// The project number: from a v1 service's namespace, the deterministic service URL
/// (`https://SERVICE-NUMBER.REGION.run.app`) or a service agent in the project policy.
fn project_number(cx: &Cx) -> Option<String> {
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if let Some(p) = cx.service().and_then(|s| s.project.clone())
        && digits(&p)
    {
        return Some(p);
    }
    let from_url = cx.service().and_then(|s| {
        s.urls.iter().find_map(|u| {
            let host = ipd_model::paste::ids::host_of(u)?;
            ipd_model::paste::ids::run_host(host)?.project_number
        })
    });
    from_url.or_else(|| {
        cx.ev
            .project_policy
            .present()?
            .bindings
            .iter()
            .find_map(|b| {
                b.members.iter().find_map(|m| {
                    let rest = m.strip_prefix("serviceAccount:service-")?;
                    let (n, domain) = rest.split_once('@')?;
                    (digits(n) && domain.starts_with("gcp-sa-")).then(|| n.to_string())
                })
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use ipd_model::Gathered;

    const WIF: &str = "principal://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/github/subject/repo:acme/deploy:ref:refs/heads/main";

    fn federated_case(text: &str) -> ipd_model::Evidence {
        let mut ev = base();
        ev.logs = Gathered::Present(vec![entry(403, Some(text), "0s", "POST")]);
        ev.inputs.caller = Some(WIF.into());
        ev
    }

    #[test]
    fn a_federated_caller_without_a_token_cannot_mint_one() {
        let empty = format!("{TEXT_403} Empty Authorization header value.");
        assert_eq!(
            fired(&run(&CallerCannotMintIdToken, &federated_case(&empty))),
            Some(Verdict::Confirmed)
        );
        assert_eq!(
            fired(&run(&CallerCannotMintIdToken, &federated_case(TEXT_403))),
            Some(Verdict::Likely)
        );
        // A token arrived: it was minted (by impersonation).
        let mut ev = federated_case(TEXT_403);
        ev.token = Some(sa_token(URL));
        assert_eq!(fired(&run(&CallerCannotMintIdToken, &ev)), None);
        // A service account or user caller can mint.
        let mut ev = federated_case(TEXT_403);
        ev.inputs.caller = Some("serviceAccount:ci@shop-prod.iam.gserviceaccount.com".into());
        assert_eq!(fired(&run(&CallerCannotMintIdToken, &ev)), None);
        // A workforce pool user can invoke (Google's documented path for non-Google accounts).
        ev.inputs.caller = Some(
            "principal://iam.googleapis.com/locations/global/workforcePools/partners/subject/dana@example.com".into(),
        );
        assert_eq!(fired(&run(&CallerCannotMintIdToken, &ev)), None);
        // A principal set of a non-federation kind is not a minting problem.
        ev.inputs.caller = Some(
            "principalSet://cloudresourcemanager.googleapis.com/projects/123456789012/type/ServiceAccount".into(),
        );
        assert_eq!(fired(&run(&CallerCannotMintIdToken, &ev)), None);
    }

    fn pubsub_case(agent_role: Option<&str>, sub_project: &str) -> ipd_model::Evidence {
        let mut ev = base();
        ev.logs = Gathered::Present(vec![]);
        let mut bindings = vec![serde_json::json!({"role": "roles/editor",
            "members": ["serviceAccount:123456789012-compute@developer.gserviceaccount.com"]})];
        if let Some(r) = agent_role {
            bindings.push(serde_json::json!({"role": r,
                "members": ["serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com"]}));
        }
        ev.project_policy = policy(serde_json::json!({"bindings": bindings}));
        let sub = serde_json::json!({
            "name": format!("projects/{sub_project}/subscriptions/orders"),
            "topic": format!("projects/{sub_project}/topics/orders"),
            "pushConfig": {"pushEndpoint": format!("{URL}/push"),
                           "oidcToken": {"serviceAccountEmail": "push@shop-prod.iam.gserviceaccount.com"}}});
        ev.caller_configs =
            vec![ipd_model::caller::CallerConfig::from_value(&sub).expect("subscription")];
        ev
    }

    #[test]
    fn pubsub_agent_without_its_roles_may_be_unable_to_mint() {
        let ev = pubsub_case(None, "shop-prod");
        let o = run(&CallerCannotMintIdToken, &ev);
        assert_eq!(fired(&o), Some(Verdict::Possible));
        let crate::Outcome::Fired(body, fixes) = o else {
            unreachable!()
        };
        assert!(body.title.contains("unable to mint"), "{}", body.title);
        assert!(fixes[0].rendered().contains(
            "--member=serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com"
        ));
        for role in [
            "roles/pubsub.serviceAgent",
            "roles/iam.serviceAccountTokenCreator",
        ] {
            assert_eq!(
                fired(&run(
                    &CallerCannotMintIdToken,
                    &pubsub_case(Some(role), "shop-prod")
                )),
                None,
                "{role}"
            );
        }
        assert_eq!(
            fired(&run(
                &CallerCannotMintIdToken,
                &pubsub_case(None, "other-proj")
            )),
            None
        );
        let mut ev = pubsub_case(None, "shop-prod");
        ev.token = Some(sa_token(URL));
        assert_eq!(fired(&run(&CallerCannotMintIdToken, &ev)), None);
    }
}
