#![no_main]
//! Fuzzes `appnet_policy::fuzzing::route_match`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| appnet_policy::fuzzing::route_match(data));
