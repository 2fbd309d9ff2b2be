use std::time::Duration;

use super::*;

fn hash(url: &str) -> u64 {
    RandomState::new().hash_one(url)
}

/// 10 hot URLs over a long tail of 50,000 URLs seen once each (the shape
/// of a site under a random-URL flood): Space-Saving keeps 128 counters,
/// finds the hot ones, and never counts one too low.
#[test]
fn finds_the_heavy_hitters_of_a_skewed_stream_in_bounded_space() {
    let hasher = RandomState::new();
    let mut summary = SpaceSaving::new(CAPACITY);
    let mut truth: HashMap<String, u64> = HashMap::new();
    let mut rng = fastrand::Rng::with_seed(7);
    for i in 0..100_000u64 {
        let url = if i % 2 == 0 {
            // Hot URL k takes a share proportional to 1/(k+1).
            let k = (0..10).find(|k| rng.u32(..(k + 2)) == 0).unwrap_or(9);
            format!("cdn.test/hot/{k}.js")
        } else {
            format!("cdn.test/random/{i}")
        };
        *truth.entry(url.clone()).or_default() += 1;
        summary.add(hasher.hash_one(&url), &url, 1);
        assert!(summary.len() <= CAPACITY);
    }
    let top = summary.top(10);
    let mut found: Vec<_> = top.iter().map(|t| t.url.clone()).collect();
    found.sort();
    let hot: Vec<_> = (0..10).map(|k| format!("cdn.test/hot/{k}.js")).collect();
    assert_eq!(found, hot, "{top:?}");
    for entry in &top {
        let real = truth[&entry.url];
        assert!(entry.count >= real && entry.count - entry.error <= real, "{entry:?} real {real}");
    }
}

#[test]
fn one_summary_holds_at_most_capacity_counters_of_at_most_max_url_bytes() {
    let tracker = TopTracker::new(Instant::now());
    let now = Instant::now();
    for i in 0..10_000 {
        let url = format!("flood.test/{i}/{}", "x".repeat(i % 1000));
        tracker.record(now, &url, 1, true);
    }
    let windows = tracker.windows.lock().unwrap();
    for summary in [&windows.current.requests, &windows.current.fetches] {
        assert_eq!(summary.len(), CAPACITY);
        assert!(summary.counters.iter().all(|c| c.url.len() <= MAX_URL && c.url.capacity() <= 2 * MAX_URL));
    }
}

#[test]
fn urls_are_cut_on_a_character_boundary() {
    let url = format!("h.test/{}", "é".repeat(200));
    let cut = cut(&url);
    assert!(cut.len() <= MAX_URL && cut.len() >= MAX_URL - 1);
    assert!(url.starts_with(cut));
    assert_eq!(super::cut("h.test/a"), "h.test/a");
    let _ = hash(cut);
}

#[test]
fn reports_cover_complete_seconds_and_forget_old_ones() {
    let start = Instant::now();
    let tracker = TopTracker::new(start);
    let at = |s: u64| start + Duration::from_secs(s) + Duration::from_millis(500);
    for (second, url, n, fetched) in [(0, "a.test/x", 3, false), (1, "a.test/x", 2, true), (1, "a.test/y", 1, true)] {
        for _ in 0..n {
            tracker.record(at(second), url, 1, fetched);
        }
    }
    tracker.record(at(2), "a.test/current", 1, false);
    let last = tracker.report(at(2), 1, 10);
    let urls = |list: &[TopUrl]| list.iter().map(|t| (t.url.clone(), t.count)).collect::<Vec<_>>();
    assert_eq!(urls(&last.requests), [("a.test/x".to_owned(), 2), ("a.test/y".to_owned(), 1)]);
    assert_eq!(urls(&last.fetches), [("a.test/x".to_owned(), 2), ("a.test/y".to_owned(), 1)]);
    let two = tracker.report(at(2), 2, 10);
    assert_eq!(urls(&two.requests), [("a.test/x".to_owned(), 5), ("a.test/y".to_owned(), 1)]);
    assert_eq!(two.seconds, 2);
    let limited = tracker.report(at(2), 2, 1);
    assert_eq!(urls(&limited.requests), [("a.test/x".to_owned(), 5)]);
    // The current second counts once it is complete; old seconds go.
    assert_eq!(urls(&tracker.report(at(3), 1, 10).requests), [("a.test/current".to_owned(), 1)]);
    assert!(tracker.report(at(3 + u64::from(HISTORY) + 1), HISTORY, 10).requests.is_empty());
    assert!(tracker.windows.lock().unwrap().done.is_empty());
}

#[test]
fn a_busy_tracker_drops_the_sample_instead_of_waiting() {
    let tracker = TopTracker::new(Instant::now());
    let held = tracker.windows.lock().unwrap();
    tracker.record(Instant::now(), "a.test/x", 1, false);
    drop(held);
    assert_eq!(tracker.windows.lock().unwrap().current.samples, 0);
}

/// Under load the tracker samples about SAMPLES_PER_SECOND requests a
/// second, and the estimates still add up to the traffic.
#[test]
fn sampling_adapts_to_the_load_and_estimates_counts() {
    let start = Instant::now();
    let tracker = TopTracker::new(start);
    let at = |s: u64| start + Duration::from_secs(s);
    const PER_SECOND: u64 = 200_000;
    for second in 0..3 {
        let mut sampled = 0;
        for i in 0..PER_SECOND {
            let Some(weight) = tracker.sample() else { continue };
            sampled += 1;
            let url = if i % 4 == 0 { "a.test/quarter".to_owned() } else { format!("a.test/{i}") };
            tracker.record(at(second), &url, weight, false);
        }
        if second > 0 {
            // Sparse from the start: the previous second set the rate.
            assert!(sampled <= 2 * SAMPLES_PER_SECOND, "second {second}: {sampled} samples");
        }
    }
    assert!(tracker.sample_every() >= 64, "{}", tracker.sample_every());
    let report = tracker.report(at(3), 1, 1);
    let quarter = &report.requests[0];
    assert_eq!(quarter.url, "a.test/quarter");
    let expected = PER_SECOND / 4;
    assert!(quarter.count.abs_diff(expected) < expected / 4, "{quarter:?}, expected about {expected}");
    // A quiet second brings sampling back to every request.
    tracker.record(at(5), "a.test/quiet", 1, false);
    let _ = tracker.report(at(7), 1, 1);
    assert_eq!(tracker.sample_every(), 1);
}
