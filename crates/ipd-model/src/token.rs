//! Bearer tokens: recognised and decoded without verifying the signature.
//!
//! A token is a secret. The raw text lives only in [`RawToken`], whose `Debug` and `Display`
//! print a redacted form; only decoded claims are plain data.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use serde::Serialize;
use serde_json::Value;

/// The gcloud CLI's OAuth client ID: the `aud` of `gcloud auth print-identity-token` user
/// tokens, which Cloud Run accepts for any service the user may invoke (facts §2.5).
pub const GCLOUD_CLIENT_ID: &str = "32555940559.apps.googleusercontent.com";

/// Issuers of Google-signed ID tokens.
pub const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];

/// What Cloud Run puts in place of a forwarded token's signature (facts §1.5).
pub const SIGNATURE_REMOVED: &str = "SIGNATURE_REMOVED_BY_GOOGLE";

/// The raw token text. Never printed, logged or serialized in full.
#[derive(Clone, PartialEq, Eq)]
pub struct RawToken(String);

impl RawToken {
    pub fn new(s: impl Into<String>) -> Self {
        RawToken(s.into())
    }

    /// The secret itself, for decoding only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A form safe to show: the first few characters and the length.
    pub fn redacted(&self) -> String {
        let t = self.0.trim();
        let head: String = if t.starts_with("eyJ") {
            "eyJ".into()
        } else if t.starts_with("ya29.") {
            "ya29.".into()
        } else {
            t.chars().take(3).collect()
        };
        format!("{head}…(redacted, {} chars)", t.chars().count())
    }
}

impl fmt::Debug for RawToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawToken({})", self.redacted())
    }
}

impl fmt::Display for RawToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// The decoded claims of an ID token that matter for invoking Cloud Run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Claims {
    pub iss: Option<String>,
    /// `aud` as a list (a JWT may carry a string or an array).
    pub aud: Vec<String>,
    pub azp: Option<String>,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub sub: Option<String>,
    pub exp: Option<i64>,
    pub iat: Option<i64>,
    pub hd: Option<String>,
    /// A `firebase` claim object is present.
    pub firebase: bool,
}

/// The decoded JOSE header fields we look at.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Header {
    pub alg: Option<String>,
    pub kid: Option<String>,
    pub typ: Option<String>,
}

/// What kind of token this is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenKind {
    /// A JWT from a Google issuer. (Not verified: the signature is never checked.)
    GoogleIdToken,
    /// An OAuth 2.0 access token (`ya29.`), which Cloud Run does not accept.
    AccessToken,
    /// An OAuth 2.0 refresh token (`1//`).
    RefreshToken,
    /// A Firebase Authentication ID token (`iss` = `https://securetoken.google.com/PROJECT`).
    FirebaseIdToken {
        project: String,
    },
    /// A JWT from some other issuer (Auth0, Okta, an app's own, IAP, ...).
    OtherIssuer {
        issuer: Option<String>,
    },
    /// Not a JWT and not a recognised opaque token.
    Malformed {
        reason: String,
    },
    /// More than one token in the header value.
    Multiple {
        count: usize,
    },
    Empty,
}

/// A token after analysis: its kind, decoded parts, and a redacted display form.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub raw: RawToken,
    pub kind: TokenKind,
    pub header: Option<Header>,
    pub claims: Option<Claims>,
    /// The signature segment was replaced by Cloud Run (the token was captured inside the
    /// container, after the invoker check).
    pub signature_removed: bool,
    /// How the value was written (`Bearer` prefix, `Authorization:` header name, ...).
    pub had_bearer_prefix: bool,
}

