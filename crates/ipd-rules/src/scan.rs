//! `scan`: the invoke refusals an organization's services and their Google-managed callers are
//! set up to have, predicted from what Cloud Asset Inventory shows, with the same rules as
//! `diagnose`. Pure: pairing callers with the services they target, building the [`Evidence`]
//! of each pair, running [`diagnose`] on it, and gathering the findings into a [`ScanReport`].
//!
//! # The question the scan asks the engine
//!
//! There is no failed request to explain. For each (service, configured caller) pair the scan
//! asks about the request that caller would send now, as it is configured: the caller's
//! configuration is the evidence's only caller (its service account is the caller, its token
//! settings are the token), the client's status is not stated (it is what is predicted), and
//! no request log is given. Rules then decide from configuration alone: a finding is as sure
//! as the configuration makes it (an OAuth token, a missing binding, a push without OIDC), and
//! a pair whose configuration shows nothing wrong yields no finding at all. For a service the
//! owner tried to make public (an `allUsers` / `allAuthenticatedUsers` grant, refused or not,
//! or disabling the invoker check, in the Admin Activity log within `--since`), the question
//! is an anonymous request (`expect_public`). Anything the scan could not read is a gap of its
//! own and leaves the rules that need it skipped, never passed.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use ipd_model::evidence::Gap;
use ipd_model::iam::{Level, Policy};
use ipd_model::inventory::{
    CallerTarget, Inventory, PolicyKey, ScannedCaller, ScannedService, url_host as host,
};
use ipd_model::{Evidence, Gathered, Inputs};

use crate::report::{FixOut, SCHEMA_VERSION, diagnose};
use crate::rule::{Severity, Verdict};

/// The report of a scan (the contract's `scan --format json`).
#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    pub schema_version: u32,
    pub scope: String,
    pub totals: Totals,
    pub findings: Vec<ScanFinding>,
    pub gaps: Vec<Gap>,
    /// Findings per cause (not in contract v1's list; extra).
    pub by_cause: BTreeMap<String, usize>,
    /// Findings per project (extra).
    pub by_project: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Services scanned (after `--service-filter`).
    pub services: usize,
    /// Callers that target one of those services.
    pub callers: usize,
    pub findings: usize,
    /// Services the owner meant to be public, by the audit log (extra).
    pub meant_public: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScanFinding {
    /// `//run.googleapis.com/projects/P/locations/R/services/S`.
    pub service: String,
    /// `pubsub:projects/P/subscriptions/X`, or `allUsers` for a service meant to be public.
    pub caller: String,
    pub code: &'static str,
    pub cause: &'static str,
    pub verdict: Verdict,
    pub severity: Severity,
    pub title: String,
    pub evidence: Vec<String>,
    pub fixes: Vec<FixOut>,
    /// The service's project (ID when known) (extra).
    pub project: String,
}

/// What the command line narrows.
#[derive(Default)]
pub struct ScanOptions<'a> {
    /// `--service-filter`: keep a service when this returns true for its full name.
    pub service_filter: Option<&'a dyn Fn(&str) -> bool>,
}

/// The services kept, and an index from what callers name (a URL host, or an Eventarc
/// destination) to them.
struct Targets {
    by_host: HashMap<String, usize>,
    by_name: HashMap<(String, String, String), usize>,
}

impl Targets {
    fn build(inv: &Inventory, keep: &[usize]) -> Targets {
        let mut by_host = HashMap::new();
        let mut by_name = HashMap::new();
        for &i in keep {
            let s = &inv.services[i];
            by_name.insert(
                (
                    inv.service_project_number(s),
                    s.region.clone(),
                    s.name.clone(),
                ),
                i,
            );
            if let Some(svc) = s.service.present() {
                for u in svc.all_urls() {
                    if let Some(h) = host(u) {
                        by_host.insert(h, i);
                    }
                }
            }
        }
        Targets { by_host, by_name }
    }

    fn find(&self, c: &ScannedCaller) -> Option<usize> {
        match c.target.as_ref()? {
            CallerTarget::Url { url } => self.by_host.get(&host(url)?).copied(),
            CallerTarget::RunService { region, service } => {
                let project = c.placement.project_number.clone()?;
                self.by_name
                    .get(&(project, region.clone(), service.clone()))
                    .copied()
            }
        }
    }
}

/// The policy of one level as the scan knows it.
fn level_policy(inv: &Inventory, key: &PolicyKey) -> Gathered<Policy> {
    if let Some(g) = inv.outside.get(key) {
        return g.clone().map(|bindings| Policy {
            version: Some(3),
            bindings,
            etag: None,
        });
    }
    match &inv.iam {
        Gathered::Present(()) => Gathered::Present(Policy {
            version: Some(3),
            bindings: inv.bindings.get(key).cloned().unwrap_or_default(),
            etag: None,
        }),
        other => other.clone().map(|()| Policy::default()),
    }
}

