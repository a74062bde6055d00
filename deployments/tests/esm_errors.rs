//! `tributary esm`'s handling of function errors, on kinesis-mock (`AWS_ENDPOINT_URL_KINESIS`)
//! with a function double on loopback: the tributary function never fails a Kinesis batch as a
//! whole (it reports failed records instead), so the double plays a function that raises an
//! error for any batch holding a poison ride, and records every batch it was sent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use common::{create_stream, esm_command, finish, kinesis, on_failure_records, put, ride, rides, unique};
use serde_json::{Value, json};
use tokio::io::{AsyncWriteExt, BufReader};

/// The ride ids of each event the double was sent, in order.
type Batches = Arc<Mutex<Vec<Vec<u64>>>>;

/// The invoke URL of a function that raises an error (`X-Amz-Function-Error: Unhandled`) for any
/// event holding ride `poison`, and succeeds otherwise.
async fn function_failing_on(poison: u64) -> (String, Batches) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/2015-03-31/functions/poisoned/invocations", listener.local_addr().unwrap());
    (url, serve_function(listener, poison))
}

/// Serves the function of [`function_failing_on`] on `listener`.
fn serve_function(listener: tokio::net::TcpListener, poison: u64) -> Batches {
    let batches = Batches::default();
    let seen = batches.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut read = BufReader::new(read);
                while let Some((_, body)) = common::fault_proxy::read_message(&mut read).await {
                    let event: Value = serde_json::from_slice(&body).unwrap();
                    let ids: Vec<u64> = event["Records"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| {
                            let data = base64::engine::general_purpose::STANDARD
                                .decode(r["kinesis"]["data"].as_str().unwrap())
                                .unwrap();
                            serde_json::from_slice::<Value>(&data).unwrap()["ride_id"].as_u64().unwrap()
                        })
                        .collect();
                    let failing = ids.contains(&poison);
                    seen.lock().unwrap().push(ids);
                    let (header, answer) = if failing {
                        ("X-Amz-Function-Error: Unhandled\r\n", json!({"errorType": "Poison", "errorMessage": "ride"}))
                    } else {
                        ("", json!({"batchItemFailures": []}))
                    };
                    let answer = answer.to_string();
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{header}Content-Length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                    if write.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    batches
}

// Multi-threaded: the double answers while the test waits for `esm`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bisecting_isolates_the_poison_ride_without_using_up_its_retries() {
    let client = kinesis().await;
    let input = unique("rides");
    create_stream(&client, &input, 1).await;
    put(&input, &rides(1..=16));
    let (url, batches) = function_failing_on(7).await;
    let failures = tempfile::NamedTempFile::new().unwrap();
    let mut esm = esm_command(&input, &url);
    esm.args([
        "--batch-size",
        "16",
        "--bisect-batch-on-function-error",
        "--maximum-retry-attempts",
        "1",
        "--retry-backoff-ms",
        "50",
    ])
    .args(["--exit-when-idle-s", "1", "--on-failure"])
    .arg(failures.path())
    .stderr(Stdio::piped());
    let output = finish(esm.spawn().unwrap(), Duration::from_secs(60)).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    // Halves until ride 7 is alone; splitting is not a retry (as on AWS), so ride 7 alone still
    // gets its one retry before it is given up on; every other ride is delivered once.
    let range = |ids: std::ops::RangeInclusive<u64>| ids.collect::<Vec<_>>();
    let expected = [range(1..=16), range(1..=8), range(1..=4), range(5..=8), range(5..=6), range(7..=8)]
        .into_iter()
        .chain([vec![7], vec![7], vec![8], range(9..=16)])
        .collect::<Vec<_>>();
    assert_eq!(*batches.lock().unwrap(), expected);

    // The on-failure file has AWS's invocation record for ride 7 alone.
    let records = on_failure_records(failures.path());
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record["requestContext"]["condition"], "RetryAttemptsExhausted");
    // Invocations that held ride 7: four batches on the way down, then alone and its retry.
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 6);
    assert!(record["requestContext"]["functionArn"].as_str().unwrap().ends_with(":function:poisoned"), "{record}");
    assert_eq!(record["responseContext"]["functionError"], "Unhandled");
    let batch = &record["KinesisBatchInfo"];
    assert_eq!(batch["batchSize"], 1);
    assert_eq!(batch["startSequenceNumber"], batch["endSequenceNumber"]);
    assert!(batch["streamArn"].as_str().unwrap().ends_with(&format!(":stream/{input}")), "{record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_older_than_the_maximum_age_are_given_up_on_unsent() {
    let client = kinesis().await;
    let input = unique("rides");
    create_stream(&client, &input, 1).await;
    put(&input, &rides(1..=3));
    tokio::time::sleep(Duration::from_secs(4)).await;
    put(&input, &rides(4..=6));
    let (url, batches) = function_failing_on(0).await;
    let failures = tempfile::NamedTempFile::new().unwrap();
    let mut esm = esm_command(&input, &url);
    esm.args(["--maximum-record-age-s", "3", "--exit-when-idle-s", "1", "--on-failure"])
        .arg(failures.path())
        .stderr(Stdio::piped());
    let output = finish(esm.spawn().unwrap(), Duration::from_secs(60)).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    assert_eq!(*batches.lock().unwrap(), vec![vec![4, 5, 6]], "only the fresh rides are sent");
    let records = on_failure_records(failures.path());
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record["requestContext"]["condition"], "RecordAgeExceeded");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 0);
    assert!(record.get("responseContext").is_none(), "never sent, never answered: {record}");
    assert_eq!(record["KinesisBatchInfo"]["batchSize"], 3);
}

