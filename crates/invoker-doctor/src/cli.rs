//! The command line (the contract's command names and options).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "invoker-doctor",
    version,
    about = "Tells why a Cloud Run service refused a request (401/403/404) and the exact command that fixes it",
    long_about = None,
    propagate_version = true
)]
pub struct Cli {
    /// When to use colour: auto (a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, value_enum, default_value_t = ColorWhen::Auto, global = true)]
    pub color: ColorWhen,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
    Markdown,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Diagnose a refused request from an evidence bundle (--bundle) or live from Google Cloud.
    Diagnose(DiagnoseArgs),
    /// Tell where a pasted refusal came from (error page, curl transcript, stack trace, gcloud
    /// or Terraform output, log entry, token, request/trace ID, Logs Explorer URL), what it
    /// names and the next step, and diagnose as far as it and the evidence allow.
    Explain(ExplainArgs),
    /// List every rule, or print one rule's documentation.
    Rules(RulesArgs),
    /// Print (or, with --run, run) the gcloud commands that make a complete evidence bundle.
    Collect(CollectArgs),
    /// Find, through Cloud Asset Inventory, the invoke refusals that services and their
    /// Google-managed callers are set up to have, across an organization, folder or project.
    Scan(ScanArgs),
    /// During an outage: which services refuse whom since when, the change that started it,
    /// and the diagnosis of the top groups (live, or --bundle DIR offline).
    Incidents(IncidentsArgs),
}

#[derive(Debug, Args)]
pub struct CollectArgs {
    /// The project ID.
    #[arg(long, value_name = "P")]
    pub project: String,
    /// The region.
    #[arg(long, value_name = "R")]
    pub region: String,
    /// The service name.
    #[arg(long, value_name = "S")]
    pub service: String,
    /// When the failing request happened (RFC 3339): the logs are read around it.
    #[arg(long, value_name = "RFC3339", conflicts_with = "freshness")]
    pub at: Option<String>,
    /// Without --at: how far back the logs are read (30m, 6h, 1d, 7d; default 1d).
    #[arg(long, value_name = "DURATION")]
    pub freshness: Option<String>,
    /// Who made the request: also ask Policy Troubleshooter (v3) about it.
    #[arg(long, value_name = "PRINCIPAL")]
    pub caller: Option<String>,
    /// A Google-managed caller's configuration to describe (repeatable), e.g.
    /// pubsub:projects/P/subscriptions/S.
    #[arg(long, value_name = "KIND:RESOURCE")]
    pub caller_config: Vec<String>,
    /// The bundle directory the commands write.
    #[arg(long, value_name = "DIR", default_value = "invoker-doctor-bundle")]
    pub out: std::path::PathBuf,
    /// Run the commands now (gcloud from PATH) instead of printing them.
    #[arg(long)]
    pub run: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["organization", "folder", "project"])))]
pub struct ScanArgs {
    /// Scan an organization (its number).
    #[arg(long, value_name = "O")]
    pub organization: Option<String>,
    /// Scan a folder (its number).
    #[arg(long, value_name = "F")]
    pub folder: Option<String>,
    /// Scan a project (its ID or number).
    #[arg(long, value_name = "P")]
    pub project: Option<String>,
    /// How far back the Admin Activity log is read for the owner's intent to make a service
    /// public (30m, 6h, 1d, 7d, 30d).
    #[arg(long, value_name = "DURATION", default_value = "30d")]
    pub since: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Only services whose full resource name (//run.googleapis.com/projects/P/locations/R/services/S)
    /// matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub service_filter: Option<String>,
    /// Cloud Asset Inventory searches per minute at most (its default quota is 400 per
    /// project).
    #[arg(long, value_name = "N", default_value_t = 400, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_calls_per_minute: u32,
    #[command(flatten)]
    pub credentials: CredentialArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum IncidentFormat {
    #[default]
    Text,
    Json,
    Markdown,
    /// One self-contained page (inline SVG charts, no external asset).
    Html,
}

#[derive(Debug, Args)]
pub struct IncidentsArgs {
    /// Live mode: a project whose logs to read (repeat for several).
    #[arg(long = "project", value_name = "P")]
    pub projects: Vec<String>,
    /// The window: this long before now (30m, 1h, 6h, 1d; default 1h). Live mode only.
    #[arg(long, value_name = "DURATION", conflicts_with_all = ["from", "to"])]
    pub since: Option<String>,
    /// The window's start (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    pub from: Option<String>,
    /// The window's end (RFC 3339; default now, or in a bundle its newest refusal).
    #[arg(long, value_name = "RFC3339")]
    pub to: Option<String>,
    /// Only this service.
    #[arg(long, value_name = "S")]
    pub service: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = IncidentFormat::Text)]
    pub format: IncidentFormat,
    /// Read the bundle's logs.json (and services/S/ evidence) instead of the APIs.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["projects", "since", "record", "access_token_file", "impersonate_service_account"])]
    pub bundle: Option<PathBuf>,
    /// Live mode: log entries read at most per project (the newest are kept).
    #[arg(long, value_name = "N", default_value_t = 20000)]
    pub max_entries: u32,
    /// How many of the largest groups to diagnose.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub top: usize,
    /// Live mode: also write what was read to DIR (logs.json, and services/S/ for each
    /// diagnosed service), to replay with --bundle DIR.
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    #[command(flatten)]
    pub credentials: CredentialArgs,
}

