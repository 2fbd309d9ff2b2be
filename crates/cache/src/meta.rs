//! What is stored about one response ([`Meta`]), and what it costs.
//!
//! Stored header fields are a [`StoredHeaders`]: names and one exact-size
//! buffer of values, a third of what a `HeaderMap` costs.

use std::time::{Duration, SystemTime};

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::control::ResponseDirectives;
use crate::key::Digest;
use crate::policy::{self, Exchange, Storable};
use crate::stored_headers::StoredHeaders;

/// What a stored response costs besides its strings and body: the `Meta`
/// and its `Arc`, the body's handle and allocation, moka's entry and its
/// map slot, the body index entry (measured with the `memory_per_object`
/// example of holdfast-benches).
pub(crate) const RECORD_FIXED_COST: usize = std::mem::size_of::<Meta>() + 1280;

/// What is stored about one response.
#[derive(Debug, Clone)]
pub struct Meta {
    /// The request URL, kept for logs and (later) prefix purges.
    pub url: String,
    pub status: StatusCode,
    /// Response headers as stored: hop-by-hop fields and `Age` removed.
    pub headers: StoredHeaders,
    pub vary: Vec<HeaderName>,
    pub directives: ResponseDirectives,
    pub freshness_lifetime: Duration,
    pub corrected_initial_age: Duration,
    /// When the response head was received (the "response_time").
    pub stored_at: SystemTime,
    /// Surrogate keys from `Surrogate-Key` and `Cache-Tag`.
    pub tags: Vec<String>,
    pub digest: Digest,
    pub size: u64,
    /// Marked stale by a soft purge (kept on disk: the headers alone would
    /// bring `immutable` and `stale-while-revalidate` back).
    pub purged: bool,
}

impl Meta {
    /// Builds the metadata of a complete response that policy allowed.
    pub fn new(
        url: String,
        status: StatusCode,
        mut headers: HeaderMap,
        storable: Storable,
        exchange: Exchange,
        digest: Digest,
        size: u64,
    ) -> Meta {
        policy::strip_hop_by_hop(&mut headers);
        headers.remove(header::AGE);
        let tags = surrogate_tags(&headers);
        let headers = StoredHeaders::new(&headers);
        Meta {
            url,
            status,
            headers,
            vary: storable.vary,
            directives: storable.directives,
            freshness_lifetime: storable.freshness_lifetime,
            corrected_initial_age: storable.corrected_initial_age,
            stored_at: exchange.response_time,
            tags,
            digest,
            size,
            purged: false,
        }
    }

    /// current_age (RFC 9111 §4.2.3) at `now`.
    pub fn age(&self, now: SystemTime) -> Duration {
        let resident = now.duration_since(self.stored_at).unwrap_or(Duration::ZERO);
        self.corrected_initial_age.saturating_add(resident)
    }

