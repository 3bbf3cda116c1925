use ipd_model::Principal;
use ipd_model::principal::{Coverage, Hierarchy};

use crate::cx::Cx;
use crate::declare_rule;
use crate::fix::{Arg, Fix, FixKind, Safety};
use crate::rule::{Body, Check, RuleImpl, RuleMeta, Verdict};
use crate::rules::iam_common::cap;

declare_rule! {
    /// ## What it checks
    /// Whether an IAM deny policy attached to the project, a folder or the organization denies
    /// `run.googleapis.com/routes.invoke` to the caller: the permission (or a wildcard such as
    /// `run.googleapis.com/*`) is among `deniedPermissions` and not an exception, and the caller
    /// is among `deniedPrincipals` (`principal://goog/subject/EMAIL`,
    /// `principal://iam.googleapis.com/projects/-/serviceAccounts/EMAIL`,
    /// `principalSet://goog/public:all`, groups and principal sets, the service accounts of a
    /// project, folder or organization matched as in allow policies, workforce, workload and
    /// agent identities) and not an exception.
    ///
    /// ## Why it breaks the request
    /// Deny policies are evaluated before allow policies: a matching deny rule refuses the
    /// request with 403 whatever the caller's roles, `roles/owner` included. Group, domain and
    /// principal-set members, and `denialCondition` (resource tags only), cannot be resolved
    /// from the evidence and give `possible`.
    ///
    /// ## Evidence used
    /// `deny-policies.json` (`gcloud iam policies get … --kind=denypolicies`), the caller.
    ///
    /// ## Example
    /// `fixtures/deny-policy-org-denies-invoke`
    ///
    /// ## Fix
    /// Ask the deny policy's owners to add the caller to `exceptionPrincipals` (or remove the
    /// permission from the rule); use another caller that is not denied.
    ///
    /// ## Fix safety
    /// Changing a deny policy weakens an organization guardrail: review with its owners.
    ///
    /// ## References
    /// - https://cloud.google.com/iam/docs/deny-overview
    /// - https://cloud.google.com/iam/docs/principal-identifiers (v2 identifiers)
    pub struct DenyPolicy {
        code: "IPD024",
        name: "deny-policy",
        cause: "deny_policy",
        title: "an IAM deny policy denies `run.googleapis.com/routes.invoke` to the caller",
        severity: High,
    }
}

pub const DENY_PERMISSION: &str = "run.googleapis.com/routes.invoke";

pub struct Hit {
    policy: String,
    display: Option<String>,
    principal: String,
    permission: String,
    sure: bool,
    why: Option<String>,
}

pub struct State {
    hits: Vec<Hit>,
}

/// `*` matches any run of characters.
fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, tail)) => {
            if !s.starts_with(head) {
                return false;
            }
            let rest = &s[head.len()..];
            (0..=rest.len())
                .filter(|i| rest.is_char_boundary(*i))
                .any(|i| glob(tail, &rest[i..]))
        }
    }
}

/// Whether a deny-policy (IAM v2) principal identifier covers the caller.
pub fn v2_covers(id: &str, caller: &Principal, h: &Hierarchy) -> Coverage {
    let id = id.trim();
    if id == "principalSet://goog/public:all" {
        return Coverage::Yes;
    }
    match caller {
        Principal::User(e) => {
            if id.eq_ignore_ascii_case(&format!("principal://goog/subject/{e}")) {
                Coverage::Yes
            } else if id.starts_with("principalSet://goog/group/")
                || id.starts_with("principalSet://goog/cloudIdentityCustomerId/")
            {
                Coverage::Maybe
            } else {
                Coverage::No
            }
        }
        Principal::ServiceAccount(e) => {
            if id.eq_ignore_ascii_case(&format!(
                "principal://iam.googleapis.com/projects/-/serviceAccounts/{e}"
            )) || id.eq_ignore_ascii_case(&format!("principal://goog/subject/{e}"))
            {
                Coverage::Yes
            } else if id.starts_with("principalSet://cloudresourcemanager.googleapis.com/")
                && id.ends_with("/type/ServiceAccount")
            {
                // The same identifier as in allow policies: match it on the caller's project.
                Principal::parse(id).covers_in(caller, h).coverage
            } else if id.starts_with("principalSet://goog/group/")
                || id.starts_with("principalSet://cloudresourcemanager.googleapis.com/")
                || id.starts_with("principalSet://goog/cloudIdentityCustomerId/")
            {
                Coverage::Maybe
            } else {
                Coverage::No
            }
        }
        // Workforce, workload and agent identities are written the same way in deny and allow
        // policies.
        Principal::Uri(_) => Principal::parse(id).covers_in(caller, h).coverage,
        _ => Coverage::No,
    }
}

