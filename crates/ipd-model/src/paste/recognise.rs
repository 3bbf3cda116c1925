//! Where a pasted refusal came from, decided from the paste's own signals (the contract's
//! `paste` object minus `next`): its kind, origin, status, identifiers, and the causes it
//! leaves possible or rules out.

use serde::Serialize;

use super::ids::{Identifiers, extract, field, host_of};
use super::{Paste, classify};
use crate::logs::{EMPTY_AUTHORIZATION, GATE_401, GATE_403};
use crate::token::{Token, TokenKind};

/// What the paste is (`paste.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    ErrorPage,
    JsonError,
    LogEntry,
    AuditLog,
    TraceId,
    InsertId,
    LogsUrl,
    Token,
    Curl,
    StackTrace,
    CliError,
    CallerLog,
    Unknown,
}

/// Where the refusal came from (`paste.origin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Cloud Run's invoker gate.
    CloudRunGate,
    /// The application behind the gate.
    Application,
    /// Identity-Aware Proxy.
    Iap,
    /// VPC Service Controls.
    VpcServiceControls,
    /// Cloud Run ingress (404 before the service).
    Ingress,
    /// A Google API call that is not an invoke (Admin API, Firestore, Tasks, ...).
    GoogleApi,
    /// A deploy-time IAM or configuration change.
    DeployTime,
    /// A client that could not mint the ID token it needed.
    ClientCredentials,
    /// A refusal that does not involve Cloud Run.
    NotCloudRun,
    Unknown,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ErrorPage => "error_page",
            Kind::JsonError => "json_error",
            Kind::LogEntry => "log_entry",
            Kind::AuditLog => "audit_log",
            Kind::TraceId => "trace_id",
            Kind::InsertId => "insert_id",
            Kind::LogsUrl => "logs_url",
            Kind::Token => "token",
            Kind::Curl => "curl",
            Kind::StackTrace => "stack_trace",
            Kind::CliError => "cli_error",
            Kind::CallerLog => "caller_log",
            Kind::Unknown => "unknown",
        }
    }
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::CloudRunGate => "cloud_run_gate",
            Origin::Application => "application",
            Origin::Iap => "iap",
            Origin::VpcServiceControls => "vpc_service_controls",
            Origin::Ingress => "ingress",
            Origin::GoogleApi => "google_api",
            Origin::DeployTime => "deploy_time",
            Origin::ClientCredentials => "client_credentials",
            Origin::NotCloudRun => "not_cloud_run",
            Origin::Unknown => "unknown",
        }
    }
}

/// What the paste shows on its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Recognised {
    pub kind: Kind,
    pub origin: Origin,
    pub status: Option<i64>,
    pub identifiers: Identifiers,
    pub possible_causes: Vec<&'static str>,
    pub ruled_out: Vec<&'static str>,
    /// One sentence: where the refusal came from and what that means.
    pub meaning: String,
    /// The token the paste carries, analysed (never printed in full).
    pub token: Option<Token>,
    /// A refusal with no token at all (`Empty Authorization header value.`).
    pub empty_authorization: bool,
    /// What the deploy-time or API refusal is about, when the paste says.
    pub topic: Option<Topic>,
    /// The paste as classified for request lookup (IDs, log entries, tokens).
    pub paste: Paste,
}

/// The subject of a deploy-time or Google API refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic {
    ActAs,
    ApiDisabled,
    DomainRestriction,
    CustomConstraint(Option<String>),
    PublicGrantNotApplied,
    RunServiceAgent,
    Permission(String),
    JobsRun,
}

