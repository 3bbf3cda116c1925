//! The next step after a paste: the `invoker-doctor` command that would decide it, or the
//! gcloud commands that capture the evidence it lacks, filled in from its identifiers.

use serde::Serialize;

use super::recognise::{Origin, Recognised, Topic};

/// One next step (`paste.next[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NextStep {
    /// `invoker-doctor`, `gcloud` or `note`.
    pub kind: &'static str,
    pub text: String,
}

fn step(kind: &'static str, text: impl Into<String>) -> NextStep {
    NextStep {
        kind,
        text: text.into(),
    }
}

/// A value safe to put in a shell command unquoted, else single-quoted.
fn sh(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/@=".contains(c))
    {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\'', "'\\''"))
    }
}

struct Target {
    service: String,
    region: String,
    project: String,
}

fn target(r: &Recognised) -> Target {
    let id = &r.identifiers;
    Target {
        service: id.service.clone().unwrap_or_else(|| "SERVICE".into()),
        region: id.region.clone().unwrap_or_else(|| "REGION".into()),
        project: id
            .project
            .clone()
            .or_else(|| id.project_number.clone())
            .unwrap_or_else(|| "PROJECT".into()),
    }
}

/// `invoker-doctor diagnose` live, from the URL when the paste names a run.app URL.
fn diagnose(r: &Recognised, extra: &str) -> NextStep {
    let id = &r.identifiers;
    let t = target(r);
    let mut cmd = match id.url.as_deref().filter(|u| u.contains(".run.app")) {
        Some(u) => format!("invoker-doctor diagnose --url {}", sh(u)),
        None => format!(
            "invoker-doctor diagnose --project {} --region {} --service {}",
            sh(&t.project),
            sh(&t.region),
            sh(&t.service)
        ),
    };
    if let Some(s) = r.status.filter(|s| matches!(s, 401 | 403 | 404)) {
        cmd.push_str(&format!(" --status {s}"));
    }
    if let Some(at) = &id.time {
        cmd.push_str(&format!(" --at {}", sh(at)));
    }
    cmd.push_str(extra);
    step("invoker-doctor", cmd)
}

/// The gcloud commands that write a bundle for `invoker-doctor diagnose --bundle`.
fn capture(r: &Recognised, with_logs: bool) -> Vec<NextStep> {
    let t = target(r);
    let (s, reg, p) = (sh(&t.service), sh(&t.region), sh(&t.project));
    let mut v = vec![
        step(
            "gcloud",
            format!(
                "gcloud run services describe {s} --region {reg} --project {p} --format=json > service.json"
            ),
        ),
        step(
            "gcloud",
            format!(
                "gcloud run services get-iam-policy {s} --region {reg} --project {p} --format=json > service-iam-policy.json"
            ),
        ),
        step(
            "gcloud",
            format!("gcloud projects get-iam-policy {p} --format=json > project-iam-policy.json"),
        ),
    ];
    if with_logs {
        let id = &r.identifiers;
        let which = match (&id.trace, &id.insert_id) {
            (Some(tr), _) => format!(" AND trace=\"projects/{}/traces/{tr}\"", t.project),
            (None, Some(i)) => format!(" AND insertId=\"{i}\""),
            _ => r
                .status
                .map(|st| format!(" AND httpRequest.status={st}"))
                .unwrap_or_default(),
        };
        v.push(step(
            "gcloud",
            format!(
                "gcloud logging read {} --project {p} --freshness=7d --limit=50 --format=json > logs.json",
                sh(&format!(
                    "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"{}\"{which}",
                    t.service
                ))
            ),
        ));
    }
    v
}

