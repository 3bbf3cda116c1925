use ipd_model::caller::CallerKind;
use ipd_model::facts::Gate;

use crate::cx::Cx;
use crate::declare_rule;
use crate::fix::{Arg, Fix, Safety};
use crate::rule::{Body, Check, RuleImpl, RuleMeta, Verdict};

declare_rule! {
    /// ## What it checks
    /// Whether the request carried a Google ID token at all: the request log says
    /// `Empty Authorization header value.`, the refused request is a CORS preflight
    /// (`OPTIONS`, which never carries credentials), it came from a browser, or the caller's
    /// configuration (Pub/Sub, Scheduler, Tasks, Workflows) sends no OIDC token. A caller
    /// whose credentials cannot mint a token at all (federated credentials, a Pub/Sub agent
    /// without Token Creator) is IPD015's.
    ///
    /// ## Why it breaks the request
    /// A service that requires IAM answers a request without a token with 403 and the log
    /// text "The request was not authenticated" — the same text as for a token without
    /// permission, so the log alone often cannot tell them apart. Browsers never attach ID
    /// tokens; preflights never carry `Authorization`.
    ///
    /// ## Evidence used
    /// The request-log entry (gate text, method, user agent), the token if one was given,
    /// caller configurations.
    ///
    /// ## Example
    /// `fixtures/no-token-cloud-tasks-without-oidc`
    ///
    /// ## Fix
    /// Make the caller attach `Authorization: Bearer ID_TOKEN` (or
    /// `X-Serverless-Authorization`) minted for the service URL: configure the OIDC token on
    /// the Google-managed caller, use `gcloud run services proxy` for a browser during
    /// development, put IAP in front for people.
    ///
    /// ## Fix safety
    /// Making the service public instead is listed last and needs review: it removes
    /// authentication altogether.
    ///
    /// ## References
    /// - https://cloud.google.com/run/docs/troubleshooting (403 "Client is not authorized")
    /// - https://cloud.google.com/run/docs/authenticating/service-to-service
    pub struct NoToken {
        code: "IPD010",
        name: "no-token",
        cause: "no_token",
        title: "the request carried no Google ID token",
        severity: High,
    }
}

pub enum Why {
    EmptyAuthorization,
    Preflight,
    Browser,
    CallerSendsNone(CallerKind, String),
    Unverifiable,
}

pub struct State {
    why: Why,
    verdict: Verdict,
}

fn is_browser(ua: &str) -> bool {
    ua.starts_with("Mozilla/")
}

