//! Property tests over the whole triage: random but well-typed evidence never panics, the
//! ranking is ordered, and a few cross-rule invariants hold.

use ipd_model::bundle::from_files;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::testkit::{TEXT_401, TEXT_403, URL, jwt};

fn member() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "allUsers",
        "allAuthenticatedUsers",
        "serviceAccount:checkout@shop-prod.iam.gserviceaccount.com",
        "user:alice@shop.example.com",
        "group:callers@shop.example.com",
        "domain:shop.example.com",
        "deleted:serviceAccount:checkout@shop-prod.iam.gserviceaccount.com?uid=1",
        "principalSet://goog/public:all",
    ])
    .prop_map(str::to_string)
}

fn policy() -> impl Strategy<Value = Value> {
    let role = prop::sample::select(vec![
        "roles/run.invoker",
        "roles/run.viewer",
        "roles/cloudfunctions.invoker",
        "roles/owner",
        "projects/shop-prod/roles/custom",
        "roles/run.invoker_withcond_abc",
    ]);
    prop::collection::vec((role, prop::collection::vec(member(), 0..3), any::<bool>()), 0..4).prop_map(|bs| {
        json!({"etag": "BwX=", "bindings": bs.into_iter().map(|(r, m, c)| {
            let mut b = json!({"role": r, "members": m});
            if c { b["condition"] = json!({"expression": "request.path.startsWith('/x')", "title": "t"}); }
            b
        }).collect::<Vec<_>>()})
    })
}

fn service() -> impl Strategy<Value = Value> {
    (any::<bool>(), prop::sample::select(vec!["INGRESS_TRAFFIC_ALL", "INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", "BOGUS"]), any::<bool>(), any::<bool>())
        .prop_map(|(dis, ing, def, aud)| {
            let mut s = json!({"name": "projects/shop-prod/locations/europe-west1/services/orders-api", "uri": URL, "urls": [URL], "ingress": ing});
            if dis { s["invokerIamDisabled"] = json!(true); }
            if def { s["defaultUriDisabled"] = json!(true); }
            if aud { s["customAudiences"] = json!(["https://api.shop.example.com"]); }
            s
        })
}

fn logs() -> impl Strategy<Value = Value> {
    let text = prop::sample::select(vec![
        Some(TEXT_403.to_string()),
        Some(TEXT_401.to_string()),
        Some(format!("{TEXT_403} Empty Authorization header value.")),
        None,
    ]);
    prop::collection::vec((prop::sample::select(vec![200i64, 401, 403, 404, 500]), text, prop::sample::select(vec!["0s", "0.2s", "bogus"]), prop::sample::select(vec!["GET", "OPTIONS"]), 0u32..59), 0..4)
        .prop_map(|es| {
            Value::Array(es.into_iter().map(|(st, t, lat, m, min)| {
                let mut e = json!({"insertId": format!("{min:024x}"), "logName": "projects/shop-prod/logs/run.googleapis.com%2Frequests",
                    "timestamp": format!("2026-11-20T10:{min:02}:00Z"),
                    "resource": {"type": "cloud_run_revision", "labels": {"service_name": "orders-api"}},
                    "httpRequest": {"status": st, "latency": lat, "requestMethod": m, "userAgent": "Mozilla/5.0"}});
                if let Some(t) = t { e["textPayload"] = json!(t); }
                e
            }).collect())
        })
}

fn token() -> impl Strategy<Value = String> {
    (prop::sample::select(vec!["https://accounts.google.com", "https://securetoken.google.com/shop-prod", "https://x.auth0.com/"]),
     prop::sample::select(vec![URL.to_string(), format!("{URL}/push"), "orders-worker".into(), "32555940559.apps.googleusercontent.com".into()]),
     1_795_160_000i64..1_795_180_000, any::<bool>())
        .prop_map(|(iss, aud, exp, access)| {
            if access { "ya29.a0fakefakefake".to_string() } else {
                jwt(json!({"iss": iss, "aud": aud, "exp": exp, "email": "checkout@shop-prod.iam.gserviceaccount.com", "sub": "2"}))
            }
        })
}

