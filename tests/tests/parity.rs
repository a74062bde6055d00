//! Rust vs Python: the 1,000-ride parity fixture (predictions by Python onnxruntime on the
//! committed model, written by `processors/models/ride_duration/train.py`) through the whole
//! pipeline. Max absolute difference must be <= 1e-4 minutes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::Write;

use serde_json::Value;
use tributary_tests::{file_source, read_repo_file, ride_pipeline, run_pipeline};

#[tokio::test]
async fn rust_matches_python_onnxruntime_on_1000_rides() {
    let fixture = read_repo_file("processors/models/ride_duration/parity.jsonl").unwrap();
    let mut expected = HashMap::new();
    let mut events = tempfile::NamedTempFile::new().unwrap();
    for line in fixture.lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        let id = row["event"]["ride_id"].as_u64().unwrap();
        expected.insert(id, row["ride_duration"].as_f64().unwrap());
        writeln!(events, "{}", row["event"]).unwrap();
    }
    assert_eq!(expected.len(), 1000);
    let config = ride_pipeline(&file_source(events.path()), "model = \"{model}\"");
    let run = run_pipeline(&format!("[pipeline]\nbatch_size = 256\n{config}")).await.unwrap();
    assert_eq!(run.outputs.len(), 1000);
    let mut max_diff = 0.0f64;
    for out in &run.outputs {
        let id = out["prediction"]["ride_id"].as_u64().unwrap();
        let got = out["prediction"]["ride_duration"].as_f64().unwrap();
        let want = expected.remove(&id).unwrap_or_else(|| panic!("unexpected or duplicate ride {id}"));
        max_diff = max_diff.max((got - want).abs());
    }
    assert!(expected.is_empty(), "missing rides: {:?}", expected.keys().take(5).collect::<Vec<_>>());
    assert!(max_diff <= 1e-4, "max abs difference {max_diff}");
}
