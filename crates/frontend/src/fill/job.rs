//! One fill's task: the origin fetch, revalidation and stale serving, and
//! the body streamed to the readers, counted in the fill budget, stored
//! when complete and allowed.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use holdfast_cache::partial::ContentRange;
use holdfast_cache::policy::{self, Exchange, Policy, RequestFacts};
use holdfast_cache::{DigestBuilder, Key, Meta, NoStoreReason, Storable, StoredHeaders, encoding};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::BodyExt;

use super::buffer::{Room, concat, drop_consumed_chunks, hand_over_to_store, wait_for_room};
use super::{Fill, FillHead, Inflight, ResponseHead, framing};
use crate::handler::ClientRequest;
use crate::tiers::{Stored, Tiers};
use crate::upstream::{Fetch, PassThroughBody, Upstream, UpstreamError};

/// Everything a fill task needs, built by [`FillJob::fill`] or
/// [`FillJob::pass`].
pub(crate) struct FillJob {
    upstream: Arc<dyn Upstream>,
    tiers: Arc<Tiers>,
    /// The purge epoch when the request arrived: a purge begun since that
    /// selects the response keeps it out of the tiers.
    epoch: u64,
    primary: Key,
    /// The leader's request headers, with Accept-Encoding normalised: they
    /// select the variant the response is stored under.
    request_headers: HeaderMap,
    url: String,
    fetch: Fetch,
    /// The stale stored response being revalidated, if any.
    stale: Option<Stored>,
    /// False for pass-through requests: never stored.
    cacheable: bool,
    max_object_size: u64,
    /// Bound on serving a stale copy when the origin fails (`None`: no bound).
    max_stale: Option<Duration>,
    /// How responses are judged: targeted fields, negative caching.
    policy: Policy,
    /// The request carries `Authorization` to the origin (RFC 9111 §3.5).
    authorization: bool,
}

impl FillJob {
    /// The origin fetch for a stale or missing object: conditional when a
    /// stale copy has validators, held through an outage when there is no
    /// copy to fall back on.
    pub(crate) fn fill(request: &ClientRequest, tiers: &Arc<Tiers>, primary: Key, stale: Option<Stored>) -> FillJob {
        let config = &request.routing.config;
        let validators = stale.as_ref().map(|hit| (hit.meta.etag(), hit.meta.last_modified()));
        let (if_none_match, if_modified_since) = validators.unwrap_or((None, None));
        let hold =
            stale.as_ref().is_none_or(|hit| !hit.meta.usable_on_error(SystemTime::now(), config.max_stale_on_error));
        let site = &request.routing.sites[request.site];
        let mut forwarded = site.forward.select(&request.headers);
        if stale.is_some() {
            // Revalidating a whole object: ask for all of it.
            forwarded.remove(header::RANGE);
            forwarded.remove(header::IF_RANGE);
        }
        let authorization = forwarded.contains_key(header::AUTHORIZATION);
        FillJob {
            upstream: Arc::clone(&site.upstream),
            tiers: Arc::clone(tiers),
            epoch: request.epoch,
            primary,
            request_headers: request.headers.clone(),
            url: request.url(),
            fetch: Fetch {
                method: Method::GET,
                path_and_query: request.path_and_query.clone(),
                host: request.host.clone(),
                accept_encoding: request.accept_encoding,
                if_none_match,
                if_modified_since,
                body: None,
                hold,
                affinity: *primary.as_bytes(),
                via: via_upstream(&request.headers, &config.node_name),
                headers: forwarded,
            },
            stale,
            cacheable: true,
            max_object_size: config.max_object_size,
            max_stale: config.max_stale_on_error,
            policy: config.policy.clone(),
            authorization,
        }
    }

    /// A request with a configured pass-through method, relayed with its
    /// body, never held (it may not be idempotent) and never stored.
    pub(crate) fn pass(request: &ClientRequest, tiers: &Arc<Tiers>, body: PassThroughBody) -> FillJob {
        let primary = Key::primary(request.method.as_str(), request.scheme, &request.host, &request.path_and_query);
        let mut job = FillJob::fill(request, tiers, primary, None);
        job.cacheable = false;
        job.fetch.hold = false;
        job.fetch.method = request.method.clone();
        job.fetch.body = Some(body);
        job
    }

