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

/// Largest file read from a bundle unless [`max_file_bytes`] says otherwise: evidence files are
/// small, a huge one is a mistake (or hostile).
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Most bytes read from one bundle in all; files past the budget become `failed` gaps.
pub const MAX_BUNDLE_BYTES: u64 = 256 * 1024 * 1024;

/// Most directory entries looked at; a bundle is a handful of files, 10,000 is a mistake.
pub const MAX_ENTRIES: usize = 10_000;

/// Unknown files named one by one on stderr; the rest are counted.
const MAX_UNKNOWN_WARNINGS: usize = 20;

/// The size limit of one bundle file, by its name: the one place per-file limits live (a
/// streaming reader may raise its own file's limit here).
pub fn max_file_bytes(name: &str) -> u64 {
    match name {
        "logs.json" => MAX_LOGS_BYTES,
        _ => MAX_FILE_BYTES,
    }
}

/// Largest `logs.json`: a busy service's day of refusals is hundreds of megabytes. It is
/// streamed from disk (never held whole, not counted in [`MAX_BUNDLE_BYTES`]); above this,
/// that one source is a `failed` gap.
pub const MAX_LOGS_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// A loaded bundle and the warnings (unknown files, unreadable files) to print on stderr.
#[derive(Debug)]
pub struct Loaded {
    pub evidence: Evidence,
    pub warnings: Vec<String>,
}

/// Loads every known file of `dir`. A file that cannot be read (unreadable, not UTF-8,
/// oversized, malformed, a symbolic link out of the bundle) becomes a `failed` gap naming the
/// file and position, with a warning; the error is only for a directory that cannot be listed
/// or a bundle of which no evidence file could be read at all.
pub fn load(dir: &Path, inputs: Inputs) -> Result<Loaded, ParseError> {
    load_at_most(dir, inputs, MAX_ENTRIES)
}

