//! The identifiers a paste names: the URL and the service, project and region it implies,
//! the principal, trace and insert IDs, the time. Every value is a string taken from the
//! paste; nothing is looked up.

use serde::Serialize;

/// What the paste names (the contract's `paste.identifiers`; null members where unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Identifiers {
    pub url: Option<String>,
    pub service: Option<String>,
    pub project: Option<String>,
    pub project_number: Option<String>,
    pub region: Option<String>,
    pub principal: Option<String>,
    pub trace: Option<String>,
    pub insert_id: Option<String>,
    pub time: Option<String>,
}

/// Region codes of the legacy `SERVICE-HASH-CODE.a.run.app` URLs, as Cloud Run serves them:
/// read from the gcping endpoints (one Cloud Run service per region, named after it, e.g.
/// `https://europe-west1-5tkroniexa-ew.a.run.app`). A code not in the table is unknown.
pub const REGION_CODES: &[(&str, &str)] = &[
    ("an", "asia-northeast1"),
    ("as", "asia-southeast1"),
    ("bq", "africa-south1"),
    ("de", "asia-east1"),
    ("df", "asia-east2"),
    ("dt", "asia-northeast2"),
    ("du", "asia-northeast3"),
    ("el", "asia-south1"),
    ("em", "asia-south2"),
    ("et", "asia-southeast2"),
    ("ew", "europe-west1"),
    ("ey", "europe-west3"),
    ("ez", "europe-west4"),
    ("km", "australia-southeast2"),
    ("lm", "europe-central2"),
    ("lz", "europe-north1"),
    ("ma", "europe-north2"),
    ("nn", "northamerica-northeast1"),
    ("no", "europe-southwest1"),
    ("nw", "europe-west2"),
    ("oa", "europe-west6"),
    ("oc", "europe-west8"),
    ("od", "europe-west9"),
    ("oe", "europe-west10"),
    ("og", "europe-west12"),
    ("pd", "northamerica-northeast2"),
    ("rj", "southamerica-east1"),
    ("tl", "southamerica-west1"),
    ("ts", "australia-southeast1"),
    ("uc", "us-central1"),
    ("ue", "us-east1"),
    ("uk", "us-east4"),
    ("ul", "us-east5"),
    ("uw", "us-west1"),
    ("vp", "us-south1"),
    ("wl", "us-west2"),
    ("wm", "us-west3"),
    ("wn", "us-west4"),
    ("ww", "me-central1"),
    ("wx", "me-central2"),
    ("zf", "me-west1"),
];

/// What a `*.run.app` host says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunHost {
    pub service: String,
    pub project_number: Option<String>,
    /// `None` for a legacy URL whose region code is not in [`REGION_CODES`].
    pub region: Option<String>,
    /// The region code of a legacy URL.
    pub code: Option<String>,
}

/// Reads a Cloud Run host: `[TAG---]SERVICE-NUMBER.REGION.run.app` (deterministic) or
/// `[TAG---]SERVICE-HASH-CODE.a.run.app` (legacy).
pub fn run_host(host: &str) -> Option<RunHost> {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    let rest = host.strip_suffix(".run.app")?;
    let (first, zone) = rest.split_once('.')?;
    let first = first.rsplit("---").next().unwrap_or(first);
    if zone == "a" {
        let mut parts = first.rsplitn(3, '-');
        let code = parts.next()?;
        let hash = parts.next()?;
        let service = parts.next()?;
        if service.is_empty() || hash.len() != 10 || code.len() != 2 {
            return None;
        }
        let region = REGION_CODES
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, r)| r.to_string());
        return Some(RunHost {
            service: service.into(),
            project_number: None,
            region,
            code: Some(code.into()),
        });
    }
    if zone.contains('.') || zone.is_empty() {
        return None;
    }
    let (service, number) = first.rsplit_once('-')?;
    if service.is_empty() || number.is_empty() || !number.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(RunHost {
        service: service.into(),
        project_number: Some(number.into()),
        region: Some(zone.into()),
        code: None,
    })
}

