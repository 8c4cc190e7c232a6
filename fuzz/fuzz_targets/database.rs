#![no_main]
//! Fuzz target `database`: see `giva_fuzz::harness::database`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| giva_fuzz::harness::database(data));
