//! The standalone Kinesis worker (`tributary run` with `deployments/config/kinesis-worker.toml`)
//! against kinesis-mock: stop and restart, a killed worker, and a shard split during processing,
//! with every ride_id accounted for in the output stream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use common::{create_stream, kinesis, open_shards, put, ride, root, signal, split, unique, written_ride_ids};
use serde_json::Value;

/// `tributary run` with kinesis-worker.toml from `input` to `output`; callers add the rest.
fn worker_command(input: &str, output: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tributary"));
    cmd.current_dir(root())
        .args(["run", "--no-status", "--config", "deployments/config/kinesis-worker.toml"])
        .env("INPUT_STREAM", input)
        .env("PREDICTIONS_STREAM_NAME", output)
        .env_remove("RUN_ID")
        .env_remove("MODEL_LOCATION")
        .env_remove("LEASE_TABLE")
        .stdout(Stdio::null());
    cmd
}

/// Splits the only shard of `stream` in two halves of its hash key range.
async fn split_only_shard(client: &Client, stream: &str) {
    let shards = open_shards(client, stream).await;
    split(client, stream, &shards[0]).await;
}

fn worker(input: &str, output: &str, checkpoints: &Path) -> Child {
    worker_command(input, output)
        .env("CHECKPOINT_DIR", checkpoints)
        .env("TRIBUTARY_PIPELINE__BATCH_SIZE", "50")
        .env("TRIBUTARY_PIPELINE__COMMIT_INTERVAL_MS", "200")
        .env("TRIBUTARY_SOURCES__RIDES__DISCOVERY_INTERVAL_MS", "500")
        .stderr(Stdio::null())
        .spawn()
        .expect("start tributary run")
}

/// Ride ids in the output stream, in stream order.
/// Waits until the output holds at least `n` distinct ride ids.
async fn wait_for(client: &Client, stream: &str, n: usize) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ids = written_ride_ids(client, stream).await;
        let mut distinct = ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() >= n {
            return ids;
        }
        assert!(Instant::now() < deadline, "only {} of {n} rides arrived", distinct.len());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn rides(ids: std::ops::RangeInclusive<u64>) -> Vec<Value> {
    ids.map(|id| ride(id, 1 + id % 265)).collect()
}

fn assert_all_once_or_more(ids: &[u64], n: u64) -> usize {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    let duplicates = sorted.len() - {
        let mut d = sorted.clone();
        d.dedup();
        d.len()
    };
    sorted.dedup();
    assert_eq!(sorted, (1..=n).collect::<Vec<_>>(), "every ride_id exactly accounted for");
    duplicates
}

