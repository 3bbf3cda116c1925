use crate::cx::{Cx, GrantRef};
use crate::declare_rule;
use crate::fix::{Fix, FixKind, Safety};
use crate::rule::{Body, Check, RuleImpl, RuleMeta, Verdict};
use crate::rules::iam_common::{cap, completeness};

declare_rule! {
    /// ## What it checks
    /// Whether any binding in the service's IAM policy or the inherited project, folder and
    /// organization policies gives the caller a role with `run.routes.invoke`
    /// (`roles/run.invoker`, `run.servicesInvoker`, `run.developer`, `run.admin`, editor,
    /// owner, … and custom roles from `role-*.json`), directly or through `domain:`,
    /// `allAuthenticatedUsers` or `allUsers`. With `--expect-public` and no caller, the caller
    /// is `allUsers`. `principalSet://cloudresourcemanager.googleapis.com/{projects,folders,organizations}/N/type/ServiceAccount`
    /// members are matched on the caller service account's project number and the service
    /// project's ancestry; workforce and workload identity federation members
    /// (`principal://iam.googleapis.com/…/subject/…`, the pool's `principalSet://…/*`) and Cloud
    /// Run agent identities (`principal://agents.global.org-ORG.system.id.goog/resources/run/…`)
    /// by identifier.
    ///
    /// ## Why it breaks the request
    /// With the invoker check on, Cloud Run lets a request in only when the token's principal
    /// holds `run.routes.invoke` on the service. Without it the answer is 403 "The request was
    /// not authenticated" — the same text as for a missing token. `roles/viewer`,
    /// `roles/run.viewer` and `roles/run.jobsExecutor` do not carry the permission.
    ///
    /// ## Evidence used
    /// The caller (`--caller`, the token's `email`, `context.json`); every IAM policy in the
    /// bundle; custom role definitions. `confirmed` needs the service and project policies and
    /// an ancestor's; otherwise `likely`. A `group:` binding, a custom role whose definition
    /// is missing, a service-account principal set whose project number or ancestry is not in
    /// the evidence, or a federation pool's `group/…` or `attribute.NAME/VALUE` set (membership
    /// is decided by the identity provider at sign-in) that might cover the caller makes it
    /// `possible`, with how to check.
    ///
    /// ## Example
    /// `fixtures/missing-binding-sa-not-bound-anywhere`
    ///
    /// ## Fix
    /// Grant `roles/run.invoker` on the service to the caller — on the service, not the
    /// project, to keep the grant narrow. For a public service, disable the invoker check
    /// (recommended) or bind `allUsers`.
    ///
    /// ## Fix safety
    /// Every fix widens access: review the member (and for public access, that the service
    /// is meant to be public).
    ///
    /// ## References
    /// - https://cloud.google.com/run/docs/securing/managing-access
    /// - https://cloud.google.com/run/docs/authenticating/public
    /// - https://cloud.google.com/run/docs/troubleshooting (403 section)
    pub struct MissingInvokerBinding {
        code: "IPD020",
        name: "missing-invoker-binding",
        cause: "missing_invoker_binding",
        title: "no binding gives the caller `run.routes.invoke` on the service",
        severity: High,
    }
}

pub struct State {
    maybe: Vec<GrantRef>,
    public: bool,
}

