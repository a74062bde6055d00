//! The Lambda package as AWS would run it: `target/lambda-test/tributary-lambda.zip` (built by
//! `cargo xtask package-lambda --for-tests`, which `cargo xtask test` runs first: the shipped
//! package's files and code, without its link-time optimization) unzipped into a folder of
//! its own, its `bootstrap` started there with only the environment Lambda gives a function (no
//! `MODEL_LOCATION`, no `ORT_DYLIB_PATH`, nothing from this checkout), under cargo-lambda's
//! runtime emulator (`TRIBUTARY_LAMBDA_EMULATOR`) and writing to kinesis-mock
//! (`AWS_ENDPOINT_URL_KINESIS`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{Function, create_stream, invoke_url, kinesis, read_stream, required, ride, ride_ids, root, unique};
use serde_json::{Value, json};
use tributary::tools::esm::invoke::Invoker;

/// Unzips `zip` into `dir` as Lambda does, file modes included (Python's `zipfile` CLI would
/// drop them, and with them `bootstrap`'s execute bit).
fn unzip(zip: &Path, dir: &Path) {
    let script = "import sys, zipfile, os\n\
                  with zipfile.ZipFile(sys.argv[1]) as z:\n\
                  \x20   for info in z.infolist():\n\
                  \x20       path = z.extract(info, sys.argv[2])\n\
                  \x20       os.chmod(path, (info.external_attr >> 16) & 0o777)\n";
    let status = Command::new(root().join(".venv/bin/python"))
        .args(["-c", script])
        .arg(zip)
        .arg(dir)
        .status()
        .expect("run .venv/bin/python (`cargo xtask setup` makes it)");
    assert!(status.success(), "unzipping {}", zip.display());
}

#[tokio::test]
async fn the_packaged_function_runs_from_its_zip_alone() {
    let zip = root().join("target/lambda-test/tributary-lambda.zip");
    assert!(zip.is_file(), "{} is missing: build it with `cargo xtask package-lambda --for-tests`", zip.display());
    // `cargo xtask test` builds the tests, then the package. A function binary newer than the
    // package means the code changed since it was packaged.
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).unwrap();
    assert!(
        modified(&zip) >= modified(Path::new(env!("CARGO_BIN_EXE_tributary-lambda"))),
        "{} is older than this build of the function: rebuild it with `cargo xtask package-lambda --for-tests`",
        zip.display()
    );
    let task_root = tempfile::tempdir().unwrap();
    unzip(&zip, task_root.path());
    let mut names: Vec<String> = std::fs::read_dir(task_root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["batch-s3.toml", "bootstrap", "libonnxruntime.so", "model.onnx", "web-service.toml"]);

    let client = kinesis().await;
    let out = unique("packaged");
    create_stream(&client, &out, 1).await;
    let emulator = required("TRIBUTARY_LAMBDA_EMULATOR");
    let _function = Function(
        Command::new(task_root.path().join("bootstrap"))
            .current_dir(task_root.path())
            .env_clear()
            .env("LAMBDA_TASK_ROOT", task_root.path())
            .env("AWS_LAMBDA_RUNTIME_API", format!("{emulator}/.rt/tributary-lambda"))
            .env("AWS_LAMBDA_FUNCTION_NAME", "tributary-lambda")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL_KINESIS", required("AWS_ENDPOINT_URL_KINESIS"))
            .env("PREDICTIONS_STREAM_NAME", &out)
            .env("RUN_ID", "packaged")
            .stdout(Stdio::null())
            .spawn()
            .expect("start the packaged bootstrap"),
    );
    let invoker = Invoker::new(&invoke_url(), true).unwrap();
    // The emulator holds an invocation until a function asks for it: a bootstrap that cannot
    // start would hang the test without this limit.
    let invoke = |event: Value| {
        let invoker = invoker.clone();
        async move {
            tokio::time::timeout(std::time::Duration::from_secs(30), invoker.invoke_raw(&event))
                .await
                .expect("no answer within 30 s: did the packaged bootstrap start? (its log is above)")
                .unwrap()
        }
    };

    // The seeds' Kinesis test event (ride 156): its prediction goes to the stream.
    let event: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("tests/fixtures/seeds/seed002_2.json")).unwrap())
            .unwrap();
    let answer = invoke(event).await;
    assert!(!answer.function_error, "{:?}", answer.body);
    assert_eq!(answer.body, json!({"batchItemFailures": []}));
    let records = read_stream(&client, &out).await;
    assert_eq!(ride_ids(&records), vec![156]);
    assert_eq!(records[0].1["version"], "packaged");

    // A bare ride event is answered directly.
    let answer = invoke(ride(7, 130)).await;
    assert!(!answer.function_error, "{:?}", answer.body);
    let prediction = &answer.body["predictions"][0];
    assert_eq!(prediction["model"], "ride_duration_prediction_model");
    assert_eq!(prediction["prediction"]["ride_id"], 7);
    let minutes = prediction["prediction"]["ride_duration"].as_f64().unwrap();
    assert!(minutes.is_finite() && minutes > 0.0, "{prediction}");
}
