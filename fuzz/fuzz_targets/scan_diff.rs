#![no_main]
//! Fuzz target `scan_diff`: see `giva_fuzz::harness::scan_diff`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| giva_fuzz::harness::scan_diff(data));
