//! `tributary put` and `tributary tail` on kinesis-mock (`AWS_ENDPOINT_URL_KINESIS`): what the
//! seeds did with the aws cli, `jq` and `base64 --decode`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::fault_proxy;
use common::{create_stream, kinesis, open_shards, put, ride, rides, split, unique};
use serde_json::Value;

fn tail(stream: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tributary"));
    cmd.args(["tail", "--stream", stream]).args(extra);
    cmd
}

fn ride_id(line: &Value) -> u64 {
    line["ride_id"].as_u64().unwrap_or_else(|| panic!("no ride_id in {line}"))
}

/// The lines a child prints on stdout, parsed as JSON, as they come.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<Value> {
    let (lines, received) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if lines.send(serde_json::from_str::<Value>(&line).unwrap()).is_err() {
                return;
            }
        }
    });
    received
}

/// The ride ids of the next `count` lines, or of those that came within `wait`.
fn ride_ids(received: &mpsc::Receiver<Value>, count: usize, wait: Duration) -> Vec<u64> {
    let deadline = Instant::now() + wait;
    let mut ids = Vec::new();
    while ids.len() < count && Instant::now() < deadline {
        if let Ok(line) = received.recv_timeout(Duration::from_millis(200)) {
            ids.push(ride_id(&line));
        }
    }
    ids
}

#[tokio::test]
async fn tail_prints_what_put_wrote_decoded_from_every_shard() {
    let client = kinesis().await;
    let stream = unique("tail");
    create_stream(&client, &stream, 2).await;
    put(&stream, &rides(1..=10));

    let output = tail(&stream, &["--metadata"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<Value> =
        String::from_utf8(output.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut ids: Vec<u64> = lines.iter().map(|l| ride_id(&l["data"])).collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=10).collect::<Vec<_>>());
    for line in &lines {
        assert_eq!(line["partition_key"], ride_id(&line["data"]).to_string(), "keyed by ride_id: {line}");
        assert_eq!(line["data"]["ride"]["PULocationID"], 130);
        assert!(line["shard"].as_str().unwrap().starts_with("shardId-"), "{line}");
    }
    let shards: std::collections::BTreeSet<&str> = lines.iter().map(|l| l["shard"].as_str().unwrap()).collect();
    assert_eq!(shards.len(), 2, "10 keys land in both shards: {lines:?}");
}

#[tokio::test]
async fn put_refuses_a_record_over_one_mebibyte_before_sending_any() {
    let client = kinesis().await;
    let stream = unique("put-limits");
    create_stream(&client, &stream, 1).await;
    // Six good rides of 1 MB (more than one call's 5 MiB), then one over 1 MiB.
    let padded = |id: u64, bytes: usize| {
        let mut ride = ride(id, 130);
        ride["note"] = Value::String("x".repeat(bytes));
        ride
    };
    let input: String = (1..=6).map(|id| format!("{}\n", padded(id, 1_000_000))).collect();
    let input = format!("{input}{}\n", padded(7, 1024 * 1024));
    let mut child = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["put", "--stream", &stream])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("input 6: record is") && stderr.contains("over Kinesis' 1 MiB limit"), "{stderr}");
    let printed = tail(&stream, &[]).output().unwrap();
    assert!(printed.status.success(), "{}", String::from_utf8_lossy(&printed.stderr));
    assert!(printed.stdout.is_empty(), "nothing was put, not even the good rides before it");
}

#[tokio::test]
async fn tail_follow_reads_new_records_and_the_children_of_a_split() {
    let client = kinesis().await;
    let stream = unique("follow");
    create_stream(&client, &stream, 1).await;
    put(&stream, &[ride(1, 130)]);

    let mut child = tail(&stream, &["--follow"]).stdout(Stdio::piped()).spawn().unwrap();
    let received = lines_of(&mut child);
    // Ride 1 printed: tail has listed the shards, so it must find the split's children by
    // listing again.
    let first = received.recv_timeout(Duration::from_secs(20)).expect("tail printed nothing");
    let mut ids = vec![ride_id(&first)];
    put(&stream, &rides(2..=5));
    split(&client, &stream, &open_shards(&client, &stream).await[0]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    put(&stream, &rides(6..=25));

    ids.extend(ride_ids(&received, 24, Duration::from_secs(20)));
    let _ = child.kill();
    let _ = child.wait();
    ids.sort_unstable();
    assert_eq!(ids, (1..=25).collect::<Vec<_>>(), "rides 6..=25 are in the children of the split");
}

// Multi-threaded: the fault proxy runs on this runtime while the test blocks on `put` and on
// tail's lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_from_latest_renews_an_expired_iterator_from_when_it_started() {
    let (proxy, counts) = common::fault_proxy::in_front_of_kinesis(fault_proxy::by_phase).await;
    let client = kinesis().await;
    let stream = unique("tail-latest");
    create_stream(&client, &stream, 1).await;
    put(&stream, &[ride(1, 130)]); // before tail starts: not for `latest`

    let mut child = tail(&stream, &["--from", "latest", "--follow"])
        .env("AWS_ENDPOINT_URL_KINESIS", &proxy)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let received = lines_of(&mut child);
    counts.wait_for_get_records(2, "tail").await;
    // Reads are throttled while rides 2..=4 go in, and for two seconds after; then the iterator
    // expires before anything was printed. A renewal at LATEST would skip them.
    fault_proxy::throttled_while(|| put(&stream, &rides(2..=4))).await;
    assert!(received.try_recv().is_err(), "nothing printed before the expiry (the renewal is what is tested)");
    fault_proxy::expire_next();
    let ids = ride_ids(&received, 3, Duration::from_secs(20));
    let _ = child.kill();
    let _ = child.wait();
    assert!(fault_proxy::expired(), "the iterator was expired");
    assert_eq!(ids, vec![2, 3, 4]);
}
