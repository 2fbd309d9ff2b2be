//! The admin listener: probes, dashboard, purge, stats, metrics, reload.
//!
//! `/live` and `/ready` answer anyone (probes), and so do the dashboard's
//! page and assets ([`crate::dashboard`]: code, no data). Every other
//! request needs `Authorization: Bearer <token>` (compared in constant
//! time); without it, 401 and nothing done, unknown paths included.
//! `/metrics` can be opened to scrapers without the token by configuration.
//! JSON in and out, in the types of holdfast-control. Every answer carries
//! `Cache-Control: no-store`, `X-Content-Type-Options: nosniff` and a
//! same-origin Content-Security-Policy.
//!
//! | method | path | does |
//! | --- | --- | --- |
//! | GET | /live, /ready | 200, or 503 while draining |
//! | GET | /, /dashboard/* | the dashboard: HTML, JS, CSS; it polls /stats with the token |
//! | POST | /purge | [`PurgeRequest`]: `{"url"|"prefix"|"tag": "...", "all": true, "soft": bool}` |
//! | GET | /stats | [`Stats`](holdfast_control::Stats): hit ratio, tiers against their budgets, origin health, recent purges |
//! | GET | /metrics | Prometheus (OpenMetrics) text |
//! | POST | /reload | re-reads the config file and TLS certificates |
//! | GET | /top?seconds=N&limit=M | [`TopAnswer`]: URLs by requests and by origin fetches |

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
use holdfast_control::{
    ErrorAnswer, PurgeAnswer, PurgeRecord, PurgeRequest, PurgeTarget, Purged, ReloadAnswer, TopAnswer,
};
use holdfast_frontend::Handler;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::purge_log::PurgeLog;
use crate::{dashboard, metrics, stats};

/// Whether the node wants traffic: false from the first moment of a drain,
/// so load balancers stop sending before the listeners close.
#[derive(Debug, Clone)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn new() -> Readiness {
        Readiness(Arc::new(AtomicBool::new(true)))
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    pub fn set_draining(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness::new()
    }
}

/// Everything the admin endpoints read or act on.
pub struct Admin {
    pub readiness: Readiness,
    /// The bearer token; `None` leaves only the open endpoints usable.
    pub token: Option<String>,
    pub metrics_without_token: bool,
    pub handler: Arc<Handler>,
    pub reloader: Arc<crate::reload::Reloader>,
    /// QUIC connection counters, when HTTP/3 is on.
    pub quic: Option<Arc<holdfast_frontend::h3::QuicStats>>,
    /// TCP connection counters.
    pub tcp: Arc<holdfast_frontend::TcpStats>,
    pub started: Instant,
    /// The same moment as a Unix time, for the restart metric.
    pub started_unix: u64,
    /// `cache.max_concurrent_fills` as started (a reload does not change it).
    pub fills_limit: usize,
    /// The last purges, for `/stats`.
    pub(crate) purges: PurgeLog,
}

/// Compares without an early exit, so the time taken says nothing about
/// how much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

pub(crate) type AdminResponse = Response<Full<Bytes>>;

/// Headers on every admin answer: nothing is cached (stats and tokens are
/// live and private), nothing is sniffed into another type, and a page can
/// load only from this listener, never inline script, never in a frame.
fn secure(mut response: AdminResponse) -> AdminResponse {
    use http::HeaderValue;
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    );
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

