use ipd_model::audit::{PublicAttempt, public_attempts};
use ipd_model::orgpolicy::{ALLOW_POLICY_RESOURCE, CustomConstraint};

use crate::cx::{Cx, public_binding};
use crate::declare_rule;
use crate::fix::{Arg, Fix, FixKind, Safety};
use crate::rule::{Body, Check, RuleImpl, RuleMeta, Verdict};

declare_rule! {
    /// ## What it checks
    /// The owner wants the service public (an attempt in the audit log, `--expect-public`, or
    /// `context.json`), `allUsers` is not bound, the invoker check is on, and a custom
    /// org-policy constraint on `iam.googleapis.com/AllowPolicy` refuses the public grant:
    /// the refused `SetIamPolicy` says `Operation denied by custom org policies: [...]`
    /// (confirmed, naming the constraint), or a custom constraint definition in
    /// `org-policy-custom-*.json` (read live from the organization's custom constraints)
    /// denies `allUsers` / `allAuthenticatedUsers` by name and the effective policy enforces it
    /// (confirmed), allows only listed members and is enforced (likely: its CEL is read, not
    /// evaluated), or its enforcement is not in the evidence (possible).
    ///
    /// ## Why it breaks the request
    /// Custom constraints on IAM allow policies are checked on every `SetIamPolicy`: one that
    /// refuses public members makes `--allow-unauthenticated` (and `add-iam-policy-binding
    /// --member=allUsers`) fail, so the service stays private and anonymous requests get 403.
    /// Domain restricted sharing is one such mechanism; a custom constraint is another, with
    /// its own name and its own exception process.
    ///
    /// ## Evidence used
    /// Admin Activity audit entries for the service (`protoPayload.status.message`), custom
    /// constraint definitions (`org-policy-custom-*.json`), the effective org policies
    /// (`org-policies.json`), the service's IAM policy and invoker-check setting.
    ///
    /// ## Example
    /// `fixtures/public-blocked-by-custom-constraint-audit`
    /// (and `fixtures/public-blocked-by-custom-constraint-definition` for a definition)
    ///
    /// ## Fix
    /// Disable the invoker IAM check (custom constraints on `AllowPolicy` govern bindings, not
    /// that switch), unless `run.managed.requireInvokerIam` is enforced too; or ask the
    /// organization's policy administrators for an exception to the named constraint.
    ///
    /// ## Fix safety
    /// Makes the service reachable by anyone: review that it is meant to be public.
    ///
    /// ## References
    /// - https://cloud.google.com/iam/docs/org-policy-custom-constraints
    /// - https://cloud.google.com/run/docs/authenticating/public
    pub struct PublicAccessBlockedByCustomConstraint {
        code: "IPD032",
        name: "public-access-blocked-by-custom-constraint",
        cause: "public_access_blocked_by_custom_constraint",
        title: "a custom org-policy constraint on IAM allow policies refuses the `allUsers` grant a public service needs",
        severity: Critical,
        needs_refusal: false,
    }
}

pub enum State {
    /// The audit log shows the refusal, naming these constraints.
    Refused {
        attempt: PublicAttempt,
        constraints: Vec<String>,
    },
    /// A definition that refuses public grants, and whether the policy enforcing it was seen.
    Defined {
        constraint: CustomConstraint,
        enforced: Option<bool>,
    },
}

impl State {
    fn names(&self) -> Vec<String> {
        match self {
            State::Refused { constraints, .. } => constraints.clone(),
            State::Defined { constraint, .. } => vec![constraint.short_name().to_string()],
        }
    }
}

/// The effective enforcement of custom constraint `custom.NAME`, if the org policies hold it.
fn enforcement(cx: &Cx, short: &str) -> Option<bool> {
    cx.ev.constraint(short).map(|e| e.enforced)
}

