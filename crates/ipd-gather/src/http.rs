//! The read-only REST client: one enum of every call the tool can make (all of them reads; the
//! few `POST`s are methods that only read, each with a body built here), per attempt timeouts, retries with exponential backoff and jitter on 429/500/502/503/504 that
//! honour `Retry-After`, and a trace of every call for `-v` and the benchmark.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ipd_model::doc::ApiError;
use ipd_model::roles::INVOKE_PERMISSION;
use ipd_model::time::Timestamp;
use reqwest::Method;
use reqwest::header::RETRY_AFTER;
use serde_json::{Value, json};

use crate::auth::{Auth, Secret};
use crate::endpoints::{Api, Endpoints};

/// How calls are retried and timed out.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubled each time, with jitter (50–100 %).
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured; a longer one ends the retries.
    pub max_retry_after: Duration,
    /// Timeout of one attempt (connect, send, read the body).
    pub attempt_timeout: Duration,
    pub connect_timeout: Duration,
    /// The whole gathering's bound (`--timeout`), from the client's creation: a call still
    /// unanswered then fails (its source a gap), and no retry waits past it.
    pub deadline: Option<Duration>,
}

impl RetryPolicy {
    /// The longest the retries of one call wait, attempts answering at once: every backoff at
    /// its full jitter (0.25 + 0.5 + 1 s with the defaults).
    pub fn slowest_backoff(&self) -> Duration {
        (1..self.max_attempts.max(1))
            .map(|retry| {
                let base = self.initial_backoff.as_secs_f64() * 2f64.powi(retry as i32 - 1);
                Duration::from_secs_f64(base.min(self.max_backoff.as_secs_f64()))
            })
            .sum()
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
            max_retry_after: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            deadline: None,
        }
    }
}

/// A resource name from the outside that is put into a URL path: segments of letters, digits
/// and `-._~@` only, so nothing can escape the intended path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a valid resource name")]
pub struct BadName(pub String);

pub(crate) fn check_name(name: &str) -> Result<&str, BadName> {
    let ok = !name.is_empty()
        && name.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._~@".contains(c))
        });
    if ok {
        Ok(name)
    } else {
        Err(BadName(name.to_string()))
    }
}

/// A deny policy's name as the API returns it: `policies/ATTACHMENT/denypolicies/ID`, where
/// the attachment keeps its `%2F` escapes (the only `%` allowed).
pub(crate) fn check_policy_name(name: &str) -> Result<&str, BadName> {
    let segs: Vec<&str> = name.split('/').collect();
    let ok = matches!(segs.as_slice(), ["policies", _, "denypolicies", _])
        && segs.iter().all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._~@%".contains(c))
        })
        && !name.contains("%2E")
        && !name.contains("%2e");
    if ok {
        Ok(name)
    } else {
        Err(BadName(name.to_string()))
    }
}

/// A principal's email as Policy Troubleshooter takes it: bare (no `user:` prefix), one `@`
/// between non-empty parts, no spaces or control characters.
pub(crate) fn check_email(email: &str) -> Result<&str, BadName> {
    let ok = email.len() <= 320
        && email.split('@').count() == 2
        && email.split('@').all(|p| !p.is_empty())
        && !email.contains(':')
        && email.chars().all(|c| c.is_ascii_graphic() && c != '/');
    if ok {
        Ok(email)
    } else {
        Err(BadName(email.to_string()))
    }
}

