//! Configurations of Google-managed callers (`caller-*.json`): Pub/Sub push subscriptions,
//! Cloud Scheduler jobs, Cloud Tasks tasks and queues, Eventarc triggers, Workflows.
//! The kind is detected from content.

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallerKind {
    PubsubSubscription,
    SchedulerJob,
    TasksTask,
    TasksQueue,
    EventarcTrigger,
    Workflow,
}

impl CallerKind {
    pub fn label(self) -> &'static str {
        match self {
            CallerKind::PubsubSubscription => "Pub/Sub push subscription",
            CallerKind::SchedulerJob => "Cloud Scheduler job",
            CallerKind::TasksTask => "Cloud Tasks task",
            CallerKind::TasksQueue => "Cloud Tasks queue",
            CallerKind::EventarcTrigger => "Eventarc trigger",
            CallerKind::Workflow => "workflow",
        }
    }
}

/// How the caller authenticates to its target.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CallerAuth {
    /// An OIDC ID token; `audience` as configured (None: the default applies).
    Oidc {
        service_account: Option<String>,
        audience: Option<String>,
    },
    /// An OAuth access token (Cloud Run rejects these for invocation).
    OAuth {
        service_account: Option<String>,
        scope: Option<String>,
    },
    /// No token configured.
    None,
    /// The configuration does not say statically (Workflows source without an `auth` block
    /// that we can see, Eventarc-managed delivery).
    Managed { service_account: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallerConfig {
    pub kind: CallerKind,
    pub name: String,
    pub target_url: Option<String>,
    pub auth: CallerAuth,
}

impl CallerConfig {
    /// The identity the token is minted for.
    pub fn service_account(&self) -> Option<&str> {
        match &self.auth {
            CallerAuth::Oidc {
                service_account, ..
            }
            | CallerAuth::OAuth {
                service_account, ..
            }
            | CallerAuth::Managed { service_account } => service_account.as_deref(),
            CallerAuth::None => None,
        }
    }

    /// True when the configuration shows requests to a target go out with no token at all.
    /// A pull subscription calls nothing; a Tasks queue's HTTP target only overrides what
    /// each task says, so neither proves it.
    pub fn sends_no_token(&self) -> bool {
        self.auth == CallerAuth::None
            && self.target_url.is_some()
            && self.kind != CallerKind::TasksQueue
    }

    /// The `aud` the caller's ID token carries: the configured audience, or (Pub/Sub,
    /// Scheduler, Tasks) the full target URL (facts §5.1, §5.2, §5.4).
    pub fn effective_audience(&self) -> Option<&str> {
        match &self.auth {
            CallerAuth::Oidc {
                audience: Some(a), ..
            } if !a.is_empty() => Some(a),
            CallerAuth::Oidc { .. } => self.target_url.as_deref(),
            _ => None,
        }
    }

    /// Detects the kind from content and reads it. `None` when it is none of the kinds.
    pub fn from_value(v: &Value) -> Option<CallerConfig> {
        // Every kind is an object whose `name` (when present) is a string; anything else is
        // no configuration at all, never one "without a token".
        if !v.is_object() || v.get("name").is_some_and(|n| !n.is_string()) {
            return None;
        }
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let token_auth = |t: &Value| -> CallerAuth {
            if let Some(o) = t.get("oidcToken") {
                CallerAuth::Oidc {
                    service_account: s(o, "serviceAccountEmail"),
                    audience: s(o, "audience"),
                }
            } else if let Some(o) = t.get("oauthToken") {
                CallerAuth::OAuth {
                    service_account: s(o, "serviceAccountEmail"),
                    scope: s(o, "scope"),
                }
            } else {
                CallerAuth::None
            }
        };
        if let Some(pc) = v
            .get("pushConfig")
            .filter(|pc| pc.is_object())
            .filter(|_| name.contains("/subscriptions/") || name.is_empty())
        {
            return Some(CallerConfig {
                kind: CallerKind::PubsubSubscription,
                target_url: s(pc, "pushEndpoint"),
                auth: token_auth(pc),
                name,
            });
        }
        if name.contains("/subscriptions/") {
            // A pull subscription: no push endpoint at all.
            return Some(CallerConfig {
                kind: CallerKind::PubsubSubscription,
                target_url: None,
                auth: CallerAuth::None,
                name,
            });
        }
        if let Some(ht) = v.get("httpTarget") {
            if name.contains("/queues/") {
                let url = ht.get("uriOverride").map(|u| {
                    let host = s(u, "host").unwrap_or_default();
                    let path = u
                        .get("pathOverride")
                        .and_then(|p| s(p, "path"))
                        .unwrap_or_default();
                    format!(
                        "{}://{}{}",
                        s(u, "scheme")
                            .unwrap_or_else(|| "https".into())
                            .to_lowercase(),
                        host,
                        path
                    )
                });
                return Some(CallerConfig {
                    kind: CallerKind::TasksQueue,
                    target_url: url,
                    auth: token_auth(ht),
                    name,
                });
            }
            return Some(CallerConfig {
                kind: CallerKind::SchedulerJob,
                target_url: s(ht, "uri"),
                auth: token_auth(ht),
                name,
            });
        }
        if let Some(hr) = v.get("httpRequest").filter(|_| name.contains("/tasks/")) {
            return Some(CallerConfig {
                kind: CallerKind::TasksTask,
                target_url: s(hr, "url"),
                auth: token_auth(hr),
                name,
            });
        }
        if v.get("destination").is_some()
            && (name.contains("/triggers/") || v.get("eventFilters").is_some())
        {
            let cr = v.get("destination").and_then(|d| d.get("cloudRun"));
            let target = cr.and_then(|c| s(c, "path")).map(|p| {
                format!(
                    "(service `{}`) path {p}",
                    cr.and_then(|c| s(c, "service")).unwrap_or_default()
                )
            });
            return Some(CallerConfig {
                kind: CallerKind::EventarcTrigger,
                target_url: target,
                auth: CallerAuth::Managed {
                    service_account: s(v, "serviceAccount"),
                },
                name,
            });
        }
        if name.contains("/workflows/") || v.get("sourceContents").is_some() {
            let src = v
                .get("sourceContents")
                .and_then(Value::as_str)
                .unwrap_or("");
            let sa = s(v, "serviceAccount").map(|a| a.rsplit('/').next().unwrap_or(&a).to_string());
            // The HTTP calls of the workflow's source (YAML or JSON): the first one to a
            // Cloud Run URL decides, as that is the call that reaches a service.
            let mut calls = Vec::new();
            if let Ok(tree) = serde_saphyr::from_str::<Value>(src) {
                http_calls(&tree, &mut calls, 0);
            }
            let call = calls
                .iter()
                .find(|c| c.url.as_deref().is_some_and(|u| u.contains(".run.app")))
                .or(calls.first());
            let (target_url, auth) = match call {
                None => (
                    None,
                    CallerAuth::Managed {
                        service_account: sa,
                    },
                ),
                Some(c) => (
                    c.url.clone(),
                    match c.auth.as_deref() {
                        Some("OIDC") => CallerAuth::Oidc {
                            service_account: sa,
                            audience: c.audience.clone(),
                        },
                        Some("OAuth2") => CallerAuth::OAuth {
                            service_account: sa,
                            scope: None,
                        },
                        Some(_) => CallerAuth::Managed {
                            service_account: sa,
                        },
                        None => CallerAuth::None,
                    },
                ),
            };
            return Some(CallerConfig {
                kind: CallerKind::Workflow,
                target_url,
                auth,
                name,
            });
        }
        None
    }
}

/// One `call: http.*` step of a workflow.
#[derive(Debug)]
struct HttpCall {
    url: Option<String>,
    auth: Option<String>,
    audience: Option<String>,
}

/// Collects `{call: http.get|post|..., args: {url, auth: {type, audience}}}` steps, at any depth.
fn http_calls(v: &Value, out: &mut Vec<HttpCall>, depth: usize) {
    if depth > 64 {
        return;
    }
    match v {
        Value::Object(m) => {
            let is_http = m
                .get("call")
                .and_then(Value::as_str)
                .is_some_and(|c| c.starts_with("http."));
            if is_http {
                let args = m.get("args");
                let auth = args.and_then(|a| a.get("auth"));
                out.push(HttpCall {
                    url: args
                        .and_then(|a| a.get("url"))
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    auth: auth
                        .and_then(|a| a.get("type"))
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    audience: auth
                        .and_then(|a| a.get("audience"))
                        .and_then(Value::as_str)
                        .map(str::to_string),
                });
            }
            for x in m.values() {
                http_calls(x, out, depth + 1);
            }
        }
        Value::Array(a) => {
            for x in a {
                http_calls(x, out, depth + 1);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pubsub_default_audience_is_push_endpoint() {
        let c = CallerConfig::from_value(&json!({
            "name": "projects/p/subscriptions/s",
            "pushConfig": {"pushEndpoint": "https://a-1.europe-west1.run.app/push",
                           "oidcToken": {"serviceAccountEmail": "push@p.iam.gserviceaccount.com"}}
        }))
        .unwrap();
        assert_eq!(c.kind, CallerKind::PubsubSubscription);
        assert_eq!(
            c.effective_audience(),
            Some("https://a-1.europe-west1.run.app/push")
        );
        assert_eq!(c.service_account(), Some("push@p.iam.gserviceaccount.com"));
    }

    #[test]
    fn scheduler_oauth_is_recognised() {
        let c = CallerConfig::from_value(&json!({
            "name": "projects/p/locations/l/jobs/j",
            "httpTarget": {"uri": "https://x", "oauthToken": {"serviceAccountEmail": "a@p.iam.gserviceaccount.com"}}
        }))
        .unwrap();
        assert_eq!(c.kind, CallerKind::SchedulerJob);
        assert!(matches!(c.auth, CallerAuth::OAuth { .. }));
        assert_eq!(c.effective_audience(), None);
    }

    #[test]
    fn tasks_without_oidc_sends_no_token() {
        let c = CallerConfig::from_value(&json!({
            "name": "projects/p/locations/l/queues/q/tasks/t",
            "httpRequest": {"url": "https://x/y", "httpMethod": "POST"}
        }))
        .unwrap();
        assert_eq!(c.kind, CallerKind::TasksTask);
        assert_eq!(c.auth, CallerAuth::None);
    }

    #[test]
    fn workflow_calls_are_read_from_the_source() {
        let src = "main:\n  steps:\n    - call_api:\n        # a comment that says OIDC must not matter\n        call: http.post\n        args:\n          url: https://orders-api-1.europe-west1.run.app/x\n";
        let c = CallerConfig::from_value(&json!({"name": "projects/p/locations/l/workflows/w", "serviceAccount": "projects/p/serviceAccounts/wf@p.iam.gserviceaccount.com", "sourceContents": src})).unwrap();
        assert_eq!(c.auth, CallerAuth::None);
        assert_eq!(
            c.target_url.as_deref(),
            Some("https://orders-api-1.europe-west1.run.app/x")
        );
        let src = src.replace("/x\n", "/x\n          auth:\n            type: OIDC\n");
        let c = CallerConfig::from_value(
            &json!({"name": "projects/p/locations/l/workflows/w", "sourceContents": src}),
        )
        .unwrap();
        assert!(matches!(c.auth, CallerAuth::Oidc { .. }));
        let c = CallerConfig::from_value(&json!({"name": "projects/p/locations/l/workflows/w", "sourceContents": "main:\n  steps:\n    - a:\n        return: 1\n"})).unwrap();
        assert!(matches!(c.auth, CallerAuth::Managed { .. }));
    }

    #[test]
    fn pull_subscriptions_and_queues_do_not_claim_no_token() {
        let pull = CallerConfig::from_value(
            &json!({"name": "projects/p/subscriptions/s", "pushConfig": {}}),
        )
        .unwrap();
        assert!(!pull.sends_no_token());
        let queue = CallerConfig::from_value(&json!({"name": "projects/p/locations/l/queues/q", "httpTarget": {"uriOverride": {"host": "a.run.app"}}})).unwrap();
        assert!(!queue.sends_no_token());
    }

    #[test]
    fn unrelated_json_is_not_a_caller() {
        assert!(CallerConfig::from_value(&json!({"bindings": []})).is_none());
    }

    #[test]
    fn valid_json_of_another_shape_is_no_caller() {
        // What a broken proxy or API might answer: every field of the wrong type. Read as a
        // push subscription "without OIDC", it would fire `no_token` on garbage.
        let v = serde_json::json!({"name": 42, "pushConfig": "x", "httpTarget": 1});
        assert!(CallerConfig::from_value(&v).is_none());
        assert!(CallerConfig::from_value(&serde_json::json!({"pushConfig": "x"})).is_none());
        assert!(CallerConfig::from_value(&serde_json::json!([1, 2])).is_none());
    }
}
