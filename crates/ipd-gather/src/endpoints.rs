//! API roots, overridable the way gcloud does it: `CLOUDSDK_API_ENDPOINT_OVERRIDES_<API>` holds a
//! base URL such as `http://127.0.0.1:8085/`, to which the versioned path (`v2/projects/...`) is
//! appended.
//!
//! Only the hosts the user chose: once any override is set, an API without one is not called
//! at all (its source becomes a gap naming the variable that would enable it), so a tool
//! pointed at a fake or a private endpoint never reaches Google's real hosts. Proxies are
//! gcloud's: `HTTPS_PROXY` / `HTTP_PROXY` (or lowercase), except for the hosts in `NO_PROXY`.

use crate::env::Env;

/// The APIs the tool reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Api {
    /// Cloud Run Admin API (v2).
    Run,
    /// Resource Manager (v3).
    CloudResourceManager,
    /// Cloud Logging (v2).
    Logging,
    /// Organization Policy (v2).
    OrgPolicy,
    /// IAM (v1 roles).
    Iam,
    /// OAuth2 v2 `tokeninfo` (only for `--as-me` with a token whose owner is not known).
    OAuth2,
    /// Pub/Sub v1 (a push subscription as the caller, `--caller-config pubsub:...`).
    PubSub,
    /// Cloud Scheduler v1.
    CloudScheduler,
    /// Cloud Tasks v2.
    CloudTasks,
    /// Eventarc v1.
    Eventarc,
    /// Workflows v1.
    Workflows,
    /// IAM Credentials v1 (impersonation, through `google-cloud-auth`).
    IamCredentials,
    /// Policy Troubleshooter v3 (`iam:troubleshoot`, the cross-check of the caller's access).
    PolicyTroubleshooter,
    /// Cloud Asset Inventory v1 (`scan`: `searchAllResources`, `searchAllIamPolicies`).
    CloudAsset,
}

impl Api {
    pub const ALL: &'static [Api] = &[
        Api::Run,
        Api::CloudResourceManager,
        Api::Logging,
        Api::OrgPolicy,
        Api::Iam,
        Api::OAuth2,
        Api::PubSub,
        Api::CloudScheduler,
        Api::CloudTasks,
        Api::Eventarc,
        Api::Workflows,
        Api::IamCredentials,
        Api::PolicyTroubleshooter,
        Api::CloudAsset,
    ];

    /// gcloud's name of the API (the suffix of the override variable, lowercased).
    pub fn name(self) -> &'static str {
        match self {
            Api::Run => "run",
            Api::CloudResourceManager => "cloudresourcemanager",
            Api::Logging => "logging",
            Api::OrgPolicy => "orgpolicy",
            Api::Iam => "iam",
            Api::OAuth2 => "oauth2",
            Api::PubSub => "pubsub",
            Api::CloudScheduler => "cloudscheduler",
            Api::CloudTasks => "cloudtasks",
            Api::Eventarc => "eventarc",
            Api::Workflows => "workflows",
            Api::IamCredentials => "iamcredentials",
            Api::PolicyTroubleshooter => "policytroubleshooter",
            Api::CloudAsset => "cloudasset",
        }
    }

    /// The production root.
    pub fn default_root(self) -> &'static str {
        match self {
            Api::Run => "https://run.googleapis.com/",
            Api::CloudResourceManager => "https://cloudresourcemanager.googleapis.com/",
            Api::Logging => "https://logging.googleapis.com/",
            Api::OrgPolicy => "https://orgpolicy.googleapis.com/",
            Api::Iam => "https://iam.googleapis.com/",
            Api::OAuth2 => "https://www.googleapis.com/",
            Api::PubSub => "https://pubsub.googleapis.com/",
            Api::CloudScheduler => "https://cloudscheduler.googleapis.com/",
            Api::CloudTasks => "https://cloudtasks.googleapis.com/",
            Api::Eventarc => "https://eventarc.googleapis.com/",
            Api::Workflows => "https://workflows.googleapis.com/",
            Api::IamCredentials => "https://iamcredentials.googleapis.com/",
            Api::PolicyTroubleshooter => "https://policytroubleshooter.googleapis.com/",
            Api::CloudAsset => "https://cloudasset.googleapis.com/",
        }
    }

    /// `CLOUDSDK_API_ENDPOINT_OVERRIDES_RUN`, ...
    pub fn override_var(self) -> String {
        format!(
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_{}",
            self.name().to_ascii_uppercase()
        )
    }
}

