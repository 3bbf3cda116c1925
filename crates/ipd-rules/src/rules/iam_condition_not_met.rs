use crate::conditions::{Outcome as Cond, RequestAttrs, evaluate};
use crate::cx::{Cx, GrantRef};
use crate::declare_rule;
use crate::fix::{Fix, FixKind, Safety};
use crate::rule::{Body, Check, RuleImpl, RuleMeta, Verdict};
use crate::rules::iam_common::cap;

declare_rule! {
    /// ## What it checks
    /// When the caller's only grants of `run.routes.invoke` are conditional bindings, evaluates
    /// each IAM Condition (CEL) for the failing request: `request.time`, `request.host`,
    /// `request.path`, string functions (`startsWith`, `endsWith`, `matches`), `&&`, `||`,
    /// `!`, comparisons and timestamps.
    ///
    /// ## Why it breaks the request
    /// A conditional binding grants only while its condition is true: a path condition for
    /// `/admin` does not let the caller call `/orders`; an expiring grant stops at its
    /// timestamp. Conditions on `resource.type`, `resource.name` or `resource.service` never
    /// grant on Cloud Run, which does not support resource attributes — a project-level
    /// invoker grant "scoped to one service" that way grants nothing.
    ///
    /// ## Evidence used
    /// The conditional bindings in every IAM policy read at version 3; the request's URL and
    /// time (`context.json`, the request log, `--at`). An expression the evaluator cannot
    /// decide (an unknown attribute, the request path unknown) gives `possible`, naming the
    /// sub-expression, never a guess.
    ///
    /// ## Example
    /// `fixtures/condition-path-prefix-not-met`
    ///
    /// ## Fix
    /// Call a path or at a time the condition allows, or change the binding's condition (or
    /// add an unconditional binding) with `gcloud run services add-iam-policy-binding
    /// --condition=...`. For `resource.*` conditions, grant on the service itself instead.
    ///
    /// ## Fix safety
    /// Widening a condition widens access: review.
    ///
    /// ## References
    /// - https://cloud.google.com/iam/docs/conditions-attribute-reference
    /// - https://cloud.google.com/run/docs/securing/managing-access
    pub struct IamConditionNotMet {
        code: "IPD023",
        name: "iam-condition-not-met",
        cause: "iam_condition_not_met",
        title: "the caller's binding is conditional and the condition is false for this request",
        severity: High,
    }
}

pub struct State {
    results: Vec<(GrantRef, Cond)>,
    verdict: Verdict,
}

fn attrs(cx: &Cx) -> RequestAttrs {
    RequestAttrs::from_url(cx.facts.request.url.as_deref(), cx.facts.request.time)
}

