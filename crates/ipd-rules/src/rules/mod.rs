//! One file per rule. The order that matters is in `registry.rs`.

pub mod access_token_not_id_token;
pub mod application_denied;
pub mod caller_cannot_mint_id_token;
pub mod deleted_principal;
pub mod deny_policy;
pub mod expired_token;
pub mod functions_invoker_role_only;
pub mod iam_common;
pub mod iam_condition_not_met;
pub mod iam_propagation_delay;
pub mod iap_denied;
pub mod ingress_restricted;
pub mod invalid_token;
pub mod invoker_check_disabled;
pub mod invoker_check_required_by_org_policy;
pub mod missing_invoker_binding;
pub mod no_token;
pub mod public_access_blocked_by_custom_constraint;
pub mod public_access_blocked_by_domain_restriction;
pub mod public_grant_not_applied;
pub mod vpc_service_controls;
pub mod wrong_audience;