/// An override that is not an `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{var}: `{value}` is not an http:// or https:// base URL (e.g. https://run.googleapis.com/)"
)]
pub struct BadOverride {
    pub var: String,
    pub value: String,
}

/// The root URL of every API, each ending in `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    roots: Vec<(Api, String)>,
    /// The APIs whose root the user set (an override variable, or [`Endpoints::set`]).
    chosen: Vec<Api>,
    proxy: Proxies,
}

/// gcloud's proxy variables, as given (values are URLs; `no_proxy` a comma-separated list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proxies {
    pub https: Option<String>,
    pub http: Option<String>,
    pub no_proxy: Option<String>,
}

impl Proxies {
    /// gcloud's own proxy properties first (`CLOUDSDK_PROXY_TYPE`, `_ADDRESS`, `_PORT`,
    /// `_USERNAME`, `_PASSWORD`: one proxy for every request, as `gcloud config set proxy/...`
    /// does), else `HTTPS_PROXY`, `HTTP_PROXY`; and `NO_PROXY`. Each of the standard variables
    /// is also read lowercase (the lowercase one wins, as in curl and Python's `urllib`, which
    /// gcloud uses).
    pub fn from_env(env: &Env) -> Proxies {
        let var = |n: &str| {
            env.get(&n.to_ascii_lowercase())
                .or_else(|| env.get(n))
                .map(|v| v.trim().to_string())
        };
        let prop = |n: &str| {
            env.get(&format!("CLOUDSDK_PROXY_{n}"))
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        if let (Some(address), Some(port)) = (prop("ADDRESS"), prop("PORT")) {
            // gcloud's types: http (the default), http_no_tunnel, socks4, socks5.
            let scheme = match prop("TYPE").unwrap_or("http") {
                "http" | "http_no_tunnel" => "http",
                other => other,
            };
            let enc = |s: &str| {
                s.bytes()
                    .map(|b| match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                            (b as char).to_string()
                        }
                        _ => format!("%{b:02X}"),
                    })
                    .collect::<String>()
            };
            let user = match (prop("USERNAME"), prop("PASSWORD")) {
                (Some(u), Some(p)) => format!("{}:{}@", enc(u), enc(p)),
                (Some(u), None) => format!("{}@", enc(u)),
                _ => String::new(),
            };
            let url = format!("{scheme}://{user}{address}:{port}");
            return Proxies {
                https: Some(url.clone()),
                http: Some(url),
                no_proxy: var("NO_PROXY"),
            };
        }
        Proxies {
            https: var("HTTPS_PROXY"),
            http: var("HTTP_PROXY"),
            no_proxy: var("NO_PROXY"),
        }
    }
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints {
            roots: Api::ALL
                .iter()
                .map(|a| (*a, a.default_root().to_string()))
                .collect(),
            chosen: Vec::new(),
            proxy: Proxies::default(),
        }
    }
}

impl Endpoints {
    /// Production roots, with gcloud's override variables applied.
    pub fn from_env(env: &Env) -> Result<Endpoints, BadOverride> {
        let mut e = Endpoints::default();
        for api in Api::ALL {
            let var = api.override_var();
            if let Some(v) = env.get(&var) {
                e.set(*api, v).map_err(|_| BadOverride {
                    var: var.clone(),
                    value: v.to_string(),
                })?;
            }
        }
        e.proxy = Proxies::from_env(env);
        Ok(e)
    }

    /// The proxies to use (from the environment given to [`Endpoints::from_env`]).
    pub fn proxies(&self) -> &Proxies {
        &self.proxy
    }

    /// Why `api` must not be called: the user chose the roots of other APIs and not this one's.
    /// `None` when it may be called (no override at all, or one for this API).
    pub fn refusal(&self, api: Api) -> Option<String> {
        if self.chosen.is_empty() || self.chosen.contains(&api) {
            return None;
        }
        Some(format!(
            "not called: endpoint overrides are set for other APIs and not for this one, so the tool stays off its default host {}; set {} to let it call this API",
            api.default_root().trim_end_matches('/'),
            api.override_var()
        ))
    }

