//! What every fuzz target checks, shared so that each target is one line.
//!
//! Invariants (beyond "no panic, no abort, no runaway memory"): a file that does not load is
//! named in its error or gap; a bundle that loads diagnoses and renders in every format; the
//! JSON report is valid JSON; no rendering shows a token planted in the input in full.

use ipd_model::bundle::from_files;
use ipd_model::gathered::GapState;

/// Text of at most this many bytes is fed on; libFuzzer's `-max_len` keeps inputs smaller.
const MAX_INPUT: usize = 1 << 20;

/// One bundle file through its parser (by name). The diagnosis and the renderers are the
/// `bundle` target's: a bundle of one file reaches them there, and leaving them out here keeps
/// each parser target's executions several times faster (libFuzzer's per-run cost grows with
/// the code an input runs through).
pub fn one_file(name: &str, data: &[u8]) {
    let Some(text) = text(data) else { return };
    match from_files([(name, name, text)]) {
        Ok(loaded) => {
            // A parse failure is a failed gap naming the file, and a warning says so.
            for w in loaded.warnings.iter().filter(|w| w.ends_with("diagnosing without it")) {
                assert!(w.starts_with(name), "warning does not name the file: {w}");
            }
            for g in loaded.evidence.gaps() {
                if g.state == GapState::Failed {
                    assert!(!g.detail.is_empty(), "a failed gap without a detail");
                }
            }
        }
        // Nothing readable at all: the error names the file.
        Err(e) => assert_eq!(e.file, name, "error does not name the file: {e}"),
    }
}

/// A whole bundle, written as a text: optional `@status N`, `@at T`, `@caller P`, `@public`
/// lines, then sections `=== FILE NAME` followed by that file's content. Easy to seed from a
/// fixture directory and to read when a crash is found.
pub fn bundle(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let mut inputs = ipd_model::Inputs::default();
    let mut files: Vec<(String, String)> = Vec::new();
    for (i, part) in text.split("=== ").enumerate() {
        if i == 0 {
            for line in part.lines() {
                let (k, v) = line.split_once(' ').unwrap_or((line, ""));
                match k {
                    "@status" => inputs.status = v.trim().parse().ok(),
                    "@at" => inputs.at = ipd_model::time::parse_rfc3339(v.trim()),
                    "@caller" => inputs.caller = Some(v.trim().to_string()),
                    "@public" => inputs.expect_public = true,
                    _ => {}
                }
            }
            continue;
        }
        let (name, body) = part.split_once('\n').unwrap_or((part, ""));
        files.push((name.trim().to_string(), body.to_string()));
        if files.len() > 64 {
            break;
        }
    }
    let loaded = from_files(
        files
            .iter()
            .map(|(n, t)| (n.as_str(), n.as_str(), t.as_str())),
    );
    let mut ev = match loaded {
        Ok(l) => l.evidence,
        Err(e) => {
            assert!(
                files.iter().any(|(n, _)| *n == e.file),
                "error names no file of the bundle: {e}"
            );
            return;
        }
    };
    ev.inputs = inputs;
    for g in ev.gaps() {
        if g.state == GapState::Failed {
            assert!(!g.detail.is_empty());
        }
    }
    let report = ipd_rules::diagnose(&ev);
    let json = ipd_render::json(&report);
    let _: serde_json::Value = serde_json::from_str(&json).expect("report is JSON");
    let text = ipd_render::text(&report);
    let md = ipd_render::markdown(&report);
    // A token given in full never shows in full.
    if let Some(tok) = &ev.token {
        let raw = tok.raw.expose().trim();
        if raw.len() >= 40 {
            for out in [&json, &text, &md] {
                assert!(!out.contains(raw), "a rendering shows the token in full");
            }
        }
    }
}

/// A paste through classification.
pub fn paste(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let p = ipd_model::paste::classify(text);
    let _ = p.kind();
    let _ = p.request_ref();
}

/// A token through analysis; its rendering never shows it in full.
pub fn token(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let t = ipd_model::token::Token::analyze(text);
    let shown = format!("{t:?}");
    let raw = t.raw.expose().trim();
    if raw.len() >= 40 {
        assert!(!shown.contains(raw), "Debug shows the token in full");
    }
    let _ = t.principal();
}

fn text(data: &[u8]) -> Option<&str> {
    if data.len() > MAX_INPUT {
        return None;
    }
    std::str::from_utf8(data).ok()
}
