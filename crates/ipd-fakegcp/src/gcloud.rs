//! The methods gcloud 528 calls besides the ones invoker-doctor's live mode uses, found with
//! `gcloud ... --log-http` against this fake:
//!
//! - `gcloud run services describe|list` read Cloud Run v1 (Knative):
//!   `GET apis/serving.knative.dev/v1/namespaces/P/services[/S]` on the **regional** host
//!   (`REGION-HOST` of `CLOUDSDK_API_ENDPOINT_OVERRIDES_RUN`), answered in the v1 shape.
//! - `gcloud projects get-ancestors` calls Resource Manager v1 `POST v1/projects/P:getAncestry`
//!   (served by the handlers with `Target::ProjectAncestry`).
//!
//! The other gcloud paths (`v1/projects/P/locations/R/services/S:getIamPolicy`, CRM v1
//! `projects|organizations` and v2 `folders` `getIamPolicy`, IAM v2 attachment points encoded
//! twice) are the same methods as the live mode's and are routed to their handlers in
//! [`crate::routes::classify`].

use serde_json::{Map, Value, json};

use crate::envelope::{self, Reply};
use crate::handlers::Request;
use crate::scenario::{Identity, Scenario, Stored};

const KNATIVE: &str = "serving.knative.dev/v1";

/// The region a regional endpoint's host names (`europe-west1-fake-gcp.test:8085`): a known
/// region of the scenario's services, else any prefix that is a region name (`asia-east1-`);
/// `None` for the global host.
fn host_region(sc: &Scenario, host: Option<&str>) -> Option<String> {
    let host = host?;
    let mut regions: Vec<String> = vec![sc.identity.region.clone()];
    for v in &sc.other_services {
        if let Some(l) = v
            .get("name")
            .and_then(Value::as_str)
            .and_then(|n| n.split('/').nth(3))
        {
            regions.push(l.to_string());
        }
    }
    // The longest match wins (`us-central1` before a hypothetical `us`).
    regions.sort_by_key(|r| std::cmp::Reverse(r.len()));
    if let Some(r) = regions
        .into_iter()
        .find(|r| host.starts_with(&format!("{r}-")))
    {
        return Some(r);
    }
    // Any other region-shaped prefix (`asia-east1-`).
    host.match_indices('-')
        .map(|(i, _)| &host[..i])
        .find(|p| ipd_model::service::is_region_name(p))
        .map(str::to_string)
}

fn v1_ingress(v2: &str) -> &'static str {
    match v2 {
        "INGRESS_TRAFFIC_INTERNAL_ONLY" => "internal",
        "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER" => "internal-and-cloud-load-balancing",
        "INGRESS_TRAFFIC_NONE" => "none",
        _ => "all",
    }
}

fn v1_condition(c: &Value) -> Value {
    let status = match c.get("state").and_then(Value::as_str) {
        Some("CONDITION_SUCCEEDED") => "True",
        Some("CONDITION_FAILED") => "False",
        _ => "Unknown",
    };
    let mut m = Map::new();
    for k in ["type", "reason", "message", "lastTransitionTime"] {
        if let Some(s) = c.get(k).and_then(Value::as_str) {
            m.insert(k.into(), json!(s));
        }
    }
    m.insert("status".into(), json!(status));
    Value::Object(m)
}

