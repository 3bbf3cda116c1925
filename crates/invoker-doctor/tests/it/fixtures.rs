//! Every fixture bundle: the expected root cause and exit status, and the checked-in reports
//! (snapshots in `fixtures/<slug>/expected/`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::support::{diagnose_args, fixtures, run_args};

#[test]
fn every_fixture_gives_its_root_cause_exit_status_and_report() {
    let all = fixtures();
    assert!(
        all.len() >= 30,
        "expected the fixture set, found {}",
        all.len()
    );
    let mut failures = Vec::new();
    for (slug, dir, case) in &all {
        let out = run_args(&diagnose_args(dir, case, "json"));
        let report: Value =
            serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{slug}: bad JSON: {e}"));
        let findings = report["findings"].as_array().cloned().unwrap_or_default();
        let rank1 = findings
            .first()
            .and_then(|f| f["cause"].as_str())
            .unwrap_or("none");
        if rank1 != case.root_cause {
            failures.push(format!(
                "{slug}: rank 1 is `{rank1}`, expected `{}`",
                case.root_cause
            ));
        }
        if case.root_cause == "none" && !findings.is_empty() {
            failures.push(format!(
                "{slug}: expected no finding, got {}",
                findings.len()
            ));
        }
        if out.code != case.exit {
            failures.push(format!("{slug}: exit {} expected {}", out.code, case.exit));
        }
        for a in &case.absent {
            if findings.iter().any(|f| f["cause"] == a.as_str()) {
                failures.push(format!("{slug}: `{a}` must not be among the findings"));
            }
        }
        let denial = report["denial"]["state"].as_str().unwrap_or("absent");
        if let Some(want) = &case.denial
            && denial != want
        {
            failures.push(format!("{slug}: denial {denial}, expected {want}"));
        }
        // The verdict policy: with no denial in the evidence nothing is confirmed or likely.
        if denial == "none_in_evidence" {
            for f in &findings {
                if f["verdict"] != "possible" {
                    failures.push(format!(
                        "{slug}: no denial in the evidence, yet `{}` is {}",
                        f["cause"], f["verdict"]
                    ));
                }
            }
            if out.code != 0 {
                failures.push(format!(
                    "{slug}: no denial in the evidence, yet exit {}",
                    out.code
                ));
            }
        }
        let agreement = report["cross_check"]["agreement"].as_str();
        if agreement != case.cross_check.as_deref() {
            failures.push(format!(
                "{slug}: cross-check agreement {agreement:?}, expected {:?}",
                case.cross_check
            ));
        }
        // The JSON report and the plain-text rendering are checked in.
        let text = run_args(&diagnose_args(dir, case, "text")).stdout;
        insta::with_settings!({
            snapshot_path => dir.join("expected"),
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => case.summary.clone(),
        }, {
            insta::assert_snapshot!("report.json", out.stdout);
            insta::assert_snapshot!("report.txt", text);
        });
    }
    assert!(
        failures.is_empty(),
        "fixture expectations not met:\n{}",
        failures.join("\n")
    );
}

/// Registry invariant: every rule fires in some fixture and stays quiet in another, and every
/// cause of the first thirteen has at least two bundles where it is the root cause.
#[test]
fn every_rule_has_firing_and_quiet_fixtures() {
    let mut fired: BTreeMap<String, usize> = BTreeMap::new();
    let mut quiet: BTreeMap<String, usize> = BTreeMap::new();
    let mut roots: BTreeMap<String, usize> = BTreeMap::new();
    for (_, dir, case) in fixtures() {
        let out = run_args(&diagnose_args(&dir, &case, "json"));
        let report: Value = serde_json::from_str(&out.stdout).expect("json");
        for c in report["checks"].as_array().expect("checks") {
            let code = c["code"].as_str().unwrap_or_default().to_string();
            if c["outcome"] == "fired" {
                *fired.entry(code).or_default() += 1;
            } else {
                *quiet.entry(code).or_default() += 1;
            }
        }
        *roots.entry(case.root_cause.clone()).or_default() += 1;
    }
    let codes: BTreeSet<&str> = ipd_rules::RULES.iter().map(|r| r.meta().code).collect();
    for code in &codes {
        assert!(
            fired.get(*code).copied().unwrap_or(0) > 0,
            "{code} fires in no fixture"
        );
        assert!(
            quiet.get(*code).copied().unwrap_or(0) > 0,
            "{code} is quiet in no fixture"
        );
    }
    for r in ipd_rules::RULES {
        let n = roots.get(r.meta().cause).copied().unwrap_or(0);
        assert!(
            n >= 2,
            "cause `{}` is the root cause of {n} fixtures; at least 2 wanted",
            r.meta().cause
        );
    }
    assert!(
        roots.get("none").copied().unwrap_or(0) >= 3,
        "at least three healthy fixtures wanted"
    );
}

/// No report of any fixture, in any format, contains a token in full (or its signature).
#[test]
fn no_token_leaks_into_any_output() {
    for (slug, dir, case) in fixtures() {
        let Ok(tok) = std::fs::read_to_string(dir.join("token.txt")) else {
            continue;
        };
        let secret_parts: Vec<&str> = tok
            .split(|c: char| c == '.' || c == ',' || c.is_whitespace())
            .filter(|p| p.len() >= 16)
            .collect();
        for format in ["json", "text", "markdown"] {
            let out = run_args(&diagnose_args(&dir, &case, format)).stdout;
            for part in &secret_parts {
                // Header segments are not secret but are also never printed; signatures and
                // payloads must never appear.
                assert!(
                    !out.contains(part),
                    "{slug}: {format} output contains part of the token"
                );
            }
        }
    }
}
