#![no_main]

#[path = "../targets/common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::known_from_env();
    common::range(data);
});
