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
    /// evidence cannot show (group membership).
    pub fn covers(&self, caller: &Principal) -> Coverage {
        use Principal::*;
        match (self, caller) {
            (AllUsers, _) => Coverage::Yes,
            (AllAuthenticatedUsers, AllUsers) => Coverage::No,
            (AllAuthenticatedUsers, User(_) | ServiceAccount(_)) => Coverage::Yes,
            (User(a), User(b)) | (ServiceAccount(a), ServiceAccount(b)) => {
                if a == b {
                    Coverage::Yes
                } else {
                    Coverage::No
                }
            }
            (Domain(d), User(e)) => {
                if e.rsplit_once('@').is_some_and(|(_, dom)| dom == d) {
                    Coverage::Yes
                } else {
                    Coverage::No
                }
            }
            (Group(_), User(_) | ServiceAccount(_) | Group(_)) => Coverage::Maybe,
            (Uri(u), User(_) | ServiceAccount(_)) if u.starts_with("principalSet://") => {
                Coverage::Maybe
            }
            _ => Coverage::No,
        }
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
}
