//! The Kinesis event document AWS Lambda receives from a Kinesis trigger, as in the seeds:
//! `{"Records": [{"kinesis": {"partitionKey", "sequenceNumber", "data" (base64),
//! "approximateArrivalTimestamp"}, "eventID": "shardId-...:seq", "eventSourceARN": ...}]}`.
//!
//! Each entry becomes a [`Record`] whose payload is the base64-decoded `data`; an entry that is
//! malformed or whose `data` is not base64 becomes an invalid record, dead-lettered with the reason.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
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
    // The entries of one event normally share their stream and shard: one partition name for all.
    let mut partitions = Partitions::default();
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| record(source, entry, partitions.of(entry, fallback_partition), index))
        .collect()
}

fn record(source: &Arc<str>, entry: &Value, partition: Arc<str>, index: usize) -> Record {
    let kinesis = entry.get("kinesis");
    let field = |name: &str| kinesis.and_then(|k| k.get(name)).and_then(Value::as_str);
    let fields = Fields {
        data: field("data"),
        sequence_number: field("sequenceNumber"),
        partition_key: field("partitionKey"),
        arrival: kinesis.and_then(|k| k.get("approximateArrivalTimestamp")).and_then(Value::as_f64),
    };
    fields.record(source, partition, index, || Bytes::from(serde_json::to_vec(entry).unwrap_or_default()))
}

/// What makes an entry's record, each field as a string when it is one (a number when it is
/// one, for the arrival), however the entry was read.
struct Fields<'a> {
    data: Option<&'a str>,
    sequence_number: Option<&'a str>,
    partition_key: Option<&'a str>,
    arrival: Option<f64>,
}

impl Fields<'_> {
    /// The record; `raw` gives the entry's bytes for the dead letter when it has no `data`.
    fn record(self, source: &Arc<str>, partition: Arc<str>, index: usize, raw: impl FnOnce() -> Bytes) -> Record {
        let offset = match self.sequence_number {
            Some(seq) => Offset::Sequence(seq.into()),
            None => Offset::Index(index as u64),
        };
        let position = Position { source: source.clone(), partition, offset };
        let record = match self.data {
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
        let arrival = self.arrival.map_or_else(SystemTime::now, arrival_at);
        record.with_partition_key(self.partition_key.map(str::to_owned)).with_arrival(arrival)
    }
}

/// A visitor's methods for JSON scalars: each becomes its `serde_json::Value`, wrapped by `$wrap`
/// (the two visitors below keep anything but their one special shape as JSON).
macro_rules! scalars_as_json {
    ($wrap:expr) => {
        fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
            Ok($wrap(Value::from(v)))
        }

        fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
            Ok($wrap(Value::from(v)))
        }

        fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
            Ok($wrap(Value::from(v)))
        }

        fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
            Ok($wrap(Value::from(v)))
        }

        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok($wrap(Value::from(v)))
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($wrap(Value::Null))
        }
    };
}

/// A Lambda invocation's payload, read so that a Kinesis event never exists whole as JSON
/// values: each entry of `Records` becomes a [`Record`] as soon as it is read (a 10,000-record
/// event held as `serde_json::Value`s takes about three times its 6 MB of text). Any other event
/// is kept as JSON.
#[derive(Debug)]
pub enum Invocation {
    /// A Kinesis event document's records (what [`records`] makes of it), their source named
    /// `lambda` and their partition falling back to `lambda`, as the function's are.
    Kinesis(Vec<Record>),
    /// Any other event (a direct invocation, an API Gateway request, an S3 notification's JSON
    /// when read as a `Value`).
    Other(Value),
}

impl<'de> Deserialize<'de> for Invocation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(InvocationVisitor)
    }
}

struct InvocationVisitor;

