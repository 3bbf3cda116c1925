//! The one Logging query of `incidents`, per project: the gate's refusals (request logs with
//! status 401/403/404), VPC Service Controls refusals of `run.googleapis.com/HttpIngress`,
//! IAP denials, and the Admin Activity changes that can cause them, over a time window, newest
//! first, in pages of [`IncidentQuery::page_size`] up to [`IncidentQuery::max_entries`]
//! entries. Through the same client as every other read (retries, the trace, endpoint
//! overrides); a refusal or failure is returned as the [`Failure`] it is.

use ipd_model::audit::{ACTIVITY_LOG, DATA_ACCESS_LOG, HTTP_INGRESS_METHOD, POLICY_LOG};
use ipd_model::logs::REQUEST_LOG_SUFFIX;
use ipd_model::time::Timestamp;
use serde_json::{Value, json};

use crate::gather::{Gatherer, Settings, list_entries, quote, rfc3339};
use crate::http::{BadName, Failure, check_name};

/// What to read.
#[derive(Debug, Clone)]
pub struct IncidentQuery {
    pub from: Timestamp,
    pub to: Timestamp,
    /// Admin Activity entries are read from this long before `from`.
    pub lookback: chrono::Duration,
    /// Only this service's refusals and changes.
    pub service: Option<String>,
    pub page_size: u32,
    /// Entries read at most (the newest are kept).
    pub max_entries: u32,
}

/// What one project's query returned.
#[derive(Debug)]
pub struct IncidentRead {
    /// The entries (a JSON array), newest first, or the failure.
    pub entries: Result<Value, Failure>,
    /// The cap was reached: older entries were not read.
    pub capped: bool,
    /// `entries:list` requests made.
    pub calls: u32,
}

/// The filter of one project's query (Logging query language; `OR` binds tighter than `AND`,
/// so every branch is parenthesized).
pub fn incident_filter(project: &str, q: &IncidentQuery) -> String {
    let p = quote(project);
    let from = rfc3339(q.from);
    let audit_from = rfc3339(q.from - q.lookback);
    let svc_label = q
        .service
        .as_deref()
        .map(|s| format!(" resource.labels.service_name=\"{}\"", quote(s)))
        .unwrap_or_default();
    let svc_res = q
        .service
        .as_deref()
        .map(|s| format!(" protoPayload.resourceName:\"/services/{}\"", quote(s)))
        .unwrap_or_default();
    format!(
        "timestamp<=\"{to}\"\n(\
(resource.type=\"cloud_run_revision\" logName=\"projects/{p}{REQUEST_LOG_SUFFIX}\" httpRequest.status=(401 OR 403 OR 404) timestamp>=\"{from}\"{svc_label}) OR \
(logName=\"projects/{p}/logs/{POLICY_LOG}\" resource.labels.method=\"{HTTP_INGRESS_METHOD}\" timestamp>=\"{from}\") OR \
(logName=\"projects/{p}/logs/{DATA_ACCESS_LOG}\" protoPayload.serviceName=\"iap.googleapis.com\" protoPayload.status.code=7 timestamp>=\"{from}\") OR \
(logName=\"projects/{p}/logs/{ACTIVITY_LOG}\" timestamp>=\"{audit_from}\" (\
(protoPayload.methodName:\"SetIamPolicy\"{svc_or_all}) OR \
(protoPayload.serviceName=\"run.googleapis.com\" (protoPayload.methodName:\"UpdateService\" OR protoPayload.methodName:\"ReplaceService\" OR protoPayload.methodName:\"CreateService\"){svc_res}) OR \
(protoPayload.serviceName=\"iam.googleapis.com\" (protoPayload.methodName:\"ServiceAccount\" OR protoPayload.methodName:\"google.iam.v2.Policies\")) OR \
protoPayload.serviceName=\"orgpolicy.googleapis.com\" OR protoPayload.methodName:\"SetOrgPolicy\")))",
        to = rfc3339(q.to),
        // With --service: the service's own policy, and every policy above it.
        svc_or_all = match q.service.as_deref() {
            Some(s) => format!(
                " (protoPayload.resourceName:\"/services/{}\" OR protoPayload.serviceName=\"cloudresourcemanager.googleapis.com\")",
                quote(s)
            ),
            None => String::new(),
        },
    )
}

impl Gatherer {
    /// Reads one project's refusals and changes in the window (one bounded query, paged).
    pub async fn read_incidents(
        &self,
        project: &str,
        q: &IncidentQuery,
    ) -> Result<IncidentRead, BadName> {
        check_name(&format!("projects/{project}"))?;
        if project.contains('/') {
            return Err(BadName(project.to_string()));
        }
        let page = q.page_size.clamp(1, 1000);
        let pages = q.max_entries.div_ceil(page).max(1);
        let settings = Settings {
            log_page_size: page,
            max_log_pages: pages,
            // Empty "still searching" pages are allowed as many again.
            max_log_requests: pages * 2 + 2,
            ..self.settings().clone()
        };
        let body = json!({
            "resourceNames": [format!("projects/{project}")],
            "filter": incident_filter(project, q),
            "orderBy": "timestamp desc",
            "pageSize": page,
        });
        let (r, calls) = list_entries(self.client(), body, &settings, 0).await;
        let (entries, capped) = match r {
            Ok(Value::Array(mut a)) => {
                let capped = a.len() >= (pages * page) as usize;
                a.truncate(q.max_entries as usize);
                (Ok(Value::Array(a)), capped)
            }
            Ok(other) => (Ok(other), false),
            Err(f) => (Err(f), false),
        };
        Ok(IncidentRead {
            entries,
            capped,
            calls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_is_bounded_and_parenthesized() {
        let t = |s| ipd_model::time::parse_rfc3339(s).unwrap();
        let q = IncidentQuery {
            from: t("2026-11-20T10:00:00Z"),
            to: t("2026-11-20T11:00:00Z"),
            lookback: chrono::Duration::minutes(30),
            service: Some("orders-api".into()),
            page_size: 1000,
            max_entries: 5000,
        };
        let f = incident_filter("shop-prod", &q);
        assert!(f.starts_with("timestamp<=\"2026-11-20T11:00:00Z\"\n("));
        assert!(f.contains("httpRequest.status=(401 OR 403 OR 404) timestamp>=\"2026-11-20T10:00:00Z\" resource.labels.service_name=\"orders-api\""));
        assert!(f.contains(
            "cloudaudit.googleapis.com%2Factivity\" timestamp>=\"2026-11-20T09:30:00Z\""
        ));
        assert!(f.contains("logName=\"projects/shop-prod/logs/run.googleapis.com%2Frequests\""));
        assert_eq!(f.matches('(').count(), f.matches(')').count());
    }
}
