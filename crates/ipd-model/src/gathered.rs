//! One evidence source, as it was (or was not) obtained.

use serde::Serialize;

/// An evidence source: present, or absent for a stated reason. A permission gap never reads
/// as "no problem found": rules that need an absent source report themselves skipped.
#[derive(Debug, Clone, PartialEq)]
pub enum Gathered<T> {
    Present(T),
    /// Not provided (no file in the bundle, or not asked for).
    Missing {
        why: String,
    },
    /// The source exists but could not be read for lack of a permission.
    Denied {
        permission: Option<String>,
        detail: String,
    },
    /// Reading it failed for another reason (API disabled, server error, ...).
    Failed {
        error: String,
    },
}

/// The state of a source in the report's `gaps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GapState {
    Missing,
    Denied,
    Failed,
}

impl<T> Gathered<T> {
    pub fn missing(why: impl Into<String>) -> Self {
        Gathered::Missing { why: why.into() }
    }

    pub fn present(&self) -> Option<&T> {
        match self {
            Gathered::Present(t) => Some(t),
            _ => None,
        }
    }

    pub fn is_present(&self) -> bool {
        matches!(self, Gathered::Present(_))
    }

    /// Why the source is absent, phrased for a "skipped" line; `None` when present.
    pub fn absence(&self) -> Option<String> {
        match self {
            Gathered::Present(_) => None,
            Gathered::Missing { why } => Some(why.clone()),
            Gathered::Denied {
                permission: Some(p),
                ..
            } => Some(format!("reading it was denied (needs `{p}`)")),
            Gathered::Denied {
                permission: None,
                detail,
            } => Some(format!("reading it was denied: {detail}")),
            Gathered::Failed { error } => Some(format!("reading it failed: {error}")),
        }
    }

    pub fn gap_state(&self) -> Option<GapState> {
        match self {
            Gathered::Present(_) => None,
            Gathered::Missing { .. } => Some(GapState::Missing),
            Gathered::Denied { .. } => Some(GapState::Denied),
            Gathered::Failed { .. } => Some(GapState::Failed),
        }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Gathered<U> {
        match self {
            Gathered::Present(t) => Gathered::Present(f(t)),
            Gathered::Missing { why } => Gathered::Missing { why },
            Gathered::Denied { permission, detail } => Gathered::Denied { permission, detail },
            Gathered::Failed { error } => Gathered::Failed { error },
        }
    }
}

impl<T> Default for Gathered<T> {
    fn default() -> Self {
        Gathered::missing("not provided")
    }
}
