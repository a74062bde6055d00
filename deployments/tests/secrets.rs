//! No credential reaches a log line, `validate`'s output or an error message: runs configured
//! with each kind of secret tributary handles (AWS keys and session token, a Kafka
//! `sasl.password`, `MLFLOW_TRACKING_TOKEN`, `MLFLOW_TRACKING_PASSWORD`), at debug verbosity,
//! through the paths that fail and log the most (an unreachable broker, a model the registry
//! does not have), and the whole of their output searched for the secrets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{free_port, required, root};

const SECRETS: &[(&str, &str)] = &[
    ("AWS_SECRET_ACCESS_KEY", "aws-secret-7f3c9e1b"),
    ("AWS_SESSION_TOKEN", "aws-session-token-5d2a8c"),
    ("MLFLOW_TRACKING_TOKEN", "mlflow-token-9b4e1f"),
];
const MLFLOW_PASSWORD: &str = "mlflow-password-2c7d";
const SASL_PASSWORD: &str = "sasl-password-6a1e3b";

fn tributary(args: &[&str], config: &std::path::Path, stdin: &[u8]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["-vv"])
        .args(args)
        .arg(config)
        .current_dir(root())
        .env("RUST_LOG", "debug")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .envs(SECRETS.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let output = child.wait_with_output().unwrap();
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn assert_no_secret(output: &str) {
    for secret in SECRETS.iter().map(|(_, s)| *s).chain([MLFLOW_PASSWORD, SASL_PASSWORD]) {
        assert!(!output.contains(secret), "{secret} appears in the output:\n{output}");
    }
}

/// A Kafka sink with SASL credentials and a broker that is not there (run until its delivery
/// gives up), an S3 dead-letter destination with a bucket that does not exist (AWS keys and
/// session token), and a model the registry does not have (token, then username and password).
#[test]
fn no_secret_appears_in_logs_validate_output_or_errors() {
    required("AWS_ENDPOINT_URL");
    required("MLFLOW_TRACKING_URI");
    let work = tempfile::tempdir().unwrap();
    let model = root().join("processors/models/ride_duration/model.onnx");
    let dead_broker = format!("127.0.0.1:{}", free_port());
    let kafka_config = format!(
        "[pipeline]\nbatch_size = 5\n\n[retry]\nmax_attempts = 1\n\n[sources.rides]\ntype = \"stdin\"\n\n\
         [processors.d]\ntype = \"ride_duration\"\ninputs = [\"rides\"]\nmodel = {model:?}\n\n\
         [sinks.out]\ntype = \"kafka\"\ninputs = [\"d\"]\nbrokers = {dead_broker:?}\ntopic = \"predictions\"\n\
         [sinks.out.librdkafka]\n\"security.protocol\" = \"sasl_plaintext\"\n\"sasl.mechanism\" = \"PLAIN\"\n\
         \"sasl.username\" = \"tributary\"\n\"sasl.password\" = {SASL_PASSWORD:?}\n\"message.timeout.ms\" = \"1500\"\n\n\
         [dead_letter]\ntype = \"file\"\npath = {:?}\n",
        work.path().join("rejected.jsonl")
    );
    let path = work.path().join("kafka.toml");
    std::fs::write(&path, &kafka_config).unwrap();
    let ride =
        b"{\"ride\": {\"PULocationID\": 1, \"DOLocationID\": 2, \"trip_distance\": 3.5}, \"ride_id\": 1}\nnot json\n";
    let mut all = tributary(&["validate", "--config"], &path, b"");
    // Runs until the delivery gives up (one attempt of 1.5 seconds) and the ride is
    // dead-lettered.
    let run = tributary(&["run", "--no-status", "--config"], &path, ride);
    all.push_str(&run);
    // An S3 dead-letter destination that cannot be used: a signed request and its error.
    let s3 = kafka_config.replace(
        &format!("[dead_letter]\ntype = \"file\"\npath = {:?}\n", work.path().join("rejected.jsonl")),
        "[dead_letter]\ntype = \"s3\"\nbucket = \"no-such-bucket-for-secrets\"\nprefix = \"dl/\"\n",
    );
    assert_ne!(s3, kafka_config);
    let path = work.path().join("s3.toml");
    std::fs::write(&path, &s3).unwrap();
    all.push_str(&tributary(&["validate", "--config"], &path, b""));

    let registry_config = String::from(
        "[sources.rides]\ntype = \"stdin\"\n\n[processors.d]\ntype = \"ride_duration\"\ninputs = [\"rides\"]\n\
         model = \"models:/no_such_model_for_secrets@champion\"\n\n[sinks.out]\ntype = \"blackhole\"\ninputs = [\"d\"]\n",
    );
    let path = work.path().join("registry.toml");
    std::fs::write(&path, registry_config).unwrap();
    all.push_str(&tributary(&["validate", "--config"], &path, b""));
    all.push_str(&tributary(&["run", "--no-status", "--config"], &path, b""));
    let basic = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["-vv", "validate", "--config"])
        .arg(&path)
        .env("RUST_LOG", "debug")
        .env_remove("MLFLOW_TRACKING_TOKEN")
        .env("MLFLOW_TRACKING_USERNAME", "someone")
        .env("MLFLOW_TRACKING_PASSWORD", MLFLOW_PASSWORD)
        .current_dir(root())
        .output()
        .unwrap();
    all.push_str(&String::from_utf8_lossy(&basic.stderr));

    // The runs did reach the paths that matter (else the test proves nothing).
    assert!(all.contains("no_such_model_for_secrets"), "{all}");
    assert!(all.contains("no-such-bucket-for-secrets"), "{all}");
    let rejected = std::fs::read_to_string(work.path().join("rejected.jsonl")).unwrap_or_default();
    assert!(rejected.contains("gave up after 1 attempt(s)"), "the Kafka delivery was tried and failed: {rejected}");
    assert_no_secret(&rejected);
    assert_no_secret(&all);
}
