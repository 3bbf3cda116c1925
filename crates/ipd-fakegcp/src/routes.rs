//! Which method a request is, decided on the raw (undecoded) path.

use crate::convert::percent_decode;
use crate::options::Source;

/// The collection of a Google-managed caller's configuration, as its API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CallerCollection {
    /// Pub/Sub v1 `projects/P/subscriptions/S`.
    Subscription,
    /// Cloud Scheduler v1 `projects/P/locations/L/jobs/J`.
    Job,
    /// Cloud Tasks v2 `projects/P/locations/L/queues/Q`.
    Queue,
    /// Cloud Tasks v2 `projects/P/locations/L/queues/Q/tasks/T`.
    Task,
    /// Eventarc v1 `projects/P/locations/L/triggers/T`.
    Trigger,
    /// Workflows v1 `projects/P/locations/L/workflows/W`.
    Workflow,
}

impl CallerCollection {
    pub const ALL: &'static [CallerCollection] = &[
        CallerCollection::Subscription,
        CallerCollection::Job,
        CallerCollection::Queue,
        CallerCollection::Task,
        CallerCollection::Trigger,
        CallerCollection::Workflow,
    ];

    pub fn source(self) -> Source {
        match self {
            CallerCollection::Subscription => Source::PubsubSubscriptionsGet,
            CallerCollection::Job => Source::SchedulerJobsGet,
            CallerCollection::Queue => Source::TasksQueuesGet,
            CallerCollection::Task => Source::TasksTasksGet,
            CallerCollection::Trigger => Source::EventarcTriggersGet,
            CallerCollection::Workflow => Source::WorkflowsGet,
        }
    }

    /// The collection a resource name belongs to (`projects/P/subscriptions/S`, ...).
    pub fn of_name(name: &str) -> Option<CallerCollection> {
        let segs: Vec<&str> = name.split('/').collect();
        if !segs.iter().all(|s| !s.is_empty()) {
            return None;
        }
        match segs.as_slice() {
            ["projects", _, "subscriptions", _] => Some(CallerCollection::Subscription),
            ["projects", _, "locations", _, "jobs", _] => Some(CallerCollection::Job),
            ["projects", _, "locations", _, "queues", _] => Some(CallerCollection::Queue),
            ["projects", _, "locations", _, "queues", _, "tasks", _] => {
                Some(CallerCollection::Task)
            }
            ["projects", _, "locations", _, "triggers", _] => Some(CallerCollection::Trigger),
            ["projects", _, "locations", _, "workflows", _] => Some(CallerCollection::Workflow),
            _ => None,
        }
    }
}

/// A served read method and its path parameters (percent-decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Service {
        project: String,
        location: String,
        service: String,
    },
    ServiceList {
        project: String,
        location: String,
    },
    ServicePolicy {
        project: String,
        location: String,
        service: String,
    },
    Project(String),
    /// Resource Manager v1 `projects.getAncestry` (the path's `projectId`).
    ProjectAncestry(String),
    Folder(String),
    Organization(String),
    ProjectPolicy(String),
    FolderPolicy(String),
    OrganizationPolicy(String),
    Entries,
    EffectivePolicy {
        kind: &'static str,
        id: String,
        constraint: String,
    },
    Role(String),
    /// The custom constraints of organization `id`.
    CustomConstraints(String),
    /// One custom constraint (`organizations/O/customConstraints/custom.X`).
    CustomConstraint(String),
    /// `attachment` is decoded (`cloudresourcemanager.googleapis.com/projects/p`).
    DenyList {
        attachment: String,
        kind: String,
    },
    DenyGet {
        attachment: String,
        kind: String,
        id: String,
    },
    /// A caller's configuration; `name` is its full resource name (`projects/P/...`).
    Caller {
        collection: CallerCollection,
        name: String,
    },
    /// OAuth2 v2 `tokeninfo`.
    TokenInfo,
    /// Policy Troubleshooter v3 `iam.troubleshoot` (`POST v3/iam:troubleshoot`).
    Troubleshoot,
    /// Cloud Run v1 (Knative) `GET apis/serving.knative.dev/v1/namespaces/NS/services/S`
    /// (what `gcloud run services describe` reads).
    KnativeService {
        namespace: String,
        service: String,
    },
    /// Cloud Run v1 (Knative) `GET apis/serving.knative.dev/v1/namespaces/NS/services`.
    KnativeList {
        namespace: String,
    },
}

