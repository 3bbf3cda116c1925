//! Property tests: arbitrary input to every parser never panics, and errors always name the
//! file. (Run as ordinary tests; see `just fuzz` for a longer run.)

use proptest::prelude::*;

use crate::bundle::from_files;
use crate::doc;

const FILES: &[&str] = &[
    "service.json",
    "service.yaml",
    "service-iam-policy.json",
    "project-iam-policy.json",
    "folder-1-iam-policy.json",
    "organization-2-iam-policy.json",
    "org-policies.json",
    "org-policy-x.json",
    "logs.json",
    "caller-a.json",
    "deny-policies.json",
    "troubleshoot.json",
    "role-x.json",
    "token.txt",
    "context.json",
];

/// Real documents to mutate, so that the fuzzing reaches past the first syntax error.
const SEEDS: &[&str] = &[
    include_str!("../testdata/cloud-run-request-log-403-unauthenticated.json"),
    include_str!("../testdata/crm-v1-projects-getIamPolicy.gcpdiag-cloudrun1.json"),
    include_str!("../testdata/run-v2-services-list.gcpdiag-cloudrun1.json"),
    include_str!("../testdata/run-v1-knative-service-invoker-iam-disabled.google-doc-snippet.yaml"),
    include_str!("../testdata/crm-v1-getEffectiveOrgPolicy-boolean-enforced.gcpdiag-gke1.json"),
    include_str!("../testdata/error-403-iamcredentials-IAM_PERMISSION_DENIED.github-issue.json"),
];

/// A JSON value of bounded depth with the field names the parsers look for.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let keys = prop::sample::select(vec![
        "overallAccessState",
        "allowPolicyExplanation",
        "explainedPolicies",
        "bindingExplanations",
        "memberships",
        "allowAccessState",
        "name",
        "uri",
        "urls",
        "bindings",
        "members",
        "role",
        "condition",
        "expression",
        "metadata",
        "annotations",
        "status",
        "httpRequest",
        "textPayload",
        "timestamp",
        "latency",
        "spec",
        "rules",
        "enforce",
        "values",
        "allowedValues",
        "pushConfig",
        "oidcToken",
        "audience",
        "httpTarget",
        "entries",
        "error",
        "code",
        "details",
        "invokerIamDisabled",
        "ingress",
        "customAudiences",
        "logName",
        "insertId",
        "request",
        "caller",
        "apiVersion",
    ]);
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null)),
        ".{0,40}".prop_map(serde_json::Value::String),
        Just(serde_json::json!("run.googleapis.com/invoker-iam-disabled")),
        Just(serde_json::json!(
            "deleted:serviceAccount:a@b.iam.gserviceaccount.com?uid=1"
        )),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..6).prop_map(|m| {
                serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(name in prop::sample::select(FILES), text in "\\PC{0,400}") {
        match from_files([(name, name, text.as_str())]) {
            Ok(_) => {}
            Err(e) => prop_assert!(e.to_string().starts_with(name)),
        }
        let _ = crate::token::Token::analyze(&text);
        let _ = crate::paste::classify(&text);
        let _ = doc::parse::<serde_json::Value>("x", &text);
    }

    #[test]
    fn arbitrary_bytes_as_text_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let text = String::from_utf8_lossy(&bytes);
        for name in FILES {
            let _ = from_files([(*name, *name, text.as_ref())]);
        }
        let _ = crate::paste::classify(&text);
        let _ = crate::paste::percent_decode(&text);
    }

    #[test]
    fn structured_json_never_panics(name in prop::sample::select(FILES), v in json_value()) {
        let text = v.to_string();
        let _ = from_files([(name, name, text.as_str())]);
        let _ = crate::caller::CallerConfig::from_value(&v);
    }

    #[test]
    fn mutated_real_documents_never_panic(
        seed in prop::sample::select(SEEDS),
        name in prop::sample::select(FILES),
        cut in 0usize..4000,
        flips in prop::collection::vec((0usize..4000, any::<u8>()), 0..6),
    ) {
        let mut bytes = seed.as_bytes().to_vec();
        for (at, b) in flips {
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] = b;
            }
        }
        bytes.truncate(cut.min(bytes.len()));
        let text = String::from_utf8_lossy(&bytes);
        let _ = from_files([(name, name, text.as_ref())]);
    }

    #[test]
    fn jwt_like_input_never_panics(h in "[A-Za-z0-9_-]{0,60}", p in "[A-Za-z0-9_-]{0,200}", s in "[A-Za-z0-9_.,-]{0,40}") {
        let t = crate::token::Token::analyze(&format!("Bearer {h}.{p}.{s}"));
        // Whatever it is, its display never contains the payload segment.
        if p.len() > 8 {
            let shown = format!("{} {:?}", t.raw, t);
            prop_assert!(!shown.contains(&p));
        }
    }
}

