//! Shared by the IAM rules: how sure a "no grant" conclusion can be, from which policies
//! were read.

use ipd_model::iam::Level;

use crate::cx::Cx;
use crate::rule::Verdict;

/// The verdict for "no binding grants the caller", before the status cap: confirmed only
/// when the service and project policies and at least one ancestor were read, and nothing
/// that was provided is unreadable.
pub fn completeness(cx: &Cx) -> (Verdict, Option<String>) {
    let unread_core = cx
        .iam
        .unread
        .iter()
        .any(|(l, _)| matches!(l, Level::Service(_) | Level::Project(_)));
    let any_unread = !cx.iam.unread.is_empty();
    let ancestors_read = cx
        .iam
        .read
        .iter()
        .any(|l| matches!(l, Level::Folder(_) | Level::Organization(_)));
    if unread_core || any_unread {
        (
            Verdict::Likely,
            Some(
                "not every policy in the hierarchy could be read; a grant there would also count"
                    .into(),
            ),
        )
    } else if !ancestors_read {
        (
            Verdict::Likely,
            Some("folder and organization policies were not provided; an inherited grant there (rare for run.invoker) would also count".into()),
        )
    } else {
        (Verdict::Confirmed, None)
    }
}

/// `min(a, b)`.
pub fn cap(a: Verdict, b: Verdict) -> Verdict {
    a.min(b)
}
