//! Cloud Audit Logs entries (`protoPayload` of type `google.cloud.audit.AuditLog`) that explain
//! refusals: IAM policy changes (Admin Activity), VPC Service Controls violations (policy
//! denied), and IAP authorization denials (Data Access).

use serde::Serialize;
use serde_json::Value;

use crate::logs::LogEntry;
use crate::time::Timestamp;

pub const ACTIVITY_LOG: &str = "cloudaudit.googleapis.com%2Factivity";
pub const POLICY_LOG: &str = "cloudaudit.googleapis.com%2Fpolicy";
pub const DATA_ACCESS_LOG: &str = "cloudaudit.googleapis.com%2Fdata_access";
/// The method VPC Service Controls logs for a refused `run.app` request (facts §1.6).
pub const HTTP_INGRESS_METHOD: &str = "run.googleapis.com/HttpIngress";

/// Whether the logs hold any Admin Activity audit entry (without one, what the audit trail
/// would show is unknown, not absent).
pub fn has_activity_entries(logs: &[LogEntry]) -> bool {
    logs.iter().any(|e| log_is(e, ACTIVITY_LOG))
}

fn log_is(e: &LogEntry, suffix: &str) -> bool {
    e.log_name.as_deref().is_some_and(|n| n.ends_with(suffix))
}

fn s(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().map(str::to_string)
}

/// One binding added or removed by a `SetIamPolicy` (from `serviceData.policyDelta`, or the
/// request's whole new policy when no delta is logged).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BindingChange {
    pub time: Option<Timestamp>,
    /// `ADD` or `REMOVE` (`SET` when only the new policy is known).
    pub action: String,
    pub role: String,
    pub member: String,
    pub resource: Option<String>,
    pub method: Option<String>,
    /// Who made the change.
    pub actor: Option<String>,
    pub insert_id: Option<String>,
}

/// IAM policy changes recorded in Admin Activity audit logs.
pub fn binding_changes(logs: &[LogEntry]) -> Vec<BindingChange> {
    let mut out = Vec::new();
    for e in logs.iter().filter(|e| log_is(e, ACTIVITY_LOG)) {
        let Some(p) = &e.proto_payload else { continue };
        let method = s(p, &["methodName"]);
        if !method.as_deref().is_some_and(is_set_iam_policy) {
            continue;
        }
        // A refused call changed nothing (its request still holds the policy it wanted).
        if AuditStatus::of(p).is_some_and(|st| !st.ok()) {
            continue;
        }
        let base = |action: String, role: String, member: String| BindingChange {
            time: e.time(),
            action,
            role,
            member,
            resource: s(p, &["resourceName"]),
            method: method.clone(),
            actor: s(p, &["authenticationInfo", "principalEmail"]),
            insert_id: e.insert_id.clone(),
        };
        let deltas = p
            .get("serviceData")
            .and_then(|d| d.get("policyDelta"))
            .and_then(|d| d.get("bindingDeltas"))
            .and_then(Value::as_array);
        if let Some(deltas) = deltas {
            for d in deltas {
                if let (Some(a), Some(r), Some(m)) =
                    (s(d, &["action"]), s(d, &["role"]), s(d, &["member"]))
                {
                    out.push(base(a, r, m));
                }
            }
            continue;
        }
        let bindings = p
            .get("request")
            .and_then(|r| r.get("policy"))
            .and_then(|p| p.get("bindings"))
            .and_then(Value::as_array);
        for b in bindings.into_iter().flatten() {
            let Some(role) = s(b, &["role"]) else {
                continue;
            };
            for m in b
                .get("members")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                out.push(base("SET".into(), role.clone(), m.to_string()));
            }
        }
    }
    out
}

/// A change to the invoker-check switch (`UpdateService` / `ReplaceService`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InvokerCheckChange {
    pub time: Option<Timestamp>,
    /// The new value of "invoker IAM check disabled".
    pub disabled: bool,
    pub method: Option<String>,
    pub actor: Option<String>,
    pub insert_id: Option<String>,
    pub resource: Option<String>,
    /// The call's outcome; `None` when the entry has no `status` (it succeeded).
    pub status: Option<AuditStatus>,
}

/// The invoker-check switch in a create/update/replace request: v2 `invokerIamDisabled` in
/// the request's service (or the request itself), or the v1 annotation.
fn invoker_switch(req: &Value) -> Option<bool> {
    let svc = req.get("service").unwrap_or(req);
    let v2 = svc.get("invokerIamDisabled").and_then(Value::as_bool);
    let v1 = svc
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get("run.googleapis.com/invoker-iam-disabled"))
        .and_then(|v| match v {
            Value::String(s) => Some(s.eq_ignore_ascii_case("true")),
            Value::Bool(b) => Some(*b),
            _ => None,
        });
    v2.or(v1)
}

/// Invoker-check changes in Admin Activity audit logs (v2 `invokerIamDisabled` in the request's
/// service, or the v1 annotation) that took effect; refused attempts are in
/// [`invoker_check_attempts`].
pub fn invoker_check_changes(logs: &[LogEntry]) -> Vec<InvokerCheckChange> {
    invoker_check_attempts(logs)
        .into_iter()
        .filter(|c| c.status.as_ref().is_none_or(AuditStatus::ok))
        .collect()
}

