//! Kinesis events exactly as the AWS event source mapping sends them to a function.

use base64::Engine;
use serde_json::{Value, json};

/// One record read from a shard.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardRecord {
    /// The shard it came from.
    pub shard_id: String,
    /// Its sequence number.
    pub sequence_number: String,
    /// Its partition key.
    pub partition_key: String,
    /// Its data.
    pub data: Vec<u8>,
    /// Seconds since the epoch when Kinesis received it.
    pub arrival_epoch_s: f64,
}

/// Where the records come from, as the event names it.
#[derive(Clone, Debug)]
pub struct StreamInfo {
    /// The stream's ARN.
    pub arn: String,
    /// The region.
    pub region: String,
}

/// The event for one batch: `{"Records": [{"kinesis": {...}, "eventSource": "aws:kinesis", ...}]}`.
pub fn kinesis_event(stream: &StreamInfo, records: &[ShardRecord]) -> Value {
    let entries: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key,
                    "sequenceNumber": r.sequence_number,
                    "data": base64::engine::general_purpose::STANDARD.encode(&r.data),
                    "approximateArrivalTimestamp": (r.arrival_epoch_s * 1000.0).round() / 1000.0,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{}:{}", r.shard_id, r.sequence_number),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::000000000000:role/tributary-esm",
                "awsRegion": stream.region,
                "eventSourceARN": stream.arn,
            })
        })
        .collect();
    json!({ "Records": entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_seeds_event_shape() {
        let stream =
            StreamInfo { arn: "arn:aws:kinesis:eu-west-2:1:stream/ride_events".into(), region: "eu-west-2".into() };
        let record = ShardRecord {
            shard_id: "shardId-000000000000".into(),
            sequence_number: "4966".into(),
            partition_key: "1".into(),
            data: b"{\"ride_id\": 1}".to_vec(),
            arrival_epoch_s: 1_750_925_642.262_4,
        };
        let event = kinesis_event(&stream, &[record]);
        let entry = &event["Records"][0];
        assert_eq!(entry["eventID"], "shardId-000000000000:4966");
        assert_eq!(entry["kinesis"]["data"], "eyJyaWRlX2lkIjogMX0=");
        assert_eq!(entry["kinesis"]["approximateArrivalTimestamp"], 1_750_925_642.262);
        // The framework's own decoder reads it back.
        let records = tributary_sources::kinesis_event::records(&"s".into(), &event, "x");
        assert_eq!(records[0].raw_bytes().as_ref(), b"{\"ride_id\": 1}");
        assert_eq!(&*records[0].position.partition, "ride_events/shardId-000000000000");
    }
}
