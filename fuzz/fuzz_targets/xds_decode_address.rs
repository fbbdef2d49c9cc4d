#![no_main]
//! Fuzzes `appnet_xds::fuzzing::decode_address`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| appnet_xds::fuzzing::decode_address(data));
