//! The admin listener: `/live` and `/ready` for probes and load balancers.
//! (Purge, stats and metrics join it in the operations issue.)

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

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

fn answer(request: &Request<Incoming>, readiness: &Readiness) -> Response<Full<Bytes>> {
    let (status, text) = match request.uri().path() {
        "/live" => (StatusCode::OK, "live\n"),
        "/ready" if readiness.is_ready() => (StatusCode::OK, "ready\n"),
        "/ready" => (StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// Serves the admin endpoints until shutdown.
pub async fn serve(listener: TcpListener, readiness: Readiness, mut shutdown: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let readiness = readiness.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = answer(&request, &readiness);
                async move { Ok::<_, Infallible>(response) }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(std::time::Duration::from_secs(5));
            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
