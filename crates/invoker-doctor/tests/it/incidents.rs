//! `incidents` end to end: every `fixtures/incidents-*` bundle (its expectations in
//! `expected/incident.toml`: each group's key, onset, causing change and diagnosed root cause;
//! the text and JSON reports checked in), live against the fake (with `--record` replayed),
//! and the HTML page rendered by headless Chromium.

use std::path::{Path, PathBuf};

use ipd_fakegcp::FakeOptions;
use serde::Deserialize;
use serde_json::Value;

use crate::live::Live;
use crate::support::{run_args, workspace_root};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    summary: String,
    #[serde(default)]
    args: Vec<String>,
    exit: i32,
    group: Vec<GroupExpect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupExpect {
    service: String,
    status: i64,
    gate: String,
    /// A prefix of the caller hint.
    caller: String,
    /// A prefix of the onset.
    onset: String,
    #[serde(default = "yes")]
    logged: bool,
    /// The insertId of the best-ranked change; absent: no change explains it.
    change: Option<String>,
    change_says: Option<String>,
    /// The diagnosed root cause ("none": no finding); absent: not asserted.
    root_cause: Option<String>,
}

fn yes() -> bool {
    true
}

fn incident_fixtures() -> Vec<(String, PathBuf, Expect)> {
    let root = workspace_root().join("fixtures");
    let mut v: Vec<_> = std::fs::read_dir(&root)
        .expect("fixtures")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("expected/incident.toml").is_file())
        .map(|p| {
            let slug = p
                .file_name()
                .expect("test data")
                .to_string_lossy()
                .into_owned();
            let text =
                std::fs::read_to_string(p.join("expected/incident.toml")).expect("test data");
            let e: Expect = toml::from_str(&text).unwrap_or_else(|e| panic!("{slug}: {e}"));
            (slug, p, e)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn args(dir: &Path, e: &Expect, format: &str) -> Vec<String> {
    let mut a = vec![
        "invoker-doctor".to_string(),
        "incidents".into(),
        "--bundle".into(),
        dir.display().to_string(),
    ];
    a.extend(e.args.iter().cloned());
    a.extend(["--format".into(), format.into()]);
    a
}

/// The group an expectation is about.
fn find<'a>(groups: &'a [Value], g: &GroupExpect) -> Option<&'a Value> {
    groups.iter().find(|x| {
        x["service"] == g.service.as_str()
            && x["status"] == g.status
            && x["caller_hint"]
                .as_str()
                .is_some_and(|h| h.starts_with(&g.caller))
    })
}

fn check_groups(slug: &str, inc: &Value, e: &Expect, causes: bool, failures: &mut Vec<String>) {
    let groups = inc["groups"].as_array().cloned().unwrap_or_default();
    if groups.len() != e.group.len() {
        failures.push(format!(
            "{slug}: {} groups, expected {}",
            groups.len(),
            e.group.len()
        ));
    }
    for g in &e.group {
        let Some(got) = find(&groups, g) else {
            failures.push(format!(
                "{slug}: no group {} {} {}",
                g.service, g.status, g.caller
            ));
            continue;
        };
        let what = format!("{slug} {} {}", g.service, g.caller);
        if got["gate"] != g.gate.as_str() {
            failures.push(format!("{what}: gate {}", got["gate"]));
        }
        if got["logged"] != g.logged {
            failures.push(format!("{what}: logged {}", got["logged"]));
        }
        if !got["onset"]
            .as_str()
            .is_some_and(|o| o.starts_with(&g.onset))
        {
            failures.push(format!("{what}: onset {} not {}…", got["onset"], g.onset));
        }
        let series: u64 = got["per_minute"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p[1].as_u64()).sum())
            .unwrap_or(0);
        if Some(series) != got["count"].as_u64() {
            failures.push(format!(
                "{what}: per_minute sums to {series}, count {}",
                got["count"]
            ));
        }
        let top = &got["changes"][0];
        match &g.change {
            Some(id) => {
                if top["insert_id"] != id.as_str() {
                    failures.push(format!("{what}: top change {} not {id}", top["insert_id"]));
                }
                if let Some(says) = &g.change_says
                    && !top["summary"].as_str().is_some_and(|s| s.contains(says))
                {
                    failures.push(format!("{what}: top change says {}", top["summary"]));
                }
            }
            None => {
                if got["changes"].as_array().is_some_and(|a| !a.is_empty()) {
                    failures.push(format!("{what}: expected no change, got {top}"));
                }
            }
        }
        if let Some(rc) = g.root_cause.as_ref().filter(|_| causes) {
            let cause = got["report"]["findings"][0]["cause"]
                .as_str()
                .unwrap_or("none");
            if cause != rc {
                failures.push(format!("{what}: root cause {cause}, expected {rc}"));
            }
        }
    }
}

