//! Fuzz target `ride_event`: see `tributary_tests::fuzz::ride_event`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tributary_tests::fuzz::ride_event(data));
