//! Policy Troubleshooter's verdict beside the tool's own view of IAM, and whether they agree.
//!
//! The troubleshooter answers one question, "does this principal hold `run.routes.invoke` on
//! this service?", with what Google knows and the evidence may lack (group memberships, every
//! ancestor's policy, deny policies). The tool answers the same question from the evidence. The
//! cross-check never changes a finding: it shows both answers and says when they differ, which
//! usually means the evidence is incomplete or stale.

use serde::Serialize;

use ipd_model::Gathered;
use ipd_model::troubleshoot::{Access, Troubleshoot};

use crate::cx::Cx;
use crate::report::Finding;
use crate::rule::Verdict;

/// The tool's answer to the troubleshooter's question, from the evidence alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolIam {
    Granted,
    NotGranted,
    /// A deny policy in the evidence denies the caller.
    Denied,
    /// The evidence does not decide (group membership, unread policies, no caller, ...).
    Uncertain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Agreement {
    Agrees,
    Disagrees,
    /// The tool could not decide; the troubleshooter did.
    Settles,
    /// The troubleshooter could not decide, or was asked about someone else.
    Inconclusive,
    /// The troubleshooter's answer is not available (refused or failed).
    Unavailable,
    /// The caller is a principal type the troubleshooter takes no question about (a group,
    /// a federated or agent identity, a principal set, `allUsers`): not asked, or its answer
    /// (about someone else) set aside.
    CannotAsk,
}

#[derive(Debug, Clone, Serialize)]
pub struct CrossCheck {
    /// Always `policy_troubleshooter`.
    pub source: &'static str,
    /// The principal the troubleshooter was asked about (an email).
    pub principal: Option<String>,
    /// `overallAccessState` as Google spells it; null when unavailable.
    pub state: Option<String>,
    pub tool: ToolIam,
    pub agreement: Agreement,
    pub detail: String,
    /// The bindings the troubleshooter says grant the permission.
    pub granted_by: Vec<String>,
    /// The deny policies the troubleshooter says deny it.
    pub denied_by: Vec<String>,
}

/// The cross-check, when the evidence holds a troubleshooter answer.
pub fn cross_check(cx: &Cx, findings: &[Finding]) -> Option<CrossCheck> {
    let g = cx.ev.troubleshoot.as_ref()?;
    let (tool, why_uncertain) = tool_view(cx, findings);
    let unavailable = |detail: String| CrossCheck {
        source: "policy_troubleshooter",
        principal: None,
        state: None,
        tool,
        agreement: Agreement::Unavailable,
        detail,
        granted_by: Vec::new(),
        denied_by: Vec::new(),
    };
    if let Some(c) = cx.facts.caller.as_ref()
        && c.principal.troubleshooter_email().is_none()
    {
        let kind =
            c.principal
                .uri_kind()
                .map(|k| k.describe())
                .unwrap_or(match &c.principal {
                    ipd_model::Principal::Group(_) => "a group",
                    ipd_model::Principal::Domain(_) => "a domain",
                    ipd_model::Principal::Deleted { .. } => "a deleted principal",
                    ipd_model::Principal::AllUsers
                    | ipd_model::Principal::AllAuthenticatedUsers => "everyone",
                    _ => "this principal type",
                });
        let mut out = unavailable(format!(
            "Policy Troubleshooter cannot be asked about this principal type: the caller `{}` is {kind}, and the troubleshooter takes only a Google account's or a service account's email; the tool's own view of IAM stands alone",
            c.principal
        ));
        out.agreement = Agreement::CannotAsk;
        return Some(out);
    }
    let t = match g {
        Gathered::Present(t) => t,
        Gathered::Denied { permission, detail } => {
            return Some(unavailable(format!(
                "Policy Troubleshooter refused the question ({detail}){}",
                permission
                    .as_deref()
                    .map(|p| format!("; it needs `{p}` on the policies it reads"))
                    .unwrap_or_default()
            )));
        }
        Gathered::Failed { error } => {
            return Some(unavailable(format!(
                "Policy Troubleshooter failed: {error}"
            )));
        }
        Gathered::Missing { why } => return Some(unavailable(why.clone())),
    };
    let asked = t.access_tuple.principal.clone();
    let caller_email = cx
        .facts
        .caller
        .as_ref()
        .and_then(|c| c.principal.email().map(str::to_string));
    let (agreement, detail) = match (&asked, &caller_email) {
        (Some(a), Some(c)) if !a.eq_ignore_ascii_case(c) => (
            Agreement::Inconclusive,
            format!(
                "Policy Troubleshooter was asked about `{a}`, but the caller is `{c}`: ask again with --principal-email={c}"
            ),
        ),
        _ => compare(
            tool,
            t,
            why_uncertain.as_deref(),
            cx.invoker_check_disabled(),
        ),
    };
    Some(CrossCheck {
        source: "policy_troubleshooter",
        principal: asked,
        state: Some(t.state().to_string()),
        tool,
        agreement,
        detail,
        granted_by: t.granting_bindings(),
        denied_by: t.denying_policies(),
    })
}