/// Every attempt to flip the invoker-check switch, applied or refused.
pub fn invoker_check_attempts(logs: &[LogEntry]) -> Vec<InvokerCheckChange> {
    let mut out = Vec::new();
    for e in logs.iter().filter(|e| log_is(e, ACTIVITY_LOG)) {
        let Some(p) = &e.proto_payload else { continue };
        let Some(req) = p.get("request") else {
            continue;
        };
        if let Some(disabled) = invoker_switch(req) {
            out.push(InvokerCheckChange {
                time: e.time(),
                disabled,
                method: s(p, &["methodName"]),
                actor: s(p, &["authenticationInfo", "principalEmail"]),
                insert_id: e.insert_id.clone(),
                resource: s(p, &["resourceName"]),
                status: AuditStatus::of(p),
            });
        }
    }
    out
}

fn is_set_iam_policy(method: &str) -> bool {
    method.to_ascii_lowercase().ends_with("setiampolicy")
}

/// `protoPayload.status` of an audit entry: a `google.rpc.Status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditStatus {
    /// The gRPC code (0 OK, 7 PERMISSION_DENIED, 9 FAILED_PRECONDITION, ...).
    pub code: i64,
    pub message: Option<String>,
    /// `details[]` of type `google.rpc.PreconditionFailure`: `violations[]`.
    pub violations: Vec<Violation>,
}

/// One `PreconditionFailure.violations[]` item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// E.g. `constraints/iam.allowedPolicyMemberDomains`.
    pub kind: Option<String>,
    pub subject: Option<String>,
    pub description: Option<String>,
}

pub const PERMISSION_DENIED: i64 = 7;
pub const FAILED_PRECONDITION: i64 = 9;
/// The prefix of a custom org-policy constraint's refusal (facts §8.1).
pub const CUSTOM_ORG_POLICY_DENIAL: &str = "Operation denied by custom org policies";
/// Domain restricted sharing's refusal text (facts §4.1).
pub const DRS_DENIAL: &str = "do not belong to a permitted customer";

impl AuditStatus {
    /// Reads `status` from an audit entry's `protoPayload`; `None` when there is none.
    pub fn of(payload: &Value) -> Option<AuditStatus> {
        let st = payload.get("status")?;
        if !st.is_object() {
            return None;
        }
        let code = st.get("code").and_then(Value::as_i64).unwrap_or(0);
        let mut violations = Vec::new();
        for d in st
            .get("details")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let is_precondition = d
                .get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("google.rpc.PreconditionFailure"));
            if !is_precondition {
                continue;
            }
            for v in d
                .get("violations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                violations.push(Violation {
                    kind: s(v, &["type"]),
                    subject: s(v, &["subject"]),
                    description: s(v, &["description"]),
                });
            }
        }
        Some(AuditStatus {
            code,
            message: s(st, &["message"]),
            violations,
        })
    }

    pub fn ok(&self) -> bool {
        self.code == 0
    }

    /// The custom constraints named in an "Operation denied by custom org policies" message
    /// (`["customConstraints/custom.NAME": "..."]`), without the `customConstraints/` prefix.
    pub fn custom_constraints(&self) -> Vec<String> {
        let Some(m) = self.message.as_deref() else {
            return Vec::new();
        };
        if !m.contains(CUSTOM_ORG_POLICY_DENIAL) {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut rest = m;
        while let Some(i) = rest.find("custom.") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
                .unwrap_or(tail.len());
            let name = tail[..end].trim_end_matches('.').to_string();
            if name.len() > "custom.".len() && !out.contains(&name) {
                out.push(name);
            }
            rest = &tail[end..];
        }
        out
    }

    /// The org-policy constraint a refusal names: `PreconditionFailure.violations[].type`
    /// when present, else one recognisable in the message.
    pub fn named_constraint(&self) -> Option<String> {
        if let Some(k) = self.violations.iter().find_map(|v| v.kind.clone()) {
            return Some(k);
        }
        let m = self.message.as_deref()?;
        [
            "iam.managed.allowedPolicyMembers",
            "iam.allowedPolicyMemberDomains",
            "run.managed.requireInvokerIam",
        ]
        .iter()
        .find(|c| m.contains(*c))
        .map(|c| format!("constraints/{c}"))
    }

    /// One line for evidence: `code 9 (FAILED_PRECONDITION): message`.
    pub fn describe(&self) -> String {
        let name = match self.code {
            0 => "OK",
            3 => "INVALID_ARGUMENT",
            5 => "NOT_FOUND",
            7 => "PERMISSION_DENIED",
            9 => "FAILED_PRECONDITION",
            16 => "UNAUTHENTICATED",
            _ => "error",
        };
        match &self.message {
            Some(m) => format!("status code {} ({name}): \"{m}\"", self.code),
            None => format!("status code {} ({name})", self.code),
        }
    }
}

/// What an owner tried in order to make the service public.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PublicAttemptKind {
    /// A `SetIamPolicy` granting an invoke role to `member` (`allUsers` /
    /// `allAuthenticatedUsers` when it makes the service public).
    Grant { role: String, member: String },
    /// A create/update/replace of the service disabling the invoker check.
    DisableInvokerCheck,
}

