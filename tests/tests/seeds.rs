//! Every sample event in the seeds (`tests/fixtures/seeds/`, extracted from `shared/seeds/`)
//! through the real pipeline: file source -> ride_duration (ONNX Runtime) -> file sink, with a
//! file dead-letter destination. Ride events give the seeds' envelope; the others are
//! dead-lettered with their reason and position.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use tributary_tests::{file_source, repo_path, ride_pipeline, run_pipeline};

enum Expect {
    Predicts(u64),
    DeadLetter(&'static str),
}

const CASES: &[(&str, Expect)] = &[
    ("seed000_1.json", Expect::DeadLetter("`ride.PULocationID` must be a taxi zone id from 1 to 265, found 13000")),
    ("seed000_2.json", Expect::Predicts(459)),
    ("seed000_3.json", Expect::Predicts(111)),
    ("seed000_4.json", Expect::Predicts(100)),
    ("seed001_1.json", Expect::Predicts(156)),
    ("seed001_2.json", Expect::Predicts(156)),
    ("seed002_1.json", Expect::Predicts(123)),
    ("seed002_2.json", Expect::Predicts(156)),
    ("seed002_3.json", Expect::Predicts(100)),
    ("seed003_1.json", Expect::DeadLetter("event has no `ride` object")),
    ("seed003_2.json", Expect::DeadLetter("event has no `ride` object")),
    ("seed004_1.json", Expect::DeadLetter("payload is not JSON")),
    ("seed004_2.json", Expect::Predicts(256)),
];

fn config(file: &str) -> String {
    let source = file_source(std::path::Path::new(&repo_path(&format!("tests/fixtures/seeds/{file}"))));
    ride_pipeline(&source, "model = \"{model}\"\nversion = \"run-123\"")
}

#[tokio::test]
async fn every_seed_sample_event_is_predicted_or_dead_lettered() {
    let listed: Vec<&str> = CASES.iter().map(|(f, _)| *f).collect();
    let mut on_disk: Vec<String> = std::fs::read_dir(repo_path("tests/fixtures/seeds"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, listed, "every fixture has an expectation");

    for (file, expect) in CASES {
        let run = run_pipeline(&config(file)).await.unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(run.summary.metrics.records_in, 1, "{file}: one record");
        match expect {
            Expect::Predicts(ride_id) => {
                assert!(run.dead.is_empty(), "{file}: {:?}", run.dead);
                assert_eq!(run.outputs.len(), 1, "{file}");
                let out = &run.outputs[0];
                let keys: Vec<&str> = out.as_object().unwrap().keys().map(String::as_str).collect();
                assert_eq!(keys, ["model", "version", "prediction"], "{file}: the seeds' envelope, in order");
                assert_eq!(out["model"], "ride_duration_prediction_model");
                assert_eq!(out["version"], "run-123");
                assert_eq!(out["prediction"]["ride_id"], *ride_id, "{file}");
                let minutes = out["prediction"]["ride_duration"].as_f64().unwrap();
                assert!(minutes.is_finite() && minutes > 0.0, "{file}: {minutes}");
            }
            Expect::DeadLetter(reason) => {
                assert!(run.outputs.is_empty(), "{file}: {:?}", run.outputs);
                assert_eq!(run.dead.len(), 1, "{file}");
                let dead = &run.dead[0];
                assert!(dead["reason"].as_str().unwrap().contains(reason), "{file}: {dead}");
                assert_eq!(dead["position"]["source"], "rides");
                assert!(!dead["position"]["offset"].is_null(), "{file}: position has an offset");
                assert!(
                    dead["payload"].is_string() || dead["payload_base64"].is_string(),
                    "{file}: original payload kept"
                );
            }
        }
    }
}

#[tokio::test]
async fn kinesis_records_keep_their_shard_and_sequence_number() {
    let run = run_pipeline(&config("seed000_1.json")).await.unwrap();
    let dead = &run.dead[0];
    assert_eq!(dead["position"]["partition"], "ride-events/shardId-000000000000");
    assert_eq!(dead["position"]["offset"], "49664606472349696372092827741651184142175384785261690882");
    assert_eq!(dead["partition_key"], "1");
    let payload: Value = serde_json::from_str(dead["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["ride"]["PULocationID"], 13000);
}

#[tokio::test]
async fn the_same_ride_gets_the_same_prediction_in_every_shape() {
    // seed001_1 (Kinesis, pretty JSON inside base64), seed001_2 (bare), seed002_2 (Kinesis):
    // all 130 -> 205, 3.66 miles.
    let mut predictions = Vec::new();
    for file in ["seed001_1.json", "seed001_2.json", "seed002_2.json", "seed002_1.json"] {
        let run = run_pipeline(&config(file)).await.unwrap();
        predictions.push(run.outputs[0]["prediction"]["ride_duration"].as_f64().unwrap());
    }
    assert!(predictions.windows(2).all(|w| w[0] == w[1]), "{predictions:?}");
}
