//! Configuration mistakes with the real plugins fail before anything runs, naming the file,
//! the component and the key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tributary_tests::run_pipeline;

async fn error_of(toml: &str) -> String {
    match run_pipeline(toml).await {
        Ok(_) => panic!("expected an error for:\n{toml}"),
        Err(e) => e.to_string(),
    }
}

const SINK: &str = "[sinks.out]\ntype = \"file\"\ninputs = [\"ride_duration\"]\npath = \"{out}\"\n";

#[tokio::test]
async fn unknown_key_in_a_plugin() {
    let message = error_of(&format!(
        "[sources.rides]\ntype = \"generator\"\ncount = 1\n[processors.ride_duration]\ntype = \"ride_duration\"\n\
         inputs = [\"rides\"]\nmodle = \"x.onnx\"\n{SINK}"
    ))
    .await;
    assert!(message.starts_with("test.toml: [processors.ride_duration]"), "{message}");
    assert!(message.contains("unknown field `modle`"), "{message}");
}

#[tokio::test]
async fn missing_required_key() {
    let message = error_of(&format!(
        "[sources.rides]\ntype = \"generator\"\n[processors.ride_duration]\ntype = \"ride_duration\"\ninputs = [\"rides\"]\n{SINK}"
    ))
    .await;
    assert!(message.contains("[processors.ride_duration]") && message.contains("missing field `model`"), "{message}");
}

#[tokio::test]
async fn missing_model_file() {
    let message = error_of(&format!(
        "[sources.rides]\ntype = \"generator\"\n[processors.ride_duration]\ntype = \"ride_duration\"\n\
         inputs = [\"rides\"]\nmodel = \"models/none.onnx\"\n{SINK}"
    ))
    .await;
    assert!(
        message.contains("[processors.ride_duration] key `model`: cannot read model file \"models/none.onnx\""),
        "{message}"
    );
}

#[tokio::test]
async fn missing_input_file_and_bad_generator_rate() {
    let message = error_of(&format!(
        "[sources.rides]\ntype = \"file\"\npath = \"/no/such/rides.jsonl\"\n[processors.ride_duration]\n\
         type = \"ride_duration\"\ninputs = [\"rides\"]\nmodel = \"{{model}}\"\n{SINK}"
    ))
    .await;
    assert!(message.contains("[sources.rides] key `path`: cannot open \"/no/such/rides.jsonl\""), "{message}");
    let message = error_of(&format!(
        "[sources.rides]\ntype = \"generator\"\nrate = -5.0\n[processors.ride_duration]\n\
         type = \"ride_duration\"\ninputs = [\"rides\"]\nmodel = \"{{model}}\"\n{SINK}"
    ))
    .await;
    assert!(message.contains("[sources.rides] key `rate`"), "{message}");
}

#[tokio::test]
async fn a_model_that_is_not_a_ride_duration_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.onnx");
    std::fs::write(&path, b"not a model").unwrap();
    let message = error_of(&format!(
        "[sources.rides]\ntype = \"generator\"\n[processors.ride_duration]\ntype = \"ride_duration\"\n\
         inputs = [\"rides\"]\nmodel = \"{}\"\n{SINK}",
        path.display()
    ))
    .await;
    assert!(
        message.contains("[processors.ride_duration] key `model`") && message.contains("garbage.onnx"),
        "{message}"
    );
}
