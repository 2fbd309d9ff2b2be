//! holdfast-control: the messages of the admin API, shared by the node that
//! answers them and the operator CLI that sends them, so neither side
//! builds JSON by hand.
//!
//! | method | path | request | answer |
//! | --- | --- | --- | --- |
//! | POST | /purge | [`PurgeRequest`] | [`PurgeAnswer`] |
//! | GET | /stats | | [`Stats`] (also what the dashboard at `/` polls) |
//! | POST | /reload | | [`ReloadAnswer`] |
//! | GET | /top?seconds=N&limit=M | | [`TopAnswer`] |
//! | any | any | | [`ErrorAnswer`] with a 4xx status |
//!
//! The answers' fields are declared in alphabetical order: that is the
//! order the node has always written them in, so the JSON is unchanged.
//! This crate depends on no other workspace crate: a tool can drive a node
//! without linking it.

#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What a purge selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeTarget {
    /// One URL, every variant (the scheme is ignored): `https://cdn.example.com/app.js`.
    Url(String),
    /// Every URL starting with this: `cdn.example.com/assets/`.
    Prefix(String),
    /// Every object with this `Surrogate-Key` / `Cache-Tag`.
    Tag(String),
    /// Everything.
    All,
}

/// The body of `POST /purge`, as written on the wire:
/// `{"url"|"prefix"|"tag": "...", "all": true, "soft": bool}`. Exactly one
/// of `url`, `prefix`, `tag` and `all` is given; [`PurgeRequest::target`]
/// checks that.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// See [`PurgeTarget::Url`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// See [`PurgeTarget::Prefix`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// See [`PurgeTarget::Tag`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// See [`PurgeTarget::All`].
    #[serde(default, skip_serializing_if = "is_false")]
    pub all: bool,
    /// Mark stale instead of removing: served only while the origin fails.
    #[serde(default)]
    pub soft: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Why a [`PurgeRequest`] selects nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PurgeRequestError {
    /// None, or more than one, of `url`, `prefix`, `tag` and `all`.
    NotOneTarget,
    /// An empty `url`, `prefix` or `tag`.
    EmptyTarget,
}

impl fmt::Display for PurgeRequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PurgeRequestError::NotOneTarget => "give exactly one of url, prefix, tag or all",
            PurgeRequestError::EmptyTarget => "the purge target is empty",
        })
    }
}

impl std::error::Error for PurgeRequestError {}

impl PurgeRequest {
    /// The request for one target.
    pub fn new(target: PurgeTarget, soft: bool) -> PurgeRequest {
        let mut request = PurgeRequest { soft, ..PurgeRequest::default() };
        match target {
            PurgeTarget::Url(url) => request.url = Some(url),
            PurgeTarget::Prefix(prefix) => request.prefix = Some(prefix),
            PurgeTarget::Tag(tag) => request.tag = Some(tag),
            PurgeTarget::All => request.all = true,
        }
        request
    }

    /// The one target the request names.
    pub fn target(&self) -> Result<PurgeTarget, PurgeRequestError> {
        let targets = [
            self.url.clone().map(PurgeTarget::Url),
            self.prefix.clone().map(PurgeTarget::Prefix),
            self.tag.clone().map(PurgeTarget::Tag),
            self.all.then_some(PurgeTarget::All),
        ];
        let mut chosen = targets.into_iter().flatten();
        let (Some(target), None) = (chosen.next(), chosen.next()) else {
            return Err(PurgeRequestError::NotOneTarget);
        };
        if matches!(&target, PurgeTarget::Url(s) | PurgeTarget::Prefix(s) | PurgeTarget::Tag(s) if s.is_empty()) {
            return Err(PurgeRequestError::EmptyTarget);
        }
        Ok(target)
    }
}

/// The answer to a purge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PurgeAnswer {
    /// `url`, `prefix`, `tag` or `all`.
    pub kind: String,
    /// What each tier removed or marked.
    pub purged: Purged,
    /// Whether the purge was soft.
    pub soft: bool,
    /// How long the purge took, in milliseconds.
    pub took_ms: u64,
}

/// Records purged, per tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purged {
    /// Records on disk.
    pub disk: u64,
    /// Records in memory.
    pub memory: u64,
}

