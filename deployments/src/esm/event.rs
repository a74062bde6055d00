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

/// Lambda's limit on a synchronous invocation's payload (6 MB): the mapping never sends a bigger
/// event, whatever the batch size.
pub const MAX_EVENT_BYTES: usize = 6 * 1024 * 1024;

/// `{"Records":[` and `]}` around the entries.
const EVENT_OVERHEAD: usize = 14;

/// The event for one batch: `{"Records": [{"kinesis": {...}, "eventSource": "aws:kinesis", ...}]}`.
pub fn kinesis_event(stream: &StreamInfo, records: &[ShardRecord]) -> Value {
    let entries: Vec<Value> = records.iter().map(|r| entry(stream, r)).collect();
    json!({ "Records": entries })
}

/// A record's entry in the event.
fn entry(stream: &StreamInfo, r: &ShardRecord) -> Value {
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
}

/// The bytes a record's entry takes in the event (its JSON, without the comma between entries).
pub fn entry_bytes(stream: &StreamInfo, record: &ShardRecord) -> usize {
    serde_json::to_vec(&entry(stream, record)).map_or(0, |json| json.len())
}

/// How many of the next records (given by [`entry_bytes`], in order) make the next event: at most
/// `batch_size`, and only as many as keep it within [`MAX_EVENT_BYTES`], but always at least one.
pub fn fitting(entry_sizes: impl IntoIterator<Item = usize>, batch_size: usize) -> usize {
    let mut total = EVENT_OVERHEAD;
    let mut count = 0;
    for size in entry_sizes.into_iter().take(batch_size) {
        // Each entry after the first also takes a comma.
        total += size + usize::from(count > 0);
        if count > 0 && total > MAX_EVENT_BYTES {
            break;
        }
        count += 1;
    }
    count
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

    #[test]
    fn entry_sizes_add_up_to_the_event() {
        let stream = StreamInfo { arn: "arn:aws:kinesis:us-east-1:1:stream/s".into(), region: "us-east-1".into() };
        let records: Vec<ShardRecord> = (0..3)
            .map(|i| ShardRecord {
                shard_id: "shardId-000000000000".into(),
                sequence_number: format!("{i}"),
                partition_key: "k".into(),
                data: vec![b'x'; 10 * i],
                arrival_epoch_s: 1.5,
            })
            .collect();
        let sizes: Vec<usize> = records.iter().map(|r| entry_bytes(&stream, r)).collect();
        let event = serde_json::to_vec(&kinesis_event(&stream, &records)).unwrap();
        assert_eq!(event.len(), EVENT_OVERHEAD + sizes.iter().sum::<usize>() + 2);
        assert_eq!(fitting(sizes.iter().copied(), 3), 3);
        assert_eq!(fitting(sizes.iter().copied(), 2), 2);
    }

    #[test]
    fn events_stay_within_six_megabytes() {
        let mb = 1024 * 1024;
        // Five 1.2 MB entries fit (6.0 MB and four commas); a sixth would not.
        assert_eq!(fitting(vec![1_200_000; 12], 100), 5);
        // Exactly at the limit, with the braces and commas.
        let rest = MAX_EVENT_BYTES - EVENT_OVERHEAD - 1_000 - 1;
        assert_eq!(fitting([1_000, rest], 10), 2);
        assert_eq!(fitting([1_000, rest + 1], 10), 1);
        // One entry always goes, even alone over the limit (it cannot be split).
        assert_eq!(fitting([7 * mb, 1], 10), 1);
        assert_eq!(fitting(std::iter::empty(), 10), 0);
        // Small records: the batch size decides.
        assert_eq!(fitting(vec![500; 1000], 100), 100);
    }
}
