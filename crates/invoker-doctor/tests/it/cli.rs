//! The real binary: exit codes, stdout/stderr separation, errors that name file and position.

use std::process::{Command, Output};

use crate::support::workspace_root;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_invoker-doctor"));
    c.current_dir(workspace_root())
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run invoker-doctor")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn exit_codes_follow_the_contract() {
    let found = run(&[
        "diagnose",
        "--bundle",
        "fixtures/missing-binding-sa-not-bound-anywhere",
    ]);
    assert_eq!(found.status.code(), Some(1), "{}", text(&found.stderr));
    assert!(text(&found.stdout).starts_with("ROOT CAUSE (confirmed) IPD020"));
    assert!(found.stderr.is_empty(), "stderr: {}", text(&found.stderr));
    let healthy = run(&["diagnose", "--bundle", "fixtures/healthy-bound-sa-200"]);
    assert_eq!(healthy.status.code(), Some(0));
    for bad in ["1000", "99", "OK"] {
        let usage = run(&[
            "diagnose",
            "--bundle",
            "fixtures/healthy-bound-sa-200",
            "--status",
            bad,
        ]);
        assert_eq!(usage.status.code(), Some(2), "--status {bad}");
        assert!(text(&usage.stderr).contains("is not an HTTP status"));
    }
    // Any HTTP status is accepted; one that is not a refusal says nothing was denied, and a
    // refusal found in the logs then cannot be confirmed.
    let ok = run(&[
        "diagnose",
        "--bundle",
        "fixtures/missing-binding-sa-not-bound-anywhere",
        "--status",
        "200",
    ]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert!(
        text(&ok.stdout)
            .starts_with("NO DENIAL IN THE EVIDENCE: the client saw 200 (from --status)"),
        "{}",
        text(&ok.stdout)
    );
    let nothing = run(&["diagnose"]);
    assert_eq!(nothing.status.code(), Some(2));
    assert!(text(&nothing.stderr).contains("--bundle DIR"));
    let bad_at = run(&[
        "diagnose",
        "--bundle",
        "fixtures/healthy-bound-sa-200",
        "--at",
        "yesterday",
    ]);
    assert_eq!(bad_at.status.code(), Some(2));
    assert!(text(&bad_at.stderr).contains("--at"));
}

#[test]
fn malformed_files_are_errors_naming_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("service-iam-policy.json"), "{\n  \"bindings\": [\n    {\"role\": \"roles/run.invoker\", \"members\": [\"allUsers\"]},\n  ]\n}\n").expect("write");
    let out = run(&["diagnose", "--bundle", dir.path().to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("service-iam-policy.json:4:"), "{err}");
    assert!(out.stdout.is_empty());

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("service.yaml"),
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: [unclosed\n",
    )
    .expect("write");
    let out = run(&["diagnose", "--bundle", dir.path().to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("service.yaml:"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn unknown_files_are_ignored_with_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("notes.md"), "# notes").expect("write");
    let out = run(&[
        "diagnose",
        "--bundle",
        dir.path().to_str().expect("utf8"),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("warning: ignoring unknown file"),
        "{}",
        text(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json on stdout only");
    assert_eq!(v["schema_version"], 1);
}

#[test]
fn token_flag_reads_file_and_stdin_and_is_never_echoed() {
    let tok = std::fs::read_to_string(
        workspace_root().join("fixtures/access-token-ya29-sent-401/token.txt"),
    )
    .expect("token");
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("t.txt");
    std::fs::write(&f, &tok).expect("write");
    let at = format!("@{}", f.display());
    let out = run(&[
        "diagnose",
        "--bundle",
        "fixtures/healthy-public-allusers",
        "--token",
        &at,
        "--status",
        "401",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["token"]["kind"], "access_token");
    let out = crate::support::output_with_stdin(
        bin().args([
            "diagnose",
            "--bundle",
            "fixtures/missing-binding-user-viewer-only",
            "--token",
            "-",
            "--status",
            "401",
        ]),
        &tok,
    );
    assert_eq!(out.status.code(), Some(1));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    let body = tok.trim().trim_start_matches("Bearer ").trim();
    assert!(!all.contains(&body[5..]), "the token was echoed");
    assert!(all.contains("IPD011"));
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let plain = run(&[
        "diagnose",
        "--bundle",
        "fixtures/missing-binding-sa-not-bound-anywhere",
    ]);
    assert!(
        !text(&plain.stdout).contains('\u{1b}'),
        "piped output must be plain"
    );
    let forced = run(&[
        "--color",
        "always",
        "diagnose",
        "--bundle",
        "fixtures/missing-binding-sa-not-bound-anywhere",
    ]);
    assert!(text(&forced.stdout).contains('\u{1b}'));
}

#[test]
fn markdown_and_rules_and_unknown_rule() {
    let md = run(&[
        "diagnose",
        "--bundle",
        "fixtures/wrong-audience-custom-domain-not-configured",
        "--format",
        "markdown",
    ]);
    assert_eq!(md.status.code(), Some(1));
    assert!(text(&md.stdout).starts_with("## invoker-doctor: `orders-api`"));
    assert!(text(&md.stdout).contains("```sh"));
    let r = run(&["rules", "IPD014"]);
    assert!(text(&r.stdout).starts_with("# IPD014 wrong-audience"));
    let bad = run(&["rules", "IPD999"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn explain_recognises_pastes() {
    let page = "<html><head><title>401 Unauthorized</title></head><body><h1>Error: Unauthorized</h1><h2>Your client does not have permission to the requested URL <code>/endpoint</code>.</h2></body></html>";
    let out = run(&["explain", page]);
    let s = text(&out.stdout);
    // Google's page without the host: Cloud Run's gate serves it, but so do other products.
    assert!(
        s.starts_with("PASTE: error page\nORIGIN: unknown, status 401"),
        "{s}"
    );
    assert!(
        s.contains("POSSIBLE CAUSES: access_token_not_id_token"),
        "{s}"
    );
    assert!(!s.contains("CHECKLIST"), "{s}");

    let entry = std::fs::read_to_string(
        workspace_root()
            .join("crates/ipd-model/testdata/cloud-run-request-log-403-unauthenticated.json"),
    )
    .expect("example");
    let out = run(&["explain", &entry, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["paste"]["kind"], "log_entry");
    assert_eq!(v["request"]["method"], "OPTIONS");
    assert_eq!(v["findings"][0]["cause"], "no_token");
    assert_eq!(out.status.code(), Some(1));

    // An insertId names the failing request among the bundle's logs.
    let out = run(&[
        "explain",
        "--bundle",
        "fixtures/at-flag-selects-cloud-tasks-entry",
        "--format",
        "json",
        &insert_id_of("fixtures/at-flag-selects-cloud-tasks-entry"),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["paste"]["kind"], "insert_id");
    assert!(
        v["paste"]["next"]
            .to_string()
            .contains("found in the bundle's logs.json"),
        "{}",
        v["paste"]
    );
}

fn insert_id_of(bundle: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join(bundle).join("logs.json")).expect("logs"),
    )
    .expect("json");
    let entries = v
        .as_array()
        .cloned()
        .or_else(|| v["entries"].as_array().cloned())
        .unwrap_or_default();
    entries
        .iter()
        .find(|e| e["httpRequest"]["status"] == 403)
        .and_then(|e| e["insertId"].as_str())
        .expect("a 403 entry")
        .to_string()
}
