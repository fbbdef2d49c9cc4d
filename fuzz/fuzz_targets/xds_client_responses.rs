#![no_main]
//! Fuzzes `appnet_xds::fuzzing_protocol::client_responses`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| appnet_xds::fuzzing_protocol::client_responses(data));
