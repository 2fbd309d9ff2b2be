//! Counting and logging what the handler answered. Every request passes
//! here, on every core at once: the counters are plain atomics indexed by
//! protocol, cache result and status, so no lock is shared between
//! requests. The heavy-hitters tracker ([`super::top`]) sees a sample.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use http::header;
use http::request::Parts;
use http::{Response, Version};
use http_body_util::BodyExt;

use super::respond::Answer;
use super::site::normalize_host;
use super::top::{TopReport, TopTracker};
use super::{CacheResult, PurgeTarget, ResponseBody, Routing};
use crate::access::{AccessLog, AccessRecord, LoggedBody, TraceIdOf};

const PROTOCOLS: [(Version, &str); 5] = [
    (Version::HTTP_09, "HTTP/0.9"),
    (Version::HTTP_10, "HTTP/1.0"),
    (Version::HTTP_11, "HTTP/1.1"),
    (Version::HTTP_2, "HTTP/2"),
    (Version::HTTP_3, "HTTP/3"),
];

/// Status codes the `http` crate can carry: 100 to 999.
const FIRST_STATUS: u16 = 100;
const STATUSES: usize = 900;
const RESULTS: usize = CacheResult::ALL.len();

const PURGE_KINDS: [&str; 4] = ["url", "prefix", "tag", "all"];

fn protocol_index(version: Version) -> usize {
    PROTOCOLS.iter().position(|(v, _)| *v == version).unwrap_or(2)
}

/// The counters, and the access log if there is one.
pub(super) struct Observer {
    /// Responses by (protocol, cache result, status): `PROTOCOLS` x
    /// `RESULTS` x `STATUSES`, flat.
    responses: Box<[AtomicU64]>,
    /// Body bytes announced by Content-Length.
    response_bytes: AtomicU64,
    purges: [AtomicU64; PURGE_KINDS.len()],
    access_log: Option<Arc<dyn AccessLog>>,
    /// Set when traces are exported: access records carry the trace id.
    pub(super) trace_id_of: Option<TraceIdOf>,
    top: TopTracker,
}

/// What is known of a request when it arrives, for its access record.
pub(super) struct Pending {
    started: Instant,
    version: Version,
    /// Method and target, kept only when there is an access log.
    logged: Option<(String, String)>,
    /// Host and path, and the requests the sample stands for, when the
    /// heavy-hitters tracker sampled this request.
    sampled: Option<(String, u32)>,
}

impl Observer {
    pub(super) fn new(access_log: Option<Arc<dyn AccessLog>>) -> Observer {
        let responses = (0..PROTOCOLS.len() * RESULTS * STATUSES).map(|_| AtomicU64::new(0)).collect();
        Observer {
            responses,
            response_bytes: AtomicU64::new(0),
            purges: Default::default(),
            access_log,
            trace_id_of: None,
            top: TopTracker::new(Instant::now()),
        }
    }

    pub(super) fn begin(&self, parts: &Parts, started: Instant) -> Pending {
        let logged = self.access_log.as_ref().map(|_| {
            let path = parts.uri.path_and_query().map_or_else(|| parts.uri.to_string(), |pq| pq.as_str().to_owned());
            (parts.method.to_string(), path)
        });
        let sampled = self.top.sample().and_then(|weight| Some((tracked_url(parts)?, weight)));
        Pending { started, version: parts.version, logged, sampled }
    }

