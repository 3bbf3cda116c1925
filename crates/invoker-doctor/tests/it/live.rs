//! Live mode end to end: the real binary against `ipd-fakegcp` serving a fixture bundle through
//! the Google REST paths. Each test starts its own fake on 127.0.0.1:0 and hands the child
//! process a clean environment: endpoint overrides, a static access token file, and a temporary
//! HOME / CLOUDSDK_CONFIG, so nothing can reach real Google APIs or a metadata server.
//!
//! How a bundle's evidence is represented live (the mapping every comparison uses):
//! - a source file absent from the bundle: the fake refuses that source (403), since the fake
//!   would otherwise answer it as empty (an empty policy is evidence, a missing file is not);
//!   org policies are refused by the fake itself when no org-policy file exists;
//! - a file holding Google's error envelope: the fake answers that error;
//! - `token.txt`: `--token @token.txt`;
//! - `context.json`: `--caller` (unless the token names the caller, which outranks it),
//!   `--expect-public`, `--status`, `--at` (the request's `method` has no flag and no rule's
//!   verdict depends on it when a request log is missing),
//!   and `--url` (the request's URL: IAM conditions read its path);
//! - `caller-*.json`: `--caller-config KIND:NAME`, its API (Pub/Sub, Scheduler, Cloud Tasks,
//!   Eventarc, Workflows) served by the fake like the others;
//! - logs are read with `--freshness` reaching back to the bundle's oldest entry;
//! - `troubleshoot.json`: Policy Troubleshooter's answer, served by the fake; without it the
//!   fake answers 403 `SERVICE_DISABLED` (the API not enabled), so live mode shows an
//!   `unavailable` cross-check where the bundle shows none (see the comparison below).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipd_fakegcp::{FakeGcp, FakeOptions, Fault, Running, Scenario, Source};
use serde_json::Value;

use crate::support::{Case, fixtures, run_args, workspace_root};

/// Fixtures whose evidence live mode cannot reproduce. Empty: every fixture is compared.
const EXCLUDED: &[(&str, &str)] = &[];

/// A fake with a scratch directory (HOME, gcloud config, the access token file), and a
/// recording proxy that every child process is pointed at (`HTTPS_PROXY`, `HTTP_PROXY`; the
/// fake on 127.0.0.1 is in `NO_PROXY`): any connection to a host other than the fake's reaches
/// the recorder, and the test fails when the `Live` is dropped.
pub(crate) struct Live {
    pub(crate) fake: Running,
    home: tempfile::TempDir,
    token: String,
    pub(crate) stray: crate::support::StrayRecorder,
}

impl Drop for Live {
    fn drop(&mut self) {
        let stray = self.stray.take();
        if !std::thread::panicking() {
            assert!(
                stray.is_empty(),
                "connections to hosts other than the fake's: {stray:?}"
            );
        }
    }
}

fn api_token() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("ya29.fake-api-token-{}-{n}", std::process::id())
}

impl Live {
    pub(crate) fn start(scenario: Scenario, opts: FakeOptions) -> Live {
        let token = api_token();
        let fake = FakeGcp::start_in_background(scenario, opts.token(token.clone()))
            .expect("start the fake");
        let home = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(home.path().join("gcloud")).expect("gcloud dir");
        std::fs::write(home.path().join("access-token"), format!("{token}\n")).expect("token");
        Live {
            fake,
            home,
            token,
            stray: crate::support::StrayRecorder::start(),
        }
    }

    pub(crate) fn bundle(dir: &Path, opts: FakeOptions) -> Live {
        Live::start(Scenario::from_bundle(dir).expect("scenario"), opts)
    }