/// The v1 (Knative) service gcloud prints, for an Admin API v2 resource: every field a rule
/// reads goes where Cloud Run v1 puts it (service-level `metadata.annotations` as strings,
/// `run.googleapis.com/urls` and `custom-audiences` as JSON arrays inside a string, the
/// runtime service account in `spec.template.spec.serviceAccountName`, the region as the
/// `cloud.googleapis.com/location` label, the namespace as the project number). Annotation
/// names are gcloud 528's (`googlecloudsdk/api_lib/run/service.py`, `container_resource.py`,
/// `k8s_object.py`).
pub fn v2_to_v1(v2: &Value, id: &Identity) -> Value {
    let s = |k: &str| v2.get(k).and_then(Value::as_str);
    let full = s("name").unwrap_or("");
    let segs: Vec<&str> = full.split('/').collect();
    let (region, name) = match segs.as_slice() {
        ["projects", _, "locations", l, "services", n] => (l.to_string(), n.to_string()),
        _ => (id.region.clone(), id.service.clone()),
    };
    let mut ann = Map::new();
    if let Some(a) = v2.get("annotations").and_then(Value::as_object) {
        ann.extend(a.clone());
    }
    let ingress = v1_ingress(s("ingress").unwrap_or(""));
    ann.insert("run.googleapis.com/ingress".into(), json!(ingress));
    ann.insert("run.googleapis.com/ingress-status".into(), json!(ingress));
    let flag = |k: &str| v2.get(k).and_then(Value::as_bool).unwrap_or(false);
    if flag("invokerIamDisabled") {
        ann.insert(
            "run.googleapis.com/invoker-iam-disabled".into(),
            json!("true"),
        );
    }
    if flag("defaultUriDisabled") {
        ann.insert(
            "run.googleapis.com/default-url-disabled".into(),
            json!("true"),
        );
    }
    if flag("iapEnabled") {
        ann.insert("run.googleapis.com/iap-enabled".into(), json!("true"));
    }
    if let Some(a) = v2
        .get("customAudiences")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    {
        ann.insert(
            "run.googleapis.com/custom-audiences".into(),
            json!(Value::Array(a.clone()).to_string()),
        );
    }
    // v2 `multiRegionSettings.regions` is v1 `run.googleapis.com/regions`, comma-separated as
    // gcloud 528 writes it (`command_lib/run/config_changes.py`).
    if let Some(r) = v2
        .pointer("/multiRegionSettings/regions")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())
    {
        let list: Vec<&str> = r.iter().filter_map(Value::as_str).collect();
        ann.insert("run.googleapis.com/regions".into(), json!(list.join(",")));
    }
    let mut urls: Vec<String> = Vec::new();
    for u in s("uri").into_iter().chain(
        v2.get("urls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str),
    ) {
        if !urls.iter().any(|x| x == u) {
            urls.push(u.to_string());
        }
    }
    if !urls.is_empty() {
        ann.insert(
            "run.googleapis.com/urls".into(),
            json!(json!(urls).to_string()),
        );
    }
    for (from, to) in [
        ("creator", "serving.knative.dev/creator"),
        ("lastModifier", "serving.knative.dev/lastModifier"),
        ("launchStage", "run.googleapis.com/launch-stage"),
    ] {
        if let Some(v) = s(from) {
            ann.insert(to.into(), json!(v));
        }
    }
    let mut labels = Map::new();
    labels.insert("cloud.googleapis.com/location".into(), json!(region));
    if let Some(l) = v2.get("labels").and_then(Value::as_object) {
        labels.extend(l.clone());
    }
    let mut meta = Map::new();
    meta.insert("annotations".into(), Value::Object(ann));
    if let Some(t) = s("createTime") {
        meta.insert("creationTimestamp".into(), json!(t));
    }
    if let Some(g) = s("generation").and_then(|g| g.parse::<i64>().ok()) {
        meta.insert("generation".into(), json!(g));
    }
    meta.insert("labels".into(), Value::Object(labels));
    meta.insert("name".into(), json!(name));
    meta.insert("namespace".into(), json!(id.project_number));
    meta.insert(
        "selfLink".into(),
        json!(format!(
            "/apis/serving.knative.dev/v1/namespaces/{}/services/{name}",
            id.project_number
        )),
    );
    if let Some(u) = s("uid") {
        meta.insert("uid".into(), json!(u));
    }
    let t = v2.get("template").cloned().unwrap_or(Value::Null);
    let mut rev_spec = Map::new();
    if let Some(c) = t.get("containers").and_then(Value::as_array) {
        // The fields v1 and v2 spell alike.
        let c: Vec<Value> = c
            .iter()
            .map(|k| {
                let mut m = Map::new();
                for key in ["image", "name", "ports"] {
                    if let Some(v) = k.get(key) {
                        m.insert(key.into(), v.clone());
                    }
                }
                Value::Object(m)
            })
            .collect();
        rev_spec.insert("containers".into(), json!(c));
    }
    if let Some(sa) = t.get("serviceAccount").and_then(Value::as_str) {
        rev_spec.insert("serviceAccountName".into(), json!(sa));
    }
    let mut rev_meta = Map::new();
    if let Some(r) = t.get("revision").and_then(Value::as_str) {
        rev_meta.insert("name".into(), json!(r));
    }
    if let Some(a) = t.get("annotations").and_then(Value::as_object) {
        rev_meta.insert("annotations".into(), Value::Object(a.clone()));
    }
    let mut status = Map::new();
    // v1's `status.url` is the hash URL (`.a.run.app`) when there is one.
    let main = urls
        .iter()
        .find(|u| u.ends_with(".a.run.app"))
        .or(urls.first())
        .cloned();
    if let Some(u) = &main {
        status.insert("address".into(), json!({"url": u}));
        status.insert("url".into(), json!(u));
    }
    let mut conds = Vec::new();
    if let Some(c) = v2.get("terminalCondition") {
        conds.push(v1_condition(c));
    }
    for c in v2
        .get("conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        conds.push(v1_condition(c));
    }
    if !conds.is_empty() {
        status.insert("conditions".into(), json!(conds));
    }
    for (from, to) in [
        ("latestReadyRevision", "latestReadyRevisionName"),
        ("latestCreatedRevision", "latestCreatedRevisionName"),
    ] {
        if let Some(r) = s(from).and_then(|r| r.rsplit('/').next()) {
            status.insert(to.into(), json!(r));
        }
    }
    if let Some(g) = s("observedGeneration").and_then(|g| g.parse::<i64>().ok()) {
        status.insert("observedGeneration".into(), json!(g));
    }
    json!({
        "apiVersion": KNATIVE,
        "kind": "Service",
        "metadata": Value::Object(meta),
        "spec": {
            "template": {"metadata": Value::Object(rev_meta), "spec": Value::Object(rev_spec)},
            "traffic": [{"latestRevision": true, "percent": 100}]
        },
        "status": Value::Object(status),
    })
}