/// Every request the tool can send. All are reads: there is no way to express a write. The
/// `POST`s are methods that only read (CRM `getIamPolicy`, Logging `entries:list`, OAuth2
/// `tokeninfo`, Policy Troubleshooter `iam:troubleshoot`), each at a fixed path with a body of
/// a fixed shape built in [`Call::request`].
#[derive(Debug, Clone)]
pub enum Call {
    /// Cloud Run v2 `services.get`: `GET v2/{name}`.
    ServicesGet { name: String },
    /// Cloud Run v2 `services.list`: `GET v2/{parent}/services`.
    ServicesList {
        parent: String,
        page_token: Option<String>,
    },
    /// Cloud Run v2 `services.getIamPolicy`: `GET v2/{resource}:getIamPolicy?options.requestedPolicyVersion=3`.
    ServicesGetIamPolicy { resource: String },
    /// Resource Manager v3 `projects.get`.
    ProjectsGet { name: String },
    /// Resource Manager v1 `projects.getAncestry`: `POST v1/projects/{project}:getAncestry`
    /// with `{}`. The project, its folders and its organization in one answer; needs only
    /// `resourcemanager.projects.get`.
    ProjectsGetAncestry { project: String },
    /// Resource Manager v3 `folders.get`.
    FoldersGet { name: String },
    /// Resource Manager v3 `organizations.get`.
    OrganizationsGet { name: String },
    /// Resource Manager v3 `{projects,folders,organizations}.getIamPolicy`: `POST v3/{resource}:getIamPolicy`
    /// with `{"options":{"requestedPolicyVersion":3}}`.
    CrmGetIamPolicy { resource: String },
    /// Logging v2 `entries.list`: `POST v2/entries:list`.
    EntriesList { body: Value },
    /// Org Policy v2 `getEffectivePolicy`: `GET v2/{name}:getEffectivePolicy`.
    GetEffectivePolicy { name: String },
    /// Org Policy v2 `customConstraints.list` of an organization (`organizations/O`):
    /// `GET v2/{parent}/customConstraints` (one page of up to 100).
    CustomConstraintsList { parent: String },
    /// IAM v1 `roles.get` (`roles/X`, `projects/P/roles/X`, `organizations/O/roles/X`).
    RolesGet { name: String },
    /// IAM v2 `policies.listPolicies` of deny policies on an attachment point
    /// (`cloudresourcemanager.googleapis.com/projects/P`, decoded): `GET v2/policies/{%2F-encoded
    /// attachment}/denypolicies`. The list has metadata only.
    DenyPoliciesList {
        attachment: String,
        page_token: Option<String>,
    },
    /// IAM v2 `policies.get`: `GET v2/{name}`, `name` as the list returned it (`%2F` kept).
    DenyPolicyGet { name: String },
    /// OAuth2 v2 `tokeninfo`: `POST oauth2/v2/tokeninfo?access_token=...` (the token is the
    /// subject, as the API defines it; never logged).
    TokenInfo { token: Secret },
    /// A Google-managed caller's configuration: `GET {version}/{name}` on its API.
    CallerConfigGet {
        api: Api,
        version: &'static str,
        name: String,
    },
    /// Policy Troubleshooter v3 `iam.troubleshoot`: `POST v3/iam:troubleshoot`, asking whether
    /// `principal` (a bare email) holds `run.routes.invoke` on `service`
    /// (`projects/P/locations/R/services/S`), with the request's time as the condition context
    /// when known. It evaluates policies and changes nothing. Build it with [`Call::troubleshoot`].
    Troubleshoot {
        principal: String,
        service: String,
        receive_time: Option<Timestamp>,
    },
    /// Cloud Asset Inventory v1 `searchAllResources`: `GET v1/{scope}:searchAllResources` with
    /// `assetTypes` (repeated), the read mask that returns the resource data
    /// (`versionedResources`), `pageSize=500`, `pageToken`.
    SearchAllResources {
        scope: String,
        asset_types: Vec<String>,
        page_token: Option<String>,
    },
    /// Cloud Asset Inventory v1 `searchAllIamPolicies`: `GET v1/{scope}:searchAllIamPolicies`
    /// with `query`, `pageSize=500`, `pageToken`.
    SearchAllIamPolicies {
        scope: String,
        query: String,
        page_token: Option<String>,
    },
}

/// The fields `searchAllResources` returns: the defaults a scan uses, and the resource data.
pub const RESOURCE_READ_MASK: &str =
    "name,assetType,project,folders,organization,location,additionalAttributes,versionedResources";
/// The largest page both searches allow.
pub const SEARCH_PAGE_SIZE: u32 = 500;

impl Call {
    /// Asks Policy Troubleshooter about `principal` (a bare email) and the service `service`
    /// (`projects/P/locations/R/services/S`); both are checked.
    pub fn troubleshoot(
        principal: &str,
        service: &str,
        receive_time: Option<Timestamp>,
    ) -> Result<Call, BadName> {
        check_email(principal)?;
        let segs: Vec<&str> = check_name(service)?.split('/').collect();
        if !matches!(
            segs.as_slice(),
            ["projects", _, "locations", _, "services", _]
        ) {
            return Err(BadName(service.to_string()));
        }
        Ok(Call::Troubleshoot {
            principal: principal.to_string(),
            service: service.to_string(),
            receive_time,
        })
    }

    /// The API the call goes to (read off the URL [`Call::request`] builds, so the two agree).
    pub fn api(&self) -> Api {
        let (_, url, _, _) = self.request(&Endpoints::default());
        Api::ALL
            .iter()
            .copied()
            .find(|a| url.starts_with(a.default_root()))
            .unwrap_or(Api::Run)
    }