/// Hosts of documentation and sign-in pages: links in error texts, not what was called.
const NOT_TARGETS: &[&str] = &[
    "cloud.google.com",
    "docs.cloud.google.com",
    "developers.google.com",
    "console.cloud.google.com",
    "console.developers.google.com",
    "accounts.google.com",
    "iap.googleapis.com",
    "github.com",
    "firebase.google.com",
];

/// The `http(s)://` URLs in the text, in order, cut at quotes, brackets and whitespace.
pub fn urls(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("http") {
        let tail = &rest[i..];
        let scheme = if tail.starts_with("https://") {
            8
        } else if tail.starts_with("http://") {
            7
        } else {
            rest = &rest[i + 4..];
            continue;
        };
        let end = tail
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>' | ')' | '(' | '\\')
            })
            .unwrap_or(tail.len());
        let u = tail[..end].trim_end_matches(['.', ',', ';', ':']);
        if u.len() > scheme {
            out.push(u.to_string());
        }
        rest = &tail[end.max(1)..];
    }
    out
}

/// The host of a URL (no port).
pub fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.rsplit('@').next()?;
    let host = host.split(':').next()?;
    (!host.is_empty()).then_some(host)
}

/// The URL the refused request went to: the first URL that is not a documentation or
/// sign-in link, else a `HOST:443` a gRPC client names.
pub fn target_url(s: &str) -> Option<String> {
    let from_urls = urls(s).into_iter().find(|u| {
        host_of(u).is_some_and(|h| {
            let h = h.to_ascii_lowercase();
            !NOT_TARGETS.contains(&h.as_str()) && !h.ends_with(".apps.googleusercontent.com")
        })
    });
    from_urls.or_else(|| {
        s.split(|c: char| c.is_whitespace() || c == ',')
            .map(|w| w.trim_end_matches(':'))
            .find_map(|w| {
                let host = w.strip_suffix(":443")?;
                (host.ends_with(".run.app") && !host.contains('/'))
                    .then(|| format!("https://{host}"))
            })
    })
}

/// The value of `key` in JSON (`"key": "v"`) or in Logs Explorer's relaxed display
/// (`key: "v"`), first occurrence. Also numbers (`"key": 403`).
pub fn field(s: &str, key: &str) -> Option<String> {
    for pat in [format!("\"{key}\""), key.to_string()] {
        let mut from = 0;
        while let Some(i) = s[from..].find(&pat) {
            let at = from + i;
            from = at + pat.len();
            // A whole key: not the tail of a longer one (receiveTimestamp vs timestamp).
            if pat.starts_with(key)
                && s[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '"')
            {
                continue;
            }
            let rest = s[from..].trim_start();
            let Some(rest) = rest.strip_prefix(':').or_else(|| rest.strip_prefix('=')) else {
                continue;
            };
            let rest = rest.trim_start();
            if let Some(q) = rest.strip_prefix('"') {
                let v: String = q.chars().take_while(|c| *c != '"').collect();
                if !v.is_empty() {
                    return Some(v);
                }
            } else {
                let v: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
                    .collect();
                if !v.is_empty() {
                    return Some(v);
                }
            }
        }
    }
    None
}

/// The text right after `prefix` up to the first character in `stop`.
fn after<'a>(s: &'a str, prefix: &str, stop: &[char]) -> Option<&'a str> {
    let i = s.find(prefix)?;
    let rest = &s[i + prefix.len()..];
    let end = rest.find(|c: char| stop.contains(&c)).unwrap_or(rest.len());
    let v = &rest[..end];
    (!v.is_empty()).then_some(v)
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
}

/// `projects/X`, `namespaces/X`, `locations/X`, `services/X` segments of resource names.
fn segment_values<'a>(s: &'a str, key: &str) -> Vec<&'a str> {
    let pat = format!("{key}/");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = s[from..].find(&pat) {
        let at = from + i + pat.len();
        from = at;
        let v: &str = &s[at..];
        let end = v
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
            .unwrap_or(v.len());
        let v = v[..end].trim_end_matches('.');
        if !v.is_empty() {
            out.push(v);
        }
    }
    out
}

