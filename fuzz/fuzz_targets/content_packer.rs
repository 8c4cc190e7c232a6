#![no_main]
//! Fuzz target `content_packer`: see `giva_fuzz::harness::run`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    giva_fuzz::harness::run("content_packer", data);
});
