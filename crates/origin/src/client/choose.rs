//! Which member a request goes to: weighted, or by rendezvous hashing.

use tokio::time::Instant;

use super::Inner;
use crate::Selection;
use crate::health::Availability;

/// Which origin a request goes to next.
pub(super) enum Choice {
    /// This target; `true` if it is a half-open breaker's trial.
    Use(usize, bool),
    /// Nothing usable before this instant.
    WaitUntil(Instant),
}

impl Inner {
    /// Weighted random choice among ready members not yet tried; then a
    /// half-open member's trial; then the fallback; else when to look again.
    pub(super) fn choose(&self, tried: &[bool], now: Instant, affinity: Option<&[u8; 32]>) -> Choice {
        let mut earliest: Option<Instant> = None;
        let mut ready: Vec<usize> = Vec::new();
        let mut trial: Option<usize> = None;
        for (index, target) in self.targets.iter().enumerate() {
            if tried[index] {
                continue;
            }
            match target.health.peek(now) {
                Availability::Ready if !target.fallback => ready.push(index),
                Availability::Ready | Availability::Trial => {
                    if trial.is_none() || (self.targets[trial.unwrap_or(0)].fallback && !target.fallback) {
                        trial = Some(index);
                    }
                }
                Availability::Wait(until) => earliest = Some(earliest.map_or(until, |e| e.min(until))),
            }
        }
        if let (Selection::ConsistentHash, Some(key)) = (self.config.selection, affinity) {
            // The member this key belongs to, or the next one in its own
            // rendezvous order when that one is down or already tried.
            if let Some(index) = ready.iter().copied().max_by_key(|i| rendezvous(key, &self.targets[*i].label)) {
                return Choice::Use(index, false);
            }
        }
        if !ready.is_empty() {
            let total: u32 = ready.iter().map(|i| self.targets[*i].weight).sum();
            let mut pick = fastrand::u32(0..total.max(1));
            for index in ready {
                let weight = self.targets[index].weight;
                if pick < weight {
                    return Choice::Use(index, false);
                }
                pick -= weight;
            }
        }
        if let Some(index) = trial {
            match self.targets[index].health.acquire(now) {
                Availability::Ready => return Choice::Use(index, false),
                Availability::Trial => return Choice::Use(index, true),
                Availability::Wait(until) => earliest = Some(earliest.map_or(until, |e| e.min(until))),
            }
        }
        // Everything was tried this round or is ejected.
        Choice::WaitUntil(earliest.unwrap_or(now + self.config.retry.base_backoff))
    }
}

impl Inner {
    /// With every origin ejected: the one whose ejection ends first
    /// (members before the fallback when equal).
    pub(super) fn panic_choice(&self, now: Instant) -> usize {
        let until = |index: usize| match self.targets[index].health.peek(now) {
            Availability::Wait(until) => until,
            Availability::Ready | Availability::Trial => now,
        };
        (0..self.targets.len()).min_by_key(|i| (until(*i), self.targets[*i].fallback)).unwrap_or(0)
    }
}

/// Rendezvous (highest random weight) score of a key on a member: FNV-1a
/// then a SplitMix64 finaliser, stable across processes and versions so
/// every edge picks the same shield for a key.
fn rendezvous(key: &[u8; 32], member: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.iter().chain(member.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_spreads_keys_and_moves_only_the_lost_members_share() {
        let members = ["http://shield-a:80", "http://shield-b:80", "http://shield-c:80"];
        fn pick<'a>(key: &[u8; 32], among: &[&'a str]) -> &'a str {
            among.iter().copied().max_by_key(|m| rendezvous(key, m)).unwrap()
        }
        let keys: Vec<[u8; 32]> = (0..3000u32).map(|i| *blake_free_key(i)).collect();
        let mut counts = [0; 3];
        let mut moved = 0;
        for key in &keys {
            let first = pick(key, &members);
            counts[members.iter().position(|m| *m == first).unwrap()] += 1;
            let without_b = pick(key, &[members[0], members[2]]);
            if first != members[1] && without_b != first {
                moved += 1;
            }
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
        assert_eq!(moved, 0, "keys of the surviving members stay where they were");
    }

    fn blake_free_key(i: u32) -> Box<[u8; 32]> {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&i.to_le_bytes());
        key[4..8].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_le_bytes());
        Box::new(key)
    }
}