/// One Admin Activity entry showing the owner's intent to make the service public, applied
/// or refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublicAttempt {
    #[serde(flatten)]
    pub kind: PublicAttemptKind,
    pub time: Option<Timestamp>,
    pub insert_id: Option<String>,
    /// Who made the attempt (`authenticationInfo.principalEmail`).
    pub principal: Option<String>,
    pub method: Option<String>,
    pub resource: Option<String>,
    /// `None` or code 0: applied.
    pub status: Option<AuditStatus>,
}

impl PublicAttempt {
    pub fn refused(&self) -> bool {
        self.status.as_ref().is_some_and(|s| !s.ok())
    }

    /// "grant `roles/run.invoker` to `allUsers`" / "disable the invoker IAM check".
    pub fn what(&self) -> String {
        match &self.kind {
            PublicAttemptKind::Grant { role, member } => {
                format!("grant `{role}` to `{member}`")
            }
            PublicAttemptKind::DisableInvokerCheck => "disable the invoker IAM check".into(),
        }
    }

    /// One evidence line naming the entry, its time, principal and outcome.
    pub fn describe(&self) -> String {
        let when = self
            .time
            .map(|t| format!(" at {}", crate::time::fmt(&t)))
            .unwrap_or_default();
        let who = self
            .principal
            .as_deref()
            .map(|p| format!(" by `{p}`"))
            .unwrap_or_default();
        let outcome = match &self.status {
            Some(st) if !st.ok() => format!(", refused with {}", st.describe()),
            _ => ", applied".into(),
        };
        format!(
            "Admin Activity audit entry `{}`{when}: `{}`{who} tried to {}{outcome}",
            self.insert_id.as_deref().unwrap_or("?"),
            self.method.as_deref().unwrap_or("?"),
            self.what()
        )
    }
}

fn is_public_member(m: &str) -> bool {
    m == "allUsers" || m == "allAuthenticatedUsers"
}

fn about_service(resource: Option<&str>, service: Option<&str>) -> bool {
    match (resource, service) {
        (Some(r), Some(svc)) => r.ends_with(&format!("/services/{svc}")),
        // Without the service's name, only entries about some Cloud Run service count.
        (Some(r), None) => r.contains("/services/"),
        (None, _) => false,
    }
}

impl PublicAttempt {
    /// Does this attempt make the service public (a grant to `allUsers` /
    /// `allAuthenticatedUsers`, or disabling the invoker check)?
    pub fn is_public(&self) -> bool {
        match &self.kind {
            PublicAttemptKind::Grant { member, .. } => is_public_member(member),
            PublicAttemptKind::DisableInvokerCheck => true,
        }
    }
}

/// Every attempt, applied or refused, to make `service` public found in the Admin Activity
/// log, oldest first. Pure; used by `diagnose`, and meant for `incidents` and `scan` too.
pub fn public_attempts(logs: &[LogEntry], service: Option<&str>) -> Vec<PublicAttempt> {
    access_attempts(logs, service)
        .into_iter()
        .filter(PublicAttempt::is_public)
        .collect()
}

/// Every attempt, applied or refused, to grant an invoke role on `service` (to anyone) or to
/// disable its invoker check, oldest first.
pub fn access_attempts(logs: &[LogEntry], service: Option<&str>) -> Vec<PublicAttempt> {
    let mut out = Vec::new();
    for e in logs.iter().filter(|e| log_is(e, ACTIVITY_LOG)) {
        let Some(p) = &e.proto_payload else { continue };
        let resource = s(p, &["resourceName"]);
        if !about_service(resource.as_deref(), service) {
            continue;
        }
        let method = s(p, &["methodName"]);
        let status = AuditStatus::of(p);
        let base = |kind: PublicAttemptKind| PublicAttempt {
            kind,
            time: e.time(),
            insert_id: e.insert_id.clone(),
            principal: s(p, &["authenticationInfo", "principalEmail"]),
            method: method.clone(),
            resource: resource.clone(),
            status: status.clone(),
        };
        if method.as_deref().is_some_and(is_set_iam_policy) {
            // What was asked for: the delta when logged, else the request's whole policy.
            let deltas = p
                .get("serviceData")
                .and_then(|d| d.get("policyDelta"))
                .and_then(|d| d.get("bindingDeltas"))
                .and_then(Value::as_array);
            let mut grants: Vec<(String, String)> = Vec::new();
            if let Some(deltas) = deltas {
                for d in deltas {
                    if let (Some("ADD"), Some(r), Some(m)) = (
                        s(d, &["action"]).as_deref(),
                        s(d, &["role"]),
                        s(d, &["member"]),
                    ) {
                        grants.push((r, m));
                    }
                }
            } else {
                for b in p
                    .get("request")
                    .and_then(|r| r.get("policy"))
                    .and_then(|p| p.get("bindings"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let Some(role) = s(b, &["role"]) else {
                        continue;
                    };
                    for m in b
                        .get("members")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                    {
                        grants.push((role.clone(), m.to_string()));
                    }
                }
            }
            for (role, member) in grants {
                if crate::roles::grants_invoke(&role, &[]) != crate::roles::Grants::No {
                    out.push(base(PublicAttemptKind::Grant { role, member }));
                }
            }
        } else if let Some(true) = p.get("request").and_then(invoker_switch) {
            out.push(base(PublicAttemptKind::DisableInvokerCheck));
        }
    }
    out.sort_by_key(|a| a.time);
    out
}

/// The owner's standing intent to make `service` public, from the audit log: the newest
/// attempt ([`public_attempts`]), unless an applied withdrawal (an `allUsers` /
/// `allAuthenticatedUsers` binding removed, or the invoker check turned back on) came after it.
pub fn public_intent(logs: &[LogEntry], service: Option<&str>) -> Option<PublicAttempt> {
    let newest = public_attempts(logs, service).into_iter().last()?;
    let withdrawn_after = |t: Option<Timestamp>| match (t, newest.time) {
        (Some(t), Some(n)) => t > n,
        _ => false,
    };
    let removed = binding_changes(logs).into_iter().any(|c| {
        c.action == "REMOVE"
            && is_public_member(&c.member)
            && about_service(c.resource.as_deref(), service)
            && withdrawn_after(c.time)
    });
    let re_enabled = invoker_check_changes(logs).into_iter().any(|c| {
        !c.disabled && about_service(c.resource.as_deref(), service) && withdrawn_after(c.time)
    });
    (!removed && !re_enabled).then_some(newest)
}

/// A request refused by a VPC Service Controls perimeter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VpcScViolation {
    pub time: Option<Timestamp>,
    pub method: Option<String>,
    pub perimeter: Option<String>,
    pub reason: Option<String>,
    pub unique_id: Option<String>,
    pub insert_id: Option<String>,
}