fn fired<'f>(findings: &'f [Finding], cause: &str) -> Option<&'f Finding> {
    findings.iter().find(|f| f.cause == cause)
}

/// What the evidence says about the caller's IAM access, and why when it cannot say.
fn tool_view(cx: &Cx, findings: &[Finding]) -> (ToolIam, Option<String>) {
    if cx.facts.caller.is_none() {
        return (ToolIam::Uncertain, Some("the caller is unknown".into()));
    }
    match fired(findings, "deny_policy") {
        Some(f) if f.verdict >= Verdict::Likely => return (ToolIam::Denied, None),
        Some(f) => return (ToolIam::Uncertain, Some(format!("possibly: {}", f.title))),
        None => {}
    }
    let iam = &cx.iam;
    if !iam.definite.is_empty() {
        return (ToolIam::Granted, None);
    }
    if !iam.conditional.is_empty() {
        return match fired(findings, "iam_condition_not_met") {
            Some(f) if f.verdict >= Verdict::Likely => (ToolIam::NotGranted, None),
            Some(_) => (
                ToolIam::Uncertain,
                Some("a conditional binding's condition could not be decided".into()),
            ),
            None => (ToolIam::Granted, None),
        };
    }
    if let Some(m) = iam.maybe.first() {
        return (
            ToolIam::Uncertain,
            Some(
                m.why_maybe
                    .clone()
                    .unwrap_or_else(|| format!("{} may grant", m.describe())),
            ),
        );
    }
    if let Some((level, why)) = iam.unread.first() {
        return (
            ToolIam::Uncertain,
            Some(format!(
                "the policy of {level} is not in the evidence ({why})"
            )),
        );
    }
    (ToolIam::NotGranted, None)
}