/// Causes the gate's 401 can have: a token it could not accept.
const TOKEN_CAUSES: &[&str] = &[
    "access_token_not_id_token",
    "invalid_token",
    "expired_token",
    "wrong_audience",
];
/// Causes the gate's 403 can have: no token, or a principal without `run.routes.invoke`.
const PERMISSION_CAUSES: &[&str] = &[
    "no_token",
    "missing_invoker_binding",
    "iam_condition_not_met",
    "deny_policy",
    "deleted_principal",
    "functions_invoker_role_only",
    "iam_propagation_delay",
    "public_access_blocked_by_domain_restriction",
    "public_access_blocked_by_custom_constraint",
    "public_grant_not_applied",
    "caller_cannot_mint_id_token",
];
/// The causes the invoker gate decides: all ruled out when something else refused first or
/// the gate let the request through.
const GATE_CAUSES: &[&str] = &[
    "no_token",
    "access_token_not_id_token",
    "invalid_token",
    "expired_token",
    "wrong_audience",
    "missing_invoker_binding",
    "iam_condition_not_met",
    "deny_policy",
    "deleted_principal",
    "functions_invoker_role_only",
    "iam_propagation_delay",
];

fn has_any(l: &str, needles: &[&str]) -> bool {
    needles.iter().any(|n| l.contains(n))
}

/// The Google front end's HTML error page (`Error: Forbidden`, `Your client does not have
/// permission`, `<title>404 Page not found</title>`).
fn google_page(l: &str) -> bool {
    has_any(
        l,
        &[
            "your client does not have permission",
            "error: forbidden",
            "error: unauthorized",
            "error: page not found",
            "was not found on this server",
            "that’s an error",
            "that's an error",
        ],
    )
}

fn kind_of(s: &str, l: &str, paste: &Paste) -> Kind {
    match paste {
        Paste::Token(_) => return Kind::Token,
        Paste::TraceId(_) | Paste::TraceContext { .. } => return Kind::TraceId,
        Paste::InsertId(_) => return Kind::InsertId,
        Paste::LogsExplorerUrl { .. } => return Kind::LogsUrl,
        _ => {}
    }
    let first = l.trim_start();
    if l.contains("curl ")
        || l.lines().any(|x| x.starts_with("< http/"))
        || first.starts_with("http/1.")
        || first.starts_with("http/2 ")
        || first.starts_with("http/3 ")
    {
        return Kind::Curl;
    }
    if has_any(
        l,
        &["cloudaudit.googleapis.com", "google.cloud.audit.auditlog"],
    ) {
        return Kind::AuditLog;
    }
    if has_any(
        l,
        &[
            "cloudscheduler.googleapis.com%2fexecutions",
            "google.cloud.scheduler.logging.attemptfinished",
            "cloudtasks.googleapis.com%2ftask_operations_log",
        ],
    ) {
        return Kind::CallerLog;
    }
    if matches!(paste, Paste::LogEntry(_)) {
        return Kind::LogEntry;
    }
    if has_any(
        l,
        &[
            "error: (gcloud.",
            "(gcloud.",
            "│ error:",
            "error: google-github-actions",
            "setting iam policy failed",
            "policy update access denied",
            "deployment failed",
            "googleapi: error",
        ],
    ) {
        return Kind::CliError;
    }
    if has_any(
        l,
        &[
            "traceback (most recent call last)",
            "\n    at ",
            "\n   at ",
            "rpc error: code =",
            "gaxioserror",
            "google.api_core.exceptions.",
            "exception:",
            "exception.",
            "error: 16 ",
            "error: 7 ",
            "idtoken:",
            "idtoken.",
            "client error: `",
            "unexpected http status code received from server",
            "debug_error_string",
            "error received from peer",
            "rpcexception",
            "in `",
        ],
    ) {
        return Kind::StackTrace;
    }
    if s.contains("\"error\"") && (s.contains("\"status\"") || s.contains("\"code\"")) {
        return Kind::JsonError;
    }
    if app_json(s) {
        return Kind::JsonError;
    }
    if l.contains("<html")
        || l.contains("<title>")
        || google_page(l)
        || l.contains("invalid iap")
        || l.contains("iap for cloud run app")
    {
        return Kind::ErrorPage;
    }
    if s.contains(GATE_403) || s.contains(GATE_401) {
        return Kind::LogEntry;
    }
    Kind::Unknown
}