/// Pieces of real pastes to splice around tokens and noise.
const PASTE_PIECES: &[&str] = &[
    "HTTP/2 403\nserver: Google Frontend\ncontent-type: text/html; charset=UTF-8\n",
    "curl -v https://svc-123456789012.europe-west1.run.app/x -H \"Authorization: Bearer ",
    "The request was not authenticated. Either allow unauthenticated invocations or set the proper Authorization header.",
    "The request was not authorized to invoke this service.",
    "Invalid IAP credentials: ",
    "{\"error\": {\"code\": 403, \"message\": \"Permission 'iam.serviceaccounts.actAs' denied\", \"status\": \"PERMISSION_DENIED\"}}",
    "ERROR: (gcloud.run.deploy) PERMISSION_DENIED: ",
    "x-cloud-trace-context: ",
    "https://svc-abcdefghij-ew.a.run.app/?id_token=",
    "\"insertId\": \"",
    "<title>403 Forbidden</title><h1>Error: Forbidden</h1>",
    "jsonPayload: {\nstatus: \"PERMISSION_DENIED\"\nurl: \"https://",
];

/// A token as people paste them: a JWT of three base64url segments, or an access token.
fn pasted_token() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            "[A-Za-z0-9_-]{20,60}",
            "[A-Za-z0-9_-]{20,200}",
            "[A-Za-z0-9_-]{20,80}"
        )
            .prop_map(|(h, p, s)| format!("eyJ{h}.eyJ{p}.{s}")),
        "[A-Za-z0-9_-]{30,120}".prop_map(|t| format!("ya29.{t}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn recognising_arbitrary_text_never_panics(text in "\\PC{0,600}") {
        let r = crate::paste::recognise(&text);
        let _ = crate::paste::PasteObject::new(&r);
    }

    #[test]
    fn recognising_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let text = String::from_utf8_lossy(&bytes);
        let r = crate::paste::recognise(&text);
        let _ = crate::paste::PasteObject::new(&r);
    }

    /// A paste that contains a token, wherever it sits among real paste pieces, never gets
    /// it back in what the recogniser says (identifiers, meaning, next steps).
    #[test]
    fn a_pasted_token_is_never_echoed(
        before in prop::collection::vec(prop::sample::select(PASTE_PIECES), 0..4),
        after in prop::collection::vec(prop::sample::select(PASTE_PIECES), 0..4),
        token in pasted_token(),
        sep in prop::sample::select(vec!["", " ", "\n", "\"", "&x=1 ", "/"]),
    ) {
        let text = format!("{}{token}{sep}{}", before.concat(), after.concat());
        let r = crate::paste::recognise(&text);
        let out = serde_json::to_string(&crate::paste::PasteObject::new(&r)).unwrap_or_default();
        // Any 12 characters of the token's secret part would be too many.
        let body = token.trim_start_matches("ya29.").trim_start_matches("eyJ");
        for w in body.as_bytes().windows(12).step_by(6) {
            let w = std::str::from_utf8(w).unwrap_or("");
            prop_assert!(!out.contains(w), "`{w}` of the token is in {out}");
        }
    }
}

#[test]
fn huge_pastes_are_recognised_without_panicking() {
    let page = PASTE_PIECES.concat();
    let huge = page.repeat(4000); // ~2 MB
    let r = crate::paste::recognise(&huge);
    assert_eq!(r.status, Some(403));
    let _ = crate::paste::PasteObject::new(&r);
    let long_line = "a".repeat(3_000_000);
    let r = crate::paste::recognise(&long_line);
    assert_eq!(r.origin, crate::paste::Origin::Unknown);
}
