//! The HTTP server: auth, latency, faults, the read-only guard, call recording.

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::watch;

use crate::envelope::{self, Reply};
use crate::handlers;
use crate::options::{FakeOptions, Fault, Source};
use crate::routes::{self, Route, Target};
use crate::scenario::Scenario;

/// Largest request body read.
const MAX_BODY: usize = 8 * 1024 * 1024;
/// How long a stopping server waits for requests in flight.
const GRACE: Duration = Duration::from_secs(2);

/// One request the fake received, as it answered it.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: String,
    /// The raw path, percent-encoding untouched (`/v2/policies/x%2Fy/denypolicies`).
    pub path: String,
    /// The raw query string; `access_token`, `id_token`, `oauth_token` and `key` values are
    /// redacted.
    pub query: Option<String>,
    /// The request body as text (lossy UTF-8), when not empty.
    pub body: Option<String>,
    /// The read method it was routed to.
    pub source: Option<Source>,
    pub status: u16,
    /// Latency the fake added before answering.
    pub latency: Duration,
    /// The call could have changed state (setIamPolicy, PATCH, DELETE, a create, ...). The
    /// fake refused it; tests assert that none happened.
    pub mutating: bool,
    /// The answer came from fault injection.
    pub injected: bool,
    /// The request carried an `Authorization` header (its value is never kept).
    pub authorization: bool,
    /// When its headers arrived (before the latency), for start-to-first-request figures.
    pub received: std::time::Instant,
}

impl Call {
    /// The body parsed as JSON.
    pub fn body_json(&self) -> Option<Value> {
        self.body
            .as_deref()
            .and_then(|b| serde_json::from_str(b).ok())
    }
}

struct Shared {
    scenario: Scenario,
    options: FakeOptions,
    faults: Mutex<BTreeMap<Source, (Fault, u32)>>,
    calls: Mutex<Vec<Call>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// The status to inject for this call of `source`, if any (counts transient faults).
    fn take_fault(&self, source: Source) -> Option<u16> {
        let mut faults = lock(&self.faults);
        let (fault, served) = faults.get_mut(&source)?;
        match fault.times {
            None => Some(fault.status),
            Some(n) if *served < n => {
                *served += 1;
                Some(fault.status)
            }
            Some(_) => None,
        }
    }

    fn check_auth(&self, headers: &HeaderMap) -> Option<Reply> {
        let expected = self.options.token.as_deref()?;
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Some(envelope::unauthenticated(true));
        };
        let presented = value.to_str().ok().and_then(|v| {
            let v = v.trim();
            v.get(..7)
                .filter(|p| p.eq_ignore_ascii_case("bearer "))
                .map(|_| v[7..].trim())
        });
        if presented == Some(expected) {
            None
        } else {
            Some(envelope::unauthenticated(false))
        }
    }
}

