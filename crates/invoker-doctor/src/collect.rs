//! `invoker-doctor collect`: the gcloud commands that make a complete evidence bundle for one
//! service and time, printed as a script for a customer to run (the default) or run here with
//! `--run` (gcloud from `PATH`, its own credentials and configuration).
//!
//! The plan is pure (argv vectors built from the request and, for the steps that depend on
//! them, from earlier answers: the ancestry, the deny-policy lists, the custom roles named in
//! the policies); [`script`] renders it for a shell and [`run`] executes it. A failing command
//! never stops the collection: its file holds the error envelope gcloud reported (read by
//! `diagnose` as a refused source), or, when gcloud's message names no API status, the failure
//! is noted in [`GAPS_FILE`]. Nothing here prints, asks for or writes a token.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use chrono::Duration;
use ipd_gather::{CONSTRAINTS, CallerConfigRef, Target, gather::audit_log_selector};
use ipd_model::principal::Principal;
use ipd_model::time::Timestamp;
use ipd_rules::fix::shell_quote;
use serde_json::{Value, json};

/// Where failures that left no envelope are noted (one line each).
pub const GAPS_FILE: &str = "collect-gaps.txt";
/// Log entries read at most (newest first).
pub const LOG_LIMIT: u32 = 5000;
/// Half-width of the window of failing requests around `--at`.
const FAILING_MARGIN: i64 = 60;
/// Half-width of the window of all requests around `--at` (successes too).
const AROUND_MARGIN: i64 = 10;
/// How far before `--at` audit entries (grants, service changes) are read.
const AUDIT_BEFORE_HOURS: i64 = 24;
/// gcloud commands run at once by `--run`.
const PARALLEL: usize = 4;

/// When the failing request was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Window {
    /// `--at T`: windows around T, written into the filter.
    At(Timestamp),
    /// `--freshness D` (gcloud's own flag; default 1d).
    Freshness(String),
}

/// What to collect.
#[derive(Debug, Clone)]
pub struct Request {
    pub target: Target,
    pub window: Window,
    /// The caller, for Policy Troubleshooter (users and service accounts only).
    pub caller: Option<Principal>,
    pub caller_configs: Vec<CallerConfigRef>,
}

/// One gcloud command and the bundle file its standard output becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub file: String,
    pub argv: Vec<String>,
}

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn rfc3339(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn quote_filter(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The Logging filter: the service's request (and application) logs and the audit entries the
/// rules read — IAM policy and service changes (`cloudaudit.googleapis.com%2Factivity`),
/// VPC Service Controls refusals (`%2Fpolicy`, `audited_resource`), IAP decisions
/// (`%2Fdata_access`) — every status, not only the failures. With `--at T`: failing requests
/// within an hour of T, every request within ten minutes of it, audit entries from a day before
/// to an hour after (the timestamps in the filter make gcloud drop its `--freshness`).
pub fn log_filter(req: &Request) -> String {
    let t = &req.target;
    let revision = format!(
        "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"{}\" AND resource.labels.location=\"{}\"",
        quote_filter(&t.service),
        quote_filter(&t.region)
    );
    let audit = audit_log_selector(t).replace('\n', " AND ");
    let between = |from: Timestamp, to: Timestamp| {
        format!(
            "timestamp>=\"{}\" AND timestamp<=\"{}\"",
            rfc3339(from),
            rfc3339(to)
        )
    };
    match &req.window {
        Window::At(at) => {
            let at = *at;
            let m = |n: i64| Duration::minutes(n);
            format!(
                "({revision} AND httpRequest.status>=400 AND {}) OR ({revision} AND {}) OR ({audit} AND {})",
                between(at - m(FAILING_MARGIN), at + m(FAILING_MARGIN)),
                between(at - m(AROUND_MARGIN), at + m(AROUND_MARGIN)),
                between(
                    at - Duration::hours(AUDIT_BEFORE_HOURS),
                    at + m(FAILING_MARGIN)
                ),
            )
        }
        Window::Freshness(_) => format!("({revision}) OR ({audit})"),
    }
}

/// The `gcloud logging read` command for `logs.json`.
pub fn logs_step(req: &Request) -> Step {
    let mut a = argv(&["gcloud", "logging", "read"]);
    a.push(log_filter(req));
    a.push(format!("--project={}", req.target.project));
    if let Window::Freshness(d) = &req.window {
        a.push(format!("--freshness={d}"));
    }
    a.push(format!("--limit={LOG_LIMIT}"));
    a.push("--format=json".into());
    Step {
        file: "logs.json".into(),
        argv: a,
    }
}

/// The `gcloud ... describe` of a Google-managed caller's configuration.
fn caller_step(c: &CallerConfigRef) -> Step {
    let words: &[&str] = match c.kind {
        "pubsub" => &["pubsub", "subscriptions", "describe"],
        "scheduler" => &["scheduler", "jobs", "describe"],
        "tasks" if c.name.contains("/tasks/") => &["tasks", "describe"],
        "tasks" => &["tasks", "queues", "describe"],
        "eventarc" => &["eventarc", "triggers", "describe"],
        _ => &["workflows", "describe"],
    };
    let mut a = argv(&["gcloud"]);
    a.extend(words.iter().map(|s| s.to_string()));
    a.push(c.name.clone());
    a.push("--format=json".into());
    Step {
        file: c.file_name(),
        argv: a,
    }
}

/// The commands that depend on nothing but the request.
pub fn fixed_steps(req: &Request) -> Vec<Step> {
    let t = &req.target;
    let (p, r, s) = (t.project.as_str(), t.region.as_str(), t.service.as_str());
    let mut out = vec![
        Step {
            file: "service.json".into(),
            argv: argv(&[
                "gcloud",
                "run",
                "services",
                "describe",
                s,
                &format!("--project={p}"),
                &format!("--region={r}"),
                "--format=json",
            ]),
        },
        Step {
            file: "service-iam-policy.json".into(),
            argv: argv(&[
                "gcloud",
                "run",
                "services",
                "get-iam-policy",
                s,
                &format!("--project={p}"),
                &format!("--region={r}"),
                "--format=json",
            ]),
        },
        Step {
            file: "project-iam-policy.json".into(),
            argv: argv(&["gcloud", "projects", "get-iam-policy", p, "--format=json"]),
        },
    ];
    for c in CONSTRAINTS {
        out.push(Step {
            file: format!("org-policy-{c}.json"),
            argv: argv(&[
                "gcloud",
                "org-policies",
                "describe",
                c,
                "--effective",
                &format!("--project={p}"),
                "--format=json",
            ]),
        });
    }
    out.push(logs_step(req));
    out.extend(req.caller_configs.iter().map(caller_step));
    if let Some(email) = req
        .caller
        .as_ref()
        .and_then(ipd_gather::troubleshooter_email)
    {
        out.push(Step {
            file: ipd_gather::TROUBLESHOOT_FILE.into(),
            argv: argv(&[
                "gcloud",
                "policy-intelligence",
                "troubleshoot-policy",
                "iam",
                &format!("//run.googleapis.com/projects/{p}/locations/{r}/services/{s}"),
                &format!("--principal-email={email}"),
                "--permission=run.routes.invoke",
                "--format=json",
            ]),
        });
    }
    out
}

/// `gcloud projects get-ancestors P --format=json`.
pub fn ancestors_argv(project: &str) -> Vec<String> {
    argv(&[
        "gcloud",
        "projects",
        "get-ancestors",
        project,
        "--format=json",
    ])
}

/// A node above the project: `("folder", ID)` or `("organization", ID)`.
pub type Ancestor = (String, String);

/// The folders and organization of a `get-ancestors` answer, nearest first.
pub fn parse_ancestors(v: &Value) -> Vec<Ancestor> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            let t = a.get("type")?.as_str()?;
            let id = a.get("id")?.as_str()?;
            matches!(t, "folder" | "organization").then(|| (t.to_string(), id.to_string()))
        })
        .collect()
}