impl Token {
    /// Analyses what was sent (or pasted): `eyJ…`, `Bearer eyJ…`, `Authorization: Bearer …`,
    /// `ya29.…`, or several tokens.
    pub fn analyze(input: &str) -> Token {
        let mut s = input.trim().trim_start_matches('\u{feff}').trim();
        for prefix in ["authorization:", "x-serverless-authorization:"] {
            if let Some(rest) = strip_prefix_ci(s, prefix) {
                s = rest.trim_start();
            }
        }
        let mut had_bearer_prefix = false;
        if let Some(rest) = strip_prefix_ci(s, "bearer ") {
            s = rest.trim_start();
            had_bearer_prefix = true;
        }
        let raw = RawToken::new(s.to_string());
        let parts: Vec<&str> = s
            .split(|c: char| c == ',' || c.is_whitespace())
            .map(|p| p.trim())
            .filter(|p| !p.is_empty() && !p.eq_ignore_ascii_case("bearer"))
            .collect();
        let mut t = Token {
            raw,
            kind: TokenKind::Empty,
            header: None,
            claims: None,
            signature_removed: false,
            had_bearer_prefix,
        };
        match parts.len() {
            0 => t,
            1 => {
                let one = parts[0];
                classify_one(one, &mut t);
                t
            }
            n => {
                // Decode the first so the report can still show whose tokens these are.
                classify_one(parts[0], &mut t);
                t.kind = TokenKind::Multiple { count: n };
                t
            }
        }
    }

    /// The principal a Google ID token speaks for (from `email`), if it names one. Other
    /// issuers' `email` claims (Firebase end users) are not IAM principals.
    pub fn principal(&self) -> Option<crate::Principal> {
        if self.kind != TokenKind::GoogleIdToken {
            return None;
        }
        let email = self.claims.as_ref()?.email.as_deref()?;
        Some(crate::Principal::from_email(email))
    }

    /// True for a `gcloud auth print-identity-token` user token.
    pub fn is_gcloud_user_token(&self) -> bool {
        self.claims.as_ref().is_some_and(|c| {
            c.aud.iter().any(|a| a == GCLOUD_CLIENT_ID)
                || c.azp.as_deref() == Some(GCLOUD_CLIENT_ID)
        })
    }
}

/// `s` without an ASCII `prefix` compared case-insensitively (never splits a character).
fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn classify_one(s: &str, t: &mut Token) {
    if s.starts_with("ya29.") {
        t.kind = TokenKind::AccessToken;
        return;
    }
    if s.starts_with("1//") {
        t.kind = TokenKind::RefreshToken;
        return;
    }
    let segs: Vec<&str> = s.split('.').collect();
    if segs.len() != 3 {
        t.kind = TokenKind::Malformed {
            reason: format!(
                "a JWT has 3 dot-separated segments; this has {}",
                segs.len()
            ),
        };
        return;
    }
    let header = match decode_json_segment(segs[0]) {
        Ok(v) => v,
        Err(why) => {
            t.kind = TokenKind::Malformed {
                reason: format!("the header segment {why}"),
            };
            return;
        }
    };
    let payload = match decode_json_segment(segs[1]) {
        Ok(v) => v,
        Err(why) => {
            t.kind = TokenKind::Malformed {
                reason: format!("the payload segment {why}"),
            };
            return;
        }
    };
    t.signature_removed = segs[2] == SIGNATURE_REMOVED;
    let header = Header {
        alg: str_field(&header, "alg"),
        kid: str_field(&header, "kid"),
        typ: str_field(&header, "typ"),
    };
    let claims = Claims {
        iss: str_field(&payload, "iss"),
        aud: match payload.get("aud") {
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        },
        azp: str_field(&payload, "azp"),
        email: str_field(&payload, "email"),
        email_verified: payload.get("email_verified").and_then(|v| match v {
            Value::Bool(b) => Some(*b),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }),
        sub: str_field(&payload, "sub"),
        exp: num_field(&payload, "exp"),
        iat: num_field(&payload, "iat"),
        hd: str_field(&payload, "hd"),
        firebase: payload.get("firebase").is_some_and(Value::is_object),
    };
    let iss = claims.iss.clone();
    t.kind = match iss.as_deref() {
        Some(i) if GOOGLE_ISSUERS.contains(&i) => TokenKind::GoogleIdToken,
        Some(i) if i.starts_with("https://securetoken.google.com/") => TokenKind::FirebaseIdToken {
            project: i
                .trim_start_matches("https://securetoken.google.com/")
                .to_string(),
        },
        other => TokenKind::OtherIssuer {
            issuer: other.map(str::to_string),
        },
    };
    t.header = Some(header);
    t.claims = Some(claims);
}