/// A 32-hex trace ID.
fn trace_id(s: &str) -> Option<String> {
    (s.len() == 32 && s.chars().all(|c| c.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

/// An RFC 3339 time in UTC (`2026-11-20T10:15:02.418Z`) starting at the beginning of `s`.
fn rfc3339_at(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let d = |i: usize| b.get(i).is_some_and(|c| c.is_ascii_digit());
    let ok = (0..4).all(d)
        && b.get(4) == Some(&b'-')
        && d(5)
        && d(6)
        && b.get(7) == Some(&b'-')
        && d(8)
        && d(9)
        && b.get(10) == Some(&b'T')
        && d(11)
        && d(12)
        && b.get(13) == Some(&b':')
        && d(14)
        && d(15)
        && b.get(16) == Some(&b':')
        && d(17)
        && d(18);
    if !ok {
        return None;
    }
    let mut end = 19;
    if b.get(end) == Some(&b'.') {
        end += 1;
        while d(end) {
            end += 1;
        }
    }
    (b.get(end) == Some(&b'Z')).then(|| &s[..=end])
}

fn first_rfc3339(s: &str) -> Option<String> {
    s.char_indices()
        .filter(|(_, c)| c.is_ascii_digit())
        .find_map(|(i, _)| rfc3339_at(&s[i..]))
        .map(str::to_string)
}

/// An HTTP `date:` header (`Fri, 20 Nov 2026 09:12:41 GMT`) as RFC 3339.
fn http_date(s: &str) -> Option<String> {
    let line = s.lines().find_map(|l| {
        let l = l.trim_start_matches(['<', ' ']);
        l.strip_prefix("date:")
            .or_else(|| l.strip_prefix("Date:"))
            .map(str::trim)
    })?;
    let t = chrono::DateTime::parse_from_rfc2822(line).ok()?;
    Some(
        t.with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
    )
}

fn member_for(email: &str) -> String {
    if email.ends_with(".gserviceaccount.com") {
        format!("serviceAccount:{email}")
    } else {
        format!("user:{email}")
    }
}

fn email_at(s: &str) -> Option<&str> {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '-' | '_' | '+')))
        .unwrap_or(s.len());
    let e = s[..end].trim_end_matches('.');
    (e.contains('@') && e.contains('.')).then_some(e)
}

/// Replaces anything that looks like a bearer token (`eyJ…` JWTs, `ya29.` access tokens,
/// `1//` refresh tokens) with `<redacted>`, so that no identifier ever carries one.
pub fn redact_tokens(s: &str) -> String {
    let token_char =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '+' | '=' | '~');
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while let Some(c) = s[i..].chars().next() {
        let rest = &s[i..];
        let starts = ["eyJ", "ya29.", "1//"].iter().any(|p| rest.starts_with(p))
            && !s[..i].ends_with(|c: char| c.is_ascii_alphanumeric());
        if starts {
            let end = rest.find(|c: char| !token_char(c)).unwrap_or(rest.len());
            if end >= 12 {
                out.push_str("<redacted>");
                i += end;
                continue;
            }
        }
        out.push(c);
        i += c.len_utf8();
    }
    out
}

impl Identifiers {
    fn redacted(self) -> Identifiers {
        let r = |v: Option<String>| v.map(|s| redact_tokens(&s));
        Identifiers {
            url: r(self.url),
            service: r(self.service),
            project: r(self.project),
            project_number: r(self.project_number),
            region: r(self.region),
            principal: r(self.principal),
            trace: r(self.trace),
            insert_id: r(self.insert_id),
            time: r(self.time),
        }
    }
}

/// Everything the text names, with no token in it. `url` is the refused request's URL (see
/// [`target_url`]).
pub fn extract(s: &str) -> Identifiers {
    extract_raw(s).redacted()
}

