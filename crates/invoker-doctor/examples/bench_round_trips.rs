//! Benchmark of a live diagnosis as the user runs it: the release binary as a child process
//! against `ipd-fakegcp` with a fixed latency on every call.
//!
//! `cargo run --release --example bench_round_trips -- [RUNS] [LATENCY_MS] [FIXTURE] [BIN]`
//! (defaults: 5, 100, `functions-invoker-role-two-folders-and-org`, `target/release/invoker-doctor`).
//!
//! For each way of knowing the caller it prints the wall time of the process (spawn to exit),
//! the start-to-first-request time (spawn to the fake receiving the first request: process
//! start, runtime, credentials, HTTP client), the round trips on the critical path (the
//! longest chain of dependent calls, from `-v`) and the number of calls. Not a test: nothing
//! here asserts on time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ipd_fakegcp::{FakeGcp, FakeOptions, Scenario};

const FIXTURE: &str = "functions-invoker-role-two-folders-and-org";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Row {
    name: &'static str,
    walls: Vec<f64>,
    firsts: Vec<f64>,
    chain: u32,
    calls: usize,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5);
    let latency = Duration::from_millis(args.next().map(|a| a.parse()).transpose()?.unwrap_or(100));
    let fixture = args.next().unwrap_or_else(|| FIXTURE.to_string());
    let bin = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/release/invoker-doctor"));
    if runs == 0 || !bin.is_file() {
        bail!(
            "RUNS must be >= 1 and {} must exist (cargo build --release)",
            bin.display()
        );
    }
    let bundle = workspace_root().join("fixtures").join(&fixture);
    let case: toml::Value = toml::from_str(&std::fs::read_to_string(bundle.join("case.toml"))?)?;
    let case_args: Vec<String> = case
        .get("args")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    let caller = case_args
        .iter()
        .position(|a| a == "--caller")
        .and_then(|i| case_args.get(i + 1).cloned())
        .context("the fixture's case.toml names no --caller")?;
    let at = std::fs::read_to_string(bundle.join("context.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| {
            v.pointer("/request/time")
                .and_then(|t| t.as_str())
                .map(str::to_string)
        })
        .context("the fixture's context.json has no request.time")?;

    let token = format!("ya29.bench-{}", std::process::id());
    let fake = FakeGcp::start_in_background(
        Scenario::from_bundle(&bundle)?,
        FakeOptions::new().token(token.clone()).latency(latency),
    )?;
    let id = fake.scenario().identity.clone();
    let scratch = tempfile::tempdir()?;
    let token_file = scratch.path().join("access-token");
    std::fs::write(&token_file, &token)?;
    let base = fake.base_url();

    let run = |extra: &[&str], home: &Path, no_cache: bool| -> Result<(f64, f64, u32, usize)> {
        fake.clear_calls();
        let mut c = Command::new(&bin);
        c.env_clear()
            .env("HOME", home)
            .env("CLOUDSDK_CONFIG", home.join("gcloud"))
            .env("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE", &token_file)
            .env("NO_COLOR", "1");
        if no_cache {
            c.env("INVOKER_DOCTOR_NO_CACHE", "1");
        }
        for api in [
            "RUN",
            "CLOUDRESOURCEMANAGER",
            "LOGGING",
            "ORGPOLICY",
            "IAM",
            "OAUTH2",
            "POLICYTROUBLESHOOTER",
        ] {
            c.env(format!("CLOUDSDK_API_ENDPOINT_OVERRIDES_{api}"), &base);
        }
        c.args([
            "diagnose",
            "--project",
            &id.project_id,
            "--region",
            &id.region,
        ])
        .args(["--service", &id.service, "--format", "json", "-v"])
        .args(extra);
        let t0 = Instant::now();
        let out = c.output()?;
        let wall = t0.elapsed();
        if !matches!(out.status.code(), Some(0 | 1)) {
            bail!(
                "invoker-doctor failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let calls = fake.calls();
        if calls.iter().any(|c| c.mutating) {
            bail!("a mutating call was made");
        }
        let first = calls
            .iter()
            .map(|c| c.received)
            .min()
            .context("no call reached the fake")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let chain: u32 = stderr
            .lines()
            .find_map(|l| l.split("longest chain of dependent calls: ").nth(1))
            .and_then(|n| n.trim().parse().ok())
            .context("the -v summary line is missing")?;
        Ok((
            wall.as_secs_f64() * 1000.0,
            first.saturating_duration_since(t0).as_secs_f64() * 1000.0,
            chain,
            calls.len(),
        ))
    };

    let scenarios: [(&'static str, Vec<&str>, bool); 3] = [
        (
            "caller and time known (--caller, --at), ancestry remembered",
            vec!["--caller", &caller, "--at", &at],
            false,
        ),
        (
            "caller and time known, first run (no ancestry cache)",
            vec!["--caller", &caller, "--at", &at],
            true,
        ),
        (
            "caller known, time from the logs (troubleshooter waits for them)",
            vec!["--caller", &caller],
            false,
        ),
    ];
    let mut rows = Vec::new();
    for (name, extra, no_cache) in &scenarios {
        let home = tempfile::tempdir()?;
        std::fs::create_dir_all(home.path().join("gcloud"))?;
        // Warm-up (also fills the ancestry cache where it is used).
        run(extra, home.path(), *no_cache)?;
        let mut row = Row {
            name,
            walls: Vec::new(),
            firsts: Vec::new(),
            chain: 0,
            calls: 0,
        };
        for _ in 0..runs {
            let (w, f, chain, calls) = run(extra, home.path(), *no_cache)?;
            row.walls.push(w);
            row.firsts.push(f);
            row.chain = row.chain.max(chain);
            row.calls = calls;
        }
        rows.push(row);
    }
    println!(
        "live diagnosis of fixtures/{fixture} ({} under 2 folders and an organization), {} ms per call, {runs} runs each (+1 warm-up), {}",
        id.project_id,
        latency.as_millis(),
        bin.display()
    );
    println!();
    println!(
        "| how the caller is known | wall ms (median) | wall ms (max) | start-to-first-request ms (median) | round trips on the critical path | calls |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &mut rows {
        let max = r.walls.iter().copied().fold(0.0, f64::max);
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {} | {} |",
            r.name,
            median(&mut r.walls),
            max,
            median(&mut r.firsts),
            r.chain,
            r.calls
        );
    }
    Ok(())
}
