//! Credentials: a static access token (`--access-token-file`, `CLOUDSDK_AUTH_ACCESS_TOKEN_FILE`),
//! or Application Default Credentials through `google-cloud-auth` (gcloud user credentials,
//! service-account keys, impersonated and external accounts, the metadata server), optionally
//! impersonating a service account like gcloud's `--impersonate-service-account`.
//!
//! Nothing here prints a credential: tokens live in [`Secret`], whose `Debug` and `Display`
//! are redacted, and header values are marked sensitive.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use google_cloud_auth::credentials::{
    AccessTokenCredentials, CacheableResource, Credentials, CredentialsProvider, EntityTag,
    external_account, impersonated, mds, service_account, user_account,
};
use http::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::Value;

use crate::env::Env;

/// A credential string. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(redacted)")
    }
}

/// What the command line says about credentials.
#[derive(Debug, Clone, Default)]
pub struct AuthOptions {
    /// `--access-token-file FILE` (wins over `CLOUDSDK_AUTH_ACCESS_TOKEN_FILE`).
    pub access_token_file: Option<PathBuf>,
    /// `--impersonate-service-account EMAIL[,DELEGATE...]`, gcloud's syntax: the last email is
    /// the target, the ones before it the delegation chain (wins over
    /// `CLOUDSDK_AUTH_IMPERSONATE_SERVICE_ACCOUNT`).
    pub impersonate_service_account: Option<String>,
}

/// Where the credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// A static access token read from a file.
    TokenFile { path: PathBuf, from_env: bool },
    /// An Application Default Credentials file, with its `type`.
    AdcFile { path: PathBuf, kind: String },
    /// The metadata server (no ADC file was found).
    MetadataServer,
}

impl std::fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialSource::TokenFile {
                path,
                from_env: false,
            } => write!(
                f,
                "the access token in {} (--access-token-file)",
                path.display()
            ),
            CredentialSource::TokenFile {
                path,
                from_env: true,
            } => write!(
                f,
                "the access token in {} (CLOUDSDK_AUTH_ACCESS_TOKEN_FILE)",
                path.display()
            ),
            CredentialSource::AdcFile { path, kind } => write!(
                f,
                "Application Default Credentials ({kind}) from {}",
                path.display()
            ),
            CredentialSource::MetadataServer => {
                f.write_str("Application Default Credentials from the metadata server")
            }
        }
    }
}

/// Why no usable credentials could be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{path}: cannot read the access token file: {source}")]
    TokenFile {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: the access token file is empty")]
    EmptyTokenFile { path: String },
    #[error("{path}: cannot use these Application Default Credentials: {message}")]
    AdcFile { path: String, message: String },
    #[error("invalid service account to impersonate `{0}`: expected EMAIL or EMAIL,DELEGATE,...")]
    BadImpersonation(String),
    #[error(
        "no credentials: no --access-token-file, no CLOUDSDK_AUTH_ACCESS_TOKEN_FILE, no Application Default Credentials file (GOOGLE_APPLICATION_CREDENTIALS or ~/.config/gcloud/application_default_credentials.json), and no token from a metadata server ({detail}). Run `gcloud auth application-default login`, or pass --access-token-file FILE (e.g. from `gcloud auth print-access-token`)"
    )]
    NoCredentials { detail: String },
    #[error("cannot get an access token from {source_desc}: {message}")]
    Token {
        source_desc: String,
        message: String,
    },
}

/// A static token as a `google-cloud-auth` credential, so impersonation can start from it.
#[derive(Clone)]
struct StaticToken(Arc<Secret>);

impl std::fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticToken(redacted)")
    }
}

/// Impersonation from any source credential through IAM Credentials
/// `generateAccessToken` at the root the environment chose; the token is fetched on first
/// use and kept until five minutes before it expires.
#[derive(Clone)]
struct Impersonate {
    source: Credentials,
    url: String,
    delegates: Vec<String>,
    proxies: crate::endpoints::Proxies,
    token: Arc<tokio::sync::Mutex<Option<(Secret, std::time::Instant)>>>,
}

