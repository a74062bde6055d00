//! The Kinesis event document AWS Lambda receives from a Kinesis trigger, as in the seeds:
//! `{"Records": [{"kinesis": {"partitionKey", "sequenceNumber", "data" (base64),
//! "approximateArrivalTimestamp"}, "eventID": "shardId-...:seq", "eventSourceARN": ...}]}`.
//!
//! Each entry becomes a [`Record`] whose payload is the base64-decoded `data`; an entry that is
//! malformed or whose `data` is not base64 becomes an invalid record, dead-lettered with the reason.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use serde_json::Value;
use tributary_framework::{Offset, Position, Record};

/// Whether a JSON value looks like a Kinesis event document.
pub fn is_event_document(value: &Value) -> bool {
    value.get("Records").is_some_and(Value::is_array)
}

/// Decodes every entry of a Kinesis event document. `fallback_partition` and the entry's index
/// name the position of entries that lack `eventID`.
pub fn records(source: &Arc<str>, document: &Value, fallback_partition: &str) -> Vec<Record> {
    let Some(entries) = document.get("Records").and_then(Value::as_array) else {
        return Vec::new();
    };
    entries.iter().enumerate().map(|(index, entry)| record(source, entry, fallback_partition, index)).collect()
}

fn record(source: &Arc<str>, entry: &Value, fallback_partition: &str, index: usize) -> Record {
    let kinesis = entry.get("kinesis");
    let field = |name: &str| kinesis.and_then(|k| k.get(name)).and_then(Value::as_str);
    let (partition, offset) = position_parts(entry, field("sequenceNumber"), fallback_partition, index);
    let position = Position { source: source.clone(), partition, offset };
    let raw = || Bytes::from(serde_json::to_vec(entry).unwrap_or_default());
    let record = match field("data") {
        None => Record::invalid(raw(), "Kinesis record has no kinesis.data string", position),
        Some(data) => match base64::engine::general_purpose::STANDARD.decode(data.trim()) {
            Ok(bytes) => Record::new(bytes, position),
            Err(e) => Record::invalid(
                Bytes::copy_from_slice(data.as_bytes()),
                format!("kinesis.data is not valid base64: {e}"),
                position,
            ),
        },
    };
    let arrival = kinesis
        .and_then(|k| k.get("approximateArrivalTimestamp"))
        .and_then(Value::as_f64)
        .filter(|t| t.is_finite() && *t >= 0.0)
        .map_or_else(SystemTime::now, |t| UNIX_EPOCH + Duration::from_secs_f64(t));
    record.with_partition_key(field("partitionKey").map(str::to_owned)).with_arrival(arrival)
}

/// Partition: `<stream>/<shardId>` from `eventSourceARN` and `eventID`; offset: the sequence number.
fn position_parts(entry: &Value, sequence: Option<&str>, fallback_partition: &str, index: usize) -> (Arc<str>, Offset) {
    let event_id = entry.get("eventID").and_then(Value::as_str);
    let shard = event_id.and_then(|id| id.split_once(':')).map(|(shard, _)| shard);
    let stream = entry
        .get("eventSourceARN")
        .and_then(Value::as_str)
        .and_then(|arn| arn.rsplit_once(":stream/"))
        .map(|(_, name)| name);
    let partition: Arc<str> = match (stream, shard) {
        (Some(stream), Some(shard)) => format!("{stream}/{shard}").into(),
        (None, Some(shard)) => shard.into(),
        _ => fallback_partition.into(),
    };
    let offset = match sequence {
        Some(seq) => Offset::Sequence(seq.into()),
        None => Offset::Index(index as u64),
    };
    (partition, offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_framework::Payload;

    #[test]
    fn decodes_the_seed_shape() {
        let doc: Value = serde_json::from_str(
            r#"{"Records":[{"kinesis":{"partitionKey":"1","sequenceNumber":"4966","data":"eyJhIjogMX0=","approximateArrivalTimestamp":1750925642.262},
            "eventID":"shardId-000000000000:4966","eventSourceARN":"arn:aws:kinesis:eu-west-2:1:stream/ride-events"},
            {"kinesis":{"data":"%%%"}}]}"#,
        )
        .unwrap();
        let recs = records(&Arc::from("s"), &doc, "file");
        assert_eq!(recs.len(), 2);
        assert!(matches!(&recs[0].payload, Payload::Bytes(b) if &b[..] == br#"{"a": 1}"#));
        assert_eq!(&*recs[0].position.partition, "ride-events/shardId-000000000000");
        assert_eq!(recs[0].position.offset, Offset::Sequence("4966".into()));
        assert_eq!(recs[0].partition_key.as_deref(), Some("1"));
        assert!(matches!(&recs[1].payload, Payload::Invalid { reason, .. } if reason.contains("base64")));
        assert_eq!(&*recs[1].position.partition, "file");
    }
}
