//! What a rule is: metadata, a typed check, a finding and its fixes.

use serde::Serialize;

use crate::cx::Cx;
use crate::fix::Fix;

/// How sure a finding is. Ordered: `Confirmed` is the strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Possible,
    Likely,
    Confirmed,
}

/// How much a finding explains. Ordered: `Critical` is the strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Confirmed => "confirmed",
            Verdict::Likely => "likely",
            Verdict::Possible => "possible",
        }
    }
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Info => "info",
        }
    }
}

/// Static facts about a rule.
#[derive(Debug)]
pub struct RuleMeta {
    /// `IPD` + three digits; given once, never reused.
    pub code: &'static str,
    /// Kebab-case name of the problem.
    pub name: &'static str,
    /// The contract's `cause` value.
    pub cause: &'static str,
    /// One line: what the rule looks for.
    pub title: &'static str,
    pub severity: Severity,
    /// The rule's documentation (doc comment), in Markdown with fixed sections.
    pub doc: &'static str,
    /// True (the default) when the cause only explains a request that was refused: with no
    /// denial in the evidence the rule is `not applicable`. False for causes that stand on
    /// evidence of their own (an owner's refused attempt to make the service public); those
    /// are capped at `possible` instead.
    pub needs_refusal: bool,
}

/// The result of looking at the evidence.
pub enum Check<S> {
    Fire(S),
    Pass(String),
    Skip(String),
    NotApplicable(String),
}

/// What a fired rule says, specific to the evidence.
#[derive(Debug, Clone)]
pub struct Body {
    pub verdict: Verdict,
    /// One line, lowercase, no trailing period, identifiers in backticks.
    pub title: String,
    pub explanation: String,
    pub evidence: Vec<String>,
}

/// A rule written as three functions joined by a typed state.
pub trait RuleImpl: Sync {
    type State;
    fn meta(&self) -> &'static RuleMeta;
    fn check(&self, cx: &Cx) -> Check<Self::State>;
    fn finding(&self, state: &Self::State, cx: &Cx) -> Body;
    fn fixes(&self, state: &Self::State, cx: &Cx) -> Vec<Fix>;
}

/// A rule's outcome on one case.
#[derive(Debug, Clone)]
pub enum Outcome {
    Fired(Body, Vec<Fix>),
    Passed(String),
    Skipped(String),
    NotApplicable(String),
}

/// The object-safe face of [`RuleImpl`], as stored in the registry.
pub trait Rule: Sync {
    fn meta(&self) -> &'static RuleMeta;
    fn run(&self, cx: &Cx) -> Outcome;
}

impl<T: RuleImpl> Rule for T {
    fn meta(&self) -> &'static RuleMeta {
        RuleImpl::meta(self)
    }

    fn run(&self, cx: &Cx) -> Outcome {
        match self.check(cx) {
            Check::Fire(s) => Outcome::Fired(self.finding(&s, cx), self.fixes(&s, cx)),
            Check::Pass(r) => Outcome::Passed(r),
            Check::Skip(r) => Outcome::Skipped(r),
            Check::NotApplicable(r) => Outcome::NotApplicable(r),
        }
    }
}

/// Declares a rule struct whose doc comment becomes its `RuleMeta::doc` (clippy's trick: the
/// doc attributes are captured and concatenated, so no proc-macro is needed).
#[macro_export]
macro_rules! declare_rule {
    (@or $v:literal) => { $v };
    (@or) => { true };
    (
        $(#[doc = $doc:literal])*
        pub struct $name:ident {
            code: $code:literal,
            name: $kebab:literal,
            cause: $cause:literal,
            title: $title:literal,
            severity: $sev:ident
            $(, needs_refusal: $nr:literal)? $(,)?
        }
    ) => {
        $(#[doc = $doc])*
        pub struct $name;

        impl $name {
            pub const META: $crate::rule::RuleMeta = $crate::rule::RuleMeta {
                code: $code,
                name: $kebab,
                cause: $cause,
                title: $title,
                severity: $crate::rule::Severity::$sev,
                doc: concat!($($doc, "\n"),*),
                needs_refusal: $crate::declare_rule!(@or $($nr)?),
            };
        }
    };
}
