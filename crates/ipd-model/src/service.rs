//! The Cloud Run service: read from the Admin API v2 resource, the v1 (Knative) JSON of
//! `gcloud run services describe --format=json`, or the v1 YAML of `--format=export`.
//!
//! gcloud prints only v1, so every v2 field a rule reads has its v1 form here, with the
//! annotation names gcloud 528 itself writes and reads (`googlecloudsdk/api_lib/run/
//! service.py`, `container_resource.py`, `k8s_object.py`): `iapEnabled` is
//! `run.googleapis.com/iap-enabled`, `invokerIamDisabled` `run.googleapis.com/invoker-iam-disabled`,
//! `defaultUriDisabled` `run.googleapis.com/default-url-disabled`, `customAudiences`
//! `run.googleapis.com/custom-audiences` (a JSON array in a string), `ingress`
//! `run.googleapis.com/ingress` (`ingress-status` is what is in effect), `urls`
//! `run.googleapis.com/urls` (a JSON array in a string) beside `status.url` and
//! `status.address.url`. These are **service** annotations (`metadata.annotations`); the same
//! keys on the revision template (`spec.template.metadata.annotations`) configure nothing and
//! are not read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::doc::ParseError;

/// Ingress setting of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ingress {
    All,
    Internal,
    InternalAndCloudLoadBalancing,
    None,
    Unspecified,
}

impl Ingress {
    pub fn from_v2(s: &str) -> Ingress {
        match s {
            "INGRESS_TRAFFIC_ALL" => Ingress::All,
            "INGRESS_TRAFFIC_INTERNAL_ONLY" => Ingress::Internal,
            "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER" => Ingress::InternalAndCloudLoadBalancing,
            "INGRESS_TRAFFIC_NONE" => Ingress::None,
            _ => Ingress::Unspecified,
        }
    }

    pub fn from_v1(s: &str) -> Ingress {
        match s.trim() {
            "all" => Ingress::All,
            "internal" => Ingress::Internal,
            "internal-and-cloud-load-balancing" => Ingress::InternalAndCloudLoadBalancing,
            "none" => Ingress::None,
            _ => Ingress::Unspecified,
        }
    }

    /// The gcloud `--ingress` spelling.
    pub fn gcloud(self) -> &'static str {
        match self {
            Ingress::All => "all",
            Ingress::Internal => "internal",
            Ingress::InternalAndCloudLoadBalancing => "internal-and-cloud-load-balancing",
            Ingress::None => "none",
            Ingress::Unspecified => "unspecified",
        }
    }

    /// Whether requests from the internet to the `run.app` URL are let through.
    pub fn admits_internet(self) -> bool {
        matches!(self, Ingress::All | Ingress::Unspecified)
    }
}

/// Which format the service description came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceFormat {
    AdminV2,
    KnativeV1,
}

/// What the rules need to know about a service, whatever format it was read from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    pub name: String,
    /// Project ID or number, as the source gave it.
    pub project: Option<String>,
    pub project_number: Option<String>,
    pub region: Option<String>,
    /// Every URL the service answers on (main URL first), deduplicated.
    pub urls: Vec<String>,
    /// URLs derived rather than read (the deterministic `SERVICE-NUMBER.REGION.run.app` form).
    pub derived_urls: Vec<String>,
    pub custom_audiences: Vec<String>,
    pub invoker_iam_disabled: bool,
    pub ingress: Ingress,
    pub default_url_disabled: bool,
    pub iap_enabled: bool,
    pub runtime_service_account: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub format: ServiceFormat,
    /// Every region of a multi-region service (v2 `multiRegionSettings.regions`, v1
    /// annotation `run.googleapis.com/regions`), primary included; empty for a one-region
    /// service.
    pub regions: Vec<String>,
}

impl Service {
    /// True for a Cloud Functions (2nd gen) function served by this Cloud Run service.
    pub fn is_function(&self) -> bool {
        self.labels
            .get("goog-managed-by")
            .is_some_and(|v| v == "cloudfunctions")
            || self.urls.iter().any(|u| u.contains(".cloudfunctions.net"))
    }