fn decode_json_segment(seg: &str) -> Result<Value, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(seg)
        .or_else(|_| URL_SAFE.decode(seg))
        .map_err(|_| "is not base64url".to_string())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| "is not JSON".to_string())?;
    if v.is_object() {
        Ok(v)
    } else {
        Err("is not a JSON object".to_string())
    }
}

fn str_field(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

fn num_field(v: &Value, k: &str) -> Option<i64> {
    match v.get(k)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jwt(header: Value, payload: Value, sig: &str) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string()),
            sig
        )
    }

    #[test]
    fn google_id_token() {
        let t = jwt(
            json!({"alg":"RS256","kid":"k","typ":"JWT"}),
            json!({"iss":"https://accounts.google.com","aud":"https://a.run.app","email":"x@p.iam.gserviceaccount.com","exp":100,"iat":1}),
            "c2ln",
        );
        let tok = Token::analyze(&format!("Bearer {t}"));
        assert_eq!(tok.kind, TokenKind::GoogleIdToken);
        assert!(tok.had_bearer_prefix);
        let c = tok.claims.as_ref().unwrap();
        assert_eq!(c.aud, vec!["https://a.run.app".to_string()]);
        assert_eq!(c.exp, Some(100));
        assert_eq!(
            tok.principal().unwrap().to_string(),
            "serviceAccount:x@p.iam.gserviceaccount.com"
        );
    }

    #[test]
    fn redaction_never_shows_the_token() {
        let t = jwt(
            json!({"alg":"RS256"}),
            json!({"iss":"https://accounts.google.com"}),
            "c2lnbmF0dXJlc2lnbmF0dXJl",
        );
        let tok = Token::analyze(&t);
        let shown = format!("{} {:?} {:?}", tok.raw, tok.raw, tok);
        assert!(!shown.contains("c2lnbmF0dXJl"), "{shown}");
        assert!(!shown.contains(&t[5..20]), "{shown}");
    }

    #[test]
    fn kinds() {
        assert_eq!(
            Token::analyze("ya29.a0AfH6SMB").kind,
            TokenKind::AccessToken
        );
        assert_eq!(Token::analyze("1//0gabc").kind, TokenKind::RefreshToken);
        assert!(matches!(
            Token::analyze("abc.def").kind,
            TokenKind::Malformed { .. }
        ));
        assert!(matches!(
            Token::analyze("a.b.c").kind,
            TokenKind::Malformed { .. }
        ));
        assert_eq!(Token::analyze("  ").kind, TokenKind::Empty);
        let fb = jwt(
            json!({"alg":"RS256"}),
            json!({"iss":"https://securetoken.google.com/shop","aud":"shop"}),
            "x",
        );
        assert_eq!(
            Token::analyze(&fb).kind,
            TokenKind::FirebaseIdToken {
                project: "shop".into()
            }
        );
        let two = format!("{fb}, {fb}");
        assert_eq!(Token::analyze(&two).kind, TokenKind::Multiple { count: 2 });
        let other = jwt(
            json!({"alg":"HS256"}),
            json!({"iss":"https://tenant.auth0.com/"}),
            "x",
        );
        assert!(matches!(
            Token::analyze(&other).kind,
            TokenKind::OtherIssuer { .. }
        ));
    }

    #[test]
    fn signature_removed_is_noticed() {
        let t = jwt(
            json!({"alg":"RS256"}),
            json!({"iss":"https://accounts.google.com"}),
            SIGNATURE_REMOVED,
        );
        assert!(Token::analyze(&t).signature_removed);
    }
}