/// The answer to `GET /stats`: hit ratio, objects and bytes per tier,
/// origin health.
///
/// Fields added after the first release carry `#[serde(default)]`, so a
/// newer CLI still reads an older node's answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Requests waiting for a fill another request leads.
    pub coalesced_waiters: usize,
    /// The config file the node was started with (as given); `None` when it
    /// runs on flags alone.
    #[serde(default)]
    pub config_path: Option<String>,
    /// The disk tier; `None` on a memory-only node.
    pub disk: Option<DiskStats>,
    /// Body bytes held by fills in progress, against `cache.fill_buffer_size`.
    #[serde(default)]
    pub fill_buffer: BudgetUse,
    /// Origin fills in progress.
    pub fills_in_flight: usize,
    /// `cache.max_concurrent_fills`: a miss beyond it gets 503 (or its stale copy).
    #[serde(default)]
    pub fills_limit: usize,
    /// Hits (fresh, stale or revalidated) over lookups (hits and misses).
    pub hit_ratio: f64,
    /// The memory tier.
    pub memory: MemoryStats,
    /// Each site's origin group.
    pub origins: Vec<OriginGroupStats>,
    /// False while the node drains.
    pub ready: bool,
    /// The last purges this process did, newest first (at most
    /// [`RECENT_PURGES`]).
    #[serde(default)]
    pub recent_purges: Vec<PurgeRecord>,
    /// Responses by cache result (`HIT`, `MISS`, ...).
    pub responses: BTreeMap<String, u64>,
    /// Seconds since the node started.
    pub uptime_s: u64,
    /// The node's version (`holdfast --version`).
    #[serde(default)]
    pub version: String,
}

/// How many purges a node remembers for [`Stats::recent_purges`]: enough
/// to see the last deploy's purges, small enough to poll every second.
pub const RECENT_PURGES: usize = 20;

/// One purge a node did, as [`Stats::recent_purges`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeRecord {
    /// When it finished, as a Unix time in milliseconds.
    pub at_unix_ms: u64,
    /// `url`, `prefix`, `tag` or `all`.
    pub kind: String,
    /// What each tier removed or marked.
    pub purged: Purged,
    /// Whether the purge was soft.
    pub soft: bool,
    /// The URL, prefix or tag; `None` for `all`. Cut to
    /// [`PURGE_TARGET_KEPT`] bytes.
    pub target: Option<String>,
    /// How long it took, in milliseconds.
    pub took_ms: u64,
}

/// The longest purge target a [`PurgeRecord`] keeps, in bytes.
pub const PURGE_TARGET_KEPT: usize = 512;

/// A resource's use against its configured bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetUse {
    /// The bound.
    pub limit_bytes: u64,
    /// In use now.
    pub used_bytes: u64,
}

/// The memory tier's figures.
#[derive(Debug, Clone, Default, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStats {
    /// Distinct bodies held.
    pub blobs: u64,
    /// Body bytes held.
    pub bytes: u64,
    /// Records evicted to stay within the memory size.
    pub evictions: u64,
    /// `cache.memory_size`.
    #[serde(default)]
    pub limit_bytes: u64,
    /// Records (stored responses and Vary records).
    pub objects: u64,
    /// What the entries cost (bodies, metadata, overheads), as weighed
    /// against `limit_bytes`.
    #[serde(default)]
    pub used_bytes: u64,
}

/// The disk tier's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskStats {
    /// Bodies stored.
    pub blobs: u64,
    /// Files that failed their checksum or digest (quarantined).
    pub corrupt: u64,
    /// Records evicted to stay within the budgets.
    pub evictions: u64,
    /// Files in the tier (records and bodies), against `limit_files`.
    #[serde(default)]
    pub files: u64,
    /// Whether the volume was found full.
    pub full: bool,
    /// Lookups answered from disk.
    pub hits: u64,
    /// `cache.disk_size`, against `objects_bytes`.
    #[serde(default)]
    pub limit_bytes: u64,
    /// `cache.disk_max_files`.
    #[serde(default)]
    pub limit_files: u64,
    /// Bytes the tier's files take on disk.
    pub objects_bytes: u64,
    /// Whether the background scan has finished.
    pub scanned: bool,
    /// Writes that failed.
    pub write_errors: u64,
}

/// One site's origin group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginGroupStats {
    /// Retries refused by the node-wide retry budget.
    #[serde(default)]
    pub budget_exhausted: u64,
    /// Attempts that found every connection to an origin in use.
    #[serde(default)]
    pub busy: u64,
    /// Origins ejected after consecutive failures.
    pub ejections: u64,
    /// Requests that failed after every attempt.
    pub failures: u64,
    /// Times a request waited for an ejected origin to come back.
    pub holds: u64,
    /// Each member, then the fallback.
    pub members: Vec<MemberStats>,
    /// Attempts sent to an ejected origin because every origin was ejected.
    #[serde(default)]
    pub panic_routed: u64,
    /// Requests whose retries ended on an origin's own 502/503/504, relayed.
    #[serde(default)]
    pub relayed_errors: u64,
    /// Requests sent to the group.
    pub requests: u64,
    /// Attempts after the first.
    pub retries: u64,
    /// The site's name.
    pub site: String,
}

/// One origin of a group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStats {
    /// The circuit breaker: `closed`, `open` or `half-open`.
    pub breaker: String,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Whether this is the group's fallback.
    pub fallback: bool,
    /// Requests to it in progress, against `origin.max_connections`.
    #[serde(default)]
    pub in_use: usize,
    /// Responses timed for `latency_us_total`.
    #[serde(default)]
    pub latency_count: u64,
    /// Sum of the times from request to response head, in microseconds:
    /// the difference of two reads over the difference of their
    /// `latency_count` is the mean latency between them.
    #[serde(default)]
    pub latency_us_total: u64,
    /// The origin's URL.
    pub origin: String,
}

