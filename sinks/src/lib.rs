//! Sinks for tributary: where outputs go.
//!
//! - [`console`]: `stdout` and `stderr`, JSON lines;
//! - [`file`]: appends JSON lines to a file;
//! - [`blackhole`]: encodes and discards (benchmarks, dry runs);
//! - [`json_lines`]: the JSON-lines writer behind the console and file sinks;
//! - [`kafka`] (feature `kafka`): produces to a Kafka topic (idempotent producer);
//! - [`kinesis`] (feature `kinesis`): PutRecords to a Kinesis data stream;
//! - [`parquet`] (feature `parquet`): the batch job's predictions, one Parquet file per input
//!   file, written atomically;
//! - [`s3`] (feature `s3`): one JSON-lines object per batch under a prefix;
//!
//! Any sink can also be the `[dead_letter]` destination.

pub mod blackhole;
pub mod console;
pub mod file;
pub mod json_lines;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "kinesis")]
pub mod kinesis;
#[cfg(feature = "parquet")]
pub mod parquet;
pub mod response;
#[cfg(feature = "s3")]
pub mod s3;
