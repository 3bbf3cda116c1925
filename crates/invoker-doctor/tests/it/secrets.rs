//! No token or credential in any output: distinctive secrets are planted in every input path
//! (the `--token` flag, a `--token @FILE`, stdin, a paste, a bundle's `token.txt`, an ADC file,
//! the access-token file) and everything the process writes is scanned: stdout, stderr (with
//! `-v`), the `--record` bundle, error messages; in every format, live and offline.

use std::path::Path;
use std::process::{Command, Output};

use ipd_fakegcp::FakeOptions;

use crate::live::{Live, fixture, run_fixture};
use crate::support::{output_with_stdin, workspace_root};

const HEADER: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEiLCJ0eXAiOiJKV1QifQ";
/// `{"iss": "https://accounts.google.com", "aud": "https://orders-api-123456789012...", "email":
/// "checkout@shop-prod.iam.gserviceaccount.com", ...}`: a well-formed Google ID token's claims.
const PAYLOAD: &str = "eyJpc3MiOiJodHRwczovL2FjY291bnRzLmdvb2dsZS5jb20iLCJhdWQiOiJodHRwczovL29yZGVycy1hcGktMTIzNDU2Nzg5MDEyLmV1cm9wZS13ZXN0MS5ydW4uYXBwIiwiZW1haWwiOiJjaGVja291dEBzaG9wLXByb2QuaWFtLmdzZXJ2aWNlYWNjb3VudC5jb20iLCJlbWFpbF92ZXJpZmllZCI6dHJ1ZSwic3ViIjoiMTA0ODU3IiwiaWF0IjoxNzYzNjMzNDAwLCJleHAiOjE3NjM2MzcwMDB9";

/// A JWT whose signature names the input path it was planted in.
fn jwt(path: &str) -> String {
    format!("{HEADER}.{PAYLOAD}.PLANTED-SIG-{path}-Qx7Vb2Kp9Lm4Zr8Tn3Wc6Yh1")
}

/// The parts of a secret that must never show (the header segment is public boilerplate).
fn fragments(secret: &str) -> Vec<String> {
    let mut v = vec![secret.to_string()];
    if secret.starts_with("eyJ") {
        v.extend(secret.split('.').skip(1).map(str::to_string));
    }
    v
}

/// Every file under `dir`, as text.
fn files_under(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else if let Ok(b) = std::fs::read(&p) {
            out.push((
                p.display().to_string(),
                String::from_utf8_lossy(&b).into_owned(),
            ));
        }
    }
    out
}

fn scan(what: &str, out: &Output, extra: &[(String, String)], secrets: &[String]) {
    let mut texts = vec![
        (
            format!("{what} stdout"),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ),
        (
            format!("{what} stderr"),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
    ];
    texts.extend(extra.iter().cloned());
    for (name, t) in &texts {
        assert!(!t.contains("panicked"), "{name}: a panic: {t}");
        for s in secrets {
            for f in fragments(s) {
                assert!(!t.contains(&f), "{name} shows a secret fragment `{f}`");
            }
        }
    }
}

fn offline() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_invoker-doctor"));
    c.current_dir(workspace_root()).env("NO_COLOR", "1");
    c
}

#[test]
fn offline_inputs_never_show_a_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    for e in std::fs::read_dir(fixture("missing-binding-sa-not-bound-anywhere"))
        .expect("fixture")
        .flatten()
    {
        if e.path().is_file() {
            std::fs::copy(e.path(), dir.path().join(e.file_name())).expect("copy");
        }
    }
    let in_bundle = jwt("bundle");
    std::fs::write(
        dir.path().join("token.txt"),
        format!("Bearer {in_bundle}\n"),
    )
    .expect("token");
    let bundle = dir.path().to_str().expect("utf8").to_string();
    let file_tok = jwt("file");
    let tf = dir.path().join("caller-token.secret");
    std::fs::write(&tf, &file_tok).expect("write");
    let flag_tok = jwt("flag");
    let stdin_tok = jwt("stdin");
    let paste_tok = jwt("paste");
    let all = vec![
        in_bundle.clone(),
        file_tok.clone(),
        flag_tok.clone(),
        stdin_tok.clone(),
        paste_tok.clone(),
    ];
    for format in ["text", "json", "markdown"] {
        let base = ["diagnose", "--bundle", &bundle, "--format", format];
        let out = offline().args(base).output().expect("run");
        scan(&format!("bundle token.txt {format}"), &out, &[], &all);
        let out = offline()
            .args(base)
            .args(["--token", &flag_tok])
            .output()
            .expect("run");
        scan(&format!("--token JWT {format}"), &out, &[], &all);
        let at = format!("@{}", tf.display());
        let out = offline()
            .args(base)
            .args(["--token", &at])
            .output()
            .expect("run");
        scan(&format!("--token @FILE {format}"), &out, &[], &all);
        let out = output_with_stdin(offline().args(base).args(["--token", "-"]), &stdin_tok);
        scan(&format!("--token - {format}"), &out, &[], &all);
        let out = offline()
            .args(["explain", &paste_tok, "--format", format])
            .output()
            .expect("run");
        scan(&format!("explain JWT {format}"), &out, &[], &all);
        let pasted = format!(
            "curl -H 'Authorization: Bearer {paste_tok}' https://orders-api-123456789012.europe-west1.run.app/"
        );
        let out = offline()
            .args(["explain", &pasted, "--format", format])
            .output()
            .expect("run");
        scan(&format!("explain curl {format}"), &out, &[], &all);
    }
    // Error paths: a token file that cannot be a token, a malformed bundle file holding one.
    std::fs::write(
        dir.path().join("logs.json"),
        format!("[{{\"textPayload\": \"{flag_tok}\""),
    )
    .expect("write");
    let out = offline()
        .args([
            "diagnose",
            "--bundle",
            &bundle,
            "--token",
            &format!("{flag_tok} {stdin_tok}"),
        ])
        .output()
        .expect("run");
    scan("errors", &out, &[], &all);
}

