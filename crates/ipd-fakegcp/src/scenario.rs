//! What the fake serves: a [`Scenario`], usually read from an evidence bundle directory.

use std::collections::BTreeMap;
use std::path::Path;

use ipd_model::doc::{self, ApiError, Doc, ParseError};
use ipd_model::service::{self, Service, ServiceFormat};
use serde_json::Value;

use crate::convert;
use crate::envelope::code_for_status;
use crate::options::{Fault, Source};
use crate::routes::CallerCollection;

/// Who the scenario is about. `Default` is the fixtures' identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub project_id: String,
    pub project_number: String,
    pub region: String,
    pub service: String,
}

impl Default for Identity {
    fn default() -> Self {
        Identity {
            project_id: "shop-prod".into(),
            project_number: "123456789012".into(),
            region: "europe-west1".into(),
            service: "orders-api".into(),
        }
    }
}

/// Values that win over whatever the bundle says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityOverrides {
    pub project_id: Option<String>,
    pub project_number: Option<String>,
    pub region: Option<String>,
    pub service: Option<String>,
}

/// How to read a bundle: `defaults` fill what the bundle does not say, `overrides` replace
/// what it says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BundleOptions {
    pub defaults: Identity,
    pub overrides: IdentityOverrides,
}

/// An error answer stored in place of a resource (the bundle file held Google's envelope).
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorReply {
    pub status: u16,
    /// The whole envelope, `{"error": {...}}`, served verbatim.
    pub body: Value,
}

/// One served document: the resource, or the error that stands in its place.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    Value(Value),
    Error(ErrorReply),
}

impl Stored {
    /// A value, or the error it holds when it is Google's error envelope.
    pub fn from_value(v: Value) -> Stored {
        match error_reply(&v) {
            Some(e) => Stored::Error(e),
            None => Stored::Value(v),
        }
    }
}

fn error_reply(v: &Value) -> Option<ErrorReply> {
    let api = ApiError::from_envelope(v)?;
    let status = api
        .code
        .filter(|c| (400..=599).contains(c))
        .and_then(|c| u16::try_from(c).ok())
        .or_else(|| api.status.as_deref().map(code_for_status))
        .unwrap_or(500);
    Some(ErrorReply {
        status,
        body: v.clone(),
    })
}

/// A node above the project.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Parent {
    Folder(String),
    Organization(String),
}