impl Target {
    pub fn source(&self) -> Source {
        match self {
            Target::Service { .. } => Source::RunServicesGet,
            Target::ServiceList { .. } => Source::RunServicesList,
            Target::ServicePolicy { .. } => Source::RunServicesGetIamPolicy,
            Target::Project(_) => Source::ProjectsGet,
            Target::ProjectAncestry(_) => Source::ProjectsGetAncestry,
            Target::Folder(_) => Source::FoldersGet,
            Target::Organization(_) => Source::OrganizationsGet,
            Target::ProjectPolicy(_) => Source::ProjectsGetIamPolicy,
            Target::FolderPolicy(_) => Source::FoldersGetIamPolicy,
            Target::OrganizationPolicy(_) => Source::OrganizationsGetIamPolicy,
            Target::Entries => Source::LoggingEntriesList,
            Target::EffectivePolicy { .. } => Source::OrgPolicyGetEffectivePolicy,
            Target::Role(_) => Source::IamRolesGet,
            Target::CustomConstraints(_) | Target::CustomConstraint(_) => {
                Source::OrgPolicyCustomConstraintsList
            }
            Target::DenyList { .. } | Target::DenyGet { .. } => Source::IamDenyPolicies,
            Target::Caller { collection, .. } => collection.source(),
            Target::TokenInfo => Source::OAuth2TokenInfo,
            Target::Troubleshoot => Source::PolicyTroubleshooterIamTroubleshoot,
            Target::KnativeService { .. } => Source::RunServicesGet,
            Target::KnativeList { .. } => Source::RunServicesList,
        }
    }

    /// The permission the real API checks for this call.
    pub fn permission(&self) -> &'static str {
        match self {
            Target::DenyGet { .. } => "iam.denypolicies.get",
            other => other.source().permission(),
        }
    }

    /// The resource a permission error names.
    pub fn resource(&self, project_id: &str) -> String {
        match self {
            Target::Service {
                project,
                location,
                service,
            }
            | Target::ServicePolicy {
                project,
                location,
                service,
            } => {
                format!("projects/{project}/locations/{location}/services/{service}")
            }
            Target::ServiceList { project, location } => {
                format!("projects/{project}/locations/{location}")
            }
            Target::Project(p) | Target::ProjectPolicy(p) | Target::ProjectAncestry(p) => {
                format!("projects/{p}")
            }
            Target::Folder(f) | Target::FolderPolicy(f) => format!("folders/{f}"),
            Target::Organization(o) | Target::OrganizationPolicy(o) => format!("organizations/{o}"),
            Target::Entries => format!("projects/{project_id}"),
            Target::EffectivePolicy {
                kind,
                id,
                constraint,
            } => format!("{kind}/{id}/policies/{constraint}"),
            Target::Role(r) => r.clone(),
            Target::CustomConstraints(id) => format!("organizations/{id}"),
            Target::CustomConstraint(name) => name.clone(),
            Target::Caller { name, .. } => name.clone(),
            Target::TokenInfo => String::new(),
            Target::Troubleshoot => format!("projects/{project_id}"),
            Target::KnativeService { namespace, service } => {
                format!("namespaces/{namespace}/services/{service}")
            }
            Target::KnativeList { namespace } => format!("namespaces/{namespace}"),
            Target::DenyList { attachment, kind } => {
                format!(
                    "policies/{}/{kind}",
                    crate::convert::encode_attachment(attachment)
                )
            }
            Target::DenyGet {
                attachment,
                kind,
                id,
            } => {
                format!(
                    "policies/{}/{kind}/{id}",
                    crate::convert::encode_attachment(attachment)
                )
            }
        }
    }
}

/// What a request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Read(Target),
    /// A read-only method of these APIs that the fake does not implement (404, not mutating).
    Unserved,
    /// Anything that could change state: refused and flagged.
    Mutating,
    /// An unknown path read with GET/HEAD/OPTIONS (404).
    Unknown,
}

/// POST custom methods that only read (`:testIamPermissions`, `:getAncestry`, ...).
const READ_ONLY_POST_VERBS: &[&str] = &[
    "getIamPolicy",
    "testIamPermissions",
    "getAncestry",
    "getEffectiveOrgPolicy",
    "listOrgPolicies",
    "listAvailableOrgPolicyConstraints",
    "troubleshoot",
    "queryGrantableRoles",
    "queryTestablePermissions",
    "queryAuditableServices",
    "generateIdToken",
    "generateAccessToken",
    "signJwt",
    "signBlob",
    "search",
];

