//! `/metrics`: the node's counters in Prometheus (OpenMetrics) text, encoded
//! by prometheus-client. Values are read from the live counters at scrape
//! time, so nothing is counted twice.

use holdfast_frontend::h3::QuicStats;
use holdfast_frontend::{Handler, TcpStats};
use holdfast_origin::Client;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

fn counter_family(registry: &mut Registry, name: &str, help: &str, values: Vec<(Labels, u64)>) {
    let family = Family::<Labels, Counter>::default();
    for (labels, value) in values {
        family.get_or_create(&labels).inc_by(value);
    }
    registry.register(name, help, family);
}

fn gauge_family(registry: &mut Registry, name: &str, help: &str, values: Vec<(Labels, i64)>) {
    let family = Family::<Labels, Gauge>::default();
    for (labels, value) in values {
        family.get_or_create(&labels).set(value);
    }
    registry.register(name, help, family);
}

/// A histogram whose buckets were counted elsewhere.
#[derive(Debug)]
struct SnapshotHistogram {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl EncodeMetric for SnapshotHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn i64_of(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Renders every metric of the node. `started` is the process start as a
/// Unix time: restarts show as changes of `holdfast_start_time_seconds`.
/// The listeners' counters.
pub struct Listeners<'a> {
    pub tcp: &'a TcpStats,
    pub quic: Option<&'a QuicStats>,
}

pub fn render(handler: &Handler, origins: &[(String, Client)], listeners: Listeners<'_>, started: u64) -> String {
    let mut registry = Registry::with_prefix("holdfast");
    gauge_family(&mut registry, "start_time_seconds", "Unix time the node started", vec![(vec![], i64_of(started))]);
    let (requests, bytes) = handler.request_counts();
    counter_family(
        &mut registry,
        "responses",
        "Responses by protocol, status and cache result",
        requests
            .into_iter()
            .map(|(protocol, status, result, n)| {
                (
                    vec![
                        ("protocol", protocol.to_owned()),
                        ("status", status.to_string()),
                        ("cache", result.as_str().to_owned()),
                    ],
                    n,
                )
            })
            .collect(),
    );
    counter_family(
        &mut registry,
        "response_body_bytes",
        "Response body bytes (by Content-Length)",
        vec![(vec![], bytes)],
    );
    counter_family(
        &mut registry,
        "stale_responses",
        "Responses served stale (origin failing, or stale-while-revalidate)",
        handler.results().into_iter().filter(|(r, _)| r.as_str() == "STALE").map(|(_, n)| (vec![], n)).collect(),
    );
    counter_family(
        &mut registry,
        "purges",
        "Purges by kind",
        handler.purge_counts().into_iter().map(|(kind, n)| (vec![("kind", kind.to_owned())], n)).collect(),
    );
    counter_family(
        &mut registry,
        "access_log_dropped",
        "Access records dropped because the log writer could not keep up",
        vec![(vec![], handler.access_log_dropped())],
    );
    let (fills, waiters) = handler.fills_in_flight();
    gauge_family(&mut registry, "fills_in_flight", "Origin fills in progress", vec![(vec![], fills as i64)]);
    gauge_family(
        &mut registry,
        "coalesced_waiters",
        "Client requests reading an in-progress fill",
        vec![(vec![], waiters as i64)],
    );

    let store = handler.store();
    store.run_pending_tasks();
    let memory = store.stats();
    let mut objects = vec![(vec![("tier", "memory".to_owned())], i64_of(memory.objects))];
    let mut tier_bytes = vec![(vec![("tier", "memory".to_owned())], i64_of(memory.body_bytes))];
    let mut evictions = vec![(vec![("tier", "memory".to_owned()), ("cause", "size".to_owned())], memory.evictions)];
    let mut disk_errors = Vec::new();
    if let Some(disk) = handler.disk() {
        let stats = disk.stats();
        objects.push((vec![("tier", "disk".to_owned())], i64_of(stats.blobs)));
        tier_bytes.push((vec![("tier", "disk".to_owned())], i64_of(stats.bytes)));
        evictions.push((vec![("tier", "disk".to_owned()), ("cause", "size".to_owned())], stats.evictions));
        disk_errors.push((vec![("kind", "corrupt".to_owned())], stats.corrupt));
        disk_errors.push((vec![("kind", "write".to_owned())], stats.write_errors));
        gauge_family(
            &mut registry,
            "disk_full",
            "1 while the disk tier refuses new objects",
            vec![(vec![], i64::from(stats.full))],
        );
        gauge_family(
            &mut registry,
            "disk_tier_bytes",
            "Bytes the disk tier's files take on disk (records and bodies, allocated blocks)",
            vec![(vec![], i64_of(stats.bytes))],
        );
        gauge_family(
            &mut registry,
            "disk_tier_limit_bytes",
            "cache.disk_size",
            vec![(vec![], i64_of(stats.max_bytes))],
        );
        gauge_family(&mut registry, "disk_tier_files", "Files in the disk tier", vec![(vec![], i64_of(stats.files))]);
        gauge_family(
            &mut registry,
            "disk_tier_limit_files",
            "cache.disk_max_files",
            vec![(vec![], i64_of(stats.max_files))],
        );
        counter_family(
            &mut registry,
            "disk_writes_skipped",
            "Objects not written to disk because the write queue was full",
            vec![(vec![], handler.tiers().disk_writes_skipped())],
        );
    }
    counter_family(
        &mut registry,
        "origin_immutable_changed",
        "Refetches of a stale immutable object that brought other bytes (they replace the stored copy)",
        vec![(vec![], handler.tiers().immutable_changed())],
    );
    gauge_family(&mut registry, "cache_objects", "Objects stored, by tier (disk: bodies)", objects);
    gauge_family(&mut registry, "cache_bytes", "Body bytes stored, by tier", tier_bytes);
    gauge_family(
        &mut registry,
        "memory_tier_bytes",
        "What the memory tier's entries cost (bodies, metadata, overheads), weighed against cache.memory_size",
        vec![(vec![], i64_of(memory.memory_bytes))],
    );
    gauge_family(
        &mut registry,
        "memory_tier_limit_bytes",
        "cache.memory_size",
        vec![(vec![], i64_of(memory.memory_limit))],
    );
    counter_family(&mut registry, "cache_evictions", "Evictions by tier and cause", evictions);
    counter_family(
        &mut registry,
        "disk_errors",
        "Disk-tier errors: corrupt records quarantined, failed writes",
        disk_errors,
    );

    let per_site = |f: &dyn Fn(&holdfast_origin::OriginStatsSnapshot) -> u64| -> Vec<(Labels, u64)> {
        origins.iter().map(|(site, client)| (vec![("site", site.clone())], f(&client.stats().snapshot()))).collect()
    };
    counter_family(&mut registry, "origin_requests", "Requests handed to an origin group", per_site(&|s| s.requests));
    counter_family(
        &mut registry,
        "origin_failures",
        "Requests no origin answered within the budgets",
        per_site(&|s| s.failures),
    );
    counter_family(&mut registry, "origin_retries", "Origin attempts after the first", per_site(&|s| s.retries));
    counter_family(
        &mut registry,
        "origin_connections_opened",
        "HTTP connections opened to origins; origin attempts minus these reused a pooled connection",
        per_site(&|s| s.connections_opened),
    );
    counter_family(
        &mut registry,
        "origin_dns_last_good_used",
        "Origin connections that dialled the addresses an origin name last resolved to, because resolving it failed",
        per_site(&|s| s.dns_last_good_used),
    );
    counter_family(
        &mut registry,
        "origin_retry_budget_exhausted",
        "Retries refused by the retry budget",
        per_site(&|s| s.budget_exhausted),
    );
    counter_family(&mut registry, "origin_ejections", "Origins ejected by passive health", per_site(&|s| s.ejections));
    counter_family(
        &mut registry,
        "origin_busy",
        "Origin attempts that found every connection to the origin in use (origin.max_connections)",
        per_site(&|s| s.busy),
    );
    counter_family(
        &mut registry,
        "origin_panic_routed",
        "Attempts sent to an ejected origin because every origin was ejected and the request could not wait",
        per_site(&|s| s.panic_routed),
    );
    counter_family(
        &mut registry,
        "origin_relayed_errors",
        "Requests whose retries ended on an origin's own 502/503/504, relayed with its body",
        per_site(&|s| s.relayed_errors),
    );
    counter_family(
        &mut registry,
        "origin_hold_seconds",
        "Time requests spent waiting on origins",
        per_site(&|s| s.hold_time_ms / 1000),
    );
    let mut up = Vec::new();
    for (site, client) in origins {
        for member in client.members() {
            let healthy = i64::from(member.breaker == holdfast_origin::BreakerState::Closed);
            up.push((vec![("site", site.clone()), ("origin", member.origin)], healthy));
        }
    }
    gauge_family(&mut registry, "origin_up", "1 while an origin's circuit breaker is closed", up);
    let mut in_use = Vec::new();
    for (site, client) in origins {
        for member in client.members() {
            in_use.push((vec![("site", site.clone()), ("origin", member.origin)], member.in_use as i64));
        }
    }
    gauge_family(
        &mut registry,
        "origin_connections_in_use",
        "Requests in progress per origin (connections for HTTP/1.1), against origin.max_connections",
        in_use,
    );
    for (site, client) in origins {
        let (buckets, sum) = client.stats().latency.buckets();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let histogram = SnapshotHistogram { sum, count, buckets };
        registry.sub_registry_with_label(("site".into(), site.clone().into())).register(
            "origin_latency_seconds",
            "Time from origin request to response head",
            histogram,
        );
    }
    budget_metrics(&mut registry, handler);
    tcp_metrics(&mut registry, listeners.tcp);
    if let Some(quic) = listeners.quic {
        quic_metrics(&mut registry, quic);
    }
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut text, &registry);
    text
}