    /// Counts the answer and, with an access log, wraps its body so the
    /// record is written when the body is done.
    pub(super) fn finish(
        &self,
        pending: Pending,
        routing: &Routing,
        answer: Answer,
        span: &tracing::Span,
    ) -> Response<ResponseBody> {
        let Answer { response, result, site, origin, fetched } = answer;
        if let (Some((url, weight)), Some(_)) = (&pending.sampled, site) {
            self.top.record(Instant::now(), url, *weight, fetched);
        }
        let status = response.status().as_u16();
        let slot = (protocol_index(pending.version) * RESULTS + result.index()) * STATUSES
            + usize::from(status.saturating_sub(FIRST_STATUS)).min(STATUSES - 1);
        self.responses[slot].fetch_add(1, Ordering::Relaxed);
        let length = response.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        self.response_bytes.fetch_add(length.unwrap_or(0), Ordering::Relaxed);
        let (Some(sink), Some((method, path))) = (&self.access_log, pending.logged) else {
            return response;
        };
        let record = AccessRecord {
            time: SystemTime::now(),
            site: site.and_then(|i| routing.sites.get(i)).map_or_else(String::new, |s| s.name.clone()),
            method,
            path,
            protocol: PROTOCOLS[protocol_index(pending.version)].1,
            status,
            cache: result.as_str(),
            bytes: 0,
            ttfb: pending.started.elapsed(),
            total: Duration::ZERO,
            origin,
            complete: false,
            trace_id: self.trace_id_of.and_then(|of| of(span)),
        };
        let started = pending.started;
        response.map(|body| LoggedBody::new(body, record, started, Arc::clone(sink), length).boxed())
    }

    pub(super) fn purged(&self, target: &PurgeTarget) {
        if let Some(i) = PURGE_KINDS.iter().position(|k| *k == target.kind()) {
            self.purges[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn results(&self) -> Vec<(CacheResult, u64)> {
        let mut totals = [0u64; RESULTS];
        for (slot, count) in self.responses.iter().enumerate() {
            totals[(slot / STATUSES) % RESULTS] += count.load(Ordering::Relaxed);
        }
        CacheResult::ALL.into_iter().zip(totals).collect()
    }

    pub(super) fn request_counts(&self) -> (Vec<(&'static str, u16, CacheResult, u64)>, u64) {
        let counts = self
            .responses
            .iter()
            .enumerate()
            .filter_map(|(slot, count)| {
                let n = count.load(Ordering::Relaxed);
                let status = FIRST_STATUS + (slot % STATUSES) as u16;
                let result = CacheResult::ALL[(slot / STATUSES) % RESULTS];
                let protocol = PROTOCOLS[slot / STATUSES / RESULTS].1;
                (n > 0).then_some((protocol, status, result, n))
            })
            .collect();
        (counts, self.response_bytes.load(Ordering::Relaxed))
    }

    pub(super) fn purge_counts(&self) -> Vec<(&'static str, u64)> {
        PURGE_KINDS.into_iter().zip(&self.purges).map(|(k, n)| (k, n.load(Ordering::Relaxed))).collect()
    }

    pub(super) fn top(&self, seconds: u32, limit: usize) -> TopReport {
        self.top.report(Instant::now(), seconds, limit)
    }

    pub(super) fn access_log_dropped(&self) -> u64 {
        self.access_log.as_ref().map_or(0, |log| log.dropped())
    }
}

/// What the heavy-hitters tracker counts a request under: its host
/// (lowercase, no port) and path; `None` for a request without a usable
/// host, which no site serves.
fn tracked_url(parts: &Parts) -> Option<String> {
    let authority = match parts.uri.authority() {
        Some(authority) => authority.as_str(),
        None => parts.headers.get(header::HOST)?.to_str().ok()?,
    };
    let mut url = normalize_host(authority)?;
    url.push_str(parts.uri.path_and_query().map_or("/", |pq| pq.as_str()));
    Some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_maps_back_to_its_labels() {
        let observer = Observer::new(None);
        for (p, (version, name)) in PROTOCOLS.iter().enumerate() {
            for result in CacheResult::ALL {
                for status in [100u16, 200, 304, 599, 999] {
                    let slot = (p * RESULTS + result.index()) * STATUSES + usize::from(status - FIRST_STATUS);
                    observer.responses[slot].fetch_add(1, Ordering::Relaxed);
                    let (counts, _) = observer.request_counts();
                    assert_eq!(counts, vec![(*name, status, result, 1)], "{version:?} {result:?} {status}");
                    observer.responses[slot].store(0, Ordering::Relaxed);
                }
            }
        }
    }
}