    pub(crate) fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_invoker-doctor"));
        c.current_dir(workspace_root()).env_clear();
        let base = self.fake.base_url();
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
            c.env(format!("CLOUDSDK_API_ENDPOINT_OVERRIDES_{api}"), &base);
        }
        c.env("HOME", self.home.path())
            .env("CLOUDSDK_CONFIG", self.home.path().join("gcloud"))
            .env(
                "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE",
                self.home.path().join("access-token"),
            )
            .env("NO_COLOR", "1")
            .env("HTTPS_PROXY", self.stray.url())
            .env("HTTP_PROXY", self.stray.url())
            .env("NO_PROXY", "127.0.0.1,localhost");
        c
    }

    /// True when no call could have changed anything.
    pub(crate) fn mutating_calls_none(&self) -> bool {
        self.fake.mutating_calls().is_empty()
    }

    pub(crate) fn run(&self, args: &[String]) -> Output {
        self.cmd().args(args).output().expect("run invoker-doctor")
    }

    /// The target flags of the scenario's service.
    pub(crate) fn target_args(&self) -> Vec<String> {
        let id = &self.fake.scenario().identity;
        vec![
            "--project".into(),
            id.project_id.clone(),
            "--region".into(),
            id.region.clone(),
            "--service".into(),
            id.service.clone(),
        ]
    }

    /// Asserts that no output, and no file under `dirs`, holds the API token.
    fn assert_no_api_token(&self, out: &Output, what: &str) {
        for s in [&out.stdout, &out.stderr] {
            assert!(
                !String::from_utf8_lossy(s).contains(&self.token),
                "{what}: the API access token appears in the output"
            );
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// (rank, code, cause, verdict) of every finding.
fn findings(report: &Value) -> Vec<(i64, String, String, String)> {
    report["findings"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|f| {
            (
                f["rank"].as_i64().unwrap_or(0),
                f["code"].as_str().unwrap_or("").to_string(),
                f["cause"].as_str().unwrap_or("").to_string(),
                f["verdict"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

pub(crate) fn json_of(out: &Output, what: &str) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: stdout is not JSON ({e})\nstdout: {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

fn has(args: &[String], flag: &str) -> bool {
    args.iter().any(|a| a == flag)
}

/// `--freshness` reaching back to the oldest entry of the bundle's logs (plus a day).
fn freshness_for(dir: &Path) -> String {
    let Ok(t) = std::fs::read_to_string(dir.join("logs.json")) else {
        return "1d".into();
    };
    let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
    let list = v
        .as_array()
        .cloned()
        .or_else(|| v["entries"].as_array().cloned())
        .unwrap_or_default();
    let oldest = list
        .iter()
        .filter_map(|e| e["timestamp"].as_str())
        .filter_map(ipd_model::time::parse_rfc3339)
        .min();
    match oldest {
        Some(t) => format!("{}h", (chrono::Utc::now() - t).num_hours().max(0) + 24),
        None => "1d".into(),
    }
}

/// How a bundle is represented live: flags and fake options.
struct Mapping {
    args: Vec<String>,
    opts: FakeOptions,
}

/// The flags and fake options that represent `dir`'s bundle live (see the module docs).
fn live_mapping(dir: &Path, case: &Case) -> Mapping {
    let mut args = case.args.clone();
    let token = std::fs::read_to_string(dir.join("token.txt")).ok();
    if token.is_some() {
        args.extend([
            "--token".into(),
            format!("@{}", dir.join("token.txt").display()),
        ]);
    }
    let token_names_caller = token
        .as_deref()
        .map(ipd_model::token::Token::analyze)
        .and_then(|t| t.principal())
        .is_some();
    if let Ok(t) = std::fs::read_to_string(dir.join("context.json")) {
        let ctx: Value = serde_json::from_str(&t).expect("context.json");
        if let Some(c) = ctx["caller"].as_str()
            && !token_names_caller
            && !has(&args, "--caller")
        {
            args.extend(["--caller".into(), c.to_string()]);
        }
        if ctx["expect_public"] == true && !has(&args, "--expect-public") {
            args.push("--expect-public".into());
        }
        if let Some(st) = ctx["request"]["status"].as_i64()
            && !has(&args, "--status")
        {
            args.extend(["--status".into(), st.to_string()]);
        }
        if let Some(at) = ctx["request"]["time"].as_str()
            && !has(&args, "--at")
        {
            args.extend(["--at".into(), at.to_string()]);
        }
        if let Some(url) = ctx["request"]["url"].as_str() {
            args.extend(["--url".into(), url.to_string()]);
        }
    }
    // A caller's configuration: --caller-config KIND:NAME, served by the fake at NAME.
    let mut callers: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("fixture dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("caller-") && n.ends_with(".json"))
        })
        .collect();
    callers.sort();
    assert!(
        callers.len() <= 1,
        "{}: one caller configuration at most",
        dir.display()
    );
    for path in callers {
        let text = std::fs::read_to_string(&path).expect("caller file");
        let v: Value = serde_json::from_str(&text).expect("caller json");
        let cfg = ipd_model::caller::CallerConfig::from_value(&v).expect("a caller configuration");
        use ipd_model::caller::CallerKind as K;
        let kind = match cfg.kind {
            K::PubsubSubscription => "pubsub",
            K::SchedulerJob => "scheduler",
            K::TasksTask | K::TasksQueue => "tasks",
            K::EventarcTrigger => "eventarc",
            K::Workflow => "workflows",
        };
        let name = v["name"].as_str().expect("caller name").to_string();
        args.extend(["--caller-config".into(), format!("{kind}:{name}")]);
    }
    args.extend(["--freshness".into(), freshness_for(dir)]);
    let mut opts = FakeOptions::new();
    for (file, source) in [
        ("service-iam-policy.json", Source::RunServicesGetIamPolicy),
        ("project-iam-policy.json", Source::ProjectsGetIamPolicy),
        ("logs.json", Source::LoggingEntriesList),
        ("deny-policies.json", Source::IamDenyPolicies),
    ] {
        if !dir.join(file).exists() {
            opts = opts.fail(source, Fault::deny());
        }
    }
    Mapping { args, opts }
}

fn offline_report(dir: &Path, case: &Case) -> (Value, i32) {
    let mut a = s(&["invoker-doctor", "diagnose", "--bundle"]);
    a.push(dir.display().to_string());
    a.extend(case.args.iter().cloned());
    a.extend(s(&["--format", "json"]));
    let out = run_args(&a);
    (
        serde_json::from_str(&out.stdout).expect("offline json"),
        out.code,
    )
}

/// Secret-looking parts of a fixture's token (signature and payload segments).
fn token_parts(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("token.txt"))
        .unwrap_or_default()
        .split(|c: char| c == '.' || c == ',' || c.is_whitespace())
        .filter(|p| p.len() >= 16)
        .map(str::to_string)
        .collect()
}

#[test]
fn every_fixture_diagnoses_the_same_live_as_offline() {
    let all = fixtures();
    assert!(all.len() >= 30, "the fixture set is missing");
    let excluded: BTreeMap<&str, &str> = EXCLUDED.iter().copied().collect();
    let mut failures = Vec::new();
    let mut compared = 0;
    for (slug, dir, case) in &all {
        if excluded.contains_key(slug.as_str()) {
            continue;
        }
        let (offline, offline_code) = offline_report(dir, case);
        let m = live_mapping(dir, case);
        let live = Live::bundle(dir, m.opts);
        let mut full = s(&["diagnose"]);
        full.extend(live.target_args());
        full.extend(m.args);
        full.extend(s(&["--format", "json"]));
        let out = live.run(&full);
        live.assert_no_api_token(&out, slug);
        let stdout = text(&out.stdout);
        for part in token_parts(dir) {
            assert!(!stdout.contains(&part), "{slug}: the caller's token leaks");
        }
        let Ok(report) = serde_json::from_str::<Value>(&stdout) else {
            failures.push(format!(
                "{slug}: no JSON report (exit {:?}): {}",
                out.status.code(),
                text(&out.stderr)
            ));
            continue;
        };
        compared += 1;
        // Was anything denied, and the findings in rank order (rank 1 first).
        // context.json's status reaches live mode as --status: the source named differs.
        let same_source = |d: &Value| {
            d["detail"]
                .as_str()
                .unwrap_or_default()
                .replace("(from context.json)", "(from --status)")
        };
        if report["denial"]["state"] != offline["denial"]["state"]
            || same_source(&report["denial"]) != same_source(&offline["denial"])
        {
            failures.push(format!(
                "{slug}: denial\n  live    {}\n  offline {}",
                report["denial"], offline["denial"]
            ));
        }
        let rank1 = |r: &Value| r["findings"][0]["cause"].as_str().map(str::to_string);
        if rank1(&report) != rank1(&offline) || rank1(&offline).as_deref() != case.root_cause_opt()
        {
            failures.push(format!(
                "{slug}: rank 1 live {:?}, offline {:?}, expected {}",
                rank1(&report),
                rank1(&offline),
                case.root_cause
            ));
        }
        let (l, o) = (findings(&report), findings(&offline));
        if l != o {
            failures.push(format!("{slug}:\n  live    {l:?}\n  offline {o:?}"));
        }
        if out.status.code() != Some(offline_code) {
            failures.push(format!(
                "{slug}: exit {:?} live, {offline_code} offline",
                out.status.code()
            ));
        }
        // The cross-check. With troubleshoot.json the fake serves that answer, so live and
        // offline must show the same cross_check. Without it the fake answers as Google does
        // when the API is not enabled (403 SERVICE_DISABLED), which the bundle does not say:
        // live then shows `unavailable` when a user or service account was asked,
        // `cannot_ask` for a group, federated or agent identity, and no cross-check when
        // nobody could be asked (no caller, allUsers). Running those
        // fixtures with --no-troubleshooter instead would leave that path untested.
        let asked = live
            .fake
            .calls_to(Source::PolicyTroubleshooterIamTroubleshoot);
        let askable = report["caller"]["principal"]
            .as_str()
            .map(ipd_model::principal::Principal::parse)
            .and_then(|p| ipd_gather::troubleshooter_email(&p).map(str::to_string));
        let want_asked: Vec<Option<String>> = askable.iter().cloned().map(Some).collect();
        let got_asked: Vec<Option<String>> = asked
            .iter()
            .map(|c| {
                c.body_json()
                    .and_then(|b| b["accessTuple"]["principal"].as_str().map(str::to_string))
            })
            .collect();
        if got_asked != want_asked {
            failures.push(format!(
                "{slug}: Policy Troubleshooter asked about {got_asked:?}, the caller is {askable:?}"
            ));
        }
        if dir.join("troubleshoot.json").exists() {
            if report["cross_check"] != offline["cross_check"] {
                failures.push(format!(
                    "{slug}: cross_check\n  live    {}\n  offline {}",
                    report["cross_check"], offline["cross_check"]
                ));
            }
            if let Some(want) = &case.cross_check
                && report["cross_check"]["agreement"] != want.as_str()
            {
                failures.push(format!(
                    "{slug}: cross_check.agreement {} live, {want} expected",
                    report["cross_check"]["agreement"]
                ));
            }
        } else if askable.is_some() {
            let disabled = asked.iter().all(|c| c.status == 403)
                && report["cross_check"]["agreement"] == "unavailable";
            if !disabled {
                failures.push(format!(
                    "{slug}: without troubleshoot.json the troubleshooter is disabled, but live shows {}",
                    report["cross_check"]
                ));
            }
        } else if let Some(p) = report["caller"]["principal"]
            .as_str()
            .filter(|p| !matches!(*p, "allUsers" | "allAuthenticatedUsers"))
        {
            // A group, federated or agent identity: not asked, and the report says why.
            // `allUsers` and `allAuthenticatedUsers` name nobody to ask about.
            if report["cross_check"]["agreement"] != "cannot_ask" {
                failures.push(format!(
                    "{slug}: `{p}` cannot be asked about, but live shows {}",
                    report["cross_check"]
                ));
            }
        } else if report.get("cross_check").is_some_and(|c| !c.is_null()) {
            failures.push(format!(
                "{slug}: nobody to ask, but live shows a cross_check {}",
                report["cross_check"]
            ));
        }
        let mutating = live.fake.mutating_calls();
        assert!(
            mutating.is_empty(),
            "{slug}: mutating calls were made: {mutating:?}"
        );
        if has(&full, "--caller-config") {
            assert!(
                live.fake
                    .calls()
                    .iter()
                    .any(|c| c.status == 200
                        && c.source.is_some_and(|s| Source::CALLERS.contains(&s))),
                "{slug}: the caller's configuration was not read from the fake"
            );
        }
        assert!(
            !live.fake.calls().is_empty(),
            "{slug}: no API call reached the fake"
        );
    }
    assert!(
        failures.is_empty(),
        "live and offline diagnoses differ:\n{}",
        failures.join("\n")
    );
    assert_eq!(compared + excluded.len(), all.len());
}

pub(crate) fn fixture(slug: &str) -> PathBuf {
    workspace_root().join("fixtures").join(slug)
}

fn case_of(slug: &str) -> Case {
    fixtures()
        .into_iter()
        .find(|(s, _, _)| s == slug)
        .map(|(_, _, c)| c)
        .expect("fixture")
}

/// Runs the live diagnosis of a fixture with extra fake options and extra flags.
pub(crate) fn run_fixture(
    slug: &str,
    extra_opts: FakeOptions,
    extra_args: &[&str],
) -> (Live, Output) {
    let dir = fixture(slug);
    let case = case_of(slug);
    let m = live_mapping(&dir, &case);
    let (args, mut opts) = (m.args, m.opts);
    for (s, f) in extra_opts.faults {
        opts.faults.insert(s, f);
    }
    opts.retry_after_secs = extra_opts.retry_after_secs.or(opts.retry_after_secs);
    opts.logging_empty_pages = extra_opts.logging_empty_pages;
    opts.garble.extend(extra_opts.garble);
    opts.source_latency.extend(extra_opts.source_latency);
    let live = Live::bundle(&dir, opts);
    let mut full = s(&["diagnose"]);
    full.extend(live.target_args());
    full.extend(args);
    full.extend(extra_args.iter().map(|a| a.to_string()));
    let out = live.run(&full);
    (live, out)
}

#[test]
fn refused_sources_become_gaps_naming_the_permission() {
    let opts = FakeOptions::new()
        .fail(Source::ProjectsGetIamPolicy, Fault::deny())
        .fail(Source::FoldersGetIamPolicy, Fault::deny())
        .fail(Source::LoggingEntriesList, Fault::deny());
    let (live, out) = run_fixture("healthy-bound-sa-200", opts, &["--format", "json"]);
    let v = json_of(&out, "partial permissions");
    let gaps = v["gaps"].as_array().cloned().unwrap_or_default();
    let gap = |src: &str| {
        gaps.iter()
            .find(|g| g["source"] == src)
            .cloned()
            .unwrap_or_else(|| panic!("no gap for {src}: {gaps:?}"))
    };
    let p = gap("project_iam_policy");
    assert_eq!(p["state"], "denied");
    assert_eq!(
        p["needs_permission"],
        "resourcemanager.projects.getIamPolicy"
    );
    let f = gap("folder_iam_policy:555000111222");
    assert_eq!(
        f["needs_permission"],
        "resourcemanager.folders.getIamPolicy"
    );
    let l = gap("logs");
    assert_eq!(l["needs_permission"], "logging.logEntries.list");
    // No org-policy file in this bundle: the fake refuses them.
    assert_eq!(
        gap("org_policies")["needs_permission"],
        "orgpolicy.policy.get"
    );
    // The sources that were readable still count: the service policy grants the caller.
    assert!(
        gaps.iter().all(|g| g["source"] != "service_iam_policy"),
        "{gaps:?}"
    );
    assert!(matches!(out.status.code(), Some(0 | 1)));
    assert!(live.fake.mutating_calls().is_empty());
}

#[test]
fn an_unreadable_hierarchy_is_a_gap_not_an_absence() {
    // getAncestry refused: the walk one level at a time takes over, and stops at folders.get.
    let opts = FakeOptions::new()
        .fail(Source::ProjectsGetAncestry, Fault::deny())
        .fail(Source::FoldersGet, Fault::deny());
    let (live, out) = run_fixture(
        "missing-binding-sa-not-bound-anywhere",
        opts,
        &["--format", "json"],
    );
    let v = json_of(&out, "hierarchy");
    let gaps = v["gaps"].as_array().cloned().unwrap_or_default();
    assert!(
        gaps.iter()
            .any(|g| g["source"] == "organization_iam_policy:unknown"
                && g["needs_permission"] == "resourcemanager.folders.get"),
        "{gaps:?}"
    );
    assert!(
        text(&out.stderr).contains("the resource hierarchy above folders/555000111222 is unknown")
    );
    // The folder's own policy was still read (its getIamPolicy does not need folders.get).
    assert!(!live.fake.calls_to(Source::FoldersGetIamPolicy).is_empty());
    assert_eq!(live.fake.calls_to(Source::FoldersGet).len(), 1);
}

/// `-v`'s `(chain N)` of the first trace line that contains `needle`.
fn chain_of(stderr: &str, needle: &str) -> Option<u32> {
    let line = stderr.lines().find(|l| l.contains(needle))?;
    line.rsplit_once("(chain ")?
        .1
        .trim_end_matches(')')
        .parse()
        .ok()
}

fn longest_chain(stderr: &str) -> Option<u32> {
    stderr
        .lines()
        .find_map(|l| l.split_once("longest chain of dependent calls: "))
        .and_then(|(_, n)| n.trim().parse().ok())
}

const FOLDER_FIXTURE: &str = "functions-invoker-role-folder-level";

#[test]
fn the_ancestry_is_one_call_and_its_reads_start_at_once_the_next_time() {
    let dir = fixture(FOLDER_FIXTURE);
    let m = live_mapping(&dir, &case_of(FOLDER_FIXTURE));
    let live = Live::bundle(&dir, m.opts);
    let mut args = s(&["diagnose"]);
    args.extend(live.target_args());
    args.extend(m.args);
    args.extend(s(&["--format", "json", "-v"]));
    let first = live.run(&args);
    let err = text(&first.stderr);
    // One getAncestry instead of projects.get → folders.get → organizations.get.
    assert_eq!(live.fake.calls_to(Source::ProjectsGetAncestry).len(), 1);
    assert!(live.fake.calls_to(Source::FoldersGet).is_empty(), "{err}");
    assert!(
        live.fake.calls_to(Source::OrganizationsGet).is_empty(),
        "{err}"
    );
    assert_eq!(chain_of(&err, "projects.getAncestry"), Some(1), "{err}");
    assert_eq!(chain_of(&err, "folders.getIamPolicy"), Some(2), "{err}");
    assert_eq!(
        chain_of(&err, "organizations.getIamPolicy"),
        Some(2),
        "{err}"
    );
    let cache = live
        .home
        .path()
        .join(".cache/invoker-doctor/ancestry-shop-prod.json");
    let id = &live.fake.scenario().identity;
    let cache = cache.with_file_name(format!("ancestry-{}.json", id.project_id));
    let remembered: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(&cache).expect("the ancestry is cached"))
            .expect("a JSON list");
    assert_eq!(
        remembered,
        ["folders/555000111222", "organizations/987654321098"]
    );

    // The next run reads the ancestors' policies at t = 0: one round trip in all.
    let second = live.run(&args);
    let err2 = text(&second.stderr);
    assert_eq!(chain_of(&err2, "folders.getIamPolicy"), Some(1), "{err2}");
    assert_eq!(
        chain_of(&err2, "organizations.getIamPolicy"),
        Some(1),
        "{err2}"
    );
    assert_eq!(longest_chain(&err2), Some(1), "{err2}");
    assert!(longest_chain(&err) > Some(1), "{err}");
    let (a, b) = (json_of(&first, "cold"), json_of(&second, "warm"));
    assert_eq!(findings(&a), findings(&b));
    assert_eq!(a["gaps"], b["gaps"]);
    assert_eq!(a["findings"][0]["cause"], "functions_invoker_role_only");

    // A project moved since: the stale folder's reads are dropped, the real ones made.
    std::fs::write(&cache, r#"["folders/999","organizations/987654321098"]"#).expect("cache");
    let moved = live.run(&args);
    let err3 = text(&moved.stderr);
    let c = json_of(&moved, "moved");
    assert_eq!(findings(&a), findings(&c));
    assert_eq!(a["gaps"], c["gaps"]);
    assert!(
        live.fake
            .calls_to(Source::FoldersGetIamPolicy)
            .iter()
            .any(|c| c.path.contains("folders/999")),
        "the cached ancestor was read at t = 0"
    );
    assert!(err3.contains("no longer under folders/999"), "{err3}");
    assert_eq!(
        chain_of(&err3, "folders.getIamPolicy folders/555000111222"),
        Some(2),
        "{err3}"
    );
    let remembered: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(&cache).expect("cache")).expect("list");
    assert_eq!(
        remembered,
        ["folders/555000111222", "organizations/987654321098"]
    );

    // A cache that is not a list of ancestors is ignored, never trusted.
    std::fs::write(&cache, r#"["projects/evil", 3]"#).expect("cache");
    let junk = live.run(&args);
    assert_eq!(findings(&a), findings(&json_of(&junk, "junk cache")));
    assert!(live.fake.mutating_calls().is_empty());
}

#[test]
fn troubleshooter_starts_at_once_when_the_caller_and_the_time_are_known() {
    let at = "2026-11-20T17:51:30.5Z";
    let needle = "policytroubleshooter.iam.troubleshoot";
    // Caller from the token, time from --at: nothing to wait for.
    let (live, out) = run_fixture(
        SETTLES,
        FakeOptions::new(),
        &["--format", "json", "-v", "--at", at],
    );
    let err = text(&out.stderr);
    assert_eq!(chain_of(&err, needle), Some(1), "{err}");
    assert_eq!(troubleshoot_bodies(&live).len(), 1);
    let v = json_of(&out, "early");
    assert_eq!(
        v["cross_check"]["agreement"], "settles",
        "{}",
        v["cross_check"]
    );
    // The time from the failing request's log entry: asked right after the logs.
    let (live, out) = run_fixture(SETTLES, FakeOptions::new(), &["--format", "json", "-v"]);
    let err = text(&out.stderr);
    let logs = chain_of(&err, "logging.entries.list").expect("logs in the trace");
    assert_eq!(chain_of(&err, needle), Some(logs + 1), "{err}");
    assert_eq!(troubleshoot_bodies(&live).len(), 1, "asked once");
    let w = json_of(&out, "after the logs");
    assert_eq!(
        w["cross_check"],
        json_of(
            &run_fixture(SETTLES, FakeOptions::new(), &["--format", "json"]).1,
            "plain"
        )["cross_check"]
    );
    // A --caller that the logs' caller would not change is asked early too; a group is not asked.
    let (live, out) = run_fixture(
        SETTLES,
        FakeOptions::new(),
        &[
            "--format",
            "json",
            "-v",
            "--at",
            at,
            "--caller",
            "group:ops@example.com",
        ],
    );
    assert!(troubleshoot_bodies(&live).is_empty());
    assert!(
        text(&out.stderr).contains("Policy Troubleshooter not asked"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn transient_failures_are_retried_and_the_diagnosis_is_unchanged() {
    let slug = "missing-binding-sa-not-bound-anywhere";
    let (_, clean) = run_fixture(slug, FakeOptions::new(), &["--format", "json"]);
    let opts = FakeOptions::new()
        .fail(Source::LoggingEntriesList, Fault::first(503, 2))
        .fail(Source::RunServicesGet, Fault::first(503, 1))
        .fail(Source::FoldersGetIamPolicy, Fault::first(500, 1));
    let (live, out) = run_fixture(slug, opts, &["--format", "json", "-v"]);
    let (a, b) = (json_of(&clean, "clean"), json_of(&out, "with 503s"));
    assert_eq!(findings(&a), findings(&b));
    assert_eq!(a["gaps"], b["gaps"]);
    // Three queries (refused requests, a page of the other requests, audit logs) share the
    // two 503s; all end with an answer.
    let mut statuses: Vec<u16> = live
        .fake
        .calls_to(Source::LoggingEntriesList)
        .iter()
        .map(|c| c.status)
        .collect();
    statuses.sort();
    assert_eq!(statuses, vec![200, 200, 200, 503, 503]);
    assert_eq!(live.fake.calls_to(Source::RunServicesGet).len(), 2);
    let err = text(&out.stderr);
    assert!(
        err.contains("logging.entries.list projects/shop-prod [")
            && err.contains("attempts: 503, retried after"),
        "{err}"
    );
    assert!(err.contains("run.services.get projects/shop-prod/locations/europe-west1/services/orders-api [2 attempts: 503, retried after"), "{err}");
}

#[test]
fn rate_limits_honour_retry_after() {
    let opts = FakeOptions::new()
        .fail(Source::ProjectsGetIamPolicy, Fault::first(429, 1))
        .retry_after(1);
    let (live, out) = run_fixture("healthy-bound-sa-200", opts, &["--format", "json", "-v"]);
    let v = json_of(&out, "429");
    assert!(
        v["gaps"]
            .as_array()
            .is_some_and(|g| g.iter().all(|g| g["source"] != "project_iam_policy")),
        "{v}"
    );
    let calls = live.fake.calls_to(Source::ProjectsGetIamPolicy);
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        vec![429, 200]
    );
    let err = text(&out.stderr);
    assert!(err.contains("429, waited 1.0 s (Retry-After)"), "{err}");
}

#[test]
fn a_source_that_keeps_failing_is_a_failed_gap() {
    let opts = FakeOptions::new().fail(Source::RunServicesGetIamPolicy, Fault::always(503));
    let (live, out) = run_fixture("healthy-bound-sa-200", opts, &["--format", "json"]);
    let v = json_of(&out, "503");
    let g = v["gaps"]
        .as_array()
        .and_then(|g| {
            g.iter()
                .find(|g| g["source"] == "service_iam_policy")
                .cloned()
        })
        .expect("gap");
    assert_eq!(g["state"], "failed");
    // Bounded: the default policy makes four attempts.
    assert_eq!(live.fake.calls_to(Source::RunServicesGetIamPolicy).len(), 4);
}

#[test]
fn empty_log_pages_are_paged_through() {
    let opts = FakeOptions::new().logging_empty_pages(2);
    let (live, out) = run_fixture(
        "no-token-browser-cors-preflight",
        opts,
        &["--format", "json"],
    );
    let v = json_of(&out, "paging");
    assert_eq!(v["findings"][0]["cause"], "no_token");
    let request_queries: Vec<Value> = live
        .fake
        .calls_to(Source::LoggingEntriesList)
        .iter()
        .filter_map(|c| c.body_json())
        .filter(|b| {
            b["filter"]
                .as_str()
                .is_some_and(|f| f.contains("run.googleapis.com%2Frequests"))
        })
        .collect();
    let (successes, request_queries): (Vec<Value>, Vec<Value>) =
        request_queries.into_iter().partition(|b| {
            b["filter"]
                .as_str()
                .is_some_and(|f| f.contains("NOT httpRequest.status=(401 OR 403 OR 404)"))
        });
    assert_eq!(
        request_queries.len(),
        3,
        "two empty pages, then the entries"
    );
    // The other requests: one small page at most is read (empty pages are paged through).
    assert!(!successes.is_empty());
    assert!(successes.iter().all(|b| b["pageSize"] == 50));
    assert!(request_queries[1]["pageToken"].is_string());
    // The query is tight and bounded, and ordered newest first.
    let body = &request_queries[0];
    let filter = body["filter"].as_str().unwrap_or("");
    for part in [
        "resource.type=\"cloud_run_revision\"",
        "resource.labels.service_name=\"orders-api\"",
        "logName=\"projects/shop-prod/logs/run.googleapis.com%2Frequests\"",
        "httpRequest.status=(401 OR 403 OR 404)",
        "timestamp>=",
    ] {
        assert!(filter.contains(part), "{filter}");
    }
    assert_eq!(body["orderBy"], "timestamp desc");
    assert_eq!(body["resourceNames"][0], "projects/shop-prod");
}

#[test]
fn record_round_trips_and_holds_no_token() {
    let slug = "missing-binding-sa-not-bound-anywhere";
    let dir = fixture(slug);
    let rec = tempfile::tempdir().expect("tempdir");
    let rec_dir = rec.path().join("bundle");
    let rec_s = rec_dir.display().to_string();
    let opts = FakeOptions::new().fail(Source::OrganizationsGetIamPolicy, Fault::deny());
    let (live, out) = run_fixture(slug, opts, &["--format", "json", "--record", &rec_s]);
    let live_report = json_of(&out, "record");
    assert!(text(&out.stderr).contains("note: recorded"));
    // The files of the contract, no token file.
    let mut names: Vec<String> = std::fs::read_dir(&rec_dir)
        .expect("recorded dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for f in [
        "service.json",
        "service-iam-policy.json",
        "project-iam-policy.json",
        "folder-555000111222-iam-policy.json",
        "organization-987654321098-iam-policy.json",
        "org-policies.json",
        "logs.json",
        "role-ordersReader.json",
        "context.json",
    ] {
        assert!(names.iter().any(|n| n == f), "{f} not recorded: {names:?}");
    }
    assert!(!names.iter().any(|n| n == "token.txt"));
    let parts = token_parts(&dir);
    for n in &names {
        let t = std::fs::read_to_string(rec_dir.join(n)).expect("read");
        assert!(!t.contains(&live.token), "{n} holds the API token");
        for p in &parts {
            assert!(!t.contains(p), "{n} holds part of the caller's token");
        }
    }
    let refused: Value = serde_json::from_str(
        &std::fs::read_to_string(rec_dir.join("organization-987654321098-iam-policy.json"))
            .expect("read"),
    )
    .expect("json");
    assert_eq!(refused["error"]["status"], "PERMISSION_DENIED");
    // Replay offline, with the same token flag: same findings, same gaps.
    let replay = replay_with_token(&rec_s, &dir);
    assert_eq!(findings(&live_report), findings(&replay));
    assert_eq!(live_report["gaps"], replay["gaps"]);
    assert!(
        live_report["gaps"].as_array().is_some_and(|g| g
            .iter()
            .any(|g| g["source"] == "organization_iam_policy:987654321098")),
        "{}",
        live_report["gaps"]
    );
    // Without the token the caller still comes from context.json.
    let a = s(&[
        "invoker-doctor",
        "diagnose",
        "--bundle",
        &rec_s,
        "--format",
        "json",
    ]);
    let replay: Value = serde_json::from_str(&run_args(&a).stdout).expect("replay json");
    assert_eq!(
        replay["caller"]["principal"],
        "serviceAccount:checkout@shop-prod.iam.gserviceaccount.com"
    );
    assert_eq!(replay["findings"][0]["cause"], "missing_invoker_binding");
}

/// An owner's refused attempt to go public, known only from the audit log: live mode reads
/// it within the tight audit filter, `--record` writes it, and the replay diagnoses the same.
#[test]
fn refused_public_attempts_are_read_live_and_recorded() {
    for (slug, cause, insert_id) in [
        (
            "public-grant-refused-invoker-check-disable-v2",
            "public_grant_not_applied",
            "-3u8nhke2d41b",
        ),
        (
            "public-blocked-by-drs-audit-precondition-failure",
            "public_access_blocked_by_domain_restriction",
            "-a1b4xke9q2rt",
        ),
    ] {
        let rec = tempfile::tempdir().expect("tempdir");
        let rec_s = rec.path().join("bundle").display().to_string();
        let (live, out) = run_fixture(
            slug,
            FakeOptions::new(),
            &["--format", "json", "--record", &rec_s],
        );
        let report = json_of(&out, slug);
        assert_eq!(report["findings"][0]["cause"], cause, "{slug}");
        assert_eq!(report["caller"]["source"], "audit_log", "{slug}");
        assert_eq!(report["caller"]["intent"]["insert_id"], insert_id, "{slug}");
        assert_eq!(report["caller"]["intent"]["refused"], true, "{slug}");
        // The audit query stays tight: the service's resource name and the methods it needs.
        let audit_filters: Vec<String> = live
            .fake
            .calls_to(Source::LoggingEntriesList)
            .iter()
            .filter_map(|c| c.body_json())
            .filter_map(|b| b["filter"].as_str().map(str::to_string))
            .filter(|f| f.contains("cloudaudit.googleapis.com"))
            .collect();
        assert!(!audit_filters.is_empty(), "{slug}: no audit query");
        for f in &audit_filters {
            assert!(f.contains("/services/orders-api"), "{f}");
            assert!(
                f.contains("SetIamPolicy") && f.contains("UpdateService"),
                "{f}"
            );
            assert!(f.contains("timestamp>="), "{f}");
        }
        let logs = std::fs::read_to_string(rec.path().join("bundle/logs.json")).expect("logs");
        assert!(
            logs.contains(insert_id),
            "{slug}: the audit entry was not recorded"
        );
        let a = s(&[
            "invoker-doctor",
            "diagnose",
            "--bundle",
            &rec_s,
            "--format",
            "json",
        ]);
        let replay: Value = serde_json::from_str(&run_args(&a).stdout).expect("replay json");
        assert_eq!(findings(&replay), findings(&report), "{slug}");
        assert_eq!(replay["denial"], report["denial"], "{slug}");
    }
}

/// The organization's custom constraints are listed live; one on IAM allow policies is
/// recorded as `org-policy-custom-*.json` with its effective policy, and the replay agrees.
#[test]
fn custom_constraints_are_listed_live_and_recorded() {
    let slug = "public-blocked-by-custom-constraint-definition";
    let rec = tempfile::tempdir().expect("tempdir");
    let rec_s = rec.path().join("bundle").display().to_string();
    let (live, out) = run_fixture(
        slug,
        FakeOptions::new(),
        &["--format", "json", "--record", &rec_s],
    );
    let report = json_of(&out, slug);
    assert_eq!(
        report["findings"][0]["cause"],
        "public_access_blocked_by_custom_constraint"
    );
    let lists = live.fake.calls_to(Source::OrgPolicyCustomConstraintsList);
    assert_eq!(
        lists.len(),
        1,
        "one list of the organization's custom constraints"
    );
    assert!(lists.iter().all(|c| c.status == 200));
    let def = rec
        .path()
        .join("bundle/org-policy-custom-custom.denyPublicRunInvoker.json");
    assert!(def.exists(), "the custom constraint was not recorded");
    let org = std::fs::read_to_string(rec.path().join("bundle/org-policies.json")).expect("org");
    assert!(
        org.contains("policies/custom.denyPublicRunInvoker"),
        "{org}"
    );
    let a = s(&[
        "invoker-doctor",
        "diagnose",
        "--bundle",
        &rec_s,
        "--format",
        "json",
    ]);
    let replay: Value = serde_json::from_str(&run_args(&a).stdout).expect("replay json");
    assert_eq!(findings(&replay), findings(&report));
    // Refused: only a note (the audit log would still speak); the diagnosis goes on.
    let (live, out) = run_fixture(
        slug,
        FakeOptions::new().fail(Source::OrgPolicyCustomConstraintsList, Fault::deny()),
        &["--format", "json", "-v"],
    );
    assert!(
        live.fake
            .calls_to(Source::OrgPolicyCustomConstraintsList)
            .iter()
            .all(|c| c.status == 403)
    );
    let r = json_of(&out, "denied list");
    assert!(r["findings"].as_array().is_some_and(|f| !f.is_empty()));
    assert_ne!(
        r["findings"][0]["cause"],
        "public_access_blocked_by_custom_constraint"
    );
}

const SETTLES: &str = "crosscheck-troubleshooter-settles-group-not-member";
const CHECKOUT: &str = "checkout@shop-prod.iam.gserviceaccount.com";

/// The bodies of the Policy Troubleshooter requests the fake received.
fn troubleshoot_bodies(live: &Live) -> Vec<Value> {
    live.fake
        .calls_to(Source::PolicyTroubleshooterIamTroubleshoot)
        .iter()
        .map(|c| c.body_json().expect("a JSON body"))
        .collect()
}

fn time_of(v: &Value) -> Option<ipd_model::time::Timestamp> {
    v.as_str().and_then(ipd_model::time::parse_rfc3339)
}

#[test]
fn troubleshooter_is_asked_about_the_caller_at_the_request_time() {
    // --at: the time given.
    let at = "2026-11-20T17:51:30.5Z";
    let (live, out) = run_fixture(
        SETTLES,
        FakeOptions::new(),
        &["--format", "json", "--at", at],
    );
    let v = json_of(&out, "troubleshooter --at");
    live.assert_no_api_token(&out, "troubleshooter --at");
    let bodies = troubleshoot_bodies(&live);
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let t = &bodies[0]["accessTuple"];
    assert_eq!(
        t["principal"], CHECKOUT,
        "a bare email, no serviceAccount: prefix"
    );
    assert_eq!(
        t["fullResourceName"],
        "//run.googleapis.com/projects/shop-prod/locations/europe-west1/services/orders-api"
    );
    assert_eq!(t["permission"], "run.routes.invoke");
    assert_eq!(
        time_of(&t["conditionContext"]["request"]["receiveTime"]),
        ipd_model::time::parse_rfc3339(at)
    );
    let calls = live
        .fake
        .calls_to(Source::PolicyTroubleshooterIamTroubleshoot);
    assert!(calls[0].authorization && calls[0].status == 200 && !calls[0].mutating);
    assert_eq!(
        v["cross_check"]["agreement"], "settles",
        "{}",
        v["cross_check"]
    );
    assert_eq!(v["cross_check"]["principal"], CHECKOUT);

    // Without --at: the failing request's time, from its log entry.
    let (live, out) = run_fixture(SETTLES, FakeOptions::new(), &["--format", "json"]);
    let v = json_of(&out, "troubleshooter");
    let bodies = troubleshoot_bodies(&live);
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let sent = time_of(&bodies[0]["accessTuple"]["conditionContext"]["request"]["receiveTime"]);
    assert!(sent.is_some(), "{}", bodies[0]);
    assert_eq!(sent, time_of(&v["request"]["time"]));

    // -v lists the call like the others.
    let (_, out) = run_fixture(SETTLES, FakeOptions::new(), &["--format", "json", "-v"]);
    assert!(
        text(&out.stderr).contains(&format!(
            "200 policytroubleshooter.iam.troubleshoot run.routes.invoke of {CHECKOUT} on projects/shop-prod/locations/europe-west1/services/orders-api"
        )),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn no_troubleshooter_flag_and_unaskable_callers_make_no_call() {
    let (live, out) = run_fixture(
        SETTLES,
        FakeOptions::new(),
        &["--format", "json", "--no-troubleshooter"],
    );
    let v = json_of(&out, "--no-troubleshooter");
    assert!(troubleshoot_bodies(&live).is_empty());
    assert!(v.get("cross_check").is_none_or(Value::is_null), "{v}");
    assert!(!live.fake.calls().is_empty(), "the rest is still read");

    // A group cannot be asked about (the API takes a user's or service account's email).
    let (live, out) = run_fixture(
        SETTLES,
        FakeOptions::new(),
        &[
            "--format",
            "json",
            "--caller",
            "group:commerce-services@shop.example.com",
        ],
    );
    let v = json_of(&out, "group caller");
    assert_eq!(
        v["caller"]["principal"],
        "group:commerce-services@shop.example.com"
    );
    assert!(troubleshoot_bodies(&live).is_empty());
    assert_eq!(v["cross_check"]["agreement"], "cannot_ask", "{v}");
    assert!(
        v["cross_check"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("cannot be asked about this principal type")),
        "{v}"
    );

    // Nor a workforce identity federation principal.
    let who = "principal://iam.googleapis.com/locations/global/workforcePools/partners/subject/bob@partner.example";
    let (live, out) = run_fixture(
        SETTLES,
        FakeOptions::new(),
        &["--format", "json", "--caller", who],
    );
    let v = json_of(&out, "workforce caller");
    assert_eq!(v["caller"]["principal"], who);
    assert!(troubleshoot_bodies(&live).is_empty());
    assert_eq!(v["cross_check"]["agreement"], "cannot_ask", "{v}");

    // Nor allUsers (--expect-public without a caller).
    let live = Live::bundle(&fixture(SETTLES), FakeOptions::new());
    let mut args = s(&["diagnose", "--expect-public", "--format", "json"]);
    args.extend(live.target_args());
    let out = live.run(&args);
    json_of(&out, "expect public");
    assert!(troubleshoot_bodies(&live).is_empty());
}

#[test]
fn troubleshooter_unavailable_is_retried_then_answers() {
    let opts = FakeOptions::new().fail(
        Source::PolicyTroubleshooterIamTroubleshoot,
        Fault::first(503, 1),
    );
    let (live, out) = run_fixture(SETTLES, opts, &["--format", "json", "-v"]);
    let v = json_of(&out, "503 then 200");
    let calls = live
        .fake
        .calls_to(Source::PolicyTroubleshooterIamTroubleshoot);
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        [503, 200]
    );
    let (offline, _) = offline_report(&fixture(SETTLES), &case_of(SETTLES));
    assert_eq!(v["cross_check"], offline["cross_check"]);
    assert!(text(&out.stderr).contains("2 attempts: 503, retried after"));
    live.assert_no_api_token(&out, "503 then 200");

    // A troubleshooter that keeps failing: the cross-check is unavailable, nothing else
    // changes.
    let opts = FakeOptions::new().fail(
        Source::PolicyTroubleshooterIamTroubleshoot,
        Fault::always(503),
    );
    let (_, out) = run_fixture(SETTLES, opts, &["--format", "json"]);
    let failing = json_of(&out, "503 always");
    assert_eq!(failing["cross_check"]["agreement"], "unavailable");
    assert_eq!(findings(&failing), findings(&offline));
}

#[test]
fn recorded_troubleshooter_answer_replays_the_same_cross_check() {
    for slug in [
        SETTLES,
        "crosscheck-troubleshooter-disagrees-stale-bundle",
        "crosscheck-troubleshooter-api-disabled-healthy",
    ] {
        let dir = fixture(slug);
        let rec = tempfile::tempdir().expect("tempdir");
        let rec_s = rec.path().join("bundle").display().to_string();
        let (live, out) = run_fixture(
            slug,
            FakeOptions::new(),
            &["--format", "json", "--record", &rec_s],
        );
        let live_report = json_of(&out, slug);
        let recorded = std::fs::read_to_string(rec.path().join("bundle/troubleshoot.json"))
            .unwrap_or_else(|e| panic!("{slug}: troubleshoot.json not recorded: {e}"));
        assert!(
            !recorded.contains(&live.token),
            "{slug}: the API token is recorded"
        );
        for p in token_parts(&dir) {
            assert!(
                !recorded.contains(&p),
                "{slug}: part of the caller's token is recorded"
            );
        }
        let want: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("troubleshoot.json")).expect("fixture"),
        )
        .expect("json");
        assert_eq!(
            serde_json::from_str::<Value>(&recorded).expect("json"),
            want,
            "{slug}: the answer is recorded as served"
        );
        let replay = replay_with_token(&rec_s, &dir);
        assert!(live_report["cross_check"].is_object(), "{slug}");
        assert_eq!(live_report["cross_check"], replay["cross_check"], "{slug}");
        assert_eq!(findings(&live_report), findings(&replay), "{slug}");
    }
}

#[test]
fn url_resolves_the_service() {
    let slug = "missing-binding-sa-not-bound-anywhere";
    let dir = fixture(slug);
    let case = case_of(slug);
    let m = live_mapping(&dir, &case);
    let live = Live::bundle(&dir, m.opts);
    let id = live.fake.scenario().identity.clone();
    let mut base = s(&["diagnose", "--format", "json"]);
    base.extend(m.args);
    let mut by_name = base.clone();
    by_name.extend(live.target_args());
    let expected = findings(&json_of(&live.run(&by_name), "by name"));

    // The deterministic URL is parsed: no listing.
    live.fake.clear_calls();
    let mut by_url = base.clone();
    by_url.extend([
        "--url".to_string(),
        format!(
            "https://{}-{}.{}.run.app/v1/orders",
            id.service, id.project_number, id.region
        ),
    ]);
    let out = live.run(&by_url);
    let v = json_of(&out, "deterministic url");
    assert_eq!(findings(&v), expected);
    assert_eq!(v["target"]["project"], "shop-prod");
    assert!(live.fake.calls_to(Source::RunServicesList).is_empty());

    // Another URL of the service is found by listing the region.
    let svc: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("service.json")).expect("service.json"),
    )
    .expect("json");
    let other = svc["urls"]
        .as_array()
        .and_then(|u| {
            u.iter()
                .filter_map(Value::as_str)
                .find(|u| u.contains(".a.run.app"))
        })
        .expect("an a.run.app URL in the fixture")
        .to_string();
    let mut listed = base.clone();
    listed.extend(s(&[
        "--url",
        &other,
        "--project",
        &id.project_id,
        "--region",
        &id.region,
    ]));
    let v = json_of(&live.run(&listed), "listed url");
    assert_eq!(findings(&v), expected);
    assert!(!live.fake.calls_to(Source::RunServicesList).is_empty());

    // Without a project there is nothing to list.
    let mut no_project = base.clone();
    no_project.extend(s(&["--url", &other]));
    let out = live.run(&no_project);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("pass --project P"),
        "{}",
        text(&out.stderr)
    );

    // gcloud's default project is used when --project is absent.
    std::fs::create_dir_all(live.home.path().join("gcloud/configurations")).expect("mkdir");
    std::fs::write(
        live.home
            .path()
            .join("gcloud/configurations/config_default"),
        format!("[core]\nproject = {}\n", id.project_id),
    )
    .expect("config");
    let mut from_config = base.clone();
    from_config.extend(s(&["--region", &id.region, "--service", &id.service]));
    let out = live.run(&from_config);
    assert_eq!(findings(&json_of(&out, "gcloud default project")), expected);
    assert!(
        text(&out.stderr)
            .contains("note: using project `shop-prod` from gcloud configuration `default`")
    );

    // A service that does not exist: the diagnosis says so.
    let mut missing = base.clone();
    missing.extend(s(&[
        "--project",
        &id.project_id,
        "--region",
        &id.region,
        "--service",
        "nope",
    ]));
    let out = live.run(&missing);
    assert!(
        text(&out.stderr).contains(&format!(
            "no service `projects/{}/locations/{}/services/nope` (404 NOT_FOUND",
            id.project_id, id.region
        )),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn no_credentials_is_a_start_error_and_explain_falls_back_to_the_paste() {
    let live = Live::bundle(&fixture("healthy-bound-sa-200"), FakeOptions::new());
    let mut c = live.cmd();
    c.env_remove("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE");
    let mut args = s(&["diagnose"]);
    args.extend(live.target_args());
    let out = c.args(&args).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("error: no credentials"), "{err}");
    assert!(live.fake.calls().is_empty());

    // A token file that cannot be read is an error that names it.
    let out = live
        .cmd()
        .args(&args)
        .args(["--access-token-file", "/nonexistent/token"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/token: cannot read the access token file"));

    // explain without credentials: what the paste alone shows, and why there is no more.
    let entry = std::fs::read_to_string(
        workspace_root()
            .join("crates/ipd-model/testdata/cloud-run-request-log-403-unauthenticated.json"),
    )
    .expect("example");
    let mut c = live.cmd();
    c.env_remove("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE");
    let out = c
        .args(["explain", &entry, "--format", "json"])
        .output()
        .expect("run");
    let v = json_of(&out, "explain offline");
    assert_eq!(v["findings"][0]["cause"], "no_token");
    let hints = v["paste"]["next"].to_string();
    assert!(
        hints.contains("live lookup was not possible (no credentials"),
        "{hints}"
    );
    assert!(live.fake.calls().is_empty());
}

#[test]
fn explain_finds_the_request_live() {
    let slug = "at-flag-selects-cloud-tasks-entry";
    let dir = fixture(slug);
    let logs: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("logs.json")).expect("logs"))
            .expect("json");
    let entry = logs
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|e| e["httpRequest"]["status"] == 403 && e["trace"].is_string())
        })
        .cloned()
        .expect("a 403 entry with a trace");
    let insert_id = entry["insertId"].as_str().expect("insertId").to_string();
    let trace = entry["trace"]
        .as_str()
        .and_then(|t| t.rsplit('/').next())
        .expect("trace")
        .to_string();
    let m = live_mapping(&dir, &case_of(slug));
    let live = Live::bundle(&dir, m.opts);
    let fresh = freshness_for(&dir);
    for reference in [
        insert_id.clone(),
        trace.clone(),
        format!("{trace}/12345;o=1"),
        format!(
            "https://console.cloud.google.com/logs/query;query=trace%3D%22projects%2Fshop-prod%2Ftraces%2F{trace}%22?project=shop-prod"
        ),
    ] {
        let offline = run_args(&s(&[
            "invoker-doctor",
            "explain",
            &reference,
            "--bundle",
            &dir.display().to_string(),
            "--format",
            "json",
        ]));
        let offline: Value = serde_json::from_str(&offline.stdout).expect("offline");
        let out = live.run(&s(&[
            "explain",
            &reference,
            "--project",
            "shop-prod",
            "--freshness",
            &fresh,
            "--format",
            "json",
        ]));
        let v = json_of(&out, &reference);
        assert_eq!(findings(&v), findings(&offline), "{reference}");
        assert_eq!(
            v["request"]["log_insert_id"],
            insert_id.as_str(),
            "{reference}"
        );
        assert!(
            v["paste"]["next"]
                .to_string()
                .contains("found in Cloud Logging of project `shop-prod`"),
            "{reference}: {}",
            v["paste"]
        );
        live.assert_no_api_token(&out, &reference);
    }
    // A pasted LogEntry carries its own project, region and service.
    let out = live.run(&s(&[
        "explain",
        &entry.to_string(),
        "--freshness",
        &fresh,
        "--format",
        "json",
    ]));
    let v = json_of(&out, "log entry");
    assert_eq!(v["target"]["service"], "orders-api");
    assert!(
        v["gaps"]
            .as_array()
            .is_some_and(|g| g.iter().all(|g| g["source"] != "service"))
    );
    // An unknown ID is said to be not found.
    let out = live.run(&s(&[
        "explain",
        "00000000000000000000000000000000",
        "--project",
        "shop-prod",
        "--format",
        "json",
    ]));
    let v = json_of(&out, "unknown id");
    assert!(
        v["paste"]["next"]
            .to_string()
            .contains("not found in Cloud Logging of project `shop-prod`")
    );
    assert!(live.fake.mutating_calls().is_empty());
}

/// One request a [`Tiny`] server received.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    authorization: Option<String>,
    body: String,
}

/// A small HTTP server on 127.0.0.1 for the APIs the fake does not serve (token endpoints,
/// iamcredentials, tokeninfo, Pub/Sub): answers the first route whose pattern is part of the
/// request line, 404 otherwise, and keeps what it received.
struct Tiny {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Tiny {
    fn drop(&mut self) {
        // Wake the accept loop so its thread ends.
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let addr = self.url.trim_start_matches("http://").trim_end_matches('/');
        let _ = std::net::TcpStream::connect(addr);
    }
}

fn tiny_server(routes: Vec<(&'static str, String)>) -> Tiny {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(64) {
            if stop2.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Headers, then as many body bytes as Content-Length says.
            let head_end = loop {
                let n = stream.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(i + 4);
                }
            };
            let Some(head_end) = head_end else { continue };
            let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
            let header = |name: &str| {
                head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_string())
                })
            };
            let len: usize = header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < head_end + len {
                let n = stream.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let line = head.lines().next().unwrap_or("").to_string();
            let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
            let answer = routes.iter().find(|(p, _)| line.contains(p));
            seen2.lock().expect("lock").push(Seen {
                line: line.clone(),
                authorization: header("authorization"),
                body,
            });
            let (status, body) = match answer {
                Some((_, b)) => ("200 OK", b.clone()),
                None => (
                    "404 Not Found",
                    r#"{"error": {"code": 404, "message": "not here", "status": "NOT_FOUND"}}"#
                        .to_string(),
                ),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(resp.as_bytes());
        }
    });
    Tiny { url, seen, stop }
}

