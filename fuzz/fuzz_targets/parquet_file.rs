//! Fuzz target `parquet_file`: see `tributary_tests::fuzz::parquet_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tributary_tests::fuzz::parquet_file(data));
