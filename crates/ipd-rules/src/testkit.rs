//! Minimal evidence for rule unit tests, built from the real formats.

use base64::Engine;
use ipd_model::doc::Doc;
use ipd_model::{Evidence, Gathered};
use serde_json::{Value, json};

pub const URL: &str = "https://orders-api-123456789012.europe-west1.run.app";
pub const SA: &str = "checkout@shop-prod.iam.gserviceaccount.com";

/// Evidence with only a v2 service (invoker check on, ingress all).
pub fn base() -> Evidence {
    Evidence {
        service: Gathered::Present(service(json!({}))),
        ..Evidence::default()
    }
}

/// A v2 service with `extra` fields merged in.
pub fn service(extra: Value) -> ipd_model::service::Service {
    let mut v = json!({
        "name": "projects/shop-prod/locations/europe-west1/services/orders-api",
        "uri": URL,
        "urls": [URL, "https://orders-api-x7kq2mzb4a-ew.a.run.app"],
        "ingress": "INGRESS_TRAFFIC_ALL"
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            o.insert(k.clone(), x.clone());
        }
    }
    match ipd_model::service::parse("service.json", &v.to_string()) {
        Ok(Doc::Value(s)) => s,
        other => panic!("bad test service: {other:?}"),
    }
}

pub fn policy(v: Value) -> Gathered<ipd_model::iam::Policy> {
    Gathered::Present(serde_json::from_value(v).expect("test policy"))
}

/// A request-log entry.
pub fn entry(
    status: i64,
    text: Option<&str>,
    latency: &str,
    method: &str,
) -> ipd_model::logs::LogEntry {
    let mut v = json!({
        "insertId": "6750a1f2000c3b7d1a2b3c4d",
        "httpRequest": {"requestMethod": method, "requestUrl": format!("{URL}/orders"), "status": status,
                        "userAgent": "python-requests/2.32.3", "latency": latency},
        "resource": {"type": "cloud_run_revision", "labels": {"service_name": "orders-api", "location": "europe-west1", "project_id": "shop-prod"}},
        "timestamp": "2026-11-20T10:15:00.123456Z",
        "severity": "WARNING",
        "logName": "projects/shop-prod/logs/run.googleapis.com%2Frequests"
    });
    if let Some(t) = text {
        v["textPayload"] = json!(t);
    }
    serde_json::from_value(v).expect("test entry")
}

pub const TEXT_403: &str = "The request was not authenticated. Either allow unauthenticated invocations or set the proper Authorization header. Read more at https://cloud.google.com/run/docs/securing/authenticating Additional troubleshooting documentation can be found at: https://cloud.google.com/run/docs/troubleshooting#unauthorized-client";
pub const TEXT_401: &str = "The request was not authorized to invoke this service. Read more at https://cloud.google.com/run/docs/securing/authenticating Additional troubleshooting documentation can be found at: https://cloud.google.com/run/docs/troubleshooting#401";

/// A made-up JWT with `claims` (signature is junk: the tool never verifies).
pub fn jwt(claims: Value) -> String {
    let e = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{}",
        e(&json!({"alg": "RS256", "kid": "abc", "typ": "JWT"})),
        e(&claims),
        "ZmFrZXNpZ25hdHVyZQ"
    )
}

/// A Google SA ID token for `aud`, issued at 2026-11-20T10:00:00Z.
pub fn sa_token(aud: &str) -> ipd_model::token::Token {
    ipd_model::token::Token::analyze(&jwt(json!({
        "iss": "https://accounts.google.com", "aud": aud, "azp": "100000000000000000001",
        "email": SA, "email_verified": true, "sub": "100000000000000000001",
        "iat": 1_795_168_800, "exp": 1_795_172_400
    })))
}

pub fn run(rule: &dyn crate::Rule, ev: &Evidence) -> crate::Outcome {
    rule.run(&crate::cx::Cx::new(ev))
}

pub fn fired(o: &crate::Outcome) -> Option<crate::Verdict> {
    match o {
        crate::Outcome::Fired(b, _) => Some(b.verdict),
        _ => None,
    }
}
