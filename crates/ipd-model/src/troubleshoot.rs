//! Policy Troubleshooter v3 (`POST v3/iam:troubleshoot`): Google's own answer to "can this
//! principal use `run.routes.invoke` on this service?", read from `troubleshoot.json` (the
//! response, as `gcloud policy-intelligence troubleshoot-policy iam RESOURCE --principal-email=E
//! --permission=run.routes.invoke --format=json` prints it, or as `--record` writes it).
//!
//! The older `gcloud policy-troubleshoot iam` calls **v2alpha1**, whose answer
//! (`{"access": "GRANTED", "explainedPolicies": [...]}`, gcloud 528's
//! `policytroubleshooter/v2alpha1` messages) evaluates allow policies only, never deny
//! policies: it is not read as if it were v3 but refused by [`unusable`], with the v3 command.
//! An answer without an overall state is refused the same way, so
//! `OVERALL_ACCESS_STATE_UNSPECIFIED` is never shown as Google's verdict.
//!
//! The troubleshooter knows IAM (allow and deny policies, group membership, conditions) but not
//! tokens, audiences, ingress or org policies: it is a cross-check of the IAM part of a
//! diagnosis, never a diagnosis of its own.

use serde::Deserialize;

/// The response, reduced to what the cross-check shows.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Troubleshoot {
    pub access_tuple: AccessTuple,
    /// `CAN_ACCESS`, `CANNOT_ACCESS`, `UNKNOWN_INFO`, `UNKNOWN_CONDITIONAL`.
    pub overall_access_state: Option<String>,
    pub allow_policy_explanation: Option<AllowExplanation>,
    pub deny_policy_explanation: Option<DenyExplanation>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AccessTuple {
    pub principal: Option<String>,
    pub full_resource_name: Option<String>,
    pub permission: Option<String>,
    pub permission_fqdn: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AllowExplanation {
    pub allow_access_state: Option<String>,
    pub explained_policies: Vec<ExplainedAllowPolicy>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExplainedAllowPolicy {
    pub allow_access_state: Option<String>,
    pub full_resource_name: Option<String>,
    pub binding_explanations: Vec<BindingExplanation>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BindingExplanation {
    pub allow_access_state: Option<String>,
    pub role: Option<String>,
    pub role_permission: Option<String>,
    pub combined_membership: Option<Membership>,
    /// Member (as written in the policy) → whether the principal matches it.
    pub memberships: std::collections::BTreeMap<String, Membership>,
    pub condition: Option<Expr>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Membership {
    /// `MEMBERSHIP_MATCHED`, `MEMBERSHIP_NOT_MATCHED`, `MEMBERSHIP_UNKNOWN_INFO`,
    /// `MEMBERSHIP_UNKNOWN_UNSUPPORTED`.
    pub membership: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Expr {
    pub expression: Option<String>,
    pub title: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DenyExplanation {
    pub deny_access_state: Option<String>,
    pub explained_resources: Vec<ExplainedDenyResource>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExplainedDenyResource {
    pub deny_access_state: Option<String>,
    pub full_resource_name: Option<String>,
    pub explained_policies: Vec<ExplainedDenyPolicy>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExplainedDenyPolicy {
    pub deny_access_state: Option<String>,
    pub policy: Option<NamedPolicy>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NamedPolicy {
    pub name: Option<String>,
    pub display_name: Option<String>,
}

/// Google's overall answer, simplified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Granted,
    NotGranted,
    /// `UNKNOWN_INFO` / `UNKNOWN_CONDITIONAL`: the troubleshooter could not decide.
    Unknown,
}

impl Troubleshoot {
    pub fn access(&self) -> Access {
        match self.overall_access_state.as_deref() {
            Some("CAN_ACCESS") => Access::Granted,
            Some("CANNOT_ACCESS") => Access::NotGranted,
            _ => Access::Unknown,
        }
    }

    /// The state as Google spells it (`UNKNOWN_INFO` when absent: [`unusable`] keeps such an
    /// answer out of the evidence).
    pub fn state(&self) -> &str {
        self.overall_access_state
            .as_deref()
            .unwrap_or("UNKNOWN_INFO")
    }

    /// The bindings that grant the permission: "`ROLE` → `MEMBER` on RESOURCE".
    pub fn granting_bindings(&self) -> Vec<String> {
        self.bindings_in("ALLOW_ACCESS_STATE_GRANTED")
    }

    /// The bindings that would grant but whose condition or membership Google could not decide.
    pub fn undecided_bindings(&self) -> Vec<String> {
        let mut v = self.bindings_in("ALLOW_ACCESS_STATE_UNKNOWN_CONDITIONAL");
        v.extend(self.bindings_in("ALLOW_ACCESS_STATE_UNKNOWN_INFO"));
        v
    }

    fn bindings_in(&self, state: &str) -> Vec<String> {
        let Some(allow) = &self.allow_policy_explanation else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for p in &allow.explained_policies {
            let on = p
                .full_resource_name
                .as_deref()
                .unwrap_or("an unnamed resource");
            for b in &p.binding_explanations {
                if b.allow_access_state.as_deref() != Some(state) {
                    continue;
                }
                let role = b.role.as_deref().unwrap_or("?");
                // The members that matched (or could not be decided), as the policy writes them.
                let members: Vec<&str> = b
                    .memberships
                    .iter()
                    .filter(|(_, m)| {
                        m.membership.as_deref() != Some("MEMBERSHIP_NOT_MATCHED")
                            && m.membership.is_some()
                    })
                    .map(|(k, _)| k.as_str())
                    .collect();
                let who = if members.is_empty() {
                    String::new()
                } else {
                    format!(" → `{}`", members.join("`, `"))
                };
                let cond = b
                    .condition
                    .as_ref()
                    .and_then(|c| c.expression.as_deref())
                    .map(|e| format!(" (condition `{e}`)"))
                    .unwrap_or_default();
                out.push(format!("`{role}`{who} on `{on}`{cond}"));
            }
        }
        out
    }

    /// The deny policies that deny the permission: "NAME on RESOURCE".
    pub fn denying_policies(&self) -> Vec<String> {
        let Some(deny) = &self.deny_policy_explanation else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for r in &deny.explained_resources {
            let on = r
                .full_resource_name
                .as_deref()
                .unwrap_or("an unnamed resource");
            for p in &r.explained_policies {
                if p.deny_access_state.as_deref() == Some("DENY_ACCESS_STATE_DENIED") {
                    let name = p
                        .policy
                        .as_ref()
                        .and_then(|p| p.name.as_deref())
                        .unwrap_or("an unnamed deny policy");
                    out.push(format!("`{name}` on `{on}`"));
                }
            }
        }
        out
    }
}

/// The v3 command that makes `troubleshoot.json`.
pub const V3_COMMAND: &str = "gcloud policy-intelligence troubleshoot-policy iam //run.googleapis.com/projects/P/locations/R/services/S --principal-email=EMAIL --permission=run.routes.invoke --format=json";

/// Why an answer (already read as JSON) cannot be used as a v3 answer: a v2alpha1 answer, or
/// one without an overall state. `None` for a usable v3 answer or an error envelope.
pub fn unusable(raw: &serde_json::Value) -> Option<String> {
    let obj = raw.as_object()?;
    if obj.contains_key("error") {
        return None;
    }
    let state = obj.get("overallAccessState").and_then(|v| v.as_str());
    if state.is_none() && (obj.contains_key("access") || obj.contains_key("explainedPolicies")) {
        return Some(format!(
            "troubleshoot.json is a Policy Troubleshooter v2alpha1 answer (`gcloud policy-troubleshoot iam`, access `{}`), which does not evaluate deny policies, so it is not read; make it with the v3 command: {V3_COMMAND}",
            obj.get("access")
                .and_then(|v| v.as_str())
                .unwrap_or("unset")
        ));
    }
    match state {
        None | Some("OVERALL_ACCESS_STATE_UNSPECIFIED") | Some("") => Some(format!(
            "troubleshoot.json holds no overall answer from Policy Troubleshooter (no `overallAccessState`), so it is not read; make it with: {V3_COMMAND}"
        )),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::{self, Doc};

    #[test]
    fn v2alpha1_and_stateless_answers_are_refused_with_the_v3_command() {
        // The v2alpha1 shape (gcloud 528's GoogleCloudPolicytroubleshooterV2alpha1
        // TroubleshootIamPolicyResponse: `access`, `explainedPolicies`).
        let v2 = serde_json::json!({"access": "GRANTED", "explainedPolicies": [
            {"access": "GRANTED", "fullResourceName": "//cloudresourcemanager.googleapis.com/projects/p",
             "bindingExplanations": [{"access": "GRANTED", "role": "roles/run.invoker"}]}]});
        let why = unusable(&v2).unwrap();
        assert!(why.contains("v2alpha1"), "{why}");
        assert!(
            why.contains("gcloud policy-intelligence troubleshoot-policy iam"),
            "{why}"
        );
        for raw in [
            serde_json::json!({}),
            serde_json::json!({"overallAccessState": "OVERALL_ACCESS_STATE_UNSPECIFIED"}),
        ] {
            let why = unusable(&raw).unwrap();
            assert!(!why.contains("OVERALL_ACCESS_STATE_UNSPECIFIED"), "{why}");
        }
        // Usable: a v3 answer, and Google's error envelope (read as a refusal elsewhere).
        let v3: serde_json::Value = serde_json::from_str(GRANTED).unwrap();
        assert_eq!(unusable(&v3), None);
        assert_eq!(
            unusable(&serde_json::json!({"error": {"code": 403, "status": "PERMISSION_DENIED"}})),
            None
        );
    }

    const GRANTED: &str = r#"{
      "accessTuple": {"principal": "alice@example.com",
        "fullResourceName": "//run.googleapis.com/projects/p/locations/europe-west1/services/s",
        "permission": "run.routes.invoke", "permissionFqdn": "run.googleapis.com/routes.invoke"},
      "overallAccessState": "CAN_ACCESS",
      "allowPolicyExplanation": {"allowAccessState": "ALLOW_ACCESS_STATE_GRANTED",
        "explainedPolicies": [{"allowAccessState": "ALLOW_ACCESS_STATE_GRANTED",
          "fullResourceName": "//cloudresourcemanager.googleapis.com/projects/p",
          "bindingExplanations": [
            {"allowAccessState": "ALLOW_ACCESS_STATE_GRANTED", "role": "roles/run.invoker",
             "rolePermission": "ROLE_PERMISSION_INCLUDED",
             "combinedMembership": {"membership": "MEMBERSHIP_MATCHED", "relevance": "HEURISTIC_RELEVANCE_HIGH"},
             "memberships": {"group:team@example.com": {"membership": "MEMBERSHIP_MATCHED"},
                             "user:bob@example.com": {"membership": "MEMBERSHIP_NOT_MATCHED"}}},
            {"allowAccessState": "ALLOW_ACCESS_STATE_NOT_GRANTED", "role": "roles/viewer",
             "rolePermission": "ROLE_PERMISSION_NOT_INCLUDED"}]}]},
      "denyPolicyExplanation": {"denyAccessState": "DENY_ACCESS_STATE_NOT_DENIED", "permissionDeniable": true}
    }"#;

    #[test]
    fn reads_the_granting_binding_and_its_matched_member() {
        let Doc::Value(t) = doc::parse::<Troubleshoot>("troubleshoot.json", GRANTED).unwrap()
        else {
            panic!("not a value")
        };
        assert_eq!(t.access(), Access::Granted);
        assert_eq!(t.state(), "CAN_ACCESS");
        assert_eq!(
            t.granting_bindings(),
            vec![
                "`roles/run.invoker` → `group:team@example.com` on `//cloudresourcemanager.googleapis.com/projects/p`"
                    .to_string()
            ]
        );
        assert!(t.denying_policies().is_empty());
        assert!(t.undecided_bindings().is_empty());
    }

    #[test]
    fn reads_a_denying_policy() {
        let text = r#"{"overallAccessState": "CANNOT_ACCESS",
          "denyPolicyExplanation": {"denyAccessState": "DENY_ACCESS_STATE_DENIED",
            "explainedResources": [{"denyAccessState": "DENY_ACCESS_STATE_DENIED",
              "fullResourceName": "//cloudresourcemanager.googleapis.com/organizations/1",
              "explainedPolicies": [{"denyAccessState": "DENY_ACCESS_STATE_DENIED",
                "policy": {"name": "policies/cloudresourcemanager.googleapis.com%2Forganizations%2F1/denypolicies/no-run"}}]}]}}"#;
        let Doc::Value(t) = doc::parse::<Troubleshoot>("t.json", text).unwrap() else {
            panic!("not a value")
        };
        assert_eq!(t.access(), Access::NotGranted);
        assert_eq!(t.denying_policies().len(), 1);
        assert!(t.denying_policies()[0].contains("denypolicies/no-run"));
    }

    #[test]
    fn unknown_states_are_unknown() {
        for s in [
            "UNKNOWN_INFO",
            "UNKNOWN_CONDITIONAL",
            "OVERALL_ACCESS_STATE_UNSPECIFIED",
        ] {
            let t = Troubleshoot {
                overall_access_state: Some(s.into()),
                ..Troubleshoot::default()
            };
            assert_eq!(t.access(), Access::Unknown, "{s}");
        }
        assert_ne!(
            Troubleshoot::default().state(),
            "OVERALL_ACCESS_STATE_UNSPECIFIED"
        );
    }
}
