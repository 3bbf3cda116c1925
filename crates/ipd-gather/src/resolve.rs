//! Finding the target: a service URL (`--url`), and who the credentials in use are (`--as-me`).

use serde_json::Value;
use tokio::task::JoinSet;

use crate::gather::{Gatherer, Target};
use crate::http::{Call, Failure, check_name};

/// Regions where Cloud Run runs, searched when a URL is not of the deterministic form and no
/// `--region` is given (`services.list` does not accept the `-` wildcard).
pub const RUN_REGIONS: &[&str] = &[
    "africa-south1",
    "asia-east1",
    "asia-east2",
    "asia-northeast1",
    "asia-northeast2",
    "asia-northeast3",
    "asia-south1",
    "asia-south2",
    "asia-southeast1",
    "asia-southeast2",
    "asia-southeast3",
    "australia-southeast1",
    "australia-southeast2",
    "europe-central2",
    "europe-north1",
    "europe-north2",
    "europe-southwest1",
    "europe-west1",
    "europe-west2",
    "europe-west3",
    "europe-west4",
    "europe-west6",
    "europe-west8",
    "europe-west9",
    "europe-west10",
    "europe-west12",
    "me-central1",
    "me-central2",
    "me-west1",
    "northamerica-northeast1",
    "northamerica-northeast2",
    "northamerica-south1",
    "southamerica-east1",
    "southamerica-west1",
    "us-central1",
    "us-east1",
    "us-east4",
    "us-east5",
    "us-south1",
    "us-west1",
    "us-west2",
    "us-west3",
    "us-west4",
];

/// `https://SERVICE-PROJECTNUMBER.REGION.run.app[/path]` → (service, project number, region).
/// The service name may contain `-`; the number is the part after the last one.
pub fn parse_run_url(url: &str) -> Option<(String, String, String)> {
    let h = ipd_model::paste::ids::run_host(&url_host(url)?)?;
    let (number, region) = (h.project_number?, h.region?);
    (check_name(&h.service).is_ok() && check_name(&region).is_ok())
        .then_some((h.service, number, region))
}

/// The lowercased host of an `https://` (or `http://`) URL.
pub fn url_host(url: &str) -> Option<String> {
    ipd_model::inventory::url_host(url)
}

/// Why `--url` did not lead to a service.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("`{0}` is not an https:// URL")]
    NotAUrl(String),
    #[error(
        "`{url}` is not of the form https://SERVICE-PROJECT_NUMBER.REGION.run.app, so the service must be found by listing services: pass --project P (and --region R to list one region only)"
    )]
    NeedProject { url: String },
    #[error("listing the services of project `{project}` failed: {}", failure.summary())]
    List { project: String, failure: Failure },
    #[error(
        "no Cloud Run service of project `{project}` ({where_}) answers on `{host}`; for a custom domain or load balancer, pass --region and --service"
    )]
    NotFound {
        project: String,
        where_: String,
        host: String,
    },
    #[error("`{0}` is not a valid project or region name")]
    BadName(String),
}

/// The identity of the credentials could not be found.
#[derive(Debug, thiserror::Error)]
#[error("--as-me: {0}")]
pub struct WhoamiError(pub String, pub WhoamiFailure);

/// Whether the credentials themselves are bad (nothing else can be read with them) or only
/// the question failed (tokeninfo unavailable, refused, or answering garbage: the diagnosis
/// can go on without a caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhoamiFailure {
    Credentials,
    Unanswered,
}

/// `user:EMAIL` or `serviceAccount:EMAIL`.
pub fn principal_for_email(email: &str) -> String {
    let e = email.trim();
    if e.to_ascii_lowercase().ends_with(".gserviceaccount.com") {
        format!("serviceAccount:{e}")
    } else {
        format!("user:{e}")
    }
}

impl Gatherer {
    /// The service behind `url`: the deterministic form is parsed; any other URL is looked up
    /// by listing the services of `project` (in `region`, or in every Cloud Run region) and
    /// matching `uri`/`urls`.
    pub async fn resolve_url(
        &self,
        url: &str,
        project: Option<&str>,
        region: Option<&str>,
    ) -> Result<Target, ResolveError> {
        let host = url_host(url).ok_or_else(|| ResolveError::NotAUrl(url.to_string()))?;
        if let Some((service, number, r)) = parse_run_url(url) {
            return Ok(Target {
                project: project.map(str::to_string).unwrap_or(number),
                region: region.map(str::to_string).unwrap_or(r),
                service,
            });
        }
        let Some(project) = project else {
            return Err(ResolveError::NeedProject {
                url: url.to_string(),
            });
        };
        let regions: Vec<String> = match region {
            Some(r) => vec![r.to_string()],
            None => RUN_REGIONS.iter().map(|r| r.to_string()).collect(),
        };
        for r in &regions {
            check_name(&format!("projects/{project}/locations/{r}"))
                .map_err(|_| ResolveError::BadName(format!("{project}/{r}")))?;
        }
        let mut set: JoinSet<Result<Option<Target>, Failure>> = JoinSet::new();
        for r in regions.clone() {
            let g = self.clone();
            let project = project.to_string();
            let host = host.clone();
            set.spawn(async move { g.find_in_region(&project, &r, &host).await });
        }
        let mut first_failure: Option<Failure> = None;
        let mut failures = 0usize;
        while let Some(j) = set.join_next().await {
            match j {
                Ok(Ok(Some(t))) => {
                    set.abort_all();
                    return Ok(t);
                }
                Ok(Ok(None)) => {}
                Ok(Err(f)) => {
                    failures += 1;
                    if first_failure.is_none() {
                        first_failure = Some(f);
                    }
                }
                Err(_) => failures += 1,
            }
        }
        if failures == regions.len()
            && let Some(f) = first_failure
        {
            return Err(ResolveError::List {
                project: project.to_string(),
                failure: f,
            });
        }
        Err(ResolveError::NotFound {
            project: project.to_string(),
            where_: match region {
                Some(r) => format!("region {r}"),
                None => format!("{} regions", regions.len()),
            },
            host,
        })
    }

