//! Everything the rules look at, each source explicitly present or absent.

use serde::Serialize;

use crate::caller::CallerConfig;
use crate::context::Context;
use crate::deny::DenyPolicy;
use crate::gathered::{GapState, Gathered};
use crate::iam::{Level, Policy};
use crate::logs::LogEntry;
use crate::orgpolicy::{Effective, OrgPolicy};
use crate::roles::Role;
use crate::service::Service;
use crate::time::Timestamp;
use crate::token::Token;
use crate::troubleshoot::Troubleshoot;

/// What the person running the tool said (flags), as opposed to what was gathered.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// `--caller PRINCIPAL`.
    pub caller: Option<String>,
    /// `--expect-public`.
    pub expect_public: bool,
    /// `--at RFC3339`: when the failing request happened.
    pub at: Option<Timestamp>,
    /// `--status`: what the client saw.
    pub status: Option<i64>,
    /// The client's response came from Identity-Aware Proxy (an IAP page was pasted).
    pub iap_response: bool,
    /// A trace ID or log `insertId` naming the failing request (from `explain`).
    pub request_ref: Option<String>,
    /// The target named on the command line (live mode), when there is no service resource.
    pub project: Option<String>,
    pub region: Option<String>,
    pub service: Option<String>,
}

/// The gathered evidence.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub service: Gathered<Service>,
    pub service_policy: Gathered<Policy>,
    pub project_policy: Gathered<Policy>,
    /// Folder and organization policies, nearest first.
    pub ancestor_policies: Vec<(Level, Gathered<Policy>)>,
    pub org_policies: Gathered<Vec<OrgPolicy>>,
    pub logs: Gathered<Vec<LogEntry>>,
    pub custom_roles: Vec<Role>,
    /// Custom org-policy constraint definitions (`org-policy-custom-*.json`).
    pub custom_constraints: Vec<crate::orgpolicy::CustomConstraint>,
    pub deny_policies: Gathered<Vec<DenyPolicy>>,
    pub caller_configs: Vec<CallerConfig>,
    /// The other regions of a multi-region service (`service-REGION.json`,
    /// `service-iam-policy-REGION.json`).
    pub regional: Vec<crate::regions::Regional>,
    /// `caller-*.json` files that held an API error instead of a caller's configuration
    /// (denied, not found, ...): reported as gaps `caller_config:NAME`.
    pub caller_config_gaps: Vec<Gap>,
    /// Bundle files that could not be read and hold no source of their own above (a custom
    /// role, `context.json`, `token.txt`, one of several org-policy files): `failed` gaps.
    pub file_gaps: Vec<Gap>,
    /// Policy Troubleshooter's answer for the caller (`troubleshoot.json`); `None` when it was
    /// not asked. Optional: its absence or failure is never a gap, only a missing cross-check.
    pub troubleshoot: Option<Gathered<Troubleshoot>>,
    /// The caller's token (from `token.txt` or `--token`); `None` when none was given.
    pub token: Option<Token>,
    pub context: Option<Context>,
    pub inputs: Inputs,
}

/// One evidence source that is not present, for the report's `gaps`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gap {
    pub source: String,
    pub state: GapState,
    pub detail: String,
    pub needs_permission: Option<String>,
}

impl Evidence {
    /// The effective state of one org-policy constraint, if the evidence has it.
    pub fn constraint(&self, name: &str) -> Option<Effective> {
        self.org_policies
            .present()?
            .iter()
            .filter_map(Effective::from_policy)
            .find(|e| e.constraint == name)
    }

    /// The project (ID or number) the evidence is about.
    pub fn project(&self) -> Option<String> {
        // Prefer a project ID over a number: v1 services name their project by number, while
        // logs and the v2 resource carry the ID, which reads better in fix commands.
        let from_service = self.service.present().and_then(|s| s.project.clone());
        let is_number = |p: &String| p.chars().all(|c| c.is_ascii_digit());
        self.inputs
            .project
            .clone()
            .or_else(|| from_service.clone().filter(|p| !is_number(p)))
            .or_else(|| self.first_request_label("project_id"))
            .or(from_service)
    }

    pub fn region(&self) -> Option<String> {
        self.inputs
            .region
            .clone()
            .or_else(|| self.service.present().and_then(|s| s.region.clone()))
            .or_else(|| self.first_request_label("location"))
    }

    pub fn service_name(&self) -> Option<String> {
        self.inputs
            .service
            .clone()
            .or_else(|| self.service.present().map(|s| s.name.clone()))
            .or_else(|| self.first_request_label("service_name"))
    }

    fn first_request_label(&self, k: &str) -> Option<String> {
        self.logs
            .present()?
            .iter()
            .filter(|e| e.is_request_log())
            .find_map(|e| e.resource_label(k).map(str::to_string))
    }

