//! IAM v2 deny policies (`gcloud iam policies get … --kind=denypolicies --format=json`).

use serde::{Deserialize, Serialize};

use crate::iam::Expr;

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DenyPolicy {
    pub name: Option<String>,
    pub display_name: Option<String>,
    pub kind: Option<String>,
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    pub description: Option<String>,
    pub deny_rule: Option<DenyRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DenyRule {
    #[serde(default)]
    pub denied_principals: Vec<String>,
    #[serde(default)]
    pub exception_principals: Vec<String>,
    #[serde(default)]
    pub denied_permissions: Vec<String>,
    #[serde(default)]
    pub exception_permissions: Vec<String>,
    pub denial_condition: Option<Expr>,
}

/// `deny-policies.json`: an array of policies (or a single one).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum DenyPoliciesFile {
    Many(Vec<DenyPolicy>),
    One(Box<DenyPolicy>),
}

impl DenyPoliciesFile {
    pub fn into_vec(self) -> Vec<DenyPolicy> {
        match self {
            DenyPoliciesFile::Many(v) => v,
            DenyPoliciesFile::One(p) => vec![*p],
        }
    }
}
