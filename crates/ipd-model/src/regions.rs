//! Multi-region services: one service deployed in several regions (v2
//! `multiRegionSettings.regions`, v1 annotation `run.googleapis.com/regions`). Each region is a
//! regional service with its own URLs and its own IAM policy (gcloud sets the `allUsers`
//! binding region by region), so the evidence of the region the failing request reached is
//! what decides.
//!
//! Bundle files: `service-REGION.json` / `.yaml` and `service-iam-policy-REGION.json` hold the
//! other regions' `services describe` and `get-iam-policy` outputs (`--region=REGION`); the
//! plain `service.json` / `service-iam-policy.json` are the region named on the command line.

use crate::evidence::Evidence;
use crate::facts::Facts;
use crate::gathered::Gathered;
use crate::iam::Policy;
use crate::service::{Service, deterministic_parts, is_region_name};

/// The service and its IAM policy in one more region of a multi-region service.
#[derive(Debug, Clone)]
pub struct Regional {
    pub region: String,
    pub service: Gathered<Service>,
    pub policy: Gathered<Policy>,
}

impl Regional {
    pub fn new(region: &str) -> Regional {
        Regional {
            region: region.to_string(),
            service: Gathered::missing(format!("no service-{region}.json in the bundle")),
            policy: Gathered::missing(format!("no service-iam-policy-{region}.json in the bundle")),
        }
    }
}

/// The bundle file of a region's service description.
pub fn service_file(region: &str) -> String {
    format!("service-{region}.json")
}

/// The bundle file of a region's service IAM policy.
pub fn policy_file(region: &str) -> String {
    format!("service-iam-policy-{region}.json")
}

/// `service-REGION.json|yaml|yml` → REGION.
pub fn service_file_region(name: &str) -> Option<&str> {
    let stem = name
        .strip_suffix(".json")
        .or_else(|| name.strip_suffix(".yaml"))
        .or_else(|| name.strip_suffix(".yml"))?;
    stem.strip_prefix("service-").filter(|r| is_region_name(r))
}

/// `service-iam-policy-REGION.json` → REGION.
pub fn policy_file_region(name: &str) -> Option<&str> {
    name.strip_suffix(".json")?
        .strip_prefix("service-iam-policy-")
        .filter(|r| is_region_name(r))
}

