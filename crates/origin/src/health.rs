//! Per-origin health: passive ejection after consecutive failures, with a
//! circuit breaker that lets one trial request through after the ejection,
//! and active health checks that can close the breaker at once.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Health settings of an origin group.
#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// Consecutive failures that eject an origin.
    pub failure_threshold: u32,
    /// First ejection; each consecutive one doubles it, up to `max_ejection`.
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    /// Active check: `GET path` every `interval`; `None` turns checks off.
    pub check_path: Option<String>,
    pub check_interval: Duration,
}

pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;
pub const DEFAULT_BASE_EJECTION: Duration = Duration::from_millis(250);
pub const DEFAULT_MAX_EJECTION: Duration = Duration::from_secs(2);
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(1);

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            failure_threshold: DEFAULT_FAILURE_THRESHOLD,
            base_ejection: DEFAULT_BASE_EJECTION,
            max_ejection: DEFAULT_MAX_EJECTION,
            check_path: Some("/".to_owned()),
            check_interval: DEFAULT_CHECK_INTERVAL,
        }
    }
}

/// Circuit-breaker state, as exported in stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Healthy: requests flow.
    Closed,
    /// Ejected until a deadline.
    Open,
    /// Ejection over: one trial request decides.
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

/// Whether a request may use an origin now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Availability {
    Ready,
    /// The caller holds the one trial of a half-open breaker.
    Trial,
    /// Not before this instant (or a health change).
    Wait(Instant),
}

#[derive(Debug)]
struct State {
    breaker: BreakerState,
    consecutive_failures: u32,
    consecutive_ejections: u32,
    open_until: Instant,
    trial_in_flight: bool,
}

#[derive(Debug)]
pub(crate) struct Health {
    state: Mutex<State>,
    /// Wakes held requests when the origin becomes usable.
    pub(crate) recovered: Notify,
}

impl Health {
    pub(crate) fn new() -> Health {
        Health {
            state: Mutex::new(State {
                breaker: BreakerState::Closed,
                consecutive_failures: 0,
                consecutive_ejections: 0,
                open_until: Instant::now(),
                trial_in_flight: false,
            }),
            recovered: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn breaker(&self) -> BreakerState {
        self.lock().breaker
    }

    pub(crate) fn consecutive_failures(&self) -> u32 {
        self.lock().consecutive_failures
    }

    /// Read-only view, for choosing among origins.
    pub(crate) fn peek(&self, now: Instant) -> Availability {
        let state = self.lock();
        match state.breaker {
            BreakerState::Closed => Availability::Ready,
            BreakerState::Open if now < state.open_until => Availability::Wait(state.open_until),
            _ if state.trial_in_flight => Availability::Wait(now + Duration::from_millis(50)),
            _ => Availability::Trial,
        }
    }

    /// Claims the right to send a request: `Ready`, or the one `Trial`.
    pub(crate) fn acquire(&self, now: Instant) -> Availability {
        let mut state = self.lock();
        match state.breaker {
            BreakerState::Closed => Availability::Ready,
            BreakerState::Open if now < state.open_until => Availability::Wait(state.open_until),
            _ if state.trial_in_flight => Availability::Wait(now + Duration::from_millis(50)),
            _ => {
                state.breaker = BreakerState::HalfOpen;
                state.trial_in_flight = true;
                Availability::Trial
            }
        }
    }

    /// A request or check succeeded: close the breaker and wake waiters.
    pub(crate) fn success(&self) {
        let was_closed = {
            let mut state = self.lock();
            let was_closed = state.breaker == BreakerState::Closed;
            state.breaker = BreakerState::Closed;
            state.consecutive_failures = 0;
            state.consecutive_ejections = 0;
            state.trial_in_flight = false;
            was_closed
        };
        if !was_closed {
            tracing::info!("origin recovered");
        }
        self.recovered.notify_waiters();
    }

    /// A request or check failed. Returns true when this ejected the origin.
    pub(crate) fn failure(&self, config: &HealthConfig, now: Instant) -> bool {
        let mut state = self.lock();
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        let trial_failed = state.breaker == BreakerState::HalfOpen;
        state.trial_in_flight = false;
        if trial_failed
            || (state.breaker == BreakerState::Closed && state.consecutive_failures >= config.failure_threshold)
        {
            state.consecutive_ejections = state.consecutive_ejections.saturating_add(1);
            let factor = 1u32 << (state.consecutive_ejections - 1).min(16);
            let ejection = config.base_ejection.saturating_mul(factor).min(config.max_ejection);
            state.breaker = BreakerState::Open;
            state.open_until = now + ejection;
            return true;
        }
        false
    }

    /// A trial that ended without a verdict (cancelled) frees the slot.
    pub(crate) fn release_trial(&self) {
        let mut state = self.lock();
        if state.breaker == BreakerState::HalfOpen {
            state.trial_in_flight = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ejects_after_threshold_then_one_trial_decides() {
        let config = HealthConfig::default();
        let health = Health::new();
        let now = Instant::now();
        assert!(!health.failure(&config, now));
        assert!(!health.failure(&config, now));
        assert!(health.failure(&config, now), "third consecutive failure ejects");
        assert_eq!(health.acquire(now), Availability::Wait(now + config.base_ejection));
        let later = now + config.base_ejection;
        assert_eq!(health.acquire(later), Availability::Trial);
        assert!(matches!(health.acquire(later), Availability::Wait(_)), "only one trial at a time");
        // The trial fails: ejected again, for twice as long.
        assert!(health.failure(&config, later));
        assert_eq!(health.acquire(later), Availability::Wait(later + config.base_ejection * 2));
        // A health check succeeds: closed at once.
        health.success();
        assert_eq!(health.acquire(later), Availability::Ready);
        assert_eq!(health.breaker(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_is_capped() {
        let config = HealthConfig::default();
        let health = Health::new();
        let mut now = Instant::now();
        for _ in 0..3 {
            health.failure(&config, now);
        }
        for _ in 0..20 {
            let Availability::Wait(until) = health.acquire(now) else { panic!("ejected") };
            assert!(until - now <= config.max_ejection);
            now = until;
            assert_eq!(health.acquire(now), Availability::Trial);
            health.failure(&config, now);
        }
    }
}
