//! IAM Conditions (CEL) evaluated for the failing request, with the `cel` crate.
//!
//! Cloud Run supports the `request.time`, `request.host` and `request.path` attributes (and
//! resource tags); `resource.type/name/service` are not supported for Cloud Run, and "if part
//! of a condition uses an attribute that isn't available for a resource, then that part of
//! the condition is never interpreted as granting access" (facts §3.5).

use std::collections::HashMap;
use std::sync::Arc;

use cel::{Context, ExecutionError, Program, Value};
use ipd_model::time::Timestamp;

/// What the request looked like, as far as the evidence shows.
#[derive(Debug, Clone, Default)]
pub struct RequestAttrs {
    pub time: Option<Timestamp>,
    pub host: Option<String>,
    pub path: Option<String>,
}

impl RequestAttrs {
    /// From the request URL (`https://host/path?query`) and time.
    pub fn from_url(url: Option<&str>, time: Option<Timestamp>) -> RequestAttrs {
        let (host, path) = match url.and_then(|u| u.split_once("://").map(|(_, r)| r)) {
            Some(rest) => {
                let (host, path) = match rest.find('/') {
                    Some(i) => (&rest[..i], &rest[i..]),
                    None => (rest, "/"),
                };
                let path = path.split(['?', '#']).next().unwrap_or("/");
                (Some(host.to_ascii_lowercase()), Some(path.to_string()))
            }
            None => (None, None),
        };
        RequestAttrs { time, host, path }
    }
}

/// The outcome of a condition for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    True,
    /// False; `parts` are the top-level `&&` operands that are false.
    False {
        parts: Vec<String>,
    },
    /// Uses `resource.*`, which Cloud Run does not support: never grants.
    ResourceAttribute {
        parts: Vec<String>,
    },
    /// Cannot be decided from the evidence; `part` is the sub-expression that could not.
    Undecided {
        part: String,
        why: String,
    },
}

/// Splits at top-level `op` (`&&` or `||`), outside parentheses, brackets and string literals.
pub fn split_top(expr: &str, op: &str) -> Vec<String> {
    let b = expr.as_bytes();
    let (mut depth, mut quote, mut start, mut i) = (0i32, None::<u8>, 0usize, 0usize);
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(q) => {
                if c == b'\\' {
                    i += 1;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                b'\'' | b'"' => quote = Some(c),
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => depth -= 1,
                // Bytes, not `expr[i..]`: `i` may sit inside a multi-byte character. `op` is ASCII,
                // so a match starts on a character boundary and the slices below are safe.
                _ if depth == 0 && b[i..].starts_with(op.as_bytes()) => {
                    out.push(expr[start..i].trim().to_string());
                    start = i + op.len();
                    i += op.len();
                    continue;
                }
                _ => {}
            },
        }
        i += 1;
    }
    out.push(expr[start..].trim().to_string());
    out.retain(|s| !s.is_empty());
    out
}

fn strip_parens(s: &str) -> &str {
    let t = s.trim();
    // Only when the outer parentheses enclose the whole expression.
    if t.starts_with('(') && t.ends_with(')') {
        let inner = &t[1..t.len() - 1];
        let mut depth = 0i32;
        for c in inner.chars() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth < 0 {
                        return t;
                    }
                }
                _ => {}
            }
        }
        return inner.trim();
    }
    t
}

enum Eval {
    Bool(bool),
    Resource,
    Undecided(String),
}

fn eval_one(expr: &str, req: &RequestAttrs) -> Eval {
    let program = match std::panic::catch_unwind(|| Program::compile(expr)) {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            return Eval::Undecided(format!(
                "not valid CEL: {}",
                e.to_string().lines().next().unwrap_or("")
            ));
        }
        Err(_) => return Eval::Undecided("the CEL parser failed on it".into()),
    };
    let refs = program.references();
    if refs.has_variable("resource") {
        return Eval::Resource;
    }
    let mut m: HashMap<String, Value> = HashMap::new();
    if let Some(t) = req.time {
        m.insert("time".into(), Value::Timestamp(t.fixed_offset()));
    }
    if let Some(h) = &req.host {
        m.insert("host".into(), Value::String(Arc::new(h.clone())));
    }
    if let Some(p) = &req.path {
        m.insert("path".into(), Value::String(Arc::new(p.clone())));
    }
    let mut ctx = Context::default();
    ctx.add_variable_from_value("request", m);
    match program.execute(&ctx) {
        Ok(Value::Bool(b)) => Eval::Bool(b),
        Ok(other) => Eval::Undecided(format!("evaluates to {other:?}, not a boolean")),
        Err(ExecutionError::NoSuchKey(k)) => {
            Eval::Undecided(format!("`request.{k}` of the failing request is not known"))
        }
        Err(ExecutionError::UndeclaredReference(r)) => {
            Eval::Undecided(format!("`{r}` is not an attribute the evaluator knows"))
        }
        Err(e) => Eval::Undecided(format!("{e}")),
    }
}

