#![no_main]
//! Fuzz target `appliance_session`: see `giva_fuzz::harness::appliance_session`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| giva_fuzz::harness::appliance_session(data));
