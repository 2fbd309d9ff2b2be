//! An origin group: members and fallback, retries inside the hold and
//! retry budgets, ejection and health checks, counters.

mod choose;
mod dns;
mod transport;

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::time::Instant;

use crate::directory;
use crate::health::Health;
use crate::{
    Endpoint, ErrorChain, MemberLatency, MemberStatus, OriginBody, OriginConfig, OriginError, OriginErrorKind,
    OriginRequest, OriginStats, RetryBudget,
};
use choose::Choice;
use transport::HttpClient;

/// An origin group: its members, fallback, health and counters.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: OriginConfig,
    /// Members first, then the fallback (if any) at the end.
    targets: Vec<Target>,
    budget: Arc<RetryBudget>,
    stats: OriginStats,
}

struct Target {
    endpoint: Endpoint,
    /// The pooled connections to an HTTP member (None for a directory):
    /// one client per member, because its connector dials this member
    /// whatever host the request names.
    http: Option<HttpClient>,
    label: String,
    weight: u32,
    fallback: bool,
    health: Health,
    /// One permit per request in progress (`max_connections`).
    slots: Arc<tokio::sync::Semaphore>,
    latency: MemberLatency,
    /// Whether its latest failure was an answer (an error status, or a
    /// connection closed without a response) rather than a refusal: every
    /// request that holds for it reads this, so one request's refused
    /// connect gives all of them the full hold again.
    answering: std::sync::atomic::AtomicBool,
}

/// Statuses that mean "this origin cannot answer now": retried for GET and
/// HEAD, and never relayed or stored in place of a good object.
fn status_is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 502..=504)
}

impl Client {
    /// A client with its own retry budget (tests, single-site nodes).
    pub fn new(config: OriginConfig) -> Client {
        Client::with_budget(config, Arc::new(RetryBudget::default()))
    }

    /// A client that shares the node-wide retry budget.
    pub fn with_budget(config: OriginConfig, budget: Arc<RetryBudget>) -> Client {
        let stats = OriginStats::default();
        let members = config.members.iter().map(|m| (m.endpoint.clone(), m.weight.max(1), false));
        let fallback = config.fallback.iter().map(|e| (e.clone(), 1, true));
        let targets = members
            .chain(fallback)
            .map(|(endpoint, weight, fallback)| Target {
                label: endpoint.label(),
                http: match &endpoint {
                    Endpoint::Http { authority, tls } => {
                        Some(transport::hyper_client(&config, authority, *tls, &stats))
                    }
                    Endpoint::Directory { .. } => None,
                },
                endpoint,
                weight,
                fallback,
                health: Health::new(),
                slots: Arc::new(tokio::sync::Semaphore::new(config.max_connections.max(1))),
                latency: MemberLatency::default(),
                answering: std::sync::atomic::AtomicBool::new(false),
            })
            .collect();
        Client { inner: Arc::new(Inner { config, targets, budget, stats }) }
    }

    pub fn config(&self) -> &OriginConfig {
        &self.inner.config
    }

    pub fn stats(&self) -> &OriginStats {
        &self.inner.stats
    }

    /// Health of each origin (members, then the fallback).
    pub fn members(&self) -> Vec<MemberStatus> {
        self.inner
            .targets
            .iter()
            .map(|t| {
                let (latency_count, latency_us_total) = t.latency.totals();
                MemberStatus {
                    origin: t.label.clone(),
                    in_use: self.inner.config.max_connections.max(1).saturating_sub(t.slots.available_permits()),
                    fallback: t.fallback,
                    breaker: t.health.breaker(),
                    consecutive_failures: t.health.consecutive_failures(),
                    latency_count,
                    latency_us_total,
                }
            })
            .collect()
    }