/// The evidence of one question about `s`: asked by `caller`, or anonymously when `public`.
fn evidence_for(
    inv: &Inventory,
    s: &ScannedService,
    caller: Option<&ScannedCaller>,
    public: bool,
) -> Evidence {
    let number = inv.service_project_number(s);
    let mut ancestors = Vec::new();
    for f in &s.placement.folders {
        ancestors.push((
            Level::Folder(f.clone()),
            level_policy(inv, &PolicyKey::Folder(f.clone())),
        ));
    }
    if let Some(o) = &s.placement.organization {
        ancestors.push((
            Level::Organization(o.clone()),
            level_policy(inv, &PolicyKey::Organization(o.clone())),
        ));
    }
    Evidence {
        service: s.service.clone(),
        service_policy: level_policy(
            inv,
            &PolicyKey::Service(number.clone(), s.region.clone(), s.name.clone()),
        ),
        project_policy: level_policy(inv, &PolicyKey::Project(number.clone())),
        ancestor_policies: ancestors,
        org_policies: inv.org_policies.get(&number).cloned().unwrap_or_else(|| {
            Gathered::missing("not read: no service of the project is meant to be public")
        }),
        logs: Gathered::missing("a scan reads no request logs: it predicts from configuration"),
        custom_roles: inv.custom_roles.clone(),
        deny_policies: Gathered::missing("a scan does not read deny policies"),
        caller_configs: caller.and_then(|c| c.config.clone()).into_iter().collect(),
        inputs: Inputs {
            expect_public: public,
            project: Some(inv.project_label(&number)),
            region: Some(s.region.clone()),
            service: Some(s.name.clone()),
            ..Inputs::default()
        },
        ..Evidence::default()
    }
}

/// Predicts the refusals of every pair in `inv`.
pub fn predict(inv: &Inventory, opts: &ScanOptions) -> ScanReport {
    let keep: Vec<usize> = (0..inv.services.len())
        .filter(|&i| {
            opts.service_filter
                .is_none_or(|f| f(&inv.services[i].full_name))
        })
        .collect();
    let targets = Targets::build(inv, &keep);
    let mut callers_of: BTreeMap<usize, Vec<&ScannedCaller>> = BTreeMap::new();
    for c in &inv.callers {
        if let Some(i) = targets.find(c) {
            callers_of.entry(i).or_default().push(c);
        }
    }
    let mut totals = Totals {
        services: keep.len(),
        ..Totals::default()
    };
    let mut findings = Vec::new();
    for &i in &keep {
        let s = &inv.services[i];
        let project = inv.project_label(&inv.service_project_number(s));
        let intent = inv.public_intent(s);
        if intent.is_some() {
            totals.meant_public += 1;
        }
        let mut questions: Vec<(String, Option<&ScannedCaller>, Vec<String>)> = Vec::new();
        for c in callers_of.get(&i).into_iter().flatten() {
            totals.callers += 1;
            questions.push((
                c.label(),
                Some(c),
                vec![format!(
                    "configured caller `{}` (from Cloud Asset Inventory{})",
                    c.label(),
                    if c.needs_get {
                        "; its configuration is incomplete"
                    } else {
                        ""
                    }
                )],
            ));
        }
        if let Some(why) = &intent {
            questions.push((
                "allUsers".into(),
                None,
                vec![format!("the owner meant the service to be public: {why}")],
            ));
        }
        for (label, caller, mut lead) in questions {
            // Only the anonymous question is about going public; a configured caller is asked
            // about as itself.
            let ev = evidence_for(inv, s, caller, caller.is_none());
            let report = diagnose(&ev);
            for f in report.findings {
                let mut evidence = std::mem::take(&mut lead).into_iter().collect::<Vec<_>>();
                if evidence.is_empty() {
                    evidence.push(format!("caller `{label}`"));
                }
                evidence.extend(f.evidence);
                findings.push(ScanFinding {
                    service: s.full_name.clone(),
                    caller: label.clone(),
                    code: f.code,
                    cause: f.cause,
                    verdict: f.verdict,
                    severity: f.severity,
                    title: f.title,
                    evidence,
                    fixes: f.fixes,
                    project: project.clone(),
                });
            }
        }
    }
    findings.sort_by(|a, b| {
        b.verdict
            .cmp(&a.verdict)
            .then(b.severity.cmp(&a.severity))
            .then(a.service.cmp(&b.service))
            .then(a.caller.cmp(&b.caller))
            .then(a.code.cmp(b.code))
    });
    let mut by_cause = BTreeMap::new();
    let mut by_project = BTreeMap::new();
    for f in &findings {
        *by_cause.entry(f.cause.to_string()).or_insert(0) += 1;
        *by_project.entry(f.project.clone()).or_insert(0) += 1;
    }
    totals.findings = findings.len();
    ScanReport {
        schema_version: SCHEMA_VERSION,
        scope: inv.scope.clone(),
        totals,
        findings,
        gaps: inv.gaps.clone(),
        by_cause,
        by_project,
    }
}

