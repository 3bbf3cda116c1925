//! Reading an evidence bundle directory (the contract's file table).

use std::path::Path;

use serde_json::Value;

use crate::caller::CallerConfig;
use crate::context::Context;
use crate::deny::DenyPoliciesFile;
use crate::doc::{self, ApiError, Doc, ParseError};
use crate::evidence::{Evidence, Inputs};
use crate::gathered::Gathered;
use crate::iam::{Level, Policy};
use crate::logs::LogsFile;
use crate::orgpolicy::OrgPoliciesFile;
use crate::roles::Role;
use crate::service;
use crate::token::Token;
use crate::troubleshoot::Troubleshoot;

/// Largest file read from a bundle; evidence files are small, a huge one is a mistake.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Largest `logs.json`: a busy service's day of refusals is hundreds of megabytes, and it is
/// read in one pass at hundreds of MB/s. Above this, that one source is a `failed` gap.
pub const MAX_LOGS_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// The size limit of one bundle file, by its name.
pub fn max_file_bytes(name: &str) -> u64 {
    match name {
        "logs.json" => MAX_LOGS_BYTES,
        _ => MAX_FILE_BYTES,
    }
}

/// A loaded bundle and the warnings (unknown files) to print on stderr.
#[derive(Debug)]
pub struct Loaded {
    pub evidence: Evidence,
    pub warnings: Vec<String>,
}

