#![no_main]
//! Fuzzes `appnet_hbone::fuzzing::wire_parsers`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| appnet_hbone::fuzzing::wire_parsers(data));
