//! Faults on every source the tool calls, end to end against `ipd-fakegcp`: 403, 404, 429 with
//! and without `Retry-After`, 500, 503, a timeout, a body cut short, a proxy's HTML page, and
//! valid JSON of the wrong shape. Each time the diagnosis completes (exit 0 or 1, a JSON
//! report), the source is a gap (or, for Policy Troubleshooter, an unavailable cross-check;
//! for `--as-me`'s tokeninfo, a warning and no caller) with a clear detail, the attempts are
//! bounded, and no panic shows anywhere. The one exception: tokeninfo saying the token is
//! invalid stops the run (exit 2), since no other read could succeed with it.
//!
//! The cases run in parallel threads (they mostly wait on backoffs and latencies).

use std::time::Duration;

use ipd_fakegcp::{FakeOptions, Fault, Garble, Source};
use serde_json::Value;

use crate::live::{
    Live, caller_config_args, json_of, live_with_callers, push_subscription, run_fixture,
};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Status(u16),
    RateLimitedRetryAfter,
    Timeout,
    Garbled(Garble),
}

const KINDS: &[Kind] = &[
    Kind::Status(403),
    Kind::Status(404),
    Kind::Status(429),
    Kind::RateLimitedRetryAfter,
    Kind::Status(500),
    Kind::Status(503),
    Kind::Timeout,
    Kind::Garbled(Garble::TruncatedBody),
    Kind::Garbled(Garble::HtmlProxyPage),
    Kind::Garbled(Garble::WrongShape),
];

/// `--timeout` of every case but the timeout's, long enough for four attempts on a busy machine.
const TIMEOUT_SECS: &str = "15";
/// `--timeout` of the timeout case: shorter than the fake's latency.
const SHORT_TIMEOUT_SECS: &str = "2";

fn options(source: Source, kind: Kind) -> FakeOptions {
    let o = FakeOptions::new();
    match kind {
        Kind::Status(s) => o.fail(source, Fault::always(s)),
        Kind::RateLimitedRetryAfter => o.fail(source, Fault::always(429)).retry_after(1),
        Kind::Timeout => o.source_latency(source, Duration::from_secs(8)),
        Kind::Garbled(g) => o.garble(source, g),
    }
}

/// The report's gap for the source (where a source has one).
fn gap_source(source: Source) -> Option<&'static str> {
    Some(match source {
        Source::RunServicesGet => "service",
        Source::RunServicesGetIamPolicy => "service_iam_policy",
        Source::ProjectsGetIamPolicy => "project_iam_policy",
        Source::FoldersGetIamPolicy => "folder_iam_policy:555000111222",
        Source::OrganizationsGetIamPolicy => "organization_iam_policy:987654321098",
        Source::LoggingEntriesList => "logs",
        Source::OrgPolicyGetEffectivePolicy => "org_policies",
        Source::PubsubSubscriptionsGet => "caller_config:pubsub",
        Source::IamDenyPolicies => "deny_policies",
        _ => return None,
    })
}

struct Outcome {
    what: String,
    report: Option<Value>,
    code: Option<i32>,
    stderr: String,
    attempts: usize,
}

fn run_case(source: Source, kind: Kind) -> Outcome {
    let what = format!("{source} {kind:?}");
    let timeout = match kind {
        Kind::Timeout => SHORT_TIMEOUT_SECS,
        _ => TIMEOUT_SECS,
    };
    let opts = options(source, kind);
    let (live, out): (Live, _) = match source {
        Source::PubsubSubscriptionsGet => {
            let live = live_with_callers("healthy-bound-sa-200", &[push_subscription()], opts);
            let mut args =
                caller_config_args(&live, "pubsub:projects/shop-prod/subscriptions/orders-push");
            args.extend(["--timeout".to_string(), timeout.to_string()]);
            let out = live.run(&args);
            (live, out)
        }
        // A bundle with org policies: the fake serves them (without, it refuses them itself).
        Source::OrgPolicyGetEffectivePolicy => run_fixture(
            "require-invoker-iam-blocks-public",
            opts,
            &["--format", "json", "--timeout", timeout],
        ),
        Source::PolicyTroubleshooterIamTroubleshoot => run_fixture(
            "crosscheck-troubleshooter-disagrees-stale-bundle",
            opts,
            &["--format", "json", "--timeout", timeout],
        ),
        Source::IamDenyPolicies => run_fixture(
            "deny-policy-org-denies-invoke",
            opts,
            &["--format", "json", "--timeout", timeout],
        ),
        Source::OrgPolicyCustomConstraintsList => run_fixture(
            "public-blocked-by-custom-constraint-definition",
            opts,
            &["--format", "json", "--timeout", timeout],
        ),
        // The caller's identity from the token (`--as-me`).
        Source::OAuth2TokenInfo => run_fixture(
            "missing-binding-sa-not-bound-anywhere",
            opts,
            &["--as-me", "--format", "json", "--timeout", timeout],
        ),
        _ => run_fixture(
            "missing-binding-sa-not-bound-anywhere",
            opts,
            &["--format", "json", "--timeout", timeout],
        ),
    };
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice::<Value>(&out.stdout).ok();
    let attempts = live.fake.calls_to(source).len();
    Outcome {
        what,
        report,
        code: out.status.code(),
        stderr,
        attempts,
    }
}