    /// The method's name, as the fake and the docs call it.
    pub fn method_name(&self) -> &'static str {
        match self {
            Call::ServicesGet { .. } => "run.services.get",
            Call::ServicesList { .. } => "run.services.list",
            Call::ServicesGetIamPolicy { .. } => "run.services.getIamPolicy",
            Call::ProjectsGet { .. } => "projects.get",
            Call::ProjectsGetAncestry { .. } => "projects.getAncestry",
            Call::FoldersGet { .. } => "folders.get",
            Call::OrganizationsGet { .. } => "organizations.get",
            Call::CrmGetIamPolicy { resource } => {
                if resource.starts_with("folders/") {
                    "folders.getIamPolicy"
                } else if resource.starts_with("organizations/") {
                    "organizations.getIamPolicy"
                } else {
                    "projects.getIamPolicy"
                }
            }
            Call::EntriesList { .. } => "logging.entries.list",
            Call::GetEffectivePolicy { .. } => "orgpolicy.getEffectivePolicy",
            Call::CustomConstraintsList { .. } => "orgpolicy.customConstraints.list",
            Call::RolesGet { .. } => "iam.roles.get",
            Call::DenyPoliciesList { .. } => "iam.policies.listPolicies",
            Call::DenyPolicyGet { .. } => "iam.policies.get",
            Call::TokenInfo { .. } => "oauth2.tokeninfo",
            Call::CallerConfigGet { api, name, .. } => caller_get_method(*api, name),
            Call::Troubleshoot { .. } => "policytroubleshooter.iam.troubleshoot",
            Call::SearchAllResources { .. } => "cloudasset.searchAllResources",
            Call::SearchAllIamPolicies { .. } => "cloudasset.searchAllIamPolicies",
        }
    }

    /// The IAM permission the call needs (used when a refusal does not name one).
    pub fn permission(&self) -> &'static str {
        match self {
            Call::ServicesGet { .. } => "run.services.get",
            Call::ServicesList { .. } => "run.services.list",
            Call::ServicesGetIamPolicy { .. } => "run.services.getIamPolicy",
            Call::ProjectsGet { .. } | Call::ProjectsGetAncestry { .. } => {
                "resourcemanager.projects.get"
            }
            Call::FoldersGet { .. } => "resourcemanager.folders.get",
            Call::OrganizationsGet { .. } => "resourcemanager.organizations.get",
            Call::CrmGetIamPolicy { resource } => {
                if resource.starts_with("folders/") {
                    "resourcemanager.folders.getIamPolicy"
                } else if resource.starts_with("organizations/") {
                    "resourcemanager.organizations.getIamPolicy"
                } else {
                    "resourcemanager.projects.getIamPolicy"
                }
            }
            Call::EntriesList { .. } => "logging.logEntries.list",
            Call::GetEffectivePolicy { .. } => "orgpolicy.policy.get",
            Call::CustomConstraintsList { .. } => "orgpolicy.customConstraints.list",
            Call::RolesGet { .. } => "iam.roles.get",
            Call::DenyPoliciesList { .. } => "iam.denypolicies.list",
            Call::DenyPolicyGet { .. } => "iam.denypolicies.get",
            Call::TokenInfo { .. } => "(none)",
            // Each of these APIs names its `get` after the permission it checks.
            Call::CallerConfigGet { api, name, .. } => caller_get_method(*api, name),
            // The troubleshooter reads the policies that apply (iam.roles.get, the ancestors'
            // getIamPolicy, ...); the first is the service's own.
            Call::Troubleshoot { .. } => "run.services.getIamPolicy",
            Call::SearchAllResources { .. } => "cloudasset.assets.searchAllResources",
            Call::SearchAllIamPolicies { .. } => "cloudasset.assets.searchAllIamPolicies",
        }
    }

    /// What the call is about, for the trace (never a secret).
    pub fn subject(&self) -> String {
        match self {
            Call::ServicesGet { name }
            | Call::ProjectsGet { name }
            | Call::FoldersGet { name }
            | Call::OrganizationsGet { name }
            | Call::GetEffectivePolicy { name }
            | Call::CustomConstraintsList { parent: name }
            | Call::RolesGet { name }
            | Call::DenyPolicyGet { name }
            | Call::CallerConfigGet { name, .. } => name.clone(),
            Call::DenyPoliciesList {
                attachment,
                page_token,
            } => match page_token {
                Some(_) => format!("{attachment} (next page)"),
                None => attachment.clone(),
            },
            Call::ServicesList { parent, page_token } => match page_token {
                Some(_) => format!("{parent} (next page)"),
                None => parent.clone(),
            },
            Call::ServicesGetIamPolicy { resource } | Call::CrmGetIamPolicy { resource } => {
                resource.clone()
            }
            Call::EntriesList { body } => {
                let names = body
                    .get("resourceNames")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default();
                if body.get("pageToken").is_some() {
                    format!("{names} (next page)")
                } else {
                    names
                }
            }
            Call::TokenInfo { .. } => "the credentials in use".into(),
            Call::ProjectsGetAncestry { project } => format!("projects/{project}"),
            Call::Troubleshoot {
                principal, service, ..
            } => format!("{INVOKE_PERMISSION} of {principal} on {service}"),
            Call::SearchAllResources {
                scope,
                asset_types,
                page_token,
            } => format!(
                "{scope} {}{}",
                asset_types.join(","),
                if page_token.is_some() {
                    " (next page)"
                } else {
                    ""
                }
            ),
            Call::SearchAllIamPolicies {
                scope,
                query,
                page_token,
            } => format!(
                "{scope} {query}{}",
                if page_token.is_some() {
                    " (next page)"
                } else {
                    ""
                }
            ),
        }
    }

    fn request(
        &self,
        ep: &Endpoints,
    ) -> (Method, String, Vec<(&'static str, String)>, Option<Value>) {
        match self {
            Call::ServicesGet { name } => (
                Method::GET,
                ep.url(Api::Run, &format!("v2/{name}")),
                vec![],
                None,
            ),
            Call::ServicesList { parent, page_token } => {
                let mut q = vec![("pageSize", "100".to_string())];
                if let Some(t) = page_token {
                    q.push(("pageToken", t.clone()));
                }
                (
                    Method::GET,
                    ep.url(Api::Run, &format!("v2/{parent}/services")),
                    q,
                    None,
                )
            }
            Call::ServicesGetIamPolicy { resource } => (
                Method::GET,
                ep.url(Api::Run, &format!("v2/{resource}:getIamPolicy")),
                vec![("options.requestedPolicyVersion", "3".into())],
                None,
            ),
            Call::ProjectsGet { name }
            | Call::FoldersGet { name }
            | Call::OrganizationsGet { name } => (
                Method::GET,
                ep.url(Api::CloudResourceManager, &format!("v3/{name}")),
                vec![],
                None,
            ),
            Call::ProjectsGetAncestry { project } => (
                Method::POST,
                ep.url(
                    Api::CloudResourceManager,
                    &format!("v1/projects/{project}:getAncestry"),
                ),
                vec![],
                Some(json!({})),
            ),
            Call::CrmGetIamPolicy { resource } => (
                Method::POST,
                ep.url(
                    Api::CloudResourceManager,
                    &format!("v3/{resource}:getIamPolicy"),
                ),
                vec![],
                Some(json!({"options": {"requestedPolicyVersion": 3}})),
            ),
            Call::EntriesList { body } => (
                Method::POST,
                ep.url(Api::Logging, "v2/entries:list"),
                vec![],
                Some(body.clone()),
            ),
            Call::GetEffectivePolicy { name } => (
                Method::GET,
                ep.url(Api::OrgPolicy, &format!("v2/{name}:getEffectivePolicy")),
                vec![],
                None,
            ),
            Call::CustomConstraintsList { parent } => (
                Method::GET,
                ep.url(Api::OrgPolicy, &format!("v2/{parent}/customConstraints")),
                vec![("pageSize", "100".to_string())],
                None,
            ),
            Call::RolesGet { name } => (
                Method::GET,
                ep.url(Api::Iam, &format!("v1/{name}")),
                vec![],
                None,
            ),
            Call::DenyPoliciesList {
                attachment,
                page_token,
            } => {
                let q = page_token
                    .iter()
                    .map(|t| ("pageToken", t.clone()))
                    .collect();
                (
                    Method::GET,
                    ep.url(
                        Api::Iam,
                        &format!(
                            "v2/policies/{}/denypolicies",
                            attachment.replace('/', "%2F")
                        ),
                    ),
                    q,
                    None,
                )
            }
            Call::DenyPolicyGet { name } => (
                Method::GET,
                ep.url(Api::Iam, &format!("v2/{name}")),
                vec![],
                None,
            ),
            Call::TokenInfo { token } => (
                Method::POST,
                ep.url(Api::OAuth2, "oauth2/v2/tokeninfo"),
                vec![("access_token", token.expose().to_string())],
                None,
            ),
            Call::CallerConfigGet { api, version, name } => (
                Method::GET,
                ep.url(*api, &format!("{version}/{name}")),
                vec![],
                None,
            ),
            Call::Troubleshoot {
                principal,
                service,
                receive_time,
            } => {
                let mut tuple = json!({
                    "principal": principal,
                    "fullResourceName": format!("//run.googleapis.com/{service}"),
                    "permission": INVOKE_PERMISSION,
                });
                if let Some(t) = receive_time {
                    tuple["conditionContext"] = json!({"request": {
                        "receiveTime": t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                    }});
                }
                (
                    Method::POST,
                    ep.url(Api::PolicyTroubleshooter, "v3/iam:troubleshoot"),
                    vec![],
                    Some(json!({ "accessTuple": tuple })),
                )
            }
            Call::SearchAllResources {
                scope,
                asset_types,
                page_token,
            } => {
                let mut q: Vec<(&'static str, String)> = asset_types
                    .iter()
                    .map(|t| ("assetTypes", t.clone()))
                    .collect();
                q.push(("readMask", RESOURCE_READ_MASK.to_string()));
                q.push(("pageSize", SEARCH_PAGE_SIZE.to_string()));
                if let Some(t) = page_token {
                    q.push(("pageToken", t.clone()));
                }
                (
                    Method::GET,
                    ep.url(Api::CloudAsset, &format!("v1/{scope}:searchAllResources")),
                    q,
                    None,
                )
            }
            Call::SearchAllIamPolicies {
                scope,
                query,
                page_token,
            } => {
                let mut q = vec![
                    ("query", query.clone()),
                    ("pageSize", SEARCH_PAGE_SIZE.to_string()),
                ];
                if let Some(t) = page_token {
                    q.push(("pageToken", t.clone()));
                }
                (
                    Method::GET,
                    ep.url(Api::CloudAsset, &format!("v1/{scope}:searchAllIamPolicies")),
                    q,
                    None,
                )
            }
        }
    }

    /// `tokeninfo` is authenticated by its parameter, not by a bearer header.
    fn sends_bearer(&self) -> bool {
        !matches!(self, Call::TokenInfo { .. })
    }
}

/// The `get` of a Google-managed caller's API, which is also the permission it checks.
fn caller_get_method(api: Api, name: &str) -> &'static str {
    match api {
        Api::PubSub => "pubsub.subscriptions.get",
        Api::CloudScheduler => "cloudscheduler.jobs.get",
        Api::CloudTasks if name.contains("/tasks/") => "cloudtasks.tasks.get",
        Api::CloudTasks => "cloudtasks.queues.get",
        Api::Eventarc => "eventarc.triggers.get",
        Api::Workflows => "workflows.workflows.get",
        _ => "(unknown)",
    }
}

