//! Fuzz target `kinesis_event`: see `tributary_tests::fuzz::kinesis_event`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tributary_tests::fuzz::kinesis_event(data));