/// The next steps for a recognised paste, most decisive first.
pub fn next_steps(r: &Recognised) -> Vec<NextStep> {
    let id = &r.identifiers;
    let t = target(r);
    let token_arg = " --token @TOKEN_FILE";
    let caller_arg = id
        .principal
        .as_deref()
        .map(|p| format!(" --caller {}", sh(p)))
        .unwrap_or_default();
    let mut v = Vec::new();
    match r.origin {
        Origin::CloudRunGate => {
            if r.status == Some(401) || r.token.is_some() {
                v.push(diagnose(r, token_arg));
                v.push(step("note", "put the exact token the client sent in TOKEN_FILE (it is decoded locally, never printed or sent anywhere): `invoker-doctor explain @TOKEN_FILE` alone tells an access token, a Firebase token, a wrong audience or an expired token apart"));
            } else if r.empty_authorization {
                v.push(diagnose(r, &caller_arg));
                v.push(step("note", "the request had no token at all: make the caller attach `Authorization: Bearer ID_TOKEN` minted for the service URL (for Cloud Tasks, Scheduler and Pub/Sub, configure the OIDC token on the job, queue or subscription)"));
            } else {
                let who = if caller_arg.is_empty() {
                    " --caller serviceAccount:CALLER_EMAIL".to_string()
                } else {
                    caller_arg.clone()
                };
                v.push(diagnose(r, token_arg));
                v.push(diagnose(r, &who));
                v.push(step("note", "a 403 is either no token or a principal without run.routes.invoke: pass the caller (--caller) or, better, the token it sent (--token @FILE) to tell them apart"));
            }
            v.extend(capture(r, true));
        }
        Origin::Iap => {
            v.push(diagnose(r, &caller_arg));
            v.push(step(
                "gcloud",
                format!(
                    "gcloud run services describe {} --region {} --project {} --format=json > service.json",
                    sh(&t.service),
                    sh(&t.region),
                    sh(&t.project)
                ),
            ));
            v.push(step("note", "IAP refused before Cloud Run: a user needs roles/iap.httpsResourceAccessor on the IAP resource; a programmatic client needs an ID token for IAP's OAuth client ID (with the email claim); IAP's service agent service-PROJECT_NUMBER@gcp-sa-iap.iam.gserviceaccount.com needs roles/run.invoker on the service"));
        }
        Origin::VpcServiceControls => {
            v.push(step(
                "gcloud",
                format!(
                    "gcloud logging read {} --project {} --freshness=7d --format=json > logs.json",
                    sh("log_id(\"cloudaudit.googleapis.com/policy\") AND resource.type=\"audited_resource\" AND resource.labels.method=\"run.googleapis.com/HttpIngress\""),
                    sh(&t.project)
                ),
            ));
            v.push(step("note", "the refusal is VPC Service Controls': look the vpcServiceControlsUniqueIdentifier up in the VPC Service Controls troubleshooter, and add the caller to an access level or ingress rule of the perimeter"));
        }
        Origin::Ingress => {
            v.push(diagnose(r, ""));
            v.extend(capture(r, false).into_iter().take(1));
            v.push(step("note", "a 404 with no request log: check the service's ingress setting and whether the default run.app URL is disabled; a path ending in `z` (such as /healthz) never reaches Cloud Run"));
        }
        Origin::Application => {
            v.extend(capture(r, true).into_iter().skip(3));
            v.push(step("note", "the container answered: look at the application's own authentication (its logs for this request, the Authorization header it expects); Cloud Run's IAM let the request through"));
        }
        Origin::ClientCredentials => {
            v.push(step(
                "gcloud",
                format!(
                    "gcloud auth print-identity-token --impersonate-service-account=SA_EMAIL --audiences={} --include-email > TOKEN_FILE",
                    id.url.as_deref().map(sh).unwrap_or_else(|| "SERVICE_URL".into())
                ),
            ));
            v.push(step(
                "gcloud",
                "gcloud iam service-accounts add-iam-policy-binding SA_EMAIL --member=PRINCIPAL --role=roles/iam.serviceAccountOpenIdTokenCreator",
            ));
            v.push(step("note", "federated (external-account), user and impersonated credentials cannot mint an ID token on their own in several libraries: impersonate a service account that is allowed to invoke the service, with Token Creator (or OpenID Token Creator) on it"));
        }
        Origin::DeployTime => deploy_steps(r, &t, &mut v),
        Origin::GoogleApi => {
            let what = match &r.topic {
                Some(Topic::Permission(p)) => format!("the missing permission is `{p}`: grant a role that has it to the principal on that resource"),
                Some(Topic::JobsRun) => "Cloud Run jobs are started through the Admin API (jobs:run) with an OAuth access token (Scheduler: --oauth-service-account-email), and the service account needs run.jobs.run (roles/run.invoker or roles/run.jobsExecutor) on the job".into(),
                _ => "grant the principal the role this API call needs (the error names the permission or the resource); Cloud Run's invoker check is not involved".into(),
            };
            v.push(step("note", what));
        }
        Origin::NotCloudRun => v.push(step(
            "note",
            "the host is not Cloud Run: ask whoever runs it; if a Cloud Run service sits behind it, explain the service's own run.app URL or request log instead",
        )),
        Origin::Unknown => {
            if id.trace.is_some() || id.insert_id.is_some() {
                v.push(step(
                    "invoker-doctor",
                    format!(
                        "invoker-doctor explain {} --project {}",
                        sh(id.trace.as_deref().or(id.insert_id.as_deref()).unwrap_or("")),
                        sh(&t.project)
                    ),
                ));
                v.extend(capture(r, true).into_iter().skip(3));
            } else if r.token.is_some() {
                v.push(diagnose(r, token_arg));
            } else if r.status.is_some() {
                v.push(diagnose(r, token_arg));
                v.push(step("note", "paste the URL that was called, the response headers (curl -i) or the request's log entry: they say whether Cloud Run's gate, IAP or the application refused"));
            } else {
                v.push(step("note", "paste the error text or page, a request or trace ID, the request's log entry (JSON), or the token, together with the URL that was called"));
            }
        }
    }
    v
}