fn extract_raw(s: &str) -> Identifiers {
    let mut id = Identifiers {
        url: target_url(s),
        ..Default::default()
    };
    if let Some(h) = id.url.as_deref().and_then(host_of).and_then(run_host) {
        id.service = Some(h.service);
        id.project_number = h.project_number;
        id.region = h.region;
    }
    // `REGION-PROJECT.cloudfunctions.net/FUNCTION`: the region is one of the known ones.
    if let Some(rest) = id
        .url
        .as_deref()
        .and_then(host_of)
        .and_then(|h| h.strip_suffix(".cloudfunctions.net"))
        && let Some((region, project)) = REGION_CODES.iter().find_map(|(_, r)| {
            rest.strip_prefix(r)
                .and_then(|p| p.strip_prefix('-'))
                .filter(|p| !p.is_empty())
                .map(|p| (r.to_string(), p.to_string()))
        })
    {
        id.region = Some(region);
        id.project = Some(project);
    }
    // Log entries: resource labels, logName, trace, insertId, timestamp.
    let from_url = id.project.take();
    id.project = from_url
        .or_else(|| field(s, "project_id"))
        .or_else(|| {
            field(s, "logName").and_then(|n| {
                n.strip_prefix("projects/")?
                    .split('/')
                    .next()
                    .map(str::to_string)
            })
        })
        .or_else(|| after(s, "in project [", &[']']).map(str::to_string))
        .or_else(|| {
            segment_values(s, "namespaces")
                .into_iter()
                .chain(segment_values(s, "projects"))
                .find(|p| !digits(p) && *p != "-")
                .map(str::to_string)
        })
        .or_else(|| after(s, "?project=", &['&', '#', ';', ' ', '\n']).map(str::to_string))
        .filter(|p| !digits(p));
    if id.service.is_none() {
        id.service = field(s, "service_name")
            .or_else(|| after(s, "Cloud Run service [", &[']']).map(str::to_string))
            .or_else(|| {
                after(s, "Could not create Cloud Run service ", &[' ', '\n'])
                    .map(|v| v.trim_end_matches('.').to_string())
            })
            .or_else(|| {
                segment_values(s, "services")
                    .into_iter()
                    .find(|v| *v != "run.googleapis.com")
                    .map(|v| v.to_string())
            })
            .or_else(|| {
                // gcloud's own suggestion ends with the service: `... --role=roles/run.invoker SVC"`.
                after(s, "--role=roles/run.invoker ", &['"', ' ', '\n']).map(str::to_string)
            });
    }
    if id.region.is_none() {
        id.region = field(s, "location")
            .or_else(|| after(s, "region [", &[']']).map(str::to_string))
            .or_else(|| after(s, "--region=", &[' ', '"', '\n']).map(str::to_string))
            .or_else(|| {
                segment_values(s, "locations")
                    .into_iter()
                    .find(|l| *l != "global")
                    .map(str::to_string)
            })
            .or_else(|| {
                id.url
                    .as_deref()
                    .and_then(host_of)
                    .and_then(|h| h.strip_suffix("-run.googleapis.com").map(str::to_string))
            });
    }
    if id.project_number.is_none() {
        id.project_number = segment_values(s, "projects")
            .into_iter()
            .find(|p| digits(p))
            .map(str::to_string)
            .or_else(|| after(s, "has not been used in project ", &[' ', '\n']).map(str::to_string))
            .or_else(|| {
                s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '@'))
                    .find_map(|w| {
                        let n = w
                            .strip_prefix("service-")
                            .and_then(|r| r.split_once('@'))
                            .map(|(n, _)| n)
                            .or_else(|| w.strip_suffix("-compute@developer"))?;
                        digits(n).then(|| n.to_string())
                    })
            })
            .filter(|n| digits(n));
    }
    id.principal = after(s, "authenticated as ", &[' ', '\n'])
        .and_then(email_at)
        .map(str::to_string)
        .or_else(|| field(s, "principalEmail"))
        .or_else(|| {
            // gcloud: `User [EMAIL] does not have permission ...`
            after(s, "User [", &[']'])
                .and_then(email_at)
                .map(str::to_string)
        })
        .map(|e| member_for(&e));
    id.trace = field(s, "trace")
        .and_then(|t| trace_id(t.rsplit('/').next().unwrap_or(&t)))
        .or_else(|| {
            let l = s.to_ascii_lowercase();
            let i = l.find("x-cloud-trace-context:")?;
            let v = l[i + "x-cloud-trace-context:".len()..].trim_start();
            trace_id(v.split(['/', ';', ' ', '\n']).next()?)
        })
        .or_else(|| segment_values(s, "traces").into_iter().find_map(trace_id));
    id.insert_id = field(s, "insertId");
    id.time = field(s, "timestamp")
        .filter(|t| rfc3339_at(t).is_some())
        .or_else(|| http_date(s))
        .or_else(|| first_rfc3339(s));
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_hosts() {
        let d = run_host("orders-123456789012.europe-west1.run.app").unwrap();
        assert_eq!(
            (
                d.service.as_str(),
                d.project_number.as_deref(),
                d.region.as_deref()
            ),
            ("orders", Some("123456789012"), Some("europe-west1"))
        );
        let l = run_host("logineventmanagerhttp-zgmq4nw2bq-uc.a.run.app").unwrap();
        assert_eq!(
            (l.service.as_str(), l.region.as_deref()),
            ("logineventmanagerhttp", Some("us-central1"))
        );
        let tagged = run_host("green---my-app-42.us-east1.run.app").unwrap();
        assert_eq!(tagged.service, "my-app");
        let unknown = run_host("svc-abcdefghij-qq.a.run.app").unwrap();
        assert_eq!(
            (unknown.region, unknown.code.as_deref()),
            (None, Some("qq"))
        );
        for bad in [
            "run.app",
            "x.run.app",
            "svc.europe-west1.run.app",
            "example.com",
        ] {
            assert_eq!(run_host(bad), None, "{bad}");
        }
    }

    #[test]
    fn target_urls_skip_documentation_links() {
        let t = "The request was not authenticated. Read more at https://cloud.google.com/run/docs/securing/authenticating GET https://a-1.r.run.app/x.";
        assert_eq!(target_url(t).as_deref(), Some("https://a-1.r.run.app/x"));
        assert_eq!(
            target_url("could not call X on s-1.europe-west1.run.app:443: rpc error").as_deref(),
            Some("https://s-1.europe-west1.run.app")
        );
        assert_eq!(target_url("see https://cloud.google.com/run"), None);
    }

    #[test]
    fn fields_are_whole_keys() {
        let s =
            r#"{"receiveTimestamp": "2026-01-01T00:00:01Z", "timestamp": "2026-01-01T00:00:00Z"}"#;
        assert_eq!(
            field(s, "timestamp").as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        assert_eq!(field("status: 403", "status").as_deref(), Some("403"));
        assert_eq!(field("nothing", "status"), None);
    }

    #[test]
    fn tokens_are_redacted() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
        let s = format!("https://a-1.r.run.app/x?id_token={jwt}&k=ya29.a0AfB_abcdefghijkl");
        let r = redact_tokens(&s);
        assert_eq!(
            r,
            "https://a-1.r.run.app/x?id_token=<redacted>&k=<redacted>"
        );
        assert_eq!(redact_tokens("eyJ short"), "eyJ short");
        assert_eq!(
            redact_tokens("keyJabcdefghijklmnop"),
            "keyJabcdefghijklmnop"
        );
        assert_eq!(redact_tokens("ü eyJ€"), "ü eyJ€");
    }

    #[test]
    fn times() {
        assert_eq!(
            http_date("< date: Fri, 20 Nov 2026 09:12:41 GMT\n").as_deref(),
            Some("2026-11-20T09:12:41Z")
        );
        assert_eq!(
            first_rfc3339("[debug] [2026-06-02T10:11:12.345Z] x").as_deref(),
            Some("2026-06-02T10:11:12.345Z")
        );
        assert_eq!(first_rfc3339("2026/06/02 10:11:12"), None);
    }
}
