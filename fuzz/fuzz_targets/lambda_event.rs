//! Fuzz target `lambda_event`: see `tributary_tests::fuzz::lambda_event`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tributary_tests::fuzz::lambda_event(data));
