#![no_main]
//! Fuzz target `proto_decode`: see `giva_fuzz::harness::proto_decode`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| giva_fuzz::harness::proto_decode(data));
