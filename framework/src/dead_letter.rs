//! Dead-letter entries, and the built-in destination used when a config names none: the log.

use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use base64::Engine;
use serde_json::{Value, json};

use crate::component::{Delivery, Input, Sink};
use crate::error::ComponentError;
use crate::record::Record;

/// The JSON document written for a rejected record: why, where it was rejected, where it came
/// from, and its original payload (as text when it is UTF-8, base64 otherwise). `output` is the
/// value a sink refused, when the rejection happened at a sink.
pub fn entry(record: &Record, component: &str, reason: &str, output: Option<&Value>) -> Value {
    let mut doc = json!({
        "reason": reason,
        "component": component,
        "position": record.position,
        "partition_key": record.partition_key,
        "arrival_unix_ms": record.arrival.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
    });
    let raw = record.raw_bytes();
    match std::str::from_utf8(raw) {
        Ok(text) => doc["payload"] = Value::String(text.to_owned()),
        Err(_) => doc["payload_base64"] = Value::String(base64::engine::general_purpose::STANDARD.encode(raw)),
    }
    if let Some(output) = output {
        doc["output"] = output.clone();
    }
    doc
}

/// Writes dead-letter entries to the log as warnings (the default destination).
#[derive(Debug, Default)]
pub struct LogDeadLetter;

#[async_trait]
impl Sink for LogDeadLetter {
    async fn deliver(&self, batch: &[Input<'_>]) -> Result<Vec<Delivery>, ComponentError> {
        for input in batch {
            tracing::warn!(entry = %input.value, "dead-lettered record");
        }
        Ok(vec![Delivery::Delivered; batch.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Offset, Position};

    #[test]
    fn binary_payloads_are_base64() {
        let pos = Position { source: "s".into(), partition: "p".into(), offset: Offset::Index(7) };
        let rec = Record::new(vec![0xff, 0xfe], pos);
        let doc = entry(&rec, "decode", "not JSON", None);
        assert_eq!(doc["payload_base64"], "//4=");
        assert_eq!(doc["position"]["offset"], 7);
        assert!(doc.get("payload").is_none());
    }
}
