//! The tokio runtime the node serves on, sized to the CPUs it may use.
//!
//! With one CPU (a pod with a CPU limit of 1, or a process pinned to one
//! core, as the bench kit runs every cache), a work-stealing scheduler has
//! no other worker to hand tasks to, yet still pays for it: a second
//! thread blocked in `block_on`, atomic run queues, and wakeups that go
//! through its shared I/O driver. The current-thread scheduler runs the
//! same tasks on one thread without those costs. With HTTP/2 answers
//! gathered per run of the connection's task (see
//! `holdfast_frontend::coalesce`), an HTTP/2 hit costs a fifth less CPU on
//! one pinned core; HTTP/1.1 and HTTP/3 hits cost the same either way
//! (README › Benchmarks, `benches/cpu-per-request.sh`). With more CPUs the
//! multi-thread scheduler runs one worker per CPU.

use std::num::NonZeroUsize;

use tokio::runtime::{Builder, Runtime};

/// Threads `server.workers = 0` means: the CPUs this process may run on,
/// as its affinity mask and cgroup CPU quota allow (so a Kubernetes CPU
/// limit of 2 gives 2, not the node's 64).
pub fn usable_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// The scheduler that serves with `workers` threads (0: [`usable_cpus`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduler {
    /// One thread runs every task (and polls the sockets itself).
    CurrentThread,
    /// Work-stealing over this many worker threads.
    MultiThread(usize),
}

impl Scheduler {
    pub fn for_workers(workers: usize) -> Scheduler {
        match if workers == 0 { usable_cpus() } else { workers } {
            0 | 1 => Scheduler::CurrentThread,
            n => Scheduler::MultiThread(n),
        }
    }
}

/// Builds the serving runtime for `server.workers`. Blocking work (disk
/// reads, file origins) runs on tokio's blocking pool either way.
pub fn build(workers: usize) -> std::io::Result<Runtime> {
    let scheduler = Scheduler::for_workers(workers);
    let runtime = match scheduler {
        Scheduler::CurrentThread => Builder::new_current_thread().enable_all().build()?,
        Scheduler::MultiThread(n) => Builder::new_multi_thread().worker_threads(n).enable_all().build()?,
    };
    match scheduler {
        Scheduler::CurrentThread => tracing::info!("serving on 1 thread (current-thread scheduler)"),
        Scheduler::MultiThread(n) => tracing::info!("serving on {n} worker threads"),
    }
    Ok(runtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_worker_runs_on_the_current_thread_and_more_steal_work() {
        assert_eq!(Scheduler::for_workers(1), Scheduler::CurrentThread);
        assert_eq!(Scheduler::for_workers(3), Scheduler::MultiThread(3));
        let auto = Scheduler::for_workers(0);
        match usable_cpus() {
            1 => assert_eq!(auto, Scheduler::CurrentThread),
            n => assert_eq!(auto, Scheduler::MultiThread(n)),
        }
    }
}
