//! `tributary put` and `tributary tail` on kinesis-mock (`AWS_ENDPOINT_URL_KINESIS`): what the
//! seeds did with the aws cli, `jq` and `base64 --decode`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{create_stream, kinesis, open_shards, put, ride, split, unique};
use serde_json::Value;

fn tail(stream: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tributary"));
    cmd.args(["tail", "--stream", stream]).args(extra);
    cmd
}

fn ride_id(line: &Value) -> u64 {
    line["ride_id"].as_u64().unwrap_or_else(|| panic!("no ride_id in {line}"))
}

#[tokio::test]
async fn tail_prints_what_put_wrote_decoded_from_every_shard() {
    let client = kinesis().await;
    let stream = unique("tail");
    create_stream(&client, &stream, 2).await;
    put(&stream, &(1..=10).map(|id| ride(id, 130)).collect::<Vec<_>>());

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
async fn tail_follow_reads_new_records_and_the_children_of_a_split() {
    let client = kinesis().await;
    let stream = unique("follow");
    create_stream(&client, &stream, 1).await;
    put(&stream, &[ride(1, 130)]);

    let mut child = tail(&stream, &["--follow"]).stdout(Stdio::piped()).spawn().unwrap();
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
    // Ride 1 printed: tail has listed the shards, so it must find the split's children by
    // listing again.
    let first = received.recv_timeout(Duration::from_secs(20)).expect("tail printed nothing");
    let mut ids = vec![ride_id(&first)];
    put(&stream, &(2..=5).map(|id| ride(id, 130)).collect::<Vec<_>>());
    split(&client, &stream, &open_shards(&client, &stream).await[0]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    put(&stream, &(6..=25).map(|id| ride(id, 130)).collect::<Vec<_>>());

    let deadline = Instant::now() + Duration::from_secs(20);
    while ids.len() < 25 && Instant::now() < deadline {
        if let Ok(line) = received.recv_timeout(Duration::from_millis(200)) {
            ids.push(ride_id(&line));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    ids.sort_unstable();
    assert_eq!(ids, (1..=25).collect::<Vec<_>>(), "rides 6..=25 are in the children of the split");
}