impl Tiny {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// gcloud's ADC file for a user, refreshed at `token_uri`.
fn write_user_adc(live: &Live, token_uri: &str) {
    let dir = live.home.path().join(".config/gcloud");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("application_default_credentials.json"),
        serde_json::json!({
            "type": "authorized_user",
            "client_id": "764086051850-test.apps.googleusercontent.com",
            "client_secret": "d-FL95Q19q7MQmFpd7hHD0Ty",
            "refresh_token": "1//refresh-token-that-must-stay-secret",
            "token_uri": token_uri,
        })
        .to_string(),
    )
    .expect("adc");
}

#[test]
fn application_default_credentials_refresh_a_user_token() {
    let live = Live::bundle(&fixture("healthy-bound-sa-200"), FakeOptions::new());
    let tiny = tiny_server(vec![(
        "/token",
        serde_json::json!({"access_token": live.token, "expires_in": 3600, "token_type": "Bearer"})
            .to_string(),
    )]);
    write_user_adc(&live, &format!("{}token", tiny.url));
    let mut c = live.cmd();
    c.env_remove("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE");
    let mut args = s(&["diagnose", "--format", "json", "-v"]);
    args.extend(live.target_args());
    let out = c.args(&args).output().expect("run");
    let v = json_of(&out, "adc");
    assert!(
        v["gaps"]
            .as_array()
            .is_some_and(|g| g.iter().all(|g| g["source"] != "service")),
        "{}",
        text(&out.stderr)
    );
    let seen = tiny.seen();
    assert_eq!(
        seen.len(),
        1,
        "one refresh, then the token is cached: {seen:?}"
    );
    assert!(seen[0].line.starts_with("POST /token"));
    assert!(seen[0].body.contains("refresh_token"));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!all.contains("refresh-token-that-must-stay-secret"));
    live.assert_no_api_token(&out, "adc");
}

