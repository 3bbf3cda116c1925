//! IAM principal identifiers (allow-policy member syntax).

use std::fmt;

/// A member of an IAM allow-policy binding, or a caller.
///
/// Emails are compared case-insensitively (they are stored lowercased).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Principal {
    AllUsers,
    AllAuthenticatedUsers,
    User(String),
    ServiceAccount(String),
    Group(String),
    Domain(String),
    /// `deleted:user:x?uid=…`, `deleted:serviceAccount:x?uid=…`, `deleted:group:…`.
    Deleted {
        inner: Box<Principal>,
        uid: Option<String>,
    },
    /// `principal://…` or `principalSet://…` (federation, principal sets).
    Uri(String),
    /// Anything else, kept verbatim (`projectOwner:…`, unknown prefixes).
    Other(String),
}

impl Principal {
    /// Parses member syntax. Never fails: unknown forms become [`Principal::Other`].
    pub fn parse(s: &str) -> Principal {
        let s = s.trim();
        if s == "allUsers" {
            return Principal::AllUsers;
        }
        if s == "allAuthenticatedUsers" {
            return Principal::AllAuthenticatedUsers;
        }
        if let Some(rest) = s.strip_prefix("deleted:") {
            let (body, uid) = match rest.split_once("?uid=") {
                Some((b, u)) => (b, Some(u.to_string())),
                None => (rest, None),
            };
            return Principal::Deleted {
                inner: Box::new(Principal::parse(body)),
                uid,
            };
        }
        if s.starts_with("principal://") || s.starts_with("principalSet://") {
            return Principal::Uri(s.to_string());
        }
        match s.split_once(':') {
            Some(("user", e)) => Principal::User(e.to_lowercase()),
            Some(("serviceAccount", e)) => Principal::ServiceAccount(e.to_lowercase()),
            Some(("group", e)) => Principal::Group(e.to_lowercase()),
            Some(("domain", d)) => Principal::Domain(d.to_lowercase()),
            _ if s.contains('@') && !s.contains(':') => Principal::from_email(s),
            _ => Principal::Other(s.to_string()),
        }
    }

    /// A bare email: a service account when it is one of Google's SA domains, a user otherwise.
    pub fn from_email(email: &str) -> Principal {
        let e = email.trim().to_lowercase();
        if e.ends_with(".gserviceaccount.com") || e.ends_with("gserviceaccount.com") {
            Principal::ServiceAccount(e)
        } else {
            Principal::User(e)
        }
    }

    /// The email of a user, service account or group.
    pub fn email(&self) -> Option<&str> {
        match self {
            Principal::User(e) | Principal::ServiceAccount(e) | Principal::Group(e) => Some(e),
            _ => None,
        }
    }

    pub fn is_public(&self) -> bool {
        matches!(self, Principal::AllUsers)
    }

    /// Does this binding member grant to `caller`? `Maybe` where it depends on facts the
    /// evidence cannot show (group membership). Knows nothing of the resource hierarchy: see
    /// [`Principal::covers_in`].
    pub fn covers(&self, caller: &Principal) -> Coverage {
        self.covers_in(caller, &Hierarchy::default()).coverage
    }