/// QUIC and HTTP/3: connections against their budget, handshakes, requests
/// in flight, and every shed or failed connection.
fn quic_metrics(registry: &mut Registry, quic: &QuicStats) {
    let connections = quic.connections.counts();
    let limits = quic.connections.limits();
    let counts = quic.counts();
    gauge_family(registry, "quic_connections", "Open QUIC connections", vec![(vec![], connections.open as i64)]);
    gauge_family(
        registry,
        "quic_connections_limit",
        "Most QUIC connections kept open (tls.h3_max_connections)",
        vec![(vec![], limits.max as i64)],
    );
    gauge_family(
        registry,
        "quic_handshakes_in_progress",
        "QUIC handshakes not yet complete",
        vec![(vec![], counts.handshakes_in_progress as i64)],
    );
    gauge_family(
        registry,
        "h3_requests_in_flight",
        "HTTP/3 requests being answered",
        vec![(vec![], counts.requests_in_flight as i64)],
    );
    counter_family(
        registry,
        "quic_connections_accepted",
        "QUIC connections admitted",
        vec![(vec![], connections.accepted)],
    );
    counter_family(
        registry,
        "quic_connections_shed",
        "QUIC connection attempts not served, by reason",
        vec![
            (vec![("reason", "limit".to_owned())], connections.refused_total),
            (vec![("reason", "per-client-limit".to_owned())], connections.refused_per_client),
            (vec![("reason", "retry".to_owned())], counts.retries),
            (vec![("reason", "handshake-timeout".to_owned())], counts.handshake_timeouts),
            (vec![("reason", "handshake-failed".to_owned())], counts.handshake_failures),
        ],
    );
    counter_family(
        registry,
        "h3_send_timeouts",
        "HTTP/3 responses cancelled because the client gave no flow-control credit",
        vec![(vec![], counts.send_timeouts)],
    );
    counter_family(
        registry,
        "h3_request_header_timeouts",
        "HTTP/3 request streams that did not send their header section in time",
        vec![(vec![], counts.header_timeouts)],
    );
}