/// A JSON object in the paste that is neither Google's error envelope nor a log entry: a body
/// the application wrote (`{"message": ...}`, `{"detail": ...}`).
fn app_json(s: &str) -> bool {
    let Some(i) = s.find('{') else { return false };
    let mut it = serde_json::Deserializer::from_str(&s[i..]).into_iter::<serde_json::Value>();
    let Some(Ok(serde_json::Value::Object(m))) = it.next() else {
        return false;
    };
    !m.is_empty()
        && ![
            "error",
            "insertId",
            "httpRequest",
            "protoPayload",
            "jsonPayload",
            "textPayload",
            "logName",
            "level",
        ]
        .iter()
        .any(|k| m.contains_key(*k))
}

/// A 3-digit HTTP status right at the start of `s`.
fn status_at(s: &str) -> Option<i64> {
    let t: String = s.trim_start().chars().take(4).collect();
    let n: String = t.chars().take(3).collect();
    let next = t.chars().nth(3);
    (n.len() == 3
        && n.chars().all(|c| c.is_ascii_digit())
        && next.is_none_or(|c| !c.is_ascii_digit())
        && n.starts_with(['1', '2', '3', '4', '5']))
    .then(|| n.parse().ok())
    .flatten()
}

fn status_after(s: &str, prefixes: &[&str]) -> Option<i64> {
    prefixes.iter().find_map(|p| {
        let mut from = 0;
        while let Some(i) = s[from..].find(p) {
            from += i + p.len();
            if let Some(n) = status_at(&s[from..]) {
                return Some(n);
            }
        }
        None
    })
}

fn status_of(s: &str, l: &str, kind: Kind) -> Option<i64> {
    if kind == Kind::Curl {
        let line = l.lines().find_map(|x| {
            let x = x.trim_start_matches(['<', ' ']);
            x.strip_prefix("http/")
                .and_then(|r| r.split_once(' ').map(|(_, n)| n))
        });
        if let Some(n) = line.and_then(status_at) {
            return Some(n);
        }
    }
    if let Some(n) = field(s, "status").and_then(|v| status_at(&v)) {
        return Some(n);
    }
    if let Some(n) = status_after(
        l,
        &[
            "\"code\": ",
            "\"code\":",
            "error ",
            "code=",
            "http ",
            "status code ",
            "status code: ",
            "status of ",
            "status: ",
            "<title>",
            "<b>",
            "post ",
            "get ",
            "permissiondenied: ",
            "server: ",
            "response code number = ",
        ],
    ) {
        return Some(n);
    }
    if let Some(n) = l
        .find("client error:")
        .and_then(|i| status_at(&l[i.saturating_sub(4)..]))
    {
        return Some(n);
    }
    if let Some(n) = ["forbidden", "unauthorized", "not found"]
        .iter()
        .find_map(|w| {
            let i = l.find(&format!(" {w}"))?;
            status_at(&l[i.saturating_sub(3)..])
        })
    {
        return Some(n);
    }
    if s.contains(GATE_403) || s.contains(EMPTY_AUTHORIZATION) {
        return Some(403);
    }
    if s.contains(GATE_401) {
        return Some(401);
    }
    if l.contains("invalid iap credentials") {
        return Some(401);
    }
    if l.contains("error: forbidden") || l.contains("you don't have access") {
        return Some(403);
    }
    if l.contains("error: unauthorized") {
        return Some(401);
    }
    // Canonical codes of Google's error model, by their usual HTTP status.
    if l.contains("permission '") && l.contains("' denied") {
        return Some(403);
    }
    for (code, http) in [
        ("permission_denied", 403),
        ("permissiondenied", 403),
        ("permission denied", 403),
        ("grpc_status:7", 403),
        ("unauthenticated", 401),
        ("failed_precondition", 400),
        ("not_found", 404),
    ] {
        if l.contains(code) {
            return Some(http);
        }
    }
    if field(s, "code").as_deref() == Some("7") {
        return Some(403);
    }
    None
}