    /// Does this binding member grant to `caller`, given what the evidence knows of the
    /// resource hierarchy (for `principalSet://cloudresourcemanager.googleapis.com/…/type/ServiceAccount`)?
    /// A `Maybe` says why and how to check.
    pub fn covers_in(&self, caller: &Principal, h: &Hierarchy) -> Match {
        use Principal::*;
        match (self, caller) {
            (AllUsers, _) => Match::yes(),
            // "Does not include identities that come from external identity providers (IdPs)
            // through identity federation" (IAM `Binding.members`).
            (AllAuthenticatedUsers, AllUsers) => Match::no(),
            (AllAuthenticatedUsers, User(_) | ServiceAccount(_)) => Match::yes(),
            (AllAuthenticatedUsers, Uri(u)) => match UriKind::of(u) {
                UriKind::Workforce { .. } | UriKind::Workload { .. } => Match::no(),
                _ => Match::maybe(format!(
                    "whether `allAuthenticatedUsers` includes `{u}` is not documented"
                )),
            },
            (User(a), User(b)) | (ServiceAccount(a), ServiceAccount(b)) => Match::when(a == b),
            (Domain(d), User(e)) => {
                Match::when(e.rsplit_once('@').is_some_and(|(_, dom)| dom == d))
            }
            (Group(_), User(_) | ServiceAccount(_) | Group(_)) => Match::maybe(format!(
                "the caller may be a member of `{self}`; group membership is not in the evidence"
            )),
            (Uri(m), ServiceAccount(e)) => match UriKind::of(m) {
                UriKind::ServiceAccountsIn { parent, id } => sa_in(m, e, parent, &id, h),
                UriKind::Public => Match::yes(),
                UriKind::Unknown if m.starts_with("principalSet://") => {
                    Match::maybe(format!("`{m}` is a principal set the tool cannot expand"))
                }
                // Federated identities and agent identities are not service accounts.
                _ => Match::no(),
            },
            (Uri(m), User(_)) => match UriKind::of(m) {
                UriKind::Public => Match::yes(),
                UriKind::Unknown if m.starts_with("principalSet://") => {
                    Match::maybe(format!("`{m}` is a principal set the tool cannot expand"))
                }
                _ => Match::no(),
            },
            (Uri(m), Uri(c)) => uri_covers(m, c),
            _ => Match::no(),
        }
    }

    /// The email Policy Troubleshooter can be asked about: a user's or a service account's
    /// (its `accessTuple.principal` "must be a Google Account or a service account"). Groups,
    /// domains, `allUsers`, deleted, federated and agent principals cannot be asked.
    pub fn troubleshooter_email(&self) -> Option<&str> {
        match self {
            Principal::User(e) | Principal::ServiceAccount(e) => Some(e),
            _ => None,
        }
    }

    /// What kind of `principal://` / `principalSet://` identifier this is, if it is one.
    pub fn uri_kind(&self) -> Option<UriKind> {
        match self {
            Principal::Uri(u) => Some(UriKind::of(u)),
            _ => None,
        }
    }
}

/// What the evidence knows of the service's project and its ancestry, for matching
/// principal sets of "every service account under a resource".
#[derive(Debug, Clone, Default)]
pub struct Hierarchy {
    /// The service's project ID.
    pub project_id: Option<String>,
    /// The service's project number.
    pub project_number: Option<String>,
    /// Folder IDs above the project, nearest first.
    pub folders: Vec<String>,
    /// The organization ID above the project.
    pub organization: Option<String>,
}

/// A coverage answer with, for `Maybe`, why it cannot be decided and how to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub coverage: Coverage,
    pub why: Option<String>,
}

impl Match {
    fn yes() -> Match {
        Match {
            coverage: Coverage::Yes,
            why: None,
        }
    }
    fn no() -> Match {
        Match {
            coverage: Coverage::No,
            why: None,
        }
    }
    fn when(b: bool) -> Match {
        if b { Match::yes() } else { Match::no() }
    }
    fn maybe(why: String) -> Match {
        Match {
            coverage: Coverage::Maybe,
            why: Some(why),
        }
    }
}

/// The resource a `…/type/ServiceAccount` principal set is under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    Project,
    Folder,
    Organization,
}

impl Parent {
    fn plural(self) -> &'static str {
        match self {
            Parent::Project => "projects",
            Parent::Folder => "folders",
            Parent::Organization => "organizations",
        }
    }
}

