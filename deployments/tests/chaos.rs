//! Chaos for the Kinesis worker: three workers sharing an 8-shard stream through a DynamoDB
//! lease table (moto), rides written continuously; every three seconds one worker is killed
//! (SIGKILL) and a new one started; one shard is split mid-run; GetRecords calls are throttled
//! through the fault proxy. At the end every ride id has been delivered (none lost), and the
//! duplicates stay within what the commit interval allows. Prints the figures (records, lost,
//! duplicates, kills, takeovers); `cargo xtask test -- --nocapture chaos` shows them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::fault_proxy::{self, Call};
use common::{create_stream, kinesis, open_shards, put_now, ride, root, signal, split, unique, written_ride_ids};

/// Batch size and commit interval of the workers: they bound the duplicates.
const BATCH: u64 = 50;
const COMMIT_MS: u64 = 200;

/// Every ninth GetRecords call is throttled.
fn throttle_some(call: Call, n: usize) -> Option<&'static str> {
    (call == Call::GetRecords && n % 9 == 4).then_some("ProvisionedThroughputExceededException")
}

fn worker(proxy: &str, input: &str, output: &str, table: &str, id: &str, log: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tributary"))
        .current_dir(root())
        // -v: info lines, where lease take-overs are logged.
        .args(["-v", "run", "--no-status", "--config", "deployments/config/kinesis-worker.toml"])
        .env("AWS_ENDPOINT_URL_KINESIS", proxy)
        .env("INPUT_STREAM", input)
        .env("PREDICTIONS_STREAM_NAME", output)
        .env("LEASE_TABLE", table)
        .env_remove("RUN_ID")
        .env_remove("MODEL_LOCATION")
        .env("TRIBUTARY_SOURCES__RIDES__CHECKPOINT__WORKER_ID", id)
        .env("TRIBUTARY_SOURCES__RIDES__CHECKPOINT__LEASE_DURATION_MS", "2000")
        .env("TRIBUTARY_SOURCES__RIDES__DISCOVERY_INTERVAL_MS", "1000")
        .env("TRIBUTARY_PIPELINE__BATCH_SIZE", BATCH.to_string())
        .env("TRIBUTARY_PIPELINE__COMMIT_INTERVAL_MS", COMMIT_MS.to_string())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start tributary run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_kinesis_workers_killed_restarted_throttled_and_resharded_lose_nothing() {
    let client = kinesis().await;
    let (proxy, counts) = fault_proxy::in_front_of_kinesis(throttle_some).await;
    let (input, output, table) = (unique("chaos-rides"), unique("chaos-predictions"), unique("chaos-leases"));
    common::create_lease_table(&table).await;
    create_stream(&client, &input, 8).await;
    create_stream(&client, &output, 1).await;
    let logs = tempfile::tempdir().unwrap();

    // Rides written continuously: 40 every 200 ms until told to stop.
    let written = Arc::new(AtomicU64::new(0));
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (client, input, written, writing) = (client.clone(), input.clone(), written.clone(), writing.clone());
        tokio::spawn(async move {
            while writing.load(Ordering::SeqCst) {
                let from = written.load(Ordering::SeqCst) + 1;
                let rides: Vec<_> = (from..from + 40).map(|id| ride(id, 1 + id % 265)).collect();
                put_now(&client, &input, &rides).await;
                written.fetch_add(40, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    let mut started = 0;
    let mut start = |workers: &mut Vec<Child>| {
        started += 1;
        let id = format!("worker-{started}");
        workers.push(worker(&proxy, &input, &output, &table, &id, &logs.path().join(format!("{id}.log"))));
    };
    let mut workers = Vec::new();
    for _ in 0..3 {
        start(&mut workers);
    }
    let began = Instant::now();
    let mut kills = 0;
    let mut split_done = false;
    while began.elapsed() < Duration::from_secs(18) {
        tokio::time::sleep(Duration::from_secs(3)).await;
        // Kill the oldest worker and start a new one in its place.
        let victim = workers.remove(0);
        signal(&victim, "-KILL");
        let _ = tokio::task::spawn_blocking(move || {
            let mut victim = victim;
            victim.wait()
        })
        .await;
        kills += 1;
        start(&mut workers);
        if !split_done && began.elapsed() > Duration::from_secs(7) {
            let shards = open_shards(&client, &input).await;
            split(&client, &input, &shards[0]).await;
            split_done = true;
        }
    }
    writing.store(false, Ordering::SeqCst);
    writer.await.unwrap();
    let total = written.load(Ordering::SeqCst);

    // Every ride delivered, within a minute of the last write.
    let deadline = Instant::now() + Duration::from_secs(60);
    let ids = loop {
        let ids = written_ride_ids(&client, &output).await;
        let mut distinct = ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() as u64 >= total || Instant::now() > deadline {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for w in &workers {
        signal(w, "-INT");
    }
    for w in workers {
        let _ = tokio::task::spawn_blocking(move || {
            let mut w = w;
            w.wait()
        })
        .await;
    }
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let lost: Vec<u64> = (1..=total).filter(|id| distinct.binary_search(id).is_err()).collect();
    let duplicates = ids.len() - distinct.len();
    let mut takeovers = 0;
    for entry in std::fs::read_dir(logs.path()).unwrap() {
        let log = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        takeovers += log.lines().filter(|l| l.contains("lease taken") && !l.contains("previous=None")).count();
    }
    let throttled = counts.injected.load(Ordering::SeqCst);
    eprintln!(
        "chaos (kinesis): {total} rides written, {} delivered, {} lost, {duplicates} duplicates, {kills} kills, \
         {takeovers} takeovers, {throttled} GetRecords calls throttled, 1 shard split",
        ids.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "lost rides: {:?}", &lost[..lost.len().min(20)]);
    assert!(throttled > 0 && split_done);
    // A killed worker repeats at most what it delivered since its last commit: its batches in
    // flight and one commit interval. Each kill and each takeover may cost that much.
    let bound = (kills + takeovers) as u64 * 4 * BATCH;
    assert!((duplicates as u64) <= bound, "{duplicates} duplicates, over the bound {bound}");
}