    /// Whether the service is deployed in more than one region.
    pub fn is_multi_region(&self) -> bool {
        self.regions.len() > 1
    }

    /// Every URL accepted as an audience, read or derived.
    pub fn all_urls(&self) -> impl Iterator<Item = &String> {
        self.urls.iter().chain(self.derived_urls.iter())
    }

    /// Parses a document already read as JSON/YAML into a [`Service`].
    pub fn from_raw(file: &str, raw: RawService) -> Result<Service, ParseError> {
        if raw
            .api_version
            .as_deref()
            .is_some_and(|a| a.contains("serving.knative.dev"))
            || raw.metadata.is_some()
        {
            from_v1(file, raw)
        } else {
            from_v2(file, raw)
        }
    }
}

/// The union of the v1 and v2 fields we read. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawService {
    // v1 (Knative)
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub metadata: Option<ObjectMeta>,
    pub spec: Option<V1Spec>,
    pub status: Option<V1Status>,
    // v2
    pub name: Option<String>,
    pub uri: Option<String>,
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub custom_audiences: Vec<String>,
    pub invoker_iam_disabled: Option<bool>,
    pub ingress: Option<String>,
    pub default_uri_disabled: Option<bool>,
    pub iap_enabled: Option<bool>,
    pub template: Option<V2Template>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub multi_region_settings: Option<MultiRegionSettings>,
}

/// v2 `GoogleCloudRunV2MultiRegionSettings`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MultiRegionSettings {
    #[serde(default)]
    pub regions: Vec<String>,
    pub multi_region_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ObjectMeta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct V1Spec {
    pub template: Option<V1Template>,
}