/// The host the refusal names and what kind it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostClass {
    RunApp,
    /// `REGION-PROJECT.cloudfunctions.net`: a gen2 function (behind Cloud Run's gate) or a
    /// gen1 function; the host alone does not say which.
    CloudFunctions,
    GoogleApi,
    OtherGoogle,
    NotGoogle,
    None,
}

fn host_class(url: Option<&str>) -> HostClass {
    let Some(h) = url.and_then(host_of).map(str::to_ascii_lowercase) else {
        return HostClass::None;
    };
    if h.ends_with(".run.app") {
        HostClass::RunApp
    } else if h.ends_with(".cloudfunctions.net") {
        HostClass::CloudFunctions
    } else if h.ends_with(".googleapis.com") {
        HostClass::GoogleApi
    } else if has_any(
        &h,
        &[
            "appspot.com",
            "google.com",
            "googleusercontent.com",
            "web.app",
            "firebaseapp.com",
        ],
    ) {
        HostClass::OtherGoogle
    } else {
        HostClass::NotGoogle
    }
}

fn topic_of(l: &str, s: &str) -> Option<Topic> {
    if l.contains("iam.serviceaccounts.actas") {
        return Some(Topic::ActAs);
    }
    if l.contains("has not been used in project") || l.contains("service_disabled") {
        return Some(Topic::ApiDisabled);
    }
    if l.contains("do not belong to a permitted customer")
        || l.contains("iam.allowedpolicymemberdomains")
        || l.contains("iam.managed.allowedpolicymembers")
    {
        return Some(Topic::DomainRestriction);
    }
    if l.contains("operation denied by custom org policies") {
        let name = s
            .find("customConstraints/")
            .map(|i| &s[i + "customConstraints/".len()..])
            .map(|r| {
                r.chars()
                    .take_while(|c| *c != '"' && !c.is_whitespace())
                    .collect()
            });
        return Some(Topic::CustomConstraint(name));
    }
    if l.contains("policy update access denied") || l.contains("run.services.setiampolicy") {
        return Some(Topic::PublicGrantNotApplied);
    }
    if l.contains("setting iam policy failed") {
        return Some(Topic::PublicGrantNotApplied);
    }
    if l.contains("cloud run service agent does not have permission") {
        return Some(Topic::RunServiceAgent);
    }
    if l.contains("jobs/") && l.contains(":run") {
        return Some(Topic::JobsRun);
    }
    let perm = |p: &str| {
        let i = s.find(p)?;
        let rest = &s[i + p.len()..];
        let v: String = rest
            .chars()
            .take_while(|c| *c != '\'' && *c != '"')
            .collect();
        (!v.is_empty() && !v.contains(' ')).then_some(v)
    };
    perm("Permission '")
        .or_else(|| perm("lacks IAM permission \""))
        .map(Topic::Permission)
}

