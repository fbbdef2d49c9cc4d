#![no_main]
//! Fuzzes `appnet_xds::fuzzing_protocol::server_requests`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| appnet_xds::fuzzing_protocol::server_requests(data));
