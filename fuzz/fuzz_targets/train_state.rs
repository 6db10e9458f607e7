//! libFuzzer target: `deepgen::fuzz::train_state` on every input (see src/fuzz.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| deepgen::fuzz::train_state(data));
