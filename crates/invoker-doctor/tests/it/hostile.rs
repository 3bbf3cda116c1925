//! Broken and hostile bundles through the real binary: one bad file is a `failed` gap with a
//! warning and the diagnosis goes on; exit 2 only when no evidence can be read at all.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::workspace_root;

fn diagnose_json(dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_invoker-doctor"))
        .args(["diagnose", "--format", "json", "--bundle"])
        .arg(dir)
        .output()
        .expect("run invoker-doctor")
}

/// A copy of a fixture bundle (its evidence files only).
fn copy_fixture(slug: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    let src = workspace_root().join("fixtures").join(slug);
    for e in std::fs::read_dir(&src).expect("fixture") {
        let e = e.expect("entry");
        if e.file_type().expect("type").is_file() && e.file_name() != "case.toml" {
            std::fs::copy(e.path(), d.path().join(e.file_name())).expect("copy");
        }
    }
    d
}

fn actionable(v: &serde_json::Value) -> bool {
    v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .any(|f| matches!(f["verdict"].as_str(), Some("confirmed" | "likely")))
}

#[test]
fn one_broken_file_is_a_gap_and_the_diagnosis_goes_on() {
    // Each way a file can be broken, one at a time, in a bundle whose other files are fine.
    let cases: &[(&str, &[u8], &str)] = &[
        ("logs.json", b"[{\"logName\": ", "logs.json:1:"),
        ("logs.json", b"[\"\xc3\x28\"]", "logs.json:1:3: not UTF-8"),
        ("service.json", b"apiVersion: [\n", "service.json:"),
        (
            "project-iam-policy.json",
            b"{\"bindings\": 7}",
            "project-iam-policy.json:1:",
        ),
    ];
    for (file, content, needle) in cases {
        let d = copy_fixture("missing-binding-sa-not-bound-anywhere");
        std::fs::write(d.path().join(file), content).expect("write");
        let out = diagnose_json(d.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("warning: ")
                && stderr.contains(needle)
                && stderr.contains("diagnosing without it"),
            "{file}: {stderr}"
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
        let gaps = v["gaps"].as_array().expect("gaps");
        assert!(
            gaps.iter().any(|g| g["state"] == "failed"
                && g["detail"].as_str().is_some_and(|s| s.contains(needle))),
            "{file}: {gaps:?}"
        );
        // Exit status as the findings say.
        let want = if actionable(&v) { 1 } else { 0 };
        assert_eq!(out.status.code(), Some(want), "{file}: {stderr}");
        // The rest was read: the service's own policy is no gap.
        assert!(
            !gaps.iter().any(|g| g["source"] == "service_iam_policy"),
            "{gaps:?}"
        );
    }
}

#[test]
fn an_oversized_file_does_not_stop_the_diagnosis() {
    let d = copy_fixture("missing-binding-sa-not-bound-anywhere");
    let f = std::fs::File::create(d.path().join("logs.json")).expect("create");
    f.set_len(ipd_model::bundle::max_file_bytes("logs.json") + 1)
        .expect("sparse file");
    let out = diagnose_json(d.path());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert!(String::from_utf8_lossy(&out.stderr).contains("evidence files are at most"));
    assert!(
        v["gaps"]
            .as_array()
            .expect("gaps")
            .iter()
            .any(|g| g["source"] == "logs" && g["state"] == "failed")
    );
    assert_eq!(out.status.code(), Some(if actionable(&v) { 1 } else { 0 }));
    // The IAM evidence still names the missing binding.
    assert!(
        v["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .any(|f| f["code"] == "IPD020"),
        "{v}"
    );
}

#[cfg(unix)]
#[test]
fn a_symlink_out_of_the_bundle_is_not_followed() {
    let d = copy_fixture("missing-binding-sa-not-bound-anywhere");
    let p = d.path().join("project-iam-policy.json");
    std::fs::remove_file(&p).expect("rm");
    std::os::unix::fs::symlink("/etc/passwd", &p).expect("symlink");
    let out = diagnose_json(d.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("outside the bundle directory; not followed"),
        "{stderr}"
    );
    assert!(
        !stdout.contains("root:x:0"),
        "read a file out of the bundle"
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("a JSON report");
    assert!(
        v["gaps"]
            .as_array()
            .expect("gaps")
            .iter()
            .any(|g| g["source"] == "project_iam_policy" && g["state"] == "failed")
    );
}

#[test]
fn no_readable_evidence_at_all_exits_2_naming_the_file() {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::write(d.path().join("service.json"), b"{\"metadata\": \xff}").expect("write");
    std::fs::write(d.path().join("logs.json"), b"[").expect("write");
    let out = diagnose_json(d.path());
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: ") && stderr.contains("logs.json:1:"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