    pub(super) async fn run(self, fill: Arc<Fill>, registration: Option<(Arc<Inflight>, Key)>) {
        let leave_map = || {
            if let Some((inflight, key)) = &registration {
                inflight.remove(key, &fill);
            }
        };
        self.fetch_and_stream(&fill, &leave_map).await;
        leave_map();
    }

    async fn fetch_and_stream(self, fill: &Arc<Fill>, leave_map: &(dyn Fn() + Sync)) {
        let FillJob {
            upstream,
            tiers,
            epoch,
            primary,
            request_headers,
            url,
            fetch,
            stale,
            cacheable,
            max_object_size,
            max_stale,
            policy,
            authorization,
        } = self;
        let facts = RequestFacts { authorization };
        // A stale copy that may not be served on error is no fallback.
        let usable_on_error = stale.as_ref().is_some_and(|hit| hit.meta.usable_on_error(SystemTime::now(), max_stale));
        let is_get = fetch.method == Method::GET;
        let accept_encoding = fetch.accept_encoding;
        let request_time = SystemTime::now();
        let fetched = match upstream.fetch(fetch).await {
            Ok(fetched) => fetched,
            Err(error) => return publish_failure(fill, &url, stale.filter(|_| usable_on_error), error),
        };
        let exchange = Exchange { request_time, response_time: SystemTime::now() };
        let (parts, body) = fetched.response.into_parts();
        // RFC 9110 §15: a final status is 200..=599. Anything else (hyper
        // reads any three digits) is a broken origin, never relayed.
        if !(200..=599).contains(&parts.status.as_u16()) {
            let reason = format!("origin {} sent invalid status {}", fetched.origin, parts.status.as_u16());
            let error = UpstreamError { reason, status: StatusCode::BAD_GATEWAY };
            return publish_failure(fill, &url, stale.filter(|_| usable_on_error), error);
        }
        let mut headers = parts.headers;
        let content_length = match framing::body_length(parts.status, &mut headers) {
            Ok(length) => length,
            Err(fault) => {
                let reason = format!("origin {} sent {fault}", fetched.origin);
                let error = UpstreamError { reason, status: StatusCode::BAD_GATEWAY };
                return publish_failure(fill, &url, stale.filter(|_| usable_on_error), error);
            }
        };
        policy::strip_hop_by_hop(&mut headers);
        // A coded response varies on Accept-Encoding, whether the origin
        // says so or not: its coding must never reach a client that did not
        // ask for it (downstream caches are told too).
        encoding::vary_on_coding(&mut headers);

        // A stored `immutable` copy refetched once its freshness ran out.
        // Other bytes now are the origin's right (RFC 8246 promises nothing
        // past freshness) and replace it, but under a hashed asset name they
        // are most often a deploy that reused the name: logged and counted.
        let immutable_before = stale
            .as_ref()
            .filter(|hit| hit.meta.directives.immutable && !hit.meta.purged)
            .map(|hit| (hit.meta.status, hit.meta.digest));
        if let Some(hit) = stale {
            if parts.status == StatusCode::NOT_MODIFIED {
                // Set-Cookie is never merged (merged_headers drops it): a
                // cookie is for one client, never for a stored response.
                let merged = hit.meta.merged_headers(&headers);
                let (meta, shareable) = match policy.evaluate(hit.meta.status, &merged, exchange, facts) {
                    Ok(storable) => {
                        let freshened = hit.meta.freshened(&headers, storable, exchange);
                        (tiers.freshen(primary, &request_headers, freshened, epoch), true)
                    }
                    // The origin now forbids storing it (private, no-store):
                    // serve it to this reader once, forget it.
                    Err(_) => {
                        tiers.remove(primary);
                        (Arc::new(Meta { headers: StoredHeaders::new(&merged), ..Meta::clone(&hit.meta) }), false)
                    }
                };
                fill.publish_head(FillHead::Revalidated(Stored { meta, body: hit.body }, shareable));
                return;
            }
            if usable_on_error && (parts.status.is_server_error() || parts.status.is_client_error()) {
                // A 5xx to a revalidation may be treated as no answer (RFC
                // 9111 §4.3.3). A 4xx would be the resource's new state, but
                // for assets it is most often a deploy that removed the old
                // hashed files while pages still name them: it does not
                // replace a stored object either, unless that object forbids
                // stale use (must-revalidate and the like: then it is relayed).
                let reason = format!("origin {} answered {}", fetched.origin, parts.status);
                tracing::warn!(%url, %reason, "serving stale");
                let status = http::StatusCode::BAD_GATEWAY;
                fill.publish_head(FillHead::Stale(hit, Arc::new(UpstreamError { reason, status })));
                return;
            }
        }

        let coding_accepted = encoding::coding_accepted(&headers, accept_encoding);
        // A 206 to a GET is kept as a segment of its object, judged as the
        // whole response would be (holdfast_cache::partial).
        let segment = (parts.status == StatusCode::PARTIAL_CONTENT && cacheable && is_get)
            .then(|| headers.get(header::CONTENT_RANGE).and_then(ContentRange::parse))
            .flatten()
            .filter(|range| content_length.is_none_or(|len| len == range.end - range.start));
        let judged_status = if segment.is_some() { StatusCode::OK } else { parts.status };
        let mut storable: Result<Storable, NoStoreReason> = if !cacheable || !is_get {
            Err(NoStoreReason::Method)
        } else if !coding_accepted {
            // The origin sent a coding it was not asked for: relay it to
            // this client (it is what the origin answered) but store nothing.
            Err(NoStoreReason::Coding)
        } else {
            policy.evaluate(judged_status, &headers, exchange, facts)
        };
        if segment.is_some() && storable.as_ref().is_ok_and(|s| !s.vary.is_empty()) {
            // Segments of several variants are not combined.
            storable = Err(NoStoreReason::Status);
        }
        let keep = |meta: Meta, body: Bytes| match segment {
            // Without Content-Length the segment's length is known only now.
            Some(range) if body.len() as u64 == range.end - range.start => {
                tiers.keep_partial(primary, &request_headers, as_segment_of(meta, range), range, body, epoch)
            }
            Some(_) => {}
            None => {
                if let Some((status, digest)) = immutable_before
                    && status == meta.status
                    && digest != meta.digest
                {
                    tiers.count_immutable_changed();
                    tracing::warn!(
                        url = %meta.url,
                        origin = %fetched.origin,
                        was = %digest,
                        now = %meta.digest,
                        "origin changed the bytes of an immutable object; the new bytes replace it"
                    );
                }
                tiers.store(primary, &request_headers, meta, body, epoch)
            }
        };
        if storable.is_ok() && content_length.is_some_and(|len| len > max_object_size) {
            storable = Err(NoStoreReason::TooLarge);
        }
        let shareable = match &storable {
            Ok(_) | Err(NoStoreReason::TooLarge | NoStoreReason::Status | NoStoreReason::NoFreshness) => {
                !headers.contains_key(header::SET_COOKIE)
            }
            Err(_) => false,
        } && cacheable
            // A tier loop (508) is about this request's Via, which a client
            // can forge: never hand it to other readers.
            && parts.status != StatusCode::LOOP_DETECTED;
        let head = Arc::new(ResponseHead {
            status: parts.status,
            headers: headers.clone(),
            origin: fetched.origin.clone(),
            storable: storable.as_ref().map(|_| ()).map_err(|r| *r),
            shareable,
            variant: policy::vary_names(&headers).map(|vary| primary.record(&vary, &request_headers)),
        });
        if storable.is_err() {
            fill.lock().retain = false;
            leave_map();
        }
        fill.publish_head(FillHead::Response(head));

        let mut body = body;
        let mut hasher = DigestBuilder::new();
        let mut received: u64 = 0;
        let mut stored = false;
        let end = loop {
            if !fill.lock().retain {
                match wait_for_room(fill).await {
                    Room::Go => {}
                    // Nobody reads and nothing will be stored: stop fetching.
                    Room::NoReader => return,
                    Room::Shed => {
                        fill.budget.count_stalled();
                        tracing::debug!(%url, "fill shed: budget full and its clients stopped reading");
                        break Err("shed: the fill buffer budget is full and the client stopped reading".into());
                    }
                }
            }
            match body.frame().await {
                None => break Ok(()),
                Some(Err(error)) => break Err(error.to_string()),
                Some(Ok(frame)) => {
                    let Ok(chunk) = frame.into_data() else { continue };
                    if chunk.is_empty() {
                        continue;
                    }
                    let len = chunk.len() as u64;
                    received += len;
                    if content_length.is_some_and(|announced| received > announced) {
                        break Err(format!(
                            "origin sent more than its Content-Length of {}",
                            content_length.unwrap_or(0)
                        ));
                    }
                    if storable.is_ok() {
                        let shed = if received > max_object_size {
                            Some(NoStoreReason::TooLarge)
                        } else if !fill.budget.try_take(len) {
                            fill.budget.count_shed();
                            Some(NoStoreReason::BufferBudget)
                        } else {
                            None
                        };
                        match shed {
                            Some(reason) => {
                                tracing::debug!(%url, reason = reason.as_str(), "body will not be stored");
                                storable = Err(reason);
                                fill.budget.take(len);
                                fill.lock().retain = false;
                                leave_map();
                            }
                            None => hasher.update(&chunk),
                        }
                    } else {
                        // Room was waited for: a fill may hold one chunk more.
                        fill.budget.take(len);
                    }
                    fill.lock().counted += len;
                    if content_length == Some(received)
                        && let Ok(verdict) = storable.clone()
                    {
                        // The last byte: store before any reader can see it,
                        // so a client that got the whole body and asks again
                        // finds the object (HIT), not the finishing fill.
                        let mut chunks = fill.lock().chunks.clone();
                        chunks.push(chunk.clone());
                        let body = concat(&chunks, received);
                        let meta = Meta::new(
                            url.clone(),
                            parts.status,
                            headers.clone(),
                            verdict,
                            exchange,
                            hasher.finish(),
                            received,
                        );
                        keep(meta, body.clone());
                        stored = true;
                        // Stored: a request from a client that got the last
                        // byte finds the object, not this finishing fill
                        // (a revalidation would join it and get its 200).
                        leave_map();
                        let mut state = fill.lock();
                        state.chunks.push(chunk);
                        hand_over_to_store(&mut state, &body, &fill.budget);
                        state.wake_readers();
                        continue;
                    }
                    let mut state = fill.lock();
                    state.chunks.push(chunk);
                    if !state.retain {
                        let _ = drop_consumed_chunks(&mut state, &fill.budget);
                    }
                    state.wake_readers();
                }
            }
        };
        let end = end.and_then(|()| match content_length {
            Some(len) if received != len => Err(format!("origin sent {received} of {len} bytes")),
            _ => Ok(()),
        });
        if let Err(reason) = &end {
            if reason.starts_with("shed:") {
                // Counted in /metrics; one line each would flood the log under attack.
                tracing::debug!(%url, %reason, "fill shed");
            } else {
                tracing::warn!(%url, origin = %fetched.origin, %reason, "origin body incomplete; not stored");
            }
        } else if let (Ok(storable), false) = (storable, stored) {
            let body = concat(&fill.lock().chunks, received);
            let meta = Meta::new(url, parts.status, headers, storable, exchange, hasher.finish(), received);
            keep(meta, body.clone());
            hand_over_to_store(&mut fill.lock(), &body, &fill.budget);
        }
        leave_map();
        fill.finish(end);
    }
}