/// The answer to `GET /top?seconds=N&limit=M`: the URLs with the most
/// requests and the most origin fetches over the last N complete seconds
/// (1 to 10, default 1), M of each (at most 32, default 10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopAnswer {
    /// URLs by origin fetches made: misses and revalidations a request led,
    /// passes, background refreshes a request started.
    pub fetches: Vec<TopUrl>,
    /// URLs by requests answered.
    pub requests: Vec<TopUrl>,
    /// One request in this many is sampled (under load); counts above 1
    /// are estimates.
    pub sample_every: u32,
    /// The seconds the counts cover.
    pub seconds: u32,
}

/// One URL of a [`TopAnswer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopUrl {
    /// Estimated requests (or fetches) in the window; never too low.
    pub count: u64,
    /// How much of `count` may belong to other URLs (the tracker keeps a
    /// fixed number of counters, and a new URL takes over the smallest).
    pub error: u64,
    /// Host and path, without the scheme (as purges name URLs); cut at
    /// 256 bytes.
    pub url: String,
}

/// The answer to a successful `POST /reload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadAnswer {
    /// Always true.
    pub reloaded: bool,
    /// What was applied, and what waits for a restart.
    pub summary: String,
}

/// The body of every refusal (4xx).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    /// What was wrong, in one line.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_requests_round_trip_and_name_one_target() {
        for target in [
            PurgeTarget::Url("https://cdn.example/a.js".into()),
            PurgeTarget::Prefix("cdn.example/assets/".into()),
            PurgeTarget::Tag("release-7".into()),
            PurgeTarget::All,
        ] {
            let json = serde_json::to_string(&PurgeRequest::new(target.clone(), true)).unwrap();
            let parsed: PurgeRequest = serde_json::from_str(&json).unwrap();
            assert_eq!(parsed.target(), Ok(target), "{json}");
            assert!(parsed.soft);
        }
        let json = serde_json::to_string(&PurgeRequest::new(PurgeTarget::All, false)).unwrap();
        assert_eq!(json, r#"{"all":true,"soft":false}"#);
        let both: PurgeRequest = serde_json::from_str(r#"{"url": "a", "tag": "b"}"#).unwrap();
        assert_eq!(both.target(), Err(PurgeRequestError::NotOneTarget));
        let none: PurgeRequest = serde_json::from_str(r#"{"soft": true}"#).unwrap();
        assert_eq!(none.target(), Err(PurgeRequestError::NotOneTarget));
        let empty: PurgeRequest = serde_json::from_str(r#"{"prefix": ""}"#).unwrap();
        assert_eq!(empty.target(), Err(PurgeRequestError::EmptyTarget));
        assert!(serde_json::from_str::<PurgeRequest>(r#"{"url": "a", "hard": true}"#).is_err());
    }

    #[test]
    fn stats_from_a_node_without_the_newer_fields_still_parse() {
        let old = r#"{"coalesced_waiters":0,"disk":{"blobs":1,"corrupt":0,"evictions":0,"full":false,"hits":2,
            "objects_bytes":8192,"scanned":true,"write_errors":0},"fills_in_flight":0,"hit_ratio":0.5,
            "memory":{"blobs":1,"bytes":10,"evictions":0,"objects":1},"origins":[{"ejections":0,"failures":0,
            "holds":0,"members":[{"breaker":"closed","consecutive_failures":0,"fallback":false,
            "origin":"http://o"}],"requests":1,"retries":0,"site":"default"}],"ready":true,
            "responses":{"HIT":1,"MISS":1},"uptime_s":3}"#;
        let stats: Stats = serde_json::from_str(old).unwrap();
        assert_eq!((stats.version.as_str(), stats.recent_purges.len(), stats.memory.limit_bytes), ("", 0, 0));
        assert_eq!(stats.disk.map(|d| (d.objects_bytes, d.limit_bytes)), Some((8192, 0)));
        assert_eq!(stats.origins[0].members[0].latency_count, 0);
    }

    #[test]
    fn purge_records_keep_their_wire_names() {
        let record = PurgeRecord {
            at_unix_ms: 1,
            kind: "all".into(),
            purged: Purged { disk: 2, memory: 3 },
            soft: true,
            target: None,
            took_ms: 4,
        };
        assert_eq!(
            serde_json::to_string(&record).unwrap(),
            r#"{"at_unix_ms":1,"kind":"all","purged":{"disk":2,"memory":3},"soft":true,"target":null,"took_ms":4}"#
        );
    }

    #[test]
    fn answers_keep_their_wire_names() {
        let answer = PurgeAnswer { kind: "tag".into(), purged: Purged { disk: 1, memory: 2 }, soft: false, took_ms: 3 };
        assert_eq!(
            serde_json::to_string(&answer).unwrap(),
            r#"{"kind":"tag","purged":{"disk":1,"memory":2},"soft":false,"took_ms":3}"#
        );
    }
}
