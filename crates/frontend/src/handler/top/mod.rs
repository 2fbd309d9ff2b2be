//! Heavy hitters: the URLs that take the most requests, and the ones that
//! make the most origin fetches, over the last seconds (`holdfast top`,
//! admin `GET /top`).
//!
//! Cheap on the request path, where every core passes at once:
//! - a request is sampled with probability 1/`every` (a thread-local
//!   random number and one relaxed atomic load); only a sampled request
//!   copies its URL and takes the tracker's lock;
//! - the lock is never waited for: a sample that finds it taken is
//!   dropped, which loses a few samples at random and biases nothing;
//! - `every` adapts so that about [`SAMPLES_PER_SECOND`] requests are
//!   sampled whatever the load (every request when there are fewer); each
//!   sample counts for `every` requests.
//!
//! Bounded whatever URLs clients invent: one-second windows, each a
//! Space-Saving summary of [`CAPACITY`] counters (a new URL takes over the
//! smallest counter, so random URLs never grow it), URLs cut at
//! [`MAX_URL`] bytes, and the [`HISTORY`] last windows kept as their top
//! [`KEPT`] entries.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, TryLockError};
use std::time::Instant;

/// Counters per window and per kind (requests, origin fetches).
pub const CAPACITY: usize = 128;
/// URLs (host and path) longer than this are cut: a long URL costs no more
/// memory than a short one.
pub const MAX_URL: usize = 256;
/// Completed one-second windows kept: `GET /top?seconds=N` reads up to this many.
pub const HISTORY: u32 = 10;
/// Entries kept of each completed window, and the most a report lists.
pub const KEPT: usize = 32;
/// Samples taken per second at most, about: enough to find the URLs above
/// a fraction of a percent of the traffic, few enough that the lock is free.
pub const SAMPLES_PER_SECOND: u64 = 1024;
/// The sparsest sampling, for millions of requests a second.
const MAX_EVERY: u32 = 1 << 16;

/// One URL in a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopUrl {
    /// Host and path (and query), cut at [`MAX_URL`] bytes.
    pub url: String,
    /// Estimated requests (or fetches) in the window.
    pub count: u64,
    /// How much of `count` may belong to URLs this counter replaced.
    pub error: u64,
}

/// The heavy hitters of the last `seconds` complete seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopReport {
    pub seconds: u32,
    /// One request in this many is sampled now.
    pub sample_every: u32,
    /// URLs by requests answered.
    pub requests: Vec<TopUrl>,
    /// URLs by origin fetches made (misses, revalidations, passes and
    /// background refreshes a request started).
    pub fetches: Vec<TopUrl>,
}

/// The tracker one handler keeps.
pub(crate) struct TopTracker {
    started: Instant,
    every: AtomicU32,
    hasher: RandomState,
    windows: Mutex<Windows>,
}

impl TopTracker {
    pub(crate) fn new(started: Instant) -> TopTracker {
        TopTracker {
            started,
            every: AtomicU32::new(1),
            hasher: RandomState::new(),
            windows: Mutex::new(Windows::new(0)),
        }
    }

    /// Whether to sample a request, and then how many requests it stands for.
    pub(crate) fn sample(&self) -> Option<u32> {
        let every = self.every.load(Ordering::Relaxed);
        (every <= 1 || fastrand::u32(..every) == 0).then_some(every.max(1))
    }

    /// Counts a sampled request for `url`; `fetched` if it made an origin
    /// fetch. Never waits: if another thread holds the tracker, the sample
    /// is dropped.
    pub(crate) fn record(&self, now: Instant, url: &str, weight: u32, fetched: bool) {
        let mut windows = match self.windows.try_lock() {
            Ok(windows) => windows,
            Err(TryLockError::WouldBlock) => return,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        };
        self.advance(&mut windows, self.second(now));
        let url = cut(url);
        let hash = self.hasher.hash_one(url);
        let weight = u64::from(weight);
        let current = &mut windows.current;
        current.requests.add(hash, url, weight);
        if fetched {
            current.fetches.add(hash, url, weight);
        }
        current.samples += 1;
        current.weight += weight;
        if current.samples % SAMPLES_PER_SECOND == 0 {
            // Sampling more than planned this second: halve the rate now.
            let every = self.every.load(Ordering::Relaxed);
            self.every.store((every * 2).min(MAX_EVERY), Ordering::Relaxed);
        }
    }

    /// The top `limit` URLs of the last `seconds` complete seconds before
    /// `now` (at most [`HISTORY`]).
    pub(crate) fn report(&self, now: Instant, seconds: u32, limit: usize) -> TopReport {
        let seconds = seconds.clamp(1, HISTORY);
        let limit = limit.min(KEPT);
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let second = self.second(now);
        self.advance(&mut windows, second);
        let from = second.saturating_sub(u64::from(seconds));
        let recent = windows.done.iter().filter(|w| w.second >= from);
        let (requests, fetches): (Vec<_>, Vec<_>) = recent.map(|w| (&w.requests[..], &w.fetches[..])).unzip();
        TopReport {
            seconds,
            sample_every: self.sample_every(),
            requests: merge(&requests, limit),
            fetches: merge(&fetches, limit),
        }
    }