impl RuleImpl for NoToken {
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
        if let Some(c) = cx.ev.caller_configs.iter().find(|c| c.sends_no_token()) {
            return Check::Fire(State {
                why: Why::CallerSendsNone(c.kind, c.name.clone()),
                verdict: Verdict::Confirmed,
            });
        }
        let has_token = cx.token().is_some();
        let method = cx.facts.request.method.as_deref().unwrap_or("");
        let ua = cx.facts.request.user_agent.as_deref().unwrap_or("");
        match cx.gate() {
            Gate::EmptyAuthorization => Check::Fire(State {
                why: Why::EmptyAuthorization,
                verdict: Verdict::Confirmed,
            }),
            Gate::NotAuthenticated if method == "OPTIONS" => Check::Fire(State {
                why: Why::Preflight,
                verdict: Verdict::Confirmed,
            }),
            Gate::NotAuthenticated if has_token => Check::Pass(
                "a token was provided; the 403 points at the caller's permission instead".into(),
            ),
            Gate::NotAuthenticated if is_browser(ua) && cx.service().is_some_and(|s| s.iap_enabled) => Check::Pass(
                "IAP is in front: it authenticates browser users and calls the service with its own token".into(),
            ),
            // A service that is, or is meant to be, public: the missing token is not the
            // cause (the public binding or switch is), so never more than possible.
            Gate::NotAuthenticated if is_browser(ua) => Check::Fire(State {
                why: Why::Browser,
                verdict: if cx.public_on_purpose() || cx.facts.expect_public {
                    Verdict::Possible
                } else {
                    Verdict::Likely
                },
            }),
            Gate::NotAuthenticated if cx.caller().is_none() => Check::Fire(State {
                why: Why::Unverifiable,
                verdict: Verdict::Possible,
            }),
            Gate::NotAuthenticated => Check::Pass(
                "the caller is known; the 403 is examined as a permission problem".into(),
            ),
            Gate::Unknown if !has_token => Check::Skip(
                "no request log and no token: cannot tell whether a token was sent".into(),
            ),
            _ if has_token => Check::Pass("a token was provided".into()),
            g => Check::Pass(format!(
                "the request log does not show a missing token (gate: {g:?})"
            )),
        }
    }

    fn finding(&self, s: &State, cx: &Cx) -> Body {
        let svc = cx.service_name_or("SERVICE");
        let mut evidence = Vec::new();
        if let Some(e) = &cx.facts.entry {
            evidence.push(e.summary().to_string());
            if let Some(t) = &e.text_payload {
                evidence.push(format!("log text: \"{}\"", first_sentence_pair(t)));
            }
        }
        let (title, explanation) = match &s.why {
            Why::EmptyAuthorization => (
                format!("requests to `{svc}` arrive without an `Authorization` header"),
                "Cloud Run logged \"Empty Authorization header value.\": the caller sent no token at all. A service that requires IAM refuses such requests with 403 before the container sees them.".to_string(),
            ),
            Why::Preflight => (
                format!("the refused request is a CORS preflight (`OPTIONS`), which never carries a token, to `{svc}`"),
                "Browsers send an OPTIONS preflight without credentials before a cross-origin request. Cloud Run's invoker check refuses it with 403 (latency 0s), and the browser reports a CORS error. The preflight cannot carry an ID token, so a private Cloud Run service cannot be called cross-origin from a browser directly.".to_string(),
            ),
            Why::Browser => (
                format!("a browser called `{svc}` without an ID token"),
                "Browsers do not attach Google ID tokens. The request reached the invoker check with no token and got the 403 page.".to_string(),
            ),
            Why::CallerSendsNone(kind, name) => (
                format!("{} `{}` is configured without an OIDC token", kind.label(), name),
                format!("The {} sends its requests with no Authorization header, so the service refuses them with 403.", kind.label()),
            ),
            Why::Unverifiable => (
                format!("the request to `{svc}` may have carried no token"),
                "The log says \"The request was not authenticated\", which Cloud Run writes both when no token was sent and when the token's principal lacks run.routes.invoke. No token and no caller were given to tell which: pass --token or --caller to decide.".to_string(),
            ),
        };
        Body {
            verdict: s.verdict,
            title,
            explanation,
            evidence,
        }
    }

    fn fixes(&self, s: &State, cx: &Cx) -> Vec<Fix> {
        let url = cx.main_url();
        let url_arg = url
            .clone()
            .map(Arg::Lit)
            .unwrap_or(Arg::Placeholder("SERVICE_URL"));
        let mut v = Vec::new();
        match &s.why {
            Why::EmptyAuthorization | Why::Unverifiable => {
                let ua = cx.facts.request.user_agent.as_deref().unwrap_or("");
                if ua.starts_with("Google-Cloud-Tasks") {
                    v.push(Fix::command(
                        "make the queue's HTTP tasks carry an OIDC token",
                        vec![
                            "gcloud".into(),
                            "tasks".into(),
                            "queues".into(),
                            "update".into(),
                            Arg::Placeholder("QUEUE"),
                            Arg::FlagPlaceholder("--location", "LOCATION"),
                            cx.invoker_sa_flag("--http-oidc-service-account-email-override"),
                            match &url {
                                Some(u) => {
                                    Arg::lit(format!("--http-oidc-token-audience-override={u}"))
                                }
                                None => Arg::FlagPlaceholder(
                                    "--http-oidc-token-audience-override",
                                    "SERVICE_URL",
                                ),
                            },
                        ],
                        Safety::NeedsReview,
                    ));
                } else if ua.starts_with("Google-Cloud-Scheduler") {
                    v.push(Fix::command(
                        "make the Scheduler job send an OIDC token",
                        vec![
                            "gcloud".into(),
                            "scheduler".into(),
                            "jobs".into(),
                            "update".into(),
                            "http".into(),
                            Arg::Placeholder("JOB"),
                            Arg::FlagPlaceholder("--location", "LOCATION"),
                            cx.invoker_sa_flag("--oidc-service-account-email"),
                            match &url {
                                Some(u) => Arg::lit(format!("--oidc-token-audience={u}")),
                                None => {
                                    Arg::FlagPlaceholder("--oidc-token-audience", "SERVICE_URL")
                                }
                            },
                        ],
                        Safety::NeedsReview,
                    ));
                }
                v.push(Fix::note(
                    "send a Google ID token minted for the service URL",
                    format!(
                        "From code: fetch an ID token with audience {} (metadata server, or google-auth `fetch_id_token`) and send `Authorization: Bearer TOKEN`. By hand: curl -H \"Authorization: Bearer $(gcloud auth print-identity-token)\" {}",
                        url.as_deref().unwrap_or("<SERVICE_URL>"),
                        url.as_deref().unwrap_or("<SERVICE_URL>")
                    ),
                ));
            }
            Why::Preflight | Why::Browser => {
                v.push(Fix::command(
                    "during development, reach the service through an authenticated local proxy",
                    vec![
                        "gcloud".into(),
                        "run".into(),
                        "services".into(),
                        "proxy".into(),
                        cx.service_arg(),
                        cx.region_flag(),
                        cx.project_flag(),
                    ],
                    Safety::Safe,
                ));
                v.push(Fix::note(
                    "for people, put IAP in front instead of calling the private service from a browser",
                    "Enable IAP on the service (or its load balancer) so users sign in with Google; or serve the frontend and API from the same origin so no preflight is needed. A private Cloud Run service cannot answer a browser's preflight.",
                ));
                v.push(Fix::command(
                    "or make the service public and authenticate users in the application",
                    cx.update_argv(&["--no-invoker-iam-check"]),
                    Safety::NeedsReview,
                ));
            }
            Why::CallerSendsNone(kind, name) => v.push(caller_oidc_fix(cx, *kind, name, &url_arg)),
        }
        v
    }
}