    /// Starts the active health checks (HTTP members only). They stop when
    /// the last handle to this client is dropped.
    pub fn spawn_health_checks(&self) {
        let Some(path) = self.inner.config.health.check_path.clone() else { return };
        let interval = self.inner.config.health.check_interval;
        for index in 0..self.inner.targets.len() {
            if !matches!(self.inner.targets[index].endpoint, Endpoint::Http { .. }) {
                continue;
            }
            let weak: Weak<Inner> = Arc::downgrade(&self.inner);
            let path = path.clone();
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    let Some(inner) = weak.upgrade() else { return };
                    inner.check(index, &path).await;
                }
            });
        }
    }

    /// Sends a request to the group and returns the origin's label and its
    /// response once the head has arrived; the body streams with an idle
    /// timeout.
    ///
    /// GET and HEAD are retried on refused or broken connections, timeouts
    /// and 502/503/504, on another healthy origin when there is one, with
    /// backoff and jitter, inside the hold budget and the node's retry
    /// budget. While every origin is ejected the request waits (holds) for
    /// one to recover instead of failing. Requests with a body get one try.
    pub async fn send(&self, mut request: OriginRequest) -> Result<(String, Response<OriginBody>), OriginError> {
        let inner = &self.inner;
        if inner.targets.is_empty() {
            return Err(OriginError::new(OriginErrorKind::NoOrigin, "none".into()));
        }
        inner.stats.requests.inc();
        inner.budget.deposit();
        let started = Instant::now();
        // Recomputed as attempts go: shorter while the origin last tried
        // answers with errors, the full hold while it cannot be reached.
        let may_hold = request.hold;
        let hold_until = |last_tried: Option<usize>| {
            let answering =
                last_tried.is_some_and(|i| inner.targets[i].answering.load(std::sync::atomic::Ordering::Relaxed));
            started + if may_hold { inner.config.retry.hold_for(answering) } else { Duration::ZERO }
        };
        let mut last_tried: Option<usize> = None;
        let mut deadline;
        let retryable_method =
            request.body.is_none() && (request.method == Method::GET || request.method == Method::HEAD);
        let mut tried = vec![false; inner.targets.len()];
        let mut attempts: u32 = 0;
        let mut last_error: Option<OriginError> = None;
        // The origin's own 502/503/504 when that was the last outcome: if
        // the retries end there, the client gets it (a maintenance page),
        // not a page of ours.
        let mut last_answer: Option<(String, ErrorAnswer)> = None;
        let result = loop {
            deadline = hold_until(last_tried);
            let pass_done = tried.iter().all(|t| *t);
            if attempts > 0 && (!retryable_method || (pass_done && Instant::now() >= deadline)) {
                break Err(last_error.take());
            }
            let (index, trial) = match inner.choose(&tried, Instant::now(), request.affinity.as_ref()) {
                Choice::Use(index, trial) => (index, trial),
                Choice::WaitUntil(_) if attempts == 0 && Instant::now() >= deadline => {
                    // Every origin is ejected and this request cannot wait
                    // (any longer): one attempt on the origin whose
                    // ejection ends first, rather than a refusal without
                    // trying (Envoy's panic routing). One URL's errors must
                    // not turn every other request away.
                    inner.stats.panic_routed.inc();
                    (inner.panic_choice(Instant::now()), false)
                }
                Choice::WaitUntil(until) => {
                    // Every origin is ejected: hold, without load on the origin.
                    if Instant::now() >= deadline {
                        break Err(last_error.take().or_else(|| {
                            Some(OriginError::new(OriginErrorKind::NoHealthyOrigin, inner.group_label()))
                        }));
                    }
                    inner.stats.holds.inc();
                    inner.wait_for_recovery(until.min(deadline)).await;
                    tried.iter_mut().for_each(|t| *t = false);
                    continue;
                }
            };
            if attempts > 0 {
                if !inner.budget.try_withdraw() {
                    inner.stats.budget_exhausted.inc();
                    if trial {
                        inner.targets[index].health.release_trial();
                    }
                    if Instant::now() >= deadline {
                        break Err(last_error.take());
                    }
                    // No token: hold a little instead of adding origin load.
                    let pause = inner.config.retry.backoff(attempts).min(deadline - Instant::now());
                    tokio::time::sleep(pause).await;
                    continue;
                }
                inner.stats.retries.inc();
            }
            attempts += 1;
            tried[index] = true;
            let target = &inner.targets[index];
            let permit = match &target.endpoint {
                Endpoint::Directory { .. } => None,
                Endpoint::Http { .. } => match inner.slot(target, deadline).await {
                    Some(permit) => Some(permit),
                    None => {
                        // Busy, not broken: no health penalty.
                        if trial {
                            target.health.release_trial();
                        }
                        inner.stats.busy.inc();
                        let busy = OriginErrorKind::Busy(inner.config.max_connections);
                        last_error = Some(OriginError::new(busy, target.label.clone()));
                        if tried.iter().all(|t| *t) {
                            break Err(last_error.take());
                        }
                        continue;
                    }
                },
            };
            let attempt_started = Instant::now();
            let outcome = match &target.endpoint {
                Endpoint::Directory { root, cache_control } => directory::serve(root, cache_control, &request).await,
                Endpoint::Http { .. } => inner.send_http(target, &mut request).await,
            };
            let outcome = outcome.map(|response| response.map(|body| HoldingSlot { body, _slot: permit }.boxed()));
            match outcome {
                Ok(response) if retryable_method && status_is_retryable(response.status()) => {
                    let status = response.status();
                    inner.record_failure(index);
                    target.answering.store(true, std::sync::atomic::Ordering::Relaxed);
                    last_error = Some(OriginError::new(OriginErrorKind::Status(status), target.label.clone()));
                    last_answer = ErrorAnswer::read(response, inner.config.body_idle_timeout)
                        .await
                        .map(|a| (target.label.clone(), a));
                }
                Ok(response) => {
                    target.health.success();
                    let took = attempt_started.elapsed().as_secs_f64();
                    inner.stats.latency.observe(took);
                    target.latency.observe(took);
                    break Ok((target.label.clone(), response));
                }
                Err(kind) => {
                    inner.record_failure(index);
                    target.answering.store(kind.is_answer(), std::sync::atomic::Ordering::Relaxed);
                    tracing::debug!(origin = %target.label, error = %ErrorChain(&kind), attempt = attempts, "origin attempt failed");
                    last_error = Some(OriginError::new(kind, target.label.clone()));
                    last_answer = None;
                }
            }
            last_tried = Some(index);
            deadline = hold_until(last_tried);
            if tried.iter().all(|t| *t) {
                // Every origin had its chance: pause before the next round.
                let now = Instant::now();
                if now >= deadline {
                    break Err(last_error.take());
                }
                tokio::time::sleep(inner.config.retry.backoff(attempts).min(deadline - now)).await;
                tried.iter_mut().for_each(|t| *t = false);
            }
        };
        let held = started.elapsed();
        inner.stats.hold_time_ms.add(held.as_millis() as u64);
        let result = match (result, last_answer) {
            (Err(_), Some((label, answer))) => {
                inner.stats.relayed_errors.inc();
                Ok((label, answer.into_response()))
            }
            (result, _) => result,
        };
        result.map_err(|error| {
            inner.stats.failures.inc();
            error.unwrap_or_else(|| OriginError::new(OriginErrorKind::NoHealthyOrigin, inner.group_label()))
        })
    }
}