async fn stop_mid_stream_and_resume(kill: bool) -> usize {
    let client = kinesis().await;
    let (input, output) = (unique("rides"), unique("predictions"));
    create_stream(&client, &input, 4).await;
    create_stream(&client, &output, 1).await;
    let checkpoints = tempfile::tempdir().unwrap();
    put(&input, &rides(1..=1000));

    let mut first = worker(&input, &output, checkpoints.path());
    wait_for(&client, &output, 200).await;
    // Stop once every shard has a checkpoint (before that, a kill would race the first commits).
    let checkpoint_file = checkpoints.path().join(format!("{input}.json"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read(&checkpoint_file)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .is_none_or(|c| c["shards"].as_object().map_or(0, serde_json::Map::len) < 4)
    {
        assert!(Instant::now() < deadline, "no checkpoint for every shard");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&first, if kill { "-KILL" } else { "-INT" });
    let status = first.wait().unwrap();
    assert_eq!(status.success(), !kill, "{status}");
    let checkpoint: Value = serde_json::from_slice(&std::fs::read(&checkpoint_file).unwrap()).unwrap();
    assert_eq!(checkpoint["shards"].as_object().unwrap().len(), 4, "{checkpoint}");

    put(&input, &rides(1001..=1200));
    let mut second = worker(&input, &output, checkpoints.path());
    let ids = wait_for(&client, &output, 1200).await;
    signal(&second, "-INT");
    assert!(second.wait().unwrap().success());
    assert_all_once_or_more(&ids, 1200)
}

#[tokio::test]
async fn a_worker_stopped_mid_stream_resumes_from_its_checkpoints() {
    let duplicates = stop_mid_stream_and_resume(false).await;
    assert_eq!(duplicates, 0, "a graceful stop commits everything it delivered");
}

#[tokio::test]
async fn a_killed_worker_loses_nothing_and_repeats_little() {
    let duplicates = stop_mid_stream_and_resume(true).await;
    // At most what was delivered after the last commit (200 ms) was redone.
    assert!(duplicates <= 500, "{duplicates} duplicates");
}

#[tokio::test]
async fn a_split_shard_is_finished_before_its_children_start() {
    let client = kinesis().await;
    let (input, output) = (unique("rides"), unique("predictions"));
    create_stream(&client, &input, 1).await;
    create_stream(&client, &output, 1).await;
    put(&input, &rides(1..=300));
    split_only_shard(&client, &input).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    put(&input, &rides(301..=400));

    let checkpoints = tempfile::tempdir().unwrap();
    let mut run = worker(&input, &output, checkpoints.path());
    let ids = wait_for(&client, &output, 400).await;
    signal(&run, "-INT");
    assert!(run.wait().unwrap().success());
    assert_all_once_or_more(&ids, 400);
    let last_parent = ids.iter().rposition(|id| *id <= 300).unwrap();
    let first_child = ids.iter().position(|id| *id > 300).unwrap();
    assert!(last_parent < first_child, "a child record was delivered before the parent's last one");
    let checkpoint: Value =
        serde_json::from_slice(&std::fs::read(checkpoints.path().join(format!("{input}.json"))).unwrap()).unwrap();
    assert_eq!(checkpoint["shards"]["shardId-000000000000"]["finished"], true, "{checkpoint}");
}

/// The lease table's (shard -> owner) map.
async fn owners(table: &str) -> std::collections::BTreeMap<String, Option<String>> {
    let client = tributary_aws::dynamodb_client().await;
    let scan = client.scan().table_name(table).consistent_read(true).send().await.unwrap();
    scan.items()
        .iter()
        .map(|item| {
            let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
            (text("leaseKey").unwrap(), text("owner"))
        })
        .collect()
}

fn leased_worker(input: &str, output: &str, table: &str, id: &str) -> Child {
    worker_command(input, output)
        .env("LEASE_TABLE", table)
        .env("TRIBUTARY_SOURCES__RIDES__CHECKPOINT__WORKER_ID", id)
        .env("TRIBUTARY_SOURCES__RIDES__CHECKPOINT__LEASE_DURATION_MS", "3000")
        .env("TRIBUTARY_PIPELINE__BATCH_SIZE", "50")
        .env("TRIBUTARY_PIPELINE__COMMIT_INTERVAL_MS", "200")
        .stderr(Stdio::null())
        .spawn()
        .expect("start tributary run")
}

#[tokio::test]
async fn two_workers_share_the_shards_and_one_takes_over_when_the_other_is_killed() {
    let client = kinesis().await;
    let (input, output, table) = (unique("rides"), unique("predictions"), unique("leases"));
    common::create_lease_table(&table).await;
    create_stream(&client, &input, 4).await;
    create_stream(&client, &output, 1).await;
    put(&input, &rides(1..=800));

    let mut a = leased_worker(&input, &output, &table, "worker-a");
    let mut b = leased_worker(&input, &output, &table, "worker-b");
    // Both end up with two shards each.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = owners(&table).await;
        let count = |w: &str| now.values().filter(|o| o.as_deref() == Some(w)).count();
        if count("worker-a") == 2 && count("worker-b") == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "leases never balanced: {now:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Kill one: the other takes its shards once the leases expire (3 s), and loses nothing.
    signal(&a, "-KILL");
    a.wait().unwrap();
    put(&input, &rides(801..=1000));
    let ids = wait_for(&client, &output, 1000).await;
    assert_all_once_or_more(&ids, 1000);
    let after_kill = owners(&table).await;
    assert!(after_kill.values().all(|o| o.as_deref() == Some("worker-b")), "{after_kill:?}");
    // A graceful stop checkpoints and releases.
    signal(&b, "-INT");
    assert!(b.wait().unwrap().success());
    let after_stop = owners(&table).await;
    assert!(after_stop.values().all(Option::is_none), "leases not released: {after_stop:?}");
}

/// GetRecords calls 3 to 6 are throttled (more than the SDK's own three attempts), call 10 finds
/// its iterator expired.
fn throttle_then_expire(call: common::fault_proxy::Call, n: usize) -> Option<&'static str> {
    match (call, n) {
        (common::fault_proxy::Call::GetRecords, 3..=6) => Some("ProvisionedThroughputExceededException"),
        (common::fault_proxy::Call::GetRecords, 10) => Some("ExpiredIteratorException"),
        _ => None,
    }
}

#[tokio::test]
async fn throttling_and_an_expired_iterator_are_survived_without_loss_or_repeats() {
    let client = kinesis().await;
    let (proxy, counts) = common::fault_proxy::in_front_of_kinesis(throttle_then_expire).await;
    let (input, output) = (unique("rides"), unique("predictions"));
    create_stream(&client, &input, 2).await;
    create_stream(&client, &output, 1).await;
    put(&input, &rides(1..=300));

    let checkpoints = tempfile::tempdir().unwrap();
    let run = worker_command(&input, &output)
        .env("AWS_ENDPOINT_URL_KINESIS", &proxy)
        .env("CHECKPOINT_DIR", checkpoints.path())
        .env("TRIBUTARY_SOURCES__RIDES__MAX_RECORDS_PER_CALL", "20")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ids = wait_for(&client, &output, 300).await;
    signal(&run, "-INT");
    let finished = run.wait_with_output().unwrap();
    assert!(finished.status.success());
    let log = String::from_utf8_lossy(&finished.stderr);
    assert!(
        log.contains("read failed; backing off") && log.contains("ProvisionedThroughputExceededException"),
        "{log}"
    );
    assert!(log.contains("shard iterator expired; getting a new one"), "{log}");
    assert!(counts.injected.load(std::sync::atomic::Ordering::SeqCst) >= 5, "faults were injected");
    let duplicates = assert_all_once_or_more(&ids, 300);
    assert_eq!(duplicates, 0, "an expired iterator resumes after the last record read");
}

#[tokio::test]
async fn a_shard_split_while_the_worker_runs_is_followed() {
    let client = kinesis().await;
    let (input, output) = (unique("rides"), unique("predictions"));
    create_stream(&client, &input, 1).await;
    create_stream(&client, &output, 1).await;
    put(&input, &rides(1..=200));
    let checkpoints = tempfile::tempdir().unwrap();
    let mut run = worker(&input, &output, checkpoints.path());
    wait_for(&client, &output, 50).await;
    split_only_shard(&client, &input).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    put(&input, &rides(201..=300));
    let ids = wait_for(&client, &output, 300).await;
    signal(&run, "-INT");
    assert!(run.wait().unwrap().success());
    assert_all_once_or_more(&ids, 300);
    let last_parent = ids.iter().rposition(|id| *id <= 200).unwrap();
    let first_child = ids.iter().position(|id| *id > 200).unwrap();
    assert!(last_parent < first_child, "a child record was delivered before the parent's last one");
    let checkpoint: Value =
        serde_json::from_slice(&std::fs::read(checkpoints.path().join(format!("{input}.json"))).unwrap()).unwrap();
    assert_eq!(checkpoint["shards"].as_object().unwrap().len(), 3, "{checkpoint}");
}