#[test]
fn impersonation_uses_the_source_credentials_and_acts_as_the_service_account() {
    let live = Live::bundle(&fixture("healthy-bound-sa-200"), FakeOptions::new());
    let tiny = tiny_server(vec![
        (
            "/token",
            r#"{"access_token": "ya29.source-user-token", "expires_in": 3600, "token_type": "Bearer"}"#.to_string(),
        ),
        (
            ":generateAccessToken",
            serde_json::json!({"accessToken": live.token, "expireTime": "2099-01-01T00:00:00Z"}).to_string(),
        ),
    ]);
    write_user_adc(&live, &format!("{}token", tiny.url));
    let mut c = live.cmd();
    c.env_remove("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE")
        .env("CLOUDSDK_API_ENDPOINT_OVERRIDES_IAMCREDENTIALS", &tiny.url);
    let mut args = s(&[
        "diagnose",
        "--impersonate-service-account",
        "doctor@shop-prod.iam.gserviceaccount.com",
        "--as-me",
        "--format",
        "json",
    ]);
    args.extend(live.target_args());
    let out = c.args(&args).output().expect("run");
    let v = json_of(&out, "impersonation");
    assert_eq!(
        v["caller"]["principal"],
        "serviceAccount:doctor@shop-prod.iam.gserviceaccount.com"
    );
    let seen = tiny.seen();
    let generate = seen
        .iter()
        .find(|r| r.line.contains(":generateAccessToken"))
        .unwrap_or_else(|| panic!("no impersonation call: {seen:?}"));
    assert!(generate.line.starts_with(
        "POST /v1/projects/-/serviceAccounts/doctor@shop-prod.iam.gserviceaccount.com:generateAccessToken"
    ));
    assert_eq!(
        generate.authorization.as_deref(),
        Some("Bearer ya29.source-user-token")
    );
    assert!(
        v["gaps"]
            .as_array()
            .is_some_and(|g| g.iter().all(|g| g["state"] != "failed")),
        "{}",
        v["gaps"]
    );
    live.assert_no_api_token(&out, "impersonation");
    assert!(!text(&out.stderr).contains("ya29.source-user-token"));
}