/// The command that gives a Google-managed caller an OIDC token.
pub fn caller_oidc_fix(cx: &Cx, kind: CallerKind, name: &str, url: &Arg) -> Fix {
    let short = name.rsplit('/').next().unwrap_or(name).to_string();
    let location = name
        .split('/')
        .skip_while(|s| *s != "locations")
        .nth(1)
        .map(|l| Arg::lit(format!("--location={l}")));
    let aud = |flag: &'static str| match url {
        Arg::Lit(u) => Arg::lit(format!("{flag}={u}")),
        _ => Arg::FlagPlaceholder(flag, "SERVICE_URL"),
    };
    let mut argv: Vec<Arg> = match kind {
        CallerKind::PubsubSubscription => vec![
            "gcloud".into(),
            "pubsub".into(),
            "subscriptions".into(),
            "update".into(),
            Arg::lit(short),
            cx.invoker_sa_flag("--push-auth-service-account"),
            aud("--push-auth-token-audience"),
        ],
        CallerKind::SchedulerJob => vec![
            "gcloud".into(),
            "scheduler".into(),
            "jobs".into(),
            "update".into(),
            "http".into(),
            Arg::lit(short),
            cx.invoker_sa_flag("--oidc-service-account-email"),
            aud("--oidc-token-audience"),
        ],
        CallerKind::TasksQueue | CallerKind::TasksTask => vec![
            "gcloud".into(),
            "tasks".into(),
            "queues".into(),
            "update".into(),
            Arg::lit(
                name.split('/')
                    .skip_while(|s| *s != "queues")
                    .nth(1)
                    .unwrap_or(&short)
                    .to_string(),
            ),
            cx.invoker_sa_flag("--http-oidc-service-account-email-override"),
            aud("--http-oidc-token-audience-override"),
        ],
        CallerKind::Workflow | CallerKind::EventarcTrigger => {
            return Fix::note(
                format!("add `auth: {{type: OIDC}}` to the workflow's HTTP call (`{short}`)"),
                "In the workflow's http.* step that calls the service, add `auth: {type: OIDC}` (and `audience:` set to the service URL when calling a custom domain). Workflows sends no token otherwise.",
            );
        }
    };
    if let Some(l) = location
        && !matches!(kind, CallerKind::PubsubSubscription)
    {
        argv.insert(argv.len() - 2, l);
    }
    Fix::command(
        format!("configure an OIDC token on {} `{}`", kind.label(), name),
        argv,
        Safety::NeedsReview,
    )
}

fn first_sentence_pair(t: &str) -> String {
    // The gate text ends with links; the first one or two sentences say what happened.
    let cut = t.find(" Read more at").unwrap_or(t.len());
    t[..cut].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use ipd_model::Gathered;

    #[test]
    fn empty_authorization_is_confirmed() {
        let mut ev = base();
        let text = format!("{TEXT_403} Empty Authorization header value.");
        ev.logs = Gathered::Present(vec![entry(403, Some(&text), "0s", "POST")]);
        assert_eq!(fired(&run(&NoToken, &ev)), Some(Verdict::Confirmed));
    }

    #[test]
    fn preflight_is_confirmed_and_token_given_passes() {
        let mut ev = base();
        ev.logs = Gathered::Present(vec![entry(403, Some(TEXT_403), "0s", "OPTIONS")]);
        assert_eq!(fired(&run(&NoToken, &ev)), Some(Verdict::Confirmed));
        ev.logs = Gathered::Present(vec![entry(403, Some(TEXT_403), "0s", "GET")]);
        ev.token = Some(sa_token(URL));
        assert!(matches!(run(&NoToken, &ev), crate::Outcome::Passed(_)));
    }

    #[test]
    fn unknown_caller_is_only_possible() {
        let mut ev = base();
        ev.logs = Gathered::Present(vec![entry(403, Some(TEXT_403), "0s", "GET")]);
        assert_eq!(fired(&run(&NoToken, &ev)), Some(Verdict::Possible));
    }
}