/// `diagnose --expect-public`: live when the paste names the service, else on a bundle of
/// the files the commands above write.
fn public_diagnose(r: &Recognised) -> NextStep {
    if r.identifiers.service.is_some() {
        let t = target(r);
        step(
            "invoker-doctor",
            format!(
                "invoker-doctor diagnose --project {} --region {} --service {} --expect-public",
                sh(&t.project),
                sh(&t.region),
                sh(&t.service)
            ),
        )
    } else {
        step(
            "invoker-doctor",
            "invoker-doctor diagnose --bundle DIR --expect-public",
        )
    }
}

fn deploy_steps(r: &Recognised, t: &Target, v: &mut Vec<NextStep>) {
    let (s, reg, p) = (sh(&t.service), sh(&t.region), sh(&t.project));
    match &r.topic {
        Some(Topic::DomainRestriction) => {
            v.push(step("gcloud", format!("gcloud org-policies describe constraints/iam.allowedPolicyMemberDomains --effective --project {p} --format=json > org-policy-drs.json")));
            v.push(step("gcloud", format!("gcloud org-policies describe constraints/iam.managed.allowedPolicyMembers --effective --project {p} --format=json > org-policy-managed-members.json")));
            v.push(public_diagnose(r));
            v.push(step("note", "domain restricted sharing refuses allUsers: to serve the public, disable the invoker IAM check instead (gcloud run services update SERVICE --no-invoker-iam-check), unless run.managed.requireInvokerIam forbids it"));
        }
        Some(Topic::CustomConstraint(name)) => {
            let n = name.clone().unwrap_or_else(|| "custom.NAME".into());
            v.push(step("gcloud", format!("gcloud org-policies describe-custom-constraint {} --organization=ORGANIZATION_ID --format=json > org-policy-custom-{}.json", sh(&n), n.trim_start_matches("custom."))));
            v.push(public_diagnose(r));
        }
        Some(Topic::PublicGrantNotApplied) => {
            v.push(step("gcloud", format!("gcloud run services get-iam-policy {s} --region {reg} --project {p} --format=json > service-iam-policy.json")));
            v.push(step("gcloud", format!("gcloud org-policies describe constraints/iam.allowedPolicyMemberDomains --effective --project {p} --format=json > org-policy-drs.json")));
            v.push(public_diagnose(r));
            v.push(step("note", "the deploy succeeded but allUsers was never bound: the deployer needs run.services.setIamPolicy (roles/run.admin), or domain restricted sharing refused it"));
        }
        Some(Topic::ActAs) => v.push(step("gcloud", "gcloud iam service-accounts add-iam-policy-binding RUNTIME_SA_EMAIL --member=DEPLOYER_PRINCIPAL --role=roles/iam.serviceAccountUser".to_string())),
        Some(Topic::ApiDisabled) => v.push(step("gcloud", format!("gcloud services enable run.googleapis.com --project {}", sh(r.identifiers.project_number.as_deref().unwrap_or(&t.project))))),
        Some(Topic::RunServiceAgent) => v.push(step("gcloud", format!("gcloud projects add-iam-policy-binding {} --member=serviceAccount:service-{}@serverless-robot-prod.iam.gserviceaccount.com --role=roles/run.serviceAgent", sh(&t.project), r.identifiers.project_number.as_deref().unwrap_or("PROJECT_NUMBER")))),
        _ => {
            let who = r.identifiers.principal.clone().unwrap_or_else(|| "DEPLOYER_PRINCIPAL".into());
            v.push(step("gcloud", format!("gcloud projects get-iam-policy {p} --flatten=bindings --filter={} --format='value(bindings.role)'", sh(&format!("bindings.members:{}", who.split_once(':').map_or(who.as_str(), |(_, e)| e))))));
            v.push(step("gcloud", format!("gcloud projects add-iam-policy-binding {p} --member={} --role=roles/run.admin", sh(&who))));
            let what = match &r.topic {
                Some(Topic::Permission(perm)) => format!("the deployer lacks `{perm}`"),
                _ => "the deploying principal lacks a permission".into(),
            };
            v.push(step("note", format!("{what}: it needs roles/run.admin (or roles/run.developer) in the project, and roles/iam.serviceAccountUser on the service's runtime service account")));
        }
    }
    v.push(step("note", "this happened at deploy time: the service's callers are not involved until the deploy (or its IAM change) succeeds"));
}