/// The IAM policy of each ancestor.
pub fn ancestor_policy_steps(ancestors: &[Ancestor]) -> Vec<Step> {
    ancestors
        .iter()
        .map(|(t, id)| match t.as_str() {
            "folder" => Step {
                file: format!("folder-{id}-iam-policy.json"),
                argv: argv(&[
                    "gcloud",
                    "resource-manager",
                    "folders",
                    "get-iam-policy",
                    id,
                    "--format=json",
                ]),
            },
            _ => Step {
                file: format!("organization-{id}-iam-policy.json"),
                argv: argv(&[
                    "gcloud",
                    "organizations",
                    "get-iam-policy",
                    id,
                    "--format=json",
                ]),
            },
        })
        .collect()
}

/// The deny-policy attachment points: the project, then its ancestors.
pub fn attachment_points(project: &str, ancestors: &[Ancestor]) -> Vec<String> {
    let mut out = vec![format!(
        "cloudresourcemanager.googleapis.com/projects/{project}"
    )];
    for (t, id) in ancestors {
        let kind = if t == "folder" {
            "folders"
        } else {
            "organizations"
        };
        out.push(format!("cloudresourcemanager.googleapis.com/{kind}/{id}"));
    }
    out
}

pub fn deny_list_argv(attachment: &str) -> Vec<String> {
    argv(&[
        "gcloud",
        "iam",
        "policies",
        "list",
        &format!("--attachment-point={attachment}"),
        "--kind=denypolicies",
        "--format=json",
    ])
}

pub fn deny_get_argv(id: &str, attachment: &str) -> Vec<String> {
    argv(&[
        "gcloud",
        "iam",
        "policies",
        "get",
        id,
        &format!("--attachment-point={attachment}"),
        "--kind=denypolicies",
        "--format=json",
    ])
}

/// The policy IDs of a `gcloud iam policies list` answer (`{"policies": [{"name": ...}]}`).
pub fn parse_deny_list(v: &Value) -> Vec<String> {
    let list = v
        .get("policies")
        .and_then(Value::as_array)
        .or_else(|| v.as_array());
    list.into_iter()
        .flatten()
        .filter_map(|p| p.get("name")?.as_str()?.rsplit('/').next())
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .collect()
}

/// The resource type custom constraints on IAM allow policies name.
const ALLOW_POLICY_TYPE: &str = "iam.googleapis.com/AllowPolicy";

/// `gcloud org-policies list-custom-constraints --organization=O --format=json`.
pub fn custom_constraints_list_argv(org: &str) -> Vec<String> {
    argv(&[
        "gcloud",
        "org-policies",
        "list-custom-constraints",
        &format!("--organization={org}"),
        "--format=json",
    ])
}

