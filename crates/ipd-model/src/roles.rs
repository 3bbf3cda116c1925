//! Which roles carry `run.routes.invoke`.
//!
//! Built-in table from the role data in facts §3.2 (iam-dataset @ 2073fa52, 2026-08-22).
//! Custom roles come from the bundle's `role-*.json` (`gcloud iam roles describe`).

use serde::{Deserialize, Serialize};

pub const INVOKE_PERMISSION: &str = "run.routes.invoke";

/// Predefined roles that include `run.routes.invoke`.
pub const INVOKER_ROLES: &[&str] = &[
    "roles/run.invoker",
    "roles/run.servicesInvoker",
    "roles/run.developer",
    "roles/run.sourceDeveloper",
    "roles/run.editor",
    "roles/run.admin",
    "roles/owner",
    "roles/editor",
    "roles/cloudfunctions.admin",
    "roles/cloudfunctions.developer",
    "roles/cloudfunctions.editor",
    "roles/firebase.admin",
    "roles/firebase.developAdmin",
    "roles/iam.devOps",
    "roles/iam.dataScientist",
    "roles/iam.mlEngineer",
    "roles/run.serviceAgent",
    "roles/serverless.serviceAgent",
    "roles/cloudfunctions.serviceAgent",
    "roles/aiplatform.serviceAgent",
    "roles/firebaseapphosting.serviceAgent",
    "roles/firebasedataconnect.serviceAgent",
    "roles/spanner.serviceAgent",
    "roles/monitoring.notificationServiceAgent",
    "roles/dialogflow.serviceAgent",
    "roles/ces.serviceAgent",
    "roles/integrations.serviceAgent",
    "roles/visionai.serviceAgent",
];

/// Predefined roles known NOT to include it (people often think they do).
pub const NON_INVOKER_ROLES: &[&str] = &[
    "roles/viewer",
    "roles/run.viewer",
    "roles/run.jobsExecutor",
    "roles/run.jobsExecutorWithOverrides",
    "roles/cloudfunctions.invoker",
    "roles/browser",
];

pub const FUNCTIONS_INVOKER: &str = "roles/cloudfunctions.invoker";

/// `gcloud iam roles describe` output.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    #[serde(default)]
    pub name: String,
    pub title: Option<String>,
    #[serde(default)]
    pub included_permissions: Vec<String>,
    pub stage: Option<String>,
    #[serde(default)]
    pub deleted: bool,
}

/// Whether a role grants invoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grants {
    Yes,
    No,
    /// A custom role whose definition is not in the evidence.
    Unknown,
}

/// Resolves whether `role` grants `run.routes.invoke`, using custom role definitions.
pub fn grants_invoke(role: &str, custom: &[Role]) -> Grants {
    if let Some(r) = custom.iter().find(|r| r.name == role) {
        let disabled = r.deleted || r.stage.as_deref() == Some("DISABLED");
        return if !disabled
            && r.included_permissions
                .iter()
                .any(|p| p == INVOKE_PERMISSION)
        {
            Grants::Yes
        } else {
            Grants::No
        };
    }
    if INVOKER_ROLES.contains(&role) {
        Grants::Yes
    } else if role.starts_with("roles/") {
        // Predefined roles outside the table: the table lists every predefined role with the
        // permission (facts §3.2), so anything else does not carry it.
        Grants::No
    } else {
        Grants::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        assert_eq!(grants_invoke("roles/run.invoker", &[]), Grants::Yes);
        assert_eq!(grants_invoke("roles/run.developer", &[]), Grants::Yes);
        assert_eq!(grants_invoke("roles/run.viewer", &[]), Grants::No);
        assert_eq!(
            grants_invoke("roles/cloudfunctions.invoker", &[]),
            Grants::No
        );
        assert_eq!(
            grants_invoke("projects/p/roles/custom", &[]),
            Grants::Unknown
        );
        let custom = Role {
            name: "projects/p/roles/custom".into(),
            included_permissions: vec!["run.routes.invoke".into()],
            ..Default::default()
        };
        assert_eq!(
            grants_invoke("projects/p/roles/custom", std::slice::from_ref(&custom)),
            Grants::Yes
        );
        let disabled = Role {
            stage: Some("DISABLED".into()),
            ..custom
        };
        assert_eq!(
            grants_invoke("projects/p/roles/custom", &[disabled]),
            Grants::No
        );
        for r in NON_INVOKER_ROLES {
            assert!(!INVOKER_ROLES.contains(r));
        }
    }
}