/// VPC-SC violations in the policy-denied audit log, for `run.googleapis.com/HttpIngress`
/// (data-plane requests to Cloud Run).
pub fn vpcsc_violations(logs: &[LogEntry]) -> Vec<VpcScViolation> {
    let mut out = Vec::new();
    for e in logs.iter().filter(|e| log_is(e, POLICY_LOG)) {
        let p = e.proto_payload.as_ref();
        let method = e
            .resource_label("method")
            .map(str::to_string)
            .or_else(|| p.and_then(|p| s(p, &["methodName"])));
        if method.as_deref() != Some(HTTP_INGRESS_METHOD) {
            continue;
        }
        let meta = p.and_then(|p| p.get("metadata"));
        let perimeter = meta.and_then(|m| {
            s(m, &["securityPolicyInfo", "servicePerimeterName"]).or_else(|| {
                m.get("ingressViolations")
                    .and_then(Value::as_array)
                    .and_then(|a| a.first())
                    .and_then(|v| s(v, &["servicePerimeter"]))
            })
        });
        out.push(VpcScViolation {
            time: e.time(),
            method,
            perimeter,
            reason: meta.and_then(|m| s(m, &["violationReason"])),
            unique_id: meta.and_then(|m| s(m, &["vpcServiceControlsUniqueId"])),
            insert_id: e.insert_id.clone(),
        });
    }
    out
}

/// An IAP authorization refusal (Data Access audit log of `iap.googleapis.com`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IapDenial {
    pub time: Option<Timestamp>,
    pub principal: Option<String>,
    pub resource: Option<String>,
    pub message: Option<String>,
}

pub fn iap_denials(logs: &[LogEntry]) -> Vec<IapDenial> {
    let mut out = Vec::new();
    for e in logs.iter().filter(|e| log_is(e, DATA_ACCESS_LOG)) {
        let Some(p) = &e.proto_payload else { continue };
        if s(p, &["serviceName"]).as_deref() != Some("iap.googleapis.com") {
            continue;
        }
        let code = p
            .get("status")
            .and_then(|st| st.get("code"))
            .and_then(Value::as_i64);
        if code != Some(7) {
            continue;
        }
        out.push(IapDenial {
            time: e.time(),
            principal: s(p, &["authenticationInfo", "principalEmail"]),
            resource: s(p, &["resourceName"]),
            message: p.get("status").and_then(|st| s(st, &["message"])),
        });
    }
    out
}

/// What kind of Admin Activity change an [`AdminChange`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// `SetIamPolicy` on a service, project, folder or organization.
    IamPolicy,
    /// `UpdateService` / `ReplaceService` / `CreateService` of a Cloud Run service.
    Service,
    /// A service account deleted, undeleted, created, disabled or enabled.
    ServiceAccount,
    /// An Org Policy v2 policy (or a legacy CRM `SetOrgPolicy`) created, updated or deleted.
    OrgPolicy,
    /// An IAM v2 deny policy created, updated or deleted.
    DenyPolicy,
}

/// The new settings an `UpdateService` / `ReplaceService` request carries (only the ones that
/// decide who may invoke; the audit log has the new service, not the old one).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServiceSettings {
    /// `invokerIamDisabled` (v2) or the `run.googleapis.com/invoker-iam-disabled` annotation.
    pub invoker_iam_disabled: Option<bool>,
    pub ingress: Option<crate::service::Ingress>,
    /// `customAudiences` (v2) or the `run.googleapis.com/custom-audiences` annotation.
    pub custom_audiences: Option<Vec<String>>,
    /// `defaultUriDisabled` (v2) or the `run.googleapis.com/default-url-disabled` annotation.
    pub default_uri_disabled: Option<bool>,
}

