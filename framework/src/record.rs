//! Records as sources produce them, and where they came from.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Where a record sits in its source: enough to resume after it, and to tell a user which
/// input a dead-lettered record was.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// Id of the source component that read the record.
    pub source: Arc<str>,
    /// Shard, partition or file the record belongs to; ordering holds within one partition.
    pub partition: Arc<str>,
    /// The record's place within its partition.
    pub offset: Offset,
}

/// A record's place within a partition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Offset {
    /// A numeric offset: a line number, a Kafka offset, a generator counter.
    Index(u64),
    /// An opaque sequence: a Kinesis sequence number (up to 128 bits, kept as its decimal text).
    Sequence(Arc<str>),
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Offset::Index(i) => write!(f, "{i}"),
            Offset::Sequence(s) => f.write_str(s),
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.source, self.partition, self.offset)
    }
}

/// The bytes a source read, or why it could not turn them into a payload (for example invalid
/// base64 in a Kinesis event). An invalid payload is dead-lettered with its reason, never dropped.
#[derive(Clone, Debug)]
pub enum Payload {
    /// The record's payload, not yet decoded.
    Bytes(Bytes),
    /// The source could not extract a payload; `raw` is what it had.
    Invalid {
        /// The original bytes, kept for the dead-letter entry.
        raw: Bytes,
        /// Why the payload is unusable.
        reason: String,
    },
}

/// One record read from a source.
#[derive(Clone, Debug)]
pub struct Record {
    /// The payload, decoded later, once, by the runtime.
    pub payload: Payload,
    /// The partition key the producer gave, when the source has one.
    pub partition_key: Option<String>,
    /// Where the record came from.
    pub position: Position,
    /// When the source (or the stream) received it; bounds retries by record age.
    pub arrival: SystemTime,
}

impl Record {
    /// A record with a usable payload that arrived now.
    pub fn new(payload: impl Into<Bytes>, position: Position) -> Self {
        Record { payload: Payload::Bytes(payload.into()), partition_key: None, position, arrival: SystemTime::now() }
    }

    /// A record whose payload the source could not extract.
    pub fn invalid(raw: impl Into<Bytes>, reason: impl Into<String>, position: Position) -> Self {
        Record {
            payload: Payload::Invalid { raw: raw.into(), reason: reason.into() },
            partition_key: None,
            position,
            arrival: SystemTime::now(),
        }
    }

    /// Sets the partition key.
    #[must_use]
    pub fn with_partition_key(mut self, key: Option<String>) -> Self {
        self.partition_key = key;
        self
    }

    /// Sets the arrival time.
    #[must_use]
    pub fn with_arrival(mut self, arrival: SystemTime) -> Self {
        self.arrival = arrival;
        self
    }

    /// The original bytes, valid or not.
    pub fn raw_bytes(&self) -> &Bytes {
        match &self.payload {
            Payload::Bytes(b) => b,
            Payload::Invalid { raw, .. } => raw,
        }
    }
}
