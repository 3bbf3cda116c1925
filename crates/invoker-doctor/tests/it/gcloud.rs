//! gcloud conformance: the bundle a customer makes with the real gcloud is the bundle we test.
//!
//! For a representative set of fixtures: serve the fixture with `fake-gcp`, run the real
//! binary's `invoker-doctor collect --run` (which runs gcloud from `PATH`) into a temporary
//! directory, diagnose what gcloud wrote, and require the rank-1 cause, its verdict and the
//! exit status of the fixture's checked-in report. One fixture also runs the *printed* script
//! with bash, so the commands `collect` prints run as written.
//!
//! What a ticket tells a support agent (when the request was, who made it: the `request.time`
//! and `caller.principal` of the checked-in report) becomes `collect --at/--caller`; the ticket's
//! own files (`token.txt`, `context.json`) are not gcloud outputs and are copied over.
//!
//! gcloud's Cloud Run client sends to `REGION-HOST` of `CLOUDSDK_API_ENDPOINT_OVERRIDES_RUN`,
//! so `REGION-fake-gcp.test` must resolve to 127.0.0.1: the test appends that line to
//! `/etc/hosts` when it can (root; CI runs as root) and skips, saying why, when it cannot.
//! Without gcloud on `PATH` it skips with a message on stderr (never a silent pass).

use std::io::Write;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ipd_fakegcp::{FakeGcp, FakeOptions, Scenario};
use serde_json::Value;

use crate::support::{Case, diagnose_args, fixtures, run_args};

/// The host every API override names; `REGION-HOST` is Cloud Run v1's regional endpoint.
const HOST: &str = "fake-gcp.test";
const TOKEN: &str = "gcloud-conformance-token-not-a-secret";
/// Fixtures collected at once (each runs up to four gcloud commands at a time).
const PARALLEL_FIXTURES: usize = 3;

/// One fixture per way the evidence reaches the rules: v1 and v2 services (IAP, custom
/// audience, ingress, invoker check), folder and organization policies and deny policies via
/// the ancestry, custom roles, audit entries (grants, VPC-SC `audited_resource`), org policies,
/// caller configurations, the v3 troubleshooter, a healthy service.
const FIXTURES: &[&str] = &[
    "deny-policy-org-denies-invoke",
    "iap-user-lacks-accessor-role",
    "wrong-audience-custom-domain-not-configured",
    "vpc-sc-perimeter-blocks-ingress",
    "propagation-grant-two-minutes-before",
    "healthy-bound-sa-200",
    "missing-binding-custom-role-disabled",
    "caller-pubsub-push-without-oidc",
    "ingress-internal-and-lb-export-yaml-404",
    "functions-invoker-role-folder-level",
    "public-blocked-by-drs-allowed-customer",
    "crosscheck-troubleshooter-settles-group-not-member",
    "public-blocked-by-custom-constraint-definition",
];

/// The fixtures whose printed script is also run with bash.
const SCRIPTED: &[&str] = &[
    "deny-policy-org-denies-invoke",
    "public-blocked-by-custom-constraint-definition",
];

pub(crate) fn note(msg: &str) {
    // Straight to the process's stderr: libtest captures `eprintln!`, not this.
    let _ = writeln!(std::io::stderr(), "{msg}");
}

fn gcloud() -> Option<PathBuf> {
    invoker_doctor::collect::find_gcloud(std::env::var_os("PATH").as_deref())
}

fn resolves(host: &str) -> bool {
    (host, 80)
        .to_socket_addrs()
        .map(|mut a| a.any(|x| x.ip().is_loopback()))
        .unwrap_or(false)
}

/// Makes `REGION-fake-gcp.test` (and `fake-gcp.test`) resolve to 127.0.0.1, appending to
/// `/etc/hosts` if needed. `Err` says why it cannot.
fn ensure_hosts(regions: &[String]) -> Result<(), String> {
    let mut names: Vec<String> = regions.iter().map(|r| format!("{r}-{HOST}")).collect();
    names.push(HOST.to_string());
    let missing: Vec<&String> = names.iter().filter(|n| !resolves(n)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let line = format!(
        "127.0.0.1 {}\n",
        missing
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    std::fs::OpenOptions::new()
        .append(true)
        .open("/etc/hosts")
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| format!("cannot append `{}` to /etc/hosts ({e})", line.trim()))?;
    match names.iter().find(|n| !resolves(n)) {
        None => Ok(()),
        Some(n) => Err(format!(
            "{n} does not resolve to 127.0.0.1 even after adding it to /etc/hosts"
        )),
    }
}

/// The checked-in JSON report (`expected/report.json.snap` without its insta header).
fn expected_report(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("expected/report.json.snap")).expect("snapshot");
    let body = text.splitn(3, "---\n").nth(2).expect("insta header");
    serde_json::from_str(body).expect("snapshot JSON")
}

