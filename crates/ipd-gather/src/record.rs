//! What a gathering produced, as the documents of an evidence bundle: the same files, in the
//! contract's format, that `--bundle DIR` reads. The evidence of a live diagnosis is built from
//! exactly these documents, so `--record DIR` followed by `diagnose --bundle DIR` sees the same
//! evidence.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ipd_model::Inputs;
use ipd_model::bundle::{Loaded, from_files};
use ipd_model::doc::ParseError;
use serde_json::Value;

use crate::http::Failure;

/// The documents gathered, by bundle file name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recording {
    /// `service.json`, `service-iam-policy.json`, `project-iam-policy.json`,
    /// `folder-ID-iam-policy.json`, `organization-ID-iam-policy.json`, `org-policies.json`,
    /// `logs.json`, `role-ID.json`, `caller-KIND.json`, `troubleshoot.json`, `context.json`:
    /// each the resource, or Google's error envelope where the call was refused or failed.
    pub files: BTreeMap<String, Value>,
    /// Things the person should know (stderr).
    pub warnings: Vec<String>,
    /// Things worth a line with `-v`.
    pub notes: Vec<String>,
    /// From `projects.get`.
    pub project_id: Option<String>,
    pub project_number: Option<String>,
}

impl Recording {
    /// Stores a resource, or the envelope of its failure.
    pub fn put(&mut self, file: &str, r: Result<Value, Failure>) {
        let v = match r {
            Ok(v) => v,
            Err(f) => f.envelope,
        };
        self.files.insert(file.to_string(), v);
    }

    /// Sets `context.json`: facts given on the command line that no API records.
    pub fn set_context(
        &mut self,
        caller: Option<&str>,
        expect_public: bool,
        status: Option<i64>,
        at: Option<&str>,
        url: Option<&str>,
    ) {
        let mut ctx = serde_json::Map::new();
        if let Some(c) = caller {
            ctx.insert("caller".into(), Value::String(c.to_string()));
        }
        if expect_public {
            ctx.insert("expect_public".into(), Value::Bool(true));
        }
        let mut req = serde_json::Map::new();
        if let Some(u) = url {
            req.insert("url".into(), Value::String(u.to_string()));
        }
        if let Some(s) = status {
            req.insert("status".into(), Value::from(s));
        }
        if let Some(t) = at {
            req.insert("time".into(), Value::String(t.to_string()));
        }
        if !req.is_empty() {
            ctx.insert("request".into(), Value::Object(req));
        }
        if ctx.is_empty() {
            self.files.remove("context.json");
        } else {
            self.files.insert("context.json".into(), Value::Object(ctx));
        }
    }

    /// The text of each file as it is written.
    pub fn texts(&self) -> Vec<(String, String)> {
        self.files
            .iter()
            .map(|(n, v)| {
                let mut t = serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into());
                t.push('\n');
                (n.clone(), t)
            })
            .collect()
    }

    /// The evidence these documents give, read by the same parser as `--bundle`. `context.json`
    /// is left out: the facts it holds come from the command line as inputs.
    pub fn evidence(&self, inputs: Inputs) -> Result<Loaded, ParseError> {
        let texts: Vec<(String, String, String)> = self
            .texts()
            .into_iter()
            .filter(|(n, _)| n != "context.json")
            .map(|(n, t)| (n.clone(), format!("(live) {n}"), t))
            .collect();
        let mut loaded = from_files(
            texts
                .iter()
                .map(|(n, p, t)| (n.as_str(), p.as_str(), t.as_str())),
        )?;
        loaded.evidence.inputs = inputs;
        // Not read at all (turned off): not a gap. A refused or failed read is recorded as
        // its envelope and stays the gap it is, as when the recording is replayed.
        if !self.files.contains_key("deny-policies.json") {
            loaded.evidence.deny_policies =
                ipd_model::Gathered::missing("IAM deny policies are not read in live mode");
        }
        Ok(loaded)
    }

    /// Writes every document into `dir` (created if needed). Returns the paths written.
    pub fn write(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let mut out = Vec::new();
        for (name, text) in self.texts() {
            let p = dir.join(&name);
            std::fs::write(&p, text)?;
            out.push(p);
        }
        Ok(out)
    }

    /// Removes credentials that an API answer might carry: header values of a caller's
    /// configuration (`Authorization`, cookies, API keys) and anything shaped like a bearer
    /// token (`eyJ….….…`, `ya29.…`) in any string, e.g. an application log line.
    pub fn redact(&mut self) {
        for v in self.files.values_mut() {
            redact_value(v);
        }
    }
}