fn redact_query(q: &str) -> String {
    q.split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if matches!(k, "access_token" | "oauth_token" | "key" | "id_token") => {
                format!("{k}=REDACTED")
            }
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn to_response(r: Reply) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    for (k, v) in r.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            headers.insert(k, v);
        }
    }
    let body = serde_json::to_vec_pretty(&r.body).unwrap_or_default();
    (status, headers, body).into_response()
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let received = std::time::Instant::now();
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().map(str::to_string);
    let route = routes::classify(&method, &path);
    let source = match &route {
        Route::Read(t) => Some(t.source()),
        _ => None,
    };
    let mut latency = shared.options.latency;
    if let Some(s) = source {
        latency += shared
            .options
            .source_latency
            .get(&s)
            .copied()
            .unwrap_or_default();
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY).await;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut injected = false;
    // tokeninfo is authenticated by its parameter, not by a bearer header.
    let auth = match &route {
        Route::Read(Target::TokenInfo) => None,
        _ => shared.check_auth(&parts.headers),
    };
    let reply = match (&bytes, auth) {
        (Err(_), _) => envelope::error(
            413,
            format!("The request body is larger than {MAX_BODY} bytes."),
        ),
        (_, Some(denied)) => denied,
        (Ok(bytes), None) => match &route {
            Route::Unknown => envelope::not_found(format!(
                "The requested URL {path} was not found on this server."
            )),
            Route::Unserved => {
                envelope::not_found(format!("ipd-fakegcp does not implement {method} {path}."))
            }
            Route::Mutating => envelope::error(
                405,
                format!(
                    "ipd-fakegcp is read-only: {method} {path} could change state and was refused."
                ),
            )
            .with_header("allow", "GET, POST".to_string()),
            Route::Read(target) => {
                let sc = &shared.scenario;
                match shared.take_fault(target.source()) {
                    Some(400 | 401 | 403) if *target == Target::TokenInfo => {
                        injected = true;
                        envelope::invalid_token()
                    }
                    Some(403) if matches!(target, Target::ProjectAncestry(_)) => {
                        injected = true;
                        envelope::permission_denied_v1()
                    }
                    Some(status) => {
                        injected = true;
                        let consumer = format!("project_number:{}", sc.identity.project_number);
                        let mut r = envelope::injected(
                            status,
                            target.permission(),
                            &target.resource(&sc.identity.project_id),
                            target.source().service(),
                            &consumer,
                        );
                        if let (Some(secs), 429 | 503) = (shared.options.retry_after_secs, status) {
                            r = r.with_header("retry-after", secs.to_string());
                        }
                        r
                    }
                    None => {
                        let query: Vec<(String, String)> = raw_query
                            .as_deref()
                            .map(|q| {
                                url::form_urlencoded::parse(q.as_bytes())
                                    .into_owned()
                                    .collect()
                            })
                            .unwrap_or_default();
                        let req = handlers::Request {
                            query,
                            body: bytes.as_ref(),
                            logging_empty_pages: shared.options.logging_empty_pages,
                            token: shared.options.token.as_deref(),
                            identity: shared.options.identity.as_deref(),
                            host: parts
                                .headers
                                .get(header::HOST)
                                .and_then(|h| h.to_str().ok()),
                        };
                        handlers::answer(sc, target, &req)
                    }
                }
            }
        },
    };
    let body_text = match &bytes {
        Ok(b) if !b.is_empty() => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    };
    // A garbled source spoils its real answers (not the fake's refusals or injected faults).
    let garble = source
        .filter(|_| !injected && (200..300).contains(&reply.status))
        .and_then(|s| shared.options.garble.get(&s).copied());
    let (status, response) = match garble {
        Some(g) => {
            injected = true;
            let real = serde_json::to_string_pretty(&reply.body).unwrap_or_default();
            crate::garble::respond(g, &real)
        }
        None => (reply.status, to_response(reply)),
    };
    lock(&shared.calls).push(Call {
        method,
        path,
        query: raw_query.as_deref().map(redact_query),
        body: body_text,
        source,
        status,
        latency,
        mutating: route == Route::Mutating,
        injected,
        authorization: parts.headers.contains_key(header::AUTHORIZATION),
        received,
    });
    response
}

/// Starts fake servers.
pub struct FakeGcp;

impl FakeGcp {
    /// Serves `scenario` on `127.0.0.1:<free port>`, on the current tokio runtime.
    pub async fn start(scenario: Scenario, options: FakeOptions) -> Result<Running, crate::Error> {
        FakeGcp::start_on_port(scenario, options, 0).await
    }

    /// Serves on `127.0.0.1:port` (0 picks a free port), on the current tokio runtime.
    pub async fn start_on_port(
        scenario: Scenario,
        options: FakeOptions,
        port: u16,
    ) -> Result<Running, crate::Error> {
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
        let (shared, app) = build(scenario, options);
        let addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, app, rx));
        Ok(Running {
            addr,
            shared,
            stop: Some(tx),
            task: Some(task),
            thread: None,
        })
    }

    /// Serves on a thread of its own with its own runtime, for synchronous callers (CLI
    /// tests with `std::process::Command`, benchmarks). Dropping the handle stops it.
    pub fn start_in_background(
        scenario: Scenario,
        options: FakeOptions,
    ) -> Result<Running, crate::Error> {
        let (shared, app) = build(scenario, options);
        let (addr, tx, thread) = serve_in_background(app)?;
        Ok(Running {
            addr,
            shared,
            stop: Some(tx),
            task: None,
            thread: Some(thread),
        })
    }
}