fn top(report: &Value) -> (String, String) {
    let f = &report["findings"][0];
    (
        f["cause"].as_str().unwrap_or("none").to_string(),
        f["verdict"].as_str().unwrap_or("none").to_string(),
    )
}

fn gcloud_env(cmd: &mut Command, base: &str, tmp: &Path) {
    let token = tmp.join("access-token");
    std::fs::write(&token, TOKEN).expect("token file");
    cmd.env("CLOUDSDK_CONFIG", tmp.join("gcloud-config"))
        .env("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE", &token)
        .env("CLOUDSDK_CORE_DISABLE_USAGE_REPORTING", "1")
        .env("CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK", "1")
        .env("CLOUDSDK_CORE_CHECK_GCE_METADATA", "false")
        .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1");
    for api in [
        "RUN",
        "CLOUDRESOURCEMANAGER",
        "LOGGING",
        "ORGPOLICY",
        "IAM",
        "PUBSUB",
        "CLOUDSCHEDULER",
        "CLOUDTASKS",
        "EVENTARC",
        "WORKFLOWS",
        "OAUTH2",
        "POLICYTROUBLESHOOTER",
    ] {
        cmd.env(format!("CLOUDSDK_API_ENDPOINT_OVERRIDES_{api}"), base);
    }
}

/// The `collect` arguments for a fixture: its service, the ticket's time and caller, its
/// Google-managed callers.
fn collect_args(sc: &Scenario, expected: &Value, out: &Path) -> Vec<String> {
    let id = &sc.identity;
    let mut a = vec![
        "collect".to_string(),
        format!("--project={}", id.project_id),
        format!("--region={}", id.region),
        format!("--service={}", id.service),
        format!("--out={}", out.display()),
    ];
    match expected["request"]["time"].as_str() {
        Some(t) => a.push(format!("--at={t}")),
        None => a.push("--freshness=400d".into()),
    }
    if let Some(p) = expected["caller"]["principal"].as_str() {
        a.push(format!("--caller={p}"));
    }
    for c in &sc.callers {
        let Some(name) = c.get("name").and_then(Value::as_str) else {
            continue;
        };
        let kind = if name.contains("/subscriptions/") {
            "pubsub"
        } else if name.contains("/jobs/") {
            "scheduler"
        } else if name.contains("/queues/") {
            "tasks"
        } else if name.contains("/triggers/") {
            "eventarc"
        } else {
            "workflows"
        };
        a.push(format!("--caller-config={kind}:{name}"));
    }
    a
}