#[test]
fn incident_fixtures_name_the_onset_the_change_and_the_root_cause() {
    let all = incident_fixtures();
    assert!(all.len() >= 5, "the incident fixtures, found {}", all.len());
    let mut failures = Vec::new();
    for (slug, dir, e) in &all {
        let out = run_args(&args(dir, e, "json"));
        let inc: Value =
            serde_json::from_str(&out.stdout).unwrap_or_else(|err| panic!("{slug}: {err}"));
        check_groups(slug, &inc, e, true, &mut failures);
        if out.code != e.exit {
            failures.push(format!("{slug}: exit {} expected {}", out.code, e.exit));
        }
        let text = run_args(&args(dir, e, "text")).stdout;
        if e.group.iter().any(|g| g.change.is_none())
            && !text.contains("Nothing in the Admin Activity log")
        {
            failures.push(format!(
                "{slug}: the text does not say that nothing changed"
            ));
        }
        let md = run_args(&args(dir, e, "markdown")).stdout;
        if !md.starts_with("## invoker-doctor incidents") {
            failures.push(format!("{slug}: markdown heading"));
        }
        insta::with_settings!({
            snapshot_path => dir.join("expected"),
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => e.summary.clone(),
        }, {
            insta::assert_snapshot!("incidents.json", out.stdout);
            insta::assert_snapshot!("incidents.txt", text);
        });
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_bundle_without_a_window_starts_at_its_first_refusal_and_says_so() {
    let dir = workspace_root().join("fixtures/incidents-sa-deleted-recreated");
    let out = run_args(&[
        "invoker-doctor".into(),
        "incidents".into(),
        "--bundle".into(),
        dir.display().to_string(),
    ]);
    assert!(
        out.stdout
            .contains("the onset may be earlier; widen --since"),
        "{}",
        out.stdout
    );
    let only = run_args(&[
        "invoker-doctor".into(),
        "incidents".into(),
        "--bundle".into(),
        dir.display().to_string(),
        "--service".into(),
        "no-such-service".into(),
        "--format".into(),
        "json".into(),
    ]);
    let v: Value = serde_json::from_str(&only.stdout).expect("test data");
    assert_eq!(v["groups"].as_array().map(Vec::len), Some(0));
    assert_eq!(only.code, 0);
}

/// Live against the fake serving the two-services bundle: the same groups, onsets and changes
/// as offline, and `--record` replays the same. (The root causes need the callers'
/// configurations, which the bundle holds and live mode cannot guess from a user agent.)
#[test]
fn live_incidents_match_the_bundle_and_record_replays() {
    let dir = workspace_root().join("fixtures/incidents-two-services-two-causes");
    let (_, _, e) = incident_fixtures()
        .into_iter()
        .find(|(s, _, _)| s == "incidents-two-services-two-causes")
        .expect("fixture");
    let live = Live::bundle(&dir, FakeOptions::new());
    let rec = tempfile::tempdir().expect("test data");
    let mut a: Vec<String> = vec![
        "incidents".into(),
        "--project".into(),
        "shop-prod".into(),
        "--format".into(),
        "json".into(),
        "--max-entries".into(),
        "5000".into(),
        "--record".into(),
        rec.path().display().to_string(),
    ];
    a.extend(e.args.iter().cloned());
    let out = live.run(&a);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let inc: Value = serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("{err}: {stderr}"));
    let mut failures = Vec::new();
    check_groups("live", &inc, &e, false, &mut failures);
    assert!(failures.is_empty(), "{}\n{stderr}", failures.join("\n"));
    // Only reads, and the incident query itself is one entries:list (paged) per project.
    assert!(live_is_read_only(&live));
    let replay = run_args(&[
        "invoker-doctor".into(),
        "incidents".into(),
        "--bundle".into(),
        rec.path().display().to_string(),
        "--format".into(),
        "json".into(),
        "--from".into(),
        e.args[1].clone(),
        "--to".into(),
        e.args[3].clone(),
    ]);
    let again: Value = serde_json::from_str(&replay.stdout).expect("test data");
    let mut failures = Vec::new();
    check_groups("replay", &again, &e, false, &mut failures);
    assert_eq!(out.status.code(), Some(replay.code), "{stderr}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        rec.path()
            .join("services/events-api/service.json")
            .is_file()
    );
    assert!(rec.path().join("logs.json").is_file());
}

fn live_is_read_only(live: &Live) -> bool {
    live.mutating_calls_none()
}

// ------------------------------------------------------------------- the page in a browser

/// Headless Chromium. CI (`CI=true`, where `.ci/run` installs it) requires it; elsewhere, such
/// as a fresh machine running the README's `cargo test --workspace`, the page test says loudly
/// that it did not run rather than failing for a missing browser.
fn chromium() -> Option<PathBuf> {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        for d in ["/usr/bin", "/usr/local/bin"] {
            let p = Path::new(d).join(c);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let why = "headless Chromium is needed for the HTML test: apt-get install -y chromium (.ci/run installs it)";
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
    crate::gcloud::note(&format!(
        "SKIPPED the incidents HTML page in a browser (tests/it/incidents.rs): {why}; the chart was NOT checked"
    ));
    None
}

/// RGB(A) pixels of an 8-bit PNG (colour types 2 and 6, as Chromium writes).
fn decode_png(bytes: &[u8]) -> (usize, usize, usize, Vec<u8>) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let mut i = 8;
    let (mut w, mut h, mut bpp) = (0usize, 0usize, 0usize);
    let mut idat = Vec::new();
    while i + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[i..i + 4].try_into().expect("test data")) as usize;
        let kind = &bytes[i + 4..i + 8];
        let data = &bytes[i + 8..i + 8 + len];
        match kind {
            b"IHDR" => {
                w = u32::from_be_bytes(data[0..4].try_into().expect("test data")) as usize;
                h = u32::from_be_bytes(data[4..8].try_into().expect("test data")) as usize;
                assert_eq!(data[8], 8, "8-bit depth");
                bpp = match data[9] {
                    2 => 3,
                    6 => 4,
                    t => panic!("PNG colour type {t}"),
                };
            }
            b"IDAT" => idat.extend_from_slice(data),
            _ => {}
        }
        i += 12 + len;
    }
    let raw = miniz_oxide::inflate::decompress_to_vec_zlib(&idat).expect("inflate");
    let stride = w * bpp;
    let mut out = vec![0u8; h * stride];
    for y in 0..h {
        let f = raw[y * (stride + 1)];
        let line = &raw[y * (stride + 1) + 1..(y + 1) * (stride + 1)];
        for x in 0..stride {
            let a = if x >= bpp {
                out[y * stride + x - bpp]
            } else {
                0
            };
            let b = if y > 0 { out[(y - 1) * stride + x] } else { 0 };
            let c = if y > 0 && x >= bpp {
                out[(y - 1) * stride + x - bpp]
            } else {
                0
            };
            let v = match f {
                0 => line[x],
                1 => line[x].wrapping_add(a),
                2 => line[x].wrapping_add(b),
                3 => line[x].wrapping_add(((a as u16 + b as u16) / 2) as u8),
                4 => {
                    let p = a as i16 + b as i16 - c as i16;
                    let (pa, pb, pc) = (
                        (p - a as i16).abs(),
                        (p - b as i16).abs(),
                        (p - c as i16).abs(),
                    );
                    let pr = if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    };
                    line[x].wrapping_add(pr)
                }
                _ => panic!("PNG filter {f}"),
            };
            out[y * stride + x] = v;
        }
    }
    (w, h, bpp, out)
}