fn origin_of(
    s: &str,
    l: &str,
    kind: Kind,
    paste: &Paste,
    ids: &Identifiers,
    status: Option<i64>,
) -> Origin {
    if l.contains("invalid iap credentials")
        || l.contains("x-goog-iap-generated-response")
        || l.contains("iap for cloud run app is not set up correctly")
        || l.contains("you don't have access")
    {
        return Origin::Iap;
    }
    if has_any(
        l,
        &[
            "vpcservicecontrolsuniqueid",
            "vpcservicecontrolsauditmetadata",
            "request is prohibited by organization's policy",
        ],
    ) {
        return Origin::VpcServiceControls;
    }
    if has_any(
        l,
        &[
            "no identity token can be obtained",
            "neither metadata server or valid service account credentials",
            "credential must be service_account",
            "is not an oidc token provider",
            "cannot fetch id token in this environment",
            "openid connect id token",
            "iam.serviceaccounts.getopenidtoken",
            "iamcredentials.generateidtoken",
            ":generateidtoken",
        ],
    ) {
        return Origin::ClientCredentials;
    }
    if has_any(
        l,
        &[
            "iam.serviceaccounts.actas",
            "setting iam policy failed",
            "policy update access denied",
            "do not belong to a permitted customer",
            "operation denied by custom org policies",
            "has not been used in project",
            "(gcloud.run.deploy)",
            "(gcloud.beta.run.deploy)",
            "(gcloud.run.services.add-iam-policy-binding)",
            "(gcloud.run.services.set-iam-policy)",
            "could not create cloud run service",
            "error setting iam policy",
            ":setiampolicy",
            "error creating job",
            "error creating service",
            "failed to deploy",
            "cloud run service agent does not have permission",
        ],
    ) {
        return Origin::DeployTime;
    }
    // The gate's own log text decides.
    if s.contains(GATE_403) || s.contains(GATE_401) || s.contains(EMPTY_AUTHORIZATION) {
        return Origin::CloudRunGate;
    }
    if let Paste::LogEntry(e) = paste
        && e.resource.as_ref().and_then(|r| r.kind.as_deref()) == Some("cloud_run_revision")
    {
        let answered = e.latency_secs().is_some_and(|x| x > 0.0);
        return if answered && e.status().is_some_and(|x| x >= 400) {
            Origin::Application
        } else {
            Origin::Unknown
        };
    }
    if l.contains("invalid iap assertion") {
        return Origin::Application;
    }
    let page = google_page(l);
    let html = l.contains("text/html") || l.contains("<html") || page;
    // A body that the application wrote: JSON or plain text that is not Google's page.
    let app_headers = l.contains("x-powered-by:")
        || l.contains("content-type: application/json")
        || l.contains("content-type: text/plain");
    let google_envelope = s.contains("\"error\"") && s.contains("\"code\"");
    let callable_envelope =
        s.contains("\"error\"") && s.contains("\"status\"") && !s.contains("\"code\"");
    let not_google_server = l
        .lines()
        .any(|x| x.trim_start_matches(['<', ' ']).starts_with("server:") && !x.contains("google"));
    match host_class(ids.url.as_deref()) {
        HostClass::RunApp => {
            if kind == Kind::CallerLog {
                return Origin::CloudRunGate;
            }
            if app_headers && !page {
                return Origin::Application;
            }
            if status == Some(404) {
                return if page || html || l.contains("server: google frontend") {
                    Origin::Ingress
                } else {
                    Origin::Unknown
                };
            }
            if matches!(status, Some(401 | 403)) {
                return Origin::CloudRunGate;
            }
            Origin::Unknown
        }
        HostClass::CloudFunctions => Origin::Unknown,
        HostClass::GoogleApi | HostClass::OtherGoogle if page => Origin::NotCloudRun,
        HostClass::GoogleApi => Origin::GoogleApi,
        HostClass::OtherGoogle | HostClass::NotGoogle => Origin::NotCloudRun,
        HostClass::None => {
            if not_google_server {
                Origin::NotCloudRun
            } else if (app_headers && l.contains("server: google frontend"))
                || callable_envelope
                || app_json(s)
            {
                Origin::Application
            } else if google_envelope
                || has_any(
                    l,
                    &[
                        "google.api_core.exceptions.permissiondenied",
                        "missing or insufficient permissions",
                        "lacks iam permission",
                        "permission_denied: permission '",
                        "permission denied on resource",
                        "permissiondeniederror",
                    ],
                )
                || (kind == Kind::CallerLog && l.contains("googleapis.com"))
            {
                Origin::GoogleApi
            } else {
                Origin::Unknown
            }
        }
    }
}

fn push_all(v: &mut Vec<&'static str>, xs: &[&'static str]) {
    for x in xs {
        if !v.contains(x) {
            v.push(x);
        }
    }
}