fn load_at_most(dir: &Path, inputs: Inputs, max_entries: usize) -> Result<Loaded, ParseError> {
    let shown = dir.display().to_string();
    let root = std::fs::canonicalize(dir)
        .map_err(|e| ParseError::new(&shown, format!("cannot read bundle directory: {e}")))?;
    let rd = std::fs::read_dir(&root)
        .map_err(|e| ParseError::new(&shown, format!("cannot read bundle directory: {e}")))?;
    let mut warnings = Vec::new();
    let mut entries: Vec<(String, std::fs::FileType)> = Vec::new();
    for ent in rd {
        let ent =
            ent.map_err(|e| ParseError::new(&shown, format!("cannot list bundle directory: {e}")))?;
        if entries.len() == max_entries {
            warnings.push(format!(
                "{shown}: more than {max_entries} entries; only {max_entries} of them are looked at"
            ));
            break;
        }
        let Ok(ft) = ent.file_type() else { continue };
        entries.push((ent.file_name().to_string_lossy().into_owned(), ft));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut budget = MAX_BUNDLE_BYTES;
    let mut streamed_logs = None;
    let mut unknown = 0usize;
    let mut files = Vec::new();
    for (name, ft) in entries {
        let path = dir.join(&name);
        let shown = path.display().to_string();
        if !is_known(&name) {
            // Unknown files are never opened: their size or content cannot matter.
            if ft.is_dir() {
                if !name.starts_with('.') && name != "expected" {
                    warnings.push(format!("ignoring directory {shown}"));
                }
            } else if name != "case.toml" {
                unknown += 1;
                if unknown <= MAX_UNKNOWN_WARNINGS {
                    warnings.push(format!("ignoring unknown file {shown}"));
                }
            }
            continue;
        }
        if name == "logs.json" && ft.is_file() {
            match stream_logs(&root.join(&name), &shown) {
                Ok(d) => streamed_logs = Some(d),
                // A failure goes through the same path as any other file's.
                Err(e) => files.push((name, shown, Err(e))),
            }
            continue;
        }
        let text = read_entry(&root, &name, ft, &shown, &mut budget, &mut warnings);
        files.push((name, shown, text));
    }
    if unknown > MAX_UNKNOWN_WARNINGS {
        warnings.push(format!(
            "ignoring {} more unknown files in {}",
            unknown - MAX_UNKNOWN_WARNINGS,
            dir.display()
        ));
    }
    let mut loaded = from_entries(files, warnings)?;
    loaded.evidence.inputs = inputs;
    if let Some(d) = streamed_logs {
        loaded.evidence.logs = gathered(d, "logging.logEntries.list").map(LogsFile::into_entries);
    }
    Ok(loaded)
}

/// A regular `logs.json`, streamed from disk within its own limit.
fn stream_logs(path: &Path, shown: &str) -> Result<Doc<LogsFile>, ParseError> {
    let len = std::fs::metadata(path)
        .map_err(|e| ParseError::new(shown, format!("cannot read: {e}")))?
        .len();
    if len > MAX_LOGS_BYTES {
        return Err(ParseError::new(
            shown,
            format!("file is {len} bytes; evidence files are at most {MAX_LOGS_BYTES} (logs.json)"),
        ));
    }
    crate::logs::read_logs_file(path, shown)
}

/// Reads one bundle entry within the limits: a regular file, or a symbolic link to a regular
/// file inside the bundle directory (followed, with a warning). Anything else is an error that
/// becomes the file's gap.
fn read_entry(
    root: &Path,
    name: &str,
    ft: std::fs::FileType,
    shown: &str,
    budget: &mut u64,
    warnings: &mut Vec<String>,
) -> Result<String, ParseError> {
    use std::io::Read;
    let mut target = root.join(name);
    if ft.is_dir() {
        return Err(ParseError::new(
            shown,
            "is a directory, not a file; not read",
        ));
    }
    if !ft.is_file() && !ft.is_symlink() {
        // A FIFO, socket or device: opening it could block or never end.
        return Err(ParseError::new(shown, "not a regular file; not read"));
    }
    if ft.is_symlink() {
        let resolved = std::fs::canonicalize(&target).map_err(|e| {
            ParseError::new(shown, format!("symbolic link that cannot be followed: {e}"))
        })?;
        if !resolved.starts_with(root) {
            return Err(ParseError::new(
                shown,
                format!(
                    "symbolic link to {}, outside the bundle directory; not followed (copy the file into the bundle)",
                    resolved.display()
                ),
            ));
        }
        if !std::fs::metadata(&resolved).is_ok_and(|m| m.is_file()) {
            return Err(ParseError::new(
                shown,
                format!(
                    "symbolic link to {}, which is not a regular file; not read",
                    resolved.display()
                ),
            ));
        }
        warnings.push(format!(
            "{shown}: symbolic link to {}, inside the bundle; read it",
            resolved.display()
        ));
        target = resolved;
    }
    let file = std::fs::File::open(&target)
        .map_err(|e| ParseError::new(shown, format!("cannot read: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| ParseError::new(shown, format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(ParseError::new(shown, "not a regular file; not read"));
    }
    let limit = max_file_bytes(name);
    if meta.len() > limit {
        return Err(ParseError::new(
            shown,
            format!(
                "file is {} bytes; evidence files are at most {limit}",
                meta.len()
            ),
        ));
    }
    if meta.len() > *budget {
        return Err(ParseError::new(
            shown,
            format!("not read: the bundle's files exceed {MAX_BUNDLE_BYTES} bytes in all"),
        ));
    }
    // Read at most one byte past the limit, whatever the metadata said (a growing file).
    let mut bytes = Vec::new();
    file.take(limit.min(*budget) + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ParseError::new(shown, format!("cannot read: {e}")))?;
    if bytes.len() as u64 > limit.min(*budget) {
        return Err(ParseError::new(
            shown,
            format!("file grew past {} bytes while read", limit.min(*budget)),
        ));
    }
    *budget -= bytes.len() as u64;
    String::from_utf8(bytes).map_err(|e| not_utf8(shown, e))
}

/// The error for a file that is not UTF-8, at the line and column of the first bad byte.
fn not_utf8(shown: &str, e: std::string::FromUtf8Error) -> ParseError {
    let at = e.utf8_error().valid_up_to();
    let valid = &e.as_bytes()[..at];
    let line = valid.iter().filter(|b| **b == b'\n').count() as u64 + 1;
    let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&valid[line_start..])
        .chars()
        .count() as u64
        + 1;
    ParseError {
        file: shown.to_string(),
        line: Some(line),
        column: Some(column),
        message: format!("not UTF-8 text (invalid byte at offset {at})"),
    }
}

/// True for the file names the contract's table gives (the ones that are read).
pub fn is_known(name: &str) -> bool {
    matches!(
        name,
        "service.json"
            | "service.yaml"
            | "service.yml"
            | "service-iam-policy.json"
            | "project-iam-policy.json"
            | "logs.json"
            | "deny-policies.json"
            | "troubleshoot.json"
            | "context.json"
            | "token.txt"
            | "org-policies.json"
    ) || crate::regions::service_file_region(name).is_some()
        || crate::regions::policy_file_region(name).is_some()
        || is_policy_file(name, "folder-")
        || is_policy_file(name, "organization-")
        || (name.starts_with("org-policy-") && name.ends_with(".json"))
        || (name.starts_with("caller-") && name.ends_with(".json"))
        || (name.starts_with("role-") && name.ends_with(".json"))
}

/// Builds evidence from `(file name, display path, text)` triples; the pure part of [`load`].
/// A malformed file becomes a `failed` gap and a warning; the error is only for input of which
/// no evidence file could be read at all (it names the first file that failed).
pub fn from_files<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
) -> Result<Loaded, ParseError> {
    from_entries(
        files
            .into_iter()
            .map(|(n, p, t)| (n.to_string(), p.to_string(), Ok(t.to_string()))),
        Vec::new(),
    )
}

type Entry = (String, String, Result<String, ParseError>);

fn from_entries(
    files: impl IntoIterator<Item = Entry>,
    mut warnings: Vec<String>,
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
    let mut org = OrgFiles::default();
    let mut read = 0usize;
    let mut failures: Vec<ParseError> = Vec::new();
    for (name, path, text) in files {
        if name == "case.toml" {
            continue; // fixture metadata of this repository's tests, not evidence
        }
        if !is_known(&name) {
            warnings.push(format!("ignoring unknown file {path}"));
            continue;
        }
        let outcome =
            text.and_then(|text| read_file(&mut ev, &mut org, &mut warnings, &name, &path, &text));
        match outcome {
            Ok(()) => read += 1,
            Err(e) => {
                warnings.push(format!("{e}; diagnosing without it"));
                fail(&mut ev, &mut org, &name, &e);
                failures.push(e);
            }
        }
    }
    if read == 0 && !failures.is_empty() {
        let mut first = failures.swap_remove(0);
        if !failures.is_empty() {
            first.message = format!(
                "{} (and {} more bundle files could not be read; no evidence left)",
                first.message,
                failures.len()
            );
        }
        return Err(first);
    }
    // Folders before organizations (nearest first); the file order is alphabetical already.
    ev.ancestor_policies
        .sort_by_key(|(l, _)| matches!(l, Level::Organization(_)));
    if org.seen {
        ev.org_policies = match (
            org.api_error,
            org.failed.is_empty(),
            org.policies.is_empty(),
        ) {
            (_, false, true) => Gathered::Failed {
                error: org.failed.join("; "),
            },
            (Some(e), true, true) => denied_or_failed(e, "orgpolicy.policy.get"),
            _ => {
                if !org.failed.is_empty() {
                    ev.file_gaps.push(crate::evidence::Gap {
                        source: "org_policies".into(),
                        state: crate::gathered::GapState::Failed,
                        detail: format!(
                            "{}; the other org-policy files were read, the constraints of this one are unknown",
                            org.failed.join("; ")
                        ),
                        needs_permission: None,
                    });
                }
                Gathered::Present(org.policies)
            }
        };
    }
    Ok(Loaded {
        evidence: ev,
        warnings,
    })
}

#[derive(Default)]
struct OrgFiles {
    seen: bool,
    policies: Vec<crate::orgpolicy::OrgPolicy>,
    api_error: Option<ApiError>,
    /// Files that could not be read, as their errors.
    failed: Vec<String>,
}

/// Reads one known file into its evidence slot.
fn read_file(
    ev: &mut Evidence,
    org: &mut OrgFiles,
    warnings: &mut Vec<String>,
    name: &str,
    path: &str,
    text: &str,
) -> Result<(), ParseError> {
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
            let g = gathered(
                doc::parse::<Troubleshoot>(path, text)?,
                "run.services.getIamPolicy",
            );
            let refused = match (&g, doc::parse::<serde_json::Value>(path, text)?) {
                (Gathered::Present(_), Doc::Value(raw)) => crate::troubleshoot::unusable(&raw),
                _ => None,
            };
            ev.troubleshoot = Some(match refused {
                Some(why) => {
                    warnings.push(why.clone());
                    Gathered::Missing { why }
                }
                None => g,
            });
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
        _ if crate::regions::service_file_region(name).is_some() => {
            let region = crate::regions::service_file_region(name).unwrap_or_default();
            let g = gathered(service::parse(path, text)?, "run.services.get");
            regional(ev, region).service = g;
        }
        _ if crate::regions::policy_file_region(name).is_some() => {
            let region = crate::regions::policy_file_region(name).unwrap_or_default();
            let g = gathered(
                doc::parse::<Policy>(path, text)?,
                "run.services.getIamPolicy",
            );
            regional(ev, region).policy = g;
        }
        _ if name.starts_with("org-policy-custom-") => {
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
        _ if is_policy_file(name, "folder-") => {
            let g = gathered(
                doc::parse::<Policy>(path, text)?,
                "resourcemanager.folders.getIamPolicy",
            );
            ev.ancestor_policies.push((ancestor_level(name), g));
        }
        _ if is_policy_file(name, "organization-") => {
            let g = gathered(
                doc::parse::<Policy>(path, text)?,
                "resourcemanager.organizations.getIamPolicy",
            );
            ev.ancestor_policies.push((ancestor_level(name), g));
        }
        _ if name == "org-policies.json" || name.starts_with("org-policy-") => {
            org.seen = true;
            match doc::parse::<OrgPoliciesFile>(path, text)? {
                Doc::Value(v) => org.policies.extend(v.into_vec()),
                Doc::Error(e) => org.api_error = Some(e),
            }
        }
        _ if name.starts_with("caller-") => match doc::parse::<Value>(path, text)? {
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
                let stem = caller_stem(name);
                let g: Gathered<CallerConfig> = denied_or_failed(e, caller_get_permission(stem));
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
        },
        _ if name.starts_with("role-") => match doc::parse::<Role>(path, text)? {
            Doc::Value(r) if !r.name.is_empty() => ev.custom_roles.push(r),
            Doc::Value(_) => return Err(ParseError::new(path, "role has no `name`")),
            Doc::Error(e) => warnings.push(format!(
                "{path}: holds an API error ({}); role definition unknown",
                e.message
            )),
        },
        _ => warnings.push(format!("ignoring unknown file {path}")),
    }
    Ok(())
}

/// Records a file that could not be read as the `failed` gap of the source it holds.
fn fail(ev: &mut Evidence, org: &mut OrgFiles, name: &str, e: &ParseError) {
    fn failed<T>(e: &ParseError) -> Gathered<T> {
        Gathered::Failed {
            error: e.to_string(),
        }
    }
    let gap = |source: String| crate::evidence::Gap {
        source,
        state: crate::gathered::GapState::Failed,
        detail: format!("reading it failed: {e}"),
        needs_permission: None,
    };
    match name {
        "service.json" | "service.yaml" | "service.yml" => ev.service = failed(e),
        "service-iam-policy.json" => ev.service_policy = failed(e),
        "project-iam-policy.json" => ev.project_policy = failed(e),
        "logs.json" => ev.logs = failed(e),
        "deny-policies.json" => ev.deny_policies = failed(e),
        // Optional: a failed answer is an unavailable cross-check, never a gap.
        "troubleshoot.json" => ev.troubleshoot = Some(failed(e)),
        "context.json" => ev.file_gaps.push(gap("context".into())),
        "token.txt" => ev.file_gaps.push(gap("token".into())),
        _ if crate::regions::service_file_region(name).is_some() => {
            let region = crate::regions::service_file_region(name).unwrap_or_default();
            regional(ev, region).service = failed(e);
        }
        _ if crate::regions::policy_file_region(name).is_some() => {
            let region = crate::regions::policy_file_region(name).unwrap_or_default();
            regional(ev, region).policy = failed(e);
        }
        // An unread custom constraint: its definition is unknown, like an API error in it.
        _ if name.starts_with("org-policy-custom-") => ev.file_gaps.push(gap(format!(
            "custom_constraint:{}",
            name.trim_start_matches("org-policy-custom-")
                .trim_end_matches(".json")
        ))),
        _ if is_policy_file(name, "folder-") || is_policy_file(name, "organization-") => {
            ev.ancestor_policies.push((ancestor_level(name), failed(e)))
        }
        _ if name == "org-policies.json" || name.starts_with("org-policy-") => {
            org.seen = true;
            org.failed.push(e.to_string());
        }
        _ if name.starts_with("caller-") => ev
            .caller_config_gaps
            .push(gap(format!("caller_config:{}", caller_stem(name)))),
        // An unread custom role is an unknown role to the rules, which never read it as "no".
        _ if name.starts_with("role-") => ev.file_gaps.push(gap(format!(
            "custom_role:{}",
            name.trim_start_matches("role-").trim_end_matches(".json")
        ))),
        _ => {}
    }
}

fn caller_stem(name: &str) -> &str {
    name.trim_start_matches("caller-").trim_end_matches(".json")
}

/// `folder-ID-iam-policy.json` / `organization-ID-iam-policy.json` → the level.
fn ancestor_level(name: &str) -> Level {
    let id = |prefix: &str| name[prefix.len()..name.len() - "-iam-policy.json".len()].to_string();
    if name.starts_with("folder-") {
        Level::Folder(id("folder-"))
    } else {
        Level::Organization(id("organization-"))
    }
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

/// An API error read as a gap: a refusal names the permission (the error's, else `permission`).
pub fn denied_or_failed<T>(e: ApiError, permission: &str) -> Gathered<T> {
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
    fn a_v2alpha1_troubleshooter_answer_is_refused_not_misread() {
        let v2alpha1 = r#"{"access": "GRANTED", "explainedPolicies": [{"access": "GRANTED", "fullResourceName": "//cloudresourcemanager.googleapis.com/projects/p"}]}"#;
        let l = from_files([("troubleshoot.json", "b/troubleshoot.json", v2alpha1)]).unwrap();
        match &l.evidence.troubleshoot {
            Some(Gathered::Missing { why }) => {
                assert!(
                    why.contains("v2alpha1") && why.contains("policy-intelligence"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(
            l.warnings.iter().any(|w| w.contains("v2alpha1")),
            "{:?}",
            l.warnings
        );
        // A v3 answer is read.
        let v3 = r#"{"overallAccessState": "CANNOT_ACCESS"}"#;
        let l = from_files([("troubleshoot.json", "b/troubleshoot.json", v3)]).unwrap();
        assert!(matches!(
            l.evidence.troubleshoot,
            Some(Gathered::Present(_))
        ));
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

    // ---- hostile and broken bundles (`load`) ----

    const POLICY: &str = r#"{"bindings": [{"role": "roles/run.invoker", "members": ["user:a@example.com"]}], "etag": "BwX="}"#;

    fn bundle(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (n, b) in files {
            std::fs::write(d.path().join(n), b).unwrap();
        }
        d
    }

    fn gap<'a>(l: &'a Loaded, source: &str) -> &'a crate::evidence::Gap {
        let gaps = l.evidence.gaps();
        let g = gaps.iter().find(|g| g.source == source).cloned();
        // Leak is fine in a test: keeps the borrow simple.
        Box::leak(Box::new(
            g.unwrap_or_else(|| panic!("no gap {source} in {gaps:?}")),
        ))
    }

    #[test]
    fn malformed_file_is_a_failed_gap_and_the_rest_is_read() {
        let d = bundle(&[
            ("service-iam-policy.json", POLICY.as_bytes()),
            ("project-iam-policy.json", b"{\n  \"bindings\": [\n    }"),
        ]);
        let l = load(d.path(), Inputs::default()).unwrap();
        assert!(l.evidence.service_policy.is_present());
        let g = gap(&l, "project_iam_policy");
        assert_eq!(g.state, crate::gathered::GapState::Failed);
        assert!(g.detail.contains("project-iam-policy.json:3:"), "{g:?}");
        assert!(
            l.warnings
                .iter()
                .any(|w| w.contains("project-iam-policy.json:3:")
                    && w.ends_with("diagnosing without it")),
            "{:?}",
            l.warnings
        );
    }

    #[test]
    fn not_utf8_names_line_and_column() {
        let d = bundle(&[
            ("service-iam-policy.json", POLICY.as_bytes()),
            ("logs.json", b"[\n  {\"textPayload\": \"ab\xff\"}]"),
        ]);
        let l = load(d.path(), Inputs::default()).unwrap();
        let g = gap(&l, "logs");
        assert_eq!(g.state, crate::gathered::GapState::Failed);
        assert!(g.detail.contains("logs.json:2:22: not UTF-8"), "{g:?}");
    }

    #[test]
    fn oversized_file_is_not_read() {
        let d = bundle(&[("service-iam-policy.json", POLICY.as_bytes())]);
        // Sparse: no 64 MiB written.
        let f = std::fs::File::create(d.path().join("logs.json")).unwrap();
        f.set_len(max_file_bytes("logs.json") + 1).unwrap();
        let l = load(d.path(), Inputs::default()).unwrap();
        let g = gap(&l, "logs");
        assert!(
            g.detail.contains("bytes; evidence files are at most"),
            "{g:?}"
        );
        assert!(l.evidence.service_policy.is_present());
    }

    #[cfg(unix)]
    #[test]
    fn fifo_and_directory_and_dangling_link_are_gaps_not_hangs() {
        let d = bundle(&[("service-iam-policy.json", POLICY.as_bytes())]);
        let fifo = d.path().join("logs.json");
        let ok = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mkfifo");
        std::fs::create_dir(d.path().join("project-iam-policy.json")).unwrap();
        std::os::unix::fs::symlink("nowhere.json", d.path().join("service.json")).unwrap();
        let l = load(d.path(), Inputs::default()).unwrap();
        assert!(gap(&l, "logs").detail.contains("not a regular file"));
        assert!(
            gap(&l, "project_iam_policy")
                .detail
                .contains("is a directory")
        );
        assert!(gap(&l, "service").detail.contains("cannot be followed"));
    }

    #[cfg(unix)]
    #[test]
    fn symlink_outside_the_bundle_is_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret.json");
        std::fs::write(
            &secret,
            r#"{"bindings": [{"role": "roles/owner", "members": ["user:outside@example.com"]}]}"#,
        )
        .unwrap();
        let d = bundle(&[("service-iam-policy.json", POLICY.as_bytes())]);
        std::os::unix::fs::symlink(&secret, d.path().join("project-iam-policy.json")).unwrap();
        let l = load(d.path(), Inputs::default()).unwrap();
        let g = gap(&l, "project_iam_policy");
        assert!(g.detail.contains("outside the bundle directory"), "{g:?}");
        assert!(!format!("{:?}", l.evidence).contains("outside@example.com"));
        assert!(
            l.warnings
                .iter()
                .any(|w| w.contains("project-iam-policy.json") && w.contains("not followed"))
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlink_inside_the_bundle_is_followed_with_a_warning() {
        let d = bundle(&[("policy-copy.txt", POLICY.as_bytes())]);
        std::os::unix::fs::symlink("policy-copy.txt", d.path().join("service-iam-policy.json"))
            .unwrap();
        let l = load(d.path(), Inputs::default()).unwrap();
        assert!(l.evidence.service_policy.is_present());
        assert!(
            l.warnings
                .iter()
                .any(|w| w.contains("symbolic link") && w.contains("inside the bundle")),
            "{:?}",
            l.warnings
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // Nested arrays where entries belong, and nesting inside one entry: both stop early.
        let json = "[".repeat(200_000);
        let inner = format!("[{{\"protoPayload\": {}", "[".repeat(200_000));
        let yaml = "- ".repeat(50_000) + "x\n";
        let flow = "a: ".to_string() + &"[".repeat(100_000);
        let l = from_files([
            ("service-iam-policy.json", "s", POLICY),
            ("logs.json", "logs.json", json.as_str()),
            ("service.yaml", "service.yaml", yaml.as_str()),
            (
                "context.json",
                "context.json",
                "{\"a\":".repeat(100_000).as_str(),
            ),
            ("caller-x.json", "caller-x.json", flow.as_str()),
        ])
        .unwrap();
        let logs = gap(&l, "logs");
        assert_eq!(logs.state, crate::gathered::GapState::Failed);
        assert!(logs.detail.contains("logs.json:1:"), "{logs:?}");
        assert_eq!(gap(&l, "service").state, crate::gathered::GapState::Failed);
        assert_eq!(gap(&l, "context").state, crate::gathered::GapState::Failed);
        assert_eq!(
            gap(&l, "caller_config:x").state,
            crate::gathered::GapState::Failed
        );
        let l = from_files([
            ("service-iam-policy.json", "s", POLICY),
            ("logs.json", "logs.json", inner.as_str()),
        ])
        .unwrap();
        assert!(
            gap(&l, "logs").detail.contains("recursion limit"),
            "{:?}",
            gap(&l, "logs")
        );
    }

    #[test]
    fn yaml_alias_bombs_are_refused() {
        // The "billion laughs": nine levels of ten aliases each.
        let mut y = String::from("a0: &a0 [\"lol\"]\n");
        for i in 1..10 {
            let refs: Vec<String> = (0..10).map(|_| format!("*a{}", i - 1)).collect();
            y.push_str(&format!("a{i}: &a{i} [{}]\n", refs.join(", ")));
        }
        y.push_str("apiVersion: serving.knative.dev/v1\nkind: Service\n");
        let l = from_files([
            ("service-iam-policy.json", "s", POLICY),
            ("service.yaml", "service.yaml", y.as_str()),
        ])
        .unwrap();
        let g = gap(&l, "service");
        assert_eq!(g.state, crate::gathered::GapState::Failed, "{g:?}");
        assert!(
            g.detail.starts_with("reading it failed: service.yaml"),
            "{g:?}"
        );
    }

    #[test]
    fn huge_strings_are_read_within_the_limit() {
        let big = "x".repeat(4 * 1024 * 1024);
        let logs = format!(
            r#"[{{"textPayload": "{big}", "logName": "projects/p/logs/run.googleapis.com%2Frequests"}}]"#
        );
        let l = from_files([("logs.json", "logs.json", logs.as_str())]).unwrap();
        assert_eq!(l.evidence.logs.present().map(Vec::len), Some(1));
    }

    #[test]
    fn many_files_are_bounded_and_warnings_collapsed() {
        let d = bundle(&[("service-iam-policy.json", POLICY.as_bytes())]);
        // The same code path as MAX_ENTRIES, at a size a test can afford.
        let max = 60;
        for i in 0..(max + 5) {
            std::fs::File::create(d.path().join(format!("note-{i:05}.txt"))).unwrap();
        }
        let l = load_at_most(d.path(), Inputs::default(), max).unwrap();
        let unknown = l
            .warnings
            .iter()
            .filter(|w| w.starts_with("ignoring unknown"))
            .count();
        assert_eq!(unknown, MAX_UNKNOWN_WARNINGS, "{:?}", &l.warnings[..3]);
        assert!(l.warnings.iter().any(|w| w.contains("more unknown files")));
        assert!(
            l.warnings
                .iter()
                .any(|w| w.contains(&format!("more than {max} entries")))
        );
    }

    #[test]
    fn no_readable_evidence_at_all_is_the_error() {
        let d = bundle(&[
            ("service.json", b"{"),
            ("logs.json", b"\xff"),
            ("notes.txt", b"fine"),
        ]);
        let e = load(d.path(), Inputs::default()).unwrap_err();
        assert!(e.file.ends_with("logs.json"), "{e}");
        assert!(e.to_string().contains("1 more bundle files"), "{e}");
    }

    #[test]
    fn one_bad_org_policy_file_among_good_ones_is_a_gap() {
        let good = r#"{"name": "projects/p/policies/run.managed.requireInvokerIam", "spec": {"rules": [{"enforce": true}]}}"#;
        let l = from_files([
            ("org-policy-a.json", "org-policy-a.json", good),
            ("org-policy-b.json", "org-policy-b.json", "{"),
        ])
        .unwrap();
        assert_eq!(l.evidence.org_policies.present().map(Vec::len), Some(1));
        let g = gap(&l, "org_policies");
        assert!(g.detail.contains("org-policy-b.json"), "{g:?}");
    }

    #[test]
    fn a_bad_role_token_or_context_is_its_own_gap() {
        let l = from_files([
            ("service-iam-policy.json", "s", POLICY),
            ("role-r.json", "role-r.json", "{\"name\": 3}"),
            ("context.json", "context.json", "[1]"),
        ])
        .unwrap();
        assert!(gap(&l, "custom_role:r").detail.contains("role-r.json:1:"));
        assert!(gap(&l, "context").detail.contains("context.json"));
    }

    #[test]
    fn org_policies_json_is_read() {
        // Regression: the loading-loop rewrite once matched only `org-policy-*`, and
        // `org-policies.json` fell through as an unknown file.
        let good = r#"[{"name": "projects/p/policies/run.managed.requireInvokerIam", "spec": {"rules": [{"enforce": true}]}}]"#;
        let l = from_files([("org-policies.json", "org-policies.json", good)]).unwrap();
        assert_eq!(l.evidence.org_policies.present().map(Vec::len), Some(1));
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        let l = from_files([
            ("service-iam-policy.json", "s", POLICY),
            ("org-policies.json", "org-policies.json", "{"),
        ])
        .unwrap();
        assert_eq!(
            gap(&l, "org_policies").state,
            crate::gathered::GapState::Failed
        );
    }
}
