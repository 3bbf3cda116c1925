use chrono::{DateTime, Utc};
use ipd_model::time;
use ipd_model::token::TokenKind;

use crate::cx::Cx;
use crate::declare_rule;
use crate::fix::{Fix, Safety};
use crate::rule::{Body, Check, RuleImpl, RuleMeta, Verdict};

declare_rule! {
    /// ## What it checks
    /// Whether the ID token's `exp` claim is before the time of the failing request.
    ///
    /// ## Why it breaks the request
    /// Google ID tokens live one hour. A caller that caches a token past `exp` gets 401 "The
    /// request was not authorized to invoke this service" until it fetches a new one. Cloud
    /// Run's clock-skew tolerance is not documented, so a token that expired within the last
    /// five minutes before the request is reported as `likely`.
    ///
    /// ## Evidence used
    /// The token's `exp` (decoded, not verified) and the request time (`--at`,
    /// `context.json`, or the request-log entry). Skipped when the request time is unknown.
    ///
    /// ## Example
    /// `fixtures/expired-sa-token-401`
    ///
    /// ## Fix
    /// Fetch a fresh token for each request or refresh before `exp` (client libraries'
    /// ID-token credentials do this); never store tokens in configuration.
    ///
    /// ## Fix safety
    /// Safe.
    ///
    /// ## References
    /// - https://cloud.google.com/run/docs/troubleshooting (401 section)
    /// - https://cloud.google.com/docs/authentication/get-id-token
    pub struct ExpiredToken {
        code: "IPD013",
        name: "expired-token",
        cause: "expired_token",
        title: "the ID token had expired when the request was made",
        severity: High,
    }
}

/// Expired by less than this many seconds: only `likely` (clock skew is undocumented).
const SKEW_SECS: i64 = 300;

pub struct State {
    exp: DateTime<Utc>,
    at: DateTime<Utc>,
}

impl RuleImpl for ExpiredToken {
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
        if !matches!(
            t.kind,
            TokenKind::GoogleIdToken
                | TokenKind::FirebaseIdToken { .. }
                | TokenKind::OtherIssuer { .. }
        ) {
            return Check::NotApplicable("not a JWT with claims".into());
        }
        let Some(exp) = t
            .claims
            .as_ref()
            .and_then(|c| c.exp)
            .and_then(|e| DateTime::<Utc>::from_timestamp(e, 0))
        else {
            return Check::Skip("the token has no `exp` claim".into());
        };
        let Some(at) = cx.facts.request.time else {
            return Check::Skip(format!(
                "the request time is unknown (pass --at); the token expires at {}",
                time::fmt(&exp)
            ));
        };
        if exp <= at {
            Check::Fire(State { exp, at })
        } else {
            Check::Pass(format!(
                "the token was valid until {}, after the request at {}",
                time::fmt(&exp),
                time::fmt(&at)
            ))
        }
    }

    fn finding(&self, s: &State, cx: &Cx) -> Body {
        let late = (s.at - s.exp).num_seconds();
        let mut verdict = cx.token_verdict();
        if late < SKEW_SECS && verdict == Verdict::Confirmed {
            verdict = Verdict::Likely;
        }
        let mut evidence = vec![
            format!("token `exp` {} (decoded, not verified)", time::fmt(&s.exp)),
            format!("request time {}", time::fmt(&s.at)),
        ];
        if let Some(iat) = cx
            .token()
            .and_then(|t| t.claims.as_ref())
            .and_then(|c| c.iat)
            .and_then(|i| DateTime::<Utc>::from_timestamp(i, 0))
        {
            evidence.push(format!("token issued at {}", time::fmt(&iat)));
        }
        let mut explanation = format!(
            "The token had expired {} before the request; Cloud Run refuses expired tokens with 401. Google ID tokens are valid for one hour, so the caller is reusing a cached token.",
            human(late)
        );
        if late < SKEW_SECS {
            explanation.push_str(" It expired only shortly before: clock skew between caller and Google could matter, and Cloud Run's tolerance is not documented.");
        }
        if let Some(c) = cx.status_caveat(true) {
            explanation.push_str(&format!(" Note: {c}."));
        }
        Body {
            verdict,
            title: format!("the ID token expired {} before the request", human(late)),
            explanation,
            evidence,
        }
    }

    fn fixes(&self, _: &State, cx: &Cx) -> Vec<Fix> {
        vec![
            Fix::note(
                "fetch a fresh ID token instead of reusing one",
                "Get a new token per request, or refresh it before `exp` (the client libraries' ID-token credentials cache and refresh automatically). Do not store ID tokens in configuration, secrets or environment variables.",
            ),
            Fix::command(
                "mint a fresh token by hand to retry",
                cx.mint_token_argv(cx.main_url().as_deref()),
                Safety::Safe,
            ),
        ]
    }
}

fn human(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use ipd_model::Gathered;

    #[test]
    fn expired_at_log_time_fires() {
        let mut ev = base();
        ev.token = Some(sa_token(URL)); // exp 2026-11-20T11:00:00Z
        let mut e = entry(401, Some(TEXT_401), "0s", "GET");
        e.timestamp = Some("2026-11-20T12:30:00Z".into());
        ev.logs = Gathered::Present(vec![e]);
        assert_eq!(fired(&run(&ExpiredToken, &ev)), Some(Verdict::Confirmed));
    }

    #[test]
    fn valid_token_passes_and_unknown_time_skips() {
        let mut ev = base();
        ev.token = Some(sa_token(URL));
        assert!(matches!(
            run(&ExpiredToken, &ev),
            crate::Outcome::Skipped(_)
        ));
        ev.logs = Gathered::Present(vec![entry(401, Some(TEXT_401), "0s", "GET")]); // 10:15
        assert!(matches!(run(&ExpiredToken, &ev), crate::Outcome::Passed(_)));
    }

    #[test]
    fn just_expired_is_likely() {
        let mut ev = base();
        ev.token = Some(sa_token(URL));
        ev.inputs.at = ipd_model::time::parse_rfc3339("2026-11-20T11:01:00Z");
        assert_eq!(fired(&run(&ExpiredToken, &ev)), Some(Verdict::Likely));
    }
}