/// The metadata of a 206 as that of the whole object it is part of: a
/// 200 of the complete length, without the segment's own framing.
fn as_segment_of(mut meta: Meta, range: ContentRange) -> Meta {
    meta.headers = meta.headers.without(&[header::CONTENT_RANGE, header::CONTENT_LENGTH]);
    Meta { status: StatusCode::OK, size: range.complete, ..meta }
}

/// The Via sent upstream: the client's chain plus this node.
fn via_upstream(headers: &HeaderMap, node_name: &str) -> HeaderValue {
    let mut chain: Vec<&str> = headers
        .get_all(header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|hop| !hop.is_empty())
        .collect();
    let own = format!("1.1 {node_name}");
    chain.push(&own);
    HeaderValue::from_str(&chain.join(", ")).unwrap_or_else(|_| HeaderValue::from_static("1.1 holdfast"))
}

/// No usable answer from the origin: waiters get the stale copy when one
/// may be served on error, else the failure.
fn publish_failure(fill: &Fill, url: &str, stale: Option<Stored>, error: UpstreamError) {
    tracing::warn!(%url, reason = %error.reason, "origin fetch failed");
    let error = Arc::new(error);
    fill.publish_head(match stale {
        Some(hit) => FillHead::Stale(hit, error),
        None => FillHead::Failed(error),
    });
}
