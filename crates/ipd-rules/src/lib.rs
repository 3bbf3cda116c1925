//! The triage of invoker-doctor: pure rules over gathered evidence, one ordered registry,
//! findings with verdicts and fixes, and the report.
//!
//! Invariant: this crate does no I/O. Rules never call the network, the clock or the
//! environment; the request time is evidence.

pub mod conditions;
pub mod crosscheck;
pub mod cx;
pub mod fix;
#[cfg(test)]
mod fuzz;
pub mod incidents;
pub mod registry;
pub mod report;
pub mod rule;
pub mod rules;
pub mod scan;
#[cfg(test)]
pub(crate) mod testkit;

pub use fix::{Arg, Fix, FixKind, Safety};
pub use registry::{RETIRED, RULES, find};
pub use report::{Report, diagnose};
pub use rule::{Outcome, Rule, RuleMeta, Severity, Verdict};
