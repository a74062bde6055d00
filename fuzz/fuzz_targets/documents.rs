//! Fuzz target `documents`: see `tributary_tests::fuzz::documents`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tributary_tests::fuzz::documents(data));
