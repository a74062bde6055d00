//! The `tributary` binary as a user runs it: `validate`, `run` on the demo config, environment
//! overrides and substitution, stdin, and graceful shutdown on SIGINT.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, required, root, scrape, signal};
use serde_json::Value;

fn tributary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tributary"));
    cmd.current_dir(root()).env_remove("RUN_ID").env_remove("MODEL").env_remove("RUST_LOG");
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json_lines(bytes: &[u8]) -> Vec<Value> {
    text(bytes).lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, body).unwrap();
    path
}

#[test]
fn version_and_help() {
    let out = tributary().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(text(&out.stdout).starts_with("tributary "), "{}", text(&out.stdout));
    let out = tributary().arg("--help").output().unwrap();
    for word in ["run", "validate", "plugins"] {
        assert!(text(&out.stdout).contains(word));
    }
}

#[test]
fn validate_accepts_the_demo_and_names_what_is_wrong_otherwise() {
    let out = tributary().args(["validate", "--config", "deployments/config/demo.toml"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok (2 source(s), 1 processor(s), 1 sink(s))"));

    let dir = tempfile::tempdir().unwrap();
    let bad = write_config(
        dir.path(),
        "[sources.rides]\ntype = \"generator\"\n[processors.ride_duration]\ntype = \"ride_duration\"\n\
         inputs = [\"rides\"]\nmodel = \"processors/models/ride_duration/model.onnx\"\nbatch = 5\n\
         [sinks.out]\ntype = \"stdout\"\ninputs = [\"ride_duration\"]\n",
    );
    let out = tributary().args(["validate", "--config"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("{}: [processors.ride_duration]", bad.display())), "{err}");
    assert!(err.contains("unknown field `batch`"), "{err}");

    let out = tributary().args(["validate", "--config", "no/such.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no/such.toml: no such file"));
}

#[test]
fn every_example_config_validates() {
    // kinesis-worker.toml checks its streams on kinesis-mock; batch-s3.toml (the Lambda
    // function's batch config) its bucket on moto.
    required("AWS_ENDPOINT_URL_KINESIS");
    required("AWS_ENDPOINT_URL");
    let bucket = common::unique("example-trips").to_lowercase();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        tributary_aws::s3_client().await.create_bucket().bucket(&bucket).send().await.unwrap();
    });
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("deployments/config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            // lambda.toml: its model path is relative to the Lambda package, and its Kinesis sink
            // checks the stream unless TEST_RUN is set, as the seeds' variables allow.
            let out = tributary()
                .args(["validate", "--config"])
                .arg(&path)
                .env("MODEL_LOCATION", "processors/models/ride_duration/model.onnx")
                .env("TEST_RUN", "True")
                .env("TRIPS_BUCKET", &bucket)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}: {}", path.display(), text(&out.stderr));
            checked += 1;
        }
    }
    assert!(checked >= 4);
}