impl std::fmt::Debug for Impersonate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Impersonate")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Impersonate {
    async fn fetch(&self) -> Result<(Secret, std::time::Instant), String> {
        let headers = match self.source.headers(http::Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => data,
            Ok(CacheableResource::NotModified) => {
                return Err("the source credentials gave no headers".into());
            }
            Err(e) => return Err(format!("the source credentials failed: {e}")),
        };
        let mut b = crate::endpoints::with_proxies(
            reqwest::Client::builder().connect_timeout(Duration::from_secs(10)),
            &self.proxies,
        )?;
        if self.url.starts_with("http://") {
            b = b.tls_certs_only(std::iter::empty());
        }
        let client = b.build().map_err(|e| e.without_url().to_string())?;
        let body = serde_json::json!({
            "scope": ["https://www.googleapis.com/auth/cloud-platform"],
            "delegates": self.delegates,
            "lifetime": "3600s",
        });
        let resp = client
            .post(&self.url)
            .headers(headers)
            .json(&body)
            .timeout(FIRST_TOKEN_TIMEOUT)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.without_url().to_string())?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = v["error"]["message"].as_str().unwrap_or("no message");
            return Err(format!(
                "generateAccessToken answered {}: {msg}",
                status.as_u16()
            ));
        }
        let Some(tok) = v["accessToken"].as_str().filter(|t| !t.is_empty()) else {
            return Err("generateAccessToken answered without an accessToken".into());
        };
        // Kept for at most 55 minutes (the lifetime asked for, less five).
        let until = std::time::Instant::now() + Duration::from_secs(55 * 60);
        Ok((Secret::new(tok), until))
    }
}

impl CredentialsProvider for Impersonate {
    async fn headers(
        &self,
        _extensions: http::Extensions,
    ) -> Result<CacheableResource<HeaderMap>, google_cloud_auth::errors::CredentialsError> {
        let mut slot = self.token.lock().await;
        let fresh = matches!(&*slot, Some((_, until)) if *until > std::time::Instant::now());
        if !fresh {
            let got = self
                .fetch()
                .await
                .map_err(|m| google_cloud_auth::errors::CredentialsError::from_msg(false, m))?;
            *slot = Some(got);
        }
        let Some((tok, _)) = &*slot else {
            unreachable!("filled above");
        };
        StaticToken(Arc::new(tok.clone()))
            .headers(http::Extensions::new())
            .await
    }

    async fn universe_domain(&self) -> Option<String> {
        None
    }
}

impl CredentialsProvider for StaticToken {
    async fn headers(
        &self,
        _extensions: http::Extensions,
    ) -> Result<CacheableResource<HeaderMap>, google_cloud_auth::errors::CredentialsError> {
        let mut v =
            HeaderValue::from_str(&format!("Bearer {}", self.0.expose())).map_err(|_| {
                google_cloud_auth::errors::CredentialsError::from_msg(
                    false,
                    "the access token holds characters that cannot go in an HTTP header",
                )
            })?;
        v.set_sensitive(true);
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, v);
        Ok(CacheableResource::New {
            entity_tag: EntityTag::new(),
            data: h,
        })
    }

    async fn universe_domain(&self) -> Option<String> {
        None
    }
}

/// Ready-to-use credentials.
#[derive(Clone)]
pub struct Auth {
    creds: Credentials,
    source: CredentialSource,
    /// The impersonated service account, when impersonating.
    impersonated: Option<String>,
    /// The account the source credentials name (`client_email` of a key file, the target of
    /// an impersonated ADC file), when the file says.
    file_email: Option<String>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("source", &self.source)
            .field("impersonated", &self.impersonated)
            .finish_non_exhaustive()
    }
}

/// How long the first token may take (the metadata server on a machine without one).
pub const FIRST_TOKEN_TIMEOUT: Duration = Duration::from_secs(10);