/// Loads every known file of `dir`. A malformed file is an error naming the file and position.
pub fn load(dir: &Path, inputs: Inputs) -> Result<Loaded, ParseError> {
    let shown = dir.display().to_string();
    let rd = std::fs::read_dir(dir)
        .map_err(|e| ParseError::new(&shown, format!("cannot read bundle directory: {e}")))?;
    let mut names: Vec<String> = Vec::new();
    for ent in rd {
        let ent =
            ent.map_err(|e| ParseError::new(&shown, format!("cannot list bundle directory: {e}")))?;
        if ent.file_type().map(|t| t.is_file()).unwrap_or(false) {
            names.push(ent.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    let mut files = Vec::new();
    let mut oversized_logs = None;
    let mut streamed_logs = None;
    for name in names {
        let path = dir.join(&name);
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let max = max_file_bytes(&name);
        if len > max {
            let msg = format!("file is {len} bytes; this file is read up to {max} bytes");
            if name == "logs.json" {
                oversized_logs = Some(format!("{}: {msg}", path.display()));
                continue;
            }
            return Err(ParseError::new(&path.display().to_string(), msg));
        }
        if name == "logs.json" {
            // Streamed from disk: the file's text is never held whole.
            streamed_logs = Some(crate::logs::read_logs_file(
                &path,
                &path.display().to_string(),
            )?);
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|e| {
            ParseError::new(&path.display().to_string(), format!("cannot read: {e}"))
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            ParseError::new(
                &path.display().to_string(),
                format!(
                    "not UTF-8 text (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
            )
        })?;
        files.push((name, path.display().to_string(), text));
    }
    let mut loaded = from_files(
        files
            .iter()
            .map(|(n, p, t)| (n.as_str(), p.as_str(), t.as_str())),
    )?;
    loaded.evidence.inputs = inputs;
    if let Some(d) = streamed_logs {
        loaded.evidence.logs = gathered(d, "logging.logEntries.list").map(LogsFile::into_entries);
    }
    if let Some(error) = oversized_logs {
        loaded.warnings.push(format!("{error}; the logs are a gap"));
        loaded.evidence.logs = Gathered::Failed { error };
    }
    Ok(loaded)
}

/// Builds evidence from `(file name, display path, text)` triples; the pure part of [`load`].
pub fn from_files<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
) -> Result<Loaded, ParseError> {
    let mut ev = Evidence {
        service: Gathered::missing("no service.json or service.yaml in the bundle"),
        service_policy: Gathered::missing("no service-iam-policy.json in the bundle"),
        project_policy: Gathered::missing("no project-iam-policy.json in the bundle"),
        org_policies: Gathered::missing("no org-policies.json or org-policy-*.json in the bundle"),
        logs: Gathered::missing("no logs.json in the bundle"),
        deny_policies: Gathered::missing("no deny-policies.json in the bundle"),
        ..Evidence::default()
    };
    let mut warnings = Vec::new();
    let mut org: Vec<crate::orgpolicy::OrgPolicy> = Vec::new();
    let mut org_seen = false;
    let mut org_error: Option<ApiError> = None;
    for (name, path, text) in files {
        match name {
            "service.json" | "service.yaml" | "service.yml" => {
                ev.service = gathered(service::parse(path, text)?, "run.services.get");
            }
            "service-iam-policy.json" => {
                ev.service_policy = gathered(
                    doc::parse::<Policy>(path, text)?,
                    "run.services.getIamPolicy",
                )
            }
            "project-iam-policy.json" => {
                ev.project_policy = gathered(
                    doc::parse::<Policy>(path, text)?,
                    "resourcemanager.projects.getIamPolicy",
                )
            }
            "logs.json" => {
                ev.logs = gathered(
                    crate::logs::parse_logs(path, text)?,
                    "logging.logEntries.list",
                )
                .map(LogsFile::into_entries)
            }
            "deny-policies.json" => {
                ev.deny_policies = gathered(
                    doc::parse::<DenyPoliciesFile>(path, text)?,
                    "iam.denypolicies.get",
                )
                .map(DenyPoliciesFile::into_vec)
            }
            "troubleshoot.json" => {
                ev.troubleshoot = Some(gathered(
                    doc::parse::<Troubleshoot>(path, text)?,
                    "run.services.getIamPolicy",
                ))
            }
            "context.json" => match doc::parse::<Context>(path, text)? {
                Doc::Value(c) => ev.context = Some(c),
                Doc::Error(_) => {
                    return Err(ParseError::new(
                        path,
                        "context.json holds an API error, not a context object",
                    ));
                }
            },
            "token.txt" => ev.token = Some(Token::analyze(text)),
            "case.toml" => {} // fixture metadata of this repository's tests, not evidence
            _ if crate::regions::service_file_region(name).is_some() => {
                let region = crate::regions::service_file_region(name).unwrap_or_default();
                let g = gathered(service::parse(path, text)?, "run.services.get");
                regional(&mut ev, region).service = g;
            }
            _ if crate::regions::policy_file_region(name).is_some() => {
                let region = crate::regions::policy_file_region(name).unwrap_or_default();
                let g = gathered(
                    doc::parse::<Policy>(path, text)?,
                    "run.services.getIamPolicy",
                );
                regional(&mut ev, region).policy = g;
            }
            _ if is_policy_file(name, "folder-") => {
                let id = &name["folder-".len()..name.len() - "-iam-policy.json".len()];
                let g = gathered(
                    doc::parse::<Policy>(path, text)?,
                    "resourcemanager.folders.getIamPolicy",
                );
                ev.ancestor_policies
                    .push((Level::Folder(id.to_string()), g));
            }
            _ if is_policy_file(name, "organization-") => {
                let id = &name["organization-".len()..name.len() - "-iam-policy.json".len()];
                let g = gathered(
                    doc::parse::<Policy>(path, text)?,
                    "resourcemanager.organizations.getIamPolicy",
                );
                ev.ancestor_policies
                    .push((Level::Organization(id.to_string()), g));
            }
            _ if name.starts_with("org-policy-custom-") && name.ends_with(".json") => {
                match doc::parse::<crate::orgpolicy::CustomConstraint>(path, text)? {
                    Doc::Value(c) if c.name.contains("customConstraints/") => {
                        ev.custom_constraints.push(c)
                    }
                    Doc::Value(_) => {
                        return Err(ParseError::new(
                            path,
                            "not a custom constraint (no `name` of the form organizations/O/customConstraints/custom.NAME)",
                        ));
                    }
                    Doc::Error(e) => warnings.push(format!(
                        "{path}: holds an API error ({}); custom constraint definition unknown",
                        e.message
                    )),
                }
            }
            _ if name == "org-policies.json"
                || (name.starts_with("org-policy-") && name.ends_with(".json")) =>
            {
                org_seen = true;
                match doc::parse::<OrgPoliciesFile>(path, text)? {
                    Doc::Value(v) => org.extend(v.into_vec()),
                    Doc::Error(e) => org_error = Some(e),
                }
            }
            _ if name.starts_with("caller-") && name.ends_with(".json") => {
                match doc::parse::<Value>(path, text)? {
                    Doc::Value(v) => match CallerConfig::from_value(&v) {
                        Some(c) => ev.caller_configs.push(c),
                        None => {
                            return Err(ParseError::new(
                                path,
                                "not a Pub/Sub subscription, Scheduler job, Tasks task or queue, Eventarc trigger or workflow",
                            ));
                        }
                    },
                    Doc::Error(e) => {
                        let stem = name.trim_start_matches("caller-").trim_end_matches(".json");
                        let g: Gathered<CallerConfig> =
                            denied_or_failed(e, caller_get_permission(stem));
                        if let (Some(state), Some(detail)) = (g.gap_state(), g.absence()) {
                            let permission = match &g {
                                Gathered::Denied {
                                    permission: Some(p),
                                    ..
                                } => p.clone(),
                                _ => caller_get_permission(stem).to_string(),
                            };
                            ev.caller_config_gaps.push(crate::evidence::Gap {
                                source: format!("caller_config:{stem}"),
                                state,
                                detail,
                                needs_permission: Some(permission),
                            });
                        }
                    }
                }
            }
            _ if name.starts_with("role-") && name.ends_with(".json") => {
                match doc::parse::<Role>(path, text)? {
                    Doc::Value(r) if !r.name.is_empty() => ev.custom_roles.push(r),
                    Doc::Value(_) => return Err(ParseError::new(path, "role has no `name`")),
                    Doc::Error(e) => warnings.push(format!(
                        "{path}: holds an API error ({}); role definition unknown",
                        e.message
                    )),
                }
            }
            _ => warnings.push(format!("ignoring unknown file {path}")),
        }
    }
    // Folders before organizations (nearest first); the file order is alphabetical already.
    ev.ancestor_policies
        .sort_by_key(|(l, _)| matches!(l, Level::Organization(_)));
    if org_seen {
        ev.org_policies = match (org_error, org.is_empty()) {
            (Some(e), true) => denied_or_failed(e, "orgpolicy.policy.get"),
            _ => Gathered::Present(org),
        };
    }
    Ok(Loaded {
        evidence: ev,
        warnings,
    })
}

/// The permission the `get` of a caller's API checks, from its file name (`caller-NAME.json`
/// with NAME naming the kind: `pubsub`/`subscription`, `scheduler`/`job`, `tasks-queue`/`queue`,
/// `tasks`/`task`, `eventarc`/`trigger`, `workflows`/`workflow`).
fn caller_get_permission(stem: &str) -> &'static str {
    let s = stem.to_ascii_lowercase();
    let has = |w: &str| s.contains(w);
    if has("subscription") || has("pubsub") {
        "pubsub.subscriptions.get"
    } else if has("queue") {
        "cloudtasks.queues.get"
    } else if has("task") {
        "cloudtasks.tasks.get"
    } else if has("job") || has("scheduler") {
        "cloudscheduler.jobs.get"
    } else if has("trigger") || has("eventarc") {
        "eventarc.triggers.get"
    } else if has("workflow") {
        "workflows.workflows.get"
    } else {
        "the caller API's get permission"
    }
}

fn is_policy_file(name: &str, prefix: &str) -> bool {
    name.starts_with(prefix)
        && name.ends_with("-iam-policy.json")
        && name.len() > prefix.len() + "-iam-policy.json".len()
}

/// The entry of `region` among the other regions of a multi-region service.
fn regional<'e>(ev: &'e mut Evidence, region: &str) -> &'e mut crate::regions::Regional {
    let i = match ev.regional.iter().position(|r| r.region == region) {
        Some(i) => i,
        None => {
            ev.regional.push(crate::regions::Regional::new(region));
            ev.regional.len() - 1
        }
    };
    &mut ev.regional[i]
}

