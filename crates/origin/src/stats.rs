//! Counters of an origin group, read by the node's stats and metrics.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::BreakerState;

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.add(1);
    }

    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds (seconds) of the origin latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Time from sending a request to its response head, as a histogram.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations at or below each bound (not cumulative), plus +Inf.
    buckets: [Counter; 12],
    sum_micros: Counter,
}

impl LatencyHistogram {
    pub(crate) fn observe(&self, seconds: f64) {
        let index = LATENCY_BUCKETS.iter().position(|b| seconds <= *b).unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[index].inc();
        self.sum_micros.add((seconds * 1e6) as u64);
    }

    /// Counts per bucket (not cumulative) with their upper bounds, the last
    /// being +Inf, and the sum in seconds.
    pub fn buckets(&self) -> (Vec<(f64, u64)>, f64) {
        let bounds = LATENCY_BUCKETS.iter().copied().chain(std::iter::once(f64::INFINITY));
        let counts = bounds.zip(&self.buckets).map(|(bound, count)| (bound, count.get())).collect();
        (counts, self.sum_micros.get() as f64 / 1e6)
    }
}

/// Counters of one origin group.
#[derive(Debug, Default)]
pub struct OriginStats {
    /// Time to response head of successful origin requests.
    pub latency: LatencyHistogram,
    /// Requests handed to the group.
    pub requests: Counter,
    /// Requests that got no usable response within their budget.
    pub failures: Counter,
    /// Attempts after the first.
    pub retries: Counter,
    /// Retries refused by the node-wide retry budget.
    pub budget_exhausted: Counter,
    /// Times a request waited because every origin was ejected.
    pub holds: Counter,
    /// Origins ejected by passive health (breaker opened).
    pub ejections: Counter,
    /// Total time requests spent in the group, including holds.
    pub hold_time_ms: Counter,
    /// Attempts that found every connection to an origin in use
    /// (`max_connections`) until their budget ran out.
    pub busy: Counter,
    /// Attempts sent to an ejected origin because every origin was ejected
    /// and the request could wait no longer (panic routing).
    pub panic_routed: Counter,
    /// Requests whose retries ended on an origin's own 502/503/504, relayed
    /// to the client with its body.
    pub relayed_errors: Counter,
    /// HTTP connections opened to the group's origins (the rest of its
    /// requests reused a pooled one).
    pub connections_opened: std::sync::Arc<Counter>,
    /// Connections that dialled a member's last good addresses because
    /// resolving its name failed.
    pub dns_last_good_used: std::sync::Arc<Counter>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginStatsSnapshot {
    pub requests: u64,
    pub failures: u64,
    pub retries: u64,
    pub budget_exhausted: u64,
    pub holds: u64,
    pub ejections: u64,
    pub hold_time_ms: u64,
    pub busy: u64,
    pub panic_routed: u64,
    pub relayed_errors: u64,
    pub connections_opened: u64,
    pub dns_last_good_used: u64,
}

impl OriginStats {
    pub fn snapshot(&self) -> OriginStatsSnapshot {
        OriginStatsSnapshot {
            requests: self.requests.get(),
            failures: self.failures.get(),
            retries: self.retries.get(),
            budget_exhausted: self.budget_exhausted.get(),
            holds: self.holds.get(),
            ejections: self.ejections.get(),
            hold_time_ms: self.hold_time_ms.get(),
            busy: self.busy.get(),
            panic_routed: self.panic_routed.get(),
            relayed_errors: self.relayed_errors.get(),
            connections_opened: self.connections_opened.get(),
            dns_last_good_used: self.dns_last_good_used.get(),
        }
    }
}

/// Time to response head of one origin's successful attempts: a count and
/// a sum, so a reader can take the mean between two reads (which origin of
/// a group is slow; the group's histogram says how slow).
#[derive(Debug, Default)]
pub struct MemberLatency {
    count: Counter,
    sum_micros: Counter,
}

impl MemberLatency {
    pub(crate) fn observe(&self, seconds: f64) {
        self.count.inc();
        self.sum_micros.add((seconds * 1e6) as u64);
    }

    /// Attempts timed, and their total in microseconds.
    pub fn totals(&self) -> (u64, u64) {
        (self.count.get(), self.sum_micros.get())
    }
}

/// Health of one origin, for stats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    pub origin: String,
    /// Requests to it in progress (each holds a connection or an h2 stream).
    pub in_use: usize,
    pub fallback: bool,
    pub breaker: BreakerState,
    pub consecutive_failures: u32,
    /// Successful attempts timed, and the sum of their times to response
    /// head in microseconds.
    pub latency_count: u64,
    pub latency_us_total: u64,
}