impl Auth {
    /// Picks the credentials: `--access-token-file`, else `CLOUDSDK_AUTH_ACCESS_TOKEN_FILE`,
    /// else Application Default Credentials; then impersonation if asked for. Builds them
    /// without fetching anything (see [`Auth::check`]). Must run inside a tokio runtime
    /// (`google-cloud-auth` starts its token cache task when building).
    pub fn resolve(opts: &AuthOptions, env: &Env) -> Result<Auth, AuthError> {
        // Check the impersonation chain before building anything.
        let imp = opts.impersonate_service_account.clone().or_else(|| {
            env.get("CLOUDSDK_AUTH_IMPERSONATE_SERVICE_ACCOUNT")
                .map(str::to_string)
        });
        let chain: Option<(String, Vec<String>)> = match &imp {
            None => None,
            Some(spec) => {
                let emails: Vec<String> = spec
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                if emails.iter().any(|e| !e.contains('@') || e.contains('/')) {
                    return Err(AuthError::BadImpersonation(spec.clone()));
                }
                match emails.split_last() {
                    Some((t, d)) => Some((t.clone(), d.to_vec())),
                    None => return Err(AuthError::BadImpersonation(spec.clone())),
                }
            }
        };
        let token_file = opts
            .access_token_file
            .clone()
            .map(|p| (p, false))
            .or_else(|| {
                env.get("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE")
                    .map(|p| (PathBuf::from(p), true))
            });
        let (base, source, file_email, adc_json) = match token_file {
            Some((path, from_env)) => {
                let token = read_token_file(&path)?;
                (
                    Credentials::from(StaticToken(Arc::new(token))),
                    CredentialSource::TokenFile { path, from_env },
                    None,
                    None,
                )
            }
            None => adc(env)?,
        };
        let Some((target, delegates)) = chain else {
            return Ok(Auth {
                creds: base,
                source,
                impersonated: None,
                file_email,
            });
        };
        // Both ways of impersonating call generateAccessToken at the root the environment
        // chose (CLOUDSDK_API_ENDPOINT_OVERRIDES_IAMCREDENTIALS): an ADC file through
        // google-cloud-auth's JSON form, which takes the exact URL; any other source through
        // [`Impersonate`].
        let delegate_names: Vec<String> = delegates
            .iter()
            .map(|d| format!("projects/-/serviceAccounts/{d}"))
            .collect();
        // One reading of the overrides for the refusal and for either way of impersonating.
        let endpoints = crate::endpoints::Endpoints::from_env(env).unwrap_or_default();
        if let Some(why) = endpoints.refusal(crate::endpoints::Api::IamCredentials) {
            return Err(AuthError::Token {
                source_desc: format!("impersonation of {target}"),
                message: why,
            });
        }
        let url = endpoints.url(
            crate::endpoints::Api::IamCredentials,
            &format!("v1/projects/-/serviceAccounts/{target}:generateAccessToken"),
        );
        if let Some(json) = adc_json.filter(|j| {
            j.get("type").and_then(Value::as_str) != Some("impersonated_service_account")
        }) {
            let spec = serde_json::json!({
                "type": "impersonated_service_account",
                "service_account_impersonation_url": url,
                "source_credentials": json,
                "delegates": delegate_names,
            });
            let creds = impersonated::Builder::new(spec)
                .build()
                .map_err(|e| AuthError::Token {
                    source_desc: format!("impersonation of {target}"),
                    message: e.to_string(),
                })?;
            return Ok(Auth {
                creds,
                source,
                impersonated: Some(target),
                file_email,
            });
        }
        // Any other source (a static token, the metadata server): google-cloud-auth's
        // `from_source_credentials` would always call iamcredentials.googleapis.com.
        let creds = Credentials::from(Impersonate {
            source: base,
            url,
            delegates: delegate_names,
            proxies: endpoints.proxies().clone(),
            token: Arc::new(tokio::sync::Mutex::new(None)),
        });
        Ok(Auth {
            creds,
            source,
            impersonated: Some(target),
            file_email,
        })
    }

    /// Where the credentials come from.
    pub fn source(&self) -> &CredentialSource {
        &self.source
    }

    /// The impersonated service account, if any.
    pub fn impersonated(&self) -> Option<&str> {
        self.impersonated.as_deref()
    }

    /// One line for messages: "the access token in F", "ADC (authorized_user) ... as SA".
    pub fn describe(&self) -> String {
        match &self.impersonated {
            Some(sa) => format!("{}, impersonating {sa}", self.source),
            None => self.source.to_string(),
        }
    }

    /// The email the credentials act as, when known without asking a server: the impersonated
    /// account, or the `client_email` of a service-account key file.
    pub fn known_email(&self) -> Option<&str> {
        self.impersonated.as_deref().or(self.file_email.as_deref())
    }

    /// The request headers (`Authorization`, and `x-goog-user-project` when the credentials
    /// name a quota project). Values are marked sensitive.
    pub async fn headers(&self) -> Result<HeaderMap, AuthError> {
        match self.creds.headers(http::Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => {
                let mut h = data;
                for v in h.values_mut() {
                    v.set_sensitive(true);
                }
                Ok(h)
            }
            Ok(CacheableResource::NotModified) => Err(AuthError::Token {
                source_desc: self.describe(),
                message: "the credentials returned no headers".into(),
            }),
            Err(e) => Err(AuthError::Token {
                source_desc: self.describe(),
                message: e.to_string(),
            }),
        }
    }