/// A call that did not give a resource: Google's error envelope (`{"error": {...}}`) as the
/// server sent it, or one made up in the same shape for a failure without one (a timeout,
/// a refused connection, a body that is not JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub http_status: u16,
    pub envelope: Value,
}

impl Failure {
    /// An envelope of our own, for failures the server did not describe.
    pub fn synthetic(http_status: u16, status: &str, message: impl Into<String>) -> Failure {
        Failure {
            http_status,
            envelope: json!({"error": {"code": http_status, "message": message.into(), "status": status}}),
        }
    }

    pub fn api_error(&self) -> ApiError {
        ApiError::from_envelope(&self.envelope).unwrap_or(ApiError {
            code: Some(i64::from(self.http_status)),
            status: None,
            message: String::new(),
            reason: None,
            permission: None,
        })
    }

    /// A refusal for lack of permission (not an API-disabled 403).
    pub fn is_permission_denied(&self) -> bool {
        self.api_error().is_permission_denied()
    }

    /// One line: `403 PERMISSION_DENIED: Permission 'x' denied ...`.
    pub fn summary(&self) -> String {
        let e = self.api_error();
        let mut s = self.http_status.to_string();
        if let Some(st) = &e.status {
            s.push(' ');
            s.push_str(st);
        }
        if !e.message.is_empty() {
            s.push_str(": ");
            s.push_str(&e.message);
        }
        s
    }
}

