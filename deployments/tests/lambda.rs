//! The Lambda function and the local event source mapping against real local servers:
//! kinesis-mock (`AWS_ENDPOINT_URL_KINESIS`) and cargo-lambda's runtime emulator
//! (`TRIBUTARY_LAMBDA_EMULATOR`), both started by `cargo xtask services up`, and for the
//! registry test the MLflow server (`MLFLOW_TRACKING_URI`).
//!
//! The emulator serves one function name, so the tests in this file take turns.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::fault_proxy::{self, Call};
use common::{
    Function, create_stream, esm_command, finish, invoke_url, kinesis, on_failure_records, open_shards, put, put_now,
    read_stream, required, ride, ride_ids, rides, root, split, unique, written_ride_ids,
};
use serde_json::{Value, json};
use tributary::tools::esm::invoke::Invoker;

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const FUNCTION: &str = "tributary-lambda";

fn start_function(output_stream: &str) -> Function {
    start_function_with(output_stream, &[], Stdio::null())
}

/// The function with extra environment variables and its log (stderr) going to `log`.
fn start_function_with(output_stream: &str, env: &[(&str, &str)], log: Stdio) -> Function {
    let emulator = required("TRIBUTARY_LAMBDA_EMULATOR");
    let child = Command::new(env!("CARGO_BIN_EXE_tributary-lambda"))
        .current_dir(root())
        .env("AWS_LAMBDA_RUNTIME_API", format!("{emulator}/.rt/{FUNCTION}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("MODEL_LOCATION", "processors/models/ride_duration/model.onnx")
        .env("RUN_ID", "test-run")
        .env("PREDICTIONS_STREAM_NAME", output_stream)
        .env_remove("TRIBUTARY_CONFIG")
        .env_remove("TEST_RUN")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start tributary-lambda");
    Function(child)
}

/// A fresh output stream and the function writing to it, with an invoker for the function.
async fn function_with_output_stream() -> (aws_sdk_kinesis::Client, String, Function, Invoker) {
    let client = kinesis().await;
    let out = unique("predictions");
    create_stream(&client, &out, 1).await;
    let function = start_function(&out);
    (client, out, function, Invoker::new(&invoke_url(), true).unwrap())
}

/// For a mapping: an input stream of `shards` shards, an output stream and the function writing
/// to it. Returns the client, the input and output streams' names and the function.
async fn input_output_and_function(shards: i32) -> (aws_sdk_kinesis::Client, String, String, Function) {
    let client = kinesis().await;
    let input = unique("rides");
    let out = unique("predictions");
    create_stream(&client, &input, shards).await;
    create_stream(&client, &out, 1).await;
    let function = start_function(&out);
    (client, input, out, function)
}

/// `tributary esm` on `stream` feeding the function; it exits after 2 idle seconds unless
/// `extra` says otherwise.
fn esm(stream: &str, extra: &[&str]) -> Command {
    let mut cmd = esm_command(stream, &invoke_url());
    cmd.args(extra);
    if !extra.contains(&"--exit-when-idle-s") {
        cmd.args(["--exit-when-idle-s", "2"]);
    }
    cmd
}

#[tokio::test]
async fn every_seed_sample_event_through_the_function() {
    let _turn = TURN.lock().await;
    let (client, out, _function, invoker) = function_with_output_stream().await;

    let fixtures = root().join("tests/fixtures/seeds");
    let mut names: Vec<String> =
        std::fs::read_dir(&fixtures).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    let mut direct = BTreeMap::new();
    for name in &names {
        let event: Value = serde_json::from_str(&std::fs::read_to_string(fixtures.join(name)).unwrap()).unwrap();
        let answer = invoker.invoke_raw(&event).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        if event.get("Records").is_some() {
            assert!(!answer.function_error, "{name}: {:?}", answer.body);
            assert_eq!(answer.body, json!({"batchItemFailures": []}), "{name}: poison records are not failures");
        } else if event.get("ride").is_some() {
            assert!(!answer.function_error, "{name}: {:?}", answer.body);
            let prediction = &answer.body["predictions"][0];
            assert_eq!(prediction["model"], "ride_duration_prediction_model");
            assert_eq!(prediction["version"], "test-run");
            direct.insert(name.clone(), prediction["prediction"]["ride_id"].clone());
        } else {
            assert!(answer.function_error, "{name}: {:?}", answer.body);
            assert_eq!(answer.body["errorType"], "InvalidEvent", "{name}");
            assert!(answer.body["errorMessage"].as_str().unwrap().contains("event has no `ride` object"));
        }
    }
    assert_eq!(direct.len(), 6, "{direct:?}");
    // Only the Kinesis events' good rides reach the stream (seed001_1, seed002_2: 156; seed004_2: 256),
    // keyed by ride_id as in the seeds.
    let records = read_stream(&client, &out).await;
    assert_eq!(ride_ids(&records), vec![156, 156, 256]);
    assert!(records.iter().all(|(key, v)| key == &v["prediction"]["ride_id"].to_string()));
}

#[tokio::test]
async fn test_run_sends_nothing_and_logs_what_it_would_have_sent() {
    let _turn = TURN.lock().await;
    let client = kinesis().await;
    let out = unique("predictions");
    create_stream(&client, &out, 1).await;
    let log = tempfile::NamedTempFile::new().unwrap();
    let function = start_function_with(&out, &[("TEST_RUN", "True")], Stdio::from(log.reopen().unwrap()));
    let invoker = Invoker::new(&invoke_url(), true).unwrap();
    let event: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("tests/fixtures/seeds/seed002_2.json")).unwrap())
            .unwrap();
    let answer = invoker.invoke_raw(&event).await.unwrap();
    assert_eq!(answer.body, json!({"batchItemFailures": []}));
    drop(function);
    assert!(read_stream(&client, &out).await.is_empty(), "a test run puts nothing");
    // The log (JSON lines, as in CloudWatch) has the envelope that would have been put.
    let log = std::fs::read_to_string(log.path()).unwrap();
    let line = log.lines().find(|l| l.contains("dry run: not sent")).unwrap_or_else(|| panic!("{log}"));
    let line: Value = serde_json::from_str(line).unwrap();
    assert_eq!(line["fields"]["stream"], out.as_str());
    assert_eq!(line["fields"]["partition_key"], "156");
    let data: Value = serde_json::from_str(line["fields"]["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["prediction"]["ride_id"], 156);
}

#[tokio::test]
async fn direct_invocations_that_are_not_ride_events_get_a_clear_error() {
    let _turn = TURN.lock().await;
    let (_client, _out, _function, invoker) = function_with_output_stream().await;
    for event in [json!({"hello": 1}), json!("just text"), json!({"ride": {"PULocationID": 1}, "ride_id": 1})] {
        let answer = invoker.invoke_raw(&event).await.unwrap();
        assert!(answer.function_error, "{event}: {:?}", answer.body);
        assert_eq!(answer.body["errorType"], "InvalidEvent", "{event}");
    }
    // The function is still serving.
    let answer = invoker.invoke_raw(&ride(5, 130)).await.unwrap();
    assert_eq!(answer.body["predictions"][0]["prediction"]["ride_id"], 5);
}

#[tokio::test]
async fn esm_delivers_every_good_ride_through_poison_and_a_sink_outage() {
    let _turn = TURN.lock().await;
    let (client, input, out, _function) = input_output_and_function(2).await;

    // 20 good rides and a poison one, put with `tributary put`.
    let mut values: Vec<Value> = (1..=20).map(|id| ride(id, 130)).collect();
    values.insert(7, ride(999, 13000));
    put(&input, &values);
    let output = finish(esm(&input, &["--batch-size", "7"]).spawn().unwrap(), Duration::from_secs(60)).await;
    assert!(output.status.success());
    assert_eq!(ride_ids(&read_stream(&client, &out).await), (1..=20).collect::<Vec<_>>());

    // The output stream disappears: the sink fails, the function reports the records in
    // batchItemFailures, and the mapping retries until the stream is back.
    client.delete_stream().stream_name(&out).send().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    put(&input, &rides(21..=30));
    let failures = tempfile::NamedTempFile::new().unwrap();
    let child = esm(
        &input,
        &["--starting-position", "trim-horizon", "--maximum-retry-attempts", "20", "--retry-backoff-ms", "200"],
    )
    .arg("--on-failure")
    .arg(failures.path())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    create_stream(&client, &out, 1).await;
    let output = finish(child, Duration::from_secs(90)).await;
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("retrying from the first failed record"), "{stderr}");
    // Rides 1..20 were already delivered before the outage (to the old stream); the new stream
    // gets every ride the mapping re-read: nothing good is missing, the poison never arrives.
    let ids = ride_ids(&read_stream(&client, &out).await);
    let mut unique_ids = ids.clone();
    unique_ids.dedup();
    assert!((21..=30).all(|id| unique_ids.contains(&id)), "{ids:?}");
    assert!(!ids.contains(&999));
    assert_eq!(std::fs::read_to_string(failures.path()).unwrap(), "", "nothing discarded");
}

/// The ride ids on `stream` in the order they were written, once there are at least `count`
/// (or after 20 s).
async fn wait_for(client: &aws_sdk_kinesis::Client, stream: &str, count: usize) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ids = written_ride_ids(client, stream).await;
        if ids.len() >= count || Instant::now() > deadline {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn esm_reads_the_children_of_a_reshard_after_their_parent() {
    let _turn = TURN.lock().await;
    let (client, input, out, _function) = input_output_and_function(1).await;

    // Split before the mapping starts: the closed parent holds rides 1..=20, its children 21..=40.
    put(&input, &rides(1..=20));
    split(&client, &input, &open_shards(&client, &input).await[0]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    put(&input, &rides(21..=40));
    let mapping = esm(&input, &["--batch-size", "5", "--discovery-interval-ms", "300", "--exit-when-idle-s", "6"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ids = wait_for(&client, &out, 40).await;
    assert_eq!(ids.len(), 40, "{ids:?}");
    let last_parent = ids.iter().rposition(|id| *id <= 20).unwrap();
    let first_child = ids.iter().position(|id| *id > 20).unwrap();
    assert!(last_parent < first_child, "a child's record came before the parent's last one: {ids:?}");

    // Split a child while the mapping runs: its children are found by listing again.
    let children = open_shards(&client, &input).await;
    assert_eq!(children.len(), 2);
    split(&client, &input, &children[0]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    put(&input, &rides(41..=80));
    let ids = wait_for(&client, &out, 80).await;
    common::signal(&mapping, "-INT");
    let output = finish(mapping, Duration::from_secs(60)).await;
    assert!(output.status.success());
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=80).collect::<Vec<_>>(), "every ride once, none lost");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("esm: 3 shard(s)"), "{stderr}");
}

#[tokio::test]
async fn esm_stops_with_a_clear_error_when_its_stream_is_deleted() {
    let _turn = TURN.lock().await;
    let (client, input, out, _function) = input_output_and_function(2).await;
    put(&input, &rides(1..=5));
    // Idle for far longer than the test waits: only the deletion can end it.
    let mapping = esm(&input, &["--exit-when-idle-s", "600", "--discovery-interval-ms", "500"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let delivered = wait_for(&client, &out, 5).await;
    assert_eq!(delivered.len(), 5, "{delivered:?}");
    client.delete_stream().stream_name(&input).send().await.unwrap();
    let output = finish(mapping, Duration::from_secs(30)).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("stream {input} is gone")), "{stderr}");
}

/// The invoke URL of a "function" that accepts invocations and never answers.
async fn silent_function() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/2015-03-31/functions/silent/invocations", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

#[tokio::test]
async fn a_function_that_never_answers_times_out_and_its_batch_goes_to_the_on_failure_file() {
    let client = kinesis().await;
    let input = unique("rides");
    create_stream(&client, &input, 1).await;
    put(&input, &rides(1..=3));
    let url = silent_function().await;
    let failures = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = esm_command(&input, &url);
    cmd.args(["--function-timeout-s", "1", "--maximum-retry-attempts", "1", "--retry-backoff-ms", "100"])
        .args(["--exit-when-idle-s", "1", "--on-failure"])
        .arg(failures.path())
        .stderr(Stdio::piped());
    let output = finish(cmd.spawn().unwrap(), Duration::from_secs(30)).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("did not answer within 1 s"), "{stderr}");
    let [discarded] = &on_failure_records(failures.path())[..] else { panic!("one batch given up on") };
    assert_eq!(discarded["requestContext"]["condition"], "RetryAttemptsExhausted");
    assert_eq!(discarded["requestContext"]["approximateInvokeCount"], 2, "the first try and one retry");
    assert_eq!(discarded["responseContext"]["functionError"], "Unhandled", "a timeout is a function error");
    assert_eq!(discarded["KinesisBatchInfo"]["batchSize"], 3);
}

#[tokio::test]
async fn ctrl_c_abandons_an_invocation_in_flight() {
    let client = kinesis().await;
    let input = unique("rides");
    create_stream(&client, &input, 1).await;
    put(&input, &rides(1..=3));
    let url = silent_function().await;
    let mapping = esm_command(&input, &url).stderr(Stdio::piped()).spawn().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    common::signal(&mapping, "-INT");
    // The invocation would wait 900 s for the function.
    let output = finish(mapping, Duration::from_secs(10)).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

/// Set once rides 11..=20 are in the stream.
static MORE_RIDES_PUT: AtomicBool = AtomicBool::new(false);
/// Set once the second iterator has been expired.
static SECOND_EXPIRED: AtomicBool = AtomicBool::new(false);

/// The first GetRecords call finds its iterator expired (before anything is read), and so does
/// the first call after rides 11..=20 were put; the proxy keeps expired iterators expired.
fn expire_first_and_after_more_rides(call: Call, n: usize) -> Option<&'static str> {
    let expire = call == Call::GetRecords
        && (n == 1 || (MORE_RIDES_PUT.load(Ordering::SeqCst) && !SECOND_EXPIRED.swap(true, Ordering::SeqCst)));
    expire.then_some("ExpiredIteratorException")
}

#[tokio::test]
async fn esm_renews_an_expired_iterator_without_loss_or_repeats() {
    let _turn = TURN.lock().await;
    let (proxy, counts) = common::fault_proxy::in_front_of_kinesis(expire_first_and_after_more_rides).await;
    let (client, input, out, _function) = input_output_and_function(1).await;

    put(&input, &rides(1..=10));
    let mapping = esm(&input, &["--batch-size", "4", "--exit-when-idle-s", "5"])
        .env("AWS_ENDPOINT_URL_KINESIS", &proxy)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(wait_for(&client, &out, 10).await.len(), 10);
    // Rides 11..=20 go in unread; the iterator (just after ride 10) then expires: a renewal at
    // LATEST would skip them, one at TRIM_HORIZON would repeat 1..=10. Put from here (not with
    // `tributary put`) so that the mapping has no time to read them before the flag is set.
    put_now(&client, &input, &rides(11..=20)).await;
    MORE_RIDES_PUT.store(true, Ordering::SeqCst);
    let output = finish(mapping, Duration::from_secs(60)).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(counts.injected.load(Ordering::SeqCst), 2);
    let ids = written_ride_ids(&client, &out).await;
    assert_eq!(ids, (1..=20).collect::<Vec<_>>(), "every ride once and in order");
}

#[tokio::test]
async fn esm_at_a_timestamp_starts_with_the_first_record_put_from_then() {
    let _turn = TURN.lock().await;
    let (client, input, out, _function) = input_output_and_function(2).await;
    put(&input, &rides(1..=5));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let from = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    put(&input, &rides(6..=10));
    let timestamp = format!("{from:.3}");
    let args = ["--starting-position", "at-timestamp", "--starting-position-timestamp", &timestamp];
    let output = finish(esm(&input, &args).stderr(Stdio::piped()).spawn().unwrap(), Duration::from_secs(60)).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut ids = written_ride_ids(&client, &out).await;
    ids.sort_unstable();
    assert_eq!(ids, (6..=10).collect::<Vec<_>>());

    // Without the timestamp, clap refuses.
    let output = esm(&input, &["--starting-position", "at-timestamp"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--starting-position-timestamp"));
}

#[tokio::test]
async fn esm_keeps_each_event_within_lambdas_six_megabytes() {
    let _turn = TURN.lock().await;
    let (client, input, out, _function) = input_output_and_function(1).await;
    // Twelve rides of about 900 kB each (1.2 MB in base64): at most five fit in one event,
    // whatever the batch size. `put` itself splits them into calls of at most 5 MiB.
    let big: Vec<Value> = (1..=12)
        .map(|id| {
            let mut ride = ride(id, 130);
            ride["note"] = Value::String("x".repeat(900_000));
            ride
        })
        .collect();
    put(&input, &big);
    let output = finish(
        esm(&input, &["--batch-size", "100", "-v"]).stderr(Stdio::piped()).spawn().unwrap(),
        Duration::from_secs(90),
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let sizes: Vec<usize> = stderr
        .lines()
        .filter(|l| l.contains("invoking the function"))
        .map(|l| l.split("records=").nth(1).and_then(|r| r.split(' ').next()).unwrap().parse().unwrap())
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 12, "every ride invoked once: {sizes:?}");
    assert_eq!(sizes.iter().max(), Some(&5), "events of at most five such rides, and full ones: {sizes:?}");
    assert_eq!(written_ride_ids(&client, &out).await, (1..=12).collect::<Vec<_>>());
}

/// The first GetShardIterator call fails; GetRecords calls go as `fault_proxy::PHASE` says.
fn fail_first_iterator_then_by_phase(call: Call, n: usize) -> Option<&'static str> {
    match call {
        Call::GetShardIterator => (n == 1).then_some("InvalidArgumentException"),
        Call::GetRecords => fault_proxy::by_phase(call, n),
    }
}

#[tokio::test]
async fn esm_from_latest_retries_a_failed_iterator_and_renews_an_expired_one_from_when_it_started() {
    let _turn = TURN.lock().await;
    let (proxy, counts) = common::fault_proxy::in_front_of_kinesis(fail_first_iterator_then_by_phase).await;
    let (client, input, out, _function) = input_output_and_function(1).await;

    put(&input, &rides(1..=5)); // before the mapping starts: not for `latest`
    let mapping = esm(&input, &["--starting-position", "latest", "--exit-when-idle-s", "5"])
        .env("AWS_ENDPOINT_URL_KINESIS", &proxy)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Polling: the second GetShardIterator call gave an iterator at LATEST.
    counts.wait_for_get_records(2, "esm").await;
    // Reads are throttled while rides 6..=10 go in, and for two seconds after; then the
    // iterator expires before anything was read. A renewal at LATEST would skip them.
    fault_proxy::throttled_while(|| put(&input, &rides(6..=10))).await;
    assert!(written_ride_ids(&client, &out).await.is_empty(), "nothing delivered before the expiry");
    fault_proxy::expire_next();
    let output = finish(mapping, Duration::from_secs(60)).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("GetShardIterator failed; retrying"), "{stderr}");
    assert!(fault_proxy::expired(), "the iterator was expired");
    let ids = written_ride_ids(&client, &out).await;
    assert_eq!(ids, (6..=10).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_function_that_cannot_start_answers_with_the_reason_and_exits() {
    let _turn = TURN.lock().await;
    kinesis().await;
    let missing = unique("no-such-stream");
    let mut function = start_function(&missing);
    let invoker = Invoker::new(&invoke_url(), true).unwrap();
    let answer = invoker.invoke_raw(&ride(1, 130)).await.unwrap();
    assert!(answer.function_error);
    assert_eq!(answer.body["errorType"], "InitFailed");
    let message = answer.body["errorMessage"].as_str().unwrap();
    assert!(message.contains("[sinks.predictions] key `stream`") && message.contains(&missing), "{message}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while function.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the function did not exit after a failed init");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The function on a registry model (`MODEL_LOCATION=models:/<name>@champion`, as the seeds'
/// `mlflow.pyfunc.load_model(f"models:/{name}@{alias}")`) answers with its registered version
/// and, with `reload_interval_s` set through the environment, follows the alias when it moves:
/// the answers switch from version 1 to version 2 once, never back.
#[tokio::test]
async fn a_registry_model_in_the_function_follows_its_alias() {
    let _turn = TURN.lock().await;
    required("MLFLOW_TRACKING_URI");
    let name = unique("lambda_rides").replace('-', "_");
    let python = root().join(".venv/bin/python");
    let registered = Command::new(&python)
        .args(["bench/python/register_ride_duration.py", &name])
        .current_dir(root())
        .stdout(Stdio::null())
        .status()
        .expect("run register_ride_duration.py (cargo xtask setup installs the venv)");
    assert!(registered.success());
    let (client, out) = (kinesis().await, unique("predictions"));
    create_stream(&client, &out, 1).await;
    let model = format!("models:/{name}@champion");
    let env = [
        ("MODEL_LOCATION", model.as_str()),
        ("RUN_ID", ""),
        ("TRIBUTARY_PROCESSORS__RIDE_DURATION__RELOAD_INTERVAL_S", "1"),
    ];
    let _function = start_function_with(&out, &env, Stdio::null());
    let invoker = Invoker::new(&invoke_url(), true).unwrap();
    let version = |answer: &tributary::tools::esm::invoke::Invocation| {
        assert!(!answer.function_error, "{:?}", answer.body);
        answer.body["predictions"][0]["version"].as_str().unwrap().to_string()
    };
    let mut versions = vec![version(&invoker.invoke_raw(&ride(1, 130)).await.unwrap())];
    let moved = Command::new(&python)
        .args([
            "-c",
            "import sys; from mlflow import MlflowClient; MlflowClient().set_registered_model_alias(*sys.argv[1:])",
            &name,
            "champion",
            "2",
        ])
        .status()
        .unwrap();
    assert!(moved.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while versions.last().is_some_and(|v| v != "2") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        versions.push(version(&invoker.invoke_raw(&ride(versions.len() as u64 + 1, 130)).await.unwrap()));
    }
    let switch = versions.iter().position(|v| v == "2").unwrap_or_else(|| panic!("never reloaded: {versions:?}"));
    assert!(switch > 0 && versions[..switch].iter().all(|v| v == "1"), "{versions:?}");
    for _ in 0..3 {
        versions.push(version(&invoker.invoke_raw(&ride(99, 130)).await.unwrap()));
    }
    assert!(versions[switch..].iter().all(|v| v == "2"), "never back: {versions:?}");
}

#[tokio::test]
async fn api_gateway_and_function_url_requests_get_the_web_service_answers() {
    let _turn = TURN.lock().await;
    let _function = start_function_with(
        "unused",
        &[("TRIBUTARY_CONFIG", "deployments/config/web-service.toml"), ("RUN_ID", "run-7")],
        Stdio::null(),
    );
    let invoker = Invoker::new(&invoke_url(), true).unwrap();
    let ride = json!({"PULocationID": 10, "DOLocationID": 50, "trip_distance": 40});
    // HTTP API / function URL (payload 2.0) and REST API (1.0) shapes, as API Gateway sends them.
    let http_api = |body: &str| {
        json!({"version": "2.0", "routeKey": "POST /predict", "rawPath": "/predict", "headers": {"x-request-id": "abc"},
               "requestContext": {"http": {"method": "POST", "path": "/predict"}, "requestId": "id-1"},
               "body": body, "isBase64Encoded": false})
    };
    let rest = |body: &str| {
        use base64::Engine;
        json!({"resource": "/predict", "path": "/predict", "httpMethod": "POST", "headers": {},
               "requestContext": {"requestId": "id-2", "stage": "prod"},
               "body": base64::engine::general_purpose::STANDARD.encode(body), "isBase64Encoded": true})
    };
    let mut durations = Vec::new();
    for event in [http_api(&ride.to_string()), rest(&ride.to_string())] {
        let answer = invoker.invoke_raw(&event).await.unwrap();
        assert!(!answer.function_error, "{:?}", answer.body);
        assert_eq!(answer.body["statusCode"], 200, "{:?}", answer.body);
        assert_eq!(answer.body["headers"]["content-type"], "application/json");
        let body: Value = serde_json::from_str(answer.body["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["model_version"], "run-7", "{body}");
        durations.push(body["duration"].as_f64().unwrap());
    }
    assert_eq!(durations[0], durations[1]);
    // The same mapping's errors and arrays.
    let bad = invoker.invoke_raw(&http_api(r#"{"PULocationID": 10}"#)).await.unwrap();
    assert_eq!(bad.body["statusCode"], 422, "{:?}", bad.body);
    assert!(bad.body["body"].as_str().unwrap().contains("`ride.DOLocationID` is missing"));
    let not_json = invoker.invoke_raw(&rest("{")).await.unwrap();
    assert_eq!(not_json.body["statusCode"], 400, "{:?}", not_json.body);
    let array = invoker.invoke_raw(&http_api(&json!([ride, {"x": 1}]).to_string())).await.unwrap();
    let body: Value = serde_json::from_str(array.body["body"].as_str().unwrap()).unwrap();
    assert_eq!(body[0]["duration"].as_f64().unwrap(), durations[0]);
    assert_eq!(body[1]["status"], 422);
    let mut elsewhere = http_api("{}");
    elsewhere["rawPath"] = json!("/other");
    assert_eq!(invoker.invoke_raw(&elsewhere).await.unwrap().body["statusCode"], 404);
}

#[tokio::test]
async fn an_s3_object_created_event_scores_that_object_into_the_output_prefix() {
    let _turn = TURN.lock().await;
    required("AWS_ENDPOINT_URL");
    let s3 = tributary_aws::s3_client().await;
    let (input, output) = (unique("lambda-tlc-in").to_lowercase(), unique("lambda-tlc-out").to_lowercase());
    for bucket in [&input, &output] {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["tlc-sample", "--month", "2024-03", "--rows", "3000", "--bad-every", "1000", "--out"])
        .arg(dir.path())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let body = std::fs::read(dir.path().join("yellow_tripdata_2024-03.parquet")).unwrap();
    let key = "incoming/yellow tripdata 2024-03.parquet"; // a space, as S3 notifications encode it
    s3.put_object().bucket(&input).key(key).body(body.into()).send().await.unwrap();
    // The config the packaged function is deployed with (the SAM template's batch function).
    let _function = start_function_with(
        "unused",
        &[
            ("TRIBUTARY_CONFIG", "deployments/config/batch-s3.toml"),
            ("TRIPS_BUCKET", &output),
            ("MODEL_LOCATION", "processors/models/ride_duration/model.onnx"),
        ],
        Stdio::null(),
    );
    let invoker = Invoker::new(&invoke_url(), true).unwrap();
    let event = json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": input, "arn": format!("arn:aws:s3:::{input}")},
               "object": {"key": "incoming/yellow+tripdata+2024-03.parquet", "size": 1}}}]});
    let answer = invoker.invoke_raw(&event).await.unwrap();
    assert!(!answer.function_error, "{:?}", answer.body);
    assert_eq!(answer.body["scored"][0]["object"], format!("s3://{input}/{key}"), "{:?}", answer.body);
    assert_eq!(answer.body["scored"][0]["rows"], 3000);
    assert_eq!(answer.body["scored"][0]["dead_lettered"], 3);
    let listed = s3.list_objects_v2().bucket(&output).send().await.unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    let (dead, predictions): (Vec<&str>, Vec<&str>) =
        keys.iter().partition(|k| k.starts_with("predictions/_dead_letters/"));
    assert_eq!(predictions, ["predictions/yellow tripdata 2024-03.parquet"]);
    let mut dead_rows = 0;
    for key in dead {
        let body = s3.get_object().bucket(&output).key(key).send().await.unwrap().body.collect().await.unwrap();
        for line in String::from_utf8(body.into_bytes().to_vec()).unwrap().lines() {
            let entry: Value = serde_json::from_str(line).unwrap();
            assert!(entry["position"]["partition"].as_str().unwrap().starts_with(&format!("s3://{input}/")), "{entry}");
            dead_rows += 1;
        }
    }
    assert_eq!(dead_rows, 3, "the bad rows, with the object they came from");
    // Anything but an S3 notification is refused, naming what the function takes.
    let refused = invoker.invoke_raw(&ride(1, 130)).await.unwrap();
    assert!(refused.function_error, "{:?}", refused.body);
    assert!(refused.body.to_string().contains("S3 ObjectCreated"), "{:?}", refused.body);
}