    /// What the evidence knows of the service's project and its ancestors, for matching
    /// "every service account under a resource" principal sets.
    pub fn hierarchy(&self) -> crate::principal::Hierarchy {
        let is_number = |p: &String| p.chars().all(|c| c.is_ascii_digit());
        let project = self.project();
        let mut h = crate::principal::Hierarchy {
            project_id: project.clone().filter(|p| !is_number(p)),
            project_number: self
                .service
                .present()
                .and_then(|s| s.project_number.clone())
                .or(project.filter(is_number)),
            ..Default::default()
        };
        for (level, _) in &self.ancestor_policies {
            match level {
                Level::Folder(f) => h.folders.push(f.clone()),
                Level::Organization(o) => h.organization = Some(o.clone()),
                _ => {}
            }
        }
        h
    }

    /// Every policy that applies to the service, service first, then up the hierarchy.
    pub fn policies(&self) -> Vec<(Level, &Gathered<Policy>)> {
        let svc = self.service_name().unwrap_or_else(|| "SERVICE".into());
        let proj = self.project().unwrap_or_else(|| "PROJECT".into());
        let mut v = vec![
            (Level::Service(svc), &self.service_policy),
            (Level::Project(proj), &self.project_policy),
        ];
        for (l, p) in &self.ancestor_policies {
            v.push((l.clone(), p));
        }
        v
    }

    /// Sources that are not present, with the permission that would let the tool read them.
    pub fn gaps(&self) -> Vec<Gap> {
        let mut out = Vec::new();
        let mut push = |source: &str,
                        state: Option<GapState>,
                        detail: Option<String>,
                        perm: &str,
                        denied_perm: Option<&String>| {
            if let (Some(state), Some(detail)) = (state, detail) {
                out.push(Gap {
                    source: source.to_string(),
                    state,
                    detail,
                    needs_permission: Some(
                        denied_perm.cloned().unwrap_or_else(|| perm.to_string()),
                    ),
                });
            }
        };
        fn denied_perm<T>(g: &Gathered<T>) -> Option<&String> {
            match g {
                Gathered::Denied { permission, .. } => permission.as_ref(),
                _ => None,
            }
        }
        push(
            "service",
            self.service.gap_state(),
            self.service.absence(),
            "run.services.get",
            denied_perm(&self.service),
        );
        push(
            "service_iam_policy",
            self.service_policy.gap_state(),
            self.service_policy.absence(),
            "run.services.getIamPolicy",
            denied_perm(&self.service_policy),
        );
        push(
            "project_iam_policy",
            self.project_policy.gap_state(),
            self.project_policy.absence(),
            "resourcemanager.projects.getIamPolicy",
            denied_perm(&self.project_policy),
        );
        for (level, p) in &self.ancestor_policies {
            let (src, perm) = match level {
                Level::Folder(id) => (
                    format!("folder_iam_policy:{id}"),
                    "resourcemanager.folders.getIamPolicy",
                ),
                Level::Organization(id) => (
                    format!("organization_iam_policy:{id}"),
                    "resourcemanager.organizations.getIamPolicy",
                ),
                _ => continue,
            };
            push(&src, p.gap_state(), p.absence(), perm, denied_perm(p));
        }
        push(
            "org_policies",
            self.org_policies.gap_state(),
            self.org_policies.absence(),
            "orgpolicy.policy.get",
            denied_perm(&self.org_policies),
        );
        push(
            "logs",
            self.logs.gap_state(),
            self.logs.absence(),
            "logging.logEntries.list",
            denied_perm(&self.logs),
        );
        // Deny policies are rare and most tickets carry none, so a bundle without
        // `deny-policies.json` is no gap; a read that was refused or failed is one.
        if !matches!(self.deny_policies, Gathered::Missing { .. }) {
            push(
                "deny_policies",
                self.deny_policies.gap_state(),
                self.deny_policies.absence(),
                "iam.denypolicies.list",
                denied_perm(&self.deny_policies),
            );
        }
        // The other regions of a multi-region service: only a refused or failed read is a gap.
        for r in &self.regional {
            if !matches!(r.service, Gathered::Missing { .. }) {
                push(
                    &format!("service:{}", r.region),
                    r.service.gap_state(),
                    r.service.absence(),
                    "run.services.get",
                    denied_perm(&r.service),
                );
            }
            if !matches!(r.policy, Gathered::Missing { .. }) {
                push(
                    &format!("service_iam_policy:{}", r.region),
                    r.policy.gap_state(),
                    r.policy.absence(),
                    "run.services.getIamPolicy",
                    denied_perm(&r.policy),
                );
            }
        }
        out.extend(self.caller_config_gaps.iter().cloned());
        out.extend(self.file_gaps.iter().cloned());
        out
    }
}
