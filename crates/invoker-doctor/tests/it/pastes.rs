//! `explain` on the field corpus (`fixtures/pastes/`), end to end in every format: the JSON
//! `paste` object is the corpus' expectation, a paste-only report never prints the skipped
//! checklist, every gate, IAP and deploy-time paste ends with a concrete command, and no
//! output carries a token.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde::Deserialize;
use serde_json::Value;

use crate::support::workspace_root;

#[derive(Deserialize)]
struct Expect {
    kind: String,
    origin: String,
    status: Option<i64>,
    identifiers: BTreeMap<String, String>,
}

fn corpus() -> Vec<(String, String, Expect)> {
    let dir = workspace_root().join("fixtures/pastes");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures/pastes")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| {
            let slug = p
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let e: Expect = toml::from_str(&std::fs::read_to_string(&p).expect("toml"))
                .unwrap_or_else(|err| panic!("{slug}.toml: {err}"));
            let text = std::fs::read_to_string(p.with_extension("txt")).expect("paste");
            (slug, text, e)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// `explain PASTE` in-process with no credentials and no reachable endpoint: a paste that
/// names a request or a service falls back to what the paste alone shows, and nothing can
/// leave the machine.
fn explain(paste: &str, format: &str) -> invoker_doctor::Output {
    use clap::Parser;
    colored::control::set_override(false);
    let args = ["invoker-doctor", "explain", paste, "--format", format];
    let cli = invoker_doctor::cli::Cli::try_parse_from(args).expect("arguments");
    let mut no_endpoint: Vec<(String, String)> = vec![
        ("HOME".into(), "/nonexistent".into()),
        ("CLOUDSDK_CONFIG".into(), "/nonexistent".into()),
    ];
    for api in [
        "RUN",
        "LOGGING",
        "CLOUDRESOURCEMANAGER",
        "IAM",
        "ORGPOLICY",
        "POLICYTROUBLESHOOTER",
    ] {
        no_endpoint.push((
            format!("CLOUDSDK_API_ENDPOINT_OVERRIDES_{api}"),
            "http://127.0.0.1:9/".into(),
        ));
    }
    let env = invoker_doctor::Env::from_pairs(no_endpoint);
    let mut empty: &[u8] = &[];
    invoker_doctor::run_with_env(&cli, &mut empty, &env).expect("explain")
}

/// The long base64 runs of every token in the paste (JWT segments, access tokens).
fn secrets(paste: &str) -> Vec<String> {
    paste
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|w| w.len() >= 20 && (w.starts_with("eyJ") || w.starts_with("a0")))
        .map(|w| w[3..].to_string())
        .collect()
}

#[test]
fn every_corpus_paste_explains_in_every_format() {
    let all = corpus();
    assert!(all.len() >= 60);
    let mut failures = Vec::new();
    for (slug, text, e) in &all {
        let json = explain(text, "json");
        let v: Value =
            serde_json::from_str(&json.stdout).unwrap_or_else(|err| panic!("{slug}: {err}"));
        let p = &v["paste"];
        let mut bad = Vec::new();
        if p["kind"] != e.kind.as_str() || p["origin"] != e.origin.as_str() {
            bad.push(format!("{} / {}", p["kind"], p["origin"]));
        }
        if p["status"].as_i64() != e.status {
            bad.push(format!("status {}", p["status"]));
        }
        for (k, want) in &e.identifiers {
            if p["identifiers"][k] != want.as_str() {
                bad.push(format!("{k} = {}", p["identifiers"][k]));
            }
        }
        // The checks stay in the JSON.
        if v["checks"].as_array().is_none_or(|c| c.is_empty()) {
            bad.push("no checks in the JSON".into());
        }
        let next = p["next"].as_array().cloned().unwrap_or_default();
        let concrete = next.iter().any(|n| n["kind"] != "note");
        if ["cloud_run_gate", "iap", "deploy_time"].contains(&e.origin.as_str()) && !concrete {
            bad.push("no concrete next step".into());
        }
        if next.is_empty() {
            bad.push("no next step at all".into());
        }
        let txt = explain(text, "text").stdout;
        let md = explain(text, "markdown").stdout;
        if txt.contains("CHECKLIST") || txt.contains("skipped") {
            bad.push("the text report prints the skipped checks".into());
        }
        if md.contains("### Checks") {
            bad.push("the Markdown report prints the checks".into());
        }
        if !txt.contains(&format!("ORIGIN: {}", e.origin))
            || !md.contains(&format!("**Origin:** `{}`", e.origin))
        {
            bad.push("text or Markdown does not lead with the origin".into());
        }
        for s in secrets(text) {
            for out in [&json.stdout, &txt, &md] {
                if out.contains(&s) {
                    bad.push("a token is echoed".into());
                }
            }
        }
        if !bad.is_empty() {
            failures.push(format!("{slug}: {}", bad.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// A token inside whatever else was pasted is never echoed, in any format.
    #[test]
    fn a_token_in_a_paste_is_never_echoed(
        piece in prop::sample::select(vec![
            "curl -i https://svc-123456789012.europe-west1.run.app/ -H \"Authorization: Bearer TOKEN\"\nHTTP/2 401\nserver: Google Frontend\n",
            "GET https://svc-abcdefghij-uc.a.run.app/x?access_token=TOKEN\n<title>403 Forbidden</title>",
            "Authorization: Bearer TOKEN",
            "TOKEN",
            "{\"textPayload\": \"The request was not authorized to invoke this service.\", \"httpRequest\": {\"status\": 401, \"requestUrl\": \"https://svc-1.r.run.app/\"}, \"insertId\": \"abc12345\", \"labels\": {\"t\": \"TOKEN\"}}",
        ]),
        h in "[A-Za-z0-9_-]{20,40}",
        b in "[A-Za-z0-9_-]{40,120}",
        sig in "[A-Za-z0-9_-]{30,60}",
        format in prop::sample::select(vec!["json", "text", "markdown"]),
    ) {
        let token = format!("eyJ{h}.eyJ{b}.{sig}");
        let paste = piece.replace("TOKEN", &token);
        let out = explain(&paste, format);
        let all = format!("{}{}", out.stdout, out.warnings.join("\n"));
        for secret in [&b, &sig] {
            prop_assert!(!all.contains(secret.as_str()), "{format}: the token leaks:\n{all}");
        }
    }
}
