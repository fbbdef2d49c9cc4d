#![no_main]
//! Fuzzes `appnet_identity::fuzzing::csr`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| appnet_identity::fuzzing::csr(data));
