#![no_main]
//! Fuzzes `appnet_identity::fuzzing::verify_chain`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| appnet_identity::fuzzing::verify_chain(data));