/// Every service of the scenario as v1, with its region: the bundle's own v1 document where it
/// had one (as gcloud printed it), else the translation of the v2 resource.
fn v1_services(sc: &Scenario) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    match (&sc.service_v1, &sc.service) {
        (Some(v1), _) => out.push((
            sc.identity.region.clone(),
            sc.identity.service.clone(),
            v1.clone(),
        )),
        (None, Some(Stored::Value(v2))) => out.push((
            sc.identity.region.clone(),
            sc.identity.service.clone(),
            v2_to_v1(v2, &sc.identity),
        )),
        _ => {}
    }
    for v in &sc.other_services {
        if let ["projects", _, "locations", l, "services", s] = v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .split('/')
            .collect::<Vec<_>>()
            .as_slice()
        {
            out.push((l.to_string(), s.to_string(), v2_to_v1(v, &sc.identity)));
        }
    }
    out
}

fn stored_error(sc: &Scenario) -> Option<Reply> {
    match &sc.service {
        Some(Stored::Error(e)) => Some(Reply {
            status: e.status,
            body: e.body.clone(),
            headers: Vec::new(),
        }),
        _ => None,
    }
}

/// `GET apis/serving.knative.dev/v1/namespaces/NS/services/S` (regional host).
pub fn knative_get(sc: &Scenario, namespace: &str, service: &str, req: &Request<'_>) -> Reply {
    if !sc.is_project(namespace) {
        return envelope::permission_denied(
            "run.services.get",
            &format!("namespaces/{namespace}/services/{service}"),
        );
    }
    let region = host_region(sc, req.host).unwrap_or_else(|| sc.identity.region.clone());
    if region == sc.identity.region
        && service == sc.identity.service
        && let Some(e) = stored_error(sc)
    {
        return e;
    }
    match v1_services(sc)
        .into_iter()
        .find(|(l, s, _)| *l == region && s == service)
    {
        Some((_, _, v)) => Reply::ok(v),
        None => envelope::not_found(format!(
            "Resource '{service}' of kind 'SERVICE' in region '{region}' in project '{namespace}' does not exist."
        )),
    }
}

/// `GET apis/serving.knative.dev/v1/namespaces/NS/services`: the region's services on a
/// regional host, every region's on the global one.
pub fn knative_list(sc: &Scenario, namespace: &str, req: &Request<'_>) -> Reply {
    if !sc.is_project(namespace) {
        return envelope::permission_denied(
            "run.services.list",
            &format!("namespaces/{namespace}"),
        );
    }
    let region = host_region(sc, req.host);
    if region.as_deref().is_none_or(|r| r == sc.identity.region)
        && let Some(e) = stored_error(sc)
    {
        return e;
    }
    let mut items: Vec<(String, String, Value)> = v1_services(sc)
        .into_iter()
        .filter(|(l, _, _)| region.as_deref().is_none_or(|r| r == l))
        .collect();
    items.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    let items: Vec<Value> = items.into_iter().map(|(_, _, v)| v).collect();
    Reply::ok(json!({
        "apiVersion": KNATIVE,
        "items": items,
        "kind": "ServiceList",
        "metadata": {"selfLink": format!("/apis/serving.knative.dev/v1/namespaces/{namespace}/services")},
    }))
}

