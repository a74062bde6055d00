//! Sinks for tributary: where outputs go.
//!
//! - [`console`]: `stdout` and `stderr`, JSON lines;
//! - [`file`]: appends JSON lines to a file;
//! - [`blackhole`]: encodes and discards (benchmarks, dry runs).
//!
//! Any sink can also be the `[dead_letter]` destination.

pub mod blackhole;
pub mod console;
pub mod file;
mod json_lines;