#[test]
fn impersonation_from_a_static_token_calls_the_chosen_iamcredentials_endpoint() {
    // A token file (no ADC JSON) as the source: the call goes to the override, with the token.
    let live = Live::bundle(&fixture("healthy-bound-sa-200"), FakeOptions::new());
    let tiny = tiny_server(vec![(
        ":generateAccessToken",
        serde_json::json!({"accessToken": live.token, "expireTime": "2099-01-01T00:00:00Z"})
            .to_string(),
    )]);
    let mut c = live.cmd();
    c.env("CLOUDSDK_API_ENDPOINT_OVERRIDES_IAMCREDENTIALS", &tiny.url);
    let mut args = s(&[
        "diagnose",
        "--impersonate-service-account",
        "helper@shop-prod.iam.gserviceaccount.com,doctor@shop-prod.iam.gserviceaccount.com",
        "--as-me",
        "--format",
        "json",
    ]);
    args.extend(live.target_args());
    let out = c.args(&args).output().expect("run");
    let v = json_of(&out, "impersonation from a token file");
    assert_eq!(
        v["caller"]["principal"],
        "serviceAccount:doctor@shop-prod.iam.gserviceaccount.com"
    );
    let seen = tiny.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].line.starts_with(
        "POST /v1/projects/-/serviceAccounts/doctor@shop-prod.iam.gserviceaccount.com:generateAccessToken"
    ));
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(format!("Bearer {}", live.token).as_str())
    );
    live.assert_no_api_token(&out, "impersonation from a token file");
}