/// The region the failing request reached, as the evidence shows it: the request-log entry's
/// `resource.labels.location`, else the region in the request's URL (a deterministic
/// `SERVICE-NUMBER.REGION.run.app` URL, or a URL one region's service lists).
pub fn request_region(ev: &Evidence, facts: &Facts) -> Option<String> {
    if let Some(l) = facts
        .entry
        .as_ref()
        .and_then(|e| e.resource_label("location"))
    {
        return Some(l.to_string());
    }
    let url = facts.request.url.as_deref()?;
    let name = ev.service_name()?;
    if let Some((_, r)) = deterministic_parts(url, &name) {
        return Some(r);
    }
    let host = |u: &str| {
        u.split_once("://")
            .map(|(_, r)| r)
            .unwrap_or(u)
            .split(['/', '?'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    let wanted = host(url);
    let serves = |s: &Service| s.all_urls().any(|u| host(u) == wanted);
    if let Some(s) = ev.service.present()
        && serves(s)
    {
        return s.region.clone();
    }
    ev.regional
        .iter()
        .find(|r| r.service.present().is_some_and(serves))
        .map(|r| r.region.clone())
}

/// Evidence about the region the request reached, when that is another region of the
/// multi-region service than the one read as `service.json`: the two regions' service and
/// policy trade places, so every rule reads the region the request reached. `None` when the
/// evidence already is about that region, or holds nothing about it.
pub fn focus_on_request_region(ev: &Evidence) -> Option<Evidence> {
    let svc = ev.service.present()?;
    if !svc.is_multi_region() || ev.regional.is_empty() {
        return None;
    }
    let region = request_region(ev, &Facts::derive(ev))?;
    if svc.region.as_deref() == Some(region.as_str()) {
        return None;
    }
    let i = ev
        .regional
        .iter()
        .position(|r| r.region == region && r.service.is_present())?;
    let mut out = ev.clone();
    let other = out.regional.remove(i);
    let primary = Regional {
        region: svc.region.clone().unwrap_or_default(),
        service: std::mem::replace(&mut out.service, other.service),
        policy: std::mem::replace(&mut out.service_policy, other.policy),
    };
    out.regional.insert(i, primary);
    // The region named on the command line no longer names the evidence's service.
    out.inputs.region = Some(region);
    Some(out)
}

/// URLs of the other regions' services, for the accepted audiences.
pub fn other_region_urls(ev: &Evidence) -> Vec<String> {
    ev.regional
        .iter()
        .filter_map(|r| r.service.present())
        .flat_map(|s| s.all_urls().cloned().collect::<Vec<_>>())
        .collect()
}

/// An evidence line naming the region a finding is about, for a multi-region service.
pub fn region_line(ev: &Evidence, facts: &Facts) -> Option<String> {
    let svc = ev.service.present()?;
    if !svc.is_multi_region() {
        return None;
    }
    let here = svc.region.clone().unwrap_or_else(|| "?".into());
    let all = svc
        .regions
        .iter()
        .map(|r| format!("`{r}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let why = match request_region(ev, facts) {
        Some(r) if r == here => "the region the request reached",
        Some(_) => {
            "the region read; the request reached another region whose evidence is not in the bundle"
        }
        None => "the region read; which region the request reached is not in the evidence",
    };
    let unread: Vec<String> = svc
        .regions
        .iter()
        .filter(|r| **r != here)
        .filter(|r| {
            !ev.regional
                .iter()
                .any(|x| &x.region == *r && x.service.is_present() && x.policy.is_present())
        })
        .map(|r| format!("`{r}`"))
        .collect();
    let mut line = format!(
        "multi-region service (regions {all}): this is about region `{here}`, {why}; each region has its own IAM policy, so a grant or setting must be applied in every region"
    );
    if !unread.is_empty() {
        line.push_str(&format!("; not read for region {}", unread.join(", ")));
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_file_names() {
        assert_eq!(
            service_file_region("service-us-central1.json"),
            Some("us-central1")
        );
        assert_eq!(
            service_file_region("service-asia-east1.yaml"),
            Some("asia-east1")
        );
        assert_eq!(service_file_region("service-iam-policy.json"), None);
        assert_eq!(service_file_region("service.json"), None);
        assert_eq!(
            policy_file_region("service-iam-policy-us-central1.json"),
            Some("us-central1")
        );
        assert_eq!(policy_file_region("service-iam-policy.json"), None);
        assert_eq!(
            policy_file("europe-west1"),
            "service-iam-policy-europe-west1.json"
        );
        assert_eq!(service_file("europe-west1"), "service-europe-west1.json");
    }

    fn svc(region: &str) -> Service {
        let j = format!(
            r#"{{"name": "projects/shop-prod/locations/{region}/services/orders-api",
                "uri": "https://orders-api-123456789012.{region}.run.app",
                "multiRegionSettings": {{"regions": ["europe-west1", "us-central1"]}}}}"#
        );
        match crate::service::parse("service.json", &j) {
            Ok(crate::doc::Doc::Value(s)) => s,
            other => panic!("{other:?}"),
        }
    }

    fn policy(member: &str) -> Gathered<Policy> {
        Gathered::Present(Policy {
            bindings: vec![crate::iam::Binding {
                role: "roles/run.invoker".into(),
                members: vec![member.into()],
                condition: None,
            }],
            ..Policy::default()
        })
    }

    fn entry(region: &str) -> crate::logs::LogEntry {
        serde_json::from_value(serde_json::json!({
            "httpRequest": {"status": 403, "requestUrl": format!("https://orders-api-123456789012.{region}.run.app/x"), "latency": "0s"},
            "resource": {"type": "cloud_run_revision", "labels": {"service_name": "orders-api", "location": region, "project_id": "shop-prod"}},
            "timestamp": "2026-11-20T10:15:00Z",
            "logName": "projects/shop-prod/logs/run.googleapis.com%2Frequests"
        }))
        .unwrap()
    }

    #[test]
    fn the_region_the_request_reached_is_the_one_diagnosed() {
        let mut ev = Evidence {
            service: Gathered::Present(svc("europe-west1")),
            service_policy: policy("serviceAccount:eu@p.iam.gserviceaccount.com"),
            ..Evidence::default()
        };
        let mut us = Regional::new("us-central1");
        us.service = Gathered::Present(svc("us-central1"));
        us.policy = policy("serviceAccount:us@p.iam.gserviceaccount.com");
        ev.regional.push(us);
        ev.logs = Gathered::Present(vec![entry("us-central1")]);
        let f = focus_on_request_region(&ev).expect("focused on us-central1");
        assert_eq!(f.region().as_deref(), Some("us-central1"));
        assert_eq!(
            f.service_policy.present().unwrap().bindings[0].members[0],
            "serviceAccount:us@p.iam.gserviceaccount.com"
        );
        assert_eq!(f.regional[0].region, "europe-west1");
        let line = region_line(&f, &Facts::derive(&f)).unwrap();
        assert!(
            line.contains("about region `us-central1`, the region the request reached"),
            "{line}"
        );
        // A request to the region read needs no focus; nor does a one-region service.
        ev.logs = Gathered::Present(vec![entry("europe-west1")]);
        assert!(focus_on_request_region(&ev).is_none());
        // The other region's evidence is missing: the line says so.
        ev.regional.clear();
        ev.logs = Gathered::Present(vec![entry("us-central1")]);
        assert!(focus_on_request_region(&ev).is_none());
        let line = region_line(&ev, &Facts::derive(&ev)).unwrap();
        assert!(line.contains("not read for region `us-central1`"), "{line}");
        assert!(
            line.contains("the request reached another region"),
            "{line}"
        );
    }
}