#[derive(Debug, Args, Clone, Default)]
pub struct CaseArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// The principal that made the request (`serviceAccount:EMAIL`, `user:EMAIL`, ...).
    #[arg(long, value_name = "PRINCIPAL")]
    pub caller: Option<String>,
    /// The caller's ID token: the token itself, @FILE, or - for standard input. Never printed.
    #[arg(long, value_name = "JWT|@FILE|-")]
    pub token: Option<String>,
    /// The owner wants the service to be public.
    #[arg(long)]
    pub expect_public: bool,
    /// When the failing request happened (RFC 3339); overrides logs and context.json.
    #[arg(long, value_name = "RFC3339")]
    pub at: Option<String>,
    /// The HTTP status the client saw (any, 100-599; a 2xx says nothing was denied);
    /// overrides logs and context.json.
    #[arg(long, value_name = "HTTP_STATUS")]
    pub status: Option<String>,
}

#[derive(Debug, Args)]
pub struct DiagnoseArgs {
    /// An evidence bundle directory (no network).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["project", "region", "service", "url", "record", "as_me", "access_token_file", "impersonate_service_account", "no_troubleshooter"])]
    pub bundle: Option<PathBuf>,
    /// Live mode: the project ID.
    #[arg(long, value_name = "P")]
    pub project: Option<String>,
    /// Live mode: the region.
    #[arg(long, value_name = "R")]
    pub region: Option<String>,
    /// Live mode: the service name.
    #[arg(long, value_name = "S")]
    pub service: Option<String>,
    /// Live mode: the service URL instead of project/region/service.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Live mode: diagnose on behalf of a Google-managed caller (e.g. pubsub:projects/P/subscriptions/S).
    #[arg(long, value_name = "KIND:RESOURCE")]
    pub caller_config: Option<String>,
    #[command(flatten)]
    pub case: CaseArgs,
    #[command(flatten)]
    pub live: LiveArgs,
}

/// How live mode calls the APIs: the credentials, and the call log. Shared by diagnose,
/// explain, incidents and scan.
#[derive(Debug, Args, Clone, Default)]
pub struct CredentialArgs {
    /// Live mode: call the APIs with the OAuth access token in FILE (as gcloud's
    /// --access-token-file; also CLOUDSDK_AUTH_ACCESS_TOKEN_FILE). Default: Application
    /// Default Credentials.
    #[arg(long, value_name = "FILE")]
    pub access_token_file: Option<PathBuf>,
    /// Live mode: call the APIs as this service account, as gcloud does (EMAIL, or
    /// EMAIL,DELEGATE,... for a delegation chain; also CLOUDSDK_AUTH_IMPERSONATE_SERVICE_ACCOUNT).
    #[arg(long, value_name = "EMAIL")]
    pub impersonate_service_account: Option<String>,
    /// Live mode: list every API call on stderr (method, resource, status, timing, retries).
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

/// Options of live mode (reading the evidence from Google Cloud APIs).
#[derive(Debug, Args, Clone, Default)]
pub struct LiveArgs {
    #[command(flatten)]
    pub credentials: CredentialArgs,
    /// Live mode: the caller is whoever the credentials in use are.
    #[arg(long, conflicts_with = "caller")]
    pub as_me: bool,
    /// Live mode: also write everything gathered to DIR as an evidence bundle (no tokens), to
    /// attach to a ticket and replay with --bundle DIR.
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// Live mode: how far back request logs are read when --at is not given (30m, 6h, 1d, 7d;
    /// default 1d for diagnose, 7d for explain).
    #[arg(long, value_name = "DURATION")]
    pub freshness: Option<String>,
    /// Live mode: do not ask Policy Troubleshooter (policytroubleshooter.googleapis.com)
    /// whether the caller holds run.routes.invoke. By default it is asked once the caller is
    /// known, if that is a user or service account, and the report's cross_check compares its
    /// answer with the tool's own reading of IAM.
    #[arg(long)]
    pub no_troubleshooter: bool,
    /// Live mode: the longest the whole run may take, in seconds. A call still unanswered then
    /// is a gap, and no retry waits past it. The default is a few seconds more than the
    /// slowest retry schedule of a call that keeps being answered slowly.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::live::DEFAULT_TIMEOUT_SECS, value_parser = crate::live::parse_timeout)]
    pub timeout: f64,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// What was pasted (quote it), or - to read it from standard input.
    pub paste: String,
    /// An evidence bundle to diagnose against, with the paste added (no network).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["project", "region", "service"])]
    pub bundle: Option<PathBuf>,
    /// Live mode: the project whose logs hold the request (default: the paste's, else gcloud's
    /// default project).
    #[arg(long, value_name = "P")]
    pub project: Option<String>,
    /// Live mode: the region of the service (default: from the request's log entry).
    #[arg(long, value_name = "R")]
    pub region: Option<String>,
    /// Live mode: the service (default: from the request's log entry).
    #[arg(long, value_name = "S")]
    pub service: Option<String>,
    #[command(flatten)]
    pub case: CaseArgs,
    #[command(flatten)]
    pub live: LiveArgs,
}

#[derive(Debug, Args)]
pub struct RulesArgs {
    /// A rule code (IPD020), name (missing-invoker-binding) or cause (missing_invoker_binding).
    pub code: Option<String>,
}
