use ipd_model::token::{GCLOUD_CLIENT_ID, TokenKind};

use crate::cx::Cx;
use crate::declare_rule;
use crate::fix::{Arg, Fix, FixKind, Safety};
use crate::rule::{Body, Check, RuleImpl, RuleMeta, Verdict};

declare_rule! {
    /// ## What it checks
    /// Whether the ID token's `aud` is an audience the service accepts: one of its URLs
    /// (`urls`, `uri`, the deterministic `SERVICE-PROJECT_NUMBER.REGION.run.app`), one of its
    /// custom audiences, or — for user tokens from `gcloud auth print-identity-token` — the
    /// gcloud client ID `32555940559.apps.googleusercontent.com`.
    ///
    /// ## Why it breaks the request
    /// Cloud Run refuses a token minted for another audience with 401 "The request was not
    /// authorized to invoke this service. The access token could not be verified." Custom
    /// domains and load-balancer host names are not accepted unless added as custom
    /// audiences. Pub/Sub and Cloud Scheduler default the audience to the full push URL,
    /// path included; whether Cloud Run accepts an audience with a path is not documented,
    /// so that case is reported as `likely`. A query string in the audience is refused.
    ///
    /// ## Evidence used
    /// The token's `aud` (decoded, not verified), the service's URLs and custom audiences; for
    /// a multi-region service, every region's URLs (`service-REGION.json`, and each region's
    /// deterministic URL when the project number is known).
    ///
    /// ## Example
    /// `fixtures/wrong-audience-custom-domain-not-configured`
    ///
    /// ## Fix
    /// Mint the token for the service URL, set the caller's audience explicitly, or add the
    /// audience the callers use as a custom audience of the service.
    ///
    /// ## Fix safety
    /// Adding a custom audience creates a new revision and lets tokens minted for that
    /// audience invoke the service: review.
    ///
    /// ## References
    /// - https://cloud.google.com/run/docs/configuring/custom-audiences
    /// - https://cloud.google.com/run/docs/troubleshooting (401 section)
    pub struct WrongAudience {
        code: "IPD014",
        name: "wrong-audience",
        cause: "wrong_audience",
        title: "the token's audience is not one the service accepts",
        severity: High,
    }
}

pub enum Mismatch {
    /// The audience is a URL of the service plus a path (Pub/Sub's default).
    PathOnServiceUrl(String),
    /// A URL of the service with a query string or fragment.
    QueryOnServiceUrl(String),
    Other,
}

pub struct State {
    aud: Vec<String>,
    accepted: Vec<String>,
    mismatch: Mismatch,
}

fn norm(s: &str) -> &str {
    s.trim().trim_end_matches('/')
}

