//! Turning bundle shapes into what the APIs answer: v1 Knative service → Admin API v2
//! resource, conditional policy → v1 `_withcond_` form, legacy org policy → Org Policy v2.

use ipd_model::service::{Ingress, Service};
use serde_json::{Map, Value, json};

use crate::scenario::Identity;

/// Percent-decodes a path segment (`%2F` → `/`); malformed escapes are kept as they are.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The attachment point of an IAM v2 policy name as the API writes it (`/` as `%2F`).
pub fn encode_attachment(decoded: &str) -> String {
    decoded.replace('%', "%25").replace('/', "%2F")
}

fn is_system_key(k: &str) -> bool {
    k.starts_with("run.googleapis.com/")
        || k.starts_with("serving.knative.dev/")
        || k.starts_with("cloud.googleapis.com/")
        || k.starts_with("client.knative.dev/")
        || k.starts_with("autoscaling.knative.dev/")
}

fn ingress_v2(i: Ingress, annotated: bool) -> &'static str {
    match i {
        Ingress::All => "INGRESS_TRAFFIC_ALL",
        Ingress::Internal => "INGRESS_TRAFFIC_INTERNAL_ONLY",
        Ingress::InternalAndCloudLoadBalancing => "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
        Ingress::None => "INGRESS_TRAFFIC_NONE",
        // v1 without the annotation means the default, all traffic.
        Ingress::Unspecified if !annotated => "INGRESS_TRAFFIC_ALL",
        Ingress::Unspecified => "INGRESS_TRAFFIC_UNSPECIFIED",
    }
}

fn str_at<'v>(v: &'v Value, path: &[&str]) -> Option<&'v str> {
    path.iter()
        .try_fold(v, |acc, k| acc.get(*k))
        .and_then(Value::as_str)
}

fn condition_state(status: &str) -> &'static str {
    match status {
        "True" => "CONDITION_SUCCEEDED",
        "False" => "CONDITION_FAILED",
        "Unknown" => "CONDITION_RECONCILING",
        _ => "STATE_UNSPECIFIED",
    }
}

fn v2_condition(c: &Value) -> Value {
    let mut m = Map::new();
    for (from, to) in [
        ("type", "type"),
        ("reason", "reason"),
        ("message", "message"),
        ("lastTransitionTime", "lastTransitionTime"),
    ] {
        if let Some(s) = c.get(from).and_then(Value::as_str) {
            m.insert(to.into(), json!(s));
        }
    }
    m.insert(
        "state".into(),
        json!(condition_state(
            c.get("status").and_then(Value::as_str).unwrap_or("")
        )),
    );
    if let Some(s) = c.get("severity").and_then(Value::as_str) {
        m.insert("severity".into(), json!(s.to_ascii_uppercase()));
    }
    Value::Object(m)
}

