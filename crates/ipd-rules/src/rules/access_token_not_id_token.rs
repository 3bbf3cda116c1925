use ipd_model::caller::CallerAuth;
use ipd_model::token::TokenKind;

use crate::cx::Cx;
use crate::declare_rule;
use crate::fix::{Arg, Fix, Safety};
use crate::rule::{Body, Check, RuleImpl, RuleMeta};

declare_rule! {
    /// ## What it checks
    /// Whether the token sent is an OAuth 2.0 access token (`ya29.…`), or the caller is
    /// configured to send one (Cloud Scheduler `oauthToken`, Workflows `OAuth2`), where Cloud
    /// Run requires an OIDC ID token.
    ///
    /// ## Why it breaks the request
    /// Cloud Run's invoker check accepts only Google-signed ID tokens (JWTs). An access token
    /// is opaque to it: the request is refused with 401 "The request was not authorized to
    /// invoke this service". `gcloud auth print-access-token` and `oauthToken` produce access
    /// tokens; `gcloud auth print-identity-token` and `oidcToken` produce ID tokens.
    ///
    /// ## Evidence used
    /// The token (`token.txt` or `--token`), caller configurations; the status the client saw
    /// (a 403 lowers the verdict to `possible`).
    ///
    /// ## Example
    /// `fixtures/access-token-ya29-sent-401`
    ///
    /// ## Fix
    /// Send an ID token minted for the service URL (`gcloud auth print-identity-token`,
    /// the metadata server's `identity` endpoint, `fetch_id_token` in client libraries), or
    /// switch the Scheduler job from `--oauth-service-account-email` to
    /// `--oidc-service-account-email`.
    ///
    /// ## Fix safety
    /// Safe: it changes only how the caller authenticates.
    ///
    /// ## References
    /// - https://cloud.google.com/run/docs/troubleshooting (401 section: "an ID token, not an access or refresh token")
    /// - https://cloud.google.com/docs/authentication/get-id-token
    pub struct AccessTokenNotIdToken {
        code: "IPD011",
        name: "access-token-not-id-token",
        cause: "access_token_not_id_token",
        title: "an OAuth access token was sent where an ID token is required",
        severity: High,
    }
}

pub enum State {
    Token,
    Caller(String, ipd_model::caller::CallerKind),
}

impl RuleImpl for AccessTokenNotIdToken {
    type State = State;

    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Cx) -> Check<State> {
        if let Some(why) = cx.tokens_not_checked() {
            return Check::NotApplicable(why);
        }
        if let Some(c) = cx
            .ev
            .caller_configs
            .iter()
            .find(|c| matches!(c.auth, CallerAuth::OAuth { .. }))
        {
            return Check::Fire(State::Caller(c.name.clone(), c.kind));
        }
        match cx.token() {
            None => Check::Skip("no token was given (token.txt or --token)".into()),
            Some(t) if t.kind == TokenKind::AccessToken => Check::Fire(State::Token),
            Some(_) => Check::Pass("the token is not an OAuth access token".into()),
        }
    }

    fn finding(&self, s: &State, cx: &Cx) -> Body {
        let svc = cx.service_name_or("SERVICE");
        let mut evidence = Vec::new();
        let title = match s {
            State::Token => {
                if let Some(t) = cx.token() {
                    evidence.push(format!(
                        "token {}: an OAuth 2.0 access token (`ya29.` prefix), not a JWT",
                        t.raw.redacted()
                    ));
                }
                format!(
                    "the caller sent an OAuth access token to `{svc}`, which accepts only ID tokens"
                )
            }
            State::Caller(name, kind) => {
                evidence.push(format!(
                    "{} `{name}`: `oauthToken` configured instead of `oidcToken`",
                    kind.label()
                ));
                format!(
                    "{} `{name}` sends an OAuth access token, which Cloud Run rejects",
                    kind.label()
                )
            }
        };
        if let Some(st) = cx.status() {
            evidence.push(format!("the client saw {st}"));
        }
        let mut explanation = "Cloud Run's invoker check verifies Google-signed ID tokens (JWTs) only. An OAuth access token (what `gcloud auth print-access-token`, `oauthToken` and most client-library credentials produce) cannot be verified as one, so the request is refused with 401.".to_string();
        if let Some(c) = cx.status_caveat(true) {
            explanation.push_str(&format!(" Note: {c}."));
        }
        Body {
            verdict: cx.token_verdict(),
            title,
            explanation,
            evidence,
        }
    }

    fn fixes(&self, s: &State, cx: &Cx) -> Vec<Fix> {
        let url = cx.main_url();
        match s {
            State::Caller(name, kind) => vec![crate::rules::no_token::caller_oidc_fix(
                cx,
                *kind,
                name,
                &url.map(Arg::Lit).unwrap_or(Arg::Placeholder("SERVICE_URL")),
            )],
            State::Token => vec![
                Fix::command(
                    "mint an ID token (not an access token) for the service",
                    cx.mint_token_argv(url.as_deref()),
                    Safety::Safe,
                ),
                Fix::note(
                    "in code, fetch an ID token, not an access token",
                    format!(
                        "Use the metadata server's identity endpoint (`/computeMetadata/v1/instance/service-accounts/default/identity?audience={}`) or a client library's ID-token call (Python `google.oauth2.id_token.fetch_id_token(request, \"{}\")`), and send it as `Authorization: Bearer TOKEN`.",
                        url.as_deref().unwrap_or("<SERVICE_URL>"),
                        url.as_deref().unwrap_or("<SERVICE_URL>")
                    ),
                ),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::Verdict;
    use crate::testkit::*;
    use ipd_model::token::Token;

    #[test]
    fn access_token_fires() {
        let mut ev = base();
        ev.token = Some(Token::analyze("Bearer ya29.a0AfB_byDfakefakefake"));
        assert_eq!(
            fired(&run(&AccessTokenNotIdToken, &ev)),
            Some(Verdict::Confirmed)
        );
        ev.inputs.status = Some(403);
        assert_eq!(
            fired(&run(&AccessTokenNotIdToken, &ev)),
            Some(Verdict::Possible)
        );
    }

    #[test]
    fn id_token_passes() {
        let mut ev = base();
        ev.token = Some(sa_token(URL));
        assert!(matches!(
            run(&AccessTokenNotIdToken, &ev),
            crate::Outcome::Passed(_)
        ));
    }
}