#[test]
fn impersonation_without_an_iamcredentials_override_calls_nothing_and_says_which_variable() {
    // Overrides are set for the other APIs and not IAM Credentials: the tool stays off
    // iamcredentials.googleapis.com (the stray proxy would see the attempt) and says why.
    let live = Live::bundle(&fixture("healthy-bound-sa-200"), FakeOptions::new());
    let mut args = s(&[
        "diagnose",
        "--impersonate-service-account",
        "doctor@shop-prod.iam.gserviceaccount.com",
        "--format",
        "json",
    ]);
    args.extend(live.target_args());
    let out = live.run(&args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("CLOUDSDK_API_ENDPOINT_OVERRIDES_IAMCREDENTIALS"),
        "{err}"
    );
    // (Any connection off the fake fails the test when `live` drops.)
    assert!(live.fake.calls().is_empty(), "{:?}", live.fake.calls());
}

#[test]
fn gcloud_proxy_properties_send_every_call_through_that_proxy() {
    // `gcloud config set proxy/address ...` as environment variables, without NO_PROXY: every
    // call (the fake's too) goes to that proxy, which refuses it with a bare 403; the run
    // completes, and the sources are failed (a proxy refused), not denied (IAM refused).
    let live = Live::bundle(&fixture("healthy-bound-sa-200"), FakeOptions::new());
    let addr = live.stray.url();
    let (host, port) = addr
        .trim_start_matches("http://")
        .rsplit_once(':')
        .expect("host:port");
    let mut c = live.cmd();
    c.env_remove("HTTPS_PROXY")
        .env_remove("HTTP_PROXY")
        .env_remove("NO_PROXY")
        .env("CLOUDSDK_PROXY_TYPE", "http")
        .env("CLOUDSDK_PROXY_ADDRESS", host)
        .env("CLOUDSDK_PROXY_PORT", port);
    let mut args = s(&["diagnose", "--format", "json", "--timeout", "10"]);
    args.extend(live.target_args());
    let out = c.args(&args).output().expect("run");
    let v = json_of(&out, "through the gcloud proxy");
    let seen = live.stray.take();
    let fake = live.fake.base_url();
    let fake_host = fake.trim_start_matches("http://").trim_end_matches('/');
    assert!(
        seen.iter().any(|l| l.contains(fake_host)),
        "no call went through the proxy: {seen:?}"
    );
    assert!(live.fake.calls().is_empty(), "a call bypassed the proxy");
    let gaps = v["gaps"].as_array().expect("gaps");
    assert!(
        !gaps.is_empty() && gaps.iter().all(|g| g["state"] == "failed"),
        "{gaps:?}"
    );
    assert!(
        gaps.iter()
            .any(|g| g["detail"].as_str().unwrap_or("").contains("proxy")),
        "{gaps:?}"
    );
}