/// One Admin Activity entry that can change who may invoke a service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdminChange {
    pub time: Option<Timestamp>,
    pub insert_id: Option<String>,
    pub kind: ChangeKind,
    /// The method's last segment: `SetIamPolicy`, `UpdateService`, `ReplaceService`,
    /// `DeleteServiceAccount`, `UpdatePolicy`, ...
    pub method: String,
    /// Who made it (`user:` / `serviceAccount:`), from `authenticationInfo.principalEmail`.
    pub principal: Option<String>,
    /// `protoPayload.resourceName` as logged.
    pub resource: Option<String>,
    /// The Cloud Run service the change is on (`SERVICE` of `.../services/SERVICE`), if any.
    pub service: Option<String>,
    /// For IAM changes: the level (`service`, `project`, `folder`, `organization`, or
    /// `service_account` for a service account's own policy).
    pub level: Option<&'static str>,
    /// Bindings the change removed (`REMOVE` deltas).
    pub removed: Vec<BindingChange>,
    /// Bindings the change added (`ADD` deltas), or the whole new policy (`SET`).
    pub added: Vec<BindingChange>,
    pub settings: ServiceSettings,
    /// The service account a service-account operation is about (email or unique ID).
    pub account: Option<String>,
    /// The org-policy constraint (`run.allowedIngress`, `iam.allowedPolicyMemberDomains`, ...).
    pub constraint: Option<String>,
    /// The deny policy's request mentions `run.googleapis.com/routes.invoke`.
    pub denies_invoke: bool,
}

fn method_tail(m: &str) -> &str {
    m.rsplit('.').next().unwrap_or(m)
}

/// `…/services/S` → `S` (v2 `projects/P/locations/R/services/S`, v1 `namespaces/P/services/S`).
pub fn service_of_resource(r: &str) -> Option<&str> {
    let (_, tail) = r.rsplit_once("/services/")?;
    let s = tail.split('/').next()?;
    (!s.is_empty()).then_some(s)
}

fn level_of(resource: &str) -> &'static str {
    if resource.contains("/serviceAccounts/") {
        "service_account"
    } else if service_of_resource(resource).is_some() {
        "service"
    } else if resource.starts_with("folders/") {
        "folder"
    } else if resource.starts_with("organizations/") {
        "organization"
    } else {
        "project"
    }
}

/// Field by camelCase or snake_case name (the IAM Admin API logs its requests in snake_case).
fn field<'a>(v: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
    v.get(camel).or_else(|| v.get(snake))
}

fn service_settings(p: &Value) -> ServiceSettings {
    let Some(req) = p.get("request") else {
        return ServiceSettings::default();
    };
    let svc = req.get("service").unwrap_or(req);
    let ann = svc
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object);
    let ann_s = |k: &str| ann.and_then(|a| a.get(k)).and_then(Value::as_str);
    let v2_bool = |k: &str| svc.get(k).and_then(Value::as_bool);
    let is_v2 = svc.get("metadata").is_none();
    // v2 leaves false and default values out (proto3 JSON): in a v2 request an absent
    // `invokerIamDisabled` means the check is on. v1 has annotations only when set.
    let invoker_iam_disabled = invoker_switch(req).or(is_v2.then_some(false));
    let ingress = svc
        .get("ingress")
        .and_then(Value::as_str)
        .map(crate::service::Ingress::from_v2)
        .or_else(|| ann_s("run.googleapis.com/ingress").map(crate::service::Ingress::from_v1));
    let custom_audiences = svc
        .get("customAudiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .or_else(|| {
            ann_s("run.googleapis.com/custom-audiences")
                .and_then(|t| serde_json::from_str::<Vec<String>>(t).ok())
        })
        .or(is_v2.then(Vec::new));
    let default_uri_disabled = v2_bool("defaultUriDisabled")
        .or_else(|| {
            ann_s("run.googleapis.com/default-url-disabled").map(|v| v.eq_ignore_ascii_case("true"))
        })
        .or(is_v2.then_some(false));
    ServiceSettings {
        invoker_iam_disabled,
        ingress,
        custom_audiences,
        default_uri_disabled,
    }
}

/// The service account an IAM Admin operation names: the request's `name`
/// (`projects/-/serviceAccounts/EMAIL`), the response's `email`, or the resource name.
fn account_of(p: &Value) -> Option<String> {
    let tail = |n: &str| n.rsplit('/').next().map(str::to_string);
    let resp = p.get("response");
    resp.and_then(|r| s(r, &["email"]))
        .or_else(|| {
            p.get("request")
                .and_then(|r| field(r, "name", "name"))
                .and_then(Value::as_str)
                .filter(|n| n.contains("/serviceAccounts/"))
                .and_then(tail)
        })
        .or_else(|| {
            let req = p.get("request")?;
            let id = field(req, "accountId", "account_id")?.as_str()?;
            let project = s(req, &["name"])?.strip_prefix("projects/")?.to_string();
            Some(format!("{id}@{project}.iam.gserviceaccount.com"))
        })
        .or_else(|| s(p, &["resourceName"]).as_deref().and_then(tail))
}

