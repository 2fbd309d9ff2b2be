//! Disk writes behind the responses: a bounded queue drained by a few
//! threads of their own.
//!
//! A write is a handful of blocking file calls. Handing each one to
//! tokio's blocking pool cost a task, a thread wake-up and a wake-up back
//! per write, and under a burst of cold misses it ran a thread per write
//! on the same cores as the requests. Here the writers take writes off one
//! queue back to back and only sleep when it is empty; the queue's bound
//! keeps the bodies waiting for disk within a known amount of memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_channel::{Sender, TrySendError};

type Write = Box<dyn FnOnce() + Send>;

/// The writers and their queue. Dropping it lets the writers finish what
/// is queued and exit.
pub(crate) struct DiskWrites {
    queue: Sender<Write>,
    /// Writes not queued because the queue was full (or no writer runs).
    skipped: AtomicU64,
    /// Writes queued or running: a stopping node waits for none.
    pending: Arc<AtomicUsize>,
}

impl DiskWrites {
    /// Starts `writers` threads behind a queue of `capacity` writes. More
    /// than one, so a slow write (an fsync, a device busy) does not hold up
    /// the rest.
    pub(crate) fn start(writers: usize, capacity: usize) -> DiskWrites {
        let (queue, jobs) = crossbeam_channel::bounded::<Write>(capacity);
        let pending = Arc::new(AtomicUsize::new(0));
        let mut started = 0;
        for _ in 0..writers {
            let (jobs, pending) = (jobs.clone(), Arc::clone(&pending));
            let spawned = std::thread::Builder::new().name("holdfast-disk-writer".into()).spawn(move || {
                for write in jobs {
                    // A write that panics loses its object, not the writer.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(write)).is_err() {
                        tracing::error!("a disk write panicked; the object stays in memory only");
                    }
                    pending.fetch_sub(1, Ordering::AcqRel);
                }
            });
            match spawned {
                Ok(_) => started += 1,
                Err(error) => tracing::error!(%error, "could not start a disk writer thread"),
            }
        }
        if started == 0 {
            // Nothing would drain the queue: keep it closed, so every
            // write is counted as skipped rather than held forever.
            drop(jobs);
        }
        DiskWrites { queue, skipped: AtomicU64::new(0), pending }
    }

    /// Queues a write; if the queue is full it is skipped and counted (the
    /// object stays in memory: disk admission is best effort).
    pub(crate) fn submit(&self, write: impl FnOnce() + Send + 'static) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        match self.queue.try_send(Box::new(write)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.pending.fetch_sub(1, Ordering::AcqRel);
                self.skipped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Writes queued or running.
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    pub(crate) fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn queued_writes_run_and_a_full_queue_skips_and_counts() {
        let writes = DiskWrites::start(1, 2);
        // Hold the only writer until the queue has been overfilled.
        let (release, held) = mpsc::channel::<()>();
        let (started, running) = mpsc::channel::<()>();
        writes.submit(move || {
            started.send(()).unwrap();
            held.recv().unwrap();
        });
        running.recv_timeout(Duration::from_secs(10)).expect("the writer takes the first write");
        let (done, finished) = mpsc::channel::<u32>();
        for n in 0..3 {
            let done = done.clone();
            writes.submit(move || done.send(n).unwrap());
        }
        assert_eq!(writes.skipped(), 1, "two fit in the queue, the third is skipped");
        assert_eq!(writes.pending(), 3, "one running, two queued; the skipped one is not pending");
        release.send(()).unwrap();
        let ran: Vec<u32> = (0..2).map(|_| finished.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
        assert_eq!(ran, vec![0, 1], "queued writes run in order");
    }

    #[test]
    fn a_panicking_write_does_not_stop_its_writer() {
        let writes = DiskWrites::start(1, 4);
        writes.submit(|| panic!("a bug in a write"));
        let (done, finished) = mpsc::channel::<()>();
        writes.submit(move || done.send(()).unwrap());
        finished.recv_timeout(Duration::from_secs(10)).expect("the writer goes on after a panic");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while writes.pending() > 0 {
            assert!(std::time::Instant::now() < deadline, "a panicked write still counts as pending");
            std::thread::yield_now();
        }
    }
}