/// The constraints (`custom.X`) of a `list-custom-constraints` answer that govern IAM allow
/// policies (the ones that can refuse a public grant).
pub fn parse_custom_constraints(v: &Value) -> Vec<String> {
    let list = v
        .get("customConstraints")
        .and_then(Value::as_array)
        .or_else(|| v.as_array());
    list.into_iter()
        .flatten()
        .filter(|c| {
            c.get("resourceTypes")
                .and_then(Value::as_array)
                .is_some_and(|t| t.iter().any(|t| t.as_str() == Some(ALLOW_POLICY_TYPE)))
        })
        .filter_map(|c| c.get("name")?.as_str()?.rsplit('/').next())
        .filter(|n| n.starts_with("custom.") && n.len() > "custom.".len() && !n.contains(' '))
        .map(str::to_string)
        .collect()
}

/// For a custom constraint `custom.X` on IAM allow policies: its definition
/// (`describe-custom-constraint`, as `org-policy-custom-X.json`) and its effective policy on
/// the project (`describe custom.X --effective`, as `org-policy-custom.X.json`, read with the
/// other org policies): the rule needs both, the definition and that it is enforced.
pub fn custom_constraint_steps(org: &str, project: &str, name: &str) -> [Step; 2] {
    [
        Step {
            file: format!(
                "org-policy-custom-{}.json",
                name.trim_start_matches("custom.").replace('/', "-")
            ),
            argv: argv(&[
                "gcloud",
                "org-policies",
                "describe-custom-constraint",
                name,
                &format!("--organization={org}"),
                "--format=json",
            ]),
        },
        Step {
            file: format!("org-policy-{}.json", name.replace('/', "-")),
            argv: argv(&[
                "gcloud",
                "org-policies",
                "describe",
                name,
                "--effective",
                &format!("--project={project}"),
                "--format=json",
            ]),
        },
    ]
}

/// Custom roles (`projects/P/roles/R`, `organizations/O/roles/R`) bound in IAM policies.
pub fn custom_roles<'a>(policies: impl IntoIterator<Item = &'a Value>) -> Vec<String> {
    let mut out = BTreeSet::new();
    for p in policies {
        for b in p
            .get("bindings")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(r) = b.get("role").and_then(Value::as_str)
                && (r.starts_with("projects/") || r.starts_with("organizations/"))
                && r.contains("/roles/")
            {
                out.insert(r.to_string());
            }
        }
    }
    out.into_iter().collect()
}

/// `gcloud iam roles describe ID --project P|--organization O` for a custom role's name.
pub fn role_step(name: &str) -> Option<Step> {
    let (parent, id) = name.split_once("/roles/")?;
    let flag = match parent.split_once('/')? {
        ("projects", p) => format!("--project={p}"),
        ("organizations", o) => format!("--organization={o}"),
        _ => return None,
    };
    Some(Step {
        file: format!("role-{}.json", name.replace('/', "-")),
        argv: argv(&[
            "gcloud",
            "iam",
            "roles",
            "describe",
            id,
            &flag,
            "--format=json",
        ]),
    })
}

