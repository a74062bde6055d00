//! Sources for tributary: where records come from.
//!
//! - [`file`]: JSON lines, or Lambda Kinesis test-event documents, from a file;
//! - [`stdin`]: the same formats from standard input;
//! - [`generator`]: synthetic NYC ride events, seeded and rate-limited;
//! - [`lambda`]: the placeholder for records that arrive with Lambda invocations;
//! - [`kafka`] (feature `kafka`): a Kafka consumer-group member, offsets stored after delivery;
//! - [`kinesis`] (feature `kinesis`): a Kinesis stream consumer with shard discovery,
//!   checkpoints and resharding;
//! - [`parquet`] (feature `parquet`): Parquet files read as columns by the batch job, and
//!   generated NYC TLC trip records ([`parquet::tlc`]);
//! - [`kinesis_event`]: decoding of the `{"Records": [...]}` documents that AWS Lambda receives
//!   from a Kinesis trigger (shared by the file and stdin sources and the Lambda adapter).

pub mod document;
pub mod file;
pub mod generator;
pub mod http;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "kinesis")]
pub mod kinesis;
pub mod kinesis_event;
pub mod lambda;
#[cfg(feature = "parquet")]
pub mod parquet;
pub mod stdin;