/// The token a paste carries: the whole paste, or a `Bearer` value inside it.
fn token_in(s: &str, paste: &Paste) -> Option<Token> {
    if let Paste::Token(t) = paste {
        return Some((**t).clone());
    }
    let i = s.find("Bearer ")?;
    let v: String = s[i + "Bearer ".len()..]
        .chars()
        .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | '`'))
        .collect();
    if v.starts_with('$') || v.starts_with('<') || v.len() < 16 {
        return None;
    }
    let t = Token::analyze(&v);
    (t.kind != TokenKind::Empty).then_some(t)
}

fn causes(r: &mut Recognised, page_seen: bool, log_seen: bool, preflight: bool, l: &str) {
    let (p, o) = (&mut r.possible_causes, &mut r.ruled_out);
    match r.origin {
        Origin::CloudRunGate | Origin::Unknown
            if r.origin == Origin::CloudRunGate || r.status.is_some() =>
        {
            match r.status {
                Some(401) => {
                    // The gate rejected the token: what IAM would say never came into it.
                    push_all(p, TOKEN_CAUSES);
                    for c in GATE_CAUSES.iter().filter(|c| !TOKEN_CAUSES.contains(c)) {
                        push_all(o, &[c]);
                    }
                    push_all(o, &["ingress_restricted"]);
                }
                Some(403) if r.empty_authorization || preflight => {
                    push_all(p, &["no_token"]);
                    if r.empty_authorization && !preflight {
                        push_all(p, &["caller_cannot_mint_id_token"]);
                    }
                    push_all(o, TOKEN_CAUSES);
                    push_all(
                        o,
                        &[
                            "missing_invoker_binding",
                            "iam_condition_not_met",
                            "deny_policy",
                            "ingress_restricted",
                        ],
                    );
                }
                Some(403) => {
                    push_all(p, PERMISSION_CAUSES);
                    if r.origin == Origin::CloudRunGate && (page_seen || log_seen) {
                        push_all(o, TOKEN_CAUSES);
                        push_all(o, &["ingress_restricted"]);
                    } else if r.origin == Origin::Unknown {
                        push_all(p, &["iap_denied", "vpc_service_controls"]);
                    }
                    if log_seen {
                        push_all(o, &["vpc_service_controls"]);
                    }
                }
                _ => {}
            }
            if r.origin == Origin::CloudRunGate {
                if page_seen || log_seen {
                    push_all(o, &["application_denied"]);
                } else {
                    push_all(p, &["application_denied"]);
                }
            } else if r.status.is_some_and(|s| s >= 400) {
                push_all(p, &["application_denied"]);
            }
        }
        Origin::Iap => {
            push_all(p, &["iap_denied"]);
            if r.meaning.contains("not set up correctly") {
                push_all(p, &["missing_invoker_binding"]);
            } else {
                push_all(o, GATE_CAUSES);
            }
        }
        Origin::VpcServiceControls => {
            push_all(p, &["vpc_service_controls"]);
            if r.kind == Kind::AuditLog {
                push_all(o, GATE_CAUSES);
            }
        }
        Origin::Ingress => {
            push_all(p, &["ingress_restricted"]);
            push_all(o, GATE_CAUSES);
        }
        Origin::Application => {
            push_all(p, &["application_denied"]);
            push_all(o, GATE_CAUSES);
            push_all(o, &["ingress_restricted"]);
        }
        Origin::ClientCredentials => push_all(p, &["caller_cannot_mint_id_token"]),
        Origin::DeployTime => {
            match &r.topic {
                Some(Topic::DomainRestriction) => {
                    push_all(p, &["public_access_blocked_by_domain_restriction"])
                }
                Some(Topic::CustomConstraint(_)) => {
                    push_all(p, &["public_access_blocked_by_custom_constraint"])
                }
                Some(Topic::PublicGrantNotApplied) => {
                    push_all(p, &["public_grant_not_applied"]);
                    if l.contains("setting iam policy failed")
                        && !l.contains("policy update access denied")
                    {
                        push_all(p, &["public_access_blocked_by_domain_restriction"]);
                    }
                }
                _ => {}
            }
            push_all(o, GATE_CAUSES);
        }
        Origin::GoogleApi => push_all(o, GATE_CAUSES),
        _ => {}
    }
    // A pasted token narrows the token causes.
    if let Some(t) = &r.token {
        let (p, o) = (&mut r.possible_causes, &mut r.ruled_out);
        let token_causes: &[&'static str] = match &t.kind {
            TokenKind::AccessToken => &["access_token_not_id_token"],
            TokenKind::GoogleIdToken => &[
                "wrong_audience",
                "expired_token",
                "missing_invoker_binding",
                "iam_condition_not_met",
                "deny_policy",
            ],
            TokenKind::Empty => &[],
            _ => &["invalid_token"],
        };
        if matches!(r.origin, Origin::Unknown | Origin::CloudRunGate) {
            if r.status.is_none() {
                push_all(p, token_causes);
            } else {
                p.retain(|c| !TOKEN_CAUSES.contains(c) || token_causes.contains(c));
            }
            push_all(o, &["no_token"]);
            for c in TOKEN_CAUSES {
                if !token_causes.contains(c) {
                    push_all(o, &[c]);
                }
            }
            if !matches!(t.kind, TokenKind::GoogleIdToken) {
                push_all(o, &["missing_invoker_binding"]);
            }
            p.retain(|c| !o.contains(c));
        }
    }
}