#[test]
fn as_me_asks_tokeninfo_whose_the_token_is() {
    let slug = "healthy-developer-role-project-level";
    let bob = || FakeOptions::new().identity("user:bob@shop.example.com");
    let live = Live::bundle(&fixture(slug), bob());
    let mut args = s(&["diagnose", "--as-me", "--format", "json"]);
    args.extend(live.target_args());
    let out = live.run(&args);
    let v = json_of(&out, "as-me");
    assert_eq!(v["caller"]["principal"], "user:bob@shop.example.com");
    assert!(v["findings"].as_array().is_some_and(Vec::is_empty), "{v}");
    let calls = live.fake.calls_to(Source::OAuth2TokenInfo);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        (calls[0].method.as_str(), calls[0].path.as_str()),
        ("POST", "/oauth2/v2/tokeninfo")
    );
    assert_eq!(calls[0].query.as_deref(), Some("access_token=REDACTED"));
    assert!(
        !calls[0].authorization,
        "tokeninfo takes the token as its parameter, not as a bearer header"
    );
    assert_eq!(calls[0].status, 200);
    assert!(
        live.fake
            .calls()
            .iter()
            .filter(|c| c.source != Some(Source::OAuth2TokenInfo))
            .all(|c| c.authorization)
    );
    assert!(live.fake.mutating_calls().is_empty());
    live.assert_no_api_token(&out, "as-me");

    // A token tokeninfo does not know (expired, revoked): an error saying so, and nothing
    // else is read.
    let live = Live::bundle(&fixture(slug), bob());
    std::fs::write(
        live.home.path().join("access-token"),
        "ya29.revoked-token-0123456789\n",
    )
    .expect("token");
    let out = live.run(&args);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "--as-me: OAuth2 tokeninfo could not say whose the credentials are (400 INVALID_ARGUMENT: invalid_token: Invalid Value)"
        ),
        "{err}"
    );
    assert!(!err.contains("revoked-token-0123456789"), "{err}");
    let calls = live.fake.calls();
    assert_eq!(
        calls
            .iter()
            .map(|c| (c.source, c.status))
            .collect::<Vec<_>>(),
        vec![(Some(Source::OAuth2TokenInfo), 400)]
    );

    // Credentials without the userinfo.email scope: tokeninfo names nobody.
    let live = Live::bundle(&fixture(slug), FakeOptions::new());
    let out = live.run(&args);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--as-me: OAuth2 tokeninfo names no email"),
        "{}",
        text(&out.stderr)
    );
    live.assert_no_api_token(&out, "as-me error");
}

pub(crate) fn push_subscription() -> Value {
    serde_json::json!({
        "name": "projects/shop-prod/subscriptions/orders-push",
        "topic": "projects/shop-prod/topics/orders",
        "pushConfig": {
            "pushEndpoint": "https://orders-api-123456789012.europe-west1.run.app/push",
            "oidcToken": {"serviceAccountEmail": "push@shop-prod.iam.gserviceaccount.com"}
        },
        "ackDeadlineSeconds": 10,
        "state": "ACTIVE"
    })
}

/// A fixture's fake serving `callers` besides the bundle.
pub(crate) fn live_with_callers(slug: &str, callers: &[Value], opts: FakeOptions) -> Live {
    let mut sc = Scenario::from_bundle(fixture(slug)).expect("scenario");
    for c in callers {
        sc = sc.with_caller(c.clone());
    }
    Live::start(sc, opts)
}

pub(crate) fn caller_config_args(live: &Live, spec: &str) -> Vec<String> {
    let mut args = s(&["diagnose", "--caller-config", spec, "--format", "json"]);
    args.extend(live.target_args());
    args
}

fn gap_of(report: &Value, source: &str) -> Value {
    report["gaps"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["source"] == source).cloned())
        .unwrap_or_else(|| panic!("no gap `{source}`: {}", report["gaps"]))
}

