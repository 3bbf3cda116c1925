//! How the fake behaves besides what it serves: the expected token, latency, injected faults.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// One read method of one API: the unit of fault injection, latency and call accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// `GET v2/projects/P/locations/L/services/S` (Cloud Run Admin API v2).
    RunServicesGet,
    /// `GET v2/projects/P/locations/L/services`.
    RunServicesList,
    /// `GET v2/projects/P/locations/L/services/S:getIamPolicy`.
    RunServicesGetIamPolicy,
    /// `GET v3/projects/P` (Resource Manager v3).
    ProjectsGet,
    /// `POST v1/projects/P:getAncestry` (Resource Manager v1): the project, its folders and
    /// its organization in one answer.
    ProjectsGetAncestry,
    /// `GET v3/folders/F`.
    FoldersGet,
    /// `GET v3/organizations/O`.
    OrganizationsGet,
    /// `POST v3/projects/P:getIamPolicy`.
    ProjectsGetIamPolicy,
    /// `POST v3/folders/F:getIamPolicy`.
    FoldersGetIamPolicy,
    /// `POST v3/organizations/O:getIamPolicy`.
    OrganizationsGetIamPolicy,
    /// `POST v2/entries:list` (Cloud Logging v2).
    LoggingEntriesList,
    /// `GET v2/{projects|folders|organizations}/X/policies/C:getEffectivePolicy` (Org Policy v2).
    OrgPolicyGetEffectivePolicy,
    /// `GET v2/organizations/O/customConstraints` (Org Policy v2).
    OrgPolicyCustomConstraintsList,
    /// `GET v1/roles/R`, `v1/projects/P/roles/R`, `v1/organizations/O/roles/R` (IAM v1).
    IamRolesGet,
    /// `GET v2/policies/ATTACHMENT/denypolicies[/ID]` (IAM v2).
    IamDenyPolicies,
    /// `GET v1/projects/P/subscriptions/S` (Pub/Sub v1).
    PubsubSubscriptionsGet,
    /// `GET v1/projects/P/locations/L/jobs/J` (Cloud Scheduler v1).
    SchedulerJobsGet,
    /// `GET v2/projects/P/locations/L/queues/Q` (Cloud Tasks v2).
    TasksQueuesGet,
    /// `GET v2/projects/P/locations/L/queues/Q/tasks/T` (Cloud Tasks v2, `responseView`).
    TasksTasksGet,
    /// `GET v1/projects/P/locations/L/triggers/T` (Eventarc v1).
    EventarcTriggersGet,
    /// `GET v1/projects/P/locations/L/workflows/W` (Workflows v1, `revisionId`).
    WorkflowsGet,
    /// `POST oauth2/v2/tokeninfo?access_token=...|id_token=...` (OAuth2 v2; GET accepted).
    /// Needs no `Authorization` header: the token is the parameter.
    OAuth2TokenInfo,
    /// `POST v3/iam:troubleshoot` (Policy Troubleshooter v3): a read that evaluates policies.
    PolicyTroubleshooterIamTroubleshoot,
}

