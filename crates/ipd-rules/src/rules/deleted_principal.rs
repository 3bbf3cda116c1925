use ipd_model::Principal;
use ipd_model::roles::{Grants, grants_invoke};

use crate::cx::{Cx, GrantRef};
use crate::declare_rule;
use crate::fix::{Arg, Fix, Safety};
use crate::rule::{Body, Check, RuleImpl, RuleMeta, Verdict};
use crate::rules::iam_common::cap;

declare_rule! {
    /// ## What it checks
    /// Whether the binding that should let the caller in names a deleted principal —
    /// `deleted:serviceAccount:EMAIL?uid=ID` — while no live binding grants the caller.
    ///
    /// ## Why it breaks the request
    /// When a service account is deleted, IAM rewrites its bindings to the `deleted:` form.
    /// A service account re-created with the same email is a new principal (a new unique
    /// ID): the old binding does not apply to it, so the caller gets 403 although the
    /// policy seems to list it. When the token's `sub` (the account's unique ID) differs from
    /// the `uid` in the binding, the account was re-created.
    ///
    /// ## Evidence used
    /// Service, project, folder and organization IAM policies; the caller and the token's
    /// `sub`. With no caller known, any `deleted:` member on an invoker binding is reported
    /// as `possible` for a 403.
    ///
    /// ## Example
    /// `fixtures/deleted-principal-sa-recreated`
    ///
    /// ## Fix
    /// Remove the `deleted:` binding and grant the role to the current principal; or, if the
    /// account was deleted by mistake and not re-created, undelete it within 30 days
    /// (`gcloud iam service-accounts undelete UNIQUE_ID`), which restores the binding.
    ///
    /// ## Fix safety
    /// Granting the role to the new account gives it invoke access: review.
    ///
    /// ## References
    /// - https://cloud.google.com/iam/docs/principal-identifiers (deleted principals)
    /// - https://cloud.google.com/iam/docs/service-accounts-delete-undelete
    pub struct DeletedPrincipal {
        code: "IPD022",
        name: "deleted-principal",
        cause: "deleted_principal",
        title: "the invoker binding names a deleted principal",
        severity: High,
    }
}

pub struct State {
    bindings: Vec<GrantRef>,
    known_caller: bool,
}

impl RuleImpl for DeletedPrincipal {
    type State = State;

    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Cx) -> Check<State> {
        if cx.invoker_check_disabled() {
            return Check::NotApplicable("the invoker check is disabled".into());
        }
        if cx.iam.read.is_empty() {
            return Check::Skip("no IAM policy is available".into());
        }
        match cx.caller() {
            Some(c) if !c.public => {
                if !cx.iam.definite.is_empty() {
                    return Check::Pass("a live binding grants the caller".into());
                }
                if cx.iam.deleted.is_empty() {
                    return Check::Pass(
                        "no invoker binding names a deleted principal with the caller's email"
                            .into(),
                    );
                }
                Check::Fire(State {
                    bindings: cx.iam.deleted.clone(),
                    known_caller: true,
                })
            }
            Some(_) => Check::NotApplicable("the caller is the public (allUsers)".into()),
            None => {
                let all = deleted_invoker_members(cx);
                if all.is_empty() {
                    Check::Pass("no invoker binding names a deleted principal".into())
                } else if cx.status() == Some(403) || cx.status().is_none() {
                    Check::Fire(State {
                        bindings: all,
                        known_caller: false,
                    })
                } else {
                    Check::NotApplicable(
                        "deleted principals on invoker bindings, but the status is not 403".into(),
                    )
                }
            }
        }
    }

    fn finding(&self, s: &State, cx: &Cx) -> Body {
        let first = &s.bindings[0];
        let member = Principal::parse(&first.member);
        let uid = match &member {
            Principal::Deleted { uid, .. } => uid.clone(),
            _ => None,
        };
        let mut evidence: Vec<String> = s
            .bindings
            .iter()
            .map(|g| format!("binding {}", g.describe()))
            .collect();
        let sub = cx
            .token()
            .and_then(|t| t.claims.as_ref())
            .and_then(|c| c.sub.clone());
        let recreated = matches!((&uid, &sub), (Some(u), Some(s)) if u != s);
        if let (Some(u), Some(sb)) = (&uid, &sub) {
            evidence.push(format!(
                "binding uid `{u}`, token `sub` `{sb}`{}",
                if recreated {
                    ": a different account with the same email"
                } else {
                    ""
                }
            ));
        }
        evidence.extend(cx.caller_line());
        let verdict = if s.known_caller {
            cap(Verdict::Confirmed, cx.iam_verdict_cap())
        } else {
            Verdict::Possible
        };
        let mut explanation = if recreated {
            "The service account was deleted and re-created with the same email. IAM rewrote the old binding to `deleted:…?uid=OLD_ID`, and the new account (a different unique ID, the token's `sub`) is not covered by it.".to_string()
        } else {
            "The binding names a deleted principal (`deleted:…?uid=…`). It grants nothing to a live account with the same email: either the account was deleted (its tokens would fail anyway) or it was re-created, which makes it a new principal.".to_string()
        };
        if !s.known_caller {
            explanation.push_str(" The caller is unknown, so whether this binding was meant for it cannot be decided: pass --caller or --token.");
        }
        if let Some(c) = cx.status_caveat(false) {
            explanation.push_str(&format!(" Note: {c}."));
        }
        let inner = match &member {
            Principal::Deleted { inner, .. } => inner.to_string(),
            other => other.to_string(),
        };
        Body {
            verdict,
            title: format!(
                "the `{}` binding names deleted principal `{inner}`",
                first.role
            ),
            explanation,
            evidence,
        }
    }

    fn fixes(&self, s: &State, cx: &Cx) -> Vec<Fix> {
        let first = &s.bindings[0];
        let inner = match Principal::parse(&first.member) {
            Principal::Deleted { inner, .. } => inner.to_string(),
            other => other.to_string(),
        };
        let mut v = Vec::new();
        if matches!(first.level, ipd_model::iam::Level::Service(_)) {
            v.push(Fix::command(
                "remove the binding of the deleted principal",
                vec![
                    "gcloud".into(),
                    "run".into(),
                    "services".into(),
                    "remove-iam-policy-binding".into(),
                    cx.service_arg(),
                    cx.region_flag(),
                    cx.project_flag(),
                    Arg::lit(format!("--member={}", first.member)),
                    Arg::lit(format!("--role={}", first.role)),
                ],
                Safety::Safe,
            ));
        }
        v.push(Fix::command(
            format!(
                "grant `roles/run.invoker` to the current `{inner}` on service `{}`",
                cx.service_name_or("SERVICE")
            ),
            cx.grant_argv(&inner, "roles/run.invoker"),
            Safety::NeedsReview,
        ));
        v.push(Fix::note(
            "if the account was deleted by mistake and not re-created",
            "Undelete it within 30 days: `gcloud iam service-accounts undelete UNIQUE_ID` (the uid in the binding); its bindings then revert to the live form.",
        ));
        v
    }
}

