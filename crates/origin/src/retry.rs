//! Retry pacing and the node-wide retry budget.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How one request retries and how long it may wait for an origin.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Longest a request waits, across attempts and ejections, for an
    /// origin to answer: long enough to ride out an origin pod restart.
    pub hold_budget: Duration,
    /// Longest a request keeps retrying an origin that answers but fails
    /// (502/503/504, or a connection closed without a response): it is up,
    /// so waiting longer mostly adds load, and the client should get the
    /// origin's own answer while it still waits for one. Never more than
    /// `hold_budget`; a refused connection restores the full hold.
    pub answered_error_hold: Duration,
    /// First backoff; each retry doubles it, up to `max_backoff`, with
    /// equal jitter (a random pause between half and all of it) so waiting
    /// requests do not return in lockstep yet always back off.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

pub const DEFAULT_HOLD_BUDGET: Duration = Duration::from_secs(10);
pub const DEFAULT_ANSWERED_ERROR_HOLD: Duration = Duration::from_secs(3);
pub const DEFAULT_BASE_BACKOFF: Duration = Duration::from_millis(50);
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(1);

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            hold_budget: DEFAULT_HOLD_BUDGET,
            answered_error_hold: DEFAULT_ANSWERED_ERROR_HOLD,
            base_backoff: DEFAULT_BASE_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }
}

impl RetryPolicy {
    /// How long a request that may hold waits in all: the full hold while
    /// the origin cannot be reached, less while it answers with errors (see
    /// [`RetryPolicy::answered_error_hold`] and
    /// [`OriginErrorKind::is_answer`](crate::OriginErrorKind::is_answer)).
    pub fn hold_for(&self, answering: bool) -> Duration {
        if answering { self.answered_error_hold.min(self.hold_budget) } else { self.hold_budget }
    }

    /// The pause before retry number `retry` (1-based): a random duration
    /// between half and all of `base * 2^(retry-1)`, capped.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self.base_backoff.saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        let ceiling = exp.min(self.max_backoff);
        let half = ceiling / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// Keeps retries from multiplying origin load: every first attempt
/// deposits `ratio` of a token, every retry spends one, and a floor of
/// `min_per_sec` tokens a second keeps a quiet node able to retry at all
/// (the shape of Finagle's and linkerd's retry budgets).
#[derive(Debug)]
pub struct RetryBudget {
    /// Thousandths of a token, so sums stay exact.
    ratio_milli: u64,
    min_per_sec_milli: u64,
    cap_milli: u64,
    state: Mutex<BudgetState>,
}

#[derive(Debug)]
struct BudgetState {
    balance_milli: u64,
    refilled: Instant,
}

pub const DEFAULT_RETRY_RATIO: f64 = 0.2;
pub const DEFAULT_MIN_RETRIES_PER_SEC: f64 = 10.0;
const TOKEN: u64 = 1000;

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget::new(DEFAULT_RETRY_RATIO, DEFAULT_MIN_RETRIES_PER_SEC)
    }
}

impl RetryBudget {
    pub fn new(ratio: f64, min_per_sec: f64) -> RetryBudget {
        let ratio_milli = (ratio.max(0.0) * TOKEN as f64).round() as u64;
        let min_per_sec_milli = (min_per_sec.max(0.0) * TOKEN as f64).round() as u64;
        // Ten seconds of the floor, and never less than ten retries.
        let cap_milli = (min_per_sec_milli * 10).max(10 * TOKEN);
        RetryBudget {
            ratio_milli,
            min_per_sec_milli,
            cap_milli,
            state: Mutex::new(BudgetState { balance_milli: cap_milli, refilled: Instant::now() }),
        }
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut BudgetState) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let elapsed_ms = now.duration_since(state.refilled).as_millis() as u64;
        if elapsed_ms > 0 {
            state.refilled = now;
            let earned = elapsed_ms.saturating_mul(self.min_per_sec_milli) / 1000;
            state.balance_milli = state.balance_milli.saturating_add(earned).min(self.cap_milli);
        }
        f(&mut state)
    }

    /// Records a first attempt.
    pub fn deposit(&self) {
        let (ratio, cap) = (self.ratio_milli, self.cap_milli);
        self.with_state(|s| s.balance_milli = s.balance_milli.saturating_add(ratio).min(cap));
    }

    /// Takes a token for one retry; false when the budget is spent.
    pub fn try_withdraw(&self) -> bool {
        self.with_state(|s| {
            if s.balance_milli >= TOKEN {
                s.balance_milli -= TOKEN;
                true
            } else {
                false
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy::default();
        for retry in 1..20 {
            let d = policy.backoff(retry);
            let ceiling = policy.base_backoff.saturating_mul(1 << (retry - 1).min(16)).min(policy.max_backoff);
            assert!(d >= ceiling / 2 && d <= ceiling, "retry {retry}: {d:?}");
        }
    }

    #[test]
    fn an_answering_origin_is_held_less_than_an_unreachable_one() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.hold_for(false), policy.hold_budget);
        assert_eq!(policy.hold_for(true), policy.answered_error_hold);
        assert!(policy.answered_error_hold < policy.hold_budget);
        let short = RetryPolicy { hold_budget: Duration::from_millis(100), ..RetryPolicy::default() };
        assert_eq!(short.hold_for(true), Duration::from_millis(100), "never more than the hold budget");
        let status = crate::OriginErrorKind::Status(http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(status.is_answer());
        assert!(!crate::OriginErrorKind::NoHealthyOrigin.is_answer());
        assert!(!crate::OriginErrorKind::Busy(1).is_answer());
    }

    #[tokio::test(start_paused = true)]
    async fn budget_allows_a_share_of_traffic_plus_a_floor() {
        let budget = RetryBudget::new(0.2, 10.0);
        // The initial balance is the cap (100); spend it.
        while budget.try_withdraw() {}
        // 100 first attempts earn 20 retries.
        for _ in 0..100 {
            budget.deposit();
        }
        let mut granted = 0;
        while budget.try_withdraw() {
            granted += 1;
        }
        assert_eq!(granted, 20);
        // One second of time earns the floor of 10.
        tokio::time::advance(Duration::from_secs(1)).await;
        let mut granted = 0;
        while budget.try_withdraw() {
            granted += 1;
        }
        assert_eq!(granted, 10);
    }
}
