//! IAM allow policies (`get-iam-policy --format=json`), versions 1 and 3.

use serde::{Deserialize, Serialize};

use crate::principal::Principal;

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Policy {
    pub version: Option<i32>,
    #[serde(default)]
    pub bindings: Vec<Binding>,
    pub etag: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Binding {
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub members: Vec<String>,
    pub condition: Option<Expr>,
}

/// `google.type.Expr`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Expr {
    #[serde(default)]
    pub expression: String,
    pub title: Option<String>,
    pub description: Option<String>,
}

impl Binding {
    pub fn principals(&self) -> impl Iterator<Item = Principal> + '_ {
        self.members.iter().map(|m| Principal::parse(m))
    }

    /// A role read at policy version 1 from a conditional binding (`roles/x_withcond_<hash>`):
    /// the condition was dropped by the API.
    pub fn is_withcond(&self) -> bool {
        self.role.contains("_withcond_")
    }
}

/// Where in the resource hierarchy a policy is attached.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "level", content = "id", rename_all = "snake_case")]
pub enum Level {
    Service(String),
    Project(String),
    Folder(String),
    Organization(String),
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Level::Service(s) => write!(f, "service `{s}`"),
            Level::Project(p) => write!(f, "project `{p}`"),
            Level::Folder(x) => write!(f, "folder `{x}`"),
            Level::Organization(o) => write!(f, "organization `{o}`"),
        }
    }
}

impl Level {
    /// The bundle file that holds this level's policy.
    pub fn file_name(&self) -> String {
        match self {
            Level::Service(_) => "service-iam-policy.json".into(),
            Level::Project(_) => "project-iam-policy.json".into(),
            Level::Folder(id) => format!("folder-{id}-iam-policy.json"),
            Level::Organization(id) => format!("organization-{id}-iam-policy.json"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_shapes() {
        let p: Policy = serde_json::from_str(include_str!(
            "../testdata/crm-v1-projects-getIamPolicy.gcpdiag-cloudrun1.json"
        ))
        .unwrap();
        assert_eq!(p.version, Some(1));
        assert_eq!(p.bindings.len(), 7);
        let empty: Policy = serde_json::from_str(r#"{"etag": "ACAB"}"#).unwrap();
        assert!(empty.bindings.is_empty());
        let w: Policy = serde_json::from_str(include_str!(
            "../testdata/iam-policy-v1-withcond.google-doc-example.json"
        ))
        .unwrap();
        assert!(w.bindings[0].is_withcond());
    }
}
