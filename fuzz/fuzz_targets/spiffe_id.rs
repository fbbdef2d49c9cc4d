#![no_main]
//! Fuzzes `appnet_identity::fuzzing::spiffe_id`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| appnet_identity::fuzzing::spiffe_id(data));
