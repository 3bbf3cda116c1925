//! Benchmark of `scan`: `cargo run --release -p invoker-doctor --example bench_scan [ORG_YAML]
//! [LATENCY_MS]` (defaults `fixtures/org-bench/org.yaml`, 100 ms; `just bench-scan`).
//!
//! Generates the organization, serves it with `ipd-fakegcp` at a fixed latency per call, runs
//! the release binary `invoker-doctor scan --organization O --format json` as a child process
//! and prints its wall time, the calls and search pages the fake served, the child's peak
//! resident memory (VmHWM, sampled from /proc every 10 ms until it exits), whether every
//! seeded problem was found, and next to it the calls a per-service crawl (list and get every
//! service, its policy and every caller, API by API) would need for the same organization.
//!
//! `BENCH_SCAN_TEXT=1` also prints the text report.
//!
//! Not a test: nothing here asserts on time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ipd_fakegcp::org::{generate, load_spec};
use ipd_fakegcp::org_server::{OrgOptions, RunningOrg};
use serde_json::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let spec_path = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("fixtures/org-bench/org.yaml"));
    let latency = Duration::from_millis(match args.next() {
        Some(a) => a.parse().context("LATENCY_MS must be a number")?,
        None => 100,
    });
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("invoker-doctor"))
        .context("where is target/<profile>/")?;
    if !bin.is_file() {
        bail!(
            "{} is not built: cargo build --release -p invoker-doctor",
            bin.display()
        );
    }
    let spec = load_spec(&spec_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let org = generate(&spec, chrono::Utc::now());
    let (services, callers) = (org.service_count, org.caller_count);
    let projects = org.projects.len();
    let regions = spec.regions.len();
    let levels = org.folders.len() + 1;
    let seeded = org.seeded.clone();
    let org_id = org.organization.clone();
    let token = format!("ya29.bench-scan-{}", std::process::id());
    let fake = RunningOrg::start(
        org,
        OrgOptions {
            latency,
            token: Some(token.clone()),
            ..OrgOptions::default()
        },
    )?;
    let scratch = tempfile::tempdir()?;
    let token_file = scratch.path().join("access-token");
    std::fs::write(&token_file, &token)?;
    std::fs::create_dir_all(scratch.path().join("gcloud"))?;
    let make = |format: &str| {
        let mut cmd = Command::new(&bin);
        cmd.env_clear()
            .env("HOME", scratch.path())
            .env("CLOUDSDK_CONFIG", scratch.path().join("gcloud"))
            .env("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE", &token_file)
            .env("NO_COLOR", "1");
        for api in [
            "CLOUDASSET",
            "RUN",
            "CLOUDRESOURCEMANAGER",
            "LOGGING",
            "ORGPOLICY",
            "PUBSUB",
            "CLOUDSCHEDULER",
            "CLOUDTASKS",
            "EVENTARC",
            "WORKFLOWS",
        ] {
            cmd.env(
                format!("CLOUDSDK_API_ENDPOINT_OVERRIDES_{api}"),
                fake.base_url(),
            );
        }
        cmd.args(["scan", "--organization", &org_id, "--format", format])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    };
    let mut cmd = make("json");
    let started = Instant::now();
    let mut child = cmd.spawn().context("run invoker-doctor scan")?;
    let pid = child.id();
    let mut peak = 0u64;
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut o) = stdout {
            let _ = std::io::Read::read_to_string(&mut o, &mut s);
        }
        s
    });
    loop {
        if let Some(k) = vm_hwm_kib(pid) {
            peak = peak.max(k);
        }
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let wall = started.elapsed();
    let out = reader.join().unwrap_or_default();
    let status = child.wait()?;
    let report: Value = serde_json::from_str(&out).context("the scan's JSON")?;
    let calls = fake.calls();
    let total: u64 = calls.values().sum();
    let pages = calls
        .get("cloudasset.searchAllResources")
        .copied()
        .unwrap_or(0)
        + calls
            .get("cloudasset.searchAllIamPolicies")
            .copied()
            .unwrap_or(0);
    let found = |s: &ipd_fakegcp::org::Seeded| {
        report["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|f| {
                f["service"] == s.service.as_str()
                    && f["caller"] == s.caller.as_str()
                    && f["cause"] == s.cause
            })
    };
    let seeded_found = seeded.iter().filter(|s| found(s)).count();
    // A per-service crawl: per project, services.list in each region, the project's policy,
    // its Logging query and four effective org policies, and a list per caller API (Pub/Sub
    // is global; the other four per region); per service, get and getIamPolicy; per caller,
    // its get; per folder and the organization, getIamPolicy. Pages of 100 ignored (fewer).
    let crawl =
        projects * (regions + 1 + 1 + 4 + 1 + 4 * regions) + 2 * services + callers + levels;
    println!(
        "scan of {services} services and {callers} callers ({projects} projects) at {} ms per call",
        latency.as_millis()
    );
    println!(
        "  wall time      {:.2} s (exit status {})",
        wall.as_secs_f64(),
        status.code().unwrap_or(-1)
    );
    println!("  calls          {total} ({pages} search pages)");
    for (k, v) in &calls {
        println!("                 {v:>5} {k}");
    }
    println!(
        "  peak memory    {:.1} MB (VmHWM of the scan process)",
        peak as f64 / 1024.0
    );
    println!(
        "  findings       {} ({} of {} seeded problems found)",
        report["totals"]["findings"],
        seeded_found,
        seeded.len()
    );
    println!("  per-service crawl would need about {crawl} calls");
    if std::env::var_os("BENCH_SCAN_TEXT").is_some() {
        // The text report of the same organization (for the README's example).
        let out = make("text").output()?;
        println!("{}", String::from_utf8_lossy(&out.stdout));
    }
    Ok(())
}