#[test]
fn demo_prints_seed_shaped_predictions_and_dead_letters() {
    let out: Output = tributary().args(["run", "--config", "deployments/config/demo.toml"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let predictions = json_lines(&out.stdout);
    assert_eq!(predictions.len(), 9 + 20, "9 seed rides and 20 synthetic ones");
    let mut ids: Vec<u64> = predictions.iter().map(|p| p["prediction"]["ride_id"].as_u64().unwrap()).collect();
    ids.sort_unstable();
    assert!(ids.starts_with(&[100, 100, 111, 123, 156, 156, 156, 256, 459]), "{ids:?}");
    assert!(predictions.iter().all(|p| p["model"] == "ride_duration_prediction_model" && p["version"] == "demo"));
    let dead = json_lines(&out.stderr);
    assert_eq!(dead.len(), 4, "{}", text(&out.stderr));
    assert!(dead.iter().any(|d| d["reason"].as_str().unwrap().contains("found 13000")));
}

#[test]
fn environment_overrides_and_substitution() {
    let out = tributary()
        .args(["run", "--config", "deployments/config/demo.toml"])
        .env("RUN_ID", "abc123")
        .env("TRIBUTARY_SOURCES__SYNTHETIC__COUNT", "3")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let predictions = json_lines(&out.stdout);
    assert_eq!(predictions.len(), 9 + 3);
    assert!(predictions.iter().all(|p| p["version"] == "abc123"));
}

#[test]
fn stdin_source_reads_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[sources.rides]\ntype = \"stdin\"\n[processors.ride_duration]\ntype = \"ride_duration\"\ninputs = [\"rides\"]\n\
         model = \"processors/models/ride_duration/model.onnx\"\n[sinks.out]\ntype = \"stdout\"\ninputs = [\"ride_duration\"]\n\
         [dead_letter]\ntype = \"stdout\"\n",
    );
    let mut child = tributary()
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"{\"ride\": {\"PULocationID\": 130, \"DOLocationID\": 205, \"trip_distance\": 3.66}, \"ride_id\": \"a-1\"}\n{oops\n")
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["prediction"]["ride_id"], "a-1");
    assert_eq!(lines[1]["position"]["offset"], 2);
    assert!(lines[1]["reason"].as_str().unwrap().contains("not JSON"));
}

#[test]
fn sigint_finishes_in_flight_records_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.jsonl");
    let config = write_config(
        dir.path(),
        &format!(
            "[pipeline]\nbatch_size = 50\n[sources.rides]\ntype = \"generator\"\nrate = 2000.0\n\
             [processors.ride_duration]\ntype = \"ride_duration\"\ninputs = [\"rides\"]\n\
             model = \"processors/models/ride_duration/model.onnx\"\n[sinks.out]\ntype = \"file\"\n\
             inputs = [\"ride_duration\"]\npath = \"{}\"\n",
            out_path.display()
        ),
    );
    let mut child = tributary().args(["run", "--config"]).arg(&config).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while std::fs::metadata(&out_path).map(|m| m.len()).unwrap_or(0) < 10_000 {
        assert!(started.elapsed() < Duration::from_secs(20), "no output");
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&child, "-INT");
    let stopping = Instant::now();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exit status {exit}");
    assert!(stopping.elapsed() < Duration::from_secs(10));
    let stderr = BufReader::new(child.stderr.take().unwrap()).lines().map_while(Result::ok).collect::<Vec<_>>();
    assert!(stderr.iter().any(|l| l.contains("shutting down")), "{stderr:?}");
    // Every line complete and ride ids contiguous from 1: nothing lost or torn.
    let text = std::fs::read_to_string(&out_path).unwrap();
    let ids: Vec<u64> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["prediction"]["ride_id"].as_u64().unwrap())
        .collect();
    assert!(ids.len() >= 50, "{} records", ids.len());
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
}

#[test]
fn metrics_endpoint_serves_prometheus_counters() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[sources.rides]\ntype = \"generator\"\nrate = 500.0\n[processors.ride_duration]\ntype = \"ride_duration\"\n\
         inputs = [\"rides\"]\nmodel = \"processors/models/ride_duration/model.onnx\"\n\
         [sinks.out]\ntype = \"blackhole\"\ninputs = [\"ride_duration\"]\n",
    );
    let mut child = tributary()
        .args(["run", "--config"])
        .arg(&config)
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let body = loop {
        std::thread::sleep(Duration::from_millis(200));
        if let Some(response) = scrape(port) {
            let records: f64 = response
                .lines()
                .find_map(|l| l.strip_prefix("tributary_records_in_total "))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            if records > 0.0 {
                break response;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no metrics");
    };
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    for name in ["outputs_delivered_total", "dead_lettered_total", "batches_total", "batch_seconds_total"] {
        assert!(body.contains(&format!("# TYPE tributary_{name} counter")), "{name}: {body}");
    }
    signal(&child, "-INT");
    assert!(child.wait().unwrap().success());
}