/// The largest error body kept to relay: a maintenance page, not a download.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// An origin's 502/503/504, read whole so its connection is free while the
/// request retries elsewhere.
struct ErrorAnswer {
    head: http::response::Parts,
    body: Bytes,
}

impl ErrorAnswer {
    /// Reads the response; `None` when its body is larger than
    /// [`MAX_ERROR_BODY`], breaks, or stalls past `idle` (then the client
    /// gets holdfast's own error page).
    async fn read(response: Response<OriginBody>, idle: Duration) -> Option<ErrorAnswer> {
        let (head, body) = response.into_parts();
        let limited = http_body_util::Limited::new(body, MAX_ERROR_BODY);
        let collected = tokio::time::timeout(idle, limited.collect()).await.ok()?.ok()?;
        Some(ErrorAnswer { head, body: collected.to_bytes() })
    }

    fn into_response(self) -> Response<OriginBody> {
        let body = http_body_util::Full::new(self.body).map_err(|never| match never {}).boxed();
        Response::from_parts(self.head, body)
    }
}

/// A response body that keeps its origin connection slot until it ends.
struct HoldingSlot {
    body: OriginBody,
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl http_body::Body for HoldingSlot {
    type Data = Bytes;
    type Error = OriginError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, OriginError>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Inner {
    /// A connection slot on `target`, waiting for one until `deadline`.
    async fn slot(&self, target: &Target, deadline: Instant) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if let Ok(permit) = Arc::clone(&target.slots).try_acquire_owned() {
            return Some(permit);
        }
        tokio::time::timeout_at(deadline, Arc::clone(&target.slots).acquire_owned()).await.ok()?.ok()
    }

    fn group_label(&self) -> String {
        self.targets.iter().map(|t| t.label.as_str()).collect::<Vec<_>>().join(", ")
    }

    fn record_failure(&self, index: usize) {
        let target = &self.targets[index];
        if target.health.failure(&self.config.health, Instant::now()) {
            self.stats.ejections.inc();
            tracing::warn!(origin = %target.label, "origin ejected after consecutive failures");
        }
    }

    /// Sleeps until `until`, or until any origin recovers.
    async fn wait_for_recovery(&self, until: Instant) {
        let notified: Vec<_> = self.targets.iter().map(|t| Box::pin(t.health.recovered.notified())).collect();
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = futures_util::future::select_all(notified) => {}
        }
    }
}