/// The Admin API v2 resource for a service read from v1 (Knative) JSON/YAML.
pub fn v1_to_v2(svc: &Service, raw: &Value, id: &Identity) -> Value {
    let region = svc.region.clone().unwrap_or_else(|| id.region.clone());
    let full = format!(
        "projects/{}/locations/{}/services/{}",
        id.project_id, region, svc.name
    );
    let meta = raw.get("metadata").cloned().unwrap_or(Value::Null);
    let ann = meta
        .get("annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let ann_str = |k: &str| ann.get(k).and_then(Value::as_str);
    let mut out = Map::new();
    out.insert("name".into(), json!(full));
    if let Some(uid) = meta.get("uid").and_then(Value::as_str) {
        out.insert("uid".into(), json!(uid));
    }
    if let Some(g) = meta.get("generation").and_then(Value::as_i64) {
        out.insert("generation".into(), json!(g.to_string()));
    }
    let labels: Map<String, Value> = svc
        .labels
        .iter()
        .filter(|(k, _)| !is_system_key(k))
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    if !labels.is_empty() {
        out.insert("labels".into(), Value::Object(labels));
    }
    let user_ann: Map<String, Value> = ann
        .iter()
        .filter(|(k, _)| !is_system_key(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !user_ann.is_empty() {
        out.insert("annotations".into(), Value::Object(user_ann));
    }
    if let Some(t) = meta.get("creationTimestamp").and_then(Value::as_str) {
        out.insert("createTime".into(), json!(t));
    }
    if let Some(c) = ann_str("serving.knative.dev/creator") {
        out.insert("creator".into(), json!(c));
    }
    if let Some(c) = ann_str("serving.knative.dev/lastModifier") {
        out.insert("lastModifier".into(), json!(c));
    }
    if let Some(s) = ann_str("run.googleapis.com/launch-stage") {
        out.insert("launchStage".into(), json!(s));
    }
    let annotated = ann.contains_key("run.googleapis.com/ingress")
        || ann.contains_key("run.googleapis.com/ingress-status");
    out.insert("ingress".into(), json!(ingress_v2(svc.ingress, annotated)));
    if svc.invoker_iam_disabled {
        out.insert("invokerIamDisabled".into(), json!(true));
    }
    if svc.default_url_disabled {
        out.insert("defaultUriDisabled".into(), json!(true));
    }
    let iap = svc.iap_enabled
        || ann_str("run.googleapis.com/iap-enabled")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if iap {
        out.insert("iapEnabled".into(), json!(true));
    }
    if !svc.custom_audiences.is_empty() {
        out.insert("customAudiences".into(), json!(svc.custom_audiences));
    }
    // v1 `run.googleapis.com/regions` is v2 `multiRegionSettings.regions`.
    if !svc.regions.is_empty() {
        out.insert(
            "multiRegionSettings".into(),
            json!({"regions": svc.regions}),
        );
    }
    let mut template = Map::new();
    if let Some(sa) = &svc.runtime_service_account {
        template.insert("serviceAccount".into(), json!(sa));
    }
    if let Some(n) = str_at(raw, &["spec", "template", "metadata", "name"]) {
        template.insert("revision".into(), json!(n));
    }
    if let Some(c) = raw
        .pointer("/spec/template/spec/containers")
        .filter(|c| c.is_array())
    {
        let containers: Vec<Value> = c
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| {
                let mut m = Map::new();
                for key in ["name", "image"] {
                    if let Some(s) = k.get(key).and_then(Value::as_str) {
                        m.insert(key.into(), json!(s));
                    }
                }
                Value::Object(m)
            })
            .collect();
        template.insert("containers".into(), json!(containers));
    }
    out.insert("template".into(), Value::Object(template));
    let mut urls: Vec<String> = svc.urls.clone();
    let deterministic = format!(
        "https://{}-{}.{}.run.app",
        svc.name, id.project_number, region
    );
    for u in svc
        .derived_urls
        .iter()
        .chain(std::iter::once(&deterministic))
    {
        if !urls.contains(u) {
            urls.push(u.clone());
        }
    }
    if let Some(first) = urls.first() {
        out.insert("uri".into(), json!(first));
    }
    out.insert("urls".into(), json!(urls));
    if let Some(g) = raw
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64)
    {
        out.insert("observedGeneration".into(), json!(g.to_string()));
    }
    for (from, to) in [
        ("latestReadyRevisionName", "latestReadyRevision"),
        ("latestCreatedRevisionName", "latestCreatedRevision"),
    ] {
        if let Some(r) = raw
            .get("status")
            .and_then(|s| s.get(from))
            .and_then(Value::as_str)
        {
            out.insert(to.into(), json!(format!("{full}/revisions/{r}")));
        }
    }
    if let Some(conds) = raw.pointer("/status/conditions").and_then(Value::as_array) {
        let mut others = Vec::new();
        for c in conds {
            if c.get("type").and_then(Value::as_str) == Some("Ready") {
                out.insert("terminalCondition".into(), v2_condition(c));
            } else {
                others.push(v2_condition(c));
            }
        }
        if !others.is_empty() {
            out.insert("conditions".into(), json!(others));
        }
    }
    Value::Object(out)
}

/// A short stable hex digest (FNV-1a), for `_withcond_` suffixes.
fn digest_hex(s: &str, chars: usize) -> String {
    let mut out = String::new();
    let mut seed: u64 = 0xcbf2_9ce4_8422_2325;
    while out.len() < chars {
        let mut h = seed;
        for b in s.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
        seed = h ^ 0x9e37_79b9_7f4a_7c15;
    }
    out.truncate(chars);
    out
}

/// The policy as the API formats it for `requested` (0, 1 or 3): below 3, conditional
/// bindings lose their condition and their role becomes `ROLE_withcond_HASH`, and the
/// version drops to 1 (api-shapes §1.3).
pub fn policy_for_version(policy: &Value, requested: i64) -> Value {
    let mut p = policy.clone();
    let Some(obj) = p.as_object_mut() else {
        return p;
    };
    if requested >= 3 {
        return p;
    }
    let mut had_conditions = false;
    if let Some(bindings) = obj.get_mut("bindings").and_then(Value::as_array_mut) {
        for b in bindings.iter_mut() {
            let Some(bo) = b.as_object_mut() else {
                continue;
            };
            if let Some(cond) = bo.remove("condition") {
                had_conditions = true;
                let role = bo
                    .get("role")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let expr = cond.get("expression").and_then(Value::as_str).unwrap_or("");
                let title = cond.get("title").and_then(Value::as_str).unwrap_or("");
                let hash = digest_hex(&format!("{role}\n{title}\n{expr}"), 20);
                bo.insert("role".into(), json!(format!("{role}_withcond_{hash}")));
            }
        }
    }
    if had_conditions
        || obj
            .get("version")
            .and_then(Value::as_i64)
            .is_some_and(|v| v > 1)
    {
        obj.insert("version".into(), json!(1));
    }
    p
}

/// The constraint (without `constraints/`) and the Org Policy v2 `Policy` for one entry of
/// `org-policies.json`: v2 shapes are kept; legacy CRM v1 `OrgPolicy` shapes are translated.
pub fn org_policy_v2(p: &Value) -> Option<(String, Value)> {
    if let Some(name) = p.get("name").and_then(Value::as_str) {
        let c = match name.split_once("/policies/") {
            Some((_, c)) => c,
            None => name,
        };
        let c = c.trim_start_matches("constraints/").to_string();
        if !c.is_empty() {
            return Some((c, p.clone()));
        }
    }
    let c = p
        .get("constraint")
        .and_then(Value::as_str)?
        .trim_start_matches("constraints/")
        .to_string();
    if c.is_empty() {
        return None;
    }
    let mut rules = Vec::new();
    if let Some(b) = p.get("booleanPolicy") {
        rules.push(json!({"enforce": b.get("enforced").and_then(Value::as_bool).unwrap_or(false)}));
    }
    if let Some(l) = p.get("listPolicy") {
        match l.get("allValues").and_then(Value::as_str) {
            Some("ALLOW") => rules.push(json!({"allowAll": true})),
            Some("DENY") => rules.push(json!({"denyAll": true})),
            _ => {
                let mut values = Map::new();
                for k in ["allowedValues", "deniedValues"] {
                    if let Some(v) = l
                        .get(k)
                        .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
                    {
                        values.insert(k.into(), v.clone());
                    }
                }
                if !values.is_empty() {
                    rules.push(json!({"values": values}));
                }
            }
        }
    }
    let spec = if rules.is_empty() {
        json!({})
    } else {
        json!({"rules": rules})
    };
    Some((c, json!({"spec": spec})))
}

/// An effective policy has no etag and no rule conditions (orgpolicy v2 getEffectivePolicy).
pub fn effective(mut p: Value, name: &str) -> Value {
    if let Some(o) = p.as_object_mut() {
        o.insert("name".into(), json!(name));
        o.remove("etag");
        for spec_key in ["spec", "dryRunSpec"] {
            if let Some(spec) = o.get_mut(spec_key).and_then(Value::as_object_mut) {
                spec.remove("etag");
                spec.remove("updateTime");
                if let Some(rules) = spec.get_mut("rules").and_then(Value::as_array_mut) {
                    for r in rules.iter_mut().filter_map(Value::as_object_mut) {
                        r.remove("condition");
                    }
                }
            }
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent() {
        assert_eq!(
            percent_decode("cloudresourcemanager.googleapis.com%2Fprojects%2Fp"),
            "cloudresourcemanager.googleapis.com/projects/p"
        );
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("a%zz%"), "a%zz%");
        assert_eq!(percent_decode("%e2%82%ac"), "€");
        assert_eq!(encode_attachment("x/projects/1"), "x%2Fprojects%2F1");
    }

    #[test]
    fn withcond() {
        let p: Value = json!({"version": 3, "etag": "e", "bindings": [
            {"role": "roles/run.invoker", "members": ["user:a@x.com"], "condition": {"title": "t", "expression": "request.time < timestamp('2020-01-01T00:00:00Z')"}},
            {"role": "roles/run.viewer", "members": ["user:b@x.com"]}
        ]});
        let v1 = policy_for_version(&p, 1);
        assert_eq!(v1["version"], 1);
        let role = v1["bindings"][0]["role"].as_str().unwrap_or("");
        assert!(role.starts_with("roles/run.invoker_withcond_"), "{role}");
        assert_eq!(role.len(), "roles/run.invoker_withcond_".len() + 20);
        assert!(v1["bindings"][0].get("condition").is_none());
        assert_eq!(v1["bindings"][1]["role"], "roles/run.viewer");
        assert_eq!(policy_for_version(&p, 3), p);
        assert_eq!(policy_for_version(&p, 0), v1);
    }

    #[test]
    fn legacy_org_policy() {
        let (c, v) = org_policy_v2(
            &json!({"constraint": "constraints/compute.x", "booleanPolicy": {"enforced": true}}),
        )
        .unwrap_or_default();
        assert_eq!(c, "compute.x");
        assert_eq!(v["spec"]["rules"][0]["enforce"], true);
        let (_, v) = org_policy_v2(&json!({"constraint": "constraints/iam.allowedPolicyMemberDomains", "listPolicy": {"allowedValues": ["C0x"]}})).unwrap_or_default();
        assert_eq!(v["spec"]["rules"][0]["values"]["allowedValues"][0], "C0x");
        let (c, _) =
            org_policy_v2(&json!({"name": "projects/1/policies/run.managed.requireInvokerIam"}))
                .unwrap_or_default();
        assert_eq!(c, "run.managed.requireInvokerIam");
    }
}