impl Source {
    /// The `get` of each Google-managed caller's configuration.
    pub const CALLERS: &'static [Source] = &[
        Source::PubsubSubscriptionsGet,
        Source::SchedulerJobsGet,
        Source::TasksQueuesGet,
        Source::TasksTasksGet,
        Source::EventarcTriggersGet,
        Source::WorkflowsGet,
    ];

    pub const ALL: &'static [Source] = &[
        Source::RunServicesGet,
        Source::RunServicesList,
        Source::RunServicesGetIamPolicy,
        Source::ProjectsGet,
        Source::ProjectsGetAncestry,
        Source::FoldersGet,
        Source::OrganizationsGet,
        Source::ProjectsGetIamPolicy,
        Source::FoldersGetIamPolicy,
        Source::OrganizationsGetIamPolicy,
        Source::LoggingEntriesList,
        Source::OrgPolicyGetEffectivePolicy,
        Source::OrgPolicyCustomConstraintsList,
        Source::IamRolesGet,
        Source::IamDenyPolicies,
        Source::PubsubSubscriptionsGet,
        Source::SchedulerJobsGet,
        Source::TasksQueuesGet,
        Source::TasksTasksGet,
        Source::EventarcTriggersGet,
        Source::WorkflowsGet,
        Source::OAuth2TokenInfo,
        Source::PolicyTroubleshooterIamTroubleshoot,
    ];

    /// The name used on the command line (`--fail NAME=403`) and in [`crate::Call::source`].
    pub fn name(self) -> &'static str {
        match self {
            Source::RunServicesGet => "run.services.get",
            Source::RunServicesList => "run.services.list",
            Source::RunServicesGetIamPolicy => "run.services.getIamPolicy",
            Source::ProjectsGet => "projects.get",
            Source::ProjectsGetAncestry => "projects.getAncestry",
            Source::FoldersGet => "folders.get",
            Source::OrganizationsGet => "organizations.get",
            Source::ProjectsGetIamPolicy => "projects.getIamPolicy",
            Source::FoldersGetIamPolicy => "folders.getIamPolicy",
            Source::OrganizationsGetIamPolicy => "organizations.getIamPolicy",
            Source::LoggingEntriesList => "logging.entries.list",
            Source::OrgPolicyGetEffectivePolicy => "orgpolicy.getEffectivePolicy",
            Source::OrgPolicyCustomConstraintsList => "orgpolicy.customConstraints.list",
            Source::IamRolesGet => "iam.roles.get",
            Source::IamDenyPolicies => "iam.denypolicies",
            Source::PubsubSubscriptionsGet => "pubsub.subscriptions.get",
            Source::SchedulerJobsGet => "cloudscheduler.jobs.get",
            Source::TasksQueuesGet => "cloudtasks.queues.get",
            Source::TasksTasksGet => "cloudtasks.tasks.get",
            Source::EventarcTriggersGet => "eventarc.triggers.get",
            Source::WorkflowsGet => "workflows.workflows.get",
            Source::OAuth2TokenInfo => "oauth2.tokeninfo",
            Source::PolicyTroubleshooterIamTroubleshoot => "policytroubleshooter.iam.troubleshoot",
        }
    }

    /// The IAM permission the real API checks (named in the `ErrorInfo` of a 403).
    pub fn permission(self) -> &'static str {
        match self {
            Source::RunServicesGet => "run.services.get",
            Source::RunServicesList => "run.services.list",
            Source::RunServicesGetIamPolicy => "run.services.getIamPolicy",
            Source::ProjectsGet => "resourcemanager.projects.get",
            // getAncestry needs only read access to the project itself.
            Source::ProjectsGetAncestry => "resourcemanager.projects.get",
            Source::FoldersGet => "resourcemanager.folders.get",
            Source::OrganizationsGet => "resourcemanager.organizations.get",
            Source::ProjectsGetIamPolicy => "resourcemanager.projects.getIamPolicy",
            Source::FoldersGetIamPolicy => "resourcemanager.folders.getIamPolicy",
            Source::OrganizationsGetIamPolicy => "resourcemanager.organizations.getIamPolicy",
            Source::LoggingEntriesList => "logging.logEntries.list",
            Source::OrgPolicyGetEffectivePolicy => "orgpolicy.policy.get",
            Source::OrgPolicyCustomConstraintsList => "orgpolicy.customConstraints.list",
            Source::IamRolesGet => "iam.roles.get",
            Source::IamDenyPolicies => "iam.denypolicies.list",
            Source::PubsubSubscriptionsGet => "pubsub.subscriptions.get",
            Source::SchedulerJobsGet => "cloudscheduler.jobs.get",
            Source::TasksQueuesGet => "cloudtasks.queues.get",
            Source::TasksTasksGet => "cloudtasks.tasks.get",
            Source::EventarcTriggersGet => "eventarc.triggers.get",
            Source::WorkflowsGet => "workflows.workflows.get",
            // tokeninfo checks no IAM permission (an injected 401/403 answers `invalid_token`).
            Source::OAuth2TokenInfo => "",
            // The troubleshooter needs to read the policies it evaluates; the first is the
            // service's own (what `ipd-model` names for a refused `troubleshoot.json` too).
            Source::PolicyTroubleshooterIamTroubleshoot => "run.services.getIamPolicy",
        }
    }

    /// The API host the method belongs to.
    pub fn service(self) -> &'static str {
        match self {
            Source::RunServicesGet | Source::RunServicesList | Source::RunServicesGetIamPolicy => {
                "run.googleapis.com"
            }
            Source::ProjectsGet
            | Source::ProjectsGetAncestry
            | Source::FoldersGet
            | Source::OrganizationsGet
            | Source::ProjectsGetIamPolicy
            | Source::FoldersGetIamPolicy
            | Source::OrganizationsGetIamPolicy => "cloudresourcemanager.googleapis.com",
            Source::LoggingEntriesList => "logging.googleapis.com",
            Source::OrgPolicyGetEffectivePolicy | Source::OrgPolicyCustomConstraintsList => {
                "orgpolicy.googleapis.com"
            }
            Source::IamRolesGet | Source::IamDenyPolicies => "iam.googleapis.com",
            Source::PubsubSubscriptionsGet => "pubsub.googleapis.com",
            Source::SchedulerJobsGet => "cloudscheduler.googleapis.com",
            Source::TasksQueuesGet | Source::TasksTasksGet => "cloudtasks.googleapis.com",
            Source::EventarcTriggersGet => "eventarc.googleapis.com",
            Source::WorkflowsGet => "workflows.googleapis.com",
            Source::OAuth2TokenInfo => "www.googleapis.com",
            Source::PolicyTroubleshooterIamTroubleshoot => "policytroubleshooter.googleapis.com",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A source name that is not one of [`Source::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown source `{0}` (known: {known})", known = Source::ALL.iter().map(|s| s.name()).collect::<Vec<_>>().join(", "))]
pub struct UnknownSource(pub String);

impl FromStr for Source {
    type Err = UnknownSource;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Source::ALL
            .iter()
            .copied()
            .find(|x| x.name() == s.trim())
            .ok_or_else(|| UnknownSource(s.to_string()))
    }
}

/// A failure injected into one source: answer `status` (403 with the source's permission,
/// 429 `RESOURCE_EXHAUSTED`, 503 `UNAVAILABLE`, ...) to every call, or to the first `times`
/// calls and then answer normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub status: u16,
    /// `None`: fail every call. `Some(n)`: fail the first `n` calls, then succeed.
    pub times: Option<u32>,
}

/// HTTP statuses a fault may answer with.
pub const FAULT_STATUSES: &[u16] = &[400, 401, 403, 404, 429, 500, 503];

impl Fault {
    /// 403 `PERMISSION_DENIED` on every call, naming the source's permission.
    pub fn deny() -> Fault {
        Fault {
            status: 403,
            times: None,
        }
    }

    /// `status` on every call.
    pub fn always(status: u16) -> Fault {
        Fault {
            status,
            times: None,
        }
    }

    /// `status` on the first `n` calls, then normal answers (a transient failure).
    pub fn first(status: u16, n: u32) -> Fault {
        Fault {
            status,
            times: Some(n),
        }
    }
}

/// A `--fail` value that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid fault `{0}`: expected STATUS or STATUSxN with STATUS one of 400, 401, 403, 404, 429, 500, 503"
)]
pub struct InvalidFault(pub String);

impl FromStr for Fault {
    type Err = InvalidFault;
    /// `403`, `429x2`, `503x1`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidFault(s.to_string());
        let t = s.trim();
        let (code, times) = match t.split_once(['x', 'X']) {
            Some((c, n)) => (c, Some(n.parse::<u32>().map_err(|_| bad())?)),
            None => (t, None),
        };
        let status = code.parse::<u16>().map_err(|_| bad())?;
        if !FAULT_STATUSES.contains(&status) {
            return Err(bad());
        }
        Ok(Fault { status, times })
    }
}

/// Parses `SOURCE=FAULT` (the `--fail` syntax of the `fake-gcp` binary).
pub fn parse_fail_spec(spec: &str) -> Result<(Source, Fault), String> {
    let (src, fault) = spec
        .split_once('=')
        .ok_or_else(|| format!("invalid --fail `{spec}`: expected SOURCE=STATUS[xN]"))?;
    let src: Source = src.parse().map_err(|e: UnknownSource| e.to_string())?;
    let fault: Fault = fault.parse().map_err(|e: InvalidFault| e.to_string())?;
    Ok((src, fault))
}

/// Behaviour of a running fake. `Default` is: no auth, no latency, no faults.
#[derive(Clone, Default)]
pub struct FakeOptions {
    /// When set, every request must carry `Authorization: Bearer <token>`; otherwise 401
    /// (except OAuth2 `tokeninfo`, which takes the token as a parameter and answers
    /// `invalid_token` for any other).
    pub token: Option<String>,
    /// The email the accepted token belongs to, as OAuth2 `tokeninfo` tells it (a user's or a
    /// service account's). `None`: tokeninfo answers without `email`, as for a token without
    /// the `userinfo.email` scope.
    pub identity: Option<String>,
    /// Added to every call.
    pub latency: Duration,
    /// Added to calls of one source (on top of `latency`).
    pub source_latency: BTreeMap<Source, Duration>,
    /// Injected failures; they override the scenario's own [`crate::Scenario::faults`].
    pub faults: BTreeMap<Source, Fault>,
    /// `Retry-After` (seconds) sent with injected 429 and 503 answers.
    pub retry_after_secs: Option<u32>,
    /// Logging `entries:list` first answers this many pages with no entries and a
    /// `nextPageToken` (the real API does this when a search is slow), then the results.
    pub logging_empty_pages: u32,
    /// Sources whose answers are spoiled (cut short, a proxy's HTML page, the wrong shape).
    pub garble: BTreeMap<Source, crate::garble::Garble>,
}

impl fmt::Debug for FakeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeOptions")
            .field("token", &self.token.as_ref().map(|_| "(redacted)"))
            .field("identity", &self.identity)
            .field("latency", &self.latency)
            .field("source_latency", &self.source_latency)
            .field("faults", &self.faults)
            .field("retry_after_secs", &self.retry_after_secs)
            .field("logging_empty_pages", &self.logging_empty_pages)
            .field("garble", &self.garble)
            .finish()
    }
}

impl FakeOptions {
    pub fn new() -> FakeOptions {
        FakeOptions::default()
    }

    /// Require `Authorization: Bearer <token>` on every request.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Whose the accepted token is, for OAuth2 `tokeninfo`: an email, or a principal
    /// (`user:bob@example.com`, `serviceAccount:sa@p.iam.gserviceaccount.com`) whose email is
    /// taken.
    pub fn identity(mut self, who: impl Into<String>) -> Self {
        let who = who.into();
        let email = match who.split_once(':') {
            Some((_, e)) if e.contains('@') => e.to_string(),
            _ => who,
        };
        self.identity = Some(email.trim().to_string());
        self
    }

    /// Fixed latency added to every call.
    pub fn latency(mut self, d: Duration) -> Self {
        self.latency = d;
        self
    }

    /// Fixed latency added to calls of `source`.
    pub fn source_latency(mut self, source: Source, d: Duration) -> Self {
        self.source_latency.insert(source, d);
        self
    }

    /// Inject `fault` into `source`.
    pub fn fail(mut self, source: Source, fault: Fault) -> Self {
        self.faults.insert(source, fault);
        self
    }

    /// Send `Retry-After: secs` with injected 429/503 answers.
    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// Spoil every answer of `source` (see [`crate::Garble`]).
    pub fn garble(mut self, source: Source, g: crate::garble::Garble) -> Self {
        self.garble.insert(source, g);
        self
    }

    /// See [`FakeOptions::logging_empty_pages`].
    pub fn logging_empty_pages(mut self, n: u32) -> Self {
        self.logging_empty_pages = n;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Source::ALL {
            assert_eq!(s.name().parse::<Source>(), Ok(*s));
        }
        assert!("run.services.delete".parse::<Source>().is_err());
    }

    #[test]
    fn fault_syntax() {
        assert_eq!("403".parse::<Fault>(), Ok(Fault::deny()));
        assert_eq!("429x2".parse::<Fault>(), Ok(Fault::first(429, 2)));
        assert_eq!("503X1".parse::<Fault>(), Ok(Fault::first(503, 1)));
        assert!("418".parse::<Fault>().is_err());
        assert!("429x".parse::<Fault>().is_err());
        assert_eq!(
            parse_fail_spec("logging.entries.list=503x3"),
            Ok((Source::LoggingEntriesList, Fault::first(503, 3)))
        );
        assert!(parse_fail_spec("logging.entries.list").is_err());
    }

    #[test]
    fn identity_takes_the_email_of_a_principal() {
        let o = FakeOptions::new().identity("user:bob@shop.example.com");
        assert_eq!(o.identity.as_deref(), Some("bob@shop.example.com"));
        let o = FakeOptions::new().identity("sa@p.iam.gserviceaccount.com");
        assert_eq!(o.identity.as_deref(), Some("sa@p.iam.gserviceaccount.com"));
    }

    #[test]
    fn debug_redacts_the_token() {
        let o = FakeOptions::new().token("sekrit-token");
        assert!(!format!("{o:?}").contains("sekrit"));
    }
}