/// One call as it happened, for `-v` and the benchmark. Holds no secret.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    pub method: &'static str,
    pub subject: String,
    /// Length of the chain of dependent calls that ends with this one (1 for a call that
    /// needed no earlier answer). The longest chain is the critical path.
    pub chain: u32,
    pub attempts: u32,
    /// The final HTTP status, `None` when no answer came.
    pub status: Option<u16>,
    /// Start, relative to the client's creation.
    pub start: Duration,
    pub elapsed: Duration,
    /// Retries and waits (`503, retried after 0.3 s`, `429, waited 1 s (Retry-After)`).
    pub notes: Vec<String>,
}

/// The shared client. Cheap to share behind an `Arc`.
pub struct Client {
    /// For `http://` endpoints (a local fake): built on first use, without any TLS roots, so
    /// the system's certificate store is never loaded for them.
    plain: OnceLock<Result<reqwest::Client, ClientError>>,
    /// For `https://` endpoints: built on first use (the certificate store is loaded then).
    tls: OnceLock<Result<reqwest::Client, ClientError>>,
    auth: Auth,
    endpoints: Endpoints,
    policy: RetryPolicy,
    limiter: tokio::sync::Semaphore,
    created: Instant,
    trace: Mutex<Vec<CallRecord>>,
    rng: AtomicU64,
}

/// The client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the HTTP client: {0}")]
pub struct ClientError(String);

/// At most this many requests in flight at once.
pub const MAX_IN_FLIGHT: usize = 24;

/// The largest body read from an answer.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

impl Client {
    pub fn new(
        auth: Auth,
        endpoints: Endpoints,
        policy: RetryPolicy,
    ) -> Result<Client, ClientError> {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        Ok(Client {
            plain: OnceLock::new(),
            tls: OnceLock::new(),
            auth,
            endpoints,
            policy,
            limiter: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
            created: Instant::now(),
            trace: Mutex::new(Vec::new()),
            rng: AtomicU64::new(seed),
        })
    }

    /// The HTTP client for `url`, built once, on the first request that needs it.
    fn http_for(&self, url: &str) -> Result<&reqwest::Client, &ClientError> {
        let plain = url.starts_with("http://");
        let cell = if plain { &self.plain } else { &self.tls };
        let build = || -> Result<reqwest::Client, ClientError> {
            let mut b = crate::endpoints::with_proxies(
                reqwest::Client::builder()
                    .connect_timeout(self.policy.connect_timeout)
                    .user_agent(concat!("invoker-doctor/", env!("CARGO_PKG_VERSION"))),
                self.endpoints.proxies(),
            )
            .map_err(ClientError)?;
            if plain {
                // No roots at all: this client cannot open a TLS connection, and needs none.
                b = b.tls_certs_only(std::iter::empty());
            }
            b.build()
                .map_err(|e| ClientError(e.without_url().to_string()))
        };
        cell.get_or_init(build).as_ref()
    }

