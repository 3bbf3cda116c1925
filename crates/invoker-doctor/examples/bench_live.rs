//! Benchmark of live gathering:
//! `cargo run --release --example bench_live [RUNS] [LATENCY_MS] [FIXTURE]`.
//!
//! Starts `ipd-fakegcp` serving a fixture with a fixed latency on every call (100 ms by
//! default), runs a live diagnosis RUNS times (10 by default) in-process, and prints for each
//! run the wall time next to the sum of the per-call latencies (what a sequential client would
//! wait) and the critical-path latency (the longest chain of dependent calls, as the client
//! records it, times the latency). The goal is wall time within 1.3x of the critical path.
//!
//! Not a test: nothing here asserts on time.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use invoker_doctor::Env;
use ipd_fakegcp::{FakeGcp, FakeOptions, Scenario};

/// The default scenario: a folder and an organization above the project, a custom role, logs.
const FIXTURE: &str = "missing-binding-sa-not-bound-anywhere";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let runs: usize = match args.next() {
        Some(a) => a.parse().context("RUNS must be a number")?,
        None => 10,
    };
    let latency = Duration::from_millis(match args.next() {
        Some(a) => a.parse().context("LATENCY_MS must be a number")?,
        None => 100,
    });
    let fixture = args.next().unwrap_or_else(|| FIXTURE.to_string());
    if runs == 0 {
        bail!("RUNS must be at least 1");
    }
    let bundle = workspace_root().join("fixtures").join(&fixture);
    if !bundle.is_dir() {
        bail!("no fixture `{fixture}` in fixtures/");
    }
    let token = format!("ya29.bench-{}", std::process::id());
    let fake = FakeGcp::start_in_background(
        Scenario::from_bundle(&bundle)?,
        FakeOptions::new().token(token.clone()).latency(latency),
    )?;
    let scratch = tempfile::tempdir()?;
    let token_file = scratch.path().join("access-token");
    std::fs::write(&token_file, &token)?;
    let base = fake.base_url();
    let mut pairs: Vec<(String, String)> = [
        "RUN",
        "CLOUDRESOURCEMANAGER",
        "LOGGING",
        "ORGPOLICY",
        "IAM",
        "POLICYTROUBLESHOOTER",
    ]
    .iter()
    .map(|a| (format!("CLOUDSDK_API_ENDPOINT_OVERRIDES_{a}"), base.clone()))
    .collect();
    pairs.push((
        "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE".into(),
        token_file.display().to_string(),
    ));
    pairs.push(("HOME".into(), scratch.path().display().to_string()));
    let env = Env::from_pairs(pairs);
    let id = fake.scenario().identity.clone();
    // A caller token makes the diagnosis complete; fixtures without one use a plain caller.
    let token_txt = bundle.join("token.txt");
    let token_txt = if token_txt.is_file() {
        token_txt
    } else {
        let t = scratch.path().join("no-token.txt");
        std::fs::write(&t, "ya29.none")?;
        t
    };
    let cli = invoker_doctor::cli::Cli::try_parse_from([
        "invoker-doctor".to_string(),
        "diagnose".into(),
        "--project".into(),
        id.project_id.clone(),
        "--region".into(),
        id.region.clone(),
        "--service".into(),
        id.service.clone(),
        "--token".into(),
        format!("@{}", token_txt.display()),
        "--freshness".into(),
        "400d".into(),
        "--format".into(),
        "json".into(),
        "-v".into(),
    ])?;

    println!(
        "live diagnosis of fixtures/{fixture} against ipd-fakegcp, {} ms per call, {runs} runs (+1 warm-up)",
        latency.as_millis()
    );
    println!(
        "{:>4} {:>9} {:>6} {:>14} {:>14} {:>12}",
        "run", "wall ms", "calls", "sum of lat ms", "crit path ms", "wall / crit"
    );
    let mut walls = Vec::new();
    let mut crit_ms = 0.0;
    let mut sum_ms = 0.0;
    for i in 0..=runs {
        fake.clear_calls();
        let mut stdin: &[u8] = &[];
        let t0 = Instant::now();
        let out = invoker_doctor::run_with_env(&cli, &mut stdin, &env)?;
        let wall = t0.elapsed();
        let calls = fake.calls();
        if calls.iter().any(|c| c.mutating) {
            bail!("a mutating call was made");
        }
        let sum: Duration = calls.iter().map(|c| c.latency).sum();
        let chain: u32 = out
            .warnings
            .iter()
            .find_map(|w| w.split("longest chain of dependent calls: ").nth(1))
            .and_then(|n| n.trim().parse().ok())
            .context("the -v summary line is missing")?;
        let crit = latency * chain;
        if i == 0 {
            continue;
        }
        let ratio = wall.as_secs_f64() / crit.as_secs_f64().max(1e-9);
        println!(
            "{i:>4} {:>9.1} {:>6} {:>14.0} {:>14.0} {:>12.2}",
            wall.as_secs_f64() * 1000.0,
            calls.len(),
            sum.as_secs_f64() * 1000.0,
            crit.as_secs_f64() * 1000.0,
            ratio
        );
        walls.push(wall);
        crit_ms = crit.as_secs_f64() * 1000.0;
        sum_ms = sum.as_secs_f64() * 1000.0;
    }
    walls.sort();
    let median = walls[walls.len() / 2].as_secs_f64() * 1000.0;
    let max = walls
        .last()
        .map(|w| w.as_secs_f64() * 1000.0)
        .unwrap_or(0.0);
    println!();
    println!(
        "median wall {median:.1} ms, max {max:.1} ms; sum of per-call latencies {sum_ms:.0} ms; critical path {crit_ms:.0} ms"
    );
    println!(
        "median wall / critical path = {:.2} (goal <= 1.30: {}); sequential would take {:.1}x longer",
        median / crit_ms,
        if median <= 1.3 * crit_ms {
            "met"
        } else {
            "NOT met"
        },
        sum_ms / median
    );
    Ok(())
}
