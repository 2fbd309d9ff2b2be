//! A response body streamed from the disk tier: each chunk is read off the
//! async threads and verified before any byte of it is sent. A chunk that
//! fails verification aborts the response (the client sees a broken
//! transfer, never wrong bytes) and quarantines the body file.

use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use holdfast_cache::disk::CorruptBody;
use holdfast_cache::{ChunkedBody, DiskTier};
use http_body::{Body, Frame, SizeHint};
use tokio::task::JoinHandle;

use crate::upstream::BoxError;

type ChunkRead = (ChunkedBody, Option<Result<Bytes, CorruptBody>>);

pub(crate) struct DiskStream {
    chunks: Option<ChunkedBody>,
    reading: Option<JoinHandle<ChunkRead>>,
    /// Offset in the body of the next chunk.
    offset: u64,
    /// The bytes to send.
    span: Range<u64>,
    disk: Option<Arc<DiskTier>>,
}

impl DiskStream {
    pub(crate) fn new(mut chunks: ChunkedBody, span: Range<u64>, disk: Option<Arc<DiskTier>>) -> DiskStream {
        let offset = chunks.skip_to(span.start);
        DiskStream { chunks: Some(chunks), reading: None, offset, span, disk }
    }
}

impl Body for DiskStream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.offset >= this.span.end {
                return Poll::Ready(None);
            }
            if this.reading.is_none() {
                let Some(mut chunks) = this.chunks.take() else { return Poll::Ready(None) };
                this.reading = Some(tokio::task::spawn_blocking(move || {
                    let next = chunks.next_chunk();
                    (chunks, next)
                }));
            }
            let Some(reading) = this.reading.as_mut() else { return Poll::Ready(None) };
            let joined = ready!(Pin::new(reading).poll(cx));
            this.reading = None;
            let (chunks, next) = match joined {
                Ok(pair) => pair,
                Err(error) => return Poll::Ready(Some(Err(Box::new(error)))),
            };
            let chunk = match next {
                None => return Poll::Ready(None),
                Some(Err(corrupt)) => {
                    if let Some(disk) = this.disk.clone() {
                        let digest = corrupt.0;
                        tokio::task::spawn_blocking(move || disk.quarantine_body(&digest));
                    }
                    return Poll::Ready(Some(Err(Box::new(corrupt))));
                }
                Some(Ok(chunk)) => chunk,
            };
            this.chunks = Some(chunks);
            let start = this.offset;
            this.offset += chunk.len() as u64;
            // The part of this chunk inside the span.
            let from = this.span.start.saturating_sub(start).min(chunk.len() as u64) as usize;
            let to = (this.span.end.saturating_sub(start)).min(chunk.len() as u64) as usize;
            if from < to {
                return Poll::Ready(Some(Ok(Frame::data(chunk.slice(from..to)))));
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.span.end.saturating_sub(self.span.start.max(self.offset)))
    }
}