fn org() -> impl Strategy<Value = Value> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(drs, req, managed)| {
        json!([
            {"name": "projects/1/policies/iam.allowedPolicyMemberDomains", "spec": {"rules": [if drs { json!({"values": {"allowedValues": ["C0"]}}) } else { json!({"allowAll": true}) }]}},
            {"name": "projects/1/policies/run.managed.requireInvokerIam", "spec": {"rules": [{"enforce": req}]}},
            {"name": "projects/1/policies/iam.managed.allowedPolicyMembers", "spec": {"rules": [{"enforce": managed}]}}
        ])
    })
}

/// Condition-like text: CEL tokens, the attributes Cloud Run knows, strings with quotes and
/// brackets, glued at random (the splitter is hand-written; the parser is the `cel` crate's).
fn condition() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "request.path",
        "request.host",
        "request.time",
        "resource.name",
        "resource.type",
        ".startsWith(",
        ".endsWith(",
        ".matches(",
        ".getHours(\"Europe/Berlin\")",
        "timestamp(",
        "\"2026-11-20T10:00:00Z\"",
        "'/v1/'",
        "\"a&&b\"",
        "'(x||y)'",
        "&&",
        "||",
        "!",
        "(",
        ")",
        "[",
        "]",
        "<",
        ">=",
        "==",
        "!=",
        "1",
        "-",
        " ",
        "'",
        "\"",
        "\\",
        "in",
        "{",
        "}",
        ",",
    ]);
    prop_oneof![
        prop::collection::vec(piece, 0..24).prop_map(|v| v.concat()),
        "\\PC{0,120}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_conditions_never_panic(expr in condition(), path in "/[a-z/]{0,12}") {
        use crate::conditions::{Outcome, RequestAttrs, evaluate, split_top};
        let req = RequestAttrs::from_url(Some(&format!("https://orders-api.run.app{path}")), None);
        // Splitting keeps every character outside the operators it split at.
        for op in ["&&", "||"] {
            let parts = split_top(&expr, op);
            let kept: usize = parts.iter().map(|p| p.len()).sum();
            prop_assert!(kept <= expr.len());
        }
        if let Outcome::Undecided { part, .. } = evaluate(&expr, &req) {
            // An undecided outcome names a piece of the expression, never a guess.
            prop_assert!(expr.contains(part.trim()), "{part:?} not in {expr:?}");
        }
    }

    #[test]
    fn triage_invariants(
        svc in prop::option::of(service()), sp in prop::option::of(policy()), pp in prop::option::of(policy()),
        lg in prop::option::of(logs()), tk in prop::option::of(token()), og in prop::option::of(org()),
        public in any::<bool>(), status in prop::option::of(prop::sample::select(vec![401i64, 403, 404])),
    ) {
        let mut files: Vec<(&str, String)> = Vec::new();
        if let Some(s) = svc { files.push(("service.json", s.to_string())); }
        if let Some(p) = sp { files.push(("service-iam-policy.json", p.to_string())); }
        if let Some(p) = pp { files.push(("project-iam-policy.json", p.to_string())); }
        if let Some(l) = lg { files.push(("logs.json", l.to_string())); }
        if let Some(t) = tk { files.push(("token.txt", t)); }
        if let Some(o) = og { files.push(("org-policies.json", o.to_string())); }
        let mut ev = from_files(files.iter().map(|(n, t)| (*n, *n, t.as_str()))).expect("well-formed").evidence;
        ev.inputs.expect_public = public;
        ev.inputs.status = status;
        let r = crate::diagnose(&ev);
        prop_assert_eq!(r.checks.len(), crate::RULES.len());
        for c in &r.checks { prop_assert!(!c.reason.is_empty()); }
        for w in r.findings.windows(2) {
            prop_assert!((w[0].verdict, w[0].severity) >= (w[1].verdict, w[1].severity));
        }
        for (i, f) in r.findings.iter().enumerate() {
            prop_assert_eq!(f.rank, i + 1);
            prop_assert!(!f.title.ends_with('.'));
            for fx in &f.fixes { prop_assert!(!fx.text.contains("ya29.a0fake")); }
        }
        if ev.service.present().is_some_and(|s| s.invoker_iam_disabled) {
            prop_assert!(!r.findings.iter().any(|f| f.cause == "missing_invoker_binding" || f.cause == "wrong_audience"));
        }
        let json = serde_json::to_string(&r).expect("serializes");
        prop_assert!(!json.contains("ZmFrZXNpZ25hdHVyZQ"), "the token's signature leaked");
    }
}