/// The `principal://` and `principalSet://` forms (IAM principal identifiers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UriKind {
    /// `principalSet://cloudresourcemanager.googleapis.com/{projects,folders,organizations}/N/type/ServiceAccount`.
    ServiceAccountsIn {
        parent: Parent,
        id: String,
    },
    /// `principal://iam.googleapis.com/locations/global/workforcePools/POOL/subject/S` (one
    /// identity) or a `principalSet://` of that pool (`group/…`, `attribute.NAME/VALUE`, `*`).
    Workforce {
        pool: String,
        set: Option<String>,
    },
    /// `principal://iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/POOL/subject/S`
    /// or a `principalSet://` of that pool.
    Workload {
        pool: String,
        set: Option<String>,
    },
    /// A Cloud Run agent identity:
    /// `principal://agents.global.org-ORG.system.id.goog/resources/run/projects/N/locations/R/services/NAME`.
    Agent {
        org: String,
    },
    /// `principalSet://goog/public:all` (the managed-constraint / deny-policy form of anyone).
    Public,
    Unknown,
}

impl UriKind {
    pub fn of(u: &str) -> UriKind {
        let (set, rest) = if let Some(r) = u.strip_prefix("principalSet://") {
            (true, r)
        } else if let Some(r) = u.strip_prefix("principal://") {
            (false, r)
        } else {
            return UriKind::Unknown;
        };
        if set && rest == "goog/public:all" {
            return UriKind::Public;
        }
        if let Some(r) = rest.strip_prefix("cloudresourcemanager.googleapis.com/")
            && set
        {
            let segs: Vec<&str> = r.split('/').collect();
            if let [kind, id, "type", "ServiceAccount"] = segs.as_slice() {
                let parent = match *kind {
                    "projects" => Parent::Project,
                    "folders" => Parent::Folder,
                    "organizations" => Parent::Organization,
                    _ => return UriKind::Unknown,
                };
                return UriKind::ServiceAccountsIn {
                    parent,
                    id: id.to_string(),
                };
            }
            return UriKind::Unknown;
        }
        if let Some(r) = rest.strip_prefix("iam.googleapis.com/") {
            let segs: Vec<&str> = r.split('/').collect();
            // The pool is named by everything up to its ID; the rest is the member inside.
            let split = |marker: &str| {
                segs.iter().position(|s| *s == marker).and_then(|i| {
                    (i + 1 < segs.len())
                        .then(|| (segs[..=i + 1].join("/"), segs[i + 2..].join("/")))
                })
            };
            let member = |inner: String| -> Option<String> {
                if set {
                    Some(inner)
                } else if inner.starts_with("subject/") {
                    None
                } else {
                    Some(inner)
                }
            };
            if let Some((pool, inner)) = split("workforcePools") {
                return UriKind::Workforce {
                    pool,
                    set: member(inner),
                };
            }
            if let Some((pool, inner)) = split("workloadIdentityPools") {
                return UriKind::Workload {
                    pool,
                    set: member(inner),
                };
            }
            return UriKind::Unknown;
        }
        if let Some(host) = rest.split('/').next()
            && let Some(org) = host
                .strip_prefix("agents.global.org-")
                .and_then(|h| h.strip_suffix(".system.id.goog"))
        {
            return UriKind::Agent {
                org: org.to_string(),
            };
        }
        UriKind::Unknown
    }

    /// A short name of the kind, for messages.
    pub fn describe(&self) -> &'static str {
        match self {
            UriKind::ServiceAccountsIn { .. } => "every service account under a resource",
            UriKind::Workforce { set: None, .. } => "a workforce identity federation principal",
            UriKind::Workforce { .. } => "a workforce identity federation principal set",
            UriKind::Workload { set: None, .. } => "a workload identity federation principal",
            UriKind::Workload { .. } => "a workload identity federation principal set",
            UriKind::Agent { .. } => "a Cloud Run agent identity",
            UriKind::Public => "anyone (`principalSet://goog/public:all`)",
            UriKind::Unknown => "a principal identifier",
        }
    }
}