    /// The bearer token itself (for `tokeninfo` with `--as-me`).
    pub async fn access_token(&self) -> Result<Secret, AuthError> {
        let h = self.headers().await?;
        h.get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| Secret::new(t.trim()))
            .ok_or_else(|| AuthError::Token {
                source_desc: self.describe(),
                message: "the credentials gave no bearer token".into(),
            })
    }

    /// Fetches a first token, so that "no credentials" is a start error with a clear message
    /// rather than a gap on every source. Tokens are cached by the credentials.
    pub async fn check(&self) -> Result<(), AuthError> {
        match tokio::time::timeout(FIRST_TOKEN_TIMEOUT, self.headers()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(AuthError::Token { message, .. }))
                if self.source == CredentialSource::MetadataServer =>
            {
                Err(AuthError::NoCredentials { detail: message })
            }
            Ok(Err(e)) => Err(e),
            Err(_) if self.source == CredentialSource::MetadataServer => {
                Err(AuthError::NoCredentials {
                    detail: format!("no answer within {} s", FIRST_TOKEN_TIMEOUT.as_secs()),
                })
            }
            Err(_) => Err(AuthError::Token {
                source_desc: self.describe(),
                message: format!("no token within {} s", FIRST_TOKEN_TIMEOUT.as_secs()),
            }),
        }
    }
}

fn read_token_file(path: &Path) -> Result<Secret, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|e| AuthError::TokenFile {
        path: path.display().to_string(),
        source: e,
    })?;
    let t = text.trim();
    let t = t
        .strip_prefix("Bearer ")
        .or_else(|| t.strip_prefix("bearer "))
        .unwrap_or(t)
        .trim();
    if t.is_empty() {
        return Err(AuthError::EmptyTokenFile {
            path: path.display().to_string(),
        });
    }
    Ok(Secret::new(t))
}

/// Application Default Credentials: `GOOGLE_APPLICATION_CREDENTIALS`, else gcloud's ADC file
/// (in `CLOUDSDK_CONFIG`, then `~/.config/gcloud`), else the metadata server.
/// Credentials, where from, the email they name, and the JSON of the ADC file.
type Adc = (Credentials, CredentialSource, Option<String>, Option<Value>);

fn adc(env: &Env) -> Result<Adc, AuthError> {
    let mut candidates: Vec<(PathBuf, bool)> = Vec::new();
    if let Some(p) = env.get("GOOGLE_APPLICATION_CREDENTIALS") {
        candidates.push((PathBuf::from(p), true));
    }
    if let Some(d) = env.get("CLOUDSDK_CONFIG") {
        candidates.push((
            PathBuf::from(d).join("application_default_credentials.json"),
            false,
        ));
    }
    if let Some(h) = env.get("HOME") {
        candidates.push((
            PathBuf::from(h).join(".config/gcloud/application_default_credentials.json"),
            false,
        ));
    }
    for (path, required) in candidates {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(AuthError::AdcFile {
                    path: path.display().to_string(),
                    message: format!("cannot read it: {e}"),
                });
            }
        };
        let bad = |message: String| AuthError::AdcFile {
            path: path.display().to_string(),
            message,
        };
        // Never echo the file's content: it holds keys and refresh tokens.
        let json: Value =
            serde_json::from_str(&text).map_err(|_| bad("not valid JSON".to_string()))?;
        let kind = json
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let email = match kind.as_str() {
            "service_account" => json
                .get("client_email")
                .and_then(Value::as_str)
                .map(str::to_string),
            "impersonated_service_account" | "external_account" => json
                .get("service_account_impersonation_url")
                .and_then(Value::as_str)
                .and_then(email_in_impersonation_url),
            _ => None,
        };
        // GOOGLE_CLOUD_QUOTA_PROJECT wins over the file's quota project, as in google-cloud-auth's
        // own ADC builder.
        let quota = env.get("GOOGLE_CLOUD_QUOTA_PROJECT").map(str::to_string);
        macro_rules! build {
            ($b:expr) => {{
                let b = $b;
                match &quota {
                    Some(q) => b.with_quota_project_id(q.clone()),
                    None => b,
                }
                .build_access_token_credentials()
            }};
        }
        let built: Result<AccessTokenCredentials, _> = match kind.as_str() {
            "authorized_user" => build!(user_account::Builder::new(json.clone())),
            "service_account" => build!(service_account::Builder::new(json.clone())),
            "impersonated_service_account" => build!(impersonated::Builder::new(json.clone())),
            "external_account" => build!(external_account::Builder::new(json.clone())),
            "" => return Err(bad("no `type` field".into())),
            other => return Err(bad(format!("credential type `{other}` is not supported"))),
        };
        let creds = built.map_err(|e| bad(e.to_string()))?;
        return Ok((
            Credentials::from(creds),
            CredentialSource::AdcFile { path, kind },
            email,
            Some(json),
        ));
    }
    if !may_have_metadata_server(env) {
        return Err(AuthError::NoCredentials {
            detail: "this machine is not on Google Cloud, so there is no metadata server".into(),
        });
    }
    let mds = match env.get("GOOGLE_CLOUD_QUOTA_PROJECT") {
        Some(q) => mds::Builder::default().with_quota_project_id(q),
        None => mds::Builder::default(),
    };
    let creds = mds.build().map_err(|e| AuthError::NoCredentials {
        detail: e.to_string(),
    })?;
    Ok((creds, CredentialSource::MetadataServer, None, None))
}

