//! A local fake of the Google Cloud REST APIs that `invoker-doctor` reads, serving an evidence
//! bundle (see `shared/contract.md`) on `http://127.0.0.1:PORT/`. Used by end-to-end tests,
//! the demo and the benchmark; there is no other "cloud" here.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ipd_fakegcp::Error> {
//! use ipd_fakegcp::{FakeGcp, FakeOptions, Fault, Scenario, Source};
//! let scenario = Scenario::from_bundle("fixtures/some-case")?;
//! let opts = FakeOptions::new()
//!     .token("test-token")
//!     .identity("user:bob@shop.example.com") // what OAuth2 tokeninfo says of "test-token"
//!     .fail(Source::LoggingEntriesList, Fault::first(503, 1));
//! let fake = FakeGcp::start(scenario, opts).await?;
//! // point every API root of the client at fake.base_url() ...
//! assert!(fake.mutating_calls().is_empty());
//! # Ok(()) }
//! ```
//!
//! # Endpoints (all read-only)
//!
//! | source | method and path |
//! |---|---|
//! | `run.services.get` | `GET /v2/projects/{p}/locations/{l}/services/{s}` |
//! | `run.services.list` | `GET /v2/projects/{p}/locations/{l}/services` (`pageSize`, `pageToken`) |
//! | `run.services.getIamPolicy` | `GET /v2/projects/{p}/locations/{l}/services/{s}:getIamPolicy?options.requestedPolicyVersion=N` |
//! | `projects.get`, `folders.get`, `organizations.get` | `GET /v3/projects/{p}`, `/v3/folders/{id}`, `/v3/organizations/{id}` |
//! | `projects.getAncestry` | `POST /v1/projects/{projectId}:getAncestry` (Resource Manager v1), body `{}` or none; answers `{"ancestor": [{"resourceId": {"type": "project\|folder\|organization", "id"}}]}` bottom-up; a 403 is v1's legacy envelope |
//! | `*.getIamPolicy` (CRM) | `POST /v3/{projects\|folders\|organizations}/{id}:getIamPolicy`, body `{"options":{"requestedPolicyVersion":3}}` |
//! | `logging.entries.list` | `POST /v2/entries:list`, body `{resourceNames, filter, orderBy, pageSize, pageToken}` |
//! | `orgpolicy.getEffectivePolicy` | `GET /v2/{projects\|folders\|organizations}/{id}/policies/{constraint}:getEffectivePolicy` |
//! | `iam.roles.get` | `GET /v1/roles/{r}`, `/v1/projects/{p}/roles/{r}`, `/v1/organizations/{o}/roles/{r}` |
//! | `iam.denypolicies` | `GET /v2/policies/{attachment}/denypolicies[/{id}]`, attachment `%2F`-encoded |
//! | `pubsub.subscriptions.get` | `GET /v1/projects/{p}/subscriptions/{s}` |
//! | `cloudscheduler.jobs.get` | `GET /v1/projects/{p}/locations/{l}/jobs/{j}` |
//! | `cloudtasks.queues.get` | `GET /v2/projects/{p}/locations/{l}/queues/{q}` |
//! | `cloudtasks.tasks.get` | `GET /v2/projects/{p}/locations/{l}/queues/{q}/tasks/{t}?responseView=BASIC\|FULL` |
//! | `eventarc.triggers.get` | `GET /v1/projects/{p}/locations/{l}/triggers/{t}` |
//! | `workflows.workflows.get` | `GET /v1/projects/{p}/locations/{l}/workflows/{w}[?revisionId=R]` |
//! | `oauth2.tokeninfo` | `POST /oauth2/v2/tokeninfo?access_token=T` or `?id_token=JWT` (GET accepted; no `Authorization`) |
//! | `policytroubleshooter.iam.troubleshoot` | `POST /v3/iam:troubleshoot`, body `{"accessTuple": {principal, fullResourceName, permission, conditionContext}}` |
//!
//! And what gcloud 528 calls for the same evidence ([`gcloud`], found with `--log-http`):
//!
//! | source | method and path | gcloud command |
//! |---|---|---|
//! | `run.services.get` | `GET /apis/serving.knative.dev/v1/namespaces/{p}/services/{s}` on `REGION-HOST` (Cloud Run v1: the bundle's v1 document verbatim, else the v2 resource translated) | `gcloud run services describe` |
//! | `run.services.list` | `GET /apis/serving.knative.dev/v1/namespaces/{p}/services` (the host's region, or every region on the global host) | `gcloud run services list` |
//! | `run.services.getIamPolicy` | `GET /v1/projects/{p}/locations/{l}/services/{s}:getIamPolicy` | `gcloud run services get-iam-policy` |
//! | `*.getIamPolicy` (CRM) | `POST /v1/projects/{p}:getIamPolicy`, `/v2/folders/{id}:getIamPolicy`, `/v1/organizations/{id}:getIamPolicy` | `gcloud projects\|resource-manager folders\|organizations get-iam-policy` |
//! | `iam.denypolicies` | `GET /v2/policies/{attachment}/denypolicies[/{id}]` with the attachment point encoded twice (`%252F`), as gcloud sends it | `gcloud iam policies list\|get` |
//! | `iam.roles.get` | `GET /v1/roles/{r}` for the predefined roles of [`ipd_model::roles`] too | `gcloud iam roles describe` |
//!
//! `{p}` may be the project ID or number everywhere. The source names are what
//! [`Source`] prints and `fake-gcp --fail NAME=403` takes; the caller-configuration sources are
//! named by the permission they check. Every API root of the client (including
//! `CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB`, `_CLOUDSCHEDULER`, `_CLOUDTASKS`, `_EVENTARC`,
//! `_WORKFLOWS`, `_OAUTH2` and `_POLICYTROUBLESHOOTER`) can point at the one base URL: the version and collection
//! segments keep the paths apart (Scheduler, Eventarc and Workflows share `v1/projects/P/
//! locations/L/`, Cloud Tasks shares `v2/projects/P/locations/L/` with Run).
//!
//! # Faithful
//!
//! - Paths, methods and parameter placement from the discovery documents: the version of
//!   Run's getIamPolicy is a query parameter, CRM's is in the body; custom `:verb` methods; the
//!   IAM v2 attachment point is matched on the **raw** path, so `%2F` must stay encoded.
//! - Google's error envelope (`code`, `message`, `status`, `details[ErrorInfo]`), with
//!   `IAM_PERMISSION_DENIED` and the permission each method checks; 401 `UNAUTHENTICATED`,
//!   404, 400 `INVALID_ARGUMENT`, 429 `RESOURCE_EXHAUSTED` (+ `Retry-After` when configured),
//!   503 `UNAVAILABLE`. A bundle file holding an envelope makes its endpoint answer it.
//! - proto3 JSON: empty lists and unset fields are left out (`{}` for an empty list, the
//!   empty policy `{"etag": "ACAB"}`), `invokerIamDisabled`/`iapEnabled`/`defaultUriDisabled`
//!   only when true, names of projects as `projects/NUMBER` in CRM and Org Policy answers,
//!   numeric project IDs in deny-policy attachment points.
//! - IAM policy versions: below 3, conditional bindings come back as `ROLE_withcond_HASH`
//!   without the condition and `version: 1`; invalid versions are rejected.
//! - Run v2 list rejects the `-` location (as documented; the 400 is an assumption).
//! - Logging: `resourceNames` required, `orderBy` limited to `timestamp asc|desc`, page size
//!   default 50, negative rejected, tokens bound to the request, a project number in `logName`
//!   translated; the filter language subset of [`filter`] with its documented precedence (OR
//!   binds tighter than AND). Optionally, empty pages with a `nextPageToken` first.
//! - Deny-policy lists carry metadata only (no `rules`); `get` returns the rules.
//! - Google-managed callers: each `caller-*.json` (the `gcloud ... describe --format=json`
//!   output) is served at its `name`, verbatim. An unknown name in a known project answers
//!   404 `NOT_FOUND` (Pub/Sub's wording `Resource not found (resource=ID).`, elsewhere
//!   `Resource 'NAME' was not found`); in an unknown project, 403 with the method's permission.
//!   Cloud Tasks' `BASIC` view (the default) leaves out `httpRequest.body`; an unknown
//!   `responseView` is a 400. A `caller-*.json` holding an envelope answers it for names the
//!   bundle does not hold, in the collection its file name suggests (`caller-subscription`,
//!   `caller-pubsub`, `caller-tasks-queue`, `caller-task`, `caller-job`, `caller-trigger`,
//!   `caller-workflow`; any other name: every collection).
//! - OAuth2 `tokeninfo` needs no `Authorization` header. `access_token` equal to
//!   [`FakeOptions::token`] (any, when none is set) answers the v2 `Tokeninfo` shape in
//!   snake_case (`issued_to`, `audience`, `user_id`, `scope`, `expires_in`, and `email` +
//!   `verified_email` when [`FakeOptions::identity`] is set, as with the `userinfo.email`
//!   scope); any other token answers 400 `{"error": "invalid_token", "error_description":
//!   "Invalid Value"}` (OAuth's shape, not the API envelope); no parameter, 400
//!   `invalid_request`. An injected 400/401/403 on it answers `invalid_token`.
//! - Policy Troubleshooter: `principal`, `fullResourceName` and `permission` of the
//!   `accessTuple` are required (400 `INVALID_ARGUMENT`), the principal is a bare email (a
//!   `user:` prefix is a 400; an assumption, the API documents an email), `receiveTime` is RFC
//!   3339, and a field name outside the request's schema is a 400 as in Google's JSON mapping.
//!   Without `troubleshoot.json` it answers 403 `SERVICE_DISABLED` for
//!   `policytroubleshooter.googleapis.com` (the API is not enabled), as Google does.
//!
//! # Simplified
//!
//! - One project. Unknown projects, folders and organizations answer 403 (as the real APIs
//!   do for resources one cannot see). Folders come from `folder-ID-iam-policy.json` (and
//!   deny-policy attachment points), chained nearest-first in id order under the first
//!   organization found.
//! - A v1 (Knative) `service.json/yaml` is translated to a v2 resource with the fields that
//!   matter for invoke (name, uri, urls incl. the deterministic URL, customAudiences,
//!   invokerIamDisabled, ingress, defaultUriDisabled, iapEnabled, template.serviceAccount,
//!   labels, conditions); a v2 file is served verbatim.
//! - getEffectivePolicy serves the bundle's effective policies for the project, and the same
//!   ones for its folders and organization (no real inheritance computation). A constraint the
//!   bundle does not mention answers `{"name": ..., "spec": {}}` (nothing set); with no
//!   org-policy file at all every constraint answers 403 `orgpolicy.policy.get`.
//! - Predefined roles: only those of invoker-doctor's table ([`ipd_model::roles`]), with
//!   `includedPermissions` holding `run.routes.invoke` where the role has it and nothing else
//!   (a partial list); other predefined roles answer 404. Custom roles are the bundle's
//!   `role-*.json`.
//! - Policy Troubleshooter v2alpha1 (`gcloud policy-troubleshoot iam`) is not served (404):
//!   invoker-doctor refuses its answers and names the v3 command instead.
//! - Callers' APIs serve `get` only (no lists, no `getIamPolicy`); a Workflows `revisionId`
//!   other than the stored revision answers 404 (older revisions are not kept). The 404
//!   wordings other than Pub/Sub's are generic, not checked against the real APIs.
//! - tokeninfo reads an `id_token`'s claims without checking its signature (only Google's
//!   issuers, not expired); `expires_in` of the access token is a fixed 3599.
//! - Policy Troubleshooter evaluates nothing: it answers the bundle's `troubleshoot.json` (or
//!   the envelope it holds) when the question matches the `accessTuple` stored there
//!   (principal case-insensitively, the project by ID or number), and 400 naming both when it
//!   does not, so a client that asks about the wrong principal fails its test. What was asked
//!   is in [`Call::body`] ([`Running::calls_to`] with
//!   [`Source::PolicyTroubleshooterIamTroubleshoot`]).
//! - Standard parameters such as `fields` and `prettyPrint` are ignored; not implemented:
//!   global restrictions, regular expressions and functions other than `log_id()` in filters.

pub mod convert;
pub mod envelope;
pub mod filter;
pub mod garble;
pub mod gcloud;
mod handlers;
pub mod options;
pub mod org;
pub mod org_server;
pub mod routes;
pub mod scenario;
mod server;

pub use garble::Garble;
pub use options::{FakeOptions, Fault, Source};
pub use scenario::{
    BundleOptions, ErrorReply, Folder, Identity, IdentityOverrides, OrgPolicies, Organization,
    Parent, Scenario, Stored,
};
pub use server::{Call, FakeGcp, Running};

/// Why a fake could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bundle file is malformed (names the file, line and column).
    #[error(transparent)]
    Bundle(#[from] ipd_model::doc::ParseError),
    /// Binding the port or starting the runtime failed.
    #[error("cannot start the fake server: {0}")]
    Io(#[from] std::io::Error),
}
