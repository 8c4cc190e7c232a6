#![no_main]
//! Fuzz target `sig_text`: see `giva_fuzz::harness::sig_text`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| giva_fuzz::harness::sig_text(data));
