//! The last purges this process did, for `/stats` and the dashboard: an
//! operator who purged after a deploy can see it landed, on which kind of
//! target, and what it removed, without reading logs.

use std::collections::VecDeque;
use std::sync::Mutex;

use holdfast_control::{PURGE_TARGET_KEPT, PurgeRecord, RECENT_PURGES};

/// A ring of the last [`RECENT_PURGES`] purges.
#[derive(Debug, Default)]
pub struct PurgeLog {
    records: Mutex<VecDeque<PurgeRecord>>,
}

impl PurgeLog {
    /// Remembers one purge, forgetting the oldest beyond [`RECENT_PURGES`].
    /// The target is cut to [`PURGE_TARGET_KEPT`] bytes: a purge body may
    /// be 64 KiB, and the stats are polled every second.
    pub fn record(&self, mut record: PurgeRecord) {
        if let Some(target) = &mut record.target {
            cut(target, PURGE_TARGET_KEPT);
        }
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if records.len() == RECENT_PURGES {
            records.pop_back();
        }
        records.push_front(record);
    }

    /// The purges remembered, newest first.
    pub fn recent(&self) -> Vec<PurgeRecord> {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }
}

/// Cuts `text` to at most `max` bytes, at a character boundary, marking the cut.
fn cut(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_control::Purged;

    fn record(n: u64, target: Option<String>) -> PurgeRecord {
        PurgeRecord {
            at_unix_ms: n,
            kind: "tag".into(),
            purged: Purged { disk: 0, memory: n },
            soft: false,
            target,
            took_ms: 0,
        }
    }

    #[test]
    fn keeps_the_newest_first_and_forgets_the_oldest() {
        let log = PurgeLog::default();
        for n in 0..RECENT_PURGES as u64 + 5 {
            log.record(record(n, Some(format!("t{n}"))));
        }
        let recent = log.recent();
        assert_eq!(recent.len(), RECENT_PURGES);
        assert_eq!(recent[0].at_unix_ms, RECENT_PURGES as u64 + 4);
        assert_eq!(recent.last().map(|r| r.at_unix_ms), Some(5));
    }

    #[test]
    fn long_targets_are_cut_at_a_character_boundary() {
        let log = PurgeLog::default();
        log.record(record(1, Some("é".repeat(PURGE_TARGET_KEPT))));
        log.record(record(2, None));
        let recent = log.recent();
        let kept = recent[1].target.as_deref().unwrap_or_default();
        assert!(kept.len() <= PURGE_TARGET_KEPT && kept.ends_with('…'), "{} bytes", kept.len());
        assert_eq!(recent[0].target, None);
    }
}