/// The services a report blames whose resource was read only from the index: the scan reads
/// them with `services.get` (the index can lag behind a change, e.g. of the invoker check)
/// and predicts again before reporting.
pub fn to_confirm(inv: &Inventory, report: &ScanReport) -> Vec<usize> {
    let mut out: Vec<usize> = inv
        .services
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.confirmed_by_get)
        .filter(|(_, s)| {
            !s.service.is_present() || report.findings.iter().any(|f| f.service == s.full_name)
        })
        .map(|(i, _)| i)
        .collect();
    out.dedup();
    out
}

/// Whether any finding is `confirmed` or `likely` (exit status 1).
pub fn has_actionable(report: &ScanReport) -> bool {
    report.findings.iter().any(|f| f.verdict >= Verdict::Likely)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipd_model::iam::Binding;
    use ipd_model::inventory::{Asset, parse_resource};
    use serde_json::json;

    fn inventory(bind: bool, token: &str) -> Inventory {
        let mut inv = Inventory {
            scope: "organizations/9".into(),
            iam: Gathered::Present(()),
            ..Inventory::default()
        };
        let svc = json!({"name": "//run.googleapis.com/projects/shop/locations/r1/services/api",
            "assetType": "run.googleapis.com/Service", "project": "projects/11", "organization": "organizations/9",
            "versionedResources": [{"version": "v2", "resource": {
                "name": "projects/shop/locations/r1/services/api",
                "uri": "https://api-11.r1.run.app"}}]});
        let auth = match token {
            "oidc" => {
                json!({"oidcToken": {"serviceAccountEmail": "push@shop.iam.gserviceaccount.com", "audience": "https://api-11.r1.run.app"}})
            }
            _ => json!({}),
        };
        let mut push = json!({"pushEndpoint": "https://api-11.r1.run.app/push"});
        if let (Some(p), Some(a)) = (push.as_object_mut(), auth.as_object()) {
            p.extend(a.clone());
        }
        let sub = json!({"name": "//pubsub.googleapis.com/projects/shop/subscriptions/s",
            "assetType": "pubsub.googleapis.com/Subscription", "project": "projects/11",
            "versionedResources": [{"version": "v1", "resource": {"name": "projects/shop/subscriptions/s", "pushConfig": push}}]});
        for v in [svc, sub] {
            if let Some(a) = parse_resource(&v) {
                inv.add_asset(a);
            }
        }
        inv.add_asset(Asset::Project {
            number: "11".into(),
            id: "shop".into(),
        });
        // The Pub/Sub service agent's own grant, as the third IAM search finds it.
        inv.add_policy(
            PolicyKey::Project("11".into()),
            vec![Binding {
                role: "roles/pubsub.serviceAgent".into(),
                members: vec![
                    "serviceAccount:service-11@gcp-sa-pubsub.iam.gserviceaccount.com".into(),
                ],
                condition: None,
            }],
            vec![],
        );
        if bind {
            inv.add_policy(
                PolicyKey::Service("11".into(), "r1".into(), "api".into()),
                vec![Binding {
                    role: "roles/run.invoker".into(),
                    members: vec!["serviceAccount:push@shop.iam.gserviceaccount.com".into()],
                    condition: None,
                }],
                vec![],
            );
        }
        inv
    }

    #[test]
    fn a_healthy_pair_has_no_finding() {
        let r = predict(&inventory(true, "oidc"), &ScanOptions::default());
        assert_eq!(r.totals.services, 1);
        assert_eq!(r.totals.callers, 1);
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert!(!has_actionable(&r));
    }

    #[test]
    fn a_missing_binding_and_a_push_without_oidc_are_predicted() {
        let r = predict(&inventory(false, "oidc"), &ScanOptions::default());
        assert_eq!(r.findings[0].cause, "missing_invoker_binding");
        assert_eq!(r.findings[0].caller, "pubsub:projects/shop/subscriptions/s");
        assert!(has_actionable(&r));
        assert_eq!(r.by_project.get("shop"), Some(&r.findings.len()));
        let r = predict(&inventory(true, "none"), &ScanOptions::default());
        assert_eq!(r.findings[0].cause, "no_token");
    }

    #[test]
    fn unread_iam_is_a_skip_not_a_pass_nor_a_finding() {
        let mut inv = inventory(false, "oidc");
        inv.iam = Gathered::Denied {
            permission: Some("cloudasset.assets.searchAllIamPolicies".into()),
            detail: "refused".into(),
        };
        let r = predict(&inv, &ScanOptions::default());
        assert!(
            r.findings
                .iter()
                .all(|f| f.cause != "missing_invoker_binding"),
            "{:?}",
            r.findings
        );
    }

    #[test]
    fn the_filter_narrows_the_services() {
        let inv = inventory(false, "oidc");
        let none = |_: &str| false;
        let r = predict(
            &inv,
            &ScanOptions {
                service_filter: Some(&none),
            },
        );
        assert_eq!(r.totals.services, 0);
        assert!(r.findings.is_empty());
    }
}
