//! HTTP/2 responses that finish together leave in one write.
//!
//! hyper runs each HTTP/2 stream in its own task and the connection's
//! frames are written by the connection's task, which flushes after every
//! DATA frame whose payload it could not copy (h2 chains payloads of 256
//! bytes and more, and must write one before it takes the next). So four
//! answers to four requests that arrived in one packet left as four TLS
//! records and four `writev` (20,080 `writev` for 20,000 requests at four
//! streams per connection); with the multi-thread scheduler, the stream
//! that answered first also woke the connection before the others had
//! answered.
//!
//! [`CoalescedWrites`] sits between the connection and its socket (or TLS
//! stream). The first flush in a run of the connection's task keeps the
//! bytes and lets the task yield once (it wakes itself, so it runs again
//! after the tasks already queued: the other streams of the same read);
//! every frame written until then is gathered, and the first flush of the
//! next run writes them all at once. The cost is one more run of the task
//! per burst, a few microseconds, even for a lone answer. Only
//! connections that start with the HTTP/2 preface are coalesced; writes of
//! 16 KiB or more with nothing gathered go through uncopied.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Gathered bytes beyond this are written out before more are taken. It
/// bounds what a connection whose client stopped reading holds here (the
/// send timeout then closes it); a dozen 1 KiB answers fit.
const GATHER_LIMIT: usize = 16 * 1024;

/// A write at least this large, with nothing gathered, goes straight
/// through: large bodies are not copied.
const DIRECT_WRITE: usize = 16 * 1024;

/// The gathering buffer's first size (a small allocation class; it grows
/// up to [`GATHER_LIMIT`] when more is gathered).
const FIRST_CAPACITY: usize = 8 * 1024;

/// The client preface of HTTP/2 (RFC 9113 §3.4), as far as it tells.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// How many times the connection's task has run, shared between the
/// connection's future ([`Polled`]) and its stream.
#[derive(Debug, Default)]
pub(crate) struct TaskRuns(AtomicU64);

impl TaskRuns {
    fn current(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The connection's future, counting the times its task runs.
pub(crate) struct Polled<F> {
    inner: F,
    runs: Arc<TaskRuns>,
}

impl<F> Polled<F> {
    pub(crate) fn new(inner: F, runs: Arc<TaskRuns>) -> Self {
        Polled { inner, runs }
    }
}

impl<F: std::future::Future + Unpin> std::future::Future for Polled<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.runs.0.fetch_add(1, Ordering::Relaxed);
        Pin::new(&mut self.inner).poll(cx)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing read yet.
    Undecided,
    /// HTTP/2: writes are gathered.
    Gather,
    /// Anything else: every call goes straight through.
    Through,
}

/// A stream whose HTTP/2 writes are gathered until the other answers in
/// progress on the connection have joined them (see the module docs).
pub(crate) struct CoalescedWrites<S> {
    inner: S,
    mode: Mode,
    runs: Arc<TaskRuns>,
    /// Bytes taken and not yet written to `inner`, from `sent` on.
    gathered: Vec<u8>,
    sent: usize,
    /// The task run in which a flush was put off, if one was.
    deferred_in: Option<u64>,
}

impl<S> CoalescedWrites<S> {
    pub(crate) fn new(inner: S, runs: Arc<TaskRuns>) -> Self {
        CoalescedWrites { inner, mode: Mode::Undecided, runs, gathered: Vec::new(), sent: 0, deferred_in: None }
    }

    fn gather(&mut self, bytes: &[u8]) {
        if self.gathered.capacity() == 0 {
            self.gathered.reserve(FIRST_CAPACITY.max(bytes.len()));
        }
        self.gathered.extend_from_slice(bytes);
    }

