//! Kinesis events exactly as the AWS event source mapping sends them to a function.

use std::time::SystemTime;

use aws_sdk_kinesis::primitives::{DateTime, DateTimeFormat};
use base64::Engine;
use serde_json::{Value, json};

use super::batch::Answer;

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

/// Why the mapping gave up on a batch: the `condition` of its invocation record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discarded {
    /// `--maximum-retry-attempts` retries failed.
    RetryAttemptsExhausted,
    /// The records are older than `--maximum-record-age-s`.
    RecordAgeExceeded,
}

/// What the on-failure destination receives when the mapping gives up on `records`, in the shape
/// AWS sends to an SQS queue or SNS topic: `requestContext` (request id, function ARN, condition,
/// approximate invoke count), `responseContext` (when the function answered), `version`,
/// `timestamp`, and `KinesisBatchInfo` (shard, first and last sequence numbers and arrival times,
/// batch size, stream ARN). As on AWS, the records' data is not included.
pub fn invocation_record(
    stream: &StreamInfo,
    function_arn: &str,
    records: &[ShardRecord],
    condition: Discarded,
    invocations: i64,
    last_answer: Option<&Answer>,
    now: SystemTime,
) -> Value {
    let (Some(first), Some(last)) = (records.first(), records.last()) else { return Value::Null };
    let mut record = json!({
        "requestContext": {
            "requestId": request_id(),
            "functionArn": function_arn,
            "condition": format!("{condition:?}"),
            "approximateInvokeCount": invocations,
        },
        "version": "1.0",
        "timestamp": rfc3339_millis(now.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())),
        "KinesisBatchInfo": {
            "shardId": first.shard_id,
            "startSequenceNumber": first.sequence_number,
            "endSequenceNumber": last.sequence_number,
            "approximateArrivalOfFirstRecord": rfc3339_millis(first.arrival_epoch_s),
            "approximateArrivalOfLastRecord": rfc3339_millis(last.arrival_epoch_s),
            "batchSize": records.len(),
            "streamArn": stream.arn,
        }
    });
    // What the function last answered; nothing when no answer came back.
    let response = match last_answer {
        Some(Answer::FunctionError(_)) => {
            Some(json!({"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}))
        }
        Some(Answer::Returned { .. }) => Some(json!({"statusCode": 200, "executedVersion": "$LATEST"})),
        // (An unanswered call is resent, never the last answer of a discarded batch.)
        Some(Answer::Unanswered(_)) | None => None,
    };
    if let Some(response) = response {
        record["responseContext"] = response;
    }
    record
}

/// The function's ARN, as the mapping names it: the name from the invoke URL
/// (`.../functions/NAME/invocations`), the stream's region and account.
pub fn function_arn(stream: &StreamInfo, invoke_url: &str) -> String {
    let name = invoke_url.split("/functions/").nth(1).and_then(|rest| rest.split('/').next()).unwrap_or("function");
    let account = stream.arn.split(':').nth(4).unwrap_or("000000000000");
    format!("arn:aws:lambda:{}:{account}:function:{name}", stream.region)
}

/// An RFC 3339 time in UTC with milliseconds, as AWS writes them (`2019-11-14T00:38:04.835Z`).
fn rfc3339_millis(epoch_s: f64) -> String {
    let millis = (epoch_s * 1000.0).round() as i64;
    let seconds = DateTime::from_secs(millis.div_euclid(1000)).fmt(DateTimeFormat::DateTime).unwrap_or_default();
    format!("{}.{:03}Z", seconds.trim_end_matches('Z'), millis.rem_euclid(1000))
}

/// A random version-4 UUID (from the standard library's randomly keyed hasher).
fn request_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let random = || std::collections::hash_map::RandomState::new().build_hasher().finish();
    let random = (u128::from(random()) << 64) | u128::from(random());
    // Version 4 (random) and the RFC 4122 variant.
    let bits = (random & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
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

    #[test]
    fn the_on_failure_record_has_aws_shape() {
        let stream = StreamInfo {
            arn: "arn:aws:kinesis:eu-west-2:123456789012:stream/rides".into(),
            region: "eu-west-2".into(),
        };
        let record = |sequence: &str, arrival: f64| ShardRecord {
            shard_id: "shardId-000000000001".into(),
            sequence_number: sequence.into(),
            partition_key: "k".into(),
            data: b"{}".to_vec(),
            arrival_epoch_s: arrival,
        };
        let records = [record("10", 1_750_925_642.835), record("20", 1_750_925_643.5)];
        let url = "http://127.0.0.1:9000/2015-03-31/functions/predict/invocations";
        let arn = function_arn(&stream, url);
        assert_eq!(arn, "arn:aws:lambda:eu-west-2:123456789012:function:predict");
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_750_925_700);
        let error = Answer::FunctionError("boom".into());
        let info = invocation_record(&stream, &arn, &records, Discarded::RetryAttemptsExhausted, 4, Some(&error), now);
        assert_eq!(info["requestContext"]["functionArn"], arn.as_str());
        assert_eq!(info["requestContext"]["condition"], "RetryAttemptsExhausted");
        assert_eq!(info["requestContext"]["approximateInvokeCount"], 4);
        let id = info["requestContext"]["requestId"].as_str().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!((&id[14..15], &id[8..9], &id[23..24]), ("4", "-", "-"), "{id}");
        assert!("89ab".contains(&id[19..20]), "{id}");
        assert_eq!(
            info["responseContext"],
            json!({"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"})
        );
        assert_eq!(info["version"], "1.0");
        assert_eq!(info["timestamp"], "2025-06-26T08:15:00.000Z");
        let batch = &info["KinesisBatchInfo"];
        assert_eq!(batch["shardId"], "shardId-000000000001");
        assert_eq!((&batch["startSequenceNumber"], &batch["endSequenceNumber"]), (&json!("10"), &json!("20")));
        assert_eq!(batch["approximateArrivalOfFirstRecord"], "2025-06-26T08:14:02.835Z");
        assert_eq!(batch["approximateArrivalOfLastRecord"], "2025-06-26T08:14:03.500Z");
        assert_eq!(batch["batchSize"], 2);
        assert_eq!(batch["streamArn"], stream.arn.as_str());
        // Records too old to send were never answered; two ids differ.
        let aged = invocation_record(&stream, &arn, &records, Discarded::RecordAgeExceeded, 0, None, now);
        assert_eq!(aged["requestContext"]["condition"], "RecordAgeExceeded");
        assert!(aged.get("responseContext").is_none());
        let partial = Answer::Returned { failures: vec![Some("20".into())] };
        let returned =
            invocation_record(&stream, &arn, &records, Discarded::RetryAttemptsExhausted, 1, Some(&partial), now);
        assert_eq!(returned["responseContext"], json!({"statusCode": 200, "executedVersion": "$LATEST"}));
        assert_ne!(aged["requestContext"]["requestId"], info["requestContext"]["requestId"]);
    }
}