impl RuleImpl for WrongAudience {
    type State = State;

    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Cx) -> Check<State> {
        if let Some(why) = cx.tokens_not_checked() {
            return Check::NotApplicable(why);
        }
        // The audience of the token sent, or of the token a Google-managed caller mints.
        let configured = cx
            .ev
            .caller_configs
            .iter()
            .find_map(|c| c.effective_audience().map(str::to_string));
        let aud: Vec<String> = match (cx.token(), &configured) {
            (Some(t), _) if t.kind != TokenKind::GoogleIdToken => {
                return Check::NotApplicable("not a Google ID token (see IPD011/IPD012)".into());
            }
            (Some(t), _) => t.claims.as_ref().map(|c| c.aud.clone()).unwrap_or_default(),
            (None, Some(a)) => vec![a.clone()],
            (None, None) => {
                return Check::Skip("no token was given (token.txt or --token) and no caller configuration names an audience".into());
            }
        };
        let Some(svc) = cx.service() else {
            return Check::Skip(format!(
                "service description not available: {}",
                cx.ev.service.absence().unwrap_or_default()
            ));
        };
        if aud.is_empty() {
            return Check::Fire(State {
                aud,
                accepted: vec![],
                mismatch: Mismatch::Other,
            });
        }
        let mut accepted: Vec<String> = svc.all_urls().cloned().collect();
        // A multi-region service: every region's URLs.
        for u in ipd_model::regions::other_region_urls(cx.ev) {
            if !accepted.contains(&u) {
                accepted.push(u);
            }
        }
        accepted.extend(svc.custom_audiences.iter().cloned());
        if aud.iter().any(|a| a == GCLOUD_CLIENT_ID) {
            return Check::Pass(
                "a gcloud user token (audience = the gcloud client ID, which Cloud Run accepts)"
                    .into(),
            );
        }
        if let Some(a) = aud
            .iter()
            .find(|a| accepted.iter().any(|u| norm(u) == norm(a)))
        {
            return Check::Pass(format!("`aud` `{a}` is an accepted audience"));
        }
        if svc.urls.is_empty() && svc.derived_urls.is_empty() {
            let looks_like_ours = aud.iter().any(|a| {
                a.strip_prefix("https://").is_some_and(|h| {
                    h.starts_with(&format!("{}-", svc.name)) && h.contains(".run.app")
                })
            });
            if looks_like_ours {
                return Check::Skip(format!(
                    "the service description lists no URLs (a `--format=export` YAML?) and `aud` `{}` looks like one of its run.app URLs",
                    aud.join(", ")
                ));
            }
        }
        let mismatch = aud
            .iter()
            .find_map(|a| {
                accepted.iter().find_map(|u| {
                    let u = norm(u);
                    let rest = a.strip_prefix(u)?;
                    if rest.starts_with('?') || rest.starts_with('#') {
                        Some(Mismatch::QueryOnServiceUrl(u.to_string()))
                    } else if rest.starts_with('/') {
                        if rest.contains('?') {
                            Some(Mismatch::QueryOnServiceUrl(u.to_string()))
                        } else {
                            Some(Mismatch::PathOnServiceUrl(u.to_string()))
                        }
                    } else {
                        None
                    }
                })
            })
            .unwrap_or(Mismatch::Other);
        Check::Fire(State {
            aud,
            accepted,
            mismatch,
        })
    }

    fn finding(&self, s: &State, cx: &Cx) -> Body {
        let svc = cx.service_name_or("SERVICE");
        let mut verdict = cx.token_verdict();
        if matches!(s.mismatch, Mismatch::PathOnServiceUrl(_)) && verdict == Verdict::Confirmed {
            verdict = Verdict::Likely;
        }
        let aud_shown = if s.aud.is_empty() {
            "(none)".to_string()
        } else {
            s.aud.join(", ")
        };
        let mut evidence = match (
            cx.token(),
            cx.ev
                .caller_configs
                .iter()
                .find(|c| c.effective_audience().is_some()),
        ) {
            (None, Some(c)) => vec![format!(
                "{} `{}` mints tokens with audience `{aud_shown}`{}",
                c.kind.label(),
                c.name,
                if matches!(
                    &c.auth,
                    ipd_model::caller::CallerAuth::Oidc { audience: None, .. }
                ) {
                    " (no audience configured: the target URL is the default)"
                } else {
                    ""
                }
            )],
            _ => vec![format!(
                "token `aud`: `{aud_shown}` (decoded, not verified)"
            )],
        };
        evidence.push(format!(
            "accepted audiences of `{svc}`: {}",
            if s.accepted.is_empty() {
                "none known".to_string()
            } else {
                s.accepted
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ));
        if let Some(e) = cx
            .token()
            .and_then(|t| t.claims.as_ref())
            .and_then(|c| c.email.clone())
        {
            evidence.push(format!("token `email`: `{e}`"));
        }
        let mut explanation = match &s.mismatch {
            Mismatch::PathOnServiceUrl(u) => format!(
                "The audience is the service URL `{u}` plus a path. Pub/Sub and Cloud Scheduler use the full target URL as the default audience. Cloud Run documents the service URL (or a custom audience) as the audience; whether it accepts one with a path is not documented, and users report 401 for it. Set the audience to `{u}`."
            ),
            Mismatch::QueryOnServiceUrl(u) => format!(
                "The audience is the service URL `{u}` with a query string or fragment; Cloud Run refuses such audiences with 401. Cloud Tasks and Scheduler default the audience to the full target URL, query included: set the audience explicitly to `{u}`."
            ),
            Mismatch::Other => "Cloud Run accepts an ID token only when its `aud` is one of the service's URLs or custom audiences (exact match). A token minted for another audience — a custom domain, a load balancer host, another service, or a bare name — is refused with 401.".to_string(),
        };
        if let Some(c) = cx.status_caveat(true) {
            explanation.push_str(&format!(" Note: {c}."));
        }
        Body {
            verdict,
            title: format!("the token's audience `{aud_shown}` is not accepted by service `{svc}`"),
            explanation,
            evidence,
        }
    }

    fn fixes(&self, s: &State, cx: &Cx) -> Vec<Fix> {
        let url = match &s.mismatch {
            Mismatch::PathOnServiceUrl(u) | Mismatch::QueryOnServiceUrl(u) => Some(u.clone()),
            Mismatch::Other => cx.main_url(),
        };
        let aud_flag = |flag: &'static str| match &url {
            Some(u) => Arg::lit(format!("{flag}={u}")),
            None => Arg::FlagPlaceholder(flag, "SERVICE_URL"),
        };
        let mint = |what: &str| {
            Fix::command(
                what.to_string(),
                cx.mint_token_argv(url.as_deref()),
                Safety::Safe,
            )
        };
        let mut v = Vec::new();
        if let Some(c) = cx.ev.caller_configs.first() {
            // Google mints the caller's token from its configuration: that is the fix; a
            // token minted by hand only reproduces the call.
            v.push(crate::rules::no_token::caller_oidc_fix(
                cx,
                c.kind,
                &c.name,
                &url.clone()
                    .map(Arg::Lit)
                    .unwrap_or(Arg::Placeholder("SERVICE_URL")),
            ));
            v.push(mint(
                "to try the call by hand, mint a token for the service URL",
            ));
        } else {
            v.push(mint("mint the token for the service URL"));
        }
        if cx.ev.caller_configs.is_empty() && matches!(s.mismatch, Mismatch::PathOnServiceUrl(_)) {
            v.push(Fix::command(
                "if a Pub/Sub push subscription calls the service, set its audience to the service URL",
                vec!["gcloud".into(), "pubsub".into(), "subscriptions".into(), "update".into(), Arg::Placeholder("SUBSCRIPTION"), aud_flag("--push-auth-token-audience")],
                Safety::Safe,
            ));
        }
        let custom: Vec<&String> = s
            .aud
            .iter()
            .filter(|a| a.starts_with("https://") && !a.contains(".run.app"))
            .collect();
        if let (Mismatch::Other, Some(a)) = (&s.mismatch, custom.first()) {
            v.push(Fix::command(
                format!("or accept `{a}` as a custom audience of the service"),
                cx.update_argv(&[&format!("--add-custom-audiences={a}")]),
                Safety::NeedsReview,
            ));
            v.push(Fix::text(
                FixKind::Terraform,
                "the same in Terraform",
                cx.service_terraform(&format!("custom_audiences = [\"{a}\"]")),
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
    use ipd_model::token::Token;
    use serde_json::json;

    #[test]
    fn service_url_and_trailing_slash_pass() {
        let mut ev = base();
        ev.token = Some(sa_token(URL));
        assert!(matches!(
            run(&WrongAudience, &ev),
            crate::Outcome::Passed(_)
        ));
        ev.token = Some(sa_token(&format!("{URL}/")));
        assert!(matches!(
            run(&WrongAudience, &ev),
            crate::Outcome::Passed(_)
        ));
    }

    #[test]
    fn custom_domain_fires_path_is_likely() {
        let mut ev = base();
        ev.token = Some(sa_token("https://api.shop.example.com"));
        assert_eq!(fired(&run(&WrongAudience, &ev)), Some(Verdict::Confirmed));
        ev.token = Some(sa_token(&format!("{URL}/pubsub/push")));
        assert_eq!(fired(&run(&WrongAudience, &ev)), Some(Verdict::Likely));
        ev.token = Some(sa_token(&format!("{URL}/run?x=1")));
        assert_eq!(fired(&run(&WrongAudience, &ev)), Some(Verdict::Confirmed));
    }

    #[test]
    fn fixes_name_the_token_service_account_not_a_placeholder() {
        let mut ev = base();
        ev.token = Some(sa_token("https://api.shop.example.com"));
        let crate::Outcome::Fired(_, fixes) = run(&WrongAudience, &ev) else {
            panic!("wrong_audience should fire")
        };
        let mint = fixes[0].rendered();
        assert!(
            mint.contains(&format!("--impersonate-service-account={SA}"))
                && mint.contains(&format!("--audiences={URL}"))
                && !mint.contains('<'),
            "{mint}"
        );
        // A user mints their own token (gcloud refuses --audiences for user accounts).
        ev.inputs.caller = Some("user:alice@shop.example.com".into());
        let crate::Outcome::Fired(_, fixes) = run(&WrongAudience, &ev) else {
            panic!("wrong_audience should fire")
        };
        assert_eq!(
            fixes[0].rendered(),
            "gcloud auth print-identity-token alice@shop.example.com"
        );
        // A group names no account to mint for: the placeholder stays, visibly.
        ev.inputs.caller = Some("group:callers@shop.example.com".into());
        let crate::Outcome::Fired(_, fixes) = run(&WrongAudience, &ev) else {
            panic!("wrong_audience should fire")
        };
        assert!(fixes[0].rendered().contains("INVOKER_SA_EMAIL"));
    }

    #[test]
    fn pubsub_default_audience_with_path_is_likely() {
        let mut ev = base();
        ev.caller_configs.push(
            ipd_model::caller::CallerConfig::from_value(&json!({"name": "projects/shop-prod/subscriptions/orders-push",
                "pushConfig": {"pushEndpoint": format!("{URL}/pubsub/push"), "oidcToken": {"serviceAccountEmail": SA}}}))
            .unwrap(),
        );
        assert_eq!(fired(&run(&WrongAudience, &ev)), Some(Verdict::Likely));
    }

    #[test]
    fn gcloud_user_tokens_and_custom_audiences_pass() {
        let mut ev = base();
        ev.token = Some(Token::analyze(&jwt(
            json!({"iss": "https://accounts.google.com", "aud": GCLOUD_CLIENT_ID, "email": "a@b.com"}),
        )));
        assert!(matches!(
            run(&WrongAudience, &ev),
            crate::Outcome::Passed(_)
        ));
        ev.service = ipd_model::Gathered::Present(service(
            json!({"customAudiences": ["https://api.shop.example.com"]}),
        ));
        ev.token = Some(sa_token("https://api.shop.example.com"));
        assert!(matches!(
            run(&WrongAudience, &ev),
            crate::Outcome::Passed(_)
        ));
    }
}