/// The project a service account's email names, by ID or (default compute SA) number:
/// `(project_id, project_number)`. Google-managed service agents (`service-N@gcp-sa-…`) live in
/// Google's projects, so neither is returned for them.
pub fn sa_project(email: &str) -> (Option<String>, Option<String>) {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return (None, None);
    };
    if let Some(p) = domain.strip_suffix(".iam.gserviceaccount.com") {
        if p.starts_with("gcp-sa-") || p == "cloudservices" {
            return (None, None);
        }
        return (Some(p.to_string()), None);
    }
    if domain == "developer.gserviceaccount.com"
        && let Some(n) = local.strip_suffix("-compute")
        && n.chars().all(|c| c.is_ascii_digit())
    {
        return (None, Some(n.to_string()));
    }
    if let Some(p) = domain.strip_suffix(".appspot.gserviceaccount.com") {
        return (Some(p.to_string()), None);
    }
    if domain == "appspot.gserviceaccount.com" {
        return (Some(local.to_string()), None);
    }
    (None, None)
}

/// `principalSet://cloudresourcemanager.googleapis.com/PARENT/ID/type/ServiceAccount` against a
/// service-account caller.
fn sa_in(member: &str, email: &str, parent: Parent, id: &str, h: &Hierarchy) -> Match {
    let (sa_id, sa_number) = sa_project(email);
    if sa_id.is_none() && sa_number.is_none() {
        return Match::maybe(format!(
            "`{email}` names no project the tool can place; whether it is under {}/{id} is not in the evidence (check with `gcloud iam service-accounts describe {email}` and `gcloud projects get-ancestors`)",
            parent.plural()
        ));
    }
    // Is the caller's project the service's project (whose number and ancestry the evidence has)?
    let same_project = match (&sa_id, &sa_number) {
        (Some(i), _) => h.project_id.as_deref() == Some(i.as_str()),
        (_, Some(n)) => h.project_number.as_deref() == Some(n.as_str()),
        _ => false,
    };
    let sa_proj = sa_id.clone().or(sa_number.clone()).unwrap_or_default();
    let check = format!(
        "check with `gcloud projects describe {sa_proj} --format='value(projectNumber)'` and `gcloud projects get-ancestors {sa_proj}`"
    );
    match parent {
        Parent::Project => {
            if let Some(n) = &sa_number {
                return Match::when(n == id);
            }
            if same_project && let Some(n) = &h.project_number {
                return Match::when(n == id);
            }
            Match::maybe(format!(
                "`{member}` covers the service accounts of project number {id}; the number of `{email}`'s project `{sa_proj}` is not in the evidence ({check})"
            ))
        }
        Parent::Folder | Parent::Organization => {
            if same_project {
                let listed = match parent {
                    Parent::Folder => h.folders.iter().any(|f| f == id),
                    _ => h.organization.as_deref() == Some(id),
                };
                if listed {
                    return Match::yes();
                }
                if h.organization.is_some() {
                    // The evidence reaches the organization: the ancestry is complete.
                    return Match::no();
                }
            }
            Match::maybe(format!(
                "`{member}` covers the service accounts under {} {id}; the ancestry of `{email}`'s project `{sa_proj}` is not in the evidence ({check})",
                &parent.plural()[..parent.plural().len() - 1]
            ))
        }
    }
}

/// The gcloud command that lists a federation pool's providers (and their attribute mappings).
fn providers_command(k: &UriKind) -> String {
    let seg = |pool: &str, key: &str| {
        let v: Vec<&str> = pool.split('/').collect();
        v.iter()
            .position(|s| *s == key)
            .and_then(|i| v.get(i + 1))
            .map(|s| s.to_string())
            .unwrap_or_default()
    };
    match k {
        UriKind::Workforce { pool, .. } => format!(
            "gcloud iam workforce-pools providers list --workforce-pool={} --location=global",
            seg(pool, "workforcePools")
        ),
        UriKind::Workload { pool, .. } => format!(
            "gcloud iam workload-identity-pools providers list --workload-identity-pool={} --location=global --project={}",
            seg(pool, "workloadIdentityPools"),
            seg(pool, "projects")
        ),
        _ => String::new(),
    }
}