    /// Fresh means servable without asking the origin. `no-cache` responses
    /// are never fresh: each use is revalidated.
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        !self.directives.no_cache && self.age(now) < self.freshness_lifetime
    }

    /// The same response marked stale by a soft purge: no freshness left, no
    /// stale-while-revalidate, so the next request revalidates and it is
    /// served only if the origin fails.
    pub fn soft_purged(&self) -> Meta {
        let mut meta = self.clone();
        meta.freshness_lifetime = Duration::ZERO;
        meta.directives.stale_while_revalidate = None;
        meta.directives.immutable = false;
        meta.purged = true;
        meta
    }

    /// The URL without its scheme, lowercase host: what purges match on, so
    /// one purge covers the http and https copies of an object.
    pub fn purge_url(&self) -> &str {
        self.url.split_once("://").map_or(self.url.as_str(), |(_, rest)| rest)
    }

    /// How long past its freshness lifetime the response is.
    pub fn staleness(&self, now: SystemTime) -> Duration {
        self.age(now).saturating_sub(self.freshness_lifetime)
    }

    /// Whether any stale use is allowed at all. RFC 9111 §4.2.4: never for
    /// `no-cache`, `must-revalidate` or `proxy-revalidate`, nor with
    /// `s-maxage`, which carries `proxy-revalidate` for a shared cache
    /// (§5.2.2.10); no configuration overrides that.
    pub fn may_serve_stale(&self) -> bool {
        let d = &self.directives;
        !(d.no_cache || d.must_revalidate || d.proxy_revalidate || d.s_maxage.is_some())
    }

    /// May this stored response be served while the origin fails?
    ///
    /// When stale use is allowed at all ([`Meta::may_serve_stale`]),
    /// `stale-if-error` (RFC 5861) permits it within its window, and
    /// `max_stale` bounds the rest (`None`: as long as stored).
    pub fn usable_on_error(&self, now: SystemTime, max_stale: Option<Duration>) -> bool {
        if !self.may_serve_stale() {
            return false;
        }
        let staleness = self.staleness(now);
        if self.directives.stale_if_error.is_some_and(|window| staleness <= window) {
            return true;
        }
        max_stale.is_none_or(|max| staleness <= max)
    }

    /// Within `stale-while-revalidate`: serve it now, refresh in the background.
    pub fn within_stale_while_revalidate(&self, now: SystemTime) -> bool {
        self.may_serve_stale()
            && self.directives.stale_while_revalidate.is_some_and(|window| self.staleness(now) <= window)
    }

    pub fn etag(&self) -> Option<HeaderValue> {
        self.headers.get(&header::ETAG)
    }

    pub fn last_modified(&self) -> Option<HeaderValue> {
        self.headers.get(&header::LAST_MODIFIED)
    }

    /// Applies a 304 from revalidation (RFC 9111 §4.3.4): the stored headers
    /// are updated with the new ones, and the freshness clock restarts.
    /// `storable` is the policy verdict on [`Meta::merged_headers`].
    pub fn freshened(&self, not_modified: &HeaderMap, storable: Storable, exchange: Exchange) -> Meta {
        let merged = self.merged_headers(not_modified);
        let tags = surrogate_tags(&merged);
        Meta {
            headers: StoredHeaders::new(&merged),
            directives: storable.directives,
            freshness_lifetime: storable.freshness_lifetime,
            corrected_initial_age: storable.corrected_initial_age,
            stored_at: exchange.response_time,
            tags,
            purged: false,
            ..self.clone()
        }
    }

    /// The stored headers updated with those of a 304, as RFC 9111 §3.2
    /// asks; fields that describe the body are kept from the stored response.
    pub fn merged_headers(&self, not_modified: &HeaderMap) -> HeaderMap {
        let mut headers = self.headers.to_map();
        let mut fresh = not_modified.clone();
        policy::strip_hop_by_hop(&mut fresh);
        // Fields that describe the body, the age the cache computes, and
        // Set-Cookie: a cookie is for one client, never for a stored response.
        for name in
            [header::CONTENT_LENGTH, header::CONTENT_ENCODING, header::CONTENT_RANGE, header::AGE, header::SET_COOKIE]
        {
            fresh.remove(name);
        }
        for name in fresh.keys() {
            headers.remove(name);
        }
        for (name, value) in fresh.iter() {
            headers.append(name.clone(), value.clone());
        }
        headers
    }

    /// What this response's metadata costs in memory (its body aside).
    pub(crate) fn cost(&self) -> usize {
        let headers = self.headers.cost();
        let tags: usize = self.tags.iter().map(|t| t.len() + 24).sum();
        let vary: usize = self.vary.iter().map(custom_name_len).sum::<usize>() + self.vary.len() * 8;
        RECORD_FIXED_COST + self.url.capacity() + headers + tags + vary
    }
}

/// Bytes a header name owns: none for the standard names (static).
pub(crate) fn custom_name_len(name: &HeaderName) -> usize {
    let text = name.as_str();
    if HeaderName::from_bytes(text.as_bytes()).is_ok_and(|n| std::ptr::eq(n.as_str(), text)) {
        0
    } else {
        text.len() + 32
    }
}

impl Meta {
    /// Rebuilds metadata read from disk, deriving what the headers say.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn restore(
        url: String,
        status: StatusCode,
        headers: HeaderMap,
        freshness_lifetime: Duration,
        corrected_initial_age: Duration,
        stored_at: SystemTime,
        digest: Digest,
        size: u64,
    ) -> Meta {
        Meta {
            url,
            status,
            vary: policy::vary_names(&headers).unwrap_or_default(),
            directives: ResponseDirectives::parse(&headers),
            tags: surrogate_tags(&headers),
            headers: StoredHeaders::new(&headers),
            freshness_lifetime,
            corrected_initial_age,
            stored_at,
            digest,
            size,
            purged: false,
        }
    }
}

pub(crate) fn surrogate_tags(headers: &HeaderMap) -> Vec<String> {
    let mut tags = Vec::new();
    let fields = [(HeaderName::from_static("surrogate-key"), ' '), (HeaderName::from_static("cache-tag"), ',')];
    for (name, separator) in fields {
        for value in headers.get_all(name) {
            if let Ok(text) = value.to_str() {
                tags.extend(text.split(separator).map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned));
            }
        }
    }
    tags.sort();
    tags.dedup();
    tags
}