fn build(scenario: Scenario, options: FakeOptions) -> (Arc<Shared>, Router) {
    let mut faults: BTreeMap<Source, (Fault, u32)> =
        scenario.faults.iter().map(|(s, f)| (*s, (*f, 0))).collect();
    for (s, f) in &options.faults {
        faults.insert(*s, (*f, 0));
    }
    let shared = Arc::new(Shared {
        scenario,
        options,
        faults: Mutex::new(faults),
        calls: Mutex::new(Vec::new()),
    });
    let app = Router::new().fallback(handle).with_state(shared.clone());
    (shared, app)
}

/// Serves `app` on `127.0.0.1:<free port>` on a thread of its own with its own runtime; send
/// `true` on the sender to stop it, then join the thread.
pub(crate) fn serve_in_background(
    app: Router,
) -> std::io::Result<(SocketAddr, watch::Sender<bool>, std::thread::JoinHandle<()>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let std_listener = std::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let (tx, rx) = watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("ipd-fakegcp".into())
        .spawn(move || {
            rt.block_on(async move {
                match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(listener) => serve(listener, app, rx).await,
                    Err(e) => eprintln!("ipd-fakegcp: cannot serve: {e}"),
                }
            });
        })?;
    Ok((addr, tx, thread))
}

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    stop: watch::Receiver<bool>,
) {
    let mut graceful_rx = stop.clone();
    let mut deadline_rx = stop;
    let graceful = async move {
        let _ = graceful_rx.wait_for(|s| *s).await;
    };
    let deadline = async move {
        let _ = deadline_rx.wait_for(|s| *s).await;
        tokio::time::sleep(GRACE).await;
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(graceful);
    tokio::select! {
        r = server.into_future() => {
            if let Err(e) = r {
                eprintln!("ipd-fakegcp: server error: {e}");
            }
        }
        () = deadline => {}
    }
}

/// A running fake. Dropping it stops the server.
pub struct Running {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<watch::Sender<bool>>,
    task: Option<tokio::task::JoinHandle<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// `http://127.0.0.1:PORT/`: the root for every API (run, logging, orgpolicy, CRM, IAM,
    /// pubsub, cloudscheduler, cloudtasks, eventarc, workflows, oauth2, policytroubleshooter).
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What is served.
    pub fn scenario(&self) -> &Scenario {
        &self.shared.scenario
    }

    /// Every request received so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.shared.calls).clone()
    }

    /// The calls routed to `source`.
    pub fn calls_to(&self, source: Source) -> Vec<Call> {
        lock(&self.shared.calls)
            .iter()
            .filter(|c| c.source == Some(source))
            .cloned()
            .collect()
    }

    /// Calls that could have changed state (refused by the read-only guard).
    pub fn mutating_calls(&self) -> Vec<Call> {
        lock(&self.shared.calls)
            .iter()
            .filter(|c| c.mutating)
            .cloned()
            .collect()
    }

    pub fn clear_calls(&self) {
        lock(&self.shared.calls).clear();
    }

    /// Injects (`Some`) or removes (`None`) a fault while running; a transient fault starts
    /// counting afresh.
    pub fn set_fault(&self, source: Source, fault: Option<Fault>) {
        let mut f = lock(&self.shared.faults);
        match fault {
            Some(x) => {
                f.insert(source, (x, 0));
            }
            None => {
                f.remove(&source);
            }
        }
    }

    /// Stops the server and waits for it (requests in flight get a short grace period).
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        if let Some(th) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || th.join()).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        if let Some(th) = self.thread.take() {
            let _ = th.join();
        }
    }
}