    /// Whether a write of `len` bytes goes straight through: not HTTP/2,
    /// or nothing is gathered and it is large.
    fn passes_through(&self, len: usize) -> bool {
        self.mode != Mode::Gather || (self.gathered.is_empty() && len >= DIRECT_WRITE)
    }
}

impl<S: AsyncWrite + Unpin> CoalescedWrites<S> {
    /// Writes out everything gathered; the buffer is freed after, so an
    /// idle connection holds none.
    fn poll_write_gathered(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.gathered.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.gathered[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.gathered = Vec::new();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Whether a flush asked now may wait for the next run of the task:
    /// the first flush of a run does, and so does every later one of the
    /// same run (their frames join it).
    fn may_defer(&mut self) -> bool {
        let run = self.runs.current();
        match self.deferred_in {
            Some(deferred) => deferred == run,
            None => {
                self.deferred_in = Some(run);
                true
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CoalescedWrites<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.mode == Mode::Undecided && buf.filled().len() > before {
            let read = &buf.filled()[before..];
            let n = read.len().min(H2_PREFACE.len());
            self.mode = if read[..n] == H2_PREFACE[..n] { Mode::Gather } else { Mode::Through };
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CoalescedWrites<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        if self.mode == Mode::Gather && self.gathered.len() + bytes.len() > GATHER_LIMIT {
            ready!(self.poll_write_gathered(cx))?;
        }
        if self.passes_through(bytes.len()) {
            return Pin::new(&mut self.inner).poll_write(cx, bytes);
        }
        self.gather(bytes);
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        slices: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.mode != Mode::Gather {
            return Pin::new(&mut self.inner).poll_write_vectored(cx, slices);
        }
        let total: usize = slices.iter().map(|s| s.len()).sum();
        if self.gathered.len() + total > GATHER_LIMIT {
            ready!(self.poll_write_gathered(cx))?;
        }
        if self.passes_through(total) {
            return Pin::new(&mut self.inner).poll_write_vectored(cx, slices);
        }
        for slice in slices {
            self.gather(slice);
        }
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        // Gathering copies small frames anyway; large ones pass whole.
        self.mode == Mode::Gather || self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.gathered.is_empty() {
            if self.may_defer() {
                // Yield once: the task runs again after the tasks now
                // queued (the other answers), and this flush's bytes leave
                // with theirs.
                cx.waker().wake_by_ref();
                return Poll::Ready(Ok(()));
            }
            ready!(self.poll_write_gathered(cx))?;
        }
        self.deferred_in = None;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_write_gathered(cx))?;
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A socket that records each write it gets, and reads `incoming`.
    struct Recorder {
        incoming: &'static [u8],
        writes: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    impl AsyncRead for Recorder {
        fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            let n = self.incoming.len().min(buf.remaining());
            buf.put_slice(&self.incoming[..n]);
            self.incoming = &self.incoming[n..];
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
            self.writes.lock().unwrap().push(bytes.to_vec());
            Poll::Ready(Ok(bytes.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    type Writes = Arc<Mutex<Vec<Vec<u8>>>>;

    /// A stream that has read `incoming`, and what its socket was sent.
    async fn opened(incoming: &'static [u8]) -> (CoalescedWrites<Recorder>, Arc<TaskRuns>, Writes) {
        let writes = Writes::default();
        let runs = Arc::new(TaskRuns::default());
        let mut stream = CoalescedWrites::new(Recorder { incoming, writes: Arc::clone(&writes) }, Arc::clone(&runs));
        let mut first = [0u8; 64];
        let _ = stream.read(&mut first).await.unwrap();
        (stream, runs, writes)
    }

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn next_run(runs: &TaskRuns) {
        runs.0.fetch_add(1, Ordering::Relaxed);
    }

    #[tokio::test]
    async fn answers_written_before_the_next_run_leave_in_one_write() {
        let (mut stream, runs, writes) = opened(PREFACE).await;
        next_run(&runs);
        stream.write_all(b"first ").await.unwrap();
        stream.flush().await.unwrap();
        assert!(writes.lock().unwrap().is_empty(), "the first flush of a run waits for the next");
        stream.write_all(b"second ").await.unwrap();
        stream.flush().await.unwrap();
        assert!(writes.lock().unwrap().is_empty(), "the same run of the task gathers on");
        next_run(&runs);
        stream.write_all(b"third").await.unwrap();
        stream.flush().await.unwrap();
        assert_eq!(*writes.lock().unwrap(), [b"first second third".to_vec()]);
        assert_eq!(stream.gathered.capacity(), 0, "nothing held between bursts");
        next_run(&runs);
        stream.write_all(b"fourth").await.unwrap();
        stream.flush().await.unwrap();
        assert_eq!(writes.lock().unwrap().len(), 1, "a new burst waits for its own next run");
    }

    #[tokio::test]
    async fn a_lone_answer_leaves_on_the_next_run_and_large_writes_pass_whole() {
        let (mut stream, runs, writes) = opened(PREFACE).await;
        next_run(&runs);
        stream.write_all(b"only").await.unwrap();
        stream.flush().await.unwrap();
        next_run(&runs);
        stream.flush().await.unwrap();
        assert_eq!(*writes.lock().unwrap(), [b"only".to_vec()]);
        let big = vec![7u8; DIRECT_WRITE];
        stream.write_all(&big).await.unwrap();
        assert_eq!(writes.lock().unwrap().len(), 2, "a large write passes whole, uncopied");
    }

    #[tokio::test]
    async fn a_deferred_flush_wakes_its_task() {
        let (mut stream, runs, _writes) = opened(PREFACE).await;
        next_run(&runs);
        stream.write_all(b"frame").await.unwrap();
        let woken = Arc::new(WakeCount::default());
        let waker = std::task::Waker::from(Arc::clone(&woken));
        let flushed = Pin::new(&mut stream).poll_flush(&mut Context::from_waker(&waker));
        assert!(flushed.is_ready());
        assert_eq!(woken.0.load(Ordering::Relaxed), 1, "without a wake the bytes would wait for the next packet");
    }

    #[derive(Default)]
    struct WakeCount(AtomicU64);

    impl std::task::Wake for WakeCount {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn http1_is_never_held() {
        let (mut stream, _runs, writes) = opened(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await;
        stream.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        assert_eq!(writes.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn shutdown_writes_what_was_gathered() {
        let (mut stream, _runs, writes) = opened(PREFACE).await;
        stream.write_all(b"goaway").await.unwrap();
        stream.flush().await.unwrap();
        assert!(writes.lock().unwrap().is_empty());
        stream.shutdown().await.unwrap();
        assert_eq!(*writes.lock().unwrap(), [b"goaway".to_vec()]);
    }

    #[tokio::test]
    async fn gathering_stops_at_its_limit() {
        let (mut stream, _runs, writes) = opened(PREFACE).await;
        let frame = vec![1u8; 4 * 1024];
        for _ in 0..5 {
            stream.write_all(&frame).await.unwrap();
        }
        let written: Vec<usize> = writes.lock().unwrap().iter().map(Vec::len).collect();
        assert_eq!(written, [GATHER_LIMIT], "four frames fit, the fifth waits for them to go");
        assert_eq!(stream.gathered.len(), 4 * 1024);
    }
}
