//! Sinks for tributary: where outputs go.
//!
//! - [`console`]: `stdout` and `stderr`, JSON lines;
//! - [`file`]: appends JSON lines to a file.
//!
//! Any sink can also be the `[dead_letter]` destination.

pub mod console;
pub mod file;
mod json_lines;
