//! Replays the committed fuzz corpora (`crates/cache/fuzz/corpus/<target>`)
//! through the same code the cargo-fuzz targets run, on stable, so every
//! input the fuzzers kept (crashes found included) is checked by
//! `cargo test --workspace`.

// The corpus is test data on disk, not the cache's files.
#![allow(clippy::disallowed_methods)]

#[path = "../fuzz/targets/common.rs"]
mod common;

#[path = "../../test-support/replay/fuzz_replay.rs"]
mod corpus;

/// Replays `fuzz/corpus/<target>` (and any `fuzz/artifacts/<target>/crash-*`).
fn replay(target: &str, run: fn(&[u8])) {
    corpus::replay(env!("CARGO_MANIFEST_DIR"), target, run);
}

#[test]
fn cache_control() {
    replay("cache_control", common::cache_control);
}

#[test]
fn freshness() {
    replay("freshness", common::freshness);
}

#[test]
fn accept_encoding_vary() {
    replay("accept_encoding_vary", common::accept_encoding_vary);
}

#[test]
fn record_codec() {
    replay("record_codec", common::record_codec);
}

#[test]
fn cache_key() {
    replay("cache_key", common::cache_key);
}