impl RuleImpl for DenyPolicy {
    type State = State;

    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Cx) -> Check<State> {
        if cx.invoker_check_disabled() {
            return Check::NotApplicable(
                "the invoker check is disabled, so IAM is not consulted".into(),
            );
        }
        let Some(policies) = cx.ev.deny_policies.present() else {
            return Check::Skip(format!(
                "deny policies not available: {}",
                cx.ev.deny_policies.absence().unwrap_or_default()
            ));
        };
        let Some(caller) = cx.caller() else {
            return Check::Skip("the caller is unknown (pass --caller or --token)".into());
        };
        let mut hits = Vec::new();
        let h = cx.ev.hierarchy();
        for p in policies {
            for r in p.rules.iter().filter_map(|r| r.deny_rule.as_ref()) {
                let Some(perm) = r
                    .denied_permissions
                    .iter()
                    .find(|d| glob(d, DENY_PERMISSION))
                else {
                    continue;
                };
                if r.exception_permissions
                    .iter()
                    .any(|e| glob(e, DENY_PERMISSION))
                {
                    continue;
                }
                let Some((principal, cov)) = r
                    .denied_principals
                    .iter()
                    .map(|d| (d, v2_covers(d, &caller.principal, &h)))
                    .filter(|(_, c)| *c != Coverage::No)
                    .max_by_key(|(_, c)| *c == Coverage::Yes)
                else {
                    continue;
                };
                let excepted = r
                    .exception_principals
                    .iter()
                    .map(|e| v2_covers(e, &caller.principal, &h))
                    .max_by_key(|c| match c {
                        Coverage::Yes => 2,
                        Coverage::Maybe => 1,
                        Coverage::No => 0,
                    });
                if excepted == Some(Coverage::Yes) {
                    continue;
                }
                let mut why = None;
                if cov == Coverage::Maybe {
                    why = Some(format!("the caller may be in `{principal}`"));
                }
                if excepted == Some(Coverage::Maybe) {
                    why = Some("the caller may be among the exception principals".into());
                }
                if let Some(c) = &r.denial_condition {
                    why = Some(format!(
                        "the rule applies only when `{}` holds (resource tags, not in the evidence)",
                        c.expression
                    ));
                }
                hits.push(Hit {
                    policy: p.name.clone().unwrap_or_default(),
                    display: p.display_name.clone(),
                    principal: principal.clone(),
                    permission: perm.clone(),
                    sure: why.is_none(),
                    why,
                });
            }
        }
        if hits.is_empty() {
            return Check::Pass(format!(
                "no deny rule in {} deny policies matches the caller and `{DENY_PERMISSION}`",
                policies.len()
            ));
        }
        hits.sort_by_key(|h| !h.sure);
        Check::Fire(State { hits })
    }

    fn finding(&self, s: &State, cx: &Cx) -> Body {
        let h = &s.hits[0];
        let verdict = if h.sure {
            cap(Verdict::Confirmed, cx.iam_verdict_cap())
        } else {
            Verdict::Possible
        };
        let mut evidence = Vec::new();
        evidence.extend(cx.caller_line());
        for h in &s.hits {
            evidence.push(format!(
                "deny policy `{}`{}: denies `{}` to `{}`{}",
                h.policy,
                h.display
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default(),
                h.permission,
                h.principal,
                h.why
                    .as_deref()
                    .map(|w| format!("; {w}"))
                    .unwrap_or_default()
            ));
        }
        let mut explanation = "IAM evaluates deny policies before allow policies: a matching deny rule refuses the request with 403 whatever roles the caller holds, owner included. Granting more roles will not help.".to_string();
        if let Some(c) = cx.status_caveat(false) {
            explanation.push_str(&format!(" Note: {c}."));
        }
        Body {
            verdict,
            title: format!(
                "deny policy `{}` denies `{DENY_PERMISSION}` to the caller",
                short(&h.policy)
            ),
            explanation,
            evidence,
        }
    }

    fn fixes(&self, s: &State, cx: &Cx) -> Vec<Fix> {
        let h = &s.hits[0];
        let (attachment, id) = split_name(&h.policy);
        let caller_v2 = cx.caller().map(|c| match &c.principal {
            Principal::ServiceAccount(e) => {
                format!("principal://iam.googleapis.com/projects/-/serviceAccounts/{e}")
            }
            Principal::User(e) => format!("principal://goog/subject/{e}"),
            other => other.to_string(),
        });
        vec![
            Fix::command(
                "read the deny policy",
                vec![
                    "gcloud".into(),
                    "iam".into(),
                    "policies".into(),
                    "get".into(),
                    Arg::lit(id.clone()),
                    Arg::lit(format!("--attachment-point={attachment}")),
                    "--kind=denypolicies".into(),
                    "--format=json".into(),
                ],
                Safety::Safe,
            ),
            Fix::text(
                FixKind::Note,
                "ask the policy's owners for an exception",
                format!(
                    "Add `{}` to the rule's `exceptionPrincipals` (edit the JSON, then `gcloud iam policies update {id} --attachment-point={attachment} --kind=denypolicies --policy-file=POLICY.json`), or call with a principal the rule does not deny.",
                    caller_v2.unwrap_or_else(|| "<CALLER>".into())
                ),
                Safety::NeedsReview,
            ),
        ]
    }
}

