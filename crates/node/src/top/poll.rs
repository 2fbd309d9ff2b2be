//! Asking every node for its stats and top URLs, and turning two answers in
//! a row into rates.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use holdfast_control::{Stats, TopAnswer};
use http::Method;

use crate::cli::{self, HttpClient};

/// What the screen shows: one entry per node, in the order given.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub nodes: Vec<NodeView>,
    /// The seconds the top URLs cover.
    pub top_seconds: u32,
}

#[derive(Debug, Clone)]
pub struct NodeView {
    /// The admin URL.
    pub node: String,
    pub state: NodeState,
}

#[derive(Debug, Clone)]
pub enum NodeState {
    /// Not asked yet.
    Waiting,
    /// Unreachable, or it refused (the reason, in one line).
    Down(String),
    Up(Box<Live>),
}

/// A node that answered.
#[derive(Debug, Clone)]
pub struct Live {
    pub stats: Stats,
    /// Since the previous answer; `None` on the first.
    pub rates: Option<Rates>,
    /// `None` if the node has no `/top` (an older node).
    pub top: Option<TopAnswer>,
}

/// Requests per second over the last interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Rates {
    /// By cache result (`HIT`, `MISS`, ...).
    pub by_result: BTreeMap<String, f64>,
    pub total: f64,
    /// Counts in the interval, for the hit ratio of several nodes.
    pub hits: u64,
    pub lookups: u64,
}

impl Rates {
    /// Hits (fresh, stale, revalidated) over hits and misses, as `/stats`
    /// counts it; `None` without lookups.
    pub fn hit_ratio(&self) -> Option<f64> {
        (self.lookups > 0).then(|| self.hits as f64 / self.lookups as f64)
    }
}

/// The results that count as hits in the hit ratio.
pub const HIT_RESULTS: [&str; 3] = ["HIT", "STALE", "REVALIDATED"];

/// Asks the nodes, remembering each one's last counters.
pub struct Poller {
    client: HttpClient,
    token: String,
    nodes: Vec<String>,
    /// Each node's counters at its last answer.
    previous: Vec<Option<(Instant, BTreeMap<String, u64>)>>,
    timeout: Duration,
    top_seconds: u32,
}

impl Poller {
    /// `interval` sets how long a node may take (a node slower than that
    /// is shown down) and the seconds the top URLs cover.
    pub fn new(nodes: Vec<String>, token: String, interval: Duration) -> Poller {
        let previous = vec![None; nodes.len()];
        let top_seconds = interval.as_secs_f64().round().clamp(1.0, 10.0) as u32;
        let timeout = interval.max(Duration::from_secs(1));
        Poller { client: cli::client(), token, nodes, previous, timeout, top_seconds }
    }

    /// Every node's state before the first answers.
    pub fn waiting(&self) -> Snapshot {
        let nodes = self.nodes.iter().map(|node| NodeView { node: node.clone(), state: NodeState::Waiting }).collect();
        Snapshot { nodes, top_seconds: self.top_seconds }
    }

    /// Asks every node at once.
    pub async fn poll(&mut self) -> Snapshot {
        let asks = self.nodes.iter().map(|node| self.ask(node));
        let answers = futures_util::future::join_all(asks).await;
        let mut nodes = Vec::with_capacity(answers.len());
        for ((node, answer), previous) in self.nodes.iter().zip(answers).zip(&mut self.previous) {
            let state = match answer {
                Ok((stats, top)) => {
                    let now = Instant::now();
                    let rates = previous.as_ref().and_then(|(at, counts)| rates(counts, &stats.responses, now - *at));
                    *previous = Some((now, stats.responses.clone()));
                    NodeState::Up(Box::new(Live { stats, rates, top }))
                }
                Err(error) => {
                    *previous = None;
                    NodeState::Down(error)
                }
            };
            nodes.push(NodeView { node: node.clone(), state });
        }
        Snapshot { nodes, top_seconds: self.top_seconds }
    }

    async fn ask(&self, node: &str) -> Result<(Stats, Option<TopAnswer>), String> {
        let stats = self.get::<Stats>(node, "/stats");
        let top_path = format!("/top?seconds={}&limit=10", self.top_seconds);
        let top = self.get::<TopAnswer>(node, &top_path);
        let (stats, top) = futures_util::future::join(stats, top).await;
        Ok((stats?, top.ok()))
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, node: &str, path: &str) -> Result<T, String> {
        let url = cli::admin_url(node, path);
        let call = cli::call::<T>(&self.client, Method::GET, &url, &self.token, None);
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(format!("no answer in {} ms", self.timeout.as_millis())),
            Ok(Err(error)) => Err(error),
            Ok(Ok((_, Ok(answer)))) => Ok(answer),
            Ok(Ok((status, Err(error)))) => Err(format!("{status}: {error}")),
        }
    }
}

/// Requests per second between two readings of the counters; `None` when
/// no time passed or a counter went down (the node restarted).
fn rates(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, elapsed: Duration) -> Option<Rates> {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 {
        return None;
    }
    let mut deltas = BTreeMap::new();
    for (result, count) in after {
        let delta = count.checked_sub(before.get(result).copied().unwrap_or(0))?;
        deltas.insert(result.clone(), delta);
    }
    let count = |r: &str| deltas.get(r).copied().unwrap_or(0);
    let hits: u64 = HIT_RESULTS.iter().map(|r| count(r)).sum();
    let by_result: BTreeMap<_, _> = deltas.iter().map(|(r, n)| (r.clone(), *n as f64 / seconds)).collect();
    Some(Rates { total: by_result.values().sum(), by_result, hits, lookups: hits + count("MISS") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(r, n)| (r.to_string(), *n)).collect()
    }

    #[test]
    fn rates_and_hit_ratio_over_an_interval() {
        let before = counts(&[("HIT", 100), ("MISS", 10), ("ERROR", 0)]);
        let after = counts(&[("HIT", 190), ("MISS", 20), ("STALE", 10), ("ERROR", 4)]);
        let rates = rates(&before, &after, Duration::from_secs(2)).unwrap();
        assert_eq!(rates.by_result["HIT"], 45.0);
        assert_eq!(rates.by_result["ERROR"], 2.0);
        assert_eq!(rates.total, 57.0);
        assert_eq!((rates.hits, rates.lookups), (100, 110));
        assert_eq!(rates.hit_ratio(), Some(100.0 / 110.0));
        // A restarted node's counters went down: no rate for that interval.
        assert_eq!(super::rates(&after, &before, Duration::from_secs(1)), None);
        assert_eq!(super::rates(&before, &before, Duration::ZERO), None);
        assert_eq!(super::rates(&before, &before, Duration::from_secs(1)).unwrap().hit_ratio(), None);
    }
}
