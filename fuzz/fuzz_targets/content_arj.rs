#![no_main]
//! Fuzz target `content_arj`: see `giva_fuzz::harness::run`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    giva_fuzz::harness::run("content_arj", data);
});
