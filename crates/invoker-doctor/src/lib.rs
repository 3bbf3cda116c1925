//! The `invoker-doctor` command: argument handling, evidence loading, rendering, exit codes.
//! The only crate that prints (and only `main.rs` touches stdout/stderr).

pub mod cli;
pub mod collect;
pub mod docs;
pub mod explain;
pub mod incidents;
pub mod live;
pub mod paste_render;
pub mod scan;

use std::io::Read;

use anyhow::{Context, Result, anyhow, bail};
pub use ipd_gather::Env;
use ipd_model::{Evidence, Inputs};
use ipd_rules::Report;

use crate::cli::{CaseArgs, Command, DiagnoseArgs, Format};

/// What a command produced: the report text for stdout, warnings for stderr, the exit code.
#[derive(Debug, Default)]
pub struct Output {
    pub stdout: String,
    pub warnings: Vec<String>,
    pub code: i32,
}

/// Exit status: no confirmed or likely finding.
pub const EXIT_CLEAN: i32 = 0;
/// Exit status: at least one confirmed or likely finding.
pub const EXIT_FINDINGS: i32 = 1;
/// Exit status: usage or input error.
pub const EXIT_USAGE: i32 = 2;

/// Runs a parsed command line with the process environment. `Err` is a usage or input error
/// (exit status 2). Lines of `Output::warnings` that start with `note: ` are information, the
/// others warnings.
pub fn run(cli: &cli::Cli, stdin: &mut dyn Read) -> Result<Output> {
    run_with_env(cli, stdin, &Env::from_process())
}

/// Runs a parsed command line with the given environment (credentials, endpoint overrides and
/// gcloud configuration are read from it).
pub fn run_with_env(cli: &cli::Cli, stdin: &mut dyn Read, env: &Env) -> Result<Output> {
    match &cli.command {
        Command::Diagnose(d) => diagnose(d, stdin, env),
        Command::Explain(e) => explain::run(e, stdin, env),
        Command::Rules(r) => docs::rules_command(r.code.as_deref()),
        Command::Collect(c) => collect::command(c, env),
        Command::Incidents(i) => incidents::run(i, env),
        Command::Scan(s) => scan::run(s, env),
    }
}

fn diagnose(d: &DiagnoseArgs, stdin: &mut dyn Read, env: &Env) -> Result<Output> {
    let Some(dir) = &d.bundle else {
        if d.project.is_some() || d.url.is_some() || d.service.is_some() || d.region.is_some() {
            return live::diagnose(d, stdin, env);
        }
        bail!(
            "say where the evidence is: --bundle DIR, or --project P --region R --service S (or --url URL) for live mode"
        );
    };
    let inputs = inputs(&d.case)?;
    if d.caller_config.is_some() {
        bail!(
            "--caller-config is for live mode; in a bundle, add the caller's `gcloud ... describe --format=json` output as caller-NAME.json"
        );
    }
    let loaded = ipd_model::bundle::load(dir, inputs).map_err(|e| anyhow!("{e}"))?;
    let mut ev = loaded.evidence;
    apply_token_flag(&mut ev, &d.case, stdin)?;
    let report = ipd_rules::diagnose(&ev);
    // The process ends after printing: freeing a large evidence (hundreds of thousands of log
    // entries) one allocation at a time would only add to the wall time.
    std::mem::forget(ev);
    Ok(Output {
        stdout: render(&report, d.case.format),
        warnings: loaded.warnings,
        code: exit_code(&report),
    })
}

/// The exit status a report gives.
pub fn exit_code(report: &Report) -> i32 {
    if report.has_actionable() {
        EXIT_FINDINGS
    } else {
        EXIT_CLEAN
    }
}

pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Text => ipd_render::text(report),
        Format::Json => {
            let mut s = ipd_render::json(report);
            s.push('\n');
            s
        }
        Format::Markdown => ipd_render::markdown(report),
    }
}

/// Flags that state facts about the case.
pub fn inputs(c: &CaseArgs) -> Result<Inputs> {
    let at = match &c.at {
        Some(s) => Some(ipd_model::time::parse_rfc3339(s).ok_or_else(|| {
            anyhow!("--at: `{s}` is not an RFC 3339 time (e.g. 2026-11-20T10:15:00Z)")
        })?),
        None => None,
    };
    let status = match &c.status {
        Some(s) => match s.trim().parse::<i64>() {
            Ok(n) if (100..=599).contains(&n) => Some(n),
            _ => bail!("--status: `{s}` is not an HTTP status (a number from 100 to 599)"),
        },
        None => None,
    };
    if let Some(p) = &c.caller
        && matches!(
            ipd_model::Principal::parse(p),
            ipd_model::Principal::Other(_)
        )
    {
        bail!(
            "--caller: `{p}` is not a principal (serviceAccount:EMAIL, user:EMAIL, group:EMAIL, domain:DOMAIN, allUsers, principal://...)"
        );
    }
    Ok(Inputs {
        caller: c.caller.clone(),
        expect_public: c.expect_public,
        at,
        status,
        ..Inputs::default()
    })
}

/// `--token JWT|@FILE|-` replaces the bundle's token.txt.
pub fn apply_token_flag(ev: &mut Evidence, c: &CaseArgs, stdin: &mut dyn Read) -> Result<()> {
    let Some(t) = &c.token else { return Ok(()) };
    let text = if t == "-" {
        let mut s = String::new();
        stdin
            .read_to_string(&mut s)
            .context("--token -: cannot read standard input")?;
        s
    } else if let Some(path) = t.strip_prefix('@') {
        std::fs::read_to_string(path)
            .with_context(|| format!("--token @{path}: cannot read the file"))?
    } else {
        t.clone()
    };
    let tok = ipd_model::token::Token::analyze(&text);
    if tok.kind == ipd_model::token::TokenKind::Empty {
        bail!("--token: the token is empty");
    }
    ev.token = Some(tok);
    Ok(())
}
