use ipd_model::token::TokenKind;

use crate::cx::Cx;
use crate::declare_rule;
use crate::fix::{Fix, Safety};
use crate::rule::{Body, Check, RuleImpl, RuleMeta};

declare_rule! {
    /// ## What it checks
    /// Whether the token is a Google-signed ID token at all: a JWT with three segments, a
    /// Google issuer (`https://accounts.google.com`) and an RS256 signature algorithm. It
    /// fires for malformed tokens, tokens from other issuers (Firebase Authentication,
    /// Auth0, an application's own), refresh tokens, and several tokens in one header.
    ///
    /// ## Why it breaks the request
    /// The invoker check verifies the token's signature against Google's keys. Anything else
    /// is refused with 401 "The request was not authorized to invoke this service. The access
    /// token could not be verified." A common case is an application sending its own users'
    /// Firebase tokens in `Authorization` to a service that requires IAM.
    ///
    /// ## Evidence used
    /// The token, decoded without verifying its signature; the status the client saw.
    ///
    /// ## Example
    /// `fixtures/invalid-token-firebase-id-token`
    ///
    /// ## Fix
    /// Send a Google ID token for the invoker check. When the application needs its own token
    /// too, send the Google ID token in `X-Serverless-Authorization` (the invoker check reads
    /// it first) and leave `Authorization` to the application; or make the service public and
    /// verify the application's tokens in code.
    ///
    /// ## Fix safety
    /// Making the service public needs review: Cloud Run then authenticates no one.
    ///
    /// ## References
    /// - https://cloud.google.com/run/docs/troubleshooting (401 section)
    /// - https://cloud.google.com/run/docs/authenticating/service-to-service
    pub struct InvalidToken {
        code: "IPD012",
        name: "invalid-token",
        cause: "invalid_token",
        title: "the token is not a Google-signed ID token",
        severity: High,
    }
}

pub struct State {
    what: String,
    app_token: bool,
}

impl RuleImpl for InvalidToken {
    type State = State;

    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Cx) -> Check<State> {
        if let Some(why) = cx.tokens_not_checked() {
            return Check::NotApplicable(why);
        }
        let Some(t) = cx.token() else {
            return Check::Skip("no token was given (token.txt or --token)".into());
        };
        let (what, app_token) = match &t.kind {
            TokenKind::GoogleIdToken => {
                let alg = t.header.as_ref().and_then(|h| h.alg.clone());
                match alg.as_deref() {
                    Some("RS256") | None => {
                        return Check::Pass(
                            "a JWT from a Google issuer (signature not verified)".into(),
                        );
                    }
                    Some(a) => (
                        format!(
                            "a JWT claiming a Google issuer but signed with `{a}`; Google signs ID tokens with RS256"
                        ),
                        false,
                    ),
                }
            }
            TokenKind::AccessToken => {
                return Check::NotApplicable("an access token (see IPD011)".into());
            }
            TokenKind::Empty => return Check::Skip("the token is empty".into()),
            TokenKind::RefreshToken => (
                "an OAuth refresh token (`1//…`), which is never sent as a bearer token".into(),
                false,
            ),
            TokenKind::FirebaseIdToken { project } => (
                format!(
                    "a Firebase Authentication ID token (issuer `https://securetoken.google.com/{project}`), which identifies an app user, not a Google principal"
                ),
                true,
            ),
            TokenKind::OtherIssuer { issuer: Some(i) } => {
                (format!("a JWT from issuer `{i}`, not Google"), true)
            }
            TokenKind::OtherIssuer { issuer: None } => {
                ("a JWT without an `iss` claim".into(), true)
            }
            TokenKind::Malformed { reason } => (format!("not a valid JWT: {reason}"), false),
            TokenKind::Multiple { count } => (
                format!("{count} tokens in one header value; the invoker check needs exactly one"),
                false,
            ),
        };
        Check::Fire(State { what, app_token })
    }

    fn finding(&self, s: &State, cx: &Cx) -> Body {
        let svc = cx.service_name_or("SERVICE");
        let mut evidence = Vec::new();
        if let Some(t) = cx.token() {
            evidence.push(format!("token {}: {}", t.raw.redacted(), s.what));
            if let Some(c) = &t.claims {
                evidence.push(format!(
                    "decoded claims (signature not verified): iss `{}`, aud `{}`{}",
                    c.iss.as_deref().unwrap_or("-"),
                    c.aud.join(", "),
                    c.email
                        .as_deref()
                        .map(|e| format!(", email `{e}`"))
                        .unwrap_or_default()
                ));
            }
        }
        if let Some(e) = &cx.facts.entry
            && let Some(t) = &e.text_payload
        {
            evidence.push(format!(
                "log text: \"{}\"",
                t.split(" Read more at").next().unwrap_or(t)
            ));
        }
        let mut explanation = format!(
            "Cloud Run's invoker check accepts only one Google-signed ID token and refuses anything else with 401. This token is {}.",
            s.what
        );
        if s.app_token {
            explanation.push_str(" Application tokens belong in a header the invoker check does not read: send the Google ID token in `X-Serverless-Authorization` and keep the application's token in `Authorization`.");
        }
        if let Some(c) = cx.status_caveat(true) {
            explanation.push_str(&format!(" Note: {c}."));
        }
        Body {
            verdict: cx.token_verdict(),
            title: format!("the token sent to `{svc}` is not a Google-signed ID token"),
            explanation,
            evidence,
        }
    }

    fn fixes(&self, s: &State, cx: &Cx) -> Vec<Fix> {
        let url = cx.main_url().unwrap_or_else(|| "<SERVICE_URL>".into());
        let mut v = vec![Fix::note(
            "send exactly one Google ID token minted for the service",
            format!(
                "Mint it for audience {url} (metadata server `identity` endpoint, `gcloud auth print-identity-token`, or a client library's ID-token call) and send it as `Authorization: Bearer TOKEN`{}.",
                if s.app_token {
                    ", or as `X-Serverless-Authorization: Bearer TOKEN` while `Authorization` carries the application's own token"
                } else {
                    ""
                }
            ),
        )];
        if s.app_token {
            v.push(Fix::command(
                "or make the service public and verify the application's tokens in code",
                cx.update_argv(&["--no-invoker-iam-check"]),
                Safety::NeedsReview,
            ));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::Verdict;
    use crate::testkit::*;
    use ipd_model::token::Token;
    use serde_json::json;

    #[test]
    fn firebase_and_malformed_fire() {
        let mut ev = base();
        ev.token = Some(Token::analyze(&jwt(
            json!({"iss": "https://securetoken.google.com/shop-prod", "aud": "shop-prod"}),
        )));
        assert_eq!(fired(&run(&InvalidToken, &ev)), Some(Verdict::Confirmed));
        ev.token = Some(Token::analyze("abc.def"));
        assert_eq!(fired(&run(&InvalidToken, &ev)), Some(Verdict::Confirmed));
    }

    #[test]
    fn google_token_passes() {
        let mut ev = base();
        ev.token = Some(sa_token(URL));
        assert!(matches!(run(&InvalidToken, &ev), crate::Outcome::Passed(_)));
    }
}
