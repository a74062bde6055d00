//! Fuzz target `template`: see `tributary_tests::fuzz::template`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tributary_tests::fuzz::template(data));