const SOURCES: &[Source] = &[
    Source::RunServicesGet,
    Source::RunServicesGetIamPolicy,
    Source::ProjectsGet,
    Source::ProjectsGetIamPolicy,
    // folders.get is only the fallback walk's: getAncestry is what a refusal hits first.
    Source::ProjectsGetAncestry,
    Source::FoldersGetIamPolicy,
    Source::OrganizationsGetIamPolicy,
    Source::LoggingEntriesList,
    Source::OrgPolicyGetEffectivePolicy,
    Source::IamRolesGet,
    Source::PubsubSubscriptionsGet,
    Source::PolicyTroubleshooterIamTroubleshoot,
    Source::IamDenyPolicies,
    Source::OrgPolicyCustomConstraintsList,
    Source::OAuth2TokenInfo,
];

#[test]
fn every_fault_on_every_source_is_a_gap_and_the_diagnosis_completes() {
    let cases: Vec<(Source, Kind)> = SOURCES
        .iter()
        .flat_map(|s| KINDS.iter().map(move |k| (*s, *k)))
        .collect();
    let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
        let chunks: Vec<_> = cases.chunks(cases.len().div_ceil(24)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|(s, k)| run_case(*s, *k))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a case thread"))
            .collect()
    });
    let mut problems = Vec::new();
    for (o, (source, kind)) in outcomes.iter().zip(&cases) {
        let mut bad = |m: String| problems.push(format!("{}: {m}", o.what));
        if o.stderr.contains("panicked") || o.stderr.contains("RUST_BACKTRACE") {
            bad(format!("panic: {}", o.stderr));
            continue;
        }
        // The fake refuses tokeninfo as Google does, with 400 `invalid_token`: credentials
        // that are bad stop the run with a message (nothing else could be read with them).
        if (*source, *kind) == (Source::OAuth2TokenInfo, Kind::Status(403)) {
            if o.code != Some(2) || !o.stderr.contains("invalid_token") {
                bad(format!("bad credentials: exit {:?}: {}", o.code, o.stderr));
            }
            continue;
        }
        if !matches!(o.code, Some(0 | 1)) {
            bad(format!("exit {:?}: {}", o.code, o.stderr));
            continue;
        }
        let Some(v) = &o.report else {
            bad(format!("no JSON report; stderr: {}", o.stderr));
            continue;
        };
        // Bounded retries: one attempt for a refusal, at most the policy's four otherwise;
        // a timeout is cut by --timeout within the first attempt or two.
        let max = match kind {
            Kind::Status(403 | 404) => 1,
            _ => 4,
        };
        // A call cut off by --timeout may never be logged by the fake (it drops the request).
        let none_ok = matches!(kind, Kind::Timeout);
        if (o.attempts == 0 && !none_ok) || o.attempts > max * per_run_calls(*source) {
            bad(format!("{} attempts (at most {max} per call)", o.attempts));
        }
        // A constraint the API does not know (404) is taken as not set (a note in `-v`),
        // by the gatherer's design: the source is read, no gap.
        if (*source, *kind) == (Source::OrgPolicyGetEffectivePolicy, Kind::Status(404)) {
            if v["gaps"]
                .as_array()
                .is_some_and(|g| g.iter().any(|g| g["source"] == "org_policies"))
            {
                bad(format!("unknown constraints made a gap: {}", v["gaps"]));
            }
            continue;
        }
        match gap_source(*source) {
            Some(g) => match v["gaps"]
                .as_array()
                .and_then(|gs| gs.iter().find(|x| x["source"] == g))
            {
                Some(gap) => {
                    let detail = gap["detail"].as_str().unwrap_or("");
                    if !matches!(gap["state"].as_str(), Some("failed" | "denied" | "missing"))
                        || detail.len() < 10
                    {
                        bad(format!("unclear gap {gap}"));
                    } else if let Some(needle) = expected_detail(*kind)
                        && !detail.contains(needle)
                    {
                        bad(format!("gap detail lacks `{needle}`: {detail}"));
                    }
                }
                None => bad(format!("no gap `{g}` in {}", v["gaps"])),
            },
            None if *source == Source::PolicyTroubleshooterIamTroubleshoot => {
                let cc = &v["cross_check"];
                let detail = cc["detail"].as_str().unwrap_or("");
                if cc["agreement"] != "unavailable" || detail.len() < 10 {
                    bad(format!("cross_check {cc}"));
                } else if let Some(needle) = expected_detail(*kind)
                    && !detail.contains(needle)
                {
                    bad(format!("cross-check detail lacks `{needle}`: {detail}"));
                }
            }
            // The hierarchy (projects.get, folders.get) and custom roles: a gap of what they
            // lead to, or a warning; never silence.
            None => {
                let gaps = v["gaps"].as_array().map(Vec::len).unwrap_or(0);
                if gaps == 0 && !o.stderr.contains("warning") && !o.stderr.contains("note") {
                    bad("neither a gap nor a warning".into());
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// How many calls of the source one diagnosis makes (logs: request logs, audit logs and the
/// policy-change entries).
fn per_run_calls(source: Source) -> usize {
    match source {
        Source::LoggingEntriesList => 3,
        Source::OrgPolicyGetEffectivePolicy => 8,
        Source::IamRolesGet => 2,
        // The project's, the folder's and the organization's lists.
        Source::IamDenyPolicies => 3,
        _ => 1,
    }
}

/// What the gap's detail must say for the fault, where that is specific.
fn expected_detail(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Timeout => Some("--timeout"),
        Kind::Garbled(Garble::HtmlProxyPage) => Some("proxy"),
        Kind::Garbled(Garble::TruncatedBody) => Some("not JSON"),
        Kind::Status(404) => Some("404"),
        _ => None,
    }
}

/// Only the hosts the user chose: with overrides for the other APIs, one without an override is
/// never called (the recorder of `Live` would see it) and its source says which variable would
/// enable it.
#[test]
fn an_api_without_an_override_is_not_called() {
    let slug = "crosscheck-troubleshooter-disagrees-stale-bundle";
    let live = Live::bundle(&crate::live::fixture(slug), FakeOptions::new());
    let mut c = live.cmd();
    c.env_remove("CLOUDSDK_API_ENDPOINT_OVERRIDES_POLICYTROUBLESHOOTER")
        .env_remove("CLOUDSDK_API_ENDPOINT_OVERRIDES_LOGGING");
    let out = c
        .args([
            "diagnose",
            "--format",
            "json",
            "--caller",
            "serviceAccount:checkout@shop-prod.iam.gserviceaccount.com",
        ])
        .args(live.target_args())
        .output()
        .expect("run");
    let v = json_of(&out, "partial overrides");
    let cc = &v["cross_check"];
    assert_eq!(cc["agreement"], "unavailable", "{cc}");
    assert!(
        cc["detail"]
            .as_str()
            .is_some_and(|d| d.contains("CLOUDSDK_API_ENDPOINT_OVERRIDES_POLICYTROUBLESHOOTER")),
        "{cc}"
    );
    let logs = v["gaps"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["source"] == "logs").cloned())
        .expect("a logs gap");
    assert!(
        logs["detail"]
            .as_str()
            .is_some_and(|d| d.contains("CLOUDSDK_API_ENDPOINT_OVERRIDES_LOGGING")),
        "{logs}"
    );
    assert!(
        live.fake
            .calls_to(Source::PolicyTroubleshooterIamTroubleshoot)
            .is_empty()
    );
    assert!(live.fake.calls_to(Source::LoggingEntriesList).is_empty());
    assert!(!live.fake.calls_to(Source::RunServicesGet).is_empty());
}

/// `HTTP_PROXY` is honoured, and `NO_PROXY` exempts hosts: without the fake's address in
/// `NO_PROXY` every call goes to the proxy (here the recorder, which refuses them).
#[test]
fn proxy_variables_are_honoured() {
    let live = Live::bundle(
        &crate::live::fixture("healthy-bound-sa-200"),
        FakeOptions::new(),
    );
    let out = live
        .cmd()
        .env("NO_PROXY", "")
        .args(["diagnose", "--format", "json", "--timeout", "10"])
        .args(live.target_args())
        .output()
        .expect("run");
    let through_proxy = live.stray.take();
    let base = live.fake.base_url();
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    assert!(
        through_proxy
            .iter()
            .any(|l| l.starts_with("GET http://") && l.contains(host)),
        "{through_proxy:?}"
    );
    assert!(live.fake.calls_to(Source::RunServicesGet).is_empty());
    assert!(matches!(out.status.code(), Some(0 | 1)));
}