#[derive(Debug, Default, Deserialize)]
pub struct V1Template {
    /// Revision annotations: never the service's settings.
    pub metadata: Option<ObjectMeta>,
    pub spec: Option<V1RevisionSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V1RevisionSpec {
    pub service_account_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct V1Status {
    pub url: Option<String>,
    pub address: Option<V1Address>,
}

#[derive(Debug, Default, Deserialize)]
pub struct V1Address {
    pub url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V2Template {
    pub service_account: Option<String>,
}

fn push_unique(v: &mut Vec<String>, s: &str) {
    let s = s.trim();
    if !s.is_empty() && !v.iter().any(|x| x == s) {
        v.push(s.to_string());
    }
}

fn json_string_list(file: &str, key: &str, value: &str) -> Result<Vec<String>, ParseError> {
    serde_json::from_str::<Vec<String>>(value).map_err(|e| {
        ParseError::new(
            file,
            format!("annotation `{key}` is not a JSON array of strings ({e}): {value:?}"),
        )
    })
}

fn is_true(s: &str) -> bool {
    s.trim().eq_ignore_ascii_case("true")
}

fn from_v1(file: &str, raw: RawService) -> Result<Service, ParseError> {
    let meta = raw.metadata.unwrap_or_default();
    let name = meta
        .name
        .clone()
        .ok_or_else(|| ParseError::new(file, "v1 service has no `metadata.name`"))?;
    let ann = &meta.annotations;
    let mut urls = Vec::new();
    if let Some(st) = &raw.status {
        if let Some(u) = &st.url {
            push_unique(&mut urls, u);
        }
        if let Some(u) = st.address.as_ref().and_then(|a| a.url.as_ref()) {
            push_unique(&mut urls, u);
        }
    }
    if let Some(v) = ann.get("run.googleapis.com/urls") {
        for u in json_string_list(file, "run.googleapis.com/urls", v)? {
            push_unique(&mut urls, &u);
        }
    }
    let custom_audiences = match ann.get("run.googleapis.com/custom-audiences") {
        Some(v) => json_string_list(file, "run.googleapis.com/custom-audiences", v)?,
        None => vec![],
    };
    let ingress = ann
        .get("run.googleapis.com/ingress-status")
        .or_else(|| ann.get("run.googleapis.com/ingress"))
        .map(|s| Ingress::from_v1(s))
        .unwrap_or(Ingress::Unspecified);
    let project = meta.namespace.clone();
    let region = meta.labels.get("cloud.googleapis.com/location").cloned();
    // gcloud writes the regions as a comma-separated list (`SetRegionsAnnotationChange`).
    let regions = ann
        .get("run.googleapis.com/regions")
        .map(|v| region_list(file, v))
        .transpose()?
        .unwrap_or_default();
    let mut svc = Service {
        name,
        project_number: project
            .clone()
            .filter(|p| p.chars().all(|c| c.is_ascii_digit())),
        project,
        region,
        urls,
        derived_urls: vec![],
        custom_audiences,
        invoker_iam_disabled: ann
            .get("run.googleapis.com/invoker-iam-disabled")
            .is_some_and(|v| is_true(v)),
        ingress,
        default_url_disabled: ann
            .get("run.googleapis.com/default-url-disabled")
            .is_some_and(|v| is_true(v)),
        iap_enabled: ann
            .get("run.googleapis.com/iap-enabled")
            .is_some_and(|v| is_true(v)),
        runtime_service_account: raw
            .spec
            .and_then(|s| s.template)
            .and_then(|t| t.spec)
            .and_then(|s| s.service_account_name),
        labels: meta.labels,
        format: ServiceFormat::KnativeV1,
        regions,
    };
    finish(&mut svc);
    Ok(svc)
}

fn from_v2(file: &str, raw: RawService) -> Result<Service, ParseError> {
    let full = raw.name.clone().ok_or_else(|| {
        ParseError::new(
            file,
            "service has neither `name` (Admin API v2) nor `metadata` (v1)",
        )
    })?;
    let segs: Vec<&str> = full.split('/').collect();
    let (project, region, name) = match segs.as_slice() {
        ["projects", p, "locations", l, "services", s] => {
            (Some(p.to_string()), Some(l.to_string()), s.to_string())
        }
        _ => (None, None, full.clone()),
    };
    let mut urls = Vec::new();
    if let Some(u) = &raw.uri {
        push_unique(&mut urls, u);
    }
    for u in &raw.urls {
        push_unique(&mut urls, u);
    }
    let mut svc = Service {
        name,
        project_number: project
            .clone()
            .filter(|p| p.chars().all(|c| c.is_ascii_digit())),
        project,
        region,
        urls,
        derived_urls: vec![],
        custom_audiences: raw.custom_audiences,
        invoker_iam_disabled: raw.invoker_iam_disabled.unwrap_or(false),
        ingress: raw
            .ingress
            .as_deref()
            .map(Ingress::from_v2)
            .unwrap_or(Ingress::Unspecified),
        default_url_disabled: raw.default_uri_disabled.unwrap_or(false),
        iap_enabled: raw.iap_enabled.unwrap_or(false),
        runtime_service_account: raw.template.and_then(|t| t.service_account),
        labels: raw.labels,
        format: ServiceFormat::AdminV2,
        regions: raw
            .multi_region_settings
            .map(|m| {
                let mut v = Vec::new();
                for r in &m.regions {
                    push_unique(&mut v, r);
                }
                v
            })
            .unwrap_or_default(),
    };
    finish(&mut svc);
    Ok(svc)
}

/// Fills the project number from a deterministic URL, and derives that URL when only the
/// number is known.
fn finish(svc: &mut Service) {
    if svc.project_number.is_none() {
        svc.project_number = svc
            .urls
            .iter()
            .find_map(|u| deterministic_parts(u, &svc.name).map(|(n, _)| n));
    }
    if svc.region.is_none() {
        svc.region = svc
            .urls
            .iter()
            .find_map(|u| deterministic_parts(u, &svc.name).map(|(_, r)| r));
    }
    if let (Some(num), Some(region)) = (&svc.project_number, &svc.region) {
        let det = format!("https://{}-{}.{}.run.app", svc.name, num, region);
        if !svc.urls.contains(&det) {
            svc.derived_urls.push(det);
        }
    }
    // A multi-region service answers in every region, each on its own deterministic URL.
    if let Some(num) = &svc.project_number {
        for r in svc.regions.clone() {
            let det = format!("https://{}-{}.{}.run.app", svc.name, num, r);
            if !svc.urls.contains(&det) && !svc.derived_urls.contains(&det) {
                svc.derived_urls.push(det);
            }
        }
    }
}

/// `run.googleapis.com/regions`: `europe-west1,us-central1` (gcloud's form), or a JSON array.
fn region_list(file: &str, v: &str) -> Result<Vec<String>, ParseError> {
    let items = if v.trim_start().starts_with('[') {
        json_string_list(file, "run.googleapis.com/regions", v)?
    } else {
        v.split(',').map(str::to_string).collect()
    };
    let mut out = Vec::new();
    for r in items {
        let r = r.trim();
        if r.is_empty() {
            continue;
        }
        if !is_region_name(r) {
            return Err(ParseError::new(
                file,
                format!(
                    "annotation `run.googleapis.com/regions` names `{r}`, which is not a region (like `europe-west1`): {v:?}"
                ),
            ));
        }
        push_unique(&mut out, r);
    }
    Ok(out)
}

/// A Google Cloud region name: `AREA-LOCATIONn`, like `europe-west1` or
/// `northamerica-northeast2`.
pub fn is_region_name(s: &str) -> bool {
    let Some((area, loc)) = s.split_once('-') else {
        return false;
    };
    let letters = loc.trim_end_matches(|c: char| c.is_ascii_digit());
    !area.is_empty()
        && area.chars().all(|c| c.is_ascii_lowercase())
        && !letters.is_empty()
        && letters.len() < loc.len()
        && letters.chars().all(|c| c.is_ascii_lowercase())
}

/// `https://SERVICE-NUMBER.REGION.run.app` → (NUMBER, REGION).
pub fn deterministic_parts(url: &str, service: &str) -> Option<(String, String)> {
    let host = url.strip_prefix("https://")?.split('/').next()?;
    let h = crate::paste::ids::run_host(host)?;
    (h.service == service)
        .then_some(())
        .and_then(|_| Some((h.project_number?, h.region?)))
}

/// Parses the text of `service.json` / `service.yaml`.
pub fn parse(file: &str, text: &str) -> Result<crate::doc::Doc<Service>, ParseError> {
    match crate::doc::parse::<RawService>(file, text)? {
        crate::doc::Doc::Value(raw) => Service::from_raw(file, raw).map(crate::doc::Doc::Value),
        crate::doc::Doc::Error(e) => Ok(crate::doc::Doc::Error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::Doc;

    fn ok(file: &str, text: &str) -> Service {
        match parse(file, text).unwrap() {
            Doc::Value(s) => s,
            Doc::Error(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn v2_real_gcpdiag_shape() {
        let text = include_str!("../testdata/run-v2-services-list.gcpdiag-cloudrun1.json");
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        let one = v["services"][0].to_string();
        let s = ok("service.json", &one);
        assert_eq!(s.name, "cloudrun1");
        assert_eq!(s.project.as_deref(), Some("gcpdiag-cloudrun1-aaaa"));
        assert_eq!(s.region.as_deref(), Some("us-central1"));
        assert_eq!(
            s.urls,
            vec!["https://cloudrun1-vavezhxkqq-uc.a.run.app".to_string()]
        );
        assert_eq!(s.ingress, Ingress::All);
        assert!(!s.invoker_iam_disabled);
    }

    #[test]
    fn v1_yaml_export_annotations_are_strings() {
        let y = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  annotations:\n    run.googleapis.com/invoker-iam-disabled: 'true'\n    run.googleapis.com/ingress: internal\n    run.googleapis.com/custom-audiences: '[\"https://api.example.com\"]'\n  labels:\n    cloud.googleapis.com/location: europe-west1\n  name: api\n  namespace: '123456789012'\n";
        let s = ok("service.yaml", y);
        assert!(s.invoker_iam_disabled);
        assert_eq!(s.ingress, Ingress::Internal);
        assert_eq!(
            s.custom_audiences,
            vec!["https://api.example.com".to_string()]
        );
        assert_eq!(
            s.derived_urls,
            vec!["https://api-123456789012.europe-west1.run.app".to_string()]
        );
        assert_eq!(s.format, ServiceFormat::KnativeV1);
    }

    #[test]
    fn google_doc_snippet_parses() {
        let y = include_str!(
            "../testdata/run-v1-knative-service-invoker-iam-disabled.google-doc-snippet.yaml"
        );
        let s = ok("service.yaml", y);
        assert!(s.invoker_iam_disabled);
        assert_eq!(s.name, "SERVICE_NAME");
    }

    #[test]
    fn v1_iap_annotation_is_read_from_the_service_only() {
        let on_service = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  annotations:\n    run.googleapis.com/iap-enabled: 'true'\n  name: api\n";
        assert!(ok("service.yaml", on_service).iap_enabled);
        let off = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  annotations:\n    run.googleapis.com/iap-enabled: 'false'\n  name: api\n";
        assert!(!ok("service.yaml", off).iap_enabled);
        // On the revision template these keys configure nothing: a distractor.
        let on_template = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: api\nspec:\n  template:\n    metadata:\n      annotations:\n        run.googleapis.com/iap-enabled: 'true'\n        run.googleapis.com/invoker-iam-disabled: 'true'\n        run.googleapis.com/ingress: internal\n        run.googleapis.com/default-url-disabled: 'true'\n        run.googleapis.com/custom-audiences: '[\"https://x\"]'\n";
        let s = ok("service.yaml", on_template);
        assert!(!s.iap_enabled && !s.invoker_iam_disabled && !s.default_url_disabled);
        assert_eq!(s.ingress, Ingress::Unspecified);
        assert!(s.custom_audiences.is_empty());
    }

    /// What gcloud 528 prints (`gcloud run services describe --format=json` and
    /// `--format=export`) for the Cloud Run v1 services ipd-fakegcp serves: made with the real
    /// gcloud against the fake (testdata/gcloud-528/README.md).
    #[test]
    fn gcloud_528_v1_output() {
        let iap_json = ok(
            "service.json",
            include_str!("../testdata/gcloud-528/describe-iap-enabled.json"),
        );
        let iap_yaml = ok(
            "service.yaml",
            include_str!("../testdata/gcloud-528/export-iap-enabled.yaml"),
        );
        for s in [&iap_json, &iap_yaml] {
            assert_eq!(s.format, ServiceFormat::KnativeV1);
            assert!(s.iap_enabled, "{s:?}");
            assert!(!s.invoker_iam_disabled);
            assert_eq!(s.ingress, Ingress::All);
            assert_eq!(s.name, "orders-api");
            assert_eq!(s.project_number.as_deref(), Some("123456789012"));
            assert_eq!(s.region.as_deref(), Some("europe-west1"));
        }
        assert!(
            iap_json
                .urls
                .contains(&"https://orders-api-x7kq2mzb4a-ew.a.run.app".to_string())
        );
        let aud = ok(
            "service.json",
            include_str!("../testdata/gcloud-528/describe-custom-audience.json"),
        );
        assert_eq!(
            aud.custom_audiences,
            vec!["https://orders.shop.example.com".to_string()]
        );
        assert!(!aud.iap_enabled);
        let aud_yaml = ok(
            "service.yaml",
            include_str!("../testdata/gcloud-528/export-custom-audience.yaml"),
        );
        assert_eq!(aud_yaml.custom_audiences, aud.custom_audiences);
        assert_eq!(aud.ingress, Ingress::InternalAndCloudLoadBalancing);
        assert_eq!(aud_yaml.ingress, Ingress::InternalAndCloudLoadBalancing);
        for text in [
            include_str!("../testdata/gcloud-528/describe-default-url-disabled.json"),
            include_str!("../testdata/gcloud-528/export-default-url-disabled.yaml"),
        ] {
            let s = ok("service.yaml", text);
            assert!(s.default_url_disabled);
            assert_eq!(s.ingress, Ingress::All);
        }
        for text in [
            include_str!("../testdata/gcloud-528/describe-multi-region.json"),
            include_str!("../testdata/gcloud-528/export-multi-region.yaml"),
        ] {
            let s = ok("service.yaml", text);
            assert!(s.is_multi_region(), "{s:?}");
            assert_eq!(
                s.regions,
                vec!["europe-west1".to_string(), "us-central1".to_string()]
            );
        }
        for text in [
            include_str!("../testdata/gcloud-528/describe-invoker-iam-disabled.json"),
            include_str!("../testdata/gcloud-528/export-invoker-iam-disabled.yaml"),
        ] {
            let s = ok("service.json", text);
            assert!(s.invoker_iam_disabled);
            assert!(!s.iap_enabled && !s.default_url_disabled);
        }
    }

    #[test]
    fn bad_custom_audiences_annotation_is_an_error() {
        let y = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: api\n  annotations:\n    run.googleapis.com/custom-audiences: 'https://x'\n";
        let e = parse("service.yaml", y).unwrap_err();
        assert!(e.message.contains("custom-audiences"), "{e}");
    }

    #[test]
    fn deterministic_url() {
        assert_eq!(
            deterministic_parts(
                "https://orders-api-123.europe-west1.run.app/x",
                "orders-api"
            ),
            Some(("123".into(), "europe-west1".into()))
        );
        assert_eq!(
            deterministic_parts("https://orders-api-x7k-ew.a.run.app", "orders-api"),
            None
        );
    }

    #[test]
    fn multi_region_v2_settings_and_every_regions_url() {
        let j = r#"{"name": "projects/shop-prod/locations/europe-west1/services/orders-api",
            "uri": "https://orders-api-123456789012.europe-west1.run.app",
            "multiRegionSettings": {"regions": ["europe-west1", "us-central1"], "multiRegionId": "3f9c1a27"}}"#;
        let s = ok("service.json", j);
        assert!(s.is_multi_region());
        assert_eq!(s.regions, vec!["europe-west1", "us-central1"]);
        assert!(
            s.all_urls()
                .any(|u| u == "https://orders-api-123456789012.us-central1.run.app"),
            "{:?}",
            s.derived_urls
        );
        let one = ok(
            "service.json",
            r#"{"name": "projects/p/locations/europe-west1/services/a"}"#,
        );
        assert!(!one.is_multi_region() && one.regions.is_empty());
    }

    #[test]
    fn multi_region_v1_annotation_in_json_and_export_yaml() {
        // gcloud writes the annotation as a comma-separated list.
        let y = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  annotations:\n    run.googleapis.com/regions: europe-west1,us-central1\n  labels:\n    cloud.googleapis.com/location: europe-west1\n  name: api\n  namespace: '123456789012'\n";
        let s = ok("service.yaml", y);
        assert_eq!(s.regions, vec!["europe-west1", "us-central1"]);
        assert!(
            s.derived_urls
                .contains(&"https://api-123456789012.us-central1.run.app".to_string())
        );
        let j = r#"{"apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": "api", "namespace": "123456789012",
              "annotations": {"run.googleapis.com/regions": "us-central1, asia-east1"}}}"#;
        assert_eq!(
            ok("service.json", j).regions,
            vec!["us-central1", "asia-east1"]
        );
        let bad = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: api\n  annotations:\n    run.googleapis.com/regions: 'europe-west1;us-central1'\n";
        let e = parse("service.yaml", bad).unwrap_err();
        assert!(e.message.contains("run.googleapis.com/regions"), "{e}");
    }

    #[test]
    fn region_names() {
        for r in [
            "europe-west1",
            "us-central1",
            "northamerica-northeast2",
            "me-central2",
        ] {
            assert!(is_region_name(r), "{r}");
        }
        for r in [
            "iam-policy-us-central1",
            "europe",
            "west1",
            "Europe-west1",
            "us-central",
            "-",
        ] {
            assert!(!is_region_name(r), "{r}");
        }
    }
}
