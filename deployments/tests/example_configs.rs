//! The example configs `deployments/config/fan-out.toml`, `moderation.toml` and the
//! `independent-*.toml` pair as a user runs them, against kinesis-mock: `tributary put`,
//! `tributary run`, and the output stream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use common::{create_stream, kinesis, put, read_stream, ride, root, signal, unique};
use serde_json::Value;

fn run(config: &str, env: &[(&str, &str)], checkpoints: &std::path::Path) -> Child {
    run_many(&[config], env, checkpoints)
}

fn run_many(configs: &[&str], env: &[(&str, &str)], checkpoints: &std::path::Path) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tributary"));
    cmd.current_dir(root()).args(["run", "--no-status"]);
    for config in configs {
        cmd.args(["--config", config]);
    }
    cmd.envs(env.iter().copied())
        .env("CHECKPOINT_DIR", checkpoints)
        .env_remove("RUN_ID")
        .env_remove("MODEL_LOCATION")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tributary run")
}

async fn wait_for(client: &Client, stream: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let values: Vec<Value> = read_stream(client, stream).await.into_iter().map(|(_, v)| v).collect();
        if values.len() >= n {
            return values;
        }
        assert!(Instant::now() < deadline, "only {} of {n} records arrived on {stream}", values.len());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn stop(mut child: Child) {
    signal(&child, "-INT");
    assert!(child.wait().unwrap().success());
}

/// Both envelopes, duration and tip, for every ride 1..=n.
fn assert_both_envelopes(values: &[Value], n: u64) {
    for model in ["ride_duration_prediction_model", "tip_prediction_model"] {
        let mut ids: Vec<u64> = values
            .iter()
            .filter(|v| v["model"] == model)
            .map(|v| v["prediction"]["ride_id"].as_u64().unwrap())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, (1..=n).collect::<Vec<_>>(), "{model}");
    }
}

/// Rides 1..=100 on a fresh 2-shard stream through `configs` (one process) until both
/// envelopes of every ride are on the output stream; returns the input stream and the
/// checkpoint folder.
async fn hundred_rides_through(configs: &[&str]) -> (String, tempfile::TempDir) {
    let client = kinesis().await;
    let (input, output) = (unique("rides"), unique("predictions"));
    create_stream(&client, &input, 2).await;
    create_stream(&client, &output, 1).await;
    put(&input, &(1..=100).map(|id| ride(id, 1 + id % 265)).collect::<Vec<_>>());
    let checkpoints = tempfile::tempdir().unwrap();
    let child =
        run_many(configs, &[("INPUT_STREAM", &input), ("PREDICTIONS_STREAM_NAME", &output)], checkpoints.path());
    let values = wait_for(&client, &output, 200).await;
    stop(child);
    assert_both_envelopes(&values, 100);
    (input, checkpoints)
}

#[tokio::test]
async fn fan_out_reads_once_and_writes_both_envelopes() {
    let (input, checkpoints) = hundred_rides_through(&["deployments/config/fan-out.toml"]).await;
    let checkpoint: Value = serde_json::from_slice(
        &std::fs::read(checkpoints.path().join(format!("fan-out-{input}.json"))).expect("one checkpoint file"),
    )
    .unwrap();
    assert_eq!(checkpoint["shards"].as_object().unwrap().len(), 2, "{checkpoint}");
}

#[tokio::test]
async fn moderation_decides_every_example_upload() {
    let client = kinesis().await;
    let (uploads, decisions) = (unique("uploads"), unique("decisions"));
    create_stream(&client, &uploads, 1).await;
    create_stream(&client, &decisions, 1).await;
    let examples = std::fs::read_to_string(root().join("deployments/config/video-uploads.jsonl")).unwrap();
    let values: Vec<Value> = examples.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    put(&uploads, &values);
    let checkpoints = tempfile::tempdir().unwrap();
    let child = run(
        "deployments/config/moderation.toml",
        &[("UPLOADS_STREAM", &uploads), ("DECISIONS_STREAM", &decisions)],
        checkpoints.path(),
    );
    let out = wait_for(&client, &decisions, 4).await;
    stop(child);
    let decision =
        |id: &str| out.iter().find(|d| d["upload_id"] == id).unwrap()["decision"].as_str().unwrap().to_string();
    assert_eq!(
        [decision("u-1001"), decision("u-1002"), decision("u-1003"), decision("u-1004")],
        ["promote", "delete", "review", "review"]
    );
    assert_eq!(out.len(), 4, "one decision per upload: {out:?}");
}

#[tokio::test]
async fn independent_consumers_share_one_read_and_keep_their_own_checkpoints() {
    let (input, checkpoints) = hundred_rides_through(&[
        "deployments/config/independent-duration.toml",
        "deployments/config/independent-tip.toml",
    ])
    .await;
    // One stream checkpoint (the shared read) and one checkpoint per consumer, each at the end
    // of both shards.
    let read = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(checkpoints.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}")))
            .unwrap()
    };
    let shared = read(&format!("shared-{input}.json"));
    assert_eq!(shared["shards"].as_object().unwrap().len(), 2, "{shared}");
    for consumer in ["independent-duration.json", "independent-tip.json"] {
        let done = read(consumer);
        assert_eq!(done.as_array().unwrap().len(), 2, "{consumer}: {done}");
        for position in done.as_array().unwrap() {
            let shard = position["partition"].as_str().unwrap();
            assert_eq!(shared["shards"][shard]["sequence"], position["offset"], "{consumer}: {shared} {done}");
        }
    }
}
