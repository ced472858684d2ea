#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| dealport_core::fuzzing::trustless_request(data));