fn meaning(r: &Recognised, l: &str) -> String {
    let st = r
        .status
        .map(|s| format!("a {s}"))
        .unwrap_or_else(|| "a refusal".into());
    match r.origin {
        Origin::CloudRunGate => match r.status {
            Some(401) => format!("{st} from Cloud Run's invoker gate: the token was rejected (wrong audience, expired, not an ID token or not Google-signed); IAM is not involved"),
            Some(403) if r.empty_authorization => format!("{st} from Cloud Run's invoker gate: the request carried no Authorization header at all"),
            Some(403) => format!("{st} from Cloud Run's invoker gate: no token was sent, or the token's principal lacks run.routes.invoke on the service (\"not authenticated\" is misleading)"),
            _ => format!("{st} at Cloud Run's invoker gate"),
        },
        Origin::Application => format!("{st} written by the application behind Cloud Run: the invoker gate let the request through"),
        Origin::Iap if l.contains("not set up correctly") => "Identity-Aware Proxy let the user in, but IAP for Cloud Run app is not set up correctly: IAP's service agent cannot invoke the service".into(),
        Origin::Iap => format!("{st} from Identity-Aware Proxy, before Cloud Run's invoker check: the IAP credentials were missing or rejected, or the user lacks IAP access"),
        Origin::VpcServiceControls => format!("{st} from VPC Service Controls: the request crossed a service perimeter; Cloud Run and IAM never saw it"),
        Origin::Ingress if l.contains("z</code>") || r.identifiers.url.as_deref().is_some_and(|u| u.trim_end_matches('/').ends_with('z')) => format!("{st} from Google's front end: the path ends in `z`, which the front end reserves (e.g. /healthz); or ingress blocks the caller"),
        Origin::Ingress => format!("{st} before the service: Cloud Run ingress (internal only, or the default URL disabled), a wrong URL or region — not IAM"),
        Origin::GoogleApi => format!("{st} from a Google API call that is not an invoke of a Cloud Run service: the caller's IAM on that API decides"),
        Origin::DeployTime => format!("{st} at deploy or management time, not when the service was called"),
        Origin::ClientCredentials => "the client could not mint a Google ID token, so it cannot call a private Cloud Run service with these credentials".into(),
        Origin::NotCloudRun => format!("{st} from something that is not Cloud Run (the host is not a run.app URL or the service's domain)"),
        Origin::Unknown
            if r
                .identifiers
                .url
                .as_deref()
                .and_then(host_of)
                .is_some_and(|h| h.ends_with(".cloudfunctions.net")) =>
        {
            format!("{st} from a cloudfunctions.net URL: a Cloud Run function (2nd gen) is refused at Cloud Run's invoker gate, a 1st gen function by Cloud Functions itself; which one this is, the URL does not say")
        }
        Origin::Unknown => match r.kind {
            Kind::TraceId | Kind::InsertId | Kind::LogsUrl => "a reference to a request: its log entry says what happened".into(),
            Kind::Token => "a token: what it can and cannot pass depends on the service".into(),
            _ if google_page(l) || l.contains("text/html") => format!("{st} page from Google's front end, without the host: Cloud Run's gate serves it, but so do other Google products"),
            _ => "the paste does not say where the refusal came from".into(),
        },
    }
}