impl RuleImpl for IamConditionNotMet {
    type State = State;

    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Cx) -> Check<State> {
        if cx.invoker_check_disabled() {
            return Check::NotApplicable("the invoker check is disabled".into());
        }
        if cx.caller().is_none() {
            return Check::Skip("the caller is unknown (pass --caller or --token)".into());
        }
        if let Some(g) = cx.iam.definite.first() {
            return Check::Pass(format!("an unconditional binding grants: {}", g.describe()));
        }
        if cx.iam.conditional.is_empty() {
            return Check::NotApplicable("no conditional binding would grant the caller".into());
        }
        let req = attrs(cx);
        let mut results = Vec::new();
        for g in &cx.iam.conditional {
            let expr = g.condition.clone().unwrap_or_default();
            let r = evaluate(&expr, &req);
            if r == Cond::True {
                return Check::Pass(format!(
                    "the condition `{expr}` holds for this request ({})",
                    g.describe()
                ));
            }
            results.push((g.clone(), r));
        }
        let undecided = results
            .iter()
            .any(|(_, r)| matches!(r, Cond::Undecided { .. }));
        let verdict = if undecided || !cx.iam.maybe.is_empty() {
            Verdict::Possible
        } else {
            cap(Verdict::Confirmed, cx.iam_verdict_cap())
        };
        Check::Fire(State { results, verdict })
    }

    fn finding(&self, s: &State, cx: &Cx) -> Body {
        let svc = cx.service_name_or("SERVICE");
        let req = attrs(cx);
        let mut evidence = Vec::new();
        evidence.extend(cx.caller_line());
        evidence.push(format!(
            "request attributes: time {}, host {}, path {}",
            req.time
                .as_ref()
                .map(ipd_model::time::fmt)
                .unwrap_or_else(|| "unknown".into()),
            req.host
                .as_deref()
                .map(|h| format!("`{h}`"))
                .unwrap_or_else(|| "unknown".into()),
            req.path
                .as_deref()
                .map(|p| format!("`{p}`"))
                .unwrap_or_else(|| "unknown".into()),
        ));
        let mut resource_only = true;
        let mut first_false = None;
        for (g, r) in &s.results {
            let line = match r {
                Cond::False { parts } => {
                    resource_only = false;
                    first_false.get_or_insert_with(|| parts.join(" && "));
                    format!(
                        "binding {}: false for this request (false: `{}`)",
                        g.describe(),
                        parts.join("`, `")
                    )
                }
                Cond::ResourceAttribute { parts } => format!(
                    "binding {}: `{}` uses resource attributes, which Cloud Run does not support, so it never grants",
                    g.describe(),
                    parts.join("`, `")
                ),
                Cond::Undecided { part, why } => {
                    resource_only = false;
                    format!(
                        "binding {}: `{part}` cannot be decided: {why}",
                        g.describe()
                    )
                }
                Cond::True => continue,
            };
            evidence.push(line);
        }
        let mut explanation = if resource_only {
            "The caller's only invoke grants carry conditions on `resource.*` attributes. Cloud Run does not support resource attributes in IAM Conditions, and a condition part that uses an unavailable attribute is never interpreted as granting access: these bindings grant nothing.".to_string()
        } else if s.verdict == Verdict::Possible {
            "The caller's only invoke grants are conditional, and at least one condition cannot be decided from the evidence (see which part). If it is false for this request, the caller has no permission.".to_string()
        } else {
            format!(
                "The caller's only invoke grants are conditional, and no condition holds for this request{}. A conditional binding grants only while its condition is true.",
                first_false
                    .map(|f| format!(" (`{f}` is false)"))
                    .unwrap_or_default()
            )
        };
        if let Some(c) = cx.status_caveat(false) {
            explanation.push_str(&format!(" Note: {c}."));
        }
        Body {
            verdict: s.verdict,
            title: if resource_only {
                format!(
                    "the caller's conditional grant on `{svc}` uses `resource.*` attributes, which never grant on Cloud Run"
                )
            } else {
                format!(
                    "the condition on the caller's `{}` binding is not met for this request",
                    s.results[0].0.role
                )
            },
            explanation,
            evidence,
        }
    }

    fn fixes(&self, s: &State, cx: &Cx) -> Vec<Fix> {
        let caller = cx
            .caller()
            .map(|c| c.principal.to_string())
            .unwrap_or_else(|| "<MEMBER>".into());
        let mut v = Vec::new();
        let resource_only = s
            .results
            .iter()
            .all(|(_, r)| matches!(r, Cond::ResourceAttribute { .. }));
        if resource_only {
            v.push(Fix::command(
                "grant `roles/run.invoker` on the service itself instead of a `resource.*` condition at project level".to_string(),
                cx.grant_argv(&caller, "roles/run.invoker"),
                Safety::NeedsReview,
            ));
        } else {
            let (g, _) = &s.results[0];
            v.push(Fix::command(
                "read the conditional binding as it is (policy version 3)",
                vec![
                    "gcloud".into(),
                    "run".into(),
                    "services".into(),
                    "get-iam-policy".into(),
                    cx.service_arg(),
                    cx.region_flag(),
                    cx.project_flag(),
                    "--format=json".into(),
                ],
                Safety::Safe,
            ));
            let mut argv = cx.grant_argv(&caller, &g.role);
            argv.push(crate::fix::Arg::FlagPlaceholder(
                "--condition",
                "expression=NEW_EXPRESSION,title=TITLE",
            ));
            v.push(Fix::command(
                "widen the condition, or add a binding whose condition covers this request",
                argv,
                Safety::NeedsReview,
            ));
            v.push(Fix::text(
                FixKind::Note,
                "or call within what the condition allows",
                format!(
                    "The condition is `{}`.",
                    g.condition.as_deref().unwrap_or("")
                ),
                Safety::Safe,
            ));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use serde_json::json;

    fn ev(expr: &str, path: &str) -> ipd_model::Evidence {
        let mut ev = base();
        ev.service_policy = policy(
            json!({"version": 3, "bindings": [{"role": "roles/run.invoker", "members": [format!("serviceAccount:{SA}")], "condition": {"title": "t", "expression": expr}}]}),
        );
        ev.project_policy = policy(json!({}));
        ev.token = Some(sa_token(URL));
        let mut e = entry(403, Some(TEXT_403), "0s", "GET");
        e.http_request.as_mut().unwrap().request_url = Some(format!("{URL}{path}").into());
        ev.logs = ipd_model::Gathered::Present(vec![e]);
        ev
    }

    #[test]
    fn false_path_condition_fires() {
        assert_eq!(
            fired(&run(
                &IamConditionNotMet,
                &ev("request.path.startsWith('/admin')", "/orders")
            )),
            Some(Verdict::Confirmed)
        );
        assert!(matches!(
            run(
                &IamConditionNotMet,
                &ev("request.path.startsWith('/admin')", "/admin/x")
            ),
            crate::Outcome::Passed(_)
        ));
    }

    #[test]
    fn resource_condition_fires_and_unknown_is_possible() {
        assert_eq!(
            fired(&run(
                &IamConditionNotMet,
                &ev("resource.name.startsWith('projects/shop-prod')", "/")
            )),
            Some(Verdict::Confirmed)
        );
        assert_eq!(
            fired(&run(
                &IamConditionNotMet,
                &ev("request.auth.claims.x == 'y'", "/")
            )),
            Some(Verdict::Possible)
        );
    }
}
