//! What the holdfast node fuzz target does with one input.
//!
//! Shared by the cargo-fuzz target (`fuzz_targets/config_file.rs`,
//! nightly) and by `crates/node/tests/fuzz_replay.rs`, which runs every
//! committed corpus file through it on stable.

use std::path::Path;

use holdfast_node::config::{Environment, FileConfig, NodeConfig, Overrides};

/// A config file as the node reads it: TOML into [`FileConfig`], then
/// checked and typed by [`NodeConfig::from_file`]. Errors are fine (they
/// are how a bad file is reported); a panic is not.
pub fn config_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(file) = toml::from_str::<FileConfig>(text) else { return };
    if let Err(error) = NodeConfig::from_file(
        file,
        Path::new("/nonexistent"),
        "fuzz.toml",
        Overrides::default(),
        &Environment::default(),
    ) {
        // Rendering the error is part of reporting it.
        let _ = format!("{error:#}");
    }
}