    /// Whether the TLS client has been built (for the no-fixed-cost check).
    pub fn tls_started(&self) -> bool {
        self.tls.get().is_some()
    }

    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// Every call made so far, in the order they ended.
    pub fn trace(&self) -> Vec<CallRecord> {
        self.trace.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// A number in [0, 1) for jitter (splitmix64; no need for a cryptographic source).
    fn unit_random(&self) -> f64 {
        let mut z = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn backoff(&self, retry: u32) -> Duration {
        let base =
            self.policy.initial_backoff.as_secs_f64() * 2f64.powi(retry.saturating_sub(1) as i32);
        let capped = base.min(self.policy.max_backoff.as_secs_f64());
        Duration::from_secs_f64(capped * (0.5 + 0.5 * self.unit_random()))
    }

    /// Sends `call`, retrying transient failures. `chain` is the length of the chain of calls
    /// this one waited for (0 for none).
    pub async fn call(&self, call: &Call, chain: u32) -> Result<Value, Failure> {
        let start = self.created.elapsed();
        let began = Instant::now();
        let (method, url, query, body) = call.request(&self.endpoints);
        if let Some(why) = self.endpoints.refusal(call.api()) {
            // Never dialled: the user pointed the tool at other hosts only.
            return Err(Failure::synthetic(400, "FAILED_PRECONDITION", why));
        }
        let mut notes = Vec::new();
        let mut attempts = 0;
        let deadline = self
            .policy
            .deadline
            .map(|d| tokio::time::Instant::from_std(self.created + d));
        let retries = async {
            loop {
                attempts += 1;
                let last = attempts >= self.policy.max_attempts.max(1);
                let outcome = self
                    .attempt(call, &method, &url, &query, body.as_ref())
                    .await;
                let (failure, retry_after) = match outcome {
                    Attempt::Ok(v) => break Ok(v),
                    Attempt::Final(f) => break Err(f),
                    Attempt::Transient(f, ra) => (f, ra),
                };
                if last {
                    notes.push(format!("{}, no attempts left", short(&failure)));
                    break Err(failure);
                }
                let wait = match retry_after {
                    Some(ra) if ra > self.policy.max_retry_after => {
                        notes.push(format!(
                            "{}, Retry-After {} s is longer than the {} s this tool waits",
                            short(&failure),
                            ra.as_secs(),
                            self.policy.max_retry_after.as_secs()
                        ));
                        break Err(failure);
                    }
                    Some(ra) => {
                        notes.push(format!(
                            "{}, waited {:.1} s (Retry-After)",
                            short(&failure),
                            ra.as_secs_f64()
                        ));
                        ra
                    }
                    None => {
                        let b = self.backoff(attempts);
                        notes.push(format!(
                            "{}, retried after {:.2} s (backoff)",
                            short(&failure),
                            b.as_secs_f64()
                        ));
                        b
                    }
                };
                if let Some(d) = deadline
                    && tokio::time::Instant::now() + wait >= d
                {
                    notes.push(format!(
                        "{}, no retry: waiting {:.1} s would pass --timeout",
                        short(&failure),
                        wait.as_secs_f64()
                    ));
                    break Err(failure);
                }
                tokio::time::sleep(wait).await;
            }
        };
        let result = match deadline {
            None => retries.await,
            Some(d) => match tokio::time::timeout_at(d, retries).await {
                Ok(r) => r,
                Err(_) => {
                    let secs = self.policy.deadline.unwrap_or_default().as_secs_f64();
                    notes.push(format!("cut off at --timeout ({secs:.0} s)"));
                    Err(no_answer(
                        504,
                        "DEADLINE_EXCEEDED",
                        format!("no answer within --timeout ({secs:.0} s for the whole run)"),
                    ))
                }
            },
        };
        let rec = CallRecord {
            method: call.method_name(),
            subject: call.subject(),
            chain: chain + 1,
            attempts,
            status: match &result {
                Ok(_) => Some(200),
                Err(f) if f.envelope.pointer("/error/x-no-answer").is_some() => None,
                Err(f) => Some(f.http_status),
            },
            start,
            elapsed: began.elapsed(),
            notes,
        };
        if let Ok(mut t) = self.trace.lock() {
            t.push(rec);
        }
        result.map_err(|mut f| {
            // The marker only serves the trace; recorded envelopes stay Google's shape.
            if let Some(e) = f.envelope.get_mut("error").and_then(Value::as_object_mut) {
                e.remove("x-no-answer");
            }
            f
        })
    }

    async fn attempt(
        &self,
        call: &Call,
        method: &Method,
        url: &str,
        query: &[(&'static str, String)],
        body: Option<&Value>,
    ) -> Attempt {
        let _permit = match self.limiter.acquire().await {
            Ok(p) => p,
            Err(_) => {
                return Attempt::Final(no_answer(
                    503,
                    "UNAVAILABLE",
                    "the client is shutting down",
                ));
            }
        };
        let http = match self.http_for(url) {
            Ok(h) => h,
            Err(e) => return Attempt::Final(no_answer(500, "INTERNAL", e.to_string())),
        };
        let mut req = http
            .request(method.clone(), url)
            .timeout(self.policy.attempt_timeout);
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        if call.sends_bearer() {
            match self.auth.headers().await {
                Ok(h) => req = req.headers(h),
                Err(e) => {
                    return Attempt::Final(no_answer(
                        401,
                        "UNAUTHENTICATED",
                        format!("no access token: {e}"),
                    ));
                }
            }
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                // `without_url`: the URL of tokeninfo carries the token.
                let timeout = e.is_timeout();
                let msg = e.without_url().to_string();
                let f = if timeout {
                    no_answer(
                        504,
                        "DEADLINE_EXCEEDED",
                        format!(
                            "no answer within {} s",
                            self.policy.attempt_timeout.as_secs()
                        ),
                    )
                } else {
                    no_answer(503, "UNAVAILABLE", format!("cannot reach the API: {msg}"))
                };
                return Attempt::Transient(f, None);
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let bytes = match read_body(resp).await {
            Ok(b) => b,
            Err(msg) => {
                return Attempt::Transient(no_answer(503, "UNAVAILABLE", msg), None);
            }
        };
        if (200..300).contains(&status) {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Attempt::Ok(json!({}));
            }
            return match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) => Attempt::Ok(v),
                Err(e) => Attempt::Final(Failure::synthetic(
                    502,
                    "INTERNAL",
                    format!("the answer is not JSON: {e}"),
                )),
            };
        }
        let failure = match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) if ApiError::from_envelope(&v).is_some() => Failure {
                http_status: status,
                envelope: v,
            },
            // OAuth 2.0's own error shape (tokeninfo): `{"error": "invalid_token",
            // "error_description": "Invalid Value"}`.
            Ok(v) if v.get("error").is_some_and(Value::is_string) => {
                let code = v.get("error").and_then(Value::as_str).unwrap_or("");
                let message = match v.get("error_description").and_then(Value::as_str) {
                    Some(d) if !d.is_empty() => format!("{code}: {d}"),
                    _ => code.to_string(),
                };
                Failure::synthetic(status, canonical_status(status), message)
            }
            _ if html_title(&bytes).is_some() => Failure::synthetic(
                status,
                not_the_api_status(status),
                format!(
                    "HTTP {status}: an HTML page (\"{}\"), not the API's answer: a proxy or load balancer between the tool and the API answered",
                    html_title(&bytes).unwrap_or_default()
                ),
            ),
            _ => {
                let text = String::from_utf8_lossy(&bytes);
                let snippet: String = text.trim().chars().take(200).collect();
                let why = if status == 403 {
                    " (not Google's error answer: a proxy or gateway in between refused it, not IAM)"
                } else {
                    ""
                };
                Failure::synthetic(
                    status,
                    not_the_api_status(status),
                    if snippet.is_empty() {
                        format!("HTTP {status}{why}")
                    } else {
                        format!("HTTP {status}{why}: {snippet}")
                    },
                )
            }
        };
        if matches!(status, 429 | 500 | 502 | 503 | 504) {
            Attempt::Transient(failure, retry_after)
        } else {
            Attempt::Final(failure)
        }
    }
}