    /// Every API at one root (tests and the benchmark point all of them at one fake).
    pub fn all_at(root: &str) -> Result<Endpoints, BadOverride> {
        let mut e = Endpoints::default();
        for api in Api::ALL {
            e.set(*api, root)?;
        }
        Ok(e)
    }

    /// Overrides one root.
    pub fn set(&mut self, api: Api, root: &str) -> Result<(), BadOverride> {
        let r = root.trim();
        let lower = r.to_ascii_lowercase();
        let ok = (lower.starts_with("http://") || lower.starts_with("https://"))
            && r.len() > "https://".len()
            && !r.contains(['?', '#', ' ']);
        if !ok {
            return Err(BadOverride {
                var: api.override_var(),
                value: root.to_string(),
            });
        }
        let mut r = r.to_string();
        if !r.ends_with('/') {
            r.push('/');
        }
        match self.roots.iter_mut().find(|(a, _)| *a == api) {
            Some(slot) => slot.1 = r,
            None => self.roots.push((api, r)),
        }
        if !self.chosen.contains(&api) {
            self.chosen.push(api);
        }
        Ok(())
    }

    /// The root of `api`, ending in `/`.
    pub fn root(&self, api: Api) -> &str {
        self.roots
            .iter()
            .find(|(a, _)| *a == api)
            .map(|(_, r)| r.as_str())
            .unwrap_or_else(|| api.default_root())
    }

    /// True when `api` is not at its production root.
    pub fn is_overridden(&self, api: Api) -> bool {
        self.root(api) != api.default_root()
    }

    /// `root + path` (`path` without a leading `/`).
    pub fn url(&self, api: Api, path: &str) -> String {
        format!("{}{}", self.root(api), path.trim_start_matches('/'))
    }
}

