//! The I/O edge of invoker-doctor: credentials, read-only REST clients of the Google Cloud
//! APIs a diagnosis needs, concurrent gathering, and `--record`.
//!
//! Depends on `ipd-model` only (never on the rules). The output of a gathering is a
//! [`Recording`]: the documents of an evidence bundle in the contract's file format, from which
//! [`Recording::evidence`] builds the [`ipd_model::Evidence`] with the same parser as
//! `--bundle`, so live and offline diagnoses of the same documents agree by construction.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ipd_gather::{AuthOptions, Env, Gatherer, Query, Settings, Target};
//! let env = Env::from_process();
//! let g = Gatherer::connect(&AuthOptions::default(), &env, Settings::default())?;
//! g.client().auth().check().await?;
//! let t = Target { project: "shop-prod".into(), region: "europe-west1".into(), service: "orders-api".into() };
//! let rec = g.gather(&t, &Query::default()).await?;
//! let evidence = rec.evidence(ipd_model::Inputs::default())?.evidence;
//! # let _ = evidence; Ok(()) }
//! ```
//!
//! Calls made (all reads; [`Call`] cannot express anything else, and its few `POST`s are
//! methods that only read, with bodies built in one place):
//!
//! | API | method | permission |
//! |---|---|---|
//! | Cloud Run Admin v2 | `services.get`, `services.list` (`--url`), `services.getIamPolicy` | `run.services.get`, `run.services.list`, `run.services.getIamPolicy` |
//! | Resource Manager v3 | `projects.get`, `folders.get`, `organizations.get`, `*.getIamPolicy` | `resourcemanager.{projects,folders,organizations}.get`, `….getIamPolicy` |
//! | Logging v2 | `entries.list` | `logging.logEntries.list` |
//! | Org Policy v2 | `getEffectivePolicy` | `orgpolicy.policy.get` |
//! | IAM v1 | `roles.get` (custom roles) | `iam.roles.get` |
//! | OAuth2 v2 | `tokeninfo` (`--as-me` only) | none |
//! | Pub/Sub v1, Scheduler v1, Tasks v2, Eventarc v1, Workflows v1 | `get` (`--caller-config` only; recorded as `caller-KIND.json`, a refusal or 404 a gap) | `pubsub.subscriptions.get`, `cloudscheduler.jobs.get`, `cloudtasks.{tasks,queues}.get`, `eventarc.triggers.get`, `workflows.workflows.get` |
//! | Policy Troubleshooter v3 | `iam.troubleshoot` (`POST v3/iam:troubleshoot`, after the gathering, when the caller is a user or service account; not with `--no-troubleshooter`; recorded as `troubleshoot.json`, never a gap) | see below |
//!
//! Policy Troubleshooter answers from the policies and roles the credentials in use may view.
//! For it Google documents the Security Reviewer role (`roles/iam.securityReviewer`) on the
//! organization, with these required permissions: `iam.roles.get`, `iam.roles.list`,
//! `resourcemanager.folders.getIamPolicy`, `resourcemanager.organizations.getIamPolicy`,
//! `resourcemanager.projects.getIamPolicy`
//! (<https://cloud.google.com/policy-intelligence/docs/troubleshoot-access>, "Required
//! permissions"). Not in that list but read too: the service's own policy
//! (`run.services.getIamPolicy`) and deny policies (`iam.denypolicies.get`, `.list`; Deny
//! Reviewer, `roles/iam.denyReviewer`). Google: without permission to view a policy or a
//! custom role "you might not be able to tell whether a principal has access": an undecided
//! answer (`UNKNOWN_INFO`), not necessarily a refusal. The API must be enabled in the project of the
//! credentials (else 403 `SERVICE_DISABLED`, and the cross-check says `unavailable`).

pub mod asset;
pub mod auth;
pub mod endpoints;
pub mod env;
pub mod gather;
pub mod http;
pub mod incidents;
pub mod record;
pub mod resolve;

pub use auth::{Auth, AuthError, AuthOptions, CredentialSource, Secret};
pub use endpoints::{Api, BadOverride, Endpoints};
pub use env::Env;
pub use gather::{
    AncestryCache, Ask, CONSTRAINTS, CallerConfigRef, Gatherer, Query, Settings, TROUBLESHOOT_FILE,
    Target, troubleshooter_email,
};
pub use http::{BadName, Call, CallRecord, Client, ClientError, Failure, RetryPolicy};
pub use incidents::{IncidentQuery, IncidentRead, incident_filter};
pub use record::Recording;
pub use resolve::{ResolveError, WhoamiError, WhoamiFailure, parse_run_url, principal_for_email};

/// Why live mode cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Endpoint(#[from] BadOverride),
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl Gatherer {
    /// Credentials from `opts` and `env`, API roots from gcloud's override variables in `env`,
    /// default retry policy. Fetches nothing yet (see [`Auth::check`]).
    pub fn connect(
        opts: &AuthOptions,
        env: &Env,
        settings: Settings,
    ) -> Result<Gatherer, StartError> {
        Gatherer::connect_with(opts, env, settings, RetryPolicy::default())
    }

    pub fn connect_with(
        opts: &AuthOptions,
        env: &Env,
        settings: Settings,
        retry: RetryPolicy,
    ) -> Result<Gatherer, StartError> {
        let endpoints = Endpoints::from_env(env)?;
        let auth = Auth::resolve(opts, env)?;
        let client = Client::new(auth, endpoints, retry)?;
        Ok(Gatherer::new(client, settings))
    }
}
