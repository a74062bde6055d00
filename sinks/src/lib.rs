//! Sinks for tributary: where outputs go.
//!
//! - [`console`]: `stdout` and `stderr`, JSON lines;
//! - [`file`]: appends JSON lines to a file;
//! - [`blackhole`]: encodes and discards (benchmarks, dry runs);
//! - [`json_lines`]: the JSON-lines writer behind the console and file sinks;
//! - [`kinesis`] (feature `kinesis`): PutRecords to a Kinesis data stream;
//! - [`s3`] (feature `s3`): one JSON-lines object per batch under a prefix;
//! - [`template`]: partition-key templates such as `{prediction.ride_id}`.
//!
//! Any sink can also be the `[dead_letter]` destination.

pub mod blackhole;
pub mod console;
pub mod file;
pub mod json_lines;
#[cfg(feature = "kinesis")]
pub mod kinesis;
#[cfg(feature = "s3")]
pub mod s3;
pub mod template;