impl RuleImpl for MissingInvokerBinding {
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
        if cx.service().is_some_and(|s| s.iap_enabled) {
            return Check::NotApplicable(
                "IAP is enabled: IAP's service agent, not the end user, invokes the service (see IPD005)".into(),
            );
        }
        let Some(caller) = cx.caller() else {
            return Check::Skip("the caller is unknown: pass --caller or --token, or add token.txt or context.json to the bundle".into());
        };
        if !cx.ev.service_policy.is_present() && !cx.ev.project_policy.is_present() {
            return Check::Skip(format!(
                "neither the service's nor the project's IAM policy is available ({})",
                cx.ev.service_policy.absence().unwrap_or_default()
            ));
        }
        if let Some(g) = cx.iam.definite.first() {
            return Check::Pass(format!("granted by {}", g.describe()));
        }
        if let Some(g) = cx.iam.conditional.first() {
            return Check::Skip(format!(
                "the caller's only grants are conditional ({}); whether the condition held is not evaluated here",
                g.describe()
            ));
        }
        Check::Fire(State {
            maybe: cx.iam.maybe.clone(),
            public: caller.public,
        })
    }

    fn finding(&self, s: &State, cx: &Cx) -> Body {
        let svc = cx.service_name_or("SERVICE");
        let caller = cx
            .caller()
            .map(|c| c.principal.to_string())
            .unwrap_or_default();
        let (base, gap) = completeness(cx);
        let verdict = if s.maybe.is_empty() {
            cap(base, cx.iam_verdict_cap())
        } else {
            Verdict::Possible
        };
        let mut evidence = Vec::new();
        evidence.extend(cx.caller_line());
        evidence.extend(cx.iam_coverage_lines());
        for (level, g) in cx.ev.policies() {
            if let Some(p) = g.present() {
                let invokers: Vec<String> = p
                    .bindings
                    .iter()
                    .filter(|b| {
                        ipd_model::roles::grants_invoke(&b.role, &cx.ev.custom_roles)
                            == ipd_model::roles::Grants::Yes
                    })
                    .flat_map(|b| b.members.iter().map(move |m| format!("`{m}` ({})", b.role)))
                    .collect();
                if matches!(level, ipd_model::iam::Level::Service(_)) || !invokers.is_empty() {
                    evidence.push(format!(
                        "{level}: {}",
                        if invokers.is_empty() {
                            "no member holds a role with `run.routes.invoke`".to_string()
                        } else {
                            format!("invoke granted to {}", invokers.join(", "))
                        }
                    ));
                }
            }
        }
        for g in &s.maybe {
            evidence.push(format!(
                "binding {} might apply: {}",
                g.describe(),
                g.why_maybe.as_deref().unwrap_or("")
            ));
        }
        if let Some(st) = cx.status() {
            evidence.push(format!("the client saw {st}"));
        }
        let (title, mut explanation) = if s.public {
            (
                format!("service `{svc}` is not public: `allUsers` holds no role with `run.routes.invoke`"),
                "The owner wants the service public, but its invoker check is on and no binding grants `allUsers` a role with `run.routes.invoke`, so every request without an authorized ID token gets 403.".to_string(),
            )
        } else {
            (
                format!("`{caller}` holds no role with `run.routes.invoke` on service `{svc}`"),
                format!(
                    "With the invoker check on, Cloud Run admits a request only when the token's principal holds `run.routes.invoke` on the service (through the service's own policy or an inherited project, folder or organization grant). No binding in the policies read gives it to `{caller}`, so the request gets 403 \"The request was not authenticated\"."
                ),
            )
        };
        if !s.maybe.is_empty() {
            explanation.push_str(
                " Some bindings might cover the caller (see evidence); check them before granting.",
            );
        }
        if let Some(g) = gap {
            explanation.push_str(&format!(" Caveat: {g}."));
        }
        use ipd_model::principal::UriKind;
        match cx.caller().and_then(|c| c.principal.uri_kind()) {
            Some(UriKind::Agent { .. }) => explanation.push_str(" The caller is a Cloud Run agent identity: bind that identity itself (its service's runtime service account is another principal); whether agent identities present ID tokens to a `run.app` URL is not documented."),
            Some(UriKind::Workforce { .. } | UriKind::Workload { .. }) => explanation.push_str(" The caller is a federated identity: the documented way for it to call Cloud Run is to impersonate a service account that holds the role (`gcloud auth print-identity-token --impersonate-service-account=SA`); whether Cloud Run accepts a federated token directly is not documented."),
            _ => {}
        }
        if let Some(c) = cx.status_caveat(false) {
            explanation.push_str(&format!(" Note: {c}."));
        }
        Body {
            verdict,
            title,
            explanation,
            evidence,
        }
    }

    fn fixes(&self, s: &State, cx: &Cx) -> Vec<Fix> {
        let svc = cx.service_name_or("SERVICE");
        let mut v = Vec::new();
        if s.public {
            v.push(Fix::command(
                format!("make `{svc}` public by disabling the invoker IAM check (recommended)"),
                cx.update_argv(&["--no-invoker-iam-check"]),
                Safety::NeedsReview,
            ));
            v.push(Fix::command(
                "or grant `roles/run.invoker` to `allUsers`",
                cx.grant_argv("allUsers", "roles/run.invoker"),
                Safety::NeedsReview,
            ));
            v.push(Fix::text(
                FixKind::Terraform,
                "the same in Terraform",
                cx.service_terraform("invoker_iam_disabled = true"),
                Safety::NeedsReview,
            ));
            return v;
        }
        let caller = cx
            .caller()
            .map(|c| c.principal.to_string())
            .unwrap_or_else(|| "<MEMBER>".into());
        for g in s.maybe.iter().filter(|g| g.member.starts_with("group:")) {
            let group = g.member.trim_start_matches("group:");
            if let Some(email) = cx
                .caller()
                .and_then(|c| c.principal.email().map(str::to_string))
            {
                v.push(Fix::note(
                    format!("check whether `{email}` is in `{group}`"),
                    format!("gcloud identity groups memberships check-transitive-membership --group-email={group} --member-email={email}"),
                ));
            }
        }
        // Principal sets (service accounts under a resource, federated pools): say how to
        // check membership rather than assume it.
        for g in s
            .maybe
            .iter()
            .filter(|g| g.member.starts_with("principalSet://"))
        {
            if let Some(why) = &g.why_maybe {
                v.push(Fix::note(
                    format!("check whether the caller is in `{}`", g.member),
                    why.clone(),
                ));
            }
        }
        v.push(Fix::command(
            format!("grant `roles/run.invoker` on service `{svc}` to `{caller}`"),
            cx.grant_argv(&caller, "roles/run.invoker"),
            Safety::NeedsReview,
        ));
        v.push(Fix::text(
            FixKind::Terraform,
            "the same in Terraform",
            cx.grant_terraform(&caller, "roles/run.invoker"),
            Safety::NeedsReview,
        ));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use serde_json::json;

    fn ev_with(
        service_policy: serde_json::Value,
        project_policy: serde_json::Value,
    ) -> ipd_model::Evidence {
        let mut ev = base();
        ev.service_policy = policy(service_policy);
        ev.project_policy = policy(project_policy);
        ev.token = Some(sa_token(URL));
        ev
    }

    #[test]
    fn unbound_caller_fires_likely_without_ancestors() {
        let ev = ev_with(
            json!({"bindings": [{"role": "roles/run.invoker", "members": ["serviceAccount:other@shop-prod.iam.gserviceaccount.com"]}]}),
            json!({"bindings": [{"role": "roles/viewer", "members": [format!("serviceAccount:{SA}")]}]}),
        );
        assert_eq!(
            fired(&run(&MissingInvokerBinding, &ev)),
            Some(Verdict::Likely)
        );
    }

    #[test]
    fn confirmed_with_ancestors_and_possible_on_401() {
        let mut ev = ev_with(json!({"etag": "ACAB"}), json!({}));
        ev.ancestor_policies.push((
            ipd_model::iam::Level::Organization("1".into()),
            policy(json!({})),
        ));
        assert_eq!(
            fired(&run(&MissingInvokerBinding, &ev)),
            Some(Verdict::Confirmed)
        );
        ev.inputs.status = Some(401);
        assert_eq!(
            fired(&run(&MissingInvokerBinding, &ev)),
            Some(Verdict::Possible)
        );
    }

    #[test]
    fn project_level_developer_and_domain_grant() {
        let ev = ev_with(
            json!({}),
            json!({"bindings": [{"role": "roles/run.developer", "members": [format!("serviceAccount:{SA}")]}]}),
        );
        assert!(matches!(
            run(&MissingInvokerBinding, &ev),
            crate::Outcome::Passed(_)
        ));
        let mut ev = ev_with(
            json!({"bindings": [{"role": "roles/run.invoker", "members": ["domain:shop.example.com"]}]}),
            json!({}),
        );
        ev.inputs.caller = Some("user:alice@shop.example.com".into());
        assert!(matches!(
            run(&MissingInvokerBinding, &ev),
            crate::Outcome::Passed(_)
        ));
    }

    #[test]
    fn group_binding_is_possible() {
        let ev = ev_with(
            json!({"bindings": [{"role": "roles/run.invoker", "members": ["group:callers@shop.example.com"]}]}),
            json!({}),
        );
        assert_eq!(
            fired(&run(&MissingInvokerBinding, &ev)),
            Some(Verdict::Possible)
        );
    }

    #[test]
    fn unknown_caller_skips() {
        let mut ev = ev_with(json!({}), json!({}));
        ev.token = None;
        assert!(matches!(
            run(&MissingInvokerBinding, &ev),
            crate::Outcome::Skipped(_)
        ));
    }

    const SET_OF: &str = "principalSet://cloudresourcemanager.googleapis.com";

    #[test]
    fn service_account_set_of_the_callers_project_grants() {
        // The caller `checkout@shop-prod` is in project number 123456789012 (the URL says so).
        let ev = ev_with(
            json!({"bindings": [{"role": "roles/run.invoker", "members": [format!("{SET_OF}/projects/123456789012/type/ServiceAccount")]}]}),
            json!({}),
        );
        assert!(matches!(
            run(&MissingInvokerBinding, &ev),
            crate::Outcome::Passed(_)
        ));
        let ev = ev_with(
            json!({"bindings": [{"role": "roles/run.invoker", "members": [format!("{SET_OF}/projects/555/type/ServiceAccount")]}]}),
            json!({}),
        );
        assert!(fired(&run(&MissingInvokerBinding, &ev)).is_some());
    }

    #[test]
    fn service_account_set_of_an_unknown_ancestry_is_possible_with_how_to_check() {
        let mut ev = ev_with(
            json!({"bindings": [{"role": "roles/run.invoker", "members": [format!("{SET_OF}/folders/445566778899/type/ServiceAccount")]}]}),
            json!({}),
        );
        ev.inputs.caller = Some("serviceAccount:batch@shop-data.iam.gserviceaccount.com".into());
        let out = run(&MissingInvokerBinding, &ev);
        assert_eq!(fired(&out), Some(Verdict::Possible));
        let crate::Outcome::Fired(_, fixes) = out else {
            unreachable!()
        };
        assert!(
            fixes.iter().any(|f| f
                .rendered()
                .contains("gcloud projects get-ancestors shop-data")),
            "{fixes:?}"
        );
    }

    #[test]
    fn workforce_attribute_set_is_possible_never_assumed() {
        let pool = "locations/global/workforcePools/partners";
        let mut ev = ev_with(
            json!({"bindings": [{"role": "roles/run.invoker", "members": [format!("principalSet://iam.googleapis.com/{pool}/attribute.department/sales")]}]}),
            json!({}),
        );
        ev.token = None;
        ev.inputs.caller = Some(format!(
            "principal://iam.googleapis.com/{pool}/subject/bob@partner.example"
        ));
        assert_eq!(
            fired(&run(&MissingInvokerBinding, &ev)),
            Some(Verdict::Possible)
        );
        // The pool's `*` is every identity in it.
        ev.service_policy = policy(
            json!({"bindings": [{"role": "roles/run.invoker", "members": [format!("principalSet://iam.googleapis.com/{pool}/*")]}]}),
        );
        assert!(matches!(
            run(&MissingInvokerBinding, &ev),
            crate::Outcome::Passed(_)
        ));
    }
}