/// A `principal://` / `principalSet://` member against a caller named the same way.
fn uri_covers(member: &str, caller: &str) -> Match {
    if member == caller {
        return Match::yes();
    }
    let (m, c) = (UriKind::of(member), UriKind::of(caller));
    match (&m, &c) {
        (UriKind::Public, _) => Match::yes(),
        (
            UriKind::Workforce {
                pool: mp,
                set: Some(s),
            },
            UriKind::Workforce {
                pool: cp,
                set: None,
            },
        )
        | (
            UriKind::Workload {
                pool: mp,
                set: Some(s),
            },
            UriKind::Workload {
                pool: cp,
                set: None,
            },
        ) => {
            if mp != cp {
                Match::no()
            } else if s == "*" {
                // Every identity in the pool.
                Match::yes()
            } else {
                Match::maybe(format!(
                    "`{caller}` is in the pool of `{member}`, but whether it matches `{s}` is decided by the identity provider's attributes at sign-in, which the evidence does not hold (check the providers' attribute mapping with `{}` against the identity's claims)",
                    providers_command(&m)
                ))
            }
        }
        (UriKind::Unknown, _) if member.starts_with("principalSet://") => Match::maybe(format!(
            "`{member}` is a principal set the tool cannot expand"
        )),
        _ => Match::no(),
    }
}

/// Whether a member covers a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    Yes,
    Maybe,
    No,
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::AllUsers => f.write_str("allUsers"),
            Principal::AllAuthenticatedUsers => f.write_str("allAuthenticatedUsers"),
            Principal::User(e) => write!(f, "user:{e}"),
            Principal::ServiceAccount(e) => write!(f, "serviceAccount:{e}"),
            Principal::Group(e) => write!(f, "group:{e}"),
            Principal::Domain(d) => write!(f, "domain:{d}"),
            Principal::Deleted {
                inner,
                uid: Some(u),
            } => write!(f, "deleted:{inner}?uid={u}"),
            Principal::Deleted { inner, uid: None } => write!(f, "deleted:{inner}"),
            Principal::Uri(s) | Principal::Other(s) => f.write_str(s),
        }
    }
}