fn render(a: &[String]) -> String {
    a.iter()
        .map(|s| shell_quote(s))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The plan as a bash script that writes the bundle into `out` (the commands `--run` runs, with
/// the dependent steps as shell loops over gcloud's own `--format=value(...)` output).
pub fn script(req: &Request, out: &Path) -> String {
    let t = &req.target;
    let p = shell_quote(&t.project);
    let mut s = String::new();
    s.push_str(&format!(
        "#!/usr/bin/env bash\n# Evidence bundle for Cloud Run service {} (project {}, region {}), for invoker-doctor.\n# Run it with gcloud signed in as someone who can read the service, IAM policies, org\n# policies and logs; then attach the folder {}. It only reads, and it writes no token.\n# A refused command leaves gcloud's error in {GAPS_FILE}; the others still run.\n",
        t.service,
        t.project,
        t.region,
        out.display()
    ));
    s.push_str("set -u\n");
    s.push_str(&format!(
        "mkdir -p {0} && cd {0} || exit 1\n",
        shell_quote(&out.display().to_string())
    ));
    s.push_str(&format!(": > {GAPS_FILE}\n"));
    s.push_str(&format!(
        "save() {{ f=$1; shift; if \"$@\" > \"$f.tmp\" 2> \"$f.err\"; then mv \"$f.tmp\" \"$f\"; else echo \"$f: $(grep -h ERROR \"$f.err\" | tail -n 1 | sed 's/ This command is authenticated.*//')\" >> {GAPS_FILE}; rm -f \"$f.tmp\"; fi; rm -f \"$f.err\"; }}\n\n"
    ));
    for st in fixed_steps(req) {
        s.push_str(&format!("save {} {}\n", st.file, render(&st.argv)));
    }
    s.push_str("\n# Folders and organization above the project, and their IAM policies.\n");
    s.push_str(&format!(
        "ancestors=$(gcloud projects get-ancestors {p} --format='value(type,id)' 2>> {GAPS_FILE})\n"
    ));
    s.push_str(
        "while read -r type id; do\n  case $type in\n    folder) save \"folder-$id-iam-policy.json\" gcloud resource-manager folders get-iam-policy \"$id\" --format=json ;;\n    organization) save \"organization-$id-iam-policy.json\" gcloud organizations get-iam-policy \"$id\" --format=json; org=$id ;;\n  esac\ndone <<< \"$ancestors\"\n",
    );
    s.push_str(&format!(
        "\n# Custom org-policy constraints on IAM allow policies (they can refuse a public grant).\nif [ -n \"${{org:-}}\" ]; then\n  for c in $(gcloud org-policies list-custom-constraints --organization=\"$org\" --filter='resourceTypes:{ALLOW_POLICY_TYPE}' --format='value(name.basename())' 2>> {GAPS_FILE}); do\n    save \"org-policy-custom-${{c#custom.}}.json\" gcloud org-policies describe-custom-constraint \"$c\" --organization=\"$org\" --format=json\n    save \"org-policy-$c.json\" gcloud org-policies describe \"$c\" --effective --project={} --format=json\n  done\nfi\n",
        shell_quote(&t.project)
    ));
    s.push_str("\n# IAM deny policies on the project and its ancestors, as one JSON array.\n");
    s.push_str(&format!(
        "points=\"cloudresourcemanager.googleapis.com/projects/{}\"\nwhile read -r type id; do\n  case $type in\n    folder) points=\"$points cloudresourcemanager.googleapis.com/folders/$id\" ;;\n    organization) points=\"$points cloudresourcemanager.googleapis.com/organizations/$id\" ;;\n  esac\ndone <<< \"$ancestors\"\n",
        t.project
    ));
    s.push_str(&format!(
        "{{\n  printf '['; sep=''\n  for ap in $points; do\n    for id in $(gcloud iam policies list --attachment-point=\"$ap\" --kind=denypolicies --flatten=policies --format='value(policies.name.basename())' 2>> {GAPS_FILE}); do\n      printf '%s' \"$sep\"; gcloud iam policies get \"$id\" --attachment-point=\"$ap\" --kind=denypolicies --format=json 2>> {GAPS_FILE}; sep=','\n    done\n  done\n  printf ']\\n'\n}} > deny-policies.json\n"
    ));
    s.push_str("\n# Custom roles bound in those policies.\n");
    s.push_str(
        "for role in $(cat ./*-iam-policy.json 2>/dev/null | grep -o '\"\\(projects\\|organizations\\)/[^\"/]*/roles/[^\"]*\"' | tr -d '\"' | sort -u); do\n  parent=${role%%/roles/*}; id=${role##*/roles/}\n  case $parent in\n    projects/*) flag=--project=${parent#projects/} ;;\n    *) flag=--organization=${parent#organizations/} ;;\n  esac\n  save \"role-$(printf '%s' \"$role\" | tr / -).json\" gcloud iam roles describe \"$id\" \"$flag\" --format=json\ndone\n",
    );
    s.push_str(&format!(
        "\n[ -s {GAPS_FILE} ] && {{ echo 'some evidence could not be read (attach the folder anyway):' >&2; cat {GAPS_FILE} >&2; }}\necho \"bundle written to $(pwd); diagnose it with: invoker-doctor diagnose --bundle $(pwd)\" >&2\n"
    ));
    s
}

/// What one command gave.
#[derive(Debug)]
pub enum Outcome {
    Ok(Value),
    /// gcloud failed: its last `ERROR:` line, and the envelope it names (when it names a status).
    Failed {
        message: String,
        envelope: Option<Value>,
    },
}

/// Google's error envelope for gcloud's `ERROR: (gcloud.x.y) STATUS: message` (the form gcloud
/// prints for an API error); `None` when the line names no status (a local error).
pub fn envelope_from_stderr(stderr: &str) -> (String, Option<Value>) {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("ERROR:"))
        .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("")
        .trim();
    // gcloud's note on which credentials it used names a file path: not evidence.
    let line = line
        .split(" This command is authenticated")
        .next()
        .unwrap_or(line)
        .to_string();
    let rest = line
        .strip_prefix("ERROR:")
        .map(str::trim)
        .map(|r| match r.strip_prefix('(') {
            Some(x) => x.split_once(") ").map(|(_, m)| m).unwrap_or(x),
            None => r,
        })
        .unwrap_or("");
    let Some((status, message)) = rest.split_once(": ") else {
        return (line, None);
    };
    let code = match status {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => 400,
        "UNAUTHENTICATED" => 401,
        "PERMISSION_DENIED" => 403,
        "NOT_FOUND" => 404,
        "ALREADY_EXISTS" | "ABORTED" => 409,
        "RESOURCE_EXHAUSTED" => 429,
        "CANCELLED" => 499,
        "INTERNAL" | "UNKNOWN" | "DATA_LOSS" => 500,
        "UNIMPLEMENTED" => 501,
        "UNAVAILABLE" => 503,
        "DEADLINE_EXCEEDED" => 504,
        _ => return (line, None),
    };
    let env = json!({"error": {"code": code, "message": message.trim(), "status": status}});
    (line, Some(env))
}

fn exec(gcloud: &Path, a: &[String]) -> Outcome {
    let out = match Command::new(gcloud).args(&a[1..]).output() {
        Ok(o) => o,
        Err(e) => {
            return Outcome::Failed {
                message: format!("cannot run {}: {e}", gcloud.display()),
                envelope: None,
            };
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() {
        let text = stdout.trim();
        if text.is_empty() {
            return Outcome::Ok(Value::Null);
        }
        return match serde_json::from_str::<Value>(text) {
            Ok(v) => Outcome::Ok(v),
            Err(e) => Outcome::Failed {
                message: format!("gcloud printed something that is not JSON ({e})"),
                envelope: None,
            },
        };
    }
    let (message, envelope) = envelope_from_stderr(&String::from_utf8_lossy(&out.stderr));
    Outcome::Failed { message, envelope }
}

fn exec_all(gcloud: &Path, cmds: &[Vec<String>]) -> Vec<Outcome> {
    let mut results: Vec<Option<Outcome>> = (0..cmds.len()).map(|_| None).collect();
    for (chunk_cmds, chunk_out) in cmds.chunks(PARALLEL).zip(results.chunks_mut(PARALLEL)) {
        std::thread::scope(|sc| {
            let handles: Vec<_> = chunk_cmds
                .iter()
                .map(|a| sc.spawn(move || exec(gcloud, a)))
                .collect();
            for (h, slot) in handles.into_iter().zip(chunk_out.iter_mut()) {
                *slot = Some(h.join().unwrap_or(Outcome::Failed {
                    message: "the thread running gcloud panicked".into(),
                    envelope: None,
                }));
            }
        });
    }
    results
        .into_iter()
        .map(|o| {
            o.unwrap_or(Outcome::Failed {
                message: "not run".into(),
                envelope: None,
            })
        })
        .collect()
}

/// What `--run` did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Files written, sorted.
    pub files: Vec<String>,
    /// `FILE: gcloud's error` for every command that failed.
    pub gaps: Vec<String>,
    pub commands: usize,
}

struct Writer<'a> {
    dir: &'a Path,
    summary: Summary,
}

impl Writer<'_> {
    fn write(&mut self, file: &str, v: &Value) -> Result<()> {
        let path = self.dir.join(file);
        let mut text = serde_json::to_string_pretty(v)?;
        text.push('\n');
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        self.summary.files.push(file.to_string());
        Ok(())
    }

    /// Writes the answer, or the envelope of a refusal; notes every failure.
    fn outcome(&mut self, file: &str, o: &Outcome) -> Result<()> {
        match o {
            Outcome::Ok(v) => self.write(file, v),
            Outcome::Failed { message, envelope } => {
                self.summary.gaps.push(format!("{file}: {message}"));
                match envelope {
                    Some(e) => self.write(file, e),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Runs the plan with `gcloud` into `dir` (created if needed).
pub fn run(req: &Request, dir: &Path, gcloud: &Path) -> Result<Summary> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut w = Writer {
        dir,
        summary: Summary::default(),
    };
    // Phase 1: everything that needs only the request, and the ancestry.
    let fixed = fixed_steps(req);
    let mut cmds: Vec<Vec<String>> = fixed.iter().map(|s| s.argv.clone()).collect();
    cmds.push(ancestors_argv(&req.target.project));
    let mut outs = exec_all(gcloud, &cmds);
    w.summary.commands += cmds.len();
    let anc_out = outs.pop().unwrap_or(Outcome::Failed {
        message: "not run".into(),
        envelope: None,
    });
    let mut policies: Vec<Value> = Vec::new();
    for (st, o) in fixed.iter().zip(&outs) {
        w.outcome(&st.file, o)?;
        if st.file.ends_with("-iam-policy.json")
            && let Outcome::Ok(v) = o
        {
            policies.push(v.clone());
        }
    }
    let ancestors = match &anc_out {
        Outcome::Ok(v) => parse_ancestors(v),
        Outcome::Failed { message, .. } => {
            w.summary.gaps.push(format!(
                "ancestors (folders and organization not read): {message}"
            ));
            Vec::new()
        }
    };
    // Phase 2: the ancestors' policies and the deny-policy lists.
    let anc_steps = ancestor_policy_steps(&ancestors);
    let points = attachment_points(&req.target.project, &ancestors);
    let org = ancestors
        .iter()
        .find(|(t, _)| t == "organization")
        .map(|(_, id)| id.clone());
    let mut cmds: Vec<Vec<String>> = anc_steps.iter().map(|s| s.argv.clone()).collect();
    cmds.extend(points.iter().map(|p| deny_list_argv(p)));
    if let Some(o) = &org {
        cmds.push(custom_constraints_list_argv(o));
    }
    let mut outs = exec_all(gcloud, &cmds);
    w.summary.commands += cmds.len();
    // The custom constraints on IAM allow policies, to describe with the deny policies.
    let constraint_steps: Vec<Step> = match (&org, org.as_ref().and_then(|_| outs.pop())) {
        (Some(o), Some(Outcome::Ok(v))) => parse_custom_constraints(&v)
            .iter()
            .flat_map(|n| custom_constraint_steps(o, &req.target.project, n))
            .collect(),
        (Some(_), Some(Outcome::Failed { message, .. })) => {
            w.summary.gaps.push(format!(
                "org-policy-custom-*.json (custom constraints not read): {message}"
            ));
            Vec::new()
        }
        _ => Vec::new(),
    };
    let (anc_outs, list_outs) = outs.split_at(anc_steps.len());
    for (st, o) in anc_steps.iter().zip(anc_outs) {
        w.outcome(&st.file, o)?;
        if let Outcome::Ok(v) = o {
            policies.push(v.clone());
        }
    }
    let mut gets: Vec<Vec<String>> = Vec::new();
    let mut first_refusal: Option<Value> = None;
    let mut lists_read = 0;
    for (p, o) in points.iter().zip(list_outs) {
        match o {
            Outcome::Ok(v) => {
                lists_read += 1;
                gets.extend(parse_deny_list(v).iter().map(|id| deny_get_argv(id, p)));
            }
            Outcome::Failed { message, envelope } => {
                w.summary
                    .gaps
                    .push(format!("deny-policies.json ({p}): {message}"));
                if first_refusal.is_none() {
                    first_refusal.clone_from(envelope);
                }
            }
        }
    }
    // Phase 3: the deny policies themselves and the custom roles.
    let roles: Vec<Step> = custom_roles(&policies)
        .iter()
        .filter_map(|r| role_step(r))
        .collect();
    let mut cmds = gets.clone();
    cmds.extend(roles.iter().map(|s| s.argv.clone()));
    cmds.extend(constraint_steps.iter().map(|s| s.argv.clone()));
    let outs = exec_all(gcloud, &cmds);
    w.summary.commands += cmds.len();
    let (get_outs, rest) = outs.split_at(gets.len());
    let (role_outs, constraint_outs) = rest.split_at(roles.len());
    for (st, o) in constraint_steps.iter().zip(constraint_outs) {
        w.outcome(&st.file, o)?;
    }
    let mut deny = Vec::new();
    for (a, o) in gets.iter().zip(get_outs) {
        match o {
            Outcome::Ok(v) => deny.push(v.clone()),
            Outcome::Failed { message, .. } => w
                .summary
                .gaps
                .push(format!("deny-policies.json ({}): {message}", a[4])),
        }
    }
    match (lists_read, first_refusal) {
        // Not one list could be read: the source is refused, as the first refusal says.
        (0, Some(env)) => w.write("deny-policies.json", &env)?,
        (0, None) => {}
        _ => w.write("deny-policies.json", &Value::Array(deny))?,
    }
    for (st, o) in roles.iter().zip(role_outs) {
        w.outcome(&st.file, o)?;
    }
    if !w.summary.gaps.is_empty() {
        let mut text = w.summary.gaps.join("\n");
        text.push('\n');
        std::fs::write(dir.join(GAPS_FILE), text)
            .with_context(|| format!("cannot write {GAPS_FILE}"))?;
    }
    w.summary.files.sort();
    Ok(w.summary)
}

/// `invoker-doctor collect`: prints the script, or runs it with `--run`.
pub fn command(c: &crate::cli::CollectArgs, env: &ipd_gather::Env) -> Result<crate::Output> {
    let req = request(
        &c.project,
        &c.region,
        &c.service,
        c.at.as_deref(),
        c.freshness.as_deref(),
        c.caller.as_deref(),
        &c.caller_config,
    )?;
    if !c.run {
        return Ok(crate::Output {
            stdout: script(&req, &c.out),
            warnings: Vec::new(),
            code: crate::EXIT_CLEAN,
        });
    }
    let path = env.get("PATH").map(std::ffi::OsString::from);
    let gcloud = find_gcloud(path.as_deref()).ok_or_else(|| {
        anyhow!(
            "--run needs gcloud on PATH (https://cloud.google.com/sdk/docs/install); without --run the commands are printed for someone who has it"
        )
    })?;
    let summary = run(&req, &c.out, &gcloud)?;
    let mut warnings: Vec<String> = summary
        .gaps
        .iter()
        .map(|g| format!("not read: {g}"))
        .collect();
    warnings.push(format!(
        "note: {} gcloud commands, {} files in {}",
        summary.commands,
        summary.files.len(),
        c.out.display()
    ));
    Ok(crate::Output {
        stdout: format!(
            "{}\ndiagnose it with: invoker-doctor diagnose --bundle {}\n",
            summary.files.join("\n"),
            shell_quote(&c.out.display().to_string())
        ),
        warnings,
        code: crate::EXIT_CLEAN,
    })
}

/// Finds `gcloud` on `PATH`.
pub fn find_gcloud(path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .map(|d| d.join("gcloud"))
        .find(|p| p.is_file())
}

/// The request from the command line's values.
pub fn request(
    project: &str,
    region: &str,
    service: &str,
    at: Option<&str>,
    freshness: Option<&str>,
    caller: Option<&str>,
    caller_configs: &[String],
) -> Result<Request> {
    let target = Target {
        project: project.to_string(),
        region: region.to_string(),
        service: service.to_string(),
    };
    target.resource_name().map_err(|e| {
        anyhow!(
            "--project/--region/--service do not make a service name: `{}`",
            e.0
        )
    })?;
    let window = match (at, freshness) {
        (Some(_), Some(_)) => bail!("give --at or --freshness, not both"),
        (Some(a), None) => Window::At(ipd_model::time::parse_rfc3339(a).ok_or_else(|| {
            anyhow!("--at: `{a}` is not an RFC 3339 time (e.g. 2026-11-20T10:15:00Z)")
        })?),
        (None, f) => {
            let f = f.unwrap_or("1d");
            crate::live::parse_freshness(f)?;
            Window::Freshness(f.trim().to_string())
        }
    };
    let caller = match caller {
        Some(c) => match Principal::parse(c) {
            Principal::Other(_) => bail!(
                "--caller: `{c}` is not a principal (serviceAccount:EMAIL, user:EMAIL, group:EMAIL, ...)"
            ),
            p => Some(p),
        },
        None => None,
    };
    let caller_configs = caller_configs
        .iter()
        .map(|c| CallerConfigRef::parse(c).map_err(|e| anyhow!("--caller-config: {e}")))
        .collect::<Result<Vec<_>>>()?;
    Ok(Request {
        target,
        window,
        caller,
        caller_configs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_custom_constraints_on_allow_policies_are_described() {
        // gcloud's list (an array) and the API's (`customConstraints`): the same answer.
        let list = serde_json::json!([
            {"name": "organizations/9/customConstraints/custom.denyPublicRunInvoker",
             "resourceTypes": ["iam.googleapis.com/AllowPolicy"]},
            {"name": "organizations/9/customConstraints/custom.runRegions",
             "resourceTypes": ["run.googleapis.com/Service"]},
            {"name": "organizations/9/customConstraints/custom.bad name",
             "resourceTypes": ["iam.googleapis.com/AllowPolicy"]}
        ]);
        let want = vec!["custom.denyPublicRunInvoker".to_string()];
        assert_eq!(parse_custom_constraints(&list), want);
        assert_eq!(
            parse_custom_constraints(&serde_json::json!({"customConstraints": list})),
            want
        );
        let [def, eff] = custom_constraint_steps("9", "shop-prod", &want[0]);
        assert_eq!(def.file, "org-policy-custom-denyPublicRunInvoker.json");
        assert_eq!(
            render(&def.argv),
            "gcloud org-policies describe-custom-constraint custom.denyPublicRunInvoker --organization=9 --format=json"
        );
        assert_eq!(eff.file, "org-policy-custom.denyPublicRunInvoker.json");
        assert!(render(&eff.argv).contains("--effective --project=shop-prod"));
    }

    fn req(window: Window) -> Request {
        Request {
            target: Target {
                project: "shop-prod".into(),
                region: "europe-west1".into(),
                service: "orders-api".into(),
            },
            window,
            caller: Some(Principal::parse(
                "serviceAccount:checkout@shop-prod.iam.gserviceaccount.com",
            )),
            caller_configs: vec![
                CallerConfigRef::parse("pubsub:projects/shop-prod/subscriptions/orders-push")
                    .unwrap(),
            ],
        }
    }

    fn at() -> Window {
        Window::At(ipd_model::time::parse_rfc3339("2026-11-20T10:00:00Z").unwrap())
    }

    #[test]
    fn the_log_filter_keeps_successes_and_audit_entries() {
        let f = log_filter(&req(at()));
        // Not only failures: a branch without a status condition, around the request.
        assert!(f.contains("httpRequest.status>=400"), "{f}");
        assert!(
            f.contains(
                "timestamp>=\"2026-11-20T09:50:00Z\" AND timestamp<=\"2026-11-20T10:10:00Z\""
            ),
            "{f}"
        );
        assert_eq!(f.matches("httpRequest.status").count(), 1, "{f}");
        for log in [
            "cloudaudit.googleapis.com%2Factivity",
            "cloudaudit.googleapis.com%2Fpolicy",
            "cloudaudit.googleapis.com%2Fdata_access",
            "run.googleapis.com/HttpIngress",
        ] {
            assert!(f.contains(log), "{log} missing: {f}");
        }
        // The audit window opens a day before the request.
        assert!(f.contains("timestamp>=\"2026-11-19T10:00:00Z\""), "{f}");
        // A timestamp in the filter: gcloud's --freshness would be ignored, so none is given.
        assert!(
            !logs_step(&req(at()))
                .argv
                .iter()
                .any(|a| a.starts_with("--freshness"))
        );
        let fresh = logs_step(&req(Window::Freshness("3d".into())));
        assert!(fresh.argv.contains(&"--freshness=3d".to_string()));
        assert!(!fresh.argv[3].contains("timestamp"), "{}", fresh.argv[3]);
    }

    #[test]
    fn fixed_steps_cover_the_bundle() {
        let steps = fixed_steps(&req(at()));
        let files: Vec<&str> = steps.iter().map(|s| s.file.as_str()).collect();
        for f in [
            "service.json",
            "service-iam-policy.json",
            "project-iam-policy.json",
            "org-policy-iam.allowedPolicyMemberDomains.json",
            "org-policy-iam.managed.allowedPolicyMembers.json",
            "org-policy-run.managed.requireInvokerIam.json",
            "logs.json",
            "caller-pubsub.json",
            "troubleshoot.json",
        ] {
            assert!(files.contains(&f), "{f} missing from {files:?}");
        }
        let ts = steps
            .iter()
            .find(|s| s.file == "troubleshoot.json")
            .unwrap();
        // v3, not the v2alpha1 `gcloud policy-troubleshoot iam`.
        assert_eq!(
            ts.argv[1..4],
            ["policy-intelligence", "troubleshoot-policy", "iam"]
        );
        assert!(
            ts.argv.contains(
                &"--principal-email=checkout@shop-prod.iam.gserviceaccount.com".to_string()
            )
        );
        // No troubleshooter question for a group.
        let mut g = req(at());
        g.caller = Some(Principal::parse("group:ops@shop.example.com"));
        assert!(
            !fixed_steps(&g)
                .iter()
                .any(|s| s.file == "troubleshoot.json")
        );
        // Nothing asks gcloud for a token.
        for s in &steps {
            assert!(!s.argv.iter().any(|a| a.contains("print-access-token") || a.contains("print-identity-token")));
        }
    }

    #[test]
    fn dependent_steps_from_real_answers() {
        let anc = json!([
            {"id": "shop-prod", "type": "project"},
            {"id": "555", "type": "folder"},
            {"id": "987", "type": "organization"}
        ]);
        let a = parse_ancestors(&anc);
        assert_eq!(
            a,
            vec![
                ("folder".into(), "555".into()),
                ("organization".into(), "987".into())
            ]
        );
        let files: Vec<String> = ancestor_policy_steps(&a)
            .into_iter()
            .map(|s| s.file)
            .collect();
        assert_eq!(
            files,
            [
                "folder-555-iam-policy.json",
                "organization-987-iam-policy.json"
            ]
        );
        assert_eq!(
            attachment_points("shop-prod", &a),
            [
                "cloudresourcemanager.googleapis.com/projects/shop-prod",
                "cloudresourcemanager.googleapis.com/folders/555",
                "cloudresourcemanager.googleapis.com/organizations/987"
            ]
        );
        let list = json!({"policies": [{"name": "policies/cloudresourcemanager.googleapis.com%2Forganizations%2F987/denypolicies/quarantine", "kind": "DenyPolicy"}]});
        assert_eq!(parse_deny_list(&list), ["quarantine"]);
        assert!(parse_deny_list(&json!({})).is_empty());
        let pol = json!({"bindings": [
            {"role": "roles/run.invoker", "members": ["user:a@b.c"]},
            {"role": "projects/shop-prod/roles/invokerLite", "members": ["user:a@b.c"]},
            {"role": "organizations/987/roles/edge", "members": ["user:a@b.c"]}
        ]});
        let roles = custom_roles([&pol]);
        assert_eq!(
            roles,
            [
                "organizations/987/roles/edge",
                "projects/shop-prod/roles/invokerLite"
            ]
        );
        let st = role_step("projects/shop-prod/roles/invokerLite").unwrap();
        assert_eq!(st.file, "role-projects-shop-prod-roles-invokerLite.json");
        assert_eq!(
            st.argv,
            [
                "gcloud",
                "iam",
                "roles",
                "describe",
                "invokerLite",
                "--project=shop-prod",
                "--format=json"
            ]
        );
        assert!(role_step("roles/run.invoker").is_none());
    }

    fn line_of_403() -> String {
        envelope_from_stderr("ERROR: (gcloud.x) PERMISSION_DENIED: no. This command is authenticated with an access token from /tmp/t specified by the [auth/access_token_file] property.").0
    }

    #[test]
    fn gcloud_errors_become_envelopes() {
        let (_, e) = envelope_from_stderr(
            "ERROR: (gcloud.projects.get-iam-policy) PERMISSION_DENIED: Permission 'resourcemanager.projects.getIamPolicy' denied on resource 'projects/p' (or it may not exist). This command is authenticated with an access token from /tmp/t specified by the [auth/access_token_file] property.\n",
        );
        let e = e.unwrap();
        assert_eq!(e["error"]["code"], 403);
        assert_eq!(e["error"]["status"], "PERMISSION_DENIED");
        assert!(!e["error"]["message"].as_str().unwrap().contains("/tmp/t"));
        assert!(!line_of_403().contains("/tmp/t"));
        assert!(ipd_model::doc::ApiError::from_envelope(&e).is_some());
        // gcloud's own wording without a status is a gap, not an invented envelope.
        let (line, e) = envelope_from_stderr(
            "ERROR: (gcloud.run.services.describe) Cannot find service [orders-api]\n",
        );
        assert!(e.is_none());
        assert!(line.contains("Cannot find service"));
    }

    #[test]
    fn the_script_is_the_plan() {
        let s = script(&req(at()), Path::new("ticket-4711"));
        for st in fixed_steps(&req(at())) {
            assert!(s.contains(&render(&st.argv)), "missing {:?}", st.argv);
        }
        assert!(s.contains("gcloud projects get-ancestors shop-prod"));
        assert!(s.contains("gcloud iam policies list"));
        assert!(s.contains("gcloud iam policies get"));
        assert!(s.contains("gcloud iam roles describe"));
        assert!(s.contains("> deny-policies.json"));
        assert!(!s.contains("print-access-token") && !s.contains("print-identity-token"));
    }

    #[test]
    fn bad_requests_are_usage_errors() {
        assert!(request("p", "r", "s", Some("yesterday"), None, None, &[]).is_err());
        assert!(
            request(
                "p",
                "r",
                "s",
                Some("2026-11-20T10:00:00Z"),
                Some("1d"),
                None,
                &[]
            )
            .is_err()
        );
        assert!(request("p", "r", "s", None, None, Some("bob"), &[]).is_err());
        assert!(request("p", "r", "s", None, None, None, &["ftp:x".into()]).is_err());
        let r = request("p", "r", "s", None, None, None, &[]).unwrap();
        assert_eq!(r.window, Window::Freshness("1d".into()));
    }
}