/// Applies gcloud's proxy variables to a client (and no proxy from the process environment
/// beyond them: the environment the tool was handed is the one that counts).
pub fn with_proxies(
    b: reqwest::ClientBuilder,
    p: &Proxies,
) -> Result<reqwest::ClientBuilder, String> {
    let mut b = b.no_proxy();
    let no = p
        .no_proxy
        .as_deref()
        .and_then(reqwest::NoProxy::from_string);
    for (url, https) in [(&p.https, true), (&p.http, false)] {
        let Some(url) = url else { continue };
        if url.to_ascii_lowercase().starts_with("socks") {
            return Err(
                "SOCKS proxies (CLOUDSDK_PROXY_TYPE=socks4/socks5, or a socks:// proxy URL) are not supported: use an http:// proxy".to_string(),
            );
        }
        let proxy = if https {
            reqwest::Proxy::https(url.as_str())
        } else {
            reqwest::Proxy::http(url.as_str())
        }
        // Never the value in the message: a proxy URL may carry a password.
        .map_err(|_| {
            "the proxy (HTTPS_PROXY / HTTP_PROXY, or CLOUDSDK_PROXY_TYPE/ADDRESS/PORT) is not a usable proxy: an http:// proxy such as http://proxy:3128 is needed".to_string()
        })?;
        b = b.proxy(proxy.no_proxy(no.clone()));
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcloud_proxy_properties_win_over_the_standard_variables() {
        let env = Env::from_pairs([
            ("CLOUDSDK_PROXY_ADDRESS", "proxy.corp"),
            ("CLOUDSDK_PROXY_PORT", "3128"),
            ("CLOUDSDK_PROXY_USERNAME", "ops"),
            ("CLOUDSDK_PROXY_PASSWORD", "p@ss:w/rd"),
            ("HTTPS_PROXY", "http://other:8080"),
            ("NO_PROXY", "127.0.0.1"),
        ]);
        let p = Proxies::from_env(&env);
        let want = "http://ops:p%40ss%3Aw%2Frd@proxy.corp:3128";
        assert_eq!(p.https.as_deref(), Some(want));
        assert_eq!(p.http.as_deref(), Some(want));
        assert_eq!(p.no_proxy.as_deref(), Some("127.0.0.1"));
        assert!(with_proxies(reqwest::Client::builder(), &p).is_ok());
        // Without both address and port the properties are not a proxy.
        let half = Env::from_pairs([("CLOUDSDK_PROXY_ADDRESS", "proxy.corp")]);
        assert_eq!(Proxies::from_env(&half), Proxies::default());
        // A SOCKS proxy is named, and refused with a message that shows no password.
        let socks = Env::from_pairs([
            ("CLOUDSDK_PROXY_TYPE", "socks5"),
            ("CLOUDSDK_PROXY_ADDRESS", "proxy.corp"),
            ("CLOUDSDK_PROXY_PORT", "1080"),
            ("CLOUDSDK_PROXY_PASSWORD", "hunter2"),
            ("CLOUDSDK_PROXY_USERNAME", "ops"),
        ]);
        let p = Proxies::from_env(&socks);
        assert_eq!(
            p.https.as_deref(),
            Some("socks5://ops:hunter2@proxy.corp:1080")
        );
        let err = with_proxies(reqwest::Client::builder(), &p)
            .err()
            .unwrap_or_default();
        assert!(err.contains("CLOUDSDK_PROXY_TYPE"), "{err}");
        assert!(!err.contains("hunter2"));
    }

    #[test]
    fn gcloud_override_variables() {
        let env = Env::from_pairs([
            (
                "CLOUDSDK_API_ENDPOINT_OVERRIDES_RUN",
                "http://127.0.0.1:8085",
            ),
            (
                "CLOUDSDK_API_ENDPOINT_OVERRIDES_LOGGING",
                "http://127.0.0.1:9/",
            ),
        ]);
        let e = Endpoints::from_env(&env).unwrap();
        assert_eq!(
            e.url(Api::Run, "v2/projects/p/locations/r/services/s"),
            "http://127.0.0.1:8085/v2/projects/p/locations/r/services/s"
        );
        assert_eq!(
            e.url(Api::Logging, "v2/entries:list"),
            "http://127.0.0.1:9/v2/entries:list"
        );
        assert_eq!(
            e.url(Api::OrgPolicy, "v2/x"),
            "https://orgpolicy.googleapis.com/v2/x"
        );
        assert!(e.is_overridden(Api::Run) && !e.is_overridden(Api::Iam));
        assert_eq!(
            e.url(Api::PolicyTroubleshooter, "v3/iam:troubleshoot"),
            "https://policytroubleshooter.googleapis.com/v3/iam:troubleshoot"
        );
        let pt = Env::from_pairs([(
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_POLICYTROUBLESHOOTER",
            "http://127.0.0.1:7/",
        )]);
        assert_eq!(
            Endpoints::from_env(&pt)
                .unwrap()
                .url(Api::PolicyTroubleshooter, "v3/iam:troubleshoot"),
            "http://127.0.0.1:7/v3/iam:troubleshoot"
        );
        // Overrides for some APIs: the others are refused, naming the variable.
        assert!(e.refusal(Api::Run).is_none());
        let why = e.refusal(Api::PolicyTroubleshooter).unwrap();
        assert!(
            why.contains("CLOUDSDK_API_ENDPOINT_OVERRIDES_POLICYTROUBLESHOOTER"),
            "{why}"
        );
        assert!(
            Endpoints::default()
                .refusal(Api::PolicyTroubleshooter)
                .is_none()
        );
        // Set to the production root explicitly: the user chose it.
        let prod = Env::from_pairs([(
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_RUN",
            "https://run.googleapis.com/",
        )]);
        let p = Endpoints::from_env(&prod).unwrap();
        assert!(p.refusal(Api::Run).is_none() && p.refusal(Api::Logging).is_some());
        let bad = Env::from_pairs([("CLOUDSDK_API_ENDPOINT_OVERRIDES_IAM", "localhost:1")]);
        let err = Endpoints::from_env(&bad).unwrap_err();
        assert_eq!(err.var, "CLOUDSDK_API_ENDPOINT_OVERRIDES_IAM");
    }

    #[test]
    fn proxies_as_gcloud_reads_them() {
        let env = Env::from_pairs([
            ("HTTPS_PROXY", "http://upper:3128"),
            ("https_proxy", "http://lower:3128"),
            ("NO_PROXY", "127.0.0.1,localhost"),
        ]);
        let p = Proxies::from_env(&env);
        assert_eq!(p.https.as_deref(), Some("http://lower:3128"));
        assert_eq!(p.http, None);
        assert_eq!(p.no_proxy.as_deref(), Some("127.0.0.1,localhost"));
        assert_eq!(Endpoints::from_env(&env).unwrap().proxies(), &p);
    }
}
