#![no_main]
//! Fuzz target `cvd`: see `giva_fuzz::harness::cvd`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| giva_fuzz::harness::cvd(data));