fn gathered<T>(d: Doc<T>, permission: &str) -> Gathered<T> {
    match d {
        Doc::Value(v) => Gathered::Present(v),
        Doc::Error(e) => denied_or_failed(e, permission),
    }
}

fn denied_or_failed<T>(e: ApiError, permission: &str) -> Gathered<T> {
    if e.is_permission_denied() {
        Gathered::Denied {
            permission: Some(
                e.permission
                    .clone()
                    .unwrap_or_else(|| permission.to_string()),
            ),
            detail: e.message,
        }
    } else {
        Gathered::Failed {
            error: format!(
                "{} {}",
                e.code.map(|c| c.to_string()).unwrap_or_default(),
                e.message
            )
            .trim()
            .to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_logs_file_is_a_failed_gap_and_the_rest_is_read() {
        let dir = std::env::temp_dir().join(format!("ipd-model-big-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Sparse: no disk is used for the bytes past the limit.
        let f = std::fs::File::create(dir.join("logs.json")).unwrap();
        f.set_len(MAX_LOGS_BYTES + 1).unwrap();
        std::fs::write(dir.join("project-iam-policy.json"), r#"{"bindings": []}"#).unwrap();
        let l = load(&dir, Inputs::default()).unwrap();
        assert!(
            matches!(&l.evidence.logs, Gathered::Failed { error } if error.contains("logs.json"))
        );
        assert!(l.evidence.project_policy.is_present());
        assert!(
            l.warnings.iter().any(|w| w.contains("logs.json")),
            "{:?}",
            l.warnings
        );
        // Far above the 64 MiB of other files, and another file's limit is unchanged.
        assert!(max_file_bytes("logs.json") >= 1 << 30);
        assert_eq!(max_file_bytes("service.json"), MAX_FILE_BYTES);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unknown_files_warn_and_errors_name_the_file() {
        let l = from_files([("notes.txt", "b/notes.txt", "hi")]).unwrap();
        assert_eq!(
            l.warnings,
            vec!["ignoring unknown file b/notes.txt".to_string()]
        );
        let e = from_files([(
            "service-iam-policy.json",
            "b/service-iam-policy.json",
            "{\"bindings\": [}",
        )])
        .unwrap_err();
        assert!(
            e.to_string().starts_with("b/service-iam-policy.json:1:"),
            "{e}"
        );
    }

    #[test]
    fn denied_file_becomes_a_gap() {
        let text = include_str!("../testdata/error-403-no-details.github-issue.json");
        let l =
            from_files([("project-iam-policy.json", "b/project-iam-policy.json", text)]).unwrap();
        match &l.evidence.project_policy {
            Gathered::Denied { permission, .. } => assert_eq!(
                permission.as_deref(),
                Some("resourcemanager.projects.getIamPolicy")
            ),
            other => panic!("{other:?}"),
        }
        let gaps = l.evidence.gaps();
        assert!(
            gaps.iter().any(|g| g.source == "project_iam_policy"
                && g.state == crate::gathered::GapState::Denied)
        );
    }

    #[test]
    fn caller_file_with_an_error_is_a_gap() {
        let denied = r#"{"error": {"code": 403, "status": "PERMISSION_DENIED", "message": "User not authorized to perform this action."}}"#;
        let missing = r#"{"error": {"code": 404, "status": "NOT_FOUND", "message": "Resource 'projects/p/locations/l/queues/q' was not found"}}"#;
        let l = from_files([
            ("caller-pubsub.json", "b/caller-pubsub.json", denied),
            (
                "caller-tasks-queue.json",
                "b/caller-tasks-queue.json",
                missing,
            ),
        ])
        .unwrap();
        assert!(l.evidence.caller_configs.is_empty());
        let gaps = l.evidence.gaps();
        let g = gaps
            .iter()
            .find(|g| g.source == "caller_config:pubsub")
            .unwrap();
        assert_eq!(g.state, crate::gathered::GapState::Denied);
        assert_eq!(
            g.needs_permission.as_deref(),
            Some("pubsub.subscriptions.get")
        );
        let g = gaps
            .iter()
            .find(|g| g.source == "caller_config:tasks-queue")
            .unwrap();
        assert_eq!(g.state, crate::gathered::GapState::Failed);
        assert!(g.detail.contains("404") && g.detail.contains("was not found"));
        assert_eq!(g.needs_permission.as_deref(), Some("cloudtasks.queues.get"));
    }

    #[test]
    fn ancestors_nearest_first() {
        let l = from_files([
            ("folder-1-iam-policy.json", "f", "{}"),
            ("organization-2-iam-policy.json", "o", "{}"),
        ])
        .unwrap();
        assert_eq!(l.evidence.ancestor_policies[0].0, Level::Folder("1".into()));
        assert_eq!(
            l.evidence.ancestor_policies[1].0,
            Level::Organization("2".into())
        );
    }
}