/// Runs `esm` on `input` with `extra` flags, puts rides 1, 2 and 3 1.5 s apart from 6 s after it
/// starts reading the shard, and returns the batches the function got. (The delay puts ride 1
/// after the end of a window that would start with the reading rather than with the first
/// record. The spacing is well above the reader's 200 ms polling: at 600 ms apart, a loaded CI
/// run once delivered rides 2 and 3 in one batch without any window.)
async fn batches_of_three_rides_put_apart(input: &str, extra: &[&str]) -> Vec<Vec<u64>> {
    let (url, batches) = function_failing_on(0).await;
    let mut esm = esm_command(input, &url);
    // Idle longer than the 6 s before the first ride, or it would stop before it.
    esm.args(["--exit-when-idle-s", "9", "-v"]).args(extra).stderr(Stdio::piped());
    let mut child = esm.spawn().unwrap();
    // Wait for its "reading shard" line, then keep draining its log.
    let mut log = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("reading shard") {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut log, &mut line).unwrap() > 0, "esm ended before reading");
    }
    std::thread::spawn(move || std::io::copy(&mut log, &mut std::io::sink()));
    tokio::time::sleep(Duration::from_millis(6000)).await;
    for id in 1..=3 {
        put(input, &[ride(id, 130)]);
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let output = finish(child, Duration::from_secs(60)).await;
    assert!(output.status.success());
    batches.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batching_window_gathers_records_that_arrive_within_it() {
    let client = kinesis().await;
    let (without, with) = (unique("rides"), unique("rides"));
    create_stream(&client, &without, 1).await;
    create_stream(&client, &with, 1).await;
    // Without a window each ride is sent as soon as it is read; with a 5.5 s window, from the
    // first ride read, all three (3 s apart first to last) go together.
    assert_eq!(batches_of_three_rides_put_apart(&without, &[]).await, vec![vec![1], vec![2], vec![3]]);
    let window = ["--batching-window-ms", "5500"];
    assert_eq!(batches_of_three_rides_put_apart(&with, &window).await, vec![vec![1, 2, 3]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_that_cannot_be_reached_is_tried_again_without_using_retries() {
    let client = kinesis().await;
    let input = unique("rides");
    create_stream(&client, &input, 1).await;
    put(&input, &rides(1..=3));
    // A port nothing listens on, for now.
    let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("http://{address}/2015-03-31/functions/later/invocations");
    let failures = tempfile::NamedTempFile::new().unwrap();
    let mut esm = esm_command(&input, &url);
    esm.args(["--maximum-retry-attempts", "0", "--exit-when-idle-s", "1", "--on-failure"])
        .arg(failures.path())
        .stderr(Stdio::piped());
    let mut child = esm.spawn().unwrap();
    // With no retries allowed, a failed invocation would be given up on at once. The function
    // comes up after esm has failed to reach it (twice).
    let mut log = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut failed_calls = 0;
    let mut line = String::new();
    while failed_calls < 2 {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut log, &mut line).unwrap() > 0, "esm ended early");
        failed_calls += usize::from(line.contains("cannot invoke the function; trying again"));
    }
    std::thread::spawn(move || std::io::copy(&mut log, &mut std::io::sink()));
    let batches = serve_function(tokio::net::TcpListener::bind(address).await.unwrap(), 0);
    let output = finish(child, Duration::from_secs(60)).await;
    assert!(output.status.success());
    assert_eq!(*batches.lock().unwrap(), vec![vec![1, 2, 3]]);
    assert_eq!(std::fs::read_to_string(failures.path()).unwrap(), "", "nothing given up on");
}