/// Every Admin Activity entry that can change who may invoke a service, oldest first:
/// `SetIamPolicy` (with the bindings the delta removed and added), Cloud Run
/// `UpdateService`/`ReplaceService`/`CreateService` (with the new invoker-check, ingress,
/// custom-audience and default-URL settings), service-account create/delete/undelete/
/// disable/enable, Org Policy and IAM deny-policy writes. Entries whose `status` carries a
/// non-zero code (the call failed: nothing changed) are left out.
pub fn admin_changes(logs: &[LogEntry]) -> Vec<AdminChange> {
    let mut out = Vec::new();
    for e in logs.iter().filter(|e| log_is(e, ACTIVITY_LOG)) {
        let Some(p) = &e.proto_payload else { continue };
        let Some(full) = s(p, &["methodName"]) else {
            continue;
        };
        if !AuditStatus::of(p).as_ref().is_none_or(AuditStatus::ok) {
            continue;
        }
        let method = method_tail(&full).to_string();
        let service_name = s(p, &["serviceName"]).unwrap_or_default();
        let resource = s(p, &["resourceName"]);
        let lower = method.to_ascii_lowercase();
        let kind = if lower == "setiampolicy" {
            ChangeKind::IamPolicy
        } else if service_name == "run.googleapis.com"
            && matches!(
                lower.as_str(),
                "updateservice" | "replaceservice" | "createservice"
            )
        {
            ChangeKind::Service
        } else if full.starts_with("google.iam.admin.")
            && lower.contains("serviceaccount")
            && ["delete", "undelete", "create", "disable", "enable"]
                .iter()
                .any(|v| lower.starts_with(v))
        {
            ChangeKind::ServiceAccount
        } else if (service_name == "orgpolicy.googleapis.com"
            && matches!(
                lower.as_str(),
                "createpolicy" | "updatepolicy" | "deletepolicy"
            ))
            || lower == "setorgpolicy"
            || lower == "clearorgpolicy"
        {
            ChangeKind::OrgPolicy
        } else if full.starts_with("google.iam.v2.")
            && matches!(
                lower.as_str(),
                "createpolicy" | "updatepolicy" | "deletepolicy"
            )
        {
            ChangeKind::DenyPolicy
        } else {
            continue;
        };
        let mine: Vec<BindingChange> = match kind {
            ChangeKind::IamPolicy => binding_changes(std::slice::from_ref(e)),
            _ => Vec::new(),
        };
        let service = resource
            .as_deref()
            .and_then(service_of_resource)
            .map(str::to_string);
        let constraint = (kind == ChangeKind::OrgPolicy)
            .then(|| {
                resource
                    .as_deref()
                    .and_then(|r| r.rsplit_once("/policies/").map(|(_, c)| c.to_string()))
                    .or_else(|| {
                        p.get("request")
                            .and_then(|r| r.get("policy"))
                            .and_then(|po| s(po, &["constraint"]))
                    })
                    .map(|c| c.trim_start_matches("constraints/").to_string())
            })
            .flatten();
        let denies_invoke = kind == ChangeKind::DenyPolicy
            && p.get("request")
                .is_some_and(|r| r.to_string().contains("run.googleapis.com/routes.invoke"));
        out.push(AdminChange {
            time: e.time(),
            insert_id: e.insert_id.clone(),
            kind,
            method,
            principal: s(p, &["authenticationInfo", "principalEmail"])
                .map(|m| crate::principal::Principal::from_email(&m).to_string()),
            level: (kind == ChangeKind::IamPolicy)
                .then(|| level_of(resource.as_deref().unwrap_or(""))),
            removed: mine
                .iter()
                .filter(|b| b.action == "REMOVE")
                .cloned()
                .collect(),
            added: mine
                .iter()
                .filter(|b| b.action != "REMOVE")
                .cloned()
                .collect(),
            settings: if kind == ChangeKind::Service {
                service_settings(p)
            } else {
                ServiceSettings::default()
            },
            account: (kind == ChangeKind::ServiceAccount)
                .then(|| account_of(p))
                .flatten(),
            constraint,
            denies_invoke,
            service,
            resource,
        });
    }
    out.sort_by_key(|c| c.time);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(v: Value) -> LogEntry {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn set_iam_policy_deltas() {
        let e = entry(json!({
            "logName": "projects/p/logs/cloudaudit.googleapis.com%2Factivity",
            "timestamp": "2026-11-20T10:12:00Z",
            "protoPayload": {"@type": "type.googleapis.com/google.cloud.audit.AuditLog",
                "methodName": "google.cloud.run.v2.Services.SetIamPolicy",
                "resourceName": "projects/p/locations/r/services/s",
                "authenticationInfo": {"principalEmail": "ops@example.com"},
                "serviceData": {"@type": "type.googleapis.com/google.iam.v1.logging.AuditData",
                    "policyDelta": {"bindingDeltas": [{"action": "ADD", "role": "roles/run.invoker", "member": "serviceAccount:a@p.iam.gserviceaccount.com"}]}}}
        }));
        let c = binding_changes(&[e]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].action, "ADD");
        assert_eq!(c[0].actor.as_deref(), Some("ops@example.com"));
    }

    fn activity(method: &str, service: &str, resource: &str, extra: Value) -> LogEntry {
        let mut p = json!({"@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "serviceName": service, "methodName": method, "resourceName": resource,
            "authenticationInfo": {"principalEmail": "deployer@p.iam.gserviceaccount.com"}});
        if let (Some(o), Value::Object(e)) = (p.as_object_mut(), extra) {
            o.extend(e);
        }
        entry(
            json!({"logName": "projects/p/logs/cloudaudit.googleapis.com%2Factivity",
            "timestamp": "2026-11-20T10:12:00Z", "insertId": "x", "protoPayload": p}),
        )
    }

    #[test]
    fn admin_changes_of_every_kind() {
        use crate::service::Ingress;
        let v1 = activity(
            "google.cloud.run.v1.Services.ReplaceService",
            "run.googleapis.com",
            "namespaces/p/services/s",
            json!({"request": {"@type": "type.googleapis.com/google.cloud.run.v1.ReplaceServiceRequest",
                "service": {"metadata": {"name": "s", "annotations": {"run.googleapis.com/ingress": "internal",
                    "run.googleapis.com/custom-audiences": "[\"https://a.example.com\"]"}}}}}),
        );
        let v2 = activity(
            "google.cloud.run.v2.Services.UpdateService",
            "run.googleapis.com",
            "projects/p/locations/r/services/s",
            json!({"request": {"service": {"name": "projects/p/locations/r/services/s", "invokerIamDisabled": true}}}),
        );
        let del = activity(
            "google.iam.admin.v1.DeleteServiceAccount",
            "iam.googleapis.com",
            "projects/-/serviceAccounts/1122",
            json!({"request": {"name": "projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com"}}),
        );
        let create = activity(
            "google.iam.admin.v1.CreateServiceAccount",
            "iam.googleapis.com",
            "projects/p/serviceAccounts/3344",
            json!({"request": {"account_id": "sa", "name": "projects/p"}}),
        );
        let org = activity(
            "google.cloud.orgpolicy.v2.OrgPolicy.UpdatePolicy",
            "orgpolicy.googleapis.com",
            "projects/p/policies/run.allowedIngress",
            json!({}),
        );
        let deny = activity(
            "google.iam.v2.Policies.CreatePolicy",
            "iam.googleapis.com",
            "policies/cloudresourcemanager.googleapis.com%2Fprojects%2F1/denypolicies/d",
            json!({"request": {"policy": {"rules": [{"denyRule": {"deniedPermissions": ["run.googleapis.com/routes.invoke"]}}]}}}),
        );
        let read = activity(
            "google.cloud.run.v2.Services.GetService",
            "run.googleapis.com",
            "projects/p/locations/r/services/s",
            json!({}),
        );
        let c = admin_changes(&[v1, v2, del, create, org, deny, read]);
        assert_eq!(c.len(), 6);
        assert_eq!(c[0].service.as_deref(), Some("s"));
        assert_eq!(c[0].settings.ingress, Some(Ingress::Internal));
        assert_eq!(
            c[0].settings.custom_audiences,
            Some(vec!["https://a.example.com".to_string()])
        );
        assert_eq!(
            c[0].settings.invoker_iam_disabled, None,
            "v1 without the annotation: unknown"
        );
        assert_eq!(c[1].settings.invoker_iam_disabled, Some(true));
        assert_eq!(c[1].settings.ingress, None);
        assert_eq!(
            c[2].account.as_deref(),
            Some("sa@p.iam.gserviceaccount.com")
        );
        assert_eq!(
            c[3].account.as_deref(),
            Some("sa@p.iam.gserviceaccount.com")
        );
        assert_eq!(c[4].constraint.as_deref(), Some("run.allowedIngress"));
        assert!(c[5].denies_invoke);
        assert_eq!(c[5].kind, ChangeKind::DenyPolicy);
        assert_eq!(
            c[0].principal.as_deref(),
            Some("serviceAccount:deployer@p.iam.gserviceaccount.com")
        );
    }

    fn set_iam(
        ts: &str,
        status: Option<Value>,
        delta: Option<Value>,
        members: &[&str],
    ) -> LogEntry {
        let mut p = json!({"@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "methodName": "google.cloud.run.v1.Services.SetIamPolicy",
            "resourceName": "projects/p/locations/r/services/s",
            "authenticationInfo": {"principalEmail": "deployer@p.iam.gserviceaccount.com"},
            "request": {"policy": {"bindings": [{"role": "roles/run.invoker", "members": members}]}}});
        if let Some(st) = status {
            p["status"] = st;
        }
        if let Some(d) = delta {
            p["serviceData"] = json!({"policyDelta": {"bindingDeltas": d}});
        }
        entry(
            json!({"logName": "projects/p/logs/cloudaudit.googleapis.com%2Factivity",
            "insertId": format!("id-{ts}"), "timestamp": ts, "protoPayload": p}),
        )
    }

    #[test]
    fn refused_attempts_show_intent_but_change_nothing() {
        let refused = set_iam(
            "2026-11-20T10:00:00Z",
            Some(
                json!({"code": 9, "message": "One or more users named in the policy do not belong to a permitted customer,  perhaps due to an organization policy.",
                "details": [{"@type": "type.googleapis.com/google.rpc.PreconditionFailure",
                    "violations": [{"type": "constraints/iam.allowedPolicyMemberDomains", "description": "User allUsers is not in permitted organization."}]}]}),
            ),
            None,
            &["allUsers"],
        );
        let logs = [refused];
        assert!(binding_changes(&logs).is_empty());
        let i = public_intent(&logs, Some("s")).expect("intent");
        assert!(i.refused());
        assert_eq!(
            i.principal.as_deref(),
            Some("deployer@p.iam.gserviceaccount.com")
        );
        let st = i.status.as_ref().expect("status");
        assert_eq!(
            st.named_constraint().as_deref(),
            Some("constraints/iam.allowedPolicyMemberDomains")
        );
        assert!(st.custom_constraints().is_empty());
        // Another service's entry says nothing about this one.
        assert!(public_intent(&logs, Some("other")).is_none());
    }

    #[test]
    fn custom_constraints_are_named_from_the_message() {
        let st = AuditStatus {
            code: 9,
            message: Some("Operation denied by custom org policies: [\"customConstraints/custom.noPublic\": \"no\", \"customConstraints/custom.domainOnly\": \"x.\"]".into()),
            violations: vec![],
        };
        assert_eq!(
            st.custom_constraints(),
            vec!["custom.noPublic", "custom.domainOnly"]
        );
    }

    #[test]
    fn a_later_removal_withdraws_the_intent() {
        let add = set_iam(
            "2026-11-20T06:00:00Z",
            None,
            Some(json!([{"action": "ADD", "role": "roles/run.invoker", "member": "allUsers"}])),
            &["allUsers"],
        );
        let remove = set_iam(
            "2026-11-20T06:45:00Z",
            None,
            Some(json!([{"action": "REMOVE", "role": "roles/run.invoker", "member": "allUsers"}])),
            &[],
        );
        assert!(public_intent(std::slice::from_ref(&add), Some("s")).is_some());
        assert!(public_intent(&[remove, add], Some("s")).is_none());
    }

    #[test]
    fn invoker_check_attempts_v2_and_v1() {
        let v2 = entry(
            json!({"logName": "projects/p/logs/cloudaudit.googleapis.com%2Factivity",
            "timestamp": "2026-11-20T10:00:00Z",
            "protoPayload": {"methodName": "google.cloud.run.v2.Services.UpdateService",
                "resourceName": "projects/p/locations/r/services/s",
                "status": {"code": 7, "message": "Changes to invoker_iam_disabled require run.services.setIamPolicy permissions"},
                "request": {"service": {"invokerIamDisabled": true}}}}),
        );
        let v1 = entry(
            json!({"logName": "projects/p/logs/cloudaudit.googleapis.com%2Factivity",
            "timestamp": "2026-11-20T11:00:00Z",
            "protoPayload": {"methodName": "google.cloud.run.v1.Services.ReplaceService",
                "resourceName": "namespaces/p/services/s",
                "request": {"service": {"metadata": {"annotations": {"run.googleapis.com/invoker-iam-disabled": "true"}}}}}}),
        );
        let logs = [v2, v1];
        assert_eq!(invoker_check_attempts(&logs).len(), 2);
        // The refused v2 attempt did not change anything; the v1 replace did.
        let changes = invoker_check_changes(&logs);
        assert_eq!(changes.len(), 1);
        assert_eq!(
            changes[0].method.as_deref(),
            Some("google.cloud.run.v1.Services.ReplaceService")
        );
        let a = public_attempts(&logs, Some("s"));
        assert_eq!(a.len(), 2);
        assert!(a[0].refused() && !a[1].refused());
    }

    #[test]
    fn vpcsc_and_iap() {
        let v = entry(json!({
            "logName": "projects/p/logs/cloudaudit.googleapis.com%2Fpolicy",
            "resource": {"type": "audited_resource", "labels": {"method": "run.googleapis.com/HttpIngress", "service": "run.googleapis.com"}},
            "protoPayload": {"metadata": {"@type": "type.googleapis.com/google.cloud.audit.VpcServiceControlAuditMetadata",
                "securityPolicyInfo": {"servicePerimeterName": "accessPolicies/1/servicePerimeters/prod"},
                "violationReason": "NO_MATCHING_ACCESS_LEVEL", "vpcServiceControlsUniqueId": "ABC"}}
        }));
        let got = vpcsc_violations(&[v]);
        assert_eq!(
            got[0].perimeter.as_deref(),
            Some("accessPolicies/1/servicePerimeters/prod")
        );
        let i = entry(json!({
            "logName": "projects/p/logs/cloudaudit.googleapis.com%2Fdata_access",
            "protoPayload": {"serviceName": "iap.googleapis.com", "methodName": "AuthorizeUser", "status": {"code": 7, "message": "Permission Denied."},
                "authenticationInfo": {"principalEmail": "bob@example.com"}}
        }));
        assert_eq!(
            iap_denials(&[i])[0].principal.as_deref(),
            Some("bob@example.com")
        );
    }
}
