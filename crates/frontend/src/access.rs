//! Access records: one per request, handed to a sink when the response body
//! has been sent (or the client went away), so the total time and the bytes
//! really sent are known.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::upstream::BoxError;

/// One request, as the access log sees it.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    pub time: SystemTime,
    pub site: String,
    pub method: String,
    pub path: String,
    pub protocol: &'static str,
    pub status: u16,
    pub cache: &'static str,
    /// Body bytes sent to the client.
    pub bytes: u64,
    /// Time to the response head.
    pub ttfb: Duration,
    /// Time to the last body byte (or the abort).
    pub total: Duration,
    /// The origin that answered a miss or pass.
    pub origin: Option<String>,
    /// False when the body was cut off (client gone, origin broke).
    pub complete: bool,
    /// The request span's trace id (32 hex digits) when traces are
    /// exported, so a log line leads to its trace.
    pub trace_id: Option<String>,
}

/// Reads the trace id of a request's span (the node's OpenTelemetry layer
/// knows it; the frontend does not depend on OpenTelemetry).
pub type TraceIdOf = fn(&tracing::Span) -> Option<String>;

/// Where access records go (the node writes them to a file or stdout).
pub trait AccessLog: Send + Sync + 'static {
    fn record(&self, record: AccessRecord);

    /// Records the sink could not keep up with and dropped.
    fn dropped(&self) -> u64 {
        0
    }
}

/// Counts the bytes of a response body and logs the record at its end.
pub(crate) struct LoggedBody<B> {
    inner: Pin<Box<B>>,
    record: Option<AccessRecord>,
    started: Instant,
    sink: Arc<dyn AccessLog>,
    /// The body had nothing to send (HEAD, 304, errors without a body).
    empty: bool,
    /// Content-Length: clients and hyper stop reading at that many bytes,
    /// so reaching it counts as complete even without an end of stream.
    expected: Option<u64>,
}

impl<B: Body> LoggedBody<B> {
    pub(crate) fn new(
        inner: B,
        record: AccessRecord,
        started: Instant,
        sink: Arc<dyn AccessLog>,
        expected: Option<u64>,
    ) -> Self {
        let empty = inner.is_end_stream();
        LoggedBody { inner: Box::pin(inner), record: Some(record), started, sink, empty, expected }
    }
}

impl<B> LoggedBody<B> {
    fn finish(&mut self, complete: bool) {
        if let Some(mut record) = self.record.take() {
            record.total = self.started.elapsed();
            record.complete = complete;
            self.sink.record(record);
        }
    }
}

impl<B> Body for LoggedBody<B>
where
    B: Body<Data = Bytes, Error = BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = self.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(record)) = (frame.data_ref(), self.record.as_mut()) {
                    record.bytes += data.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.finish(true);
                }
            }
            Poll::Ready(Some(Err(_))) => self.finish(false),
            Poll::Ready(None) => self.finish(true),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for LoggedBody<B> {
    fn drop(&mut self) {
        // Still unlogged: the client went away mid-body, the announced
        // length was reached, or there was no body to poll at all.
        let sent = self.record.as_ref().map_or(0, |r| r.bytes);
        let complete = self.empty || self.expected.is_some_and(|len| sent >= len);
        self.finish(complete);
    }
}
