//! `fake-gcp --bundle DIR [--port N] [--token T] [--identity EMAIL] [--latency-ms N] [--fail SOURCE=STATUS[xN]]...`
//!
//! Serves an evidence bundle as the Google Cloud APIs invoker-doctor reads, for manual demos.
//! Prints the base URL on stdout, then serves until interrupted.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use ipd_fakegcp::{BundleOptions, FakeGcp, FakeOptions, Scenario, options::parse_fail_spec};

const USAGE: &str =
    "usage: fake-gcp --bundle DIR [--port N] [--token T] [--identity EMAIL] [--latency-ms N]
                [--retry-after S] [--fail SOURCE=403|429|503[xN]]... [--project-id ID]
                [--project-number N] [--region R] [--service S]

Serves DIR (an invoker-doctor evidence bundle) as the Google Cloud REST APIs on
http://127.0.0.1:PORT/ and prints that base URL on stdout. Point every
CLOUDSDK_API_ENDPOINT_OVERRIDES_<API> at it: RUN CLOUDRESOURCEMANAGER LOGGING ORGPOLICY
IAM PUBSUB CLOUDSCHEDULER CLOUDTASKS EVENTARC WORKFLOWS OAUTH2 POLICYTROUBLESHOOTER.
Resource Manager v1 projects.getAncestry is served too (gcloud projects get-ancestors).

  --token T         require `Authorization: Bearer T` (OAuth2 tokeninfo takes it as
                    ?access_token=T instead, and calls any other token invalid_token)
  --identity EMAIL  whose T is, as tokeninfo tells it (user:EMAIL and serviceAccount:EMAIL
                    are accepted); without it, tokeninfo names no email

Each caller-*.json of DIR (a Pub/Sub subscription, Scheduler job, Cloud Tasks queue or
task, Eventarc trigger or workflow, as `gcloud ... describe --format=json` prints it) is
served at its `name`. Policy Troubleshooter (POST v3/iam:troubleshoot) answers DIR's
troubleshoot.json for the question its accessTuple names (another question is a 400);
without that file it answers 403 SERVICE_DISABLED, as Google does when the API is off.

sources: run.services.get run.services.list run.services.getIamPolicy projects.get
         projects.getAncestry
         folders.get organizations.get projects.getIamPolicy folders.getIamPolicy
         organizations.getIamPolicy logging.entries.list orgpolicy.getEffectivePolicy
         iam.roles.get iam.denypolicies pubsub.subscriptions.get cloudscheduler.jobs.get
         cloudtasks.queues.get cloudtasks.tasks.get eventarc.triggers.get
         workflows.workflows.get oauth2.tokeninfo policytroubleshooter.iam.troubleshoot";

struct Args {
    bundle: PathBuf,
    port: u16,
    options: FakeOptions,
    bundle_options: BundleOptions,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> anyhow::Result<Option<Args>> {
    let mut bundle = None;
    let mut port = 0u16;
    let mut options = FakeOptions::new();
    let mut bo = BundleOptions::default();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let mut value = || -> anyhow::Result<String> {
            match inline.clone().or_else(|| it.next()) {
                Some(v) => Ok(v),
                None => bail!("{flag} needs a value\n\n{USAGE}"),
            }
        };
        match flag.as_str() {
            "--bundle" => bundle = Some(PathBuf::from(value()?)),
            "--port" => {
                port = value()?
                    .parse()
                    .context("--port expects a number 0-65535")?
            }
            "--token" => options.token = Some(value()?),
            "--identity" => options = options.identity(value()?),
            "--latency-ms" => {
                options.latency = Duration::from_millis(
                    value()?.parse().context("--latency-ms expects a number")?,
                )
            }
            "--retry-after" => {
                options.retry_after_secs =
                    Some(value()?.parse().context("--retry-after expects seconds")?)
            }
            "--fail" => {
                let (src, fault) = parse_fail_spec(&value()?).map_err(anyhow::Error::msg)?;
                options.faults.insert(src, fault);
            }
            "--project-id" => bo.overrides.project_id = Some(value()?),
            "--project-number" => bo.overrides.project_number = Some(value()?),
            "--region" => bo.overrides.region = Some(value()?),
            "--service" => bo.overrides.service = Some(value()?),
            other => bail!("unknown argument `{other}`\n\n{USAGE}"),
        }
    }
    let Some(bundle) = bundle else {
        bail!("--bundle DIR is required\n\n{USAGE}")
    };
    Ok(Some(Args {
        bundle,
        port,
        options,
        bundle_options: bo,
    }))
}

#[tokio::main]
async fn main() {
    match run().await {
        Ok(()) => {}
        Err(e) => {
            eprintln!("fake-gcp: {e:#}");
            std::process::exit(2);
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let Some(args) = parse_args(std::env::args().skip(1))? else {
        println!("{USAGE}");
        return Ok(());
    };
    let scenario = Scenario::from_bundle_with(&args.bundle, &args.bundle_options)
        .with_context(|| format!("cannot load bundle {}", args.bundle.display()))?;
    for w in &scenario.warnings {
        eprintln!("fake-gcp: warning: {w}");
    }
    let id = scenario.identity.clone();
    let auth = match (&args.options.token, &args.options.identity) {
        (Some(_), Some(who)) => format!("bearer token required; tokeninfo says it is {who}"),
        (Some(_), None) => "bearer token required".to_string(),
        (None, _) => "no auth".to_string(),
    };
    if !scenario.callers.is_empty() {
        let names: Vec<&str> = scenario
            .callers
            .iter()
            .filter_map(|c| c.get("name").and_then(serde_json::Value::as_str))
            .collect();
        eprintln!("fake-gcp: caller configurations: {}", names.join(", "));
    }
    let fake = FakeGcp::start_on_port(scenario, args.options, args.port).await?;
    eprintln!(
        "fake-gcp: serving project {} ({}), region {}, service {} ({auth}); Ctrl-C to stop",
        id.project_id, id.project_number, id.region, id.service
    );
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", fake.base_url()).context("cannot write to stdout")?;
    out.flush().context("cannot write to stdout")?;
    drop(out);
    std::future::pending::<()>().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> anyhow::Result<Option<Args>> {
        parse_args(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn flags() {
        let a = args(&[
            "--bundle",
            "b",
            "--port=8080",
            "--fail",
            "logging.entries.list=503x2",
            "--latency-ms",
            "5",
            "--identity",
            "serviceAccount:ci@p.iam.gserviceaccount.com",
        ]);
        let Ok(Some(a)) = a else {
            panic!("parse failed")
        };
        assert_eq!(a.port, 8080);
        assert_eq!(a.options.latency, Duration::from_millis(5));
        assert_eq!(a.options.faults.len(), 1);
        assert_eq!(
            a.options.identity.as_deref(),
            Some("ci@p.iam.gserviceaccount.com")
        );
        assert!(USAGE.contains("workflows.workflows.get") && USAGE.contains("--identity"));
        assert!(args(&["--bundle", "b", "--fail", "oauth2.tokeninfo=403"]).is_ok());
        assert!(args(&["--port", "1"]).is_err());
        assert!(args(&["--bundle", "b", "--fail", "nope=403"]).is_err());
        assert!(args(&["--bundle", "b", "--bogus"]).is_err());
        assert!(matches!(args(&["--help"]), Ok(None)));
    }
}
