//! `invoker-doctor scan (--organization O | --folder F | --project P)`: thin. The gathering is
//! `ipd_gather::asset`, the prediction `ipd_rules::scan` (the same engine as `diagnose`), the
//! renderings `ipd_render::scan`. A progress bar on stderr (pages, resources, calls, rate)
//! while gathering, hidden when stderr is not a terminal.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ipd_gather::asset::{Progress, ScanSettings, Scope};
use ipd_gather::{Env, Gatherer, Settings};
use ipd_model::inventory::RUN_SERVICE;
use ipd_rules::scan::{ScanOptions, has_actionable, predict, to_confirm};

use crate::cli::{Format, ScanArgs};
use crate::{EXIT_CLEAN, EXIT_FINDINGS, Output};

fn scope(a: &ScanArgs) -> Result<Scope> {
    let r = match (&a.organization, &a.folder, &a.project) {
        (Some(o), _, _) => Scope::organization(o.trim_start_matches("organizations/")),
        (_, Some(f), _) => Scope::folder(f.trim_start_matches("folders/")),
        (_, _, Some(p)) => Scope::project(p.trim_start_matches("projects/")),
        _ => bail!("say what to scan: --organization O, --folder F or --project P"),
    };
    r.map_err(|e| anyhow!("{e}"))
}

fn bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb
}

fn progress_line(p: &Progress, started: Instant) -> String {
    let calls = Progress::get(&p.calls);
    let secs = started.elapsed().as_secs_f64().max(0.001);
    format!(
        "{} pages, {} resources, {} calls ({:.0}/min)",
        Progress::get(&p.pages),
        Progress::get(&p.resources),
        calls,
        calls as f64 * 60.0 / secs
    )
}

pub fn run(a: &ScanArgs, env: &Env) -> Result<Output> {
    let scope = scope(a)?;
    let since = crate::live::parse_freshness(&a.since)
        .map_err(|e| anyhow!("{}", e.to_string().replace("--freshness", "--since")))?;
    let filter = a
        .service_filter
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .context("--service-filter is not a regular expression")?;
    let keep = |name: &str| filter.as_ref().is_none_or(|re| re.is_match(name));
    let mut settings = ScanSettings::new(chrono::Utc::now() - since);
    settings.max_searches_per_minute = a.max_calls_per_minute;
    let rt = crate::live::runtime()?;
    let started = Instant::now();
    let (report, inv, trace) = rt.block_on(async {
        let g = Gatherer::connect(
            &crate::live::credentials_auth(&a.credentials),
            env,
            Settings::default(),
        )?;
        g.client().auth().check().await?;
        let progress = Arc::new(Progress::default());
        let pb = bar();
        let ticker = {
            let (p, pb) = (progress.clone(), pb.clone());
            tokio::spawn(async move {
                loop {
                    pb.set_message(progress_line(&p, started));
                    pb.tick();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let mut inv = g.scan_inventory(&scope, &settings, progress.clone()).await;
        let opts = ScanOptions {
            service_filter: Some(&keep),
        };
        let mut report = predict(&inv, &opts);
        let mut confirm = to_confirm(&inv, &report);
        confirm.retain(|&i| keep(&inv.services[i].full_name));
        if !confirm.is_empty() {
            g.confirm_services(&mut inv, &confirm, &progress).await;
            report = predict(&inv, &opts);
        }
        ticker.abort();
        pb.finish_and_clear();
        anyhow::Ok((report, inv, g.client().trace()))
    })?;
    let mut warnings = Vec::new();
    if a.credentials.verbose {
        warnings.extend(crate::live::trace_lines(&trace, started.elapsed()));
    }
    let services_gap = format!("cloudasset.searchAllResources:{RUN_SERVICE}");
    if let Some(g) = report.gaps.iter().find(|g| g.source == services_gap)
        && inv.services.is_empty()
    {
        bail!(
            "cannot list the Cloud Run services of {}: {}{}",
            scope.as_str(),
            g.detail,
            g.needs_permission
                .as_deref()
                .map(|p| format!(" (needs `{p}` on the scope)"))
                .unwrap_or_default()
        );
    }
    for g in &report.gaps {
        warnings.push(format!(
            "{} not read: {}{}",
            g.source,
            g.detail,
            g.needs_note()
        ));
    }
    let stdout = match a.format {
        Format::Text => ipd_render::scan::text(&report),
        Format::Json => ipd_render::scan::json(&report) + "\n",
        Format::Markdown => ipd_render::scan::markdown(&report),
    };
    Ok(Output {
        stdout,
        warnings,
        code: if has_actionable(&report) {
            EXIT_FINDINGS
        } else {
            EXIT_CLEAN
        },
    })
}