/// Collects one fixture with real gcloud and compares the diagnosis; `Err` says what differs.
fn conform(slug: &str, dir: &Path, case: &Case, scripted: bool) -> Result<String, String> {
    let sc = Scenario::from_bundle(dir).map_err(|e| format!("{slug}: fake-gcp: {e}"))?;
    let fake = FakeGcp::start_in_background(sc.clone(), FakeOptions::new().token(TOKEN))
        .map_err(|e| format!("{slug}: fake-gcp: {e}"))?;
    let base = format!("http://{HOST}:{}/", fake.addr().port());
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let out = tmp.path().join("bundle");
    let expected = expected_report(dir);
    let args = collect_args(&sc, &expected, &out);
    let bin = env!("CARGO_BIN_EXE_invoker-doctor");
    let started = Instant::now();
    let run = if scripted {
        // The printed script, run as written.
        let printed = Command::new(bin)
            .args(&args)
            .output()
            .map_err(|e| format!("{slug}: {e}"))?;
        if !printed.status.success() {
            return Err(format!(
                "{slug}: collect (print) failed: {}",
                String::from_utf8_lossy(&printed.stderr)
            ));
        }
        let script = tmp.path().join("collect.sh");
        std::fs::write(&script, &printed.stdout).map_err(|e| e.to_string())?;
        let mut cmd = Command::new("bash");
        cmd.arg(&script).current_dir(tmp.path());
        gcloud_env(&mut cmd, &base, tmp.path());
        cmd.output()
    } else {
        let mut cmd = Command::new(bin);
        cmd.args(&args).arg("--run");
        gcloud_env(&mut cmd, &base, tmp.path());
        cmd.output()
    }
    .map_err(|e| format!("{slug}: {e}"))?;
    let secs = started.elapsed().as_secs_f64();
    if !run.status.success() {
        return Err(format!(
            "{slug}: collect exited {:?}: {}",
            run.status.code(),
            String::from_utf8_lossy(&run.stderr)
        ));
    }
    // What gcloud wrote is what the parsers read: the service came from Cloud Run v1.
    let svc = std::fs::read_to_string(out.join("service.json"))
        .map_err(|e| format!("{slug}: no service.json from gcloud ({e})"))?;
    if !svc.contains("serving.knative.dev/v1") {
        return Err(format!("{slug}: service.json is not gcloud's v1 output"));
    }
    // Nothing written holds the access token.
    for e in std::fs::read_dir(&out)
        .map_err(|e| e.to_string())?
        .flatten()
    {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        if text.contains(TOKEN) {
            return Err(format!(
                "{slug}: {} holds the access token",
                e.path().display()
            ));
        }
    }
    assert!(
        fake.mutating_calls().is_empty(),
        "{slug}: gcloud called a mutating method"
    );
    // The fixture's custom-constraint definitions were collected too.
    for e in std::fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("org-policy-custom-") && !out.join(&name).is_file() {
            return Err(format!(
                "{slug}: {name} was not collected{}",
                if scripted { " (script)" } else { "" }
            ));
        }
    }
    for f in ["token.txt", "context.json"] {
        if dir.join(f).is_file() {
            std::fs::copy(dir.join(f), out.join(f)).map_err(|e| e.to_string())?;
        }
    }
    let report = run_args(&diagnose_args(&out, case, "json"));
    let got: Value = serde_json::from_str(&report.stdout).map_err(|e| e.to_string())?;
    let want_exit = case.exit;
    if top(&got) != top(&expected) || report.code != want_exit {
        return Err(format!(
            "{slug}: from gcloud's bundle rank 1 is {:?} with exit {}, the fixture's report says {:?} with exit {want_exit}; gaps: {}",
            top(&got),
            report.code,
            top(&expected),
            got["gaps"]
        ));
    }
    Ok(format!(
        "{slug}: {:?}, exit {want_exit}, {:.1} s{}",
        top(&got),
        secs,
        if scripted { " (printed script)" } else { "" }
    ))
}

#[test]
fn gcloud_made_bundles_diagnose_like_the_fixtures() {
    let Some(gcloud) = gcloud() else {
        note(
            "SKIPPED gcloud conformance (tests/it/gcloud.rs): no gcloud on PATH, so the bundle gcloud makes was NOT checked",
        );
        return;
    };
    let all = fixtures();
    let chosen: Vec<&(String, PathBuf, Case)> = FIXTURES
        .iter()
        .map(|f| {
            all.iter()
                .find(|(s, _, _)| s == f)
                .unwrap_or_else(|| panic!("conformance fixture {f} does not exist"))
        })
        .collect();
    let mut regions: Vec<String> = chosen
        .iter()
        .filter_map(|(_, d, _)| Scenario::from_bundle(d).ok())
        .map(|s| s.identity.region)
        .collect();
    regions.sort();
    regions.dedup();
    if let Err(why) = ensure_hosts(&regions) {
        note(&format!(
            "SKIPPED gcloud conformance (tests/it/gcloud.rs): {why}; gcloud's Cloud Run client needs REGION-{HOST} to reach fake-gcp, so the bundle gcloud makes was NOT checked"
        ));
        return;
    }
    let started = Instant::now();
    let mut jobs: Vec<(&(String, PathBuf, Case), bool)> =
        chosen.iter().map(|c| (*c, false)).collect();
    for c in chosen
        .iter()
        .filter(|(s, _, _)| SCRIPTED.contains(&s.as_str()))
    {
        jobs.push((*c, true));
    }
    let mut results: Vec<Result<String, String>> = Vec::new();
    for chunk in jobs.chunks(PARALLEL_FIXTURES) {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|((slug, dir, case), scripted)| {
                    s.spawn(move || conform(slug, dir, case, *scripted))
                })
                .collect();
            for h in handles {
                results.push(
                    h.join()
                        .unwrap_or_else(|_| Err("a conformance thread panicked".into())),
                );
            }
        });
    }
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    note(&format!(
        "gcloud conformance ({}): {} fixtures + {} printed scripts in {:.0} s:\n  {}",
        gcloud.display(),
        chosen.len(),
        jobs.len() - chosen.len(),
        started.elapsed().as_secs_f64(),
        results
            .iter()
            .map(|r| match r {
                Ok(s) => s.clone(),
                Err(e) => format!("FAILED {e}"),
            })
            .collect::<Vec<_>>()
            .join("\n  ")
    ));
    assert!(
        failures.is_empty(),
        "gcloud-made bundles disagree with the fixtures:\n{}",
        failures
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