/// A predefined role (`gcloud iam roles describe roles/run.invoker`), from the table of roles
/// invoker-doctor knows ([`ipd_model::roles`]). `includedPermissions` lists only
/// `run.routes.invoke`, where the role has it: the fake knows no other permission, so it is a
/// partial list (the real one is longer). `None` for a role outside the table (404).
pub fn predefined_role(name: &str) -> Option<Value> {
    use ipd_model::roles::{INVOKE_PERMISSION, INVOKER_ROLES, NON_INVOKER_ROLES};
    let id = name.strip_prefix("roles/")?;
    let grants = INVOKER_ROLES.contains(&name);
    if !grants && !NON_INVOKER_ROLES.contains(&name) {
        return None;
    }
    let mut m = Map::new();
    m.insert(
        "description".into(),
        json!(format!("Predefined role {id}.")),
    );
    m.insert("etag".into(), json!("AA=="));
    if grants {
        m.insert("includedPermissions".into(), json!([INVOKE_PERMISSION]));
    }
    m.insert("name".into(), json!(name));
    m.insert("stage".into(), json!("GA"));
    m.insert("title".into(), json!(id));
    Some(Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipd_model::service::{self, Ingress};

    fn parse_v1(v: &Value) -> service::Service {
        match service::parse("service.json", &v.to_string()).unwrap() {
            ipd_model::doc::Doc::Value(s) => s,
            ipd_model::doc::Doc::Error(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn v2_to_v1_keeps_every_field_the_rules_read() {
        let v2 = json!({
            "name": "projects/shop-prod/locations/europe-west1/services/orders-api",
            "uri": "https://orders-api-123456789012.europe-west1.run.app",
            "urls": ["https://orders-api-123456789012.europe-west1.run.app", "https://orders-api-x7k-ew.a.run.app"],
            "ingress": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
            "invokerIamDisabled": true,
            "defaultUriDisabled": true,
            "iapEnabled": true,
            "customAudiences": ["https://api.shop.example.com"],
            "labels": {"goog-managed-by": "cloudfunctions"},
            "template": {"serviceAccount": "rt@shop-prod.iam.gserviceaccount.com"}
        });
        let v1 = v2_to_v1(&v2, &Identity::default());
        assert_eq!(v1["metadata"]["namespace"], "123456789012");
        let s = parse_v1(&v1);
        assert_eq!(s.format, service::ServiceFormat::KnativeV1);
        assert_eq!(s.name, "orders-api");
        assert_eq!(s.region.as_deref(), Some("europe-west1"));
        assert_eq!(s.ingress, Ingress::InternalAndCloudLoadBalancing);
        assert!(s.invoker_iam_disabled && s.default_url_disabled && s.iap_enabled);
        assert_eq!(s.custom_audiences, vec!["https://api.shop.example.com"]);
        assert!(
            s.urls
                .contains(&"https://orders-api-x7k-ew.a.run.app".to_string())
        );
        assert!(
            s.urls
                .contains(&"https://orders-api-123456789012.europe-west1.run.app".to_string())
        );
        assert_eq!(
            s.runtime_service_account.as_deref(),
            Some("rt@shop-prod.iam.gserviceaccount.com")
        );
        assert!(s.is_function());
        // Multi-region.
        let multi = json!({"name": "projects/p/locations/europe-west1/services/a",
            "multiRegionSettings": {"regions": ["europe-west1", "us-central1"]}});
        let v1 = v2_to_v1(&multi, &Identity::default());
        assert_eq!(
            v1["metadata"]["annotations"]["run.googleapis.com/regions"],
            "europe-west1,us-central1"
        );
        assert!(parse_v1(&v1).is_multi_region());
        // A plain service stays plain.
        let plain = json!({"name": "projects/p/locations/us-central1/services/a", "ingress": "INGRESS_TRAFFIC_ALL"});
        let s = parse_v1(&v2_to_v1(&plain, &Identity::default()));
        assert!(!s.invoker_iam_disabled && !s.iap_enabled && !s.default_url_disabled);
        assert_eq!(s.ingress, Ingress::All);
        assert!(s.custom_audiences.is_empty());
    }

    #[test]
    fn predefined_roles_say_whether_they_grant_invoke() {
        let inv = predefined_role("roles/run.invoker").unwrap();
        assert_eq!(inv["includedPermissions"], json!(["run.routes.invoke"]));
        assert_eq!(inv["stage"], "GA");
        let viewer = predefined_role("roles/run.viewer").unwrap();
        assert!(viewer.get("includedPermissions").is_none());
        assert!(predefined_role("roles/no.such").is_none());
        assert!(predefined_role("projects/p/roles/custom").is_none());
    }

    #[test]
    fn region_from_the_regional_host() {
        let sc = Scenario::new(Identity::default());
        assert_eq!(
            host_region(&sc, Some("europe-west1-fake-gcp.test:8085")).as_deref(),
            Some("europe-west1")
        );
        assert_eq!(host_region(&sc, Some("fake-gcp.test:8085")), None);
        assert_eq!(
            host_region(&sc, Some("asia-east1-fake-gcp.test")).as_deref(),
            Some("asia-east1")
        );
        assert_eq!(host_region(&sc, Some("127.0.0.1:8085")), None);
        assert_eq!(host_region(&sc, None), None);
    }
}
