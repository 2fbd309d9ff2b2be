//! Replays a crate's committed fuzz corpora through the same code its
//! cargo-fuzz targets run, on stable: included by path (`#[path]`) from
//! each `crates/<crate>/tests/fuzz_replay.rs`, which passes its own
//! `CARGO_MANIFEST_DIR`, so no crate depends on another for it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

/// Runs every file of `fuzz/corpus/<target>` (and any `crash-*` file of
/// `fuzz/artifacts/<target>`) through `run`; fails naming each failing file.
pub fn replay(crate_dir: &str, target: &str, run: fn(&[u8])) {
    let fuzz = Path::new(crate_dir).join("fuzz");
    let mut files = Vec::new();
    for (dir, crashes_only) in [(fuzz.join("corpus").join(target), false), (fuzz.join("artifacts").join(target), true)]
    {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.expect("readable corpus directory").path();
            let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            if path.is_file() && (!crashes_only || name.starts_with("crash-")) {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(!files.is_empty(), "no corpus for {target} under {}", fuzz.display());
    let mut failures = Vec::new();
    for path in &files {
        let data = std::fs::read(path).expect("readable corpus file");
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| run(&data))) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push(format!("{}: {message}", path.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{target}: {} of {} inputs fail:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
