//! The field corpus (`fixtures/pastes/`): every paste gets the kind, origin, status and
//! identifiers its TOML states, its possible causes include the stated ones and its ruled-out
//! causes include the stated ones.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ipd_model::paste::recognise;
use serde::Deserialize;

#[derive(Deserialize)]
struct Expect {
    source: String,
    cause: String,
    kind: String,
    origin: String,
    status: Option<i64>,
    possible_causes: Vec<String>,
    #[serde(default)]
    ruled_out: Vec<String>,
    identifiers: BTreeMap<String, String>,
}

fn corpus() -> Vec<(String, String, Expect)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/pastes");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures/pastes")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| {
            let slug = p.file_stem().expect("name").to_string_lossy().into_owned();
            let e: Expect = toml::from_str(&std::fs::read_to_string(&p).expect("toml"))
                .unwrap_or_else(|err| panic!("{slug}.toml: {err}"));
            let text = std::fs::read_to_string(p.with_extension("txt"))
                .unwrap_or_else(|err| panic!("{slug}.txt: {err}"));
            (slug, text, e)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn every_corpus_paste_is_recognised() {
    let all = corpus();
    assert!(all.len() >= 60, "the corpus has {} pastes", all.len());
    let mut failures = Vec::new();
    for (slug, text, e) in &all {
        assert!(e.source.starts_with("https://"), "{slug}: source");
        assert!(!e.cause.is_empty(), "{slug}: cause");
        let r = recognise(text);
        let got_ids = serde_json::to_value(&r.identifiers).expect("json");
        let mut bad = Vec::new();
        if r.kind.as_str() != e.kind {
            bad.push(format!("kind {} != {}", r.kind.as_str(), e.kind));
        }
        if r.origin.as_str() != e.origin {
            bad.push(format!("origin {} != {}", r.origin.as_str(), e.origin));
        }
        if r.status != e.status {
            bad.push(format!("status {:?} != {:?}", r.status, e.status));
        }
        for (k, v) in got_ids.as_object().expect("object") {
            let want = e.identifiers.get(k);
            if v.as_str() != want.map(String::as_str) {
                bad.push(format!("{k} {v} != {want:?}"));
            }
        }
        for k in e.identifiers.keys() {
            if got_ids.get(k).is_none() {
                bad.push(format!("unknown identifier {k}"));
            }
        }
        for c in &e.possible_causes {
            if !r.possible_causes.contains(&c.as_str()) {
                bad.push(format!("{c} not possible ({:?})", r.possible_causes));
            }
        }
        for c in &e.ruled_out {
            if !r.ruled_out.contains(&c.as_str()) {
                bad.push(format!("{c} not ruled out ({:?})", r.ruled_out));
            }
        }
        for c in &r.possible_causes {
            if r.ruled_out.contains(c) {
                bad.push(format!("{c} both possible and ruled out"));
            }
        }
        if !bad.is_empty() {
            failures.push(format!("{slug}: {}", bad.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} pastes wrong:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

#[test]
fn the_corpus_covers_every_kind_and_origin() {
    let all = corpus();
    for k in [
        "error_page",
        "json_error",
        "log_entry",
        "audit_log",
        "trace_id",
        "insert_id",
        "logs_url",
        "token",
        "curl",
        "stack_trace",
        "cli_error",
        "caller_log",
        "unknown",
    ] {
        assert!(
            all.iter().any(|(_, _, e)| e.kind == k),
            "no paste of kind {k}"
        );
    }
    for o in [
        "cloud_run_gate",
        "application",
        "iap",
        "vpc_service_controls",
        "ingress",
        "google_api",
        "deploy_time",
        "client_credentials",
        "not_cloud_run",
        "unknown",
    ] {
        assert!(
            all.iter().filter(|(_, _, e)| e.origin == o).count() >= 2,
            "fewer than two pastes of origin {o}"
        );
    }
}