impl<'de> Visitor<'de> for InvocationVisitor {
    type Value = Invocation;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON event")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Invocation, A::Error> {
        let mut others = Map::new();
        let mut records = None;
        while let Some(key) = map.next_key::<String>()? {
            // A repeated key counts once, the last time, as in a `serde_json::Value`.
            if key == "Records" {
                match map.next_value_seed(Entries)? {
                    Ok(read) => {
                        others.remove(&key);
                        records = Some(read);
                    }
                    Err(value) => {
                        records = None;
                        others.insert(key, value);
                    }
                }
            } else {
                others.insert(key, map.next_value()?);
            }
        }
        Ok(records.map_or(Invocation::Other(Value::Object(others)), Invocation::Kinesis))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Invocation, A::Error> {
        Value::deserialize(SeqAccessDeserializer::new(seq)).map(Invocation::Other)
    }

    scalars_as_json!(Invocation::Other);
}

/// The value of `Records`: an array's entries made into records one at a time, or, for any
/// other value, that value (the event is then not a Kinesis event document).
struct Entries;

impl<'de> DeserializeSeed<'de> for Entries {
    type Value = Result<Vec<Record>, Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Entries {
    type Value = Result<Vec<Record>, Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let source: Arc<str> = Arc::from("lambda");
        let mut partitions = Partitions::default();
        let mut records = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(entry) = seq.next_element::<Box<RawValue>>()? {
            let index = records.len();
            let read = match serde_json::from_str::<MapOnly<Entry<'_>>>(entry.get()) {
                Ok(MapOnly(entry)) => {
                    let partition =
                        partitions.name(entry.event_id.as_deref(), entry.event_source_arn.as_deref(), "lambda");
                    let MapOnly(kinesis) = &entry.kinesis;
                    // `data` is always there in this shape: `raw` is never asked for.
                    kinesis.fields().record(&source, partition, index, Bytes::new)
                }
                // Anything but the usual shape takes the general path, as [`records`] reads it.
                Err(_) => {
                    let entry: Value = serde_json::from_str(entry.get()).map_err(A::Error::custom)?;
                    let partition = partitions.of(&entry, "lambda");
                    record(&source, &entry, partition, index)
                }
            };
            records.push(read);
        }
        Ok(Ok(records))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(MapAccessDeserializer::new(map)).map(Err)
    }

    scalars_as_json!(Err);
}

/// The time `epoch_seconds` after the Unix epoch, as Kinesis gives a record's arrival. A
/// timestamp no clock can hold (negative, 1e300) is the event's mistake, not a reason to panic:
/// the record counts as arriving now.
pub fn arrival_at(epoch_seconds: f64) -> SystemTime {
    Duration::try_from_secs_f64(epoch_seconds)
        .ok()
        .and_then(|since_epoch| UNIX_EPOCH.checked_add(since_epoch))
        .unwrap_or_else(SystemTime::now)
}

/// Partition names: `<stream>/<shardId>` from `eventSourceARN` and `eventID`, the shard alone
/// without the ARN, or the fallback without either; the last one made is reused while entries
/// name the same stream and shard.
#[derive(Default)]
struct Partitions {
    last: Option<(String, String, Arc<str>)>,
}

impl Partitions {
    fn of(&mut self, entry: &Value, fallback: &str) -> Arc<str> {
        let shard = entry.get("eventID").and_then(Value::as_str);
        self.name(shard, entry.get("eventSourceARN").and_then(Value::as_str), fallback)
    }

    /// The name for an entry whose `eventID` and `eventSourceARN` are these strings.
    fn name(&mut self, event_id: Option<&str>, source_arn: Option<&str>, fallback: &str) -> Arc<str> {
        let shard = event_id.and_then(|id| id.split_once(':')).map(|(s, _)| s);
        let stream = source_arn.and_then(|arn| arn.rsplit_once(":stream/")).map(|(_, name)| name);
        let (Some(shard), stream) = (shard, stream) else {
            return fallback.into();
        };
        let stream = stream.unwrap_or_default();
        if let Some((last_stream, last_shard, name)) = &self.last
            && last_stream == stream
            && last_shard == shard
        {
            return name.clone();
        }
        let name: Arc<str> = if stream.is_empty() { shard.into() } else { format!("{stream}/{shard}").into() };
        self.last = Some((stream.to_owned(), shard.to_owned(), name.clone()));
        name
    }
}