const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "x-serverless-authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-goog-api-key",
    "x-goog-iap-jwt-assertion",
];

fn redact_value(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if SECRET_HEADERS.contains(&k.to_ascii_lowercase().as_str()) && x.is_string() {
                    *x = Value::String("(redacted)".into());
                } else {
                    redact_value(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_value),
        Value::String(s) => {
            if let Some(r) = redact_tokens(s) {
                *s = r;
            }
        }
        _ => {}
    }
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// Replaces JWT-shaped and `ya29.` access-token-shaped runs; `None` when there are none.
pub fn redact_tokens(s: &str) -> Option<String> {
    if !s.contains("eyJ") && !s.contains("ya29.") {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    let mut changed = false;
    let mut rest = s;
    while !rest.is_empty() {
        let next = [rest.find("eyJ"), rest.find("ya29.")]
            .into_iter()
            .flatten()
            .min();
        let Some(i) = next else {
            out.push_str(rest);
            break;
        };
        // A token starts at a boundary, not in the middle of a word.
        let boundary = rest[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !is_token_char(c));
        let run_len = rest[i..]
            .find(|c: char| !is_token_char(c))
            .unwrap_or(rest.len() - i);
        let run = &rest[i..i + run_len];
        let jwt = run.starts_with("eyJ") && run.matches('.').count() >= 2 && run.len() >= 24;
        let access = run.starts_with("ya29.") && run.len() >= 12;
        out.push_str(&rest[..i]);
        if boundary && (jwt || access) {
            out.push_str(if jwt {
                "eyJ…(redacted)"
            } else {
                "ya29.…(redacted)"
            });
            changed = true;
            rest = &rest[i + run_len..];
        } else {
            // Not a token: keep its first character and look further.
            let step = rest[i..].chars().next().map(char::len_utf8).unwrap_or(1);
            out.push_str(&rest[i..i + step]);
            rest = &rest[i + step..];
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_in_strings_are_redacted() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJlbWFpbCI6ImFAYi5jIn0.c2lnbmF0dXJlc2lnbmF0dXJl";
        let s = format!("auth failed for Bearer {jwt}, retrying");
        let r = redact_tokens(&s).unwrap();
        assert!(!r.contains("c2lnbmF0dXJl") && r.contains("eyJ…(redacted), retrying"));
        assert_eq!(
            redact_tokens("token=ya29.a0AfH6SMBxyz-_123").as_deref(),
            Some("token=ya29.…(redacted)")
        );
        assert_eq!(redact_tokens("keyJson and eyJ alone"), None);
        assert_eq!(redact_tokens("plain"), None);
    }

    #[test]
    fn caller_headers_are_redacted() {
        let mut r = Recording::default();
        r.put(
            "caller-scheduler.json",
            Ok(json!({"httpTarget": {"uri": "https://x", "headers": {"Authorization": "Basic dXNlcjpwYXNz", "Content-Type": "application/json"}}})),
        );
        r.redact();
        let v = &r.files["caller-scheduler.json"];
        assert_eq!(v["httpTarget"]["headers"]["Authorization"], "(redacted)");
        assert_eq!(
            v["httpTarget"]["headers"]["Content-Type"],
            "application/json"
        );
    }

    #[test]
    fn evidence_reads_envelopes_as_gaps() {
        let mut r = Recording::default();
        r.put(
            "project-iam-policy.json",
            Err(Failure::synthetic(
                403,
                "PERMISSION_DENIED",
                "Permission 'resourcemanager.projects.getIamPolicy' denied on resource",
            )),
        );
        r.put("logs.json", Ok(json!([])));
        let ev = r.evidence(Inputs::default()).unwrap().evidence;
        assert!(matches!(
            ev.project_policy,
            ipd_model::Gathered::Denied { .. }
        ));
        assert!(ev.logs.is_present());
        r.set_context(
            Some("user:a@b.c"),
            true,
            Some(403),
            None,
            Some("https://x/y"),
        );
        assert_eq!(r.files["context.json"]["request"]["url"], "https://x/y");
        assert_eq!(r.files["context.json"]["request"]["status"], 403);
        r.set_context(None, false, None, None, None);
        assert!(!r.files.contains_key("context.json"));
    }
}