impl serde::Serialize for Principal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_member_syntax() {
        assert_eq!(Principal::parse("allUsers"), Principal::AllUsers);
        assert_eq!(
            Principal::parse("user:Alice@Example.com"),
            Principal::User("alice@example.com".into())
        );
        let d = Principal::parse("deleted:serviceAccount:a@p.iam.gserviceaccount.com?uid=123");
        assert_eq!(
            d,
            Principal::Deleted {
                inner: Box::new(Principal::ServiceAccount(
                    "a@p.iam.gserviceaccount.com".into()
                )),
                uid: Some("123".into())
            }
        );
        assert_eq!(
            d.to_string(),
            "deleted:serviceAccount:a@p.iam.gserviceaccount.com?uid=123"
        );
        assert_eq!(
            Principal::parse("a@p.iam.gserviceaccount.com"),
            Principal::ServiceAccount("a@p.iam.gserviceaccount.com".into())
        );
        assert!(matches!(
            Principal::parse("principalSet://goog/public:all"),
            Principal::Uri(_)
        ));
        assert!(matches!(
            Principal::parse("projectOwner:p"),
            Principal::Other(_)
        ));
    }

    #[test]
    fn coverage() {
        let alice = Principal::parse("user:alice@example.com");
        assert_eq!(
            Principal::parse("domain:example.com").covers(&alice),
            Coverage::Yes
        );
        assert_eq!(
            Principal::parse("domain:other.com").covers(&alice),
            Coverage::No
        );
        assert_eq!(
            Principal::parse("group:eng@example.com").covers(&alice),
            Coverage::Maybe
        );
        assert_eq!(
            Principal::AllAuthenticatedUsers.covers(&Principal::AllUsers),
            Coverage::No
        );
        assert_eq!(Principal::AllUsers.covers(&alice), Coverage::Yes);
        // A deleted member never covers a live caller.
        assert_eq!(
            Principal::parse("deleted:user:alice@example.com?uid=1").covers(&alice),
            Coverage::No
        );
    }

    const NUM: &str = "123456789012";

    fn hier() -> Hierarchy {
        Hierarchy {
            project_id: Some("shop-prod".into()),
            project_number: Some(NUM.into()),
            folders: vec!["445566778899".into()],
            organization: None,
        }
    }

    fn sa(e: &str) -> Principal {
        Principal::ServiceAccount(e.into())
    }

    #[test]
    fn service_accounts_of_a_project() {
        let set = Principal::parse(&format!(
            "principalSet://cloudresourcemanager.googleapis.com/projects/{NUM}/type/ServiceAccount"
        ));
        let h = hier();
        // The service's own project, whose number the evidence holds.
        assert_eq!(
            set.covers_in(&sa("checkout@shop-prod.iam.gserviceaccount.com"), &h)
                .coverage,
            Coverage::Yes
        );
        // The default compute SA names its project number.
        assert_eq!(
            set.covers_in(
                &sa(&format!("{NUM}-compute@developer.gserviceaccount.com")),
                &h
            )
            .coverage,
            Coverage::Yes
        );
        assert_eq!(
            set.covers_in(&sa("999-compute@developer.gserviceaccount.com"), &h)
                .coverage,
            Coverage::No
        );
        // Another project: its number is not in the evidence.
        let m = set.covers_in(&sa("batch@shop-data.iam.gserviceaccount.com"), &h);
        assert_eq!(m.coverage, Coverage::Maybe);
        assert!(
            m.why
                .as_deref()
                .unwrap()
                .contains("gcloud projects describe shop-data"),
            "{m:?}"
        );
        // Without the number, even the same project is undecided.
        let m = set.covers_in(
            &sa("checkout@shop-prod.iam.gserviceaccount.com"),
            &Hierarchy::default(),
        );
        assert_eq!(m.coverage, Coverage::Maybe);
        // A user is not a service account.
        assert_eq!(
            set.covers_in(&Principal::User("a@example.com".into()), &h)
                .coverage,
            Coverage::No
        );
        // A service agent lives in a Google-managed project.
        assert_eq!(
            set.covers_in(
                &sa(&format!(
                    "service-{NUM}@gcp-sa-pubsub.iam.gserviceaccount.com"
                )),
                &h
            )
            .coverage,
            Coverage::Maybe
        );
    }

    #[test]
    fn service_accounts_under_a_folder_or_organization() {
        let caller = sa("checkout@shop-prod.iam.gserviceaccount.com");
        let folder = Principal::parse(
            "principalSet://cloudresourcemanager.googleapis.com/folders/445566778899/type/ServiceAccount",
        );
        let other_folder = Principal::parse(
            "principalSet://cloudresourcemanager.googleapis.com/folders/1/type/ServiceAccount",
        );
        let org = Principal::parse(
            "principalSet://cloudresourcemanager.googleapis.com/organizations/778899001122/type/ServiceAccount",
        );
        let mut h = hier();
        assert_eq!(folder.covers_in(&caller, &h).coverage, Coverage::Yes);
        // The organization is not in the evidence: the ancestry may go on.
        assert_eq!(
            other_folder.covers_in(&caller, &h).coverage,
            Coverage::Maybe
        );
        assert_eq!(org.covers_in(&caller, &h).coverage, Coverage::Maybe);
        h.organization = Some("778899001122".into());
        assert_eq!(org.covers_in(&caller, &h).coverage, Coverage::Yes);
        assert_eq!(other_folder.covers_in(&caller, &h).coverage, Coverage::No);
        // Another project's SA: its ancestry is unknown.
        let m = folder.covers_in(&sa("x@elsewhere.iam.gserviceaccount.com"), &h);
        assert_eq!(m.coverage, Coverage::Maybe);
        assert!(m.why.unwrap().contains("get-ancestors elsewhere"));
    }

    #[test]
    fn federated_principals_and_sets() {
        let pool = "principalSet://iam.googleapis.com/locations/global/workforcePools/partners";
        let subject = Principal::parse(
            "principal://iam.googleapis.com/locations/global/workforcePools/partners/subject/bob@partner.example",
        );
        assert_eq!(
            subject.uri_kind(),
            Some(UriKind::Workforce {
                pool: "locations/global/workforcePools/partners".into(),
                set: None
            })
        );
        let h = Hierarchy::default();
        assert_eq!(subject.covers_in(&subject, &h).coverage, Coverage::Yes);
        let group = Principal::parse(&format!("{pool}/group/contractors"));
        let m = group.covers_in(&subject, &h);
        assert_eq!(m.coverage, Coverage::Maybe);
        assert!(
            m.why.as_deref().unwrap().contains(
                "gcloud iam workforce-pools providers list --workforce-pool=partners --location=global"
            ),
            "{m:?}"
        );
        let attr = Principal::parse(&format!("{pool}/attribute.department/sales"));
        assert_eq!(attr.covers_in(&subject, &h).coverage, Coverage::Maybe);
        let all = Principal::parse(&format!("{pool}/*"));
        assert_eq!(all.covers_in(&subject, &h).coverage, Coverage::Yes);
        let other_pool = Principal::parse(
            "principalSet://iam.googleapis.com/locations/global/workforcePools/staff/*",
        );
        assert_eq!(other_pool.covers_in(&subject, &h).coverage, Coverage::No);
        // A Google account or service account is never a federated identity.
        assert_eq!(
            group
                .covers_in(&Principal::User("a@example.com".into()), &h)
                .coverage,
            Coverage::No
        );
        assert_eq!(
            all.covers_in(&sa("a@p.iam.gserviceaccount.com"), &h)
                .coverage,
            Coverage::No
        );
        // allAuthenticatedUsers leaves federated identities out.
        assert_eq!(
            Principal::AllAuthenticatedUsers
                .covers_in(&subject, &h)
                .coverage,
            Coverage::No
        );
        let wl = Principal::parse(
            "principal://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/github/subject/repo:shop/api:ref:refs/heads/main",
        );
        assert!(matches!(
            wl.uri_kind(),
            Some(UriKind::Workload { set: None, .. })
        ));
        let wl_set = Principal::parse(
            "principalSet://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/github/attribute.repository/shop/api",
        );
        let m = wl_set.covers_in(&wl, &h);
        assert_eq!(m.coverage, Coverage::Maybe);
        assert!(
            m.why.unwrap().contains(
                "--workload-identity-pool=github --location=global --project=123456789012"
            )
        );
    }

    #[test]
    fn agent_identities() {
        let agent = Principal::parse(
            "principal://agents.global.org-778899001122.system.id.goog/resources/run/projects/123456789012/locations/europe-west1/services/support-agent",
        );
        assert_eq!(
            agent.uri_kind(),
            Some(UriKind::Agent {
                org: "778899001122".into()
            })
        );
        let h = Hierarchy::default();
        assert_eq!(agent.covers_in(&agent, &h).coverage, Coverage::Yes);
        let other = Principal::parse(
            "principal://agents.global.org-778899001122.system.id.goog/resources/run/projects/123456789012/locations/europe-west1/services/billing-agent",
        );
        assert_eq!(other.covers_in(&agent, &h).coverage, Coverage::No);
        // The agent's identity is not its service's runtime service account.
        assert_eq!(
            agent
                .covers_in(
                    &sa("123456789012-compute@developer.gserviceaccount.com"),
                    &h
                )
                .coverage,
            Coverage::No
        );
    }
}
