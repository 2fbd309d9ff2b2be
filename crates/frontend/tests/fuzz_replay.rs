//! Replays the committed fuzz corpora (`crates/frontend/fuzz/corpus/<target>`)
//! through the same code the cargo-fuzz targets run, on stable, so every
//! input the fuzzers kept (crashes found included) is checked by
//! `cargo test --workspace`.

#[path = "../fuzz/targets/common.rs"]
mod common;

#[path = "../../test-support/replay/fuzz_replay.rs"]
mod corpus;

/// Replays `fuzz/corpus/<target>` (and any `fuzz/artifacts/<target>/crash-*`).
fn replay(target: &str, run: fn(&[u8])) {
    corpus::replay(env!("CARGO_MANIFEST_DIR"), target, run);
}

#[test]
fn range() {
    replay("range", common::range);
}

#[test]
fn handler() {
    replay("handler", common::handler);
}
