#![no_main]
//! Fuzzes `appnet_policy::fuzzing::authz_eval`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| appnet_policy::fuzzing::authz_eval(data));