/// How much of a paste is read: the signals of every paste in the corpus sit in its first
/// few kilobytes; a longer one (a whole log dump) is cut here, on a character boundary.
pub const MAX_PASTE: usize = 256 * 1024;

/// Recognises a paste. Pure, total: never panics, whatever the input.
pub fn recognise(input: &str) -> Recognised {
    let mut cut = input.len().min(MAX_PASTE);
    while !input.is_char_boundary(cut) {
        cut -= 1;
    }
    let input = &input[..cut];
    let paste = classify(input);
    let s = input.trim_start_matches('\u{feff}');
    let l = s.to_ascii_lowercase();
    let kind = kind_of(s, &l, &paste);
    let mut identifiers = extract(s);
    match &paste {
        Paste::TraceId(t) | Paste::TraceContext { trace: t, .. } => {
            identifiers.trace = Some(t.clone())
        }
        Paste::InsertId(i) => identifiers.insert_id = Some(i.clone()),
        Paste::LogsExplorerUrl { project, query } => {
            identifiers.url = None;
            identifiers.project = project.clone();
            if let Some(q) = query {
                let q = extract(q);
                identifiers.trace = q.trace;
                identifiers.insert_id = q.insert_id;
            }
        }
        _ => {}
    }
    let token = token_in(s, &paste);
    if identifiers.principal.is_none() {
        identifiers.principal = token
            .as_ref()
            .and_then(|t| t.principal())
            .map(|p| p.to_string());
    }
    let status = match kind {
        Kind::Token | Kind::TraceId | Kind::InsertId | Kind::LogsUrl => None,
        _ => status_of(s, &l, kind),
    };
    let origin = if matches!(
        kind,
        Kind::Token | Kind::TraceId | Kind::InsertId | Kind::LogsUrl
    ) {
        Origin::Unknown
    } else {
        origin_of(s, &l, kind, &paste, &identifiers, status)
    };
    let topic = topic_of(&l, s);
    let empty_authorization = s.contains(EMPTY_AUTHORIZATION);
    let preflight = match &paste {
        Paste::LogEntry(e) => e.method() == Some("OPTIONS"),
        _ => l.contains("\"requestmethod\": \"options\"") || l.starts_with("options "),
    };
    let page_seen = google_page(&l)
        || l.contains("www-authenticate")
        || l.contains("text/html")
        || s.contains(GATE_403)
        || s.contains(GATE_401);
    let log_seen =
        matches!(paste, Paste::LogEntry(_)) || s.contains(GATE_403) || s.contains(GATE_401);
    let mut r = Recognised {
        kind,
        origin,
        status,
        identifiers,
        possible_causes: vec![],
        ruled_out: vec![],
        meaning: String::new(),
        token,
        empty_authorization,
        topic,
        paste,
    };
    r.meaning = meaning(&r, &l);
    causes(&mut r, page_seen, log_seen, preflight, &l);
    r
}