fn deleted_invoker_members(cx: &Cx) -> Vec<GrantRef> {
    let mut out = Vec::new();
    for (level, g) in cx.ev.policies() {
        let Some(p) = g.present() else { continue };
        for b in &p.bindings {
            if grants_invoke(&b.role, &cx.ev.custom_roles) != Grants::Yes {
                continue;
            }
            for m in b.members.iter().filter(|m| m.starts_with("deleted:")) {
                out.push(GrantRef {
                    level: level.clone(),
                    role: b.role.clone(),
                    member: m.clone(),
                    condition: None,
                    why_maybe: None,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use serde_json::json;

    #[test]
    fn recreated_sa_fires() {
        let mut ev = base();
        ev.service_policy = policy(
            json!({"bindings": [{"role": "roles/run.invoker", "members": [format!("deleted:serviceAccount:{SA}?uid=999")]}]}),
        );
        ev.token = Some(sa_token(URL));
        assert_eq!(
            fired(&run(&DeletedPrincipal, &ev)),
            Some(Verdict::Confirmed)
        );
    }

    #[test]
    fn live_binding_passes() {
        let mut ev = base();
        ev.service_policy = policy(
            json!({"bindings": [{"role": "roles/run.invoker", "members": [format!("deleted:serviceAccount:{SA}?uid=999"), format!("serviceAccount:{SA}")]}]}),
        );
        ev.token = Some(sa_token(URL));
        assert!(matches!(
            run(&DeletedPrincipal, &ev),
            crate::Outcome::Passed(_)
        ));
    }

    #[test]
    fn deleted_workforce_principal_fires_for_that_identity() {
        let who = "principal://iam.googleapis.com/locations/global/workforcePools/partners/subject/bob@partner.example";
        let mut ev = base();
        ev.service_policy = policy(
            json!({"bindings": [{"role": "roles/run.invoker", "members": [format!("deleted:{who}")]}]}),
        );
        ev.inputs.caller = Some(who.into());
        assert!(fired(&run(&DeletedPrincipal, &ev)).is_some());
        // Another identity of the same pool is not the deleted one.
        ev.inputs.caller = Some(who.replace("bob@", "eve@"));
        assert!(matches!(
            run(&DeletedPrincipal, &ev),
            crate::Outcome::Passed(_)
        ));
    }
}
