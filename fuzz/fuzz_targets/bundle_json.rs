#![no_main]
//! Fuzzes `appnet_identity::fuzzing::bundle_json`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| appnet_identity::fuzzing::bundle_json(data));