#[test]
fn live_inputs_never_show_a_credential() {
    let flag_tok = jwt("live-flag");
    let record = tempfile::tempdir().expect("tempdir");
    let rec = record.path().join("rec");
    let rec_s = rec.to_str().expect("utf8").to_string();
    let (live, out) = run_fixture(
        "missing-binding-user-viewer-only",
        FakeOptions::new(),
        &[
            "--format", "json", "-v", "--token", &flag_tok, "--record", &rec_s,
        ],
    );
    let api = live_api_token(&live);
    let secrets = vec![flag_tok.clone(), api.clone()];
    assert!(
        rec.join("service.json").exists(),
        "--record wrote no bundle: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    scan("live -v --record", &out, &files_under(&rec), &secrets);
    // The recording replays without the token.
    let replay = offline()
        .args(["diagnose", "--bundle", &rec_s, "--format", "text"])
        .output()
        .expect("run");
    scan("replay", &replay, &[], &secrets);

    // An ADC file whose refresh token and client secret must never show, refused by its
    // token endpoint (a closed port on 127.0.0.1).
    let home = tempfile::tempdir().expect("tempdir");
    let adc_dir = home.path().join(".config/gcloud");
    std::fs::create_dir_all(&adc_dir).expect("mkdir");
    let refresh = "1//PLANTED-REFRESH-TOKEN-Hq8Zt3Lw6Pn1Xv4Rb7Kd";
    let secret = "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";
    std::fs::write(
        adc_dir.join("application_default_credentials.json"),
        serde_json::json!({"type": "authorized_user", "client_id": "1.apps.googleusercontent.com",
            "client_secret": secret, "refresh_token": refresh, "token_uri": "http://127.0.0.1:9/token"}).to_string(),
    )
    .expect("adc");
    let mut c = live.cmd();
    c.env_remove("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE")
        .env("HOME", home.path())
        .env("CLOUDSDK_CONFIG", &adc_dir)
        .env(
            "GOOGLE_APPLICATION_CREDENTIALS",
            adc_dir.join("application_default_credentials.json"),
        );
    let out = c
        .args(["diagnose", "-v", "--timeout", "3"])
        .args(live.target_args())
        .output()
        .expect("run");
    scan(
        "ADC refused",
        &out,
        &[],
        &[refresh.to_string(), secret.to_string()],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The access-token file given by flag, with a paste naming a request.
    let tf = home.path().join("at");
    std::fs::write(&tf, format!("{api}\n")).expect("write");
    let paste_tok = jwt("live-paste");
    let mut c = live.cmd();
    c.env_remove("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE");
    let out = c
        .args([
            "explain",
            &paste_tok,
            "-v",
            "--format",
            "json",
            "--access-token-file",
        ])
        .arg(&tf)
        .args(live.target_args())
        .output()
        .expect("run");
    scan("explain live", &out, &[], &[api, paste_tok]);
}

/// The access token the harness's fake accepts (read back from its token file).
fn live_api_token(live: &Live) -> String {
    let mut c = live.cmd();
    let env: Vec<(String, String)> = c
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_str()?.to_string(), v?.to_str()?.to_string())))
        .collect();
    let _ = &mut c;
    let path = env
        .iter()
        .find(|(k, _)| k == "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE")
        .map(|(_, v)| v.clone())
        .expect("token file");
    std::fs::read_to_string(path)
        .expect("token")
        .trim()
        .to_string()
}