    /// One request in this many is sampled now.
    pub(crate) fn sample_every(&self) -> u32 {
        self.every.load(Ordering::Relaxed)
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.started).as_secs()
    }

    /// Moves on to `second`'s window if it is a later one: the current
    /// window is kept as its top entries, and the sampling rate set from
    /// the traffic it saw.
    fn advance(&self, windows: &mut Windows, second: u64) {
        let current = &windows.current;
        if second <= current.second {
            return;
        }
        if current.samples > 0 {
            let rate = current.weight / (second - current.second);
            let every = (rate / SAMPLES_PER_SECOND).clamp(1, u64::from(MAX_EVERY));
            self.every.store(every as u32, Ordering::Relaxed);
            let done = Done {
                second: current.second,
                requests: current.requests.top(KEPT),
                fetches: current.fetches.top(KEPT),
            };
            windows.done.push_back(done);
        } else {
            // Idle, or sampled too sparsely to see anything: sample every
            // request again until the next window says otherwise.
            self.every.store(1, Ordering::Relaxed);
        }
        let oldest = second.saturating_sub(u64::from(HISTORY));
        while windows.done.front().is_some_and(|w| w.second < oldest) {
            windows.done.pop_front();
        }
        windows.current = Window::new(second);
    }
}

/// The window being counted and the completed ones, oldest first.
struct Windows {
    current: Window,
    done: VecDeque<Done>,
}

impl Windows {
    fn new(second: u64) -> Windows {
        Windows { current: Window::new(second), done: VecDeque::with_capacity(HISTORY as usize + 1) }
    }
}

struct Window {
    second: u64,
    requests: SpaceSaving,
    fetches: SpaceSaving,
    samples: u64,
    /// Requests the samples stand for.
    weight: u64,
}

impl Window {
    fn new(second: u64) -> Window {
        Window {
            second,
            requests: SpaceSaving::new(CAPACITY),
            fetches: SpaceSaving::new(CAPACITY),
            samples: 0,
            weight: 0,
        }
    }
}

/// A completed window's top entries.
struct Done {
    second: u64,
    requests: Vec<TopUrl>,
    fetches: Vec<TopUrl>,
}

/// Space-Saving (Metwally, Agrawal, El Abbadi, 2005): at most `capacity`
/// counters. A key without one takes over the smallest, and inherits its
/// count as its error, so every key with more than 1/`capacity` of the
/// weight has a counter, and no count is ever too low.
pub(crate) struct SpaceSaving {
    capacity: usize,
    counters: Vec<Counter>,
}

struct Counter {
    hash: u64,
    url: String,
    count: u64,
    error: u64,
}

impl SpaceSaving {
    pub(crate) fn new(capacity: usize) -> SpaceSaving {
        SpaceSaving { capacity: capacity.max(1), counters: Vec::new() }
    }

    /// Adds `weight` to `url` (whose hash is `hash`).
    pub(crate) fn add(&mut self, hash: u64, url: &str, weight: u64) {
        if let Some(counter) = self.counters.iter_mut().find(|c| c.hash == hash && c.url == url) {
            counter.count += weight;
            return;
        }
        if self.counters.len() < self.capacity {
            self.counters.push(Counter { hash, url: url.to_owned(), count: weight, error: 0 });
            return;
        }
        // Invariant: `capacity` is at least 1 and the summary is full.
        let Some(smallest) = self.counters.iter_mut().min_by_key(|c| c.count) else { return };
        smallest.error = smallest.count;
        smallest.count += weight;
        smallest.hash = hash;
        smallest.url.clear();
        smallest.url.push_str(url);
    }

    /// The `n` largest counters, largest first.
    pub(crate) fn top(&self, n: usize) -> Vec<TopUrl> {
        let mut all: Vec<_> =
            self.counters.iter().map(|c| TopUrl { url: c.url.clone(), count: c.count, error: c.error }).collect();
        sort(&mut all);
        all.truncate(n);
        all
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.counters.len()
    }
}

/// Sums the windows' entries per URL and keeps the `limit` largest.
fn merge(windows: &[&[TopUrl]], limit: usize) -> Vec<TopUrl> {
    let mut sums: HashMap<&str, (u64, u64)> = HashMap::new();
    for entry in windows.iter().flat_map(|w| w.iter()) {
        let sum = sums.entry(&entry.url).or_default();
        sum.0 += entry.count;
        sum.1 += entry.error;
    }
    let mut all: Vec<_> =
        sums.into_iter().map(|(url, (count, error))| TopUrl { url: url.to_owned(), count, error }).collect();
    sort(&mut all);
    all.truncate(limit);
    all
}

/// Largest count first; equal counts by URL, so reports are stable.
fn sort(entries: &mut [TopUrl]) {
    entries.sort_unstable_by(|a, b| b.count.cmp(&a.count).then_with(|| a.url.cmp(&b.url)));
}

/// `url` cut at [`MAX_URL`] bytes, on a character boundary.
fn cut(url: &str) -> &str {
    if url.len() <= MAX_URL {
        return url;
    }
    let mut end = MAX_URL;
    while !url.is_char_boundary(end) {
        end -= 1;
    }
    &url[..end]
}

#[cfg(test)]
mod tests;