/// The memory that fills in progress hold, and what was shed to stay within it.
fn budget_metrics(registry: &mut Registry, handler: &Handler) {
    let budget = handler.fill_budget();
    gauge_family(
        registry,
        "fill_buffer_bytes",
        "Body bytes held by origin fills in progress",
        vec![(vec![], i64_of(budget.used()))],
    );
    gauge_family(
        registry,
        "fill_buffer_limit_bytes",
        "Budget for body bytes held by fills (cache.fill_buffer_size)",
        vec![(vec![], i64_of(budget.limit()))],
    );
    gauge_family(
        registry,
        "fills_waiting_per_client",
        "Misses waiting for one of their client's fills to end (cache.max_fills_per_client)",
        vec![(vec![], handler.client_fills().0 as i64)],
    );
    counter_family(
        registry,
        "fills_shed",
        "Fills cut short to stay within budgets, by reason",
        vec![
            (vec![("reason", "buffer-budget".to_owned())], budget.shed()),
            (vec![("reason", "max-fills".to_owned())], handler.fills_shed()),
            (vec![("reason", "per-client".to_owned())], handler.client_fills().1),
            (vec![("reason", "stalled-reader".to_owned())], budget.stalled()),
        ],
    );
}

/// TCP client connections against their limit, and those cut off.
fn tcp_metrics(registry: &mut Registry, tcp: &TcpStats) {
    let counts = tcp.connections.counts();
    gauge_family(registry, "tcp_connections", "Open client TCP connections", vec![(vec![], counts.open as i64)]);
    gauge_family(
        registry,
        "tcp_connections_limit",
        "Most client TCP connections kept open (server.max_connections)",
        vec![(vec![], tcp.connections.limits().max as i64)],
    );
    counter_family(
        registry,
        "tcp_connections_accepted",
        "Client TCP connections admitted",
        vec![(vec![], counts.accepted)],
    );
    counter_family(
        registry,
        "tcp_connections_shed",
        "Client TCP connections closed by the node, by reason",
        vec![
            (vec![("reason", "limit".to_owned())], counts.refused_total),
            (vec![("reason", "per-client-limit".to_owned())], counts.refused_per_client),
            (vec![("reason", "send-timeout".to_owned())], tcp.send_timeouts()),
        ],
    );
}
