//! Effective organization policies: Org Policy API v2 `Policy` (what
//! `gcloud org-policies describe --effective --format=json` prints), and the legacy Resource
//! Manager v1 `OrgPolicy` shape (`gcloud resource-manager org-policies describe --effective`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const DRS_LEGACY: &str = "iam.allowedPolicyMemberDomains";
pub const DRS_MANAGED: &str = "iam.managed.allowedPolicyMembers";
pub const REQUIRE_INVOKER_IAM: &str = "run.managed.requireInvokerIam";
pub const ALLOWED_INGRESS: &str = "run.allowedIngress";
pub const PUBLIC_PRINCIPAL_SET: &str = "principalSet://goog/public:all";

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgPolicy {
    // v2
    pub name: Option<String>,
    pub spec: Option<PolicySpec>,
    // legacy v1
    pub constraint: Option<String>,
    pub boolean_policy: Option<LegacyBoolean>,
    pub list_policy: Option<LegacyList>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpec {
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
    pub inherit_from_parent: Option<bool>,
    pub reset: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    pub values: Option<StringValues>,
    pub allow_all: Option<bool>,
    pub deny_all: Option<bool>,
    pub enforce: Option<bool>,
    pub parameters: Option<serde_json::Map<String, Value>>,
    pub condition: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StringValues {
    #[serde(default)]
    pub allowed_values: Vec<String>,
    #[serde(default)]
    pub denied_values: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct LegacyBoolean {
    pub enforced: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LegacyList {
    #[serde(default)]
    pub allowed_values: Vec<String>,
    #[serde(default)]
    pub denied_values: Vec<String>,
    pub all_values: Option<String>,
}

/// `org-policies.json`: one policy or an array of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OrgPoliciesFile {
    Many(Vec<OrgPolicy>),
    One(Box<OrgPolicy>),
}

impl OrgPoliciesFile {
    pub fn into_vec(self) -> Vec<OrgPolicy> {
        match self {
            OrgPoliciesFile::Many(v) => v,
            OrgPoliciesFile::One(p) => vec![*p],
        }
    }
}

/// A constraint name without `constraints/`, whatever shape it came in.
pub fn constraint_of(p: &OrgPolicy) -> Option<String> {
    if let Some(n) = &p.name {
        if let Some((_, c)) = n.split_once("/policies/") {
            return Some(c.trim_start_matches("constraints/").to_string());
        }
        return Some(n.trim_start_matches("constraints/").to_string());
    }
    p.constraint
        .as_deref()
        .map(|c| c.trim_start_matches("constraints/").to_string())
}

/// The evaluated state of one constraint, as the rules need it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Effective {
    pub constraint: String,
    /// Boolean / managed constraint enforced (any rule with `enforce: true`).
    pub enforced: bool,
    pub allowed_values: Vec<String>,
    pub denied_values: Vec<String>,
    pub allow_all: bool,
    pub deny_all: bool,
    /// Managed-constraint parameters of the enforcing rule.
    pub parameters: Option<serde_json::Map<String, Value>>,
}

impl Effective {
    pub fn from_policy(p: &OrgPolicy) -> Option<Effective> {
        let constraint = constraint_of(p)?;
        let mut e = Effective {
            constraint,
            enforced: false,
            allowed_values: vec![],
            denied_values: vec![],
            allow_all: false,
            deny_all: false,
            parameters: None,
        };
        if let Some(spec) = &p.spec {
            for r in &spec.rules {
                if r.enforce == Some(true) {
                    e.enforced = true;
                    if r.parameters.is_some() {
                        e.parameters = r.parameters.clone();
                    }
                }
                if let Some(v) = &r.values {
                    e.allowed_values.extend(v.allowed_values.iter().cloned());
                    e.denied_values.extend(v.denied_values.iter().cloned());
                }
                e.allow_all |= r.allow_all == Some(true);
                e.deny_all |= r.deny_all == Some(true);
            }
        }
        if let Some(b) = &p.boolean_policy {
            e.enforced |= b.enforced == Some(true);
        }
        if let Some(l) = &p.list_policy {
            e.allowed_values.extend(l.allowed_values.iter().cloned());
            e.denied_values.extend(l.denied_values.iter().cloned());
            match l.all_values.as_deref() {
                Some("ALLOW") => e.allow_all = true,
                Some("DENY") => e.deny_all = true,
                _ => {}
            }
        }
        Some(e)
    }

    /// For a list constraint restricting IAM members: are `allUsers` blocked?
    pub fn restricts_members(&self) -> bool {
        if self.allow_all {
            return false;
        }
        self.deny_all || !self.allowed_values.is_empty()
    }

    /// For the managed `iam.managed.allowedPolicyMembers`: enforced, and
    /// `principalSet://goog/public:all` not among the allowed principal sets.
    pub fn blocks_public_members(&self) -> bool {
        if !self.enforced {
            return false;
        }
        let allowed_public = self.parameters.as_ref().is_some_and(|p| {
            ["allowedPrincipalSets", "allowedMemberSubjects"]
                .iter()
                .any(|k| {
                    p.get(*k).and_then(Value::as_array).is_some_and(|a| {
                        a.iter().any(|v| {
                            v.as_str()
                                .is_some_and(|s| s == PUBLIC_PRINCIPAL_SET || s == "allUsers")
                        })
                    })
                })
        });
        !allowed_public
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_real_shapes() {
        let p: OrgPolicy = serde_json::from_str(include_str!(
            "../testdata/crm-v1-getEffectiveOrgPolicy-boolean-enforced.gcpdiag-gke1.json"
        ))
        .unwrap();
        let e = Effective::from_policy(&p).unwrap();
        assert_eq!(e.constraint, "compute.disableSerialPortAccess");
        assert!(e.enforced);
        let p: OrgPolicy = serde_json::from_str(include_str!(
            "../testdata/crm-v1-getEffectiveOrgPolicy-boolean-not-enforced.gcpdiag-gke1.json"
        ))
        .unwrap();
        assert!(!Effective::from_policy(&p).unwrap().enforced);
    }

    #[test]
    fn v2_shapes() {
        let p: OrgPolicy = serde_json::from_str(
            r#"{"name":"projects/123/policies/iam.allowedPolicyMemberDomains","spec":{"rules":[{"values":{"allowedValues":["C0abc123"]}}]}}"#,
        )
        .unwrap();
        let e = Effective::from_policy(&p).unwrap();
        assert_eq!(e.constraint, DRS_LEGACY);
        assert!(e.restricts_members());
        let p: OrgPolicy = serde_json::from_str(
            r#"{"name":"projects/123/policies/iam.managed.allowedPolicyMembers","spec":{"rules":[{"enforce":true,"parameters":{"allowedPrincipalSets":["principalSet://goog/public:all"]}}]}}"#,
        )
        .unwrap();
        assert!(!Effective::from_policy(&p).unwrap().blocks_public_members());
        let p: OrgPolicy = serde_json::from_str(
            r#"{"name":"projects/123/policies/run.managed.requireInvokerIam"}"#,
        )
        .unwrap();
        assert!(!Effective::from_policy(&p).unwrap().enforced);
    }
}

/// The resource type of IAM allow policies, which custom constraints can govern (facts §8.1).
pub const ALLOW_POLICY_RESOURCE: &str = "iam.googleapis.com/AllowPolicy";

/// A custom constraint's definition (`org-policy-custom-*.json`: `gcloud org-policies
/// describe-custom-constraint custom.NAME --organization=O --format=json`, the Org Policy v2
/// `CustomConstraint`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomConstraint {
    /// `organizations/O/customConstraints/custom.NAME`.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub resource_types: Vec<String>,
    #[serde(default)]
    pub method_types: Vec<String>,
    pub condition: Option<String>,
    /// `ALLOW` or `DENY`.
    pub action_type: Option<String>,
    pub display_name: Option<String>,
    pub description: Option<String>,
}

impl CustomConstraint {
    /// `custom.NAME`.
    pub fn short_name(&self) -> &str {
        self.name.rsplit('/').next().unwrap_or(&self.name)
    }

    /// Does it govern IAM allow policies (the bindings a `SetIamPolicy` adds)?
    pub fn governs_allow_policies(&self) -> bool {
        self.resource_types
            .iter()
            .any(|t| t == ALLOW_POLICY_RESOURCE)
    }

    /// Does it refuse a grant to `allUsers` / `allAuthenticatedUsers`, as far as its CEL can
    /// be read without evaluating it: a `DENY` whose condition names the public principals
    /// (or their member type), or an `ALLOW` whose condition lists allowed members and never
    /// the public ones. `None` when the condition cannot be read that way.
    pub fn refuses_public_grant(&self) -> Option<bool> {
        if !self.governs_allow_policies() {
            return Some(false);
        }
        let c = self.condition.as_deref()?;
        let lower = c.to_ascii_lowercase();
        let names_public = [
            "allusers",
            "allauthenticatedusers",
            "principalset://goog/public:all",
        ]
        .iter()
        .any(|p| lower.contains(p));
        let lists_members = [
            "MemberSubjectMatches",
            "MemberInPrincipalSet",
            "MemberTypeMatches",
        ]
        .iter()
        .any(|f| c.contains(f));
        match self.action_type.as_deref() {
            Some("DENY") if names_public => Some(true),
            Some("DENY") => None,
            Some("ALLOW") if lists_members && !names_public => Some(true),
            Some("ALLOW") if names_public => None,
            _ => None,
        }
    }

    /// A `DENY` on allow policies whose condition names the public principals: the plainest
    /// reading of "this constraint refuses `allUsers`".
    pub fn denies_public_by_name(&self) -> bool {
        let c = self.condition.as_deref().unwrap_or("").to_ascii_lowercase();
        self.governs_allow_policies()
            && self.action_type.as_deref() == Some("DENY")
            && [
                "allusers",
                "allauthenticatedusers",
                "principalset://goog/public:all",
            ]
            .iter()
            .any(|p| c.contains(p))
    }
}