#[test]
fn caller_config_is_read_from_its_api() {
    let live = live_with_callers(
        "healthy-bound-sa-200",
        &[push_subscription()],
        FakeOptions::new(),
    );
    let out = live.run(&caller_config_args(
        &live,
        "pubsub:projects/shop-prod/subscriptions/orders-push",
    ));
    let v = json_of(&out, "caller-config");
    assert_eq!(
        v["caller"]["principal"],
        "serviceAccount:push@shop-prod.iam.gserviceaccount.com"
    );
    assert_eq!(v["caller"]["source"], "caller_config");
    let calls = live.fake.calls_to(Source::PubsubSubscriptionsGet);
    assert_eq!(
        calls
            .iter()
            .map(|c| (
                c.method.as_str(),
                c.path.as_str(),
                c.status,
                c.authorization
            ))
            .collect::<Vec<_>>(),
        vec![(
            "GET",
            "/v1/projects/shop-prod/subscriptions/orders-push",
            200,
            true
        )]
    );
    assert!(
        v["gaps"]
            .as_array()
            .is_some_and(|g| g.iter().all(|g| g["source"] != "caller_config:pubsub")),
        "{}",
        v["gaps"]
    );
    assert!(live.fake.mutating_calls().is_empty());
    let bad = live.run(&s(&[
        "diagnose",
        "--caller-config",
        "pubsub:topics/x",
        "--region",
        "r",
        "--service",
        "s",
        "--project",
        "p",
    ]));
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn a_refused_caller_config_is_a_gap_naming_its_permission_live_and_replayed() {
    let cases = [
        (
            "pubsub:projects/shop-prod/subscriptions/orders-push",
            Source::PubsubSubscriptionsGet,
            "pubsub.subscriptions.get",
            "caller_config:pubsub",
        ),
        (
            "scheduler:projects/shop-prod/locations/europe-west1/jobs/daily-report",
            Source::SchedulerJobsGet,
            "cloudscheduler.jobs.get",
            "caller_config:scheduler",
        ),
        (
            "tasks:projects/shop-prod/locations/europe-west1/queues/receipts",
            Source::TasksQueuesGet,
            "cloudtasks.queues.get",
            "caller_config:tasks-queue",
        ),
        (
            "tasks:projects/shop-prod/locations/europe-west1/queues/receipts/tasks/42",
            Source::TasksTasksGet,
            "cloudtasks.tasks.get",
            "caller_config:tasks",
        ),
        (
            "eventarc:projects/shop-prod/locations/europe-west1/triggers/order-import",
            Source::EventarcTriggersGet,
            "eventarc.triggers.get",
            "caller_config:eventarc",
        ),
        (
            "workflows:projects/shop-prod/locations/europe-west1/workflows/fulfilment",
            Source::WorkflowsGet,
            "workflows.workflows.get",
            "caller_config:workflows",
        ),
    ];
    for (spec, source, permission, gap_source) in cases {
        let live = live_with_callers(
            "healthy-bound-sa-200",
            &[push_subscription()],
            FakeOptions::new().fail(source, Fault::deny()),
        );
        let rec = tempfile::tempdir().expect("tempdir");
        let mut args = caller_config_args(&live, spec);
        args.extend(["--record".into(), rec.path().display().to_string()]);
        let out = live.run(&args);
        let v = json_of(&out, spec);
        let gap = gap_of(&v, gap_source);
        assert_eq!(gap["state"], "denied", "{spec}: {gap}");
        assert_eq!(gap["needs_permission"], permission, "{spec}: {gap}");
        assert_ne!(v["caller"]["source"], "caller_config", "{spec}");
        let calls = live.fake.calls_to(source);
        assert_eq!(calls.len(), 1, "{spec}: a refusal is not retried");
        assert_eq!(calls[0].status, 403);
        assert!(live.fake.mutating_calls().is_empty(), "{spec}");

        // The recording holds Google's envelope; read back, it is the same gap.
        let mut a = s(&["invoker-doctor", "diagnose", "--bundle"]);
        a.push(rec.path().display().to_string());
        a.extend(s(&["--format", "json"]));
        let offline: Value = serde_json::from_str(&run_args(&a).stdout).expect("offline json");
        let replayed = gap_of(&offline, gap_source);
        assert_eq!(
            (&replayed["state"], &replayed["needs_permission"]),
            (&gap["state"], &gap["needs_permission"]),
            "{spec}"
        );
    }
}

#[test]
fn a_mistyped_caller_config_says_not_found() {
    let live = live_with_callers(
        "healthy-bound-sa-200",
        &[push_subscription()],
        FakeOptions::new(),
    );
    let out = live.run(&caller_config_args(
        &live,
        "pubsub:projects/shop-prod/subscriptions/orders-psh",
    ));
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "--caller-config: Pub/Sub subscription `projects/shop-prod/subscriptions/orders-psh` not found (404 NOT_FOUND: Resource not found (resource=orders-psh).): check the name"
        ),
        "{err}"
    );
    let v = json_of(&out, "mistyped caller");
    let gap = gap_of(&v, "caller_config:pubsub");
    assert_eq!(gap["state"], "failed");
    assert!(
        gap["detail"]
            .as_str()
            .is_some_and(|d| d.contains("404") && d.contains("Resource not found")),
        "{gap}"
    );
    assert_ne!(v["caller"]["source"], "caller_config");
    let calls = live.fake.calls_to(Source::PubsubSubscriptionsGet);
    assert_eq!(calls.len(), 1, "a 404 is not retried: {calls:?}");
    assert_eq!(calls[0].status, 404);
    assert!(live.fake.mutating_calls().is_empty());
}

#[test]
fn explain_checks_a_pasted_token_against_the_live_service() {
    let slug = "wrong-audience-custom-domain-not-configured";
    let dir = fixture(slug);
    let token = std::fs::read_to_string(dir.join("token.txt")).expect("token");
    let (live, diagnosed) = run_fixture(slug, FakeOptions::new(), &["--format", "json"]);
    let expected = findings(&json_of(&diagnosed, "diagnose"));
    let mut args = s(&["explain", token.trim(), "--format", "json", "--freshness"]);
    args.push(freshness_for(&dir));
    args.extend(live.target_args());
    live.fake.clear_calls();
    let out = live.run(&args);
    let v = json_of(&out, "explain token");
    assert_eq!(v["paste"]["kind"], "token");
    assert_eq!(findings(&v), expected);
    assert!(
        v["paste"]["next"]
            .to_string()
            .contains("the service was read live from project `shop-prod`")
    );
    for part in token_parts(&dir) {
        assert!(!text(&out.stdout).contains(&part), "the pasted token leaks");
    }
    // The pasted token names the caller: Policy Troubleshooter is asked about it (the fake's
    // bundle has no troubleshoot.json: the API is not enabled, the cross-check unavailable).
    let asked: Vec<Value> = troubleshoot_bodies(&live)
        .iter()
        .map(|b| b["accessTuple"]["principal"].clone())
        .collect();
    let caller = v["caller"]["principal"].as_str().expect("a caller");
    let email = caller.split_once(':').map(|(_, e)| e).expect("an email");
    assert_eq!(asked, [Value::from(email)]);
    assert_eq!(v["cross_check"]["agreement"], "unavailable", "{v}");
}

/// The offline report of a recorded bundle, with the fixture's token as the live run had it.
fn replay_with_token(rec: &str, fixture_dir: &Path) -> Value {
    let mut a = s(&[
        "invoker-doctor",
        "diagnose",
        "--bundle",
        rec,
        "--format",
        "json",
    ]);
    a.extend([
        "--token".into(),
        format!("@{}", fixture_dir.join("token.txt").display()),
    ]);
    serde_json::from_str(&run_args(&a).stdout).expect("replay json")
}

/// A pasted `curl -v` transcript names the service by its deterministic URL: explain reads
/// that service live without --region/--service, takes the paste's `date:` as the time of
/// the failing request, and reaches the same diagnosis as `diagnose` on the fixture.
#[test]
fn explain_reads_the_service_a_pasted_url_names() {
    let slug = "missing-binding-sa-not-bound-anywhere";
    let dir = fixture(slug);
    let (live, diagnosed) = run_fixture(slug, FakeOptions::new(), &["--format", "json"]);
    let expected = findings(&json_of(&diagnosed, "diagnose"));
    let token = std::fs::read_to_string(dir.join("token.txt")).expect("token");
    let paste = "$ curl -i https://orders-api-123456789012.europe-west1.run.app/v1/orders\nHTTP/2 403\ncontent-type: text/html; charset=UTF-8\nserver: Google Frontend\n\n<h1>Error: Forbidden</h1>\n<h2>Your client does not have permission to get URL <code>/v1/orders</code> from this server.</h2>\n";
    let mut args = s(&[
        "explain",
        paste,
        "--format",
        "json",
        "--token",
        token.trim(),
        "--freshness",
    ]);
    args.push(freshness_for(&dir));
    live.fake.clear_calls();
    let out = live.run(&args);
    let v = json_of(&out, "explain curl");
    assert_eq!(v["paste"]["origin"], "cloud_run_gate");
    assert_eq!(v["paste"]["identifiers"]["project_number"], "123456789012");
    assert_eq!(v["target"]["service"], "orders-api", "{v}");
    assert_eq!(findings(&v), expected);
    assert!(
        v["paste"]["next"]
            .to_string()
            .contains("the service was read live from project"),
        "{}",
        v["paste"]["next"]
    );
    assert!(live.fake.mutating_calls().is_empty());
    live.assert_no_api_token(&out, "explain curl");
}

#[test]
fn multi_region_reads_every_region_and_records_it() {
    // The 403 happened in us-central1, whose policy lacks the caller; the command line names
    // europe-west1 (the fixture's service.json).
    let slug = "multi-region-second-region-policy-lacks-caller-403";
    let dir = fixture(slug);
    let rec = tempfile::tempdir().expect("tempdir");
    let rec_dir = rec.path().join("bundle");
    let rec_s = rec_dir.display().to_string();
    let (live, out) = run_fixture(
        slug,
        FakeOptions::new(),
        &["--format", "json", "--record", &rec_s],
    );
    let report = json_of(&out, "multi-region");
    let calls = live.fake.calls();
    let us = "/v2/projects/shop-prod/locations/us-central1/services/orders-api";
    for path in [us.to_string(), format!("{us}:getIamPolicy")] {
        assert!(
            calls.iter().any(|c| c.path == path && c.status == 200),
            "{path} not read: {:?}",
            calls.iter().map(|c| &c.path).collect::<Vec<_>>()
        );
    }
    assert!(
        calls.iter().any(|c| c
            .body
            .as_deref()
            .is_some_and(|b| b.contains(r#"resource.labels.location=\"us-central1\""#))),
        "the us-central1 request logs were not read"
    );
    assert_eq!(report["findings"][0]["cause"], "missing_invoker_binding");
    assert_eq!(report["target"]["region"], "us-central1");
    assert!(
        report["findings"][0]["title"]
            .as_str()
            .is_some_and(|t| t.ends_with("in region `us-central1`")),
        "{}",
        report["findings"][0]["title"]
    );
    for f in [
        "service-us-central1.json",
        "service-iam-policy-us-central1.json",
    ] {
        assert!(rec_dir.join(f).exists(), "{f} not recorded");
    }
    let replay = replay_with_token(&rec_s, &dir);
    assert_eq!(findings(&report), findings(&replay));
    assert_eq!(replay["target"]["region"], "us-central1");
}