fn hex(c: &str) -> (u8, u8, u8) {
    let p = |i: usize| u8::from_str_radix(&c[i..i + 2], 16).expect("test data");
    (p(1), p(3), p(5))
}

fn count_colour(px: &[u8], bpp: usize, c: (u8, u8, u8)) -> usize {
    px.chunks(bpp)
        .filter(|p| {
            (p[0] as i16 - c.0 as i16).abs() <= 6
                && (p[1] as i16 - c.1 as i16).abs() <= 6
                && (p[2] as i16 - c.2 as i16).abs() <= 6
        })
        .count()
}

#[test]
fn the_html_page_draws_the_chart_and_labels_the_changes_in_chromium() {
    let dir = workspace_root().join("fixtures/incidents-terraform-policy-wipe");
    let (_, _, e) = incident_fixtures()
        .into_iter()
        .find(|(s, _, _)| s == "incidents-terraform-policy-wipe")
        .expect("fixture");
    let html = run_args(&args(&dir, &e, "html")).stdout;
    // Self-contained: nothing fetched from anywhere.
    for bad in ["http://", "https://", "src=", "<script", "<link", "url("] {
        let outside_text = html
            .split('<')
            .filter(|t| !t.starts_with("pre") && !t.starts_with("p>") && !t.starts_with("td"))
            .any(|t| t.split('>').next().is_some_and(|tag| tag.contains(bad)));
        assert!(!outside_text, "the page references `{bad}` in a tag");
    }
    let tmp = tempfile::tempdir().expect("test data");
    let page = tmp.path().join("incidents.html");
    std::fs::write(&page, &html).expect("test data");
    let shot = tmp.path().join("shot.png");
    let Some(bin) = chromium() else {
        return;
    };
    let common = |c: &mut std::process::Command| {
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
        ])
        .env("HOME", tmp.path());
    };
    let mut c = std::process::Command::new(&bin);
    common(&mut c);
    let out = c
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1000,900")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(
        shot.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&shot).expect("test data");
    if let Ok(keep) = std::env::var("IPD_KEEP_SCREENSHOT") {
        std::fs::write(keep, &bytes).expect("test data");
    }
    let (w, h, bpp, px) = decode_png(&bytes);
    assert_eq!((w, h), (1000, 900));
    let bars = count_colour(&px, bpp, hex(ipd_render::incidents::BAR_COLOUR));
    let onset = count_colour(&px, bpp, hex(ipd_render::incidents::ONSET_COLOUR));
    let change = count_colour(&px, bpp, hex(ipd_render::incidents::CHANGE_COLOUR));
    assert!(bars > 2000, "refusal bars drawn: {bars} pixels");
    assert!(onset > 50, "onset marker drawn: {onset} pixels");
    assert!(change > 100, "change markers drawn: {change} pixels");
    // The DOM as the browser built it: labels on the time axis and the diagnosis.
    let mut c = std::process::Command::new(&bin);
    common(&mut c);
    let dom = c
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("class=\"change-label\""), "{dom}");
    assert!(dom.contains("SetIamPolicy 10:14:32"), "change labelled");
    assert!(dom.contains(" onset 10:15:"), "onset labelled");
    assert!(
        dom.contains("missing_invoker_binding"),
        "diagnosis under the chart"
    );
    assert_eq!(dom.matches("<svg").count(), 2, "one chart per group");
}