fn short(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// `policies/ATTACHMENT/denypolicies/ID` → (gcloud's attachment point, ID).
fn split_name(name: &str) -> (String, String) {
    let rest = name.strip_prefix("policies/").unwrap_or(name);
    match rest.split_once("/denypolicies/") {
        Some((att, id)) => (ipd_model::paste::percent_decode(att), id.to_string()),
        None => ("<ATTACHMENT_POINT>".into(), short(name).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use ipd_model::Gathered;
    use serde_json::json;

    fn deny(principals: serde_json::Value, cond: bool) -> ipd_model::Evidence {
        let mut ev = base();
        ev.token = Some(sa_token(URL));
        let mut rule = json!({"deniedPrincipals": principals, "deniedPermissions": ["run.googleapis.com/routes.invoke"]});
        if cond {
            rule["denialCondition"] = json!({"expression": "resource.matchTag('1/env', 'prod')"});
        }
        ev.deny_policies = Gathered::Present(serde_json::from_value(json!([{"name": "policies/cloudresourcemanager.googleapis.com%2Forganizations%2F987/denypolicies/no-invoke", "rules": [{"denyRule": rule}]}])).unwrap());
        ev
    }

    #[test]
    fn matching_principal_fires() {
        let ev = deny(
            json!([format!(
                "principal://iam.googleapis.com/projects/-/serviceAccounts/{SA}"
            )]),
            false,
        );
        assert_eq!(fired(&run(&DenyPolicy, &ev)), Some(Verdict::Confirmed));
        assert_eq!(
            fired(&run(
                &DenyPolicy,
                &deny(json!(["principalSet://goog/public:all"]), true)
            )),
            Some(Verdict::Possible)
        );
        assert!(matches!(
            run(
                &DenyPolicy,
                &deny(json!(["principal://goog/subject/bob@example.com"]), false)
            ),
            crate::Outcome::Passed(_)
        ));
    }

    #[test]
    fn service_account_principal_sets_are_matched_on_the_callers_project() {
        // The caller's project `shop-prod` has number 123456789012 (the service's URL says so).
        let set = |n: &str| {
            json!([format!(
                "principalSet://cloudresourcemanager.googleapis.com/projects/{n}/type/ServiceAccount"
            )])
        };
        assert_eq!(
            fired(&run(&DenyPolicy, &deny(set("123456789012"), false))),
            Some(Verdict::Confirmed)
        );
        assert!(matches!(
            run(&DenyPolicy, &deny(set("999"), false)),
            crate::Outcome::Passed(_)
        ));
        // A folder the evidence does not place the project under: possible.
        let folder = json!([
            "principalSet://cloudresourcemanager.googleapis.com/folders/42/type/ServiceAccount"
        ]);
        assert_eq!(
            fired(&run(&DenyPolicy, &deny(folder, false))),
            Some(Verdict::Possible)
        );
    }

    #[test]
    fn globs() {
        assert!(glob("run.googleapis.com/*", DENY_PERMISSION));
        assert!(glob("*", DENY_PERMISSION));
        assert!(!glob("run.googleapis.com/jobs.*", DENY_PERMISSION));
        assert_eq!(
            split_name(
                "policies/cloudresourcemanager.googleapis.com%2Fprojects%2Fp/denypolicies/x"
            ),
            (
                "cloudresourcemanager.googleapis.com/projects/p".into(),
                "x".into()
            )
        );
    }
}
