//! The fuzzed origin of the `handler` target: it answers the n-th fetch
//! with the n-th response the input describes, and logs which bodies it
//! sent completely, so the target can tell a stored body from a forged one.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use holdfast_frontend::upstream::{BoxError, FetchFuture};
use holdfast_frontend::{Fetch, Fetched, Upstream, UpstreamError};
use http::header;
use http::{HeaderValue, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;

use super::{FETCH_STAMP, ResponseSpec};

#[derive(Default)]
pub(super) struct OriginLog {
    /// The URL (`host` + path and query) each fetch asked for, in order.
    pub(super) fetches: Vec<String>,
    /// Bodies the origin sent completely, by URL: what a stored object
    /// of that URL may hold (all of them: each Vary variant holds its own).
    pub(super) complete: HashMap<String, Vec<Bytes>>,
}

/// An origin that answers the n-th fetch with the n-th response of the input.
pub(super) struct FakeUpstream {
    pub(super) responses: Vec<ResponseSpec>,
    pub(super) log: Arc<Mutex<OriginLog>>,
}

impl Upstream for FakeUpstream {
    fn fetch(&self, request: Fetch) -> FetchFuture<'_> {
        let url = format!("{}{}", request.host, request.path_and_query);
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let n = log.fetches.len();
        log.fetches.push(url.clone());
        let (status, headers, chunks, error_at_end, slow) = match self.responses.get(n) {
            None => {
                return Box::pin(async {
                    Err(UpstreamError {
                        reason: "fake origin: no more answers".into(),
                        status: StatusCode::BAD_GATEWAY,
                    })
                });
            }
            Some(ResponseSpec::Fail(status)) => {
                let status = *status;
                return Box::pin(async move { Err(UpstreamError { reason: "fake origin: failed".into(), status }) });
            }
            Some(ResponseSpec::Answer { status, headers, chunks, error_at_end, slow }) => {
                (*status, headers, chunks, *error_at_end, *slow)
            }
        };
        let mut response = Response::new(
            FakeBody { chunks: chunks.iter().cloned().collect(), error_at_end, slow, yielded: false }.boxed(),
        );
        *response.status_mut() = status;
        for (name, value) in headers {
            response.headers_mut().append(name.clone(), value.clone());
        }
        response.headers_mut().insert(FETCH_STAMP, HeaderValue::from(n));
        // What a stored object of this URL may hold: the whole body when it
        // ends cleanly, and the first Content-Length bytes when there are
        // that many (the fill stores on the last announced byte).
        let body: Bytes = chunks.iter().flat_map(|c| c.iter().copied()).collect::<Vec<u8>>().into();
        let announced = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let complete = log.complete.entry(url).or_default();
        if !error_at_end {
            complete.push(body.clone());
        }
        if let Some(n) = announced.and_then(|n| usize::try_from(n).ok()).filter(|n| *n <= body.len()) {
            complete.push(body.slice(..n));
        }
        drop(log);
        Box::pin(async move {
            if slow {
                tokio::task::yield_now().await;
            }
            Ok(Fetched { origin: "fake".into(), response })
        })
    }
}

struct FakeBody {
    chunks: VecDeque<Bytes>,
    error_at_end: bool,
    slow: bool,
    yielded: bool,
}

impl Body for FakeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.slow && !self.yielded {
            self.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.yielded = false;
        if let Some(chunk) = self.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if std::mem::take(&mut self.error_at_end) {
            return Poll::Ready(Some(Err("fake origin: connection reset".into())));
        }
        Poll::Ready(None)
    }
}