/// The `<title>` of an HTML page (a proxy's error page), `Some("")` for HTML without one;
/// `None` when the body is not HTML.
fn html_title(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
    let lower = text.trim_start().to_ascii_lowercase();
    if !(lower.starts_with("<html") || lower.starts_with("<!doctype html")) {
        return None;
    }
    let title = lower
        .find("<title>")
        .and_then(|i| {
            let rest = &text.trim_start()[i + "<title>".len()..];
            rest.find('<').map(|j| rest[..j].trim().to_string())
        })
        .unwrap_or_default();
    Some(title.chars().take(100).collect())
}

enum Attempt {
    Ok(Value),
    Final(Failure),
    Transient(Failure, Option<Duration>),
}

fn no_answer(code: u16, status: &str, message: impl Into<String>) -> Failure {
    let mut f = Failure::synthetic(code, status, message);
    if let Some(e) = f.envelope.get_mut("error").and_then(Value::as_object_mut) {
        e.insert("x-no-answer".into(), Value::Bool(true));
    }
    f
}

fn short(f: &Failure) -> String {
    match f.envelope.pointer("/error/x-no-answer") {
        Some(_) => f
            .api_error()
            .message
            .split(':')
            .next()
            .unwrap_or("no answer")
            .to_string(),
        None => f.http_status.to_string(),
    }
}

async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if out.len() + c.len() > MAX_BODY_BYTES {
                    return Err(format!("the answer is larger than {MAX_BODY_BYTES} bytes"));
                }
                out.extend_from_slice(&c);
            }
            Ok(None) => return Ok(out),
            Err(e) => return Err(format!("reading the answer failed: {}", e.without_url())),
        }
    }
}

/// `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// The status recorded for an answer that is not Google's error envelope (an HTML page, an
/// empty or plain-text body): a 403 from a proxy is not an IAM refusal, so it is UNKNOWN (a
/// failed source, not a denied one); other codes keep their canonical name.
fn not_the_api_status(http: u16) -> &'static str {
    if http == 403 {
        "UNKNOWN"
    } else {
        canonical_status(http)
    }
}