/// Whether asking the metadata server for a token makes sense: `GCE_METADATA_HOST` names one,
/// the machine says it is a Google Compute Engine VM (what Google's auth libraries check), or a
/// serverless runtime's variables are set. Elsewhere, "no credentials" is said at once instead
/// of waiting for `metadata.google.internal` to time out.
fn may_have_metadata_server(env: &Env) -> bool {
    if [
        "GCE_METADATA_HOST",
        "GCE_METADATA_IP",
        "K_SERVICE",
        "CLOUD_RUN_JOB",
        "FUNCTION_TARGET",
    ]
    .iter()
    .any(|v| env.get(v).is_some())
    {
        return true;
    }
    std::fs::read_to_string("/sys/class/dmi/id/product_name")
        .map(|p| p.trim().starts_with("Google"))
        .unwrap_or(false)
}

/// `.../serviceAccounts/EMAIL:generateAccessToken` → EMAIL.
fn email_in_impersonation_url(url: &str) -> Option<String> {
    let rest = url.split("/serviceAccounts/").nth(1)?;
    let email = rest.split(':').next()?;
    email.contains('@').then(|| email.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("ya29.very-secret");
        assert!(!format!("{s:?} {s}").contains("very-secret"));
    }

    #[test]
    fn impersonation_url_email() {
        assert_eq!(
            email_in_impersonation_url(
                "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken"
            )
            .as_deref(),
            Some("sa@p.iam.gserviceaccount.com")
        );
        assert_eq!(email_in_impersonation_url("https://x/"), None);
    }

    #[tokio::test]
    async fn token_file_from_env_gives_a_sensitive_bearer_header() {
        let dir = std::env::temp_dir().join(format!("ipd-gather-auth-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let f = dir.join("tok");
        std::fs::write(&f, "  Bearer abc.def  \n").unwrap();
        let env = Env::from_pairs([("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE", f.display().to_string())]);
        let a = Auth::resolve(&AuthOptions::default(), &env).unwrap();
        assert!(matches!(
            a.source(),
            CredentialSource::TokenFile { from_env: true, .. }
        ));
        let h = a.headers().await.unwrap();
        let v = h.get(AUTHORIZATION).unwrap();
        assert!(v.is_sensitive());
        assert_eq!(v.to_str().unwrap(), "Bearer abc.def");
        assert_eq!(a.access_token().await.unwrap().expose(), "abc.def");
        assert!(!format!("{a:?}").contains("abc.def"));
        std::fs::write(&f, "\n").unwrap();
        assert!(matches!(
            Auth::resolve(&AuthOptions::default(), &env),
            Err(AuthError::EmptyTokenFile { .. })
        ));
        let missing =
            Env::from_pairs([("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/adc.json")]);
        assert!(matches!(
            Auth::resolve(&AuthOptions::default(), &missing),
            Err(AuthError::AdcFile { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn impersonation_needs_emails() {
        let env = Env::default();
        let opts = AuthOptions {
            access_token_file: None,
            impersonate_service_account: Some("not-an-email".into()),
        };
        // Refused before any credential is built (which would need a runtime).
        assert!(matches!(
            Auth::resolve(&opts, &env),
            Err(AuthError::BadImpersonation(_))
        ));
    }
}