/// An entry of the usual shape, read without a `serde_json::Value` (as `MapOnly<Entry>`): an
/// object whose `kinesis` is an object with a string `data`, whose other fields used are strings
/// (or absent or null), each key once. Anything else fails to read as one and takes the general
/// path; on the entries it reads, the record is the one [`record`] makes.
#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    kinesis: MapOnly<Kinesis<'a>>,
    #[serde(rename = "eventID", borrow, default)]
    event_id: Option<Cow<'a, str>>,
    #[serde(rename = "eventSourceARN", borrow, default)]
    event_source_arn: Option<Cow<'a, str>>,
}

/// `kinesis`'s fields.
#[derive(Deserialize)]
struct Kinesis<'a> {
    #[serde(borrow)]
    data: Cow<'a, str>,
    #[serde(rename = "partitionKey", borrow, default)]
    partition_key: Option<Cow<'a, str>>,
    #[serde(rename = "sequenceNumber", borrow, default)]
    sequence_number: Option<Cow<'a, str>>,
    #[serde(rename = "approximateArrivalTimestamp", default)]
    arrival: Option<f64>,
}

/// `T` read from a JSON object only: serde's derived structs also read an array (their fields
/// in order), which the general path would not take for an object.
struct MapOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Object<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Object<T> {
            type Value = T;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        deserializer.deserialize_map(Object(std::marker::PhantomData)).map(MapOnly)
    }
}

