//! The ordered registry of rules.
//!
//! ORDER MATTERS: rules earlier in the request path come first — did the request reach the
//! service (ingress), is IAM consulted at all, then the token, then the identity and its
//! IAM grants, then org policy, and last the application behind the gate — so that, between
//! findings of equal verdict and severity, a root cause outranks its symptoms. No discovery
//! from file names: a rule exists when it has a line here.

use crate::rule::Rule;
use crate::rules::*;

pub const RULES: &[&dyn Rule] = &[
    &ingress_restricted::IngressRestricted,
    &vpc_service_controls::VpcServiceControls,
    &iap_denied::IapDenied,
    &invoker_check_disabled::InvokerCheckDisabled,
    &caller_cannot_mint_id_token::CallerCannotMintIdToken,
    &no_token::NoToken,
    &access_token_not_id_token::AccessTokenNotIdToken,
    &invalid_token::InvalidToken,
    &expired_token::ExpiredToken,
    &wrong_audience::WrongAudience,
    &deny_policy::DenyPolicy,
    &deleted_principal::DeletedPrincipal,
    &functions_invoker_role_only::FunctionsInvokerRoleOnly,
    &iam_condition_not_met::IamConditionNotMet,
    &missing_invoker_binding::MissingInvokerBinding,
    &iam_propagation_delay::IamPropagationDelay,
    &public_grant_not_applied::PublicGrantNotApplied,
    &public_access_blocked_by_domain_restriction::PublicAccessBlockedByDomainRestriction,
    &public_access_blocked_by_custom_constraint::PublicAccessBlockedByCustomConstraint,
    &invoker_check_required_by_org_policy::InvokerCheckRequiredByOrgPolicy,
    &application_denied::ApplicationDenied,
];

/// Codes that were given once and retired, with the reason. Never reuse them.
pub const RETIRED: &[(&str, &str)] = &[];

/// Finds a rule by code (`IPD020`), kebab name or cause.
pub fn find(key: &str) -> Option<&'static dyn Rule> {
    RULES.iter().copied().find(|r| {
        let m = r.meta();
        m.code.eq_ignore_ascii_case(key) || m.name == key || m.cause == key
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_unique_and_well_formed() {
        let mut seen = HashSet::new();
        for r in RULES {
            let m = r.meta();
            assert!(
                m.code.len() == 6
                    && m.code.starts_with("IPD")
                    && m.code[3..].chars().all(|c| c.is_ascii_digit()),
                "{}",
                m.code
            );
            assert!(seen.insert(m.code), "duplicate code {}", m.code);
            assert!(
                !RETIRED.iter().any(|(c, _)| *c == m.code),
                "{} is retired",
                m.code
            );
            assert!(
                m.name.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{}",
                m.name
            );
            assert_eq!(
                m.cause,
                m.name.replace('-', "_"),
                "cause and name of {} must agree",
                m.code
            );
        }
    }

    #[test]
    fn doc_sections_present_in_order() {
        const SECTIONS: [&str; 7] = [
            "## What it checks",
            "## Why it breaks the request",
            "## Evidence used",
            "## Example",
            "## Fix",
            "## Fix safety",
            "## References",
        ];
        for r in RULES {
            let doc = r.meta().doc;
            let mut at = 0;
            for s in SECTIONS {
                let pos = doc[at..]
                    .find(&format!("{s}\n"))
                    .unwrap_or_else(|| panic!("{} lacks or misorders `{s}`", r.meta().code));
                at += pos + s.len();
            }
            let example = doc.split("## Example").nth(1).unwrap_or("");
            assert!(
                example.contains("`fixtures/"),
                "{}: the Example section must name a fixture",
                r.meta().code
            );
        }
    }

    #[test]
    fn causes_are_the_contract_vocabulary() {
        const CONTRACT: [&str; 21] = [
            "application_denied",
            "invoker_check_disabled",
            "no_token",
            "access_token_not_id_token",
            "invalid_token",
            "expired_token",
            "wrong_audience",
            "missing_invoker_binding",
            "functions_invoker_role_only",
            "deleted_principal",
            "public_access_blocked_by_domain_restriction",
            "invoker_check_required_by_org_policy",
            "ingress_restricted",
            "iam_condition_not_met",
            "deny_policy",
            "iam_propagation_delay",
            "vpc_service_controls",
            "iap_denied",
            "public_grant_not_applied",
            "public_access_blocked_by_custom_constraint",
            "caller_cannot_mint_id_token",
        ];
        for r in RULES {
            assert!(
                CONTRACT.contains(&r.meta().cause),
                "{} is not a contract cause",
                r.meta().cause
            );
        }
    }
}
