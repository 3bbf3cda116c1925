//! Fixture discovery and the case file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `fixtures/<slug>/case.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub summary: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// The cause expected at rank 1, or "none" when nothing should fire.
    pub root_cause: String,
    pub exit: i32,
    #[serde(default)]
    pub absent: Vec<String>,
    /// With a `troubleshoot.json`: the cross-check's expected `agreement`.
    #[serde(default)]
    pub cross_check: Option<String>,
    /// The expected `denial.state` (`seen`, `none_in_evidence`, `unknown`); checked when given.
    #[serde(default)]
    pub denial: Option<String>,
}

impl Case {
    /// The expected rank-1 cause, `None` for a healthy case.
    pub fn root_cause_opt(&self) -> Option<&str> {
        (self.root_cause != "none").then_some(self.root_cause.as_str())
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// Every fixture directory, sorted, with its case.
pub fn fixtures() -> Vec<(String, PathBuf, Case)> {
    let dir = workspace_root().join("fixtures");
    let mut v: Vec<(String, PathBuf, Case)> = std::fs::read_dir(&dir)
        .expect("fixtures dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("case.toml").is_file())
        .map(|e| {
            let path = e.path();
            let slug = e.file_name().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(path.join("case.toml")).expect("read case.toml");
            let case: Case =
                toml::from_str(&text).unwrap_or_else(|err| panic!("{slug}/case.toml: {err}"));
            (slug, path, case)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Runs the command line in-process (same code path as the binary, minus printing).
pub fn run_args(args: &[String]) -> invoker_doctor::Output {
    use clap::Parser;
    colored::control::set_override(false);
    let cli =
        invoker_doctor::cli::Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let mut empty: &[u8] = &[];
    invoker_doctor::run(&cli, &mut empty).unwrap_or_else(|e| panic!("{args:?}: {e:#}"))
}

pub fn diagnose_args(dir: &Path, case: &Case, format: &str) -> Vec<String> {
    let mut a = vec![
        "invoker-doctor".to_string(),
        "diagnose".into(),
        "--bundle".into(),
        dir.display().to_string(),
    ];
    a.extend(case.args.iter().cloned());
    a.extend(["--format".into(), format.into()]);
    a
}

/// A stand-in proxy that records every connection made to it and refuses it: live tests point
/// `HTTPS_PROXY`/`HTTP_PROXY` at it (the fake on 127.0.0.1 is in `NO_PROXY`), so a call to
/// any host but the fake's shows up here instead of leaving the machine.
pub struct StrayRecorder {
    addr: std::net::SocketAddr,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl StrayRecorder {
    pub fn start() -> StrayRecorder {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the recorder");
        let addr = l.local_addr().expect("recorder address");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { continue };
                let _ = c.set_read_timeout(Some(std::time::Duration::from_secs(2)));
                let mut buf = [0u8; 512];
                let n = c.read(&mut buf).unwrap_or(0);
                let first = String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .next()
                    .unwrap_or("(nothing sent)")
                    .to_string();
                if let Ok(mut v) = log.lock() {
                    v.push(first);
                }
                let _ = c.write_all(
                    b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        StrayRecorder { addr, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The first line of every connection so far (`CONNECT host:443 HTTP/1.1`), emptied.
    pub fn take(&self) -> Vec<String> {
        self.seen
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

/// Runs `cmd` with `input` on its standard input; stdout and stderr captured.
pub fn output_with_stdin(cmd: &mut std::process::Command, input: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}