/// Evaluates a condition: `||` of `&&` terms, each term by CEL.
pub fn evaluate(expr: &str, req: &RequestAttrs) -> Outcome {
    let mut resource_parts = Vec::new();
    let mut undecided: Option<(String, String)> = None;
    let mut false_parts = Vec::new();
    for alt in split_top(strip_parens(expr), "||") {
        let mut alt_false = Vec::new();
        let mut alt_resource = Vec::new();
        let mut alt_undecided = None;
        for term in split_top(strip_parens(&alt), "&&") {
            match eval_one(&term, req) {
                Eval::Bool(true) => {}
                Eval::Bool(false) => alt_false.push(term),
                Eval::Resource => alt_resource.push(term),
                Eval::Undecided(why) => {
                    if alt_undecided.is_none() {
                        alt_undecided = Some((term, why));
                    }
                }
            }
        }
        if alt_false.is_empty() && alt_resource.is_empty() && alt_undecided.is_none() {
            return Outcome::True;
        }
        if !alt_false.is_empty() {
            false_parts.extend(alt_false);
        } else if !alt_resource.is_empty() {
            resource_parts.extend(alt_resource);
        } else if let Some(u) = alt_undecided {
            undecided.get_or_insert(u);
        }
    }
    if let Some((part, why)) = undecided {
        return Outcome::Undecided { part, why };
    }
    if !resource_parts.is_empty() && false_parts.is_empty() {
        return Outcome::ResourceAttribute {
            parts: resource_parts,
        };
    }
    if !resource_parts.is_empty() {
        false_parts.extend(resource_parts);
    }
    Outcome::False { parts: false_parts }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str) -> RequestAttrs {
        RequestAttrs::from_url(
            Some(&format!("https://api-1.europe-west1.run.app{path}?x=1")),
            ipd_model::time::parse_rfc3339("2026-11-20T10:15:00Z"),
        )
    }

    #[test]
    fn path_and_time_conditions() {
        assert_eq!(
            evaluate("request.path.startsWith('/admin')", &req("/admin/x")),
            Outcome::True
        );
        assert_eq!(
            evaluate(
                "request.path.startsWith('/admin') && request.time < timestamp('2027-01-01T00:00:00Z')",
                &req("/orders")
            ),
            Outcome::False {
                parts: vec!["request.path.startsWith('/admin')".into()]
            }
        );
        assert_eq!(
            evaluate(
                "request.time < timestamp('2026-01-01T00:00:00Z') || request.path == '/orders'",
                &req("/orders")
            ),
            Outcome::True
        );
        assert!(matches!(
            evaluate(
                "request.time < timestamp('2026-01-01T00:00:00Z')",
                &req("/")
            ),
            Outcome::False { .. }
        ));
    }

    #[test]
    fn resource_attributes_never_grant() {
        assert!(matches!(
            evaluate(
                "resource.name.startsWith('projects/p/locations/r/services/s')",
                &req("/")
            ),
            Outcome::ResourceAttribute { .. }
        ));
        assert_eq!(
            evaluate("resource.type == 'x' || request.path == '/a'", &req("/a")),
            Outcome::True
        );
    }

    #[test]
    fn unknown_is_undecided_and_names_the_part() {
        let r = RequestAttrs::default();
        match evaluate("request.path.startsWith('/a') && true", &r) {
            Outcome::Undecided { part, .. } => assert_eq!(part, "request.path.startsWith('/a')"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(evaluate("((", &r), Outcome::Undecided { .. }));
        assert!(matches!(
            evaluate("api.getAttribute('x', []) == 1", &r),
            Outcome::Undecided { .. }
        ));
    }

    #[test]
    fn non_ascii_outside_strings_does_not_panic() {
        // Found by the property test: `𞀦` put a byte index inside a character.
        assert_eq!(split_top("\u{1e026}", "&&"), vec!["\u{1e026}".to_string()]);
        assert_eq!(
            split_top("é && request.path == '/ü'", "&&"),
            vec!["é".to_string(), "request.path == '/ü'".to_string()]
        );
        assert!(matches!(
            evaluate("π && request.path.startsWith('/')", &req("/x")),
            Outcome::Undecided { .. } | Outcome::False { .. }
        ));
    }

    #[test]
    fn splitting_respects_strings_and_parens() {
        assert_eq!(
            split_top("a && (b || c) && 'x&&y'", "&&"),
            vec!["a", "(b || c)", "'x&&y'"]
        );
        assert_eq!(strip_parens("(a || b)"), "a || b");
        assert_eq!(strip_parens("(a) || (b)"), "(a) || (b)");
    }
}
