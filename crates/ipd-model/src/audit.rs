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
        if !method
            .as_deref()
            .is_some_and(|m| m.to_ascii_lowercase().ends_with("setiampolicy"))
        {
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
}

/// Invoker-check changes in Admin Activity audit logs (v2 `invokerIamDisabled` in the request's
/// service, or the v1 annotation).
pub fn invoker_check_changes(logs: &[LogEntry]) -> Vec<InvokerCheckChange> {
    let mut out = Vec::new();
    for e in logs.iter().filter(|e| log_is(e, ACTIVITY_LOG)) {
        let Some(p) = &e.proto_payload else { continue };
        let Some(req) = p.get("request") else {
            continue;
        };
        let svc = req.get("service").unwrap_or(req);
        let v2 = svc.get("invokerIamDisabled").and_then(Value::as_bool);
        let v1 = svc
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get("run.googleapis.com/invoker-iam-disabled"))
            .and_then(Value::as_str)
            .map(|v| v.eq_ignore_ascii_case("true"));
        if let Some(disabled) = v2.or(v1) {
            out.push(InvokerCheckChange {
                time: e.time(),
                disabled,
                method: s(p, &["methodName"]),
                actor: s(p, &["authenticationInfo", "principalEmail"]),
            });
        }
    }
    out
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