impl Kinesis<'_> {
    fn fields(&self) -> Fields<'_> {
        Fields {
            data: Some(&self.data),
            sequence_number: self.sequence_number.as_deref(),
            partition_key: self.partition_key.as_deref(),
            arrival: self.arrival,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
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

    /// Regression: `approximateArrivalTimestamp: 1e300` panicked in `Duration::from_secs_f64`
    /// (issue 19), taking down the file and stdin sources and the Lambda invocation.
    #[test]
    fn arrival_timestamp_out_of_range_does_not_panic() {
        for t in ["1e300", "-5", "1.8446744073709552e19", "3.0e10"] {
            let doc: Value = serde_json::from_str(&format!(
                r#"{{"Records":[{{"kinesis":{{"data":"eyJhIjogMX0=","approximateArrivalTimestamp":{t}}},"eventID":"shardId-0:1"}}]}}"#
            ))
            .unwrap();
            let recs = records(&Arc::from("s"), &doc, "file");
            assert_eq!(recs.len(), 1, "{t}");
            assert!(matches!(&recs[0].payload, Payload::Bytes(_)), "{t}");
        }
    }

    #[test]
    fn an_invocation_read_entry_by_entry_gives_what_the_event_as_json_gives() {
        let text = r#"{"Records":[{"kinesis":{"partitionKey":"1","sequenceNumber":"4966","data":"eyJhIjogMX0=","approximateArrivalTimestamp":1750925642.262},
            "eventID":"shardId-000000000000:4966","eventSourceARN":"arn:aws:kinesis:eu-west-2:1:stream/ride-events"},
            {"kinesis":{"data":"%%%"}}, 7], "other": {"x": 1}}"#;
        let Invocation::Kinesis(read) = serde_json::from_str::<Invocation>(text).unwrap() else {
            panic!("not Kinesis")
        };
        let whole = records(&Arc::from("lambda"), &serde_json::from_str(text).unwrap(), "lambda");
        let show = |r: &Record| format!("{:?} {:?} {:?} {:?}", r.payload, r.position, r.partition_key, r.arrival);
        assert_eq!(read.len(), 3);
        // Arrival is "now" for entries without a timestamp: compare those without it.
        assert_eq!(show(&read[0]), show(&whole[0]));
        for (a, b) in read.iter().zip(&whole).skip(1) {
            assert_eq!(format!("{:?} {:?}", a.payload, a.position), format!("{:?} {:?}", b.payload, b.position));
        }
        let twice = r#"{"Records": [{"kinesis": {"data": "e30="}}], "Records": 5}"#;
        for other in
            [r#"{"Records": {"s3": 1}, "a": [1]}"#, r#"{"ride_id": 1}"#, "[1, 2]", "3", r#""x""#, "null", twice]
        {
            let Invocation::Other(value) = serde_json::from_str::<Invocation>(other).unwrap() else {
                panic!("{other} read as Kinesis")
            };
            assert_eq!(value, serde_json::from_str::<Value>(other).unwrap(), "{other}");
        }
    }

    /// The typed reading of usual entries must give the records the general path gives, on the
    /// shapes it reads and on those it hands over (an array where an object is expected, a key
    /// twice, a field of another type, escapes in a string, an integer timestamp, nulls).
    #[test]
    fn entries_read_typed_give_the_records_of_the_general_path() {
        let entries = [
            r#"{"kinesis":{"partitionKey":"k","sequenceNumber":"1","data":"eyJhIjogMX0=","approximateArrivalTimestamp":1750925642},"eventID":"shardId-0:1","eventSourceARN":"arn:aws:kinesis:us-east-1:1:stream/s"}"#,
            r#"{"kinesis":{"data":"eyJhIjog\u004dX0=","sequenceNumber":"2","approximateArrivalTimestamp":1.5},"eventID":"shardId-0:2"}"#,
            r#"{"kinesis":{"data":"e30=","data":"%%%","sequenceNumber":"3","approximateArrivalTimestamp":1}}"#,
            r#"{"kinesis":["e30="],"eventID":"shardId-0:4"}"#,
            r#"[{"data":"e30="}]"#,
            r#"{"kinesis":{"data":"e30=","sequenceNumber":6,"approximateArrivalTimestamp":1}}"#,
            r#"{"kinesis":{"data":null,"sequenceNumber":"7","approximateArrivalTimestamp":1}}"#,
            r#"{"kinesis":{"data":"e30=","partitionKey":null,"sequenceNumber":null,"approximateArrivalTimestamp":"1"},"eventID":null}"#,
            r#"{"kinesis":null,"eventID":"shardId-0:9"}"#,
            r#"{"kinesis":{"data":" e30= ","sequenceNumber":"10","approximateArrivalTimestamp":1e300},"eventSourceARN":7}"#,
            r#"{"kinesis":{"data":"e30=","sequenceNumber":"11","approximateArrivalTimestamp":1},"eventID":"shardId-0:11","eventID":"shardId-9:11"}"#,
        ];
        let text = format!(r#"{{"Records":[{}]}}"#, entries.join(","));
        let Invocation::Kinesis(read) = serde_json::from_str::<Invocation>(&text).unwrap() else {
            panic!("not Kinesis")
        };
        let whole = records(&Arc::from("lambda"), &serde_json::from_str(&text).unwrap(), "lambda");
        assert_eq!(read.len(), entries.len());
        for ((a, b), entry) in read.iter().zip(&whole).zip(entries) {
            let show = |r: &Record| format!("{:?} {:?} {:?}", r.payload, r.position, r.partition_key);
            assert_eq!(show(a), show(b), "{entry}");
            // Arrival is "now" where the entry gives none it can use; all those given are long past.
            let past = SystemTime::now() - Duration::from_secs(86_400);
            if b.arrival < past {
                assert_eq!(a.arrival, b.arrival, "{entry}");
            } else {
                assert!(a.arrival >= past, "{entry}");
            }
        }
    }

    #[test]
    fn each_entry_keeps_its_own_stream_and_shard() {
        let entry = |stream: &str, shard: &str| {
            json!({"kinesis": {"data": "e30=", "sequenceNumber": "1"}, "eventID": format!("{shard}:1"),
                   "eventSourceARN": format!("arn:aws:kinesis:us-east-1:1:stream/{stream}")})
        };
        let doc = json!({"Records": [entry("a", "shardId-0"), entry("a", "shardId-0"), entry("a", "shardId-1"),
                                     entry("b", "shardId-1"), {"kinesis": {"data": "e30="}, "eventID": "shardId-2:1"}]});
        let partitions: Vec<String> =
            records(&Arc::from("s"), &doc, "file").iter().map(|r| r.position.partition.to_string()).collect();
        assert_eq!(partitions, ["a/shardId-0", "a/shardId-0", "a/shardId-1", "b/shardId-1", "shardId-2"]);
    }
}