    async fn find_in_region(
        &self,
        project: &str,
        region: &str,
        host: &str,
    ) -> Result<Option<Target>, Failure> {
        let parent = format!("projects/{project}/locations/{region}");
        let mut token: Option<String> = None;
        for page in 0..self.settings().max_list_pages {
            let v = self
                .client()
                .call(
                    &Call::ServicesList {
                        parent: parent.clone(),
                        page_token: token.clone(),
                    },
                    page,
                )
                .await?;
            for s in v
                .get("services")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let urls = s.get("uri").and_then(Value::as_str).into_iter().chain(
                    s.get("urls")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str),
                );
                let matches = urls.filter_map(url_host).any(|h| h == host);
                if matches && let Some(name) = s.get("name").and_then(Value::as_str) {
                    let service = name.rsplit('/').next().unwrap_or(name).to_string();
                    return Ok(Some(Target {
                        project: project.to_string(),
                        region: region.to_string(),
                        service,
                    }));
                }
            }
            token = v
                .get("nextPageToken")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        Ok(None)
    }

    /// Who the credentials in use are, as a principal: the impersonated service account, the
    /// `client_email` of a key file, else what OAuth2 `tokeninfo` says about the access token.
    pub async fn whoami(&self) -> Result<String, WhoamiError> {
        let auth = self.client().auth();
        if let Some(e) = auth.known_email() {
            return Ok(principal_for_email(e));
        }
        let token = auth
            .access_token()
            .await
            .map_err(|e| WhoamiError(e.to_string(), WhoamiFailure::Credentials))?;
        let v = self
            .client()
            .call(&Call::TokenInfo { token }, 0)
            .await
            .map_err(|f| {
                // tokeninfo's 400 `invalid_token`: the token is expired or revoked.
                let bad_token = matches!(f.http_status, 400 | 401)
                    && f.summary().contains("invalid_token");
                WhoamiError(
                    format!(
                        "OAuth2 tokeninfo could not say whose the credentials are ({}); pass --caller instead",
                        f.summary()
                    ),
                    if bad_token {
                        WhoamiFailure::Credentials
                    } else {
                        WhoamiFailure::Unanswered
                    },
                )
            })?;
        match v.get("email").and_then(Value::as_str) {
            Some(e) if e.contains('@') => Ok(principal_for_email(e)),
            // A real answer without an email lacks the scope; any other body is not an answer.
            _ if v.get("expires_in").is_some() || v.get("scope").is_some() => Err(WhoamiError(
                "OAuth2 tokeninfo names no email for these credentials (they lack the userinfo.email scope); pass --caller instead".into(),
                WhoamiFailure::Credentials,
            )),
            _ => Err(WhoamiError(
                "OAuth2 tokeninfo gave an answer that is not a token's description; pass --caller instead".into(),
                WhoamiFailure::Unanswered,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_urls() {
        assert_eq!(
            parse_run_url("https://orders-api-123456789012.europe-west1.run.app/v1/x?y=1"),
            Some((
                "orders-api".into(),
                "123456789012".into(),
                "europe-west1".into()
            ))
        );
        assert_eq!(
            parse_run_url("HTTPS://Orders-Api-1.US-central1.run.app"),
            Some(("orders-api".into(), "1".into(), "us-central1".into()))
        );
        assert_eq!(
            parse_run_url("https://orders-api-x7kq2mzb4a-ew.a.run.app"),
            None
        );
        assert_eq!(parse_run_url("https://api.example.com"), None);
        assert_eq!(parse_run_url("https://-1.r.run.app"), None);
        assert_eq!(parse_run_url("orders-api-1.r.run.app"), None);
    }

    #[test]
    fn hosts_and_principals() {
        assert_eq!(
            url_host("https://user@Api.Example.com:443/x").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(url_host("ftp://x"), None);
        assert_eq!(
            principal_for_email("ci@p.iam.gserviceaccount.com"),
            "serviceAccount:ci@p.iam.gserviceaccount.com"
        );
        assert_eq!(
            principal_for_email("alice@example.com"),
            "user:alice@example.com"
        );
    }
}
