//! The node-wide budget for body bytes held by fills in progress.
//!
//! A fill holds the chunks of a body until every reader has read them, and
//! all of them while it may still store the body. Those bytes are outside
//! the memory tier, so without a bound a few clients that ask for large
//! objects and never read could hold any amount of memory. Every chunk a
//! fill holds is counted here: a fill that would go over the budget gives up
//! storing its body (it keeps streaming it), and a fill that stores nothing
//! waits for its readers and for room in the budget before it reads on.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// Bytes held by fills, against a limit.
#[derive(Debug)]
pub struct FillBudget {
    limit: u64,
    used: AtomicU64,
    /// Fills that gave up storing because the budget was full.
    shed: AtomicU64,
    /// Fills cut off because the budget was full and their clients had
    /// stopped reading.
    stalled: AtomicU64,
    /// Wakes fills waiting for room.
    released: Notify,
}

impl FillBudget {
    pub fn new(limit: u64) -> FillBudget {
        FillBudget {
            limit,
            used: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            stalled: AtomicU64::new(0),
            released: Notify::new(),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes held by fills now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Fills that gave up storing their body for lack of budget.
    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// Fills cut off because the budget was full and their clients had
    /// stopped reading.
    pub fn stalled(&self) -> u64 {
        self.stalled.load(Ordering::Relaxed)
    }

    pub(crate) fn count_stalled(&self) {
        self.stalled.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_shed(&self) {
        self.shed.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes `bytes` if they fit in the budget.
    pub(crate) fn try_take(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    /// Takes `bytes` whatever the budget says (a fill may always hold one
    /// chunk, so it can make progress).
    pub(crate) fn take(&self, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::AcqRel);
    }

    /// Whether there is room left.
    pub(crate) fn has_room(&self) -> bool {
        self.used() < self.limit
    }

    pub(crate) fn release(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let _ = self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| Some(used.saturating_sub(bytes)));
        self.released.notify_waiters();
    }

    /// Resolves at the next release (register before checking for room).
    pub(crate) fn released(&self) -> tokio::sync::futures::Notified<'_> {
        self.released.notified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_within_the_limit_and_releases() {
        let budget = FillBudget::new(100);
        assert!(budget.try_take(60));
        assert!(!budget.try_take(50), "60 + 50 is over 100");
        assert!(budget.try_take(40));
        assert!(!budget.has_room());
        budget.take(10);
        assert_eq!(budget.used(), 110, "a forced take may go over");
        budget.release(30);
        assert_eq!(budget.used(), 80);
        budget.release(1000);
        assert_eq!(budget.used(), 0, "releases saturate");
    }
}