/// The `google.rpc.Code` name of an HTTP status.
pub fn canonical_status(http: u16) -> &'static str {
    match http {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ if http >= 500 => "INTERNAL",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape_the_path() {
        assert!(
            check_name("projects/shop-prod/locations/europe-west1/services/orders-api").is_ok()
        );
        assert!(check_name("organizations/123/roles/my.role_x").is_ok());
        for bad in [
            "",
            "projects/../x",
            "a//b",
            "a/b?c",
            "a/b#c",
            "a b",
            "a/%2F",
            "a/./b",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deny_policy_paths_keep_the_attachment_encoded() {
        let ep = Endpoints::all_at("http://127.0.0.1:1/").unwrap();
        let (_, u, q, _) = Call::DenyPoliciesList {
            attachment: "cloudresourcemanager.googleapis.com/projects/shop-prod".into(),
            page_token: None,
        }
        .request(&ep);
        assert_eq!(
            u,
            "http://127.0.0.1:1/v2/policies/cloudresourcemanager.googleapis.com%2Fprojects%2Fshop-prod/denypolicies"
        );
        assert!(q.is_empty());
        let n = "policies/cloudresourcemanager.googleapis.com%2Fprojects%2F123/denypolicies/p-1";
        assert!(check_policy_name(n).is_ok());
        assert!(check_policy_name("policies/a/denypolicies/x/y").is_err());
        assert!(check_policy_name("policies/%2E%2E/denypolicies/x").is_err());
        assert!(check_policy_name("policies/a b/denypolicies/x").is_err());
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn paths_methods_and_parameters_follow_the_discovery_docs() {
        let ep = Endpoints::all_at("http://127.0.0.1:1/").unwrap();
        let (m, u, q, b) = Call::ServicesGetIamPolicy {
            resource: "projects/p/locations/r/services/s".into(),
        }
        .request(&ep);
        assert_eq!(m, Method::GET);
        assert_eq!(
            u,
            "http://127.0.0.1:1/v2/projects/p/locations/r/services/s:getIamPolicy"
        );
        assert_eq!(q, vec![("options.requestedPolicyVersion", "3".to_string())]);
        assert!(b.is_none());
        let (m, u, _, b) = Call::CrmGetIamPolicy {
            resource: "folders/1".into(),
        }
        .request(&ep);
        assert_eq!(m, Method::POST);
        assert_eq!(u, "http://127.0.0.1:1/v3/folders/1:getIamPolicy");
        assert_eq!(b, Some(json!({"options": {"requestedPolicyVersion": 3}})));
        let (_, u, _, _) = Call::GetEffectivePolicy {
            name: "projects/p/policies/run.managed.requireInvokerIam".into(),
        }
        .request(&ep);
        assert_eq!(
            u,
            "http://127.0.0.1:1/v2/projects/p/policies/run.managed.requireInvokerIam:getEffectivePolicy"
        );
        let get = |api, name: &str| Call::CallerConfigGet {
            api,
            version: "v2",
            name: name.into(),
        };
        let task = get(Api::CloudTasks, "projects/p/locations/l/queues/q/tasks/t");
        assert_eq!(task.permission(), "cloudtasks.tasks.get");
        assert_eq!(task.method_name(), "cloudtasks.tasks.get");
        let (m, u, q, _) = task.request(&ep);
        assert_eq!(m, Method::GET);
        assert!(q.is_empty());
        assert_eq!(
            u,
            "http://127.0.0.1:1/v2/projects/p/locations/l/queues/q/tasks/t"
        );
        let queue = get(Api::CloudTasks, "projects/p/locations/l/queues/q");
        assert_eq!(queue.permission(), "cloudtasks.queues.get");
        let wf = get(Api::Workflows, "projects/p/locations/l/workflows/w");
        assert_eq!(wf.permission(), "workflows.workflows.get");
        let c = Call::TokenInfo {
            token: Secret::new("ya29.secret"),
        };
        assert!(!format!("{c:?} {}", c.subject()).contains("ya29.secret"));
    }

    #[test]
    fn troubleshoot_asks_about_a_bare_email_and_the_service() {
        let ep = Endpoints::all_at("http://127.0.0.1:1/").unwrap();
        let svc = "projects/p/locations/r/services/s";
        let at = ipd_model::time::parse_rfc3339("2026-03-01T10:00:00.5Z");
        let c = Call::troubleshoot("sa@p.iam.gserviceaccount.com", svc, at).unwrap();
        assert_eq!(c.method_name(), "policytroubleshooter.iam.troubleshoot");
        let (m, u, q, b) = c.request(&ep);
        assert_eq!(m, Method::POST);
        assert_eq!(u, "http://127.0.0.1:1/v3/iam:troubleshoot");
        assert!(q.is_empty());
        assert_eq!(
            b,
            Some(json!({"accessTuple": {
                "principal": "sa@p.iam.gserviceaccount.com",
                "fullResourceName": "//run.googleapis.com/projects/p/locations/r/services/s",
                "permission": "run.routes.invoke",
                "conditionContext": {"request": {"receiveTime": "2026-03-01T10:00:00.500Z"}}
            }}))
        );
        let (_, _, _, b) = Call::troubleshoot("a@b.c", svc, None).unwrap().request(&ep);
        assert!(b.unwrap()["accessTuple"].get("conditionContext").is_none());
        for bad in ["user:a@b.c", "a", "a@", "@b", "a@b@c", "a b@c", ""] {
            assert!(Call::troubleshoot(bad, svc, None).is_err(), "{bad}");
        }
        assert!(Call::troubleshoot("a@b.c", "projects/p", None).is_err());
        assert!(Call::troubleshoot("a@b.c", "projects/../x/locations/r/services/s", None).is_err());
    }

    #[test]
    fn failures_read_as_api_errors() {
        let f = Failure {
            http_status: 403,
            envelope: json!({"error": {"code": 403, "status": "PERMISSION_DENIED", "message": "Permission 'logging.logEntries.list' denied on resource"}}),
        };
        assert!(f.is_permission_denied());
        assert_eq!(
            f.api_error().permission.as_deref(),
            Some("logging.logEntries.list")
        );
        assert!(f.summary().starts_with("403 PERMISSION_DENIED: Permission"));
        let t = Failure::synthetic(504, "DEADLINE_EXCEEDED", "no answer within 30 s");
        assert!(!t.is_permission_denied());
    }
}

#[cfg(test)]
mod lazy_tls_tests {
    use std::io::{Read, Write};

    use super::*;
    use crate::auth::{Auth, AuthOptions};
    use crate::env::Env;

    /// Answers one HTTP request with `{}` on 127.0.0.1; returns the base URL.
    fn one_answer_server() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                );
            }
        });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn plain_http_endpoints_never_build_the_tls_client() {
        let dir = std::env::temp_dir().join(format!("ipd-gather-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("tok");
        std::fs::write(&f, "ya29.test\n").unwrap();
        let env = Env::from_pairs([("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE", f.display().to_string())]);
        let auth = Auth::resolve(&AuthOptions::default(), &env).unwrap();
        let base = one_answer_server();
        let client = Client::new(
            auth,
            Endpoints::all_at(&base).unwrap(),
            RetryPolicy::default(),
        )
        .unwrap();
        assert!(!client.tls_started(), "nothing is built before a request");
        let r = client
            .call(
                &Call::ProjectsGetAncestry {
                    project: "p".into(),
                },
                0,
            )
            .await;
        assert_eq!(r.ok(), Some(serde_json::json!({})));
        assert!(!client.tls_started(), "an http:// endpoint needs no TLS");
        assert!(client.plain.get().is_some_and(Result::is_ok));
    }
}