fn json_response(status: StatusCode, value: &impl Serialize) -> AdminResponse {
    let mut text = match serde_json::to_string(value) {
        Ok(text) => text,
        // Only a map with non-string keys fails to serialise; none is sent.
        Err(error) => return plain_owned(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot write JSON: {error}\n")),
    };
    text.push('\n');
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

fn error(status: StatusCode, message: &str) -> AdminResponse {
    json_response(status, &ErrorAnswer { error: message.to_owned() })
}

impl Admin {
    fn authorized(&self, request: &Request<Incoming>) -> bool {
        let Some(token) = &self.token else { return false };
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        constant_time_eq(presented.as_bytes(), token.as_bytes())
    }

    async fn answer(&self, request: Request<Incoming>) -> AdminResponse {
        secure(self.route(request).await)
    }

    async fn route(&self, request: Request<Incoming>) -> AdminResponse {
        let path = request.uri().path().to_owned();
        if let Some(page) = dashboard::asset(request.method(), &path) {
            return page;
        }
        match path.as_str() {
            "/live" => return plain(StatusCode::OK, "live\n"),
            "/ready" if self.readiness.is_ready() => return plain(StatusCode::OK, "ready\n"),
            "/ready" => return plain(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
            "/metrics" if self.metrics_without_token || self.authorized(&request) => {
                let mut response = plain(StatusCode::OK, "");
                *response.body_mut() = Full::new(Bytes::from(metrics::render(
                    &self.handler,
                    &self.reloader.origins(),
                    metrics::Listeners { tcp: &self.tcp, quic: self.quic.as_deref() },
                    self.started_unix,
                )));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                );
                return response;
            }
            _ => {}
        }
        if !self.authorized(&request) {
            let mut response = error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
            response.headers_mut().insert(header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
            return response;
        }
        match (request.method().clone(), path.as_str()) {
            (Method::POST, "/purge") => self.purge(request).await,
            (Method::GET, "/stats") => json_response(StatusCode::OK, &stats::read(self)),
            (Method::GET, "/top") => match top_query(request.uri().query().unwrap_or("")) {
                Ok((seconds, limit)) => json_response(StatusCode::OK, &top_answer(self.handler.top(seconds, limit))),
                Err(message) => error(StatusCode::BAD_REQUEST, message),
            },
            (Method::POST, "/reload") => match self.reloader.reload() {
                Ok(summary) => json_response(StatusCode::OK, &ReloadAnswer { reloaded: true, summary }),
                Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, &format!("{e:#}; the running config is kept")),
            },
            (_, "/purge" | "/stats" | "/reload" | "/top") => {
                error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            }
            _ => error(StatusCode::NOT_FOUND, "no such admin endpoint"),
        }
    }

    async fn purge(&self, request: Request<Incoming>) -> AdminResponse {
        let body = match Limited::new(request.into_body(), 64 * 1024).collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "purge request too large"),
        };
        let parsed: PurgeRequest = match serde_json::from_slice(&body) {
            Ok(parsed) => parsed,
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("bad purge request: {e}")),
        };
        let target = match parsed.target() {
            Ok(PurgeTarget::Url(url)) => holdfast_frontend::PurgeTarget::Url(url),
            Ok(PurgeTarget::Prefix(prefix)) => holdfast_frontend::PurgeTarget::Prefix(prefix),
            Ok(PurgeTarget::Tag(tag)) => holdfast_frontend::PurgeTarget::Tag(tag),
            Ok(PurgeTarget::All) => holdfast_frontend::PurgeTarget::All,
            Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        let started = Instant::now();
        let report = self.handler.purge(&target, parsed.soft).await;
        let answer = PurgeAnswer {
            kind: target.kind().to_owned(),
            purged: Purged { disk: report.disk, memory: report.memory },
            soft: parsed.soft,
            took_ms: started.elapsed().as_millis() as u64,
        };
        let at_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.purges.record(PurgeRecord {
            at_unix_ms,
            kind: answer.kind.clone(),
            purged: answer.purged,
            soft: answer.soft,
            target: match &target {
                holdfast_frontend::PurgeTarget::Url(s)
                | holdfast_frontend::PurgeTarget::Prefix(s)
                | holdfast_frontend::PurgeTarget::Tag(s) => Some(s.clone()),
                holdfast_frontend::PurgeTarget::All => None,
            },
            took_ms: answer.took_ms,
        });
        json_response(StatusCode::OK, &answer)
    }
}

/// `seconds` (1 to 10, default 1) and `limit` (1 to 32, default 10) of
/// `GET /top`.
fn top_query(query: &str) -> Result<(u32, usize), &'static str> {
    let (mut seconds, mut limit) = (1, 10);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("seconds", v)) => {
                seconds = v.parse().ok().filter(|s| (1..=10).contains(s)).ok_or("seconds: 1 to 10")?
            }
            Some(("limit", v)) => limit = v.parse().ok().filter(|l| (1..=32).contains(l)).ok_or("limit: 1 to 32")?,
            _ => return Err("GET /top takes seconds=N and limit=M"),
        }
    }
    Ok((seconds, limit))
}

fn top_answer(report: holdfast_frontend::TopReport) -> TopAnswer {
    let urls = |list: Vec<holdfast_frontend::TopUrl>| {
        list.into_iter().map(|t| holdfast_control::TopUrl { count: t.count, error: t.error, url: t.url }).collect()
    };
    TopAnswer {
        fetches: urls(report.fetches),
        requests: urls(report.requests),
        sample_every: report.sample_every,
        seconds: report.seconds,
    }
}

fn plain(status: StatusCode, text: &'static str) -> AdminResponse {
    plain_owned(status, text.to_owned())
}

fn plain_owned(status: StatusCode, text: String) -> AdminResponse {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// Serves the admin endpoints until shutdown.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            // After a handover the new process accepts on this socket too:
            // once told to stop, take no more.
            biased;
            _ = shutdown.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(%error, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let admin = Arc::clone(&admin);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let admin = Arc::clone(&admin);
                async move { Ok::<_, Infallible>(admin.answer(request).await) }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(std::time::Duration::from_secs(5));
            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(!constant_time_eq(b"x", b""));
    }

    #[test]
    fn top_query_bounds() {
        assert_eq!(top_query(""), Ok((1, 10)));
        assert_eq!(top_query("seconds=5&limit=32"), Ok((5, 32)));
        for bad in ["seconds=0", "seconds=11", "limit=0", "limit=33", "limit=x", "window=1", "seconds"] {
            assert!(top_query(bad).is_err(), "{bad}");
        }
    }
}
