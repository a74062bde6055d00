//! Fuzz target `http_request`: see `tributary_tests::fuzz::http_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tributary_tests::fuzz::http_request(data));