fn compare(
    tool: ToolIam,
    t: &Troubleshoot,
    why_uncertain: Option<&str>,
    check_disabled: bool,
) -> (Agreement, String) {
    let google = t.access();
    let state = t.state();
    let mut detail = match (tool, google) {
        (_, Access::Unknown) => {
            let undecided = t.undecided_bindings();
            return (
                Agreement::Inconclusive,
                if undecided.is_empty() {
                    format!("Policy Troubleshooter could not decide ({state})")
                } else {
                    format!(
                        "Policy Troubleshooter could not decide ({state}) about {}",
                        undecided.join("; ")
                    )
                },
            );
        }
        (ToolIam::Uncertain, Access::Granted) => format!(
            "invoker-doctor could not decide from the evidence ({}); Policy Troubleshooter, which sees group memberships and every policy, says the caller holds the permission: look beyond IAM for the refusal",
            why_uncertain.unwrap_or("incomplete evidence")
        ),
        (ToolIam::Uncertain, Access::NotGranted) => format!(
            "invoker-doctor could not decide from the evidence ({}); Policy Troubleshooter says the caller does not hold the permission",
            why_uncertain.unwrap_or("incomplete evidence")
        ),
        (ToolIam::Granted, Access::Granted) => {
            "both find a binding that grants `run.routes.invoke`".to_string()
        }
        (ToolIam::NotGranted, Access::NotGranted) => {
            "both find no binding that grants `run.routes.invoke`".to_string()
        }
        (ToolIam::Denied, Access::NotGranted) => {
            "both find the caller refused; invoker-doctor by a deny policy".to_string()
        }
        (ToolIam::Granted, Access::NotGranted) => format!(
            "DISAGREEMENT: the evidence shows a grant, Policy Troubleshooter says {state}: a deny policy, a condition or a change the evidence lacks (is it stale?); trust Google's answer for IAM"
        ),
        (ToolIam::NotGranted | ToolIam::Denied, Access::Granted) => format!(
            "DISAGREEMENT: the evidence shows no usable grant, Policy Troubleshooter says {state}: the evidence lacks a policy or a recent change (is it stale?); trust Google's answer for IAM and re-gather"
        ),
    };
    let agreement = match (tool, google) {
        (ToolIam::Uncertain, _) => Agreement::Settles,
        (ToolIam::Granted, Access::Granted)
        | (ToolIam::NotGranted | ToolIam::Denied, Access::NotGranted) => Agreement::Agrees,
        _ => Agreement::Disagrees,
    };
    if check_disabled {
        detail.push_str(
            "; the invoker IAM check is disabled on this service, so IAM does not decide its requests",
        );
    }
    (agreement, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::diagnose;
    use crate::testkit::{self, SA, URL};
    use ipd_model::Evidence;
    use serde_json::json;

    /// A 403 from `SA` with a token for the URL; the service and project policies as given.
    fn case(service_policy: serde_json::Value, answer: Option<serde_json::Value>) -> Evidence {
        let mut ev = testkit::base();
        ev.service_policy = testkit::policy(service_policy);
        ev.project_policy = testkit::policy(json!({"bindings": [], "etag": "ACAB"}));
        ev.token = Some(testkit::sa_token(URL));
        ev.logs = Gathered::Present(vec![testkit::entry(
            403,
            Some(testkit::TEXT_403),
            "0s",
            "GET",
        )]);
        ev.troubleshoot = answer.map(|a| Gathered::Present(serde_json::from_value(a).unwrap()));
        ev
    }

    fn answer(state: &str, principal: &str) -> serde_json::Value {
        json!({"accessTuple": {"principal": principal, "permission": "run.routes.invoke"},
               "overallAccessState": state})
    }

    const GROUP: &str = "group:team@shop.example.com";

    #[test]
    fn no_answer_no_cross_check() {
        let ev = case(json!({"etag": "ACAB"}), None);
        assert!(diagnose(&ev).cross_check.is_none());
    }

    #[test]
    fn agreement_table() {
        let bound = json!({"bindings": [{"role": "roles/run.invoker", "members": [format!("serviceAccount:{SA}")]}]});
        let unbound = json!({"etag": "ACAB"});
        let group = json!({"bindings": [{"role": "roles/run.invoker", "members": [GROUP]}]});
        let cases = [
            (&bound, "CAN_ACCESS", ToolIam::Granted, Agreement::Agrees),
            (
                &bound,
                "CANNOT_ACCESS",
                ToolIam::Granted,
                Agreement::Disagrees,
            ),
            (
                &unbound,
                "CANNOT_ACCESS",
                ToolIam::NotGranted,
                Agreement::Agrees,
            ),
            (
                &unbound,
                "CAN_ACCESS",
                ToolIam::NotGranted,
                Agreement::Disagrees,
            ),
            (&group, "CAN_ACCESS", ToolIam::Uncertain, Agreement::Settles),
            (
                &group,
                "CANNOT_ACCESS",
                ToolIam::Uncertain,
                Agreement::Settles,
            ),
            (
                &group,
                "UNKNOWN_INFO",
                ToolIam::Uncertain,
                Agreement::Inconclusive,
            ),
            (
                &unbound,
                "UNKNOWN_CONDITIONAL",
                ToolIam::NotGranted,
                Agreement::Inconclusive,
            ),
        ];
        for (policy, state, tool, agreement) in cases {
            let ev = case(policy.clone(), Some(answer(state, SA)));
            let x = diagnose(&ev).cross_check.expect("a cross-check");
            assert_eq!((x.tool, x.agreement), (tool, agreement), "{state} {policy}");
            assert_eq!(x.state.as_deref(), Some(state));
        }
    }

    #[test]
    fn another_principal_is_inconclusive_and_says_whom_to_ask() {
        let ev = case(
            json!({"etag": "ACAB"}),
            Some(answer("CAN_ACCESS", "someone@else.example.com")),
        );
        let x = diagnose(&ev).cross_check.unwrap();
        assert_eq!(x.agreement, Agreement::Inconclusive);
        assert!(
            x.detail.contains(&format!("--principal-email={SA}")),
            "{}",
            x.detail
        );
    }

    #[test]
    fn a_refused_question_is_unavailable_and_no_gap() {
        let mut ev = case(json!({"etag": "ACAB"}), None);
        ev.troubleshoot = Some(Gathered::Denied {
            permission: Some("iam.roles.get".into()),
            detail: "Permission 'iam.roles.get' denied".into(),
        });
        let r = diagnose(&ev);
        let x = r.cross_check.unwrap();
        assert_eq!(x.agreement, Agreement::Unavailable);
        assert!(x.detail.contains("iam.roles.get"));
        assert!(r.gaps.iter().all(|g| !g.source.contains("troubleshoot")));
    }

    #[test]
    fn a_disabled_invoker_check_is_said() {
        let mut ev = case(json!({"etag": "ACAB"}), Some(answer("CANNOT_ACCESS", SA)));
        ev.service = Gathered::Present(testkit::service(json!({"invokerIamDisabled": true})));
        let x = diagnose(&ev).cross_check.unwrap();
        assert!(
            x.detail.contains("invoker IAM check is disabled"),
            "{}",
            x.detail
        );
    }

    #[test]
    fn principal_types_it_cannot_be_asked_about() {
        let who = "principal://iam.googleapis.com/locations/global/workforcePools/partners/subject/bob@partner.example";
        for caller in [
            who.to_string(),
            "principal://agents.global.org-778899001122.system.id.goog/resources/run/projects/123456789012/locations/europe-west1/services/support-agent".into(),
            "group:team@shop.example.com".into(),
        ] {
            // An answer about someone else in the bundle is set aside, not compared.
            let mut ev = case(json!({"etag": "ACAB"}), Some(answer("CAN_ACCESS", SA)));
            ev.token = None;
            ev.inputs.caller = Some(caller.clone());
            let x = diagnose(&ev).cross_check.expect("a cross-check");
            assert_eq!(x.agreement, Agreement::CannotAsk, "{caller}");
            assert!(
                x.detail
                    .contains("Policy Troubleshooter cannot be asked about this principal type"),
                "{}",
                x.detail
            );
            assert_eq!(x.state, None);
        }
        // A service account still gets compared.
        let ev = case(json!({"etag": "ACAB"}), Some(answer("CANNOT_ACCESS", SA)));
        assert_eq!(
            diagnose(&ev).cross_check.unwrap().agreement,
            Agreement::Agrees
        );
    }
}