impl Parent {
    /// `folders/ID` or `organizations/ID`.
    pub fn name(&self) -> String {
        match self {
            Parent::Folder(id) => format!("folders/{id}"),
            Parent::Organization(id) => format!("organizations/{id}"),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Folder {
    pub display_name: Option<String>,
    pub parent: Option<Parent>,
    /// `None`: no policy file; the API answers an empty policy.
    pub iam_policy: Option<Stored>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Organization {
    pub display_name: Option<String>,
    pub directory_customer_id: Option<String>,
    pub iam_policy: Option<Stored>,
}

/// Effective org policies, by constraint (without `constraints/`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrgPolicies {
    /// Org Policy v2 `Policy` values (legacy v1 shapes already translated).
    pub policies: BTreeMap<String, Value>,
    /// Errors for one constraint (an `org-policy-CONSTRAINT.json` holding an envelope).
    pub errors: BTreeMap<String, ErrorReply>,
    /// An error for every constraint (every org-policy file held an envelope).
    pub blanket_error: Option<ErrorReply>,
}

/// Everything the fake serves. Fields are public so tests can build or adjust scenarios.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scenario {
    pub identity: Identity,
    pub project_display_name: Option<String>,
    pub project_parent: Option<Parent>,
    pub folders: BTreeMap<String, Folder>,
    pub organizations: BTreeMap<String, Organization>,
    /// The identity's service as an Admin API v2 resource; `None` answers 404.
    pub service: Option<Stored>,
    /// The bundle's service as the v1 (Knative) document it was (gcloud's output), served
    /// verbatim by Run v1; `None` for a v2 file (Run v1 then answers its translation).
    pub service_v1: Option<Value>,
    /// More v2 services (their `name` says where they live), for list tests and the other
    /// regions of a multi-region service (`service-REGION.json`).
    pub other_services: Vec<Value>,
    /// The IAM policies of a multi-region service's other regions
    /// (`service-iam-policy-REGION.json`), by region.
    pub regional_policies: BTreeMap<String, Stored>,
    /// `None` answers the empty policy `{"etag": "ACAB"}`.
    pub service_policy: Option<Stored>,
    /// IAM policies of the other services, by their v2 name (`projects/P/locations/L/services/S`).
    pub service_policies: BTreeMap<String, Stored>,
    /// `None` answers the empty policy `{"etag": "ACAB"}`.
    pub project_policy: Option<Stored>,
    /// `Stored::Value` holds a JSON array of LogEntry; `None` answers no entries.
    pub logs: Option<Stored>,
    /// `None` (no org-policy file at all): getEffectivePolicy answers 403 (a gap).
    pub org_policies: Option<OrgPolicies>,
    /// IAM roles (`role-*.json`), each with its `name`.
    pub roles: Vec<Value>,
    /// Custom org-policy constraint definitions (`org-policy-custom-*.json`), served by
    /// `customConstraints.list` of the organization their `name` says.
    pub custom_constraints: Vec<Value>,
    /// `Stored::Value` holds a JSON array of IAM v2 deny policies; `None` answers none.
    pub deny_policies: Option<Stored>,
    /// Configurations of Google-managed callers (`caller-*.json`: a Pub/Sub subscription,
    /// Scheduler job, Cloud Tasks queue or task, Eventarc trigger, workflow), each served at
    /// its `name`.
    pub callers: Vec<Value>,
    /// `caller-*.json` files holding Google's error envelope (which names no resource): the
    /// answer for a caller configuration the scenario does not hold, in the collection the
    /// file name suggests (`caller-subscription.json`, `caller-tasks-queue.json`, ...; `None`:
    /// any collection).
    pub caller_errors: Vec<(Option<CallerCollection>, ErrorReply)>,
    /// Policy Troubleshooter's answer (`troubleshoot.json`, a `TroubleshootIamPolicyResponse`
    /// or an envelope). `None`: the API is not enabled (403 `SERVICE_DISABLED`).
    pub troubleshoot: Option<Stored>,
    /// Sources marked as failing by the scenario itself (options can override).
    pub faults: BTreeMap<Source, Fault>,
    /// What loading noticed (unknown files, unusable files).
    pub warnings: Vec<String>,
}

/// What a bundle says about the identity, from one kind of file.
#[derive(Debug, Default)]
struct Hints {
    project_id: Option<String>,
    project_number: Option<String>,
    region: Option<String>,
    service: Option<String>,
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
}

impl Hints {
    fn project(&mut self, p: &str) {
        let p = p.trim();
        if p.is_empty() || p == "-" {
            return;
        }
        if is_number(p) {
            self.project_number.get_or_insert_with(|| p.to_string());
        } else {
            self.project_id.get_or_insert_with(|| p.to_string());
        }
    }

    fn region(&mut self, r: &str) {
        if !r.trim().is_empty() {
            self.region.get_or_insert_with(|| r.trim().to_string());
        }
    }

    fn service(&mut self, s: &str) {
        if !s.trim().is_empty() {
            self.service.get_or_insert_with(|| s.trim().to_string());
        }
    }

    /// `https://SERVICE-NUMBER.REGION.run.app[/...]`.
    fn url(&mut self, url: &str) {
        let Some(host) = url
            .trim()
            .strip_prefix("https://")
            .and_then(|r| r.split(['/', '?']).next())
        else {
            return;
        };
        let Some(rest) = host.strip_suffix(".run.app") else {
            return;
        };
        let Some((first, region)) = rest.split_once('.') else {
            return;
        };
        let Some((svc, num)) = first.rsplit_once('-') else {
            return;
        };
        if is_number(num) && !region.contains('.') {
            self.project(num);
            self.region(region);
            self.service(svc);
        }
    }

    fn merge_into(&self, out: &mut Hints) {
        for (from, to) in [
            (&self.project_id, &mut out.project_id),
            (&self.project_number, &mut out.project_number),
            (&self.region, &mut out.region),
            (&self.service, &mut out.service),
        ] {
            if to.is_none() {
                to.clone_from(from);
            }
        }
    }
}

/// `projects/X/...` → X.
fn project_of(name: &str) -> Option<&str> {
    name.strip_prefix("projects/")
        .and_then(|r| r.split('/').next())
}

/// `policies/cloudresourcemanager.googleapis.com%2Fprojects%2F123/denypolicies/x` →
/// (decoded attachment, kind, id).
pub(crate) fn split_policy_name(name: &str) -> Option<(String, String, String)> {
    let rest = name.strip_prefix("policies/")?;
    let (att, tail) = rest.split_once('/')?;
    let (kind, id) = tail.split_once('/')?;
    Some((
        convert::percent_decode(att),
        kind.to_string(),
        id.to_string(),
    ))
}

/// `cloudresourcemanager.googleapis.com/{projects|folders|organizations}/ID` → (kind, ID).
pub(crate) fn split_attachment(att: &str) -> Option<(&str, &str)> {
    let rest = att.strip_prefix("cloudresourcemanager.googleapis.com/")?;
    let (kind, id) = rest.split_once('/')?;
    (matches!(kind, "projects" | "folders" | "organizations")
        && !id.is_empty()
        && !id.contains('/'))
    .then_some((kind, id))
}

fn read_value(file: &str, text: &str) -> Result<Value, ParseError> {
    match doc::parse::<Value>(file, text)? {
        Doc::Value(v) => Ok(v),
        Doc::Error(_) => serde_json::from_str(text.trim_start_matches('\u{feff}'))
            .map_err(|e| ParseError::new(file, format!("invalid JSON: {e}"))),
    }
}

fn array_or_one(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

impl Scenario {
    /// An empty scenario: the project exists, nothing else is in it.
    pub fn new(identity: Identity) -> Scenario {
        Scenario {
            identity,
            ..Scenario::default()
        }
    }

    /// Loads a bundle directory with the default identity fallbacks.
    pub fn from_bundle(dir: impl AsRef<Path>) -> Result<Scenario, crate::Error> {
        Scenario::from_bundle_with(dir, &BundleOptions::default())
    }

    /// Loads a bundle directory (the contract's file table). A malformed file is an error
    /// naming the file and position; unknown files become [`Scenario::warnings`].
    pub fn from_bundle_with(
        dir: impl AsRef<Path>,
        opts: &BundleOptions,
    ) -> Result<Scenario, crate::Error> {
        let dir = dir.as_ref();
        let shown = dir.display().to_string();
        let rd = std::fs::read_dir(dir)
            .map_err(|e| ParseError::new(&shown, format!("cannot read bundle directory: {e}")))?;
        let mut names = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| {
                ParseError::new(&shown, format!("cannot list bundle directory: {e}"))
            })?;
            if ent.file_type().map(|t| t.is_file()).unwrap_or(false) {
                names.push(ent.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        let mut files = Vec::new();
        for name in names {
            let path = dir.join(&name);
            let disp = path.display().to_string();
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if len > ipd_model::bundle::MAX_FILE_BYTES {
                return Err(ParseError::new(
                    &disp,
                    format!(
                        "file is {len} bytes; evidence files are at most {}",
                        ipd_model::bundle::MAX_FILE_BYTES
                    ),
                )
                .into());
            }
            let bytes = std::fs::read(&path)
                .map_err(|e| ParseError::new(&disp, format!("cannot read: {e}")))?;
            let text = String::from_utf8(bytes).map_err(|e| {
                ParseError::new(
                    &disp,
                    format!(
                        "not UTF-8 text (invalid byte at offset {})",
                        e.utf8_error().valid_up_to()
                    ),
                )
            })?;
            files.push((name, disp, text));
        }
        let mut sc = Scenario::from_files(
            files
                .iter()
                .map(|(n, p, t)| (n.as_str(), p.as_str(), t.as_str())),
            opts,
        )?;
        sc.load_service_dirs(&dir.join("services"))?;
        Ok(sc)
    }

    /// `services/SERVICE/service.json` (an Admin API v2 resource) and
    /// `services/SERVICE/service-iam-policy.json` of an `incidents` bundle: more services of
    /// the project, each with its own IAM policy.
    fn load_service_dirs(&mut self, root: &Path) -> Result<(), crate::Error> {
        let Ok(rd) = std::fs::read_dir(root) else {
            return Ok(());
        };
        let mut dirs: Vec<std::path::PathBuf> = rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        for d in dirs {
            let read = |name: &str| -> Result<Option<Value>, crate::Error> {
                let p = d.join(name);
                match std::fs::read_to_string(&p) {
                    Ok(t) => Ok(Some(read_value(&p.display().to_string(), &t)?)),
                    Err(_) => Ok(None),
                }
            };
            let Some(svc) = read("service.json")? else {
                continue;
            };
            let Some(name) = svc.get("name").and_then(Value::as_str).map(str::to_string) else {
                self.warnings.push(format!(
                    "{}: a service without a v2 `name`; not served",
                    d.join("service.json").display()
                ));
                continue;
            };
            if let Some(pol) = read("service-iam-policy.json")? {
                self.service_policies
                    .insert(name.clone(), Stored::from_value(pol));
            }
            self.other_services.push(svc);
        }
        Ok(())
    }

    /// Builds a scenario from `(file name, display path, text)` triples (the pure part of
    /// [`Scenario::from_bundle_with`]).
    pub fn from_files<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
        opts: &BundleOptions,
    ) -> Result<Scenario, crate::Error> {
        let mut sc = Scenario::default();
        let (mut h_service, mut h_logs, mut h_context, mut h_other) = (
            Hints::default(),
            Hints::default(),
            Hints::default(),
            Hints::default(),
        );
        let mut pending_v1: Option<(Service, Value)> = None;
        let mut folder_ids: Vec<String> = Vec::new();
        let mut org_ids: Vec<String> = Vec::new();
        let mut org: Option<OrgPolicies> = None;
        let mut org_file_errors: Vec<(String, ErrorReply)> = Vec::new();
        let mut org_values_seen = false;
        for (name, path, text) in files {
            match name {
                "service.json" | "service.yaml" | "service.yml" => {
                    let v = read_value(path, text)?;
                    if let Some(e) = error_reply(&v) {
                        sc.service = Some(Stored::Error(e));
                        continue;
                    }
                    let svc = match service::parse(path, text)? {
                        Doc::Value(s) => s,
                        Doc::Error(_) => {
                            return Err(ParseError::new(
                                path,
                                "service file holds an unrecognised error",
                            )
                            .into());
                        }
                    };
                    if let Some(p) = &svc.project {
                        h_service.project(p);
                    }
                    if let Some(n) = &svc.project_number {
                        h_service.project(n);
                    }
                    if let Some(r) = &svc.region {
                        h_service.region(r);
                    }
                    h_service.service(&svc.name);
                    if svc.format == ServiceFormat::AdminV2 {
                        sc.service = Some(Stored::Value(v));
                    } else {
                        pending_v1 = Some((svc, v));
                    }
                }
                "service-iam-policy.json" => {
                    sc.service_policy = Some(Stored::from_value(read_value(path, text)?))
                }
                "project-iam-policy.json" => {
                    sc.project_policy = Some(Stored::from_value(read_value(path, text)?))
                }
                "logs.json" => {
                    let v = read_value(path, text)?;
                    if let Some(e) = error_reply(&v) {
                        sc.logs = Some(Stored::Error(e));
                        continue;
                    }
                    let entries = match v {
                        Value::Array(a) => a,
                        Value::Object(mut m) => match m.remove("entries") {
                            Some(Value::Array(a)) => a,
                            None | Some(Value::Null) => Vec::new(),
                            Some(_) => {
                                return Err(
                                    ParseError::new(path, "`entries` is not an array").into()
                                );
                            }
                        },
                        _ => {
                            return Err(ParseError::new(
                                path,
                                "expected an array of LogEntry or {\"entries\": [...]}",
                            )
                            .into());
                        }
                    };
                    for e in &entries {
                        let is_run = e.pointer("/resource/type").and_then(Value::as_str)
                            == Some("cloud_run_revision");
                        if is_run {
                            let label = |k: &str| {
                                e.pointer(&format!("/resource/labels/{k}"))
                                    .and_then(Value::as_str)
                            };
                            if let Some(p) = label("project_id") {
                                h_logs.project(p);
                            }
                            if let Some(r) = label("location") {
                                h_logs.region(r);
                            }
                            if let Some(s) = label("service_name") {
                                h_logs.service(s);
                            }
                        }
                        if let Some(p) = e
                            .get("logName")
                            .and_then(Value::as_str)
                            .and_then(project_of)
                        {
                            h_logs.project(p);
                        }
                    }
                    sc.logs = Some(Stored::Value(Value::Array(entries)));
                }
                "deny-policies.json" => {
                    let v = read_value(path, text)?;
                    if let Some(e) = error_reply(&v) {
                        sc.deny_policies = Some(Stored::Error(e));
                        continue;
                    }
                    let list = array_or_one(v);
                    for p in &list {
                        let Some((att, _, _)) = p
                            .get("name")
                            .and_then(Value::as_str)
                            .and_then(split_policy_name)
                        else {
                            sc.warnings.push(format!("{path}: a deny policy without a `policies/ATTACHMENT/denypolicies/ID` name is not served"));
                            continue;
                        };
                        match split_attachment(&att) {
                            Some(("projects", id)) => h_other.project(id),
                            Some(("folders", id)) => folder_ids.push(id.to_string()),
                            Some(("organizations", id)) => org_ids.push(id.to_string()),
                            _ => {}
                        }
                    }
                    sc.deny_policies = Some(Stored::Value(Value::Array(list)));
                }
                "context.json" => {
                    let v = read_value(path, text)?;
                    if let Some(u) = v.pointer("/request/url").and_then(Value::as_str) {
                        h_context.url(u);
                    }
                }
                "troubleshoot.json" => {
                    sc.troubleshoot = Some(Stored::from_value(read_value(path, text)?))
                }
                "case.toml" | "token.txt" => {}
                _ if policy_file_id(name, "folder-").is_some() => {
                    let id = policy_file_id(name, "folder-").unwrap_or_default();
                    let stored = Stored::from_value(read_value(path, text)?);
                    sc.folders.entry(id.clone()).or_default().iam_policy = Some(stored);
                    folder_ids.push(id);
                }
                _ if policy_file_id(name, "organization-").is_some() => {
                    let id = policy_file_id(name, "organization-").unwrap_or_default();
                    let stored = Stored::from_value(read_value(path, text)?);
                    sc.organizations.entry(id.clone()).or_default().iam_policy = Some(stored);
                    org_ids.push(id);
                }
                _ if name.starts_with("org-policy-custom-") && name.ends_with(".json") => {
                    let v = read_value(path, text)?;
                    if error_reply(&v).is_some() {
                        sc.warnings.push(format!(
                            "{path}: holds an error envelope; the custom constraint is not served"
                        ));
                        continue;
                    }
                    sc.custom_constraints.push(v);
                }
                _ if name == "org-policies.json"
                    || (name.starts_with("org-policy-") && name.ends_with(".json")) =>
                {
                    let v = read_value(path, text)?;
                    let set = org.get_or_insert_with(OrgPolicies::default);
                    if let Some(e) = error_reply(&v) {
                        let c = name
                            .strip_prefix("org-policy-")
                            .and_then(|r| r.strip_suffix(".json"))
                            .unwrap_or("");
                        org_file_errors.push((c.trim_start_matches("constraints.").to_string(), e));
                        continue;
                    }
                    for p in array_or_one(v) {
                        match convert::org_policy_v2(&p) {
                            Some((c, pol)) => {
                                if let Some(proj) =
                                    p.get("name").and_then(Value::as_str).and_then(project_of)
                                {
                                    h_other.project(proj);
                                }
                                org_values_seen = true;
                                set.policies.insert(c, pol);
                            }
                            None => sc.warnings.push(format!(
                                "{path}: an org policy without `name` or `constraint` is not served"
                            )),
                        }
                    }
                }
                _ if name.starts_with("role-") && name.ends_with(".json") => {
                    let v = read_value(path, text)?;
                    if error_reply(&v).is_some() {
                        sc.warnings.push(format!(
                            "{path}: holds an API error; the role is not served"
                        ));
                        continue;
                    }
                    let Some(role_name) = v.get("name").and_then(Value::as_str).map(str::to_string)
                    else {
                        return Err(ParseError::new(path, "role has no `name`").into());
                    };
                    if let Some(p) = project_of(&role_name) {
                        h_other.project(p);
                    }
                    if let Some(o) = role_name
                        .strip_prefix("organizations/")
                        .and_then(|r| r.split('/').next())
                    {
                        org_ids.push(o.to_string());
                    }
                    sc.roles.push(v);
                }
                _ if name.starts_with("caller-") && name.ends_with(".json") => {
                    let v = read_value(path, text)?;
                    if let Some(e) = error_reply(&v) {
                        sc.caller_errors.push((caller_file_collection(name), e));
                        continue;
                    }
                    match v
                        .get("name")
                        .and_then(Value::as_str)
                        .and_then(CallerCollection::of_name)
                    {
                        Some(_) => sc.callers.push(v),
                        None => sc.warnings.push(format!(
                            "{path}: not a caller configuration with a resource name (projects/P/subscriptions/S, projects/P/locations/L/{{jobs|queues|triggers|workflows}}/X, .../queues/Q/tasks/T); not served"
                        )),
                    }
                }
                _ if ipd_model::regions::service_file_region(name).is_some() => {
                    let v = read_value(path, text)?;
                    match service::parse(path, text)? {
                        Doc::Value(svc) if svc.format == ServiceFormat::AdminV2 => {
                            sc.other_services.push(v)
                        }
                        _ => sc.warnings.push(format!(
                            "{path}: only an Admin API v2 service is served for another region; not served"
                        )),
                    }
                }
                _ if ipd_model::regions::policy_file_region(name).is_some() => {
                    let region = ipd_model::regions::policy_file_region(name)
                        .unwrap_or_default()
                        .to_string();
                    sc.regional_policies
                        .insert(region, Stored::from_value(read_value(path, text)?));
                }
                _ => sc.warnings.push(format!("ignoring unknown file {path}")),
            }
        }
        if let Some(set) = &mut org {
            for (c, e) in org_file_errors {
                if !org_values_seen && set.blanket_error.is_none() {
                    set.blanket_error = Some(e.clone());
                }
                if !c.is_empty() {
                    set.errors.insert(c, e);
                }
            }
        }
        sc.org_policies = org;

        // Identity: the service file first, then logs, then context, then the rest.
        let mut merged = Hints::default();
        for h in [&h_service, &h_logs, &h_context, &h_other] {
            h.merge_into(&mut merged);
        }
        let d = &opts.defaults;
        let o = &opts.overrides;
        sc.identity = Identity {
            project_id: o
                .project_id
                .clone()
                .or(merged.project_id)
                .unwrap_or_else(|| d.project_id.clone()),
            project_number: o
                .project_number
                .clone()
                .or(merged.project_number)
                .unwrap_or_else(|| d.project_number.clone()),
            region: o
                .region
                .clone()
                .or(merged.region)
                .unwrap_or_else(|| d.region.clone()),
            service: o
                .service
                .clone()
                .or(merged.service)
                .unwrap_or_else(|| d.service.clone()),
        };
        if let Some((svc, raw)) = pending_v1 {
            sc.service = Some(Stored::Value(convert::v1_to_v2(&svc, &raw, &sc.identity)));
            sc.service_v1 = Some(raw);
        }

        // Hierarchy: project → folders (nearest first, by id) → the first organization.
        folder_ids.sort();
        folder_ids.dedup();
        org_ids.sort();
        org_ids.dedup();
        let top = org_ids.first().map(|o| Parent::Organization(o.clone()));
        for o in &org_ids {
            sc.organizations.entry(o.clone()).or_default();
        }
        for (i, f) in folder_ids.iter().enumerate() {
            let parent = folder_ids
                .get(i + 1)
                .map(|n| Parent::Folder(n.clone()))
                .or_else(|| top.clone());
            sc.folders.entry(f.clone()).or_default().parent = parent;
        }
        sc.project_parent = folder_ids
            .first()
            .map(|f| Parent::Folder(f.clone()))
            .or(top);
        Ok(sc)
    }

    /// Adds a folder under `parent` (or at the top when `None`).
    pub fn with_folder(
        mut self,
        id: &str,
        parent: Option<Parent>,
        iam_policy: Option<Value>,
    ) -> Self {
        let f = self.folders.entry(id.to_string()).or_default();
        f.parent = parent;
        f.iam_policy = iam_policy.map(Stored::from_value);
        self
    }

    /// Adds an organization.
    pub fn with_organization(mut self, id: &str, iam_policy: Option<Value>) -> Self {
        self.organizations
            .entry(id.to_string())
            .or_default()
            .iam_policy = iam_policy.map(Stored::from_value);
        self
    }

    /// Adds a caller's configuration, served at its `name`.
    pub fn with_caller(mut self, config: Value) -> Self {
        self.callers.push(config);
        self
    }

    /// Marks `source` as failing with `fault` (options given at start override this).
    pub fn fail(mut self, source: Source, fault: Fault) -> Self {
        self.faults.insert(source, fault);
        self
    }

    /// True when `p` is this scenario's project ID or number.
    pub fn is_project(&self, p: &str) -> bool {
        p == self.identity.project_id || p == self.identity.project_number
    }
}

/// The collection a `caller-*.json` file name suggests: `caller-subscription.json`,
/// `caller-pubsub.json`, `caller-tasks-queue.json`, `caller-task.json`, ...
pub fn caller_file_collection(file: &str) -> Option<CallerCollection> {
    let stem = file
        .strip_prefix("caller-")
        .unwrap_or(file)
        .trim_end_matches(".json")
        .to_ascii_lowercase();
    let has = |w: &str| stem.contains(w);
    if has("subscription") || has("pubsub") {
        Some(CallerCollection::Subscription)
    } else if has("queue") {
        Some(CallerCollection::Queue)
    } else if has("task") {
        Some(CallerCollection::Task)
    } else if has("job") || has("scheduler") {
        Some(CallerCollection::Job)
    } else if has("trigger") || has("eventarc") {
        Some(CallerCollection::Trigger)
    } else if has("workflow") {
        Some(CallerCollection::Workflow)
    } else {
        None
    }
}

/// `folder-ID-iam-policy.json` → `ID`.
fn policy_file_id(name: &str, prefix: &str) -> Option<String> {
    let id = name
        .strip_prefix(prefix)?
        .strip_suffix("-iam-policy.json")?;
    (!id.is_empty()).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(files: &[(&str, &str)]) -> Scenario {
        match Scenario::from_files(
            files.iter().map(|(n, t)| (*n, *n, *t)),
            &BundleOptions::default(),
        ) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn identity_from_v1_yaml_and_defaults() {
        let y = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: api\n  namespace: '999'\n  labels:\n    cloud.googleapis.com/location: us-east1\n";
        let s = load(&[("service.yaml", y)]);
        assert_eq!(s.identity.project_number, "999");
        assert_eq!(s.identity.project_id, "shop-prod");
        assert_eq!(s.identity.region, "us-east1");
        assert_eq!(s.identity.service, "api");
        let Some(Stored::Value(v)) = &s.service else {
            panic!("no service")
        };
        assert_eq!(
            v["name"],
            "projects/shop-prod/locations/us-east1/services/api"
        );
        assert_eq!(v["urls"][0], "https://api-999.us-east1.run.app");
        assert_eq!(v["ingress"], "INGRESS_TRAFFIC_ALL");
    }

    #[test]
    fn identity_from_logs_and_context() {
        let logs = r#"[{"logName":"projects/acme/logs/run.googleapis.com%2Frequests","resource":{"type":"cloud_run_revision","labels":{"project_id":"acme","location":"asia-east1","service_name":"pay"}}}]"#;
        let ctx = r#"{"request":{"url":"https://pay-42.asia-east1.run.app/x"}}"#;
        let s = load(&[("context.json", ctx), ("logs.json", logs)]);
        assert_eq!(
            s.identity,
            Identity {
                project_id: "acme".into(),
                project_number: "42".into(),
                region: "asia-east1".into(),
                service: "pay".into()
            }
        );
    }

    #[test]
    fn hierarchy_and_overrides() {
        let files = [
            ("folder-77-iam-policy.json", "{}"),
            (
                "organization-5-iam-policy.json",
                r#"{"error":{"code":403,"status":"PERMISSION_DENIED","message":"no"}}"#,
            ),
        ];
        let opts = BundleOptions {
            overrides: IdentityOverrides {
                project_id: Some("other".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let s = Scenario::from_files(files.iter().map(|(n, t)| (*n, *n, *t)), &opts)
            .unwrap_or_default();
        assert_eq!(s.identity.project_id, "other");
        assert_eq!(s.project_parent, Some(Parent::Folder("77".into())));
        assert_eq!(
            s.folders["77"].parent,
            Some(Parent::Organization("5".into()))
        );
        assert!(matches!(
            s.organizations["5"].iam_policy,
            Some(Stored::Error(ErrorReply { status: 403, .. }))
        ));
    }

    #[test]
    fn org_policy_errors_per_constraint_or_blanket() {
        let deny = r#"{"error":{"code":403,"status":"PERMISSION_DENIED","message":"Permission 'orgpolicy.policy.get' denied"}}"#;
        let s = load(&[("org-policy-run.managed.requireInvokerIam.json", deny)]);
        let o = s.org_policies.unwrap_or_default();
        assert!(o.blanket_error.is_some());
        let s = load(&[
            ("org-policy-run.managed.requireInvokerIam.json", deny),
            (
                "org-policy-x.json",
                r#"{"name":"projects/1/policies/iam.allowedPolicyMemberDomains","spec":{}}"#,
            ),
        ]);
        let o = s.org_policies.unwrap_or_default();
        assert!(o.blanket_error.is_none());
        assert!(o.errors.contains_key("run.managed.requireInvokerIam"));
        assert!(o.policies.contains_key("iam.allowedPolicyMemberDomains"));
        assert_eq!(s.identity.project_number, "1");
    }

    #[test]
    fn callers_by_name_and_errors_by_file_name() {
        let sub = r#"{"name":"projects/shop-prod/subscriptions/orders-push","pushConfig":{}}"#;
        let deny = r#"{"error":{"code":403,"status":"PERMISSION_DENIED","message":"User not authorized to perform this action."}}"#;
        let s = load(&[
            ("caller-subscription.json", sub),
            ("caller-tasks-queue.json", deny),
            ("caller-other.json", r#"{"name":"topics/x"}"#),
        ]);
        assert_eq!(s.callers.len(), 1);
        assert_eq!(
            s.callers[0]["name"],
            "projects/shop-prod/subscriptions/orders-push"
        );
        assert_eq!(s.caller_errors.len(), 1);
        assert_eq!(s.caller_errors[0].0, Some(CallerCollection::Queue));
        assert_eq!(s.caller_errors[0].1.status, 403);
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        assert!(s.warnings[0].starts_with("caller-other.json: not a caller configuration"));
        assert_eq!(
            caller_file_collection("caller-task.json"),
            Some(CallerCollection::Task)
        );
        assert_eq!(
            caller_file_collection("caller-job.json"),
            Some(CallerCollection::Job)
        );
        assert_eq!(caller_file_collection("caller-x.json"), None);
    }

    #[test]
    fn troubleshoot_answer_or_envelope() {
        let s = load(&[(
            "troubleshoot.json",
            r#"{"accessTuple": {"principal": "a@b.c"}, "overallAccessState": "CAN_ACCESS"}"#,
        )]);
        assert!(
            matches!(&s.troubleshoot, Some(Stored::Value(v)) if v["overallAccessState"] == "CAN_ACCESS")
        );
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        let s = load(&[(
            "troubleshoot.json",
            r#"{"error": {"code": 403, "status": "PERMISSION_DENIED", "message": "x", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED"}]}}"#,
        )]);
        assert!(matches!(
            &s.troubleshoot,
            Some(Stored::Error(ErrorReply { status: 403, .. }))
        ));
        assert_eq!(load(&[]).troubleshoot, None);
    }

    #[test]
    fn malformed_files_name_the_file_and_unknown_files_warn() {
        let e = Scenario::from_files(
            [(
                "project-iam-policy.json",
                "b/project-iam-policy.json",
                "{\"bindings\": [}",
            )],
            &BundleOptions::default(),
        );
        let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.starts_with("b/project-iam-policy.json:1:"), "{msg}");
        let s = load(&[("notes.txt", "hi")]);
        assert_eq!(
            s.warnings,
            vec!["ignoring unknown file notes.txt".to_string()]
        );
    }
}