impl RuleImpl for PublicAccessBlockedByCustomConstraint {
    type State = State;

    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Cx) -> Check<State> {
        if !cx.facts.expect_public {
            return Check::NotApplicable(
                "nothing says the owner wants the service public (audit log, --expect-public, context.json)".into(),
            );
        }
        if cx.invoker_check_disabled() {
            return Check::NotApplicable(
                "the invoker check is disabled: the service is already public".into(),
            );
        }
        if let Some(role) = public_binding(cx.ev) {
            return Check::Pass(format!("`allUsers` already holds `{role}` on the service"));
        }
        let service = cx.ev.service_name();
        if let Some(logs) = cx.ev.logs.present() {
            let refused = public_attempts(logs, service.as_deref())
                .into_iter()
                .filter_map(|a| {
                    let names = a.status.as_ref()?.custom_constraints();
                    (!names.is_empty()).then_some((a, names))
                })
                .next_back();
            if let Some((attempt, constraints)) = refused {
                return Check::Fire(State::Refused {
                    attempt,
                    constraints,
                });
            }
        }
        let blocking: Vec<&CustomConstraint> = cx
            .ev
            .custom_constraints
            .iter()
            .filter(|c| c.refuses_public_grant() == Some(true))
            .collect();
        // An enforced one first, then one whose enforcement is unknown; a definition whose
        // policy is read and not enforced refuses nothing.
        let pick = blocking
            .iter()
            .find(|c| enforcement(cx, c.short_name()) == Some(true))
            .or_else(|| {
                blocking
                    .iter()
                    .find(|c| enforcement(cx, c.short_name()).is_none())
            });
        if let Some(c) = pick {
            return Check::Fire(State::Defined {
                constraint: (*c).clone(),
                enforced: enforcement(cx, c.short_name()),
            });
        }
        if !blocking.is_empty() {
            return Check::Pass(
                "the custom constraints that would refuse `allUsers` are not enforced here".into(),
            );
        }
        if cx.ev.custom_constraints.is_empty() && !cx.ev.logs.is_present() {
            return Check::Skip(
                "no audit logs and no custom constraint definitions (org-policy-custom-*.json)"
                    .into(),
            );
        }
        Check::Pass(format!(
            "no refusal by a custom org policy in the audit logs, and no custom constraint on `{ALLOW_POLICY_RESOURCE}` refusing public members"
        ))
    }

    fn finding(&self, s: &State, cx: &Cx) -> Body {
        let svc = cx.service_name_or("SERVICE");
        let names = s.names();
        let named = names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut evidence = Vec::new();
        let verdict = match s {
            State::Refused { attempt, .. } => {
                evidence.push(attempt.describe());
                Verdict::Confirmed
            }
            State::Defined {
                constraint,
                enforced,
            } => {
                evidence.push(format!(
                    "custom constraint `{}` on `{ALLOW_POLICY_RESOURCE}` ({} {}): `{}`",
                    constraint.name,
                    constraint.action_type.as_deref().unwrap_or("?"),
                    constraint.method_types.join("/"),
                    constraint.condition.as_deref().unwrap_or("")
                ));
                match enforced {
                    Some(true) => {
                        evidence.push(format!(
                            "effective org policy `{}`: enforced",
                            constraint.short_name()
                        ));
                        // Its CEL is read, not evaluated: a DENY naming the public members
                        // says so plainly; an allow-list only by what it leaves out.
                        if constraint.denies_public_by_name() {
                            Verdict::Confirmed
                        } else {
                            Verdict::Likely
                        }
                    }
                    _ => {
                        evidence.push(format!(
                            "whether `{}` is enforced on this project is not in the evidence (org-policies.json)",
                            constraint.short_name()
                        ));
                        Verdict::Possible
                    }
                }
            }
        };
        if let Some(origin) = cx.intent_origin() {
            evidence.push(format!("the owner wants the service public: {origin}"));
        }
        evidence.push(format!(
            "service `{svc}`: invoker check on, no `allUsers` binding"
        ));
        if let Some(st) = cx.status() {
            evidence.push(format!("the client saw {st}"));
        }
        Body {
            verdict,
            title: format!(
                "custom org-policy constraint {named} refuses the `allUsers` grant on `{svc}`"
            ),
            explanation: "The owner wants the service public, but a custom organization policy constraint on IAM allow policies refuses bindings for `allUsers` / `allAuthenticatedUsers` (\"Operation denied by custom org policies\"), so the service stayed private and anonymous requests get 403. Such constraints govern bindings, not the invoker-check switch: disabling the invoker IAM check makes the service public without a binding.".into(),
            evidence,
        }
    }

    fn fixes(&self, s: &State, cx: &Cx) -> Vec<Fix> {
        let mut v = vec![Fix::command(
            "disable the invoker IAM check to make the service public",
            cx.update_argv(&["--no-invoker-iam-check"]),
            Safety::NeedsReview,
        )];
        v.push(Fix::text(
            FixKind::Terraform,
            "the same in Terraform",
            cx.service_terraform("invoker_iam_disabled = true"),
            Safety::NeedsReview,
        ));
        for n in s.names() {
            v.push(Fix::command(
                format!("read the effective policy of `{n}` on the project"),
                vec![
                    "gcloud".into(),
                    "org-policies".into(),
                    "describe".into(),
                    Arg::lit(n),
                    "--effective".into(),
                    cx.project_flag(),
                ],
                Safety::Safe,
            ));
        }
        v.push(Fix::note(
            "or ask for an exception",
            "Ask the organization's policy administrators for a project-level exception to the named constraint (a policy on the project with `enforce: false`, or a condition on a tag).",
        ));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use ipd_model::Gathered;
    use serde_json::json;

    fn refused(message: &str, code: i64) -> ipd_model::logs::LogEntry {
        serde_json::from_value(json!({
            "insertId": "-x1y2z3c4d5e",
            "logName": "projects/shop-prod/logs/cloudaudit.googleapis.com%2Factivity",
            "timestamp": "2026-11-20T09:58:12Z",
            "protoPayload": {
                "status": {"code": code, "message": message},
                "authenticationInfo": {"principalEmail": "ops@shop.example.com"},
                "methodName": "google.cloud.run.v2.Services.SetIamPolicy",
                "resourceName": "projects/shop-prod/locations/europe-west1/services/orders-api",
                "request": {"policy": {"bindings": [{"role": "roles/run.invoker", "members": ["allUsers"]}]}}
            }
        }))
        .unwrap()
    }

    fn constraint(action: &str, condition: &str) -> CustomConstraint {
        serde_json::from_value(json!({
            "name": "organizations/123/customConstraints/custom.noPublicRun",
            "resourceTypes": ["iam.googleapis.com/AllowPolicy"],
            "methodTypes": ["CREATE", "UPDATE"],
            "condition": condition,
            "actionType": action,
            "displayName": "No public grants"
        }))
        .unwrap()
    }

    #[test]
    fn the_audit_refusal_names_the_constraint() {
        let mut ev = base();
        ev.service_policy = policy(json!({"etag": "ACAB"}));
        ev.logs = Gathered::Present(vec![refused(
            "Operation denied by custom org policies: [\"customConstraints/custom.noPublicRun\": \"Public grants are not allowed\"]",
            9,
        )]);
        let o = run(&PublicAccessBlockedByCustomConstraint, &ev);
        assert_eq!(fired(&o), Some(Verdict::Confirmed));
        let crate::Outcome::Fired(b, _) = o else {
            unreachable!()
        };
        assert!(b.title.contains("`custom.noPublicRun`"), "{}", b.title);
    }

    #[test]
    fn a_drs_refusal_is_not_a_custom_constraint() {
        let mut ev = base();
        ev.logs = Gathered::Present(vec![refused(
            "One or more users named in the policy do not belong to a permitted customer.",
            9,
        )]);
        assert!(matches!(
            run(&PublicAccessBlockedByCustomConstraint, &ev),
            crate::Outcome::Passed(_)
        ));
    }

    #[test]
    fn a_definition_fires_by_its_enforcement() {
        let mut ev = base();
        ev.inputs.expect_public = true;
        ev.custom_constraints = vec![constraint(
            "DENY",
            "resource.bindings.exists(b, MemberSubjectMatches(b.members, ['allUsers', 'allAuthenticatedUsers']))",
        )];
        assert_eq!(
            fired(&run(&PublicAccessBlockedByCustomConstraint, &ev)),
            Some(Verdict::Possible)
        );
        ev.org_policies = Gathered::Present(
            serde_json::from_value(json!([{"name": "projects/1/policies/custom.noPublicRun", "spec": {"rules": [{"enforce": true}]}}])).unwrap(),
        );
        assert_eq!(
            fired(&run(&PublicAccessBlockedByCustomConstraint, &ev)),
            Some(Verdict::Confirmed)
        );
        // An allow-list that leaves the public out: likely.
        let denying = ev.custom_constraints.clone();
        ev.custom_constraints = vec![constraint(
            "ALLOW",
            "resource.bindings.all(b, b.members.all(m, MemberSubjectMatches(m, ['domain:shop.example.com'])))",
        )];
        assert_eq!(
            fired(&run(&PublicAccessBlockedByCustomConstraint, &ev)),
            Some(Verdict::Likely)
        );
        ev.custom_constraints = denying;
        ev.org_policies = Gathered::Present(
            serde_json::from_value(json!([{"name": "projects/1/policies/custom.noPublicRun", "spec": {"rules": [{"enforce": false}]}}])).unwrap(),
        );
        assert!(matches!(
            run(&PublicAccessBlockedByCustomConstraint, &ev),
            crate::Outcome::Passed(_)
        ));
        // A constraint about something else (role names only) refuses nothing public.
        ev.custom_constraints = vec![constraint(
            "DENY",
            "resource.bindings.exists(b, RoleNameMatches(b.role, ['roles/owner']))",
        )];
        ev.org_policies = Gathered::missing("none");
        assert!(matches!(
            run(&PublicAccessBlockedByCustomConstraint, &ev),
            crate::Outcome::Skipped(_) | crate::Outcome::Passed(_)
        ));
    }
}
