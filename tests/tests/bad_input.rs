//! Bad input mixed into one batch with good records: every bad record is dead-lettered with a
//! clear reason and its position, and the good records of the same batch are delivered.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use base64::Engine;
use serde_json::{Value, json};
use tributary_tests::{file_source, ride_pipeline, run_pipeline};

fn entry(seq: usize, data: String) -> Value {
    json!({
        "kinesis": {"partitionKey": "1", "sequenceNumber": format!("{seq}"), "data": data,
                    "approximateArrivalTimestamp": 1750925642.262},
        "eventID": format!("shardId-000000000000:{seq}"),
        "eventSourceARN": "arn:aws:kinesis:eu-west-2:123456789012:stream/ride_events"
    })
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn ride(id: u64, pu: Value, dropoff: Value, distance: Value) -> String {
    b64(json!({"ride": {"PULocationID": pu, "DOLocationID": dropoff, "trip_distance": distance}, "ride_id": id})
        .to_string()
        .as_bytes())
}

#[tokio::test]
async fn each_bad_record_is_dead_lettered_and_the_rest_of_its_batch_delivered() {
    let big = json!({"ride": {"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1.0}, "ride_id": 10,
                     "padding": "x".repeat(1024 * 1024)});
    // (sequence number, data, expected reason or None for a good ride)
    let cases: Vec<(String, Option<&str>)> = vec![
        (ride(1, json!(130), json!(205), json!(3.66)), None),
        ("%%% not base64 %%%".into(), Some("kinesis.data is not valid base64")),
        (b64(b"Hello, this is a test."), Some("payload is not JSON")),
        (b64(br#"{"ride_id": 4}"#), Some("event has no `ride` object")),
        (
            b64(br#"{"ride": {"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1.0}}"#),
            Some("event has no `ride_id`"),
        ),
        (ride(6, json!(1), json!(2), json!("3.5")), Some("`ride.trip_distance` must be a number, found a string")),
        (ride(7, json!(1), json!(2), json!(-2.0)), Some("`ride.trip_distance` must be a non-negative number")),
        (
            ride(8, json!(13000), json!(205), json!(3.66)),
            Some("`ride.PULocationID` must be a taxi zone id from 1 to 265, found 13000"),
        ),
        (
            ride(9, json!(1), json!(0), json!(3.66)),
            Some("`ride.DOLocationID` must be a taxi zone id from 1 to 265, found 0"),
        ),
        (b64(big.to_string().as_bytes()), Some("bytes, over the 1048576-byte limit")),
        (ride(11, json!(265), json!(1), json!(0.0)), None),
    ];
    let document = json!({"Records": cases.iter().enumerate().map(|(i, (data, _))| entry(i + 1, data.clone())).collect::<Vec<_>>()});
    let mut file = tempfile::NamedTempFile::new().unwrap();
    write!(file, "{document}").unwrap();

    let run = run_pipeline(&ride_pipeline(&file_source(file.path()), "model = \"{model}\"")).await.unwrap();

    assert_eq!(run.summary.metrics.batches, 1, "all records in one batch");
    let mut delivered: Vec<u64> = run.outputs.iter().map(|o| o["prediction"]["ride_id"].as_u64().unwrap()).collect();
    delivered.sort_unstable();
    assert_eq!(delivered, vec![1, 11]);
    let bad: Vec<(usize, &str)> = cases.iter().enumerate().filter_map(|(i, (_, r))| r.map(|r| (i + 1, r))).collect();
    assert_eq!(run.dead.len(), bad.len(), "{:#?}", run.dead);
    for (seq, reason) in bad {
        let dead = run
            .dead
            .iter()
            .find(|d| d["position"]["offset"].as_str() == Some(seq.to_string().as_str()))
            .unwrap_or_else(|| panic!("record {seq} not dead-lettered"));
        assert!(dead["reason"].as_str().unwrap().contains(reason), "record {seq}: {}", dead["reason"]);
        assert_eq!(dead["position"]["partition"], "ride_events/shardId-000000000000");
    }
    assert_eq!(run.summary.metrics.dead_lettered, 9);
    assert_eq!(run.summary.metrics.failed, 0);
}