fn split_verb(seg: &str) -> (&str, Option<&str>) {
    match seg.split_once(':') {
        Some((n, v)) => (n, Some(v)),
        None => (seg, None),
    }
}

fn nonempty(parts: &[&str]) -> bool {
    parts.iter().all(|p| !p.is_empty())
}

/// Classifies `method raw_path`. `/` encoded as `%2F` stays inside its segment.
pub fn classify(method: &str, raw_path: &str) -> Route {
    let trimmed = raw_path.strip_prefix('/').unwrap_or(raw_path);
    let mut segs: Vec<String> = trimmed.split('/').map(percent_decode).collect();
    // gcloud encodes the IAM v2 attachment point twice (`%252F`): decode it once more.
    if segs.len() >= 4 && segs[0] == "v2" && segs[1] == "policies" && segs[2].contains('%') {
        segs[2] = percent_decode(&segs[2]);
    }
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let get = method == "GET";
    let post = method == "POST";
    let target = match s.as_slice() {
        ["v2", "projects", p, "locations", l, "services"] if get && nonempty(&[p, l]) => {
            Some(Target::ServiceList {
                project: p.to_string(),
                location: l.to_string(),
            })
        }
        ["v2", "projects", p, "locations", l, "services", last] if get => match split_verb(last) {
            (svc, None) if nonempty(&[p, l, svc]) => Some(Target::Service {
                project: p.to_string(),
                location: l.to_string(),
                service: svc.to_string(),
            }),
            (svc, Some("getIamPolicy")) if nonempty(&[p, l, svc]) => Some(Target::ServicePolicy {
                project: p.to_string(),
                location: l.to_string(),
                service: svc.to_string(),
            }),
            _ => None,
        },
        [
            "v2",
            kind @ ("projects" | "folders" | "organizations"),
            id,
            "policies",
            last,
        ] if get => match split_verb(last) {
            (c, Some("getEffectivePolicy")) if nonempty(&[id, c]) => {
                let kind = match *kind {
                    "projects" => "projects",
                    "folders" => "folders",
                    _ => "organizations",
                };
                Some(Target::EffectivePolicy {
                    kind,
                    id: id.to_string(),
                    constraint: c.to_string(),
                })
            }
            _ => None,
        },
        ["v2", "organizations", id, "customConstraints"] if get && nonempty(&[id]) => {
            Some(Target::CustomConstraints(id.to_string()))
        }
        ["v2", "organizations", id, "customConstraints", c] if get && nonempty(&[id, c]) => Some(
            Target::CustomConstraint(format!("organizations/{id}/customConstraints/{c}")),
        ),
        ["v2", "entries:list"] if post => Some(Target::Entries),
        ["v2", "policies", att, kind] if get && nonempty(&[att, kind]) => Some(Target::DenyList {
            attachment: att.to_string(),
            kind: kind.to_string(),
        }),
        ["v2", "policies", att, kind, id] if get && nonempty(&[att, kind, id]) => {
            Some(Target::DenyGet {
                attachment: att.to_string(),
                kind: kind.to_string(),
                id: id.to_string(),
            })
        }
        [
            "v3",
            kind @ ("projects" | "folders" | "organizations"),
            last,
        ] => {
            let (id, verb) = split_verb(last);
            match (verb, *kind) {
                _ if id.is_empty() => None,
                (None, "projects") if get => Some(Target::Project(id.to_string())),
                (None, "folders") if get => Some(Target::Folder(id.to_string())),
                (None, "organizations") if get => Some(Target::Organization(id.to_string())),
                (Some("getIamPolicy"), "projects") if post => {
                    Some(Target::ProjectPolicy(id.to_string()))
                }
                (Some("getIamPolicy"), "folders") if post => {
                    Some(Target::FolderPolicy(id.to_string()))
                }
                (Some("getIamPolicy"), "organizations") if post => {
                    Some(Target::OrganizationPolicy(id.to_string()))
                }
                _ => None,
            }
        }
        ["v1", "projects", last] if post => match split_verb(last) {
            (p, Some("getAncestry")) if nonempty(&[p]) => {
                Some(Target::ProjectAncestry(p.to_string()))
            }
            // gcloud projects get-iam-policy calls CRM v1.
            (p, Some("getIamPolicy")) if nonempty(&[p]) => {
                Some(Target::ProjectPolicy(p.to_string()))
            }
            _ => None,
        },
        ["v1", "roles", r] if get && nonempty(&[r]) => Some(Target::Role(format!("roles/{r}"))),
        // Google-managed callers. Scheduler, Eventarc and Workflows share `v1/projects/P/
        // locations/L/` and Cloud Tasks shares `v2/projects/P/locations/L/` with Run: the
        // collection segment tells them apart. A `:verb` is no part of a name.
        ["v1", "projects", p, "subscriptions", _]
        | [
            "v1",
            "projects",
            p,
            "locations",
            _,
            "jobs" | "triggers" | "workflows",
            _,
        ]
        | ["v2", "projects", p, "locations", _, "queues", _]
        | ["v2", "projects", p, "locations", _, "queues", _, "tasks", _]
            if get && nonempty(&[p]) && !s.iter().any(|x| x.contains(':')) =>
        {
            let name = s[1..].join("/");
            CallerCollection::of_name(&name).map(|collection| Target::Caller { collection, name })
        }
        ["oauth2", "v2", "tokeninfo"] if get || post => Some(Target::TokenInfo),
        ["v3", "iam:troubleshoot"] if post => Some(Target::Troubleshoot),
        ["v1", "projects", p, "roles", r] if get && nonempty(&[p, r]) => {
            Some(Target::Role(format!("projects/{p}/roles/{r}")))
        }
        ["v1", "organizations", o, "roles", r] if get && nonempty(&[o, r]) => {
            Some(Target::Role(format!("organizations/{o}/roles/{r}")))
        }
        // What gcloud 528 calls (`--log-http`): Run v1, CRM v1/v2.
        [
            "apis",
            "serving.knative.dev",
            "v1",
            "namespaces",
            ns,
            "services",
        ] if get && nonempty(&[ns]) => Some(Target::KnativeList {
            namespace: ns.to_string(),
        }),
        [
            "apis",
            "serving.knative.dev",
            "v1",
            "namespaces",
            ns,
            "services",
            svc,
        ] if get && nonempty(&[ns, svc]) && !svc.contains(':') => Some(Target::KnativeService {
            namespace: ns.to_string(),
            service: svc.to_string(),
        }),
        ["v1", "projects", p, "locations", l, "services", last] if get => match split_verb(last) {
            (svc, Some("getIamPolicy")) if nonempty(&[p, l, svc]) => Some(Target::ServicePolicy {
                project: p.to_string(),
                location: l.to_string(),
                service: svc.to_string(),
            }),
            _ => None,
        },
        ["v1", "organizations", last] if post => match split_verb(last) {
            (o, Some("getIamPolicy")) if !o.is_empty() => {
                Some(Target::OrganizationPolicy(o.to_string()))
            }
            _ => None,
        },
        ["v2", "folders", last] if post => match split_verb(last) {
            (f, Some("getIamPolicy")) if !f.is_empty() => Some(Target::FolderPolicy(f.to_string())),
            _ => None,
        },
        _ => None,
    };
    if let Some(t) = target {
        return Route::Read(t);
    }
    match method {
        "GET" | "HEAD" | "OPTIONS" => Route::Unknown,
        "POST" => {
            let last = s.last().copied().unwrap_or("");
            let verb = split_verb(last).1;
            if verb.is_some_and(|v| READ_ONLY_POST_VERBS.contains(&v)) || last == "tokeninfo" {
                Route::Unserved
            } else {
                Route::Mutating
            }
        }
        _ => Route::Mutating,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads() {
        assert_eq!(
            classify("GET", "/v2/projects/p/locations/r/services/s"),
            Route::Read(Target::Service {
                project: "p".into(),
                location: "r".into(),
                service: "s".into()
            })
        );
        assert!(matches!(
            classify("GET", "/v2/projects/p/locations/r/services/s:getIamPolicy"),
            Route::Read(Target::ServicePolicy { .. })
        ));
        assert!(matches!(
            classify("POST", "/v3/folders/1:getIamPolicy"),
            Route::Read(Target::FolderPolicy(_))
        ));
        assert_eq!(
            classify(
                "GET",
                "/v2/policies/cloudresourcemanager.googleapis.com%2Fprojects%2Fp/denypolicies"
            ),
            Route::Read(Target::DenyList {
                attachment: "cloudresourcemanager.googleapis.com/projects/p".into(),
                kind: "denypolicies".into()
            })
        );
        // Decoded slashes are more segments: not the API's path.
        assert_eq!(
            classify(
                "GET",
                "/v2/policies/cloudresourcemanager.googleapis.com/projects/p/denypolicies"
            ),
            Route::Unknown
        );
        assert_eq!(
            classify(
                "GET",
                "/v2/organizations/9/policies/iam.allowedPolicyMemberDomains:getEffectivePolicy"
            ),
            Route::Read(Target::EffectivePolicy {
                kind: "organizations",
                id: "9".into(),
                constraint: "iam.allowedPolicyMemberDomains".into()
            })
        );
        assert_eq!(
            classify("GET", "/v1/projects/p/roles/r"),
            Route::Read(Target::Role("projects/p/roles/r".into()))
        );
    }

    #[test]
    fn callers_and_tokeninfo() {
        let caller = |c: CallerCollection, n: &str| {
            Route::Read(Target::Caller {
                collection: c,
                name: n.into(),
            })
        };
        assert_eq!(
            classify("GET", "/v1/projects/p/subscriptions/s"),
            caller(CallerCollection::Subscription, "projects/p/subscriptions/s")
        );
        assert_eq!(
            classify("GET", "/v1/projects/p/locations/l/jobs/j"),
            caller(CallerCollection::Job, "projects/p/locations/l/jobs/j")
        );
        assert_eq!(
            classify("GET", "/v2/projects/p/locations/l/queues/q"),
            caller(CallerCollection::Queue, "projects/p/locations/l/queues/q")
        );
        assert_eq!(
            classify("GET", "/v2/projects/p/locations/l/queues/q/tasks/t"),
            caller(
                CallerCollection::Task,
                "projects/p/locations/l/queues/q/tasks/t"
            )
        );
        assert_eq!(
            classify("GET", "/v1/projects/p/locations/l/triggers/t"),
            caller(
                CallerCollection::Trigger,
                "projects/p/locations/l/triggers/t"
            )
        );
        assert_eq!(
            classify("GET", "/v1/projects/p/locations/l/workflows/w"),
            caller(
                CallerCollection::Workflow,
                "projects/p/locations/l/workflows/w"
            )
        );
        // Versions are not interchangeable, and Run's services stay Run's.
        assert_eq!(
            classify("GET", "/v2/projects/p/locations/l/jobs/j"),
            Route::Unknown
        );
        assert_eq!(
            classify("GET", "/v1/projects/p/locations/l/queues/q"),
            Route::Unknown
        );
        assert!(matches!(
            classify("GET", "/v2/projects/p/locations/l/services/s"),
            Route::Read(Target::Service { .. })
        ));
        assert_eq!(
            classify("GET", "/v1/projects/p/subscriptions/s:getIamPolicy"),
            Route::Unknown
        );
        assert_eq!(
            classify("GET", "/v1/projects/p/subscriptions/"),
            Route::Unknown
        );
        // What a caller's API can change is refused.
        for (m, p) in [
            ("POST", "/v1/projects/p/subscriptions/s:pull"),
            ("POST", "/v1/projects/p/subscriptions/s:acknowledge"),
            ("POST", "/v1/projects/p/subscriptions/s:modifyPushConfig"),
            ("PATCH", "/v1/projects/p/subscriptions/s"),
            ("POST", "/v1/projects/p/locations/l/jobs/j:run"),
            ("POST", "/v1/projects/p/locations/l/jobs/j:pause"),
            ("POST", "/v2/projects/p/locations/l/queues/q/tasks/t:run"),
            ("DELETE", "/v2/projects/p/locations/l/queues/q/tasks/t"),
            ("POST", "/v1/projects/p/locations/l/workflows/w/executions"),
            ("PUT", "/v1/projects/p/subscriptions/s"),
        ] {
            assert_eq!(classify(m, p), Route::Mutating, "{m} {p}");
        }
        assert_eq!(
            classify("POST", "/oauth2/v2/tokeninfo"),
            Route::Read(Target::TokenInfo)
        );
        assert_eq!(
            classify("GET", "/oauth2/v2/tokeninfo"),
            Route::Read(Target::TokenInfo)
        );
        assert_eq!(classify("DELETE", "/oauth2/v2/tokeninfo"), Route::Mutating);
        assert_eq!(classify("POST", "/oauth2/v1/tokeninfo"), Route::Unserved);
    }

    #[test]
    fn gcloud_paths() {
        assert_eq!(
            classify(
                "GET",
                "/apis/serving.knative.dev/v1/namespaces/shop-prod/services/orders-api"
            ),
            Route::Read(Target::KnativeService {
                namespace: "shop-prod".into(),
                service: "orders-api".into()
            })
        );
        assert_eq!(
            classify(
                "GET",
                "/apis/serving.knative.dev/v1/namespaces/123/services"
            ),
            Route::Read(Target::KnativeList {
                namespace: "123".into()
            })
        );
        assert!(matches!(
            classify("GET", "/v1/projects/p/locations/r/services/s:getIamPolicy"),
            Route::Read(Target::ServicePolicy { .. })
        ));
        assert_eq!(
            classify("POST", "/v1/projects/p:getAncestry"),
            Route::Read(Target::ProjectAncestry("p".into()))
        );
        assert_eq!(
            classify("POST", "/v1/projects/p:getIamPolicy"),
            Route::Read(Target::ProjectPolicy("p".into()))
        );
        assert_eq!(
            classify("POST", "/v2/folders/7:getIamPolicy"),
            Route::Read(Target::FolderPolicy("7".into()))
        );
        assert_eq!(
            classify("POST", "/v1/organizations/9:getIamPolicy"),
            Route::Read(Target::OrganizationPolicy("9".into()))
        );
        // gcloud's double encoding and the single one name the same attachment point.
        let want = Route::Read(Target::DenyGet {
            attachment: "cloudresourcemanager.googleapis.com/projects/p".into(),
            kind: "denypolicies".into(),
            id: "d1".into(),
        });
        assert_eq!(
            classify(
                "GET",
                "/v2/policies/cloudresourcemanager.googleapis.com%252Fprojects%252Fp/denypolicies/d1"
            ),
            want
        );
        assert_eq!(
            classify(
                "GET",
                "/v2/policies/cloudresourcemanager.googleapis.com%2Fprojects%2Fp/denypolicies/d1"
            ),
            want
        );
        // Still read-only: v1 setters are refused.
        assert_eq!(
            classify("POST", "/v1/projects/p:setIamPolicy"),
            Route::Mutating
        );
        assert_eq!(
            classify("POST", "/v1/projects/p/locations/r/services/s:setIamPolicy"),
            Route::Mutating
        );
        assert_eq!(
            classify(
                "DELETE",
                "/apis/serving.knative.dev/v1/namespaces/p/services/s"
            ),
            Route::Mutating
        );
        assert_eq!(
            classify(
                "PUT",
                "/apis/serving.knative.dev/v1/namespaces/p/services/s"
            ),
            Route::Mutating
        );
    }

    #[test]
    fn guard() {
        assert_eq!(
            classify("POST", "/v2/projects/p/locations/r/services/s:setIamPolicy"),
            Route::Mutating
        );
        assert_eq!(
            classify("POST", "/v3/projects/p:setIamPolicy"),
            Route::Mutating
        );
        assert_eq!(
            classify("PATCH", "/v2/projects/p/locations/r/services/s"),
            Route::Mutating
        );
        assert_eq!(
            classify("DELETE", "/v2/projects/p/locations/r/services/s"),
            Route::Mutating
        );
        assert_eq!(
            classify("POST", "/v2/projects/p/locations/r/services"),
            Route::Mutating
        );
        assert_eq!(classify("POST", "/v2/entries:write"), Route::Mutating);
        // Policy Troubleshooter's one method is a read (it evaluates, changes nothing).
        assert_eq!(
            classify("POST", "/v3/iam:troubleshoot"),
            Route::Read(Target::Troubleshoot)
        );
        assert_eq!(classify("GET", "/v3/iam:troubleshoot"), Route::Unknown);
        assert_eq!(classify("POST", "/v1/iam:troubleshoot"), Route::Unserved);
        assert_eq!(classify("PUT", "/v3/iam:troubleshoot"), Route::Mutating);
        assert_eq!(
            classify("POST", "/v1/projects/p/serviceAccounts/a:getIamPolicy"),
            Route::Unserved
        );
        assert_eq!(
            classify("GET", "/v3/projects/p:getIamPolicy"),
            Route::Unknown
        );
        assert_eq!(classify("GET", "/nope"), Route::Unknown);
        assert_eq!(
            classify("GET", "/v2/projects//locations/r/services/s"),
            Route::Unknown
        );
    }
}
