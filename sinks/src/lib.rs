//! Sinks for tributary: where outputs go.
//!
//! - [`console`]: `stdout` and `stderr`, JSON lines;
//! - [`file`]: appends JSON lines to a file;
//! - [`blackhole`]: encodes and discards (benchmarks, dry runs);
//! - [`json_lines`]: the JSON-lines writer behind the console and file sinks.
//!
//! Any sink can also be the `[dead_letter]` destination.

pub mod blackhole;
pub mod console;
pub mod file;
pub mod json_lines;
