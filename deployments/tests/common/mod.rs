//! Helpers shared by the integration tests that need the local services.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod fault_proxy;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::{Shard, ShardIteratorType, StreamStatus};
use serde_json::{Value, json};

/// The repository root, from `CARGO_MANIFEST_DIR` as cargo sets it when it runs the tests (read
/// at run time: a compiled-in path would be another clone's when clones share a target directory).
pub fn root() -> PathBuf {
    Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR: run the tests with cargo test"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn required(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: start the local services with `cargo xtask services up` and export the \
             variables it prints (`cargo xtask test` does both)"
        )
    })
}

pub fn invoke_url() -> String {
    format!("{}/2015-03-31/functions/tributary-lambda/invocations", required("TRIBUTARY_LAMBDA_EMULATOR"))
}

pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

pub async fn kinesis() -> Client {
    required("AWS_ENDPOINT_URL_KINESIS");
    tributary_aws::kinesis_client().await
}

/// Creates a DynamoDB lease table `name` (hash key `leaseKey`, type S) on moto
/// (`AWS_ENDPOINT_URL`).
pub async fn create_lease_table(name: &str) {
    use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
    required("AWS_ENDPOINT_URL");
    let schema = KeySchemaElement::builder().attribute_name("leaseKey").key_type(KeyType::Hash).build().unwrap();
    let attribute = AttributeDefinition::builder()
        .attribute_name("leaseKey")
        .attribute_type(ScalarAttributeType::S)
        .build()
        .unwrap();
    tributary_aws::dynamodb_client()
        .await
        .create_table()
        .table_name(name)
        .key_schema(schema)
        .attribute_definitions(attribute)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("CreateTable on moto");
}

pub async fn create_stream(client: &Client, name: &str, shards: i32) {
    client.create_stream().stream_name(name).shard_count(shards).send().await.expect("CreateStream on kinesis-mock");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let summary = client.describe_stream_summary().stream_name(name).send().await;
        if let Ok(s) = summary
            && s.stream_description_summary().is_some_and(|d| d.stream_status() == &StreamStatus::Active)
        {
            return;
        }
        assert!(Instant::now() < deadline, "stream {name} never became ACTIVE");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for `child` (collecting its piped output) for at most `limit` without blocking the
/// test's runtime (a proxy may run on it); kills it and fails after that.
pub async fn finish(child: std::process::Child, limit: Duration) -> std::process::Output {
    let pid = child.id().to_string();
    let waiting = tokio::task::spawn_blocking(move || child.wait_with_output());
    match tokio::time::timeout(limit, waiting).await {
        Ok(output) => output.unwrap().unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg(&pid).status();
            panic!("process {pid} did not finish within {limit:?}");
        }
    }
}

/// The open shards of a stream (those without an ending sequence number).
pub async fn open_shards(client: &Client, stream: &str) -> Vec<Shard> {
    let listing = client.list_shards().stream_name(stream).send().await.unwrap();
    listing.shards().iter().filter(|s| !tributary_aws::shard_is_closed(s)).cloned().collect()
}

/// Splits `shard` of `stream` into two halves of its hash key range.
pub async fn split(client: &Client, stream: &str, shard: &Shard) {
    let range = shard.hash_key_range().unwrap();
    let middle = (range.starting_hash_key().parse::<u128>().unwrap() / 2
        + range.ending_hash_key().parse::<u128>().unwrap() / 2)
        .to_string();
    client
        .split_shard()
        .stream_name(stream)
        .shard_to_split(shard.shard_id())
        .new_starting_hash_key(middle)
        .send()
        .await
        .expect("SplitShard on kinesis-mock");
}

/// Every record of a stream: (partition key, decoded JSON).
pub async fn read_stream(client: &Client, name: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let shards = client.list_shards().stream_name(name).send().await.unwrap();
    for shard in shards.shards() {
        let mut iterator = client
            .get_shard_iterator()
            .stream_name(name)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        while let Some(it) = iterator {
            let page = client.get_records().shard_iterator(it).send().await.unwrap();
            for r in page.records() {
                out.push((r.partition_key().to_string(), serde_json::from_slice(r.data().as_ref()).unwrap()));
            }
            if page.records().is_empty() {
                break;
            }
            iterator = page.next_shard_iterator;
        }
    }
    out
}

/// The ride ids of the predictions on `stream`, in the order they were written.
pub async fn written_ride_ids(client: &Client, stream: &str) -> Vec<u64> {
    read_stream(client, stream).await.iter().map(|(_, v)| v["prediction"]["ride_id"].as_u64().unwrap()).collect()
}

/// Puts `values` with one PutRecords call from this process, keyed by `ride_id` (faster than
/// `put`, for tests that must act right after the records are in).
pub async fn put_now(client: &Client, stream: &str, values: &[Value]) {
    let entries = values
        .iter()
        .map(|v| {
            aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                .data(aws_sdk_kinesis::primitives::Blob::new(v.to_string()))
                .partition_key(v["ride_id"].to_string())
                .build()
                .unwrap()
        })
        .collect::<Vec<_>>();
    client.put_records().stream_name(stream).set_records(Some(entries)).send().await.unwrap();
}

pub fn ride_ids(records: &[(String, Value)]) -> Vec<u64> {
    let mut ids: Vec<u64> = records.iter().map(|(_, v)| v["prediction"]["ride_id"].as_u64().unwrap()).collect();
    ids.sort_unstable();
    ids
}

pub fn ride(id: u64, pu: u64) -> Value {
    json!({"ride": {"PULocationID": pu, "DOLocationID": 205, "trip_distance": 3.66}, "ride_id": id})
}

/// A function process under the Lambda emulator, stopped on drop.
pub struct Function(pub std::process::Child);

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Rides `ids`, all picked up in zone 130.
pub fn rides(ids: std::ops::RangeInclusive<u64>) -> Vec<Value> {
    ids.map(|id| ride(id, 130)).collect()
}

/// `tributary esm --stream STREAM --function URL`, its log level set by its flags alone
/// (`RUST_LOG` removed: some tests read its log).
pub fn esm_command(stream: &str, function: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tributary"));
    cmd.args(["esm", "--stream", stream, "--function", function]).env_remove("RUST_LOG");
    cmd
}

/// The invocation records `esm --on-failure PATH` wrote, one per line.
/// The JSON values of a JSON-lines file, blank lines skipped; none when the file is missing.
pub fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

pub fn on_failure_records(path: &Path) -> Vec<Value> {
    let lines = std::fs::read_to_string(path).unwrap();
    lines.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

/// `tributary put --stream STREAM`, the values on stdin.
pub fn put(stream: &str, values: &[Value]) {
    put_with(&["--stream", stream], values.iter().map(Value::to_string));
}

/// `tributary put ARGS`, one line per item on stdin.
pub fn put_with(args: &[&str], lines: impl IntoIterator<Item = String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .arg("put")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for line in lines {
        writeln!(stdin, "{line}").unwrap();
    }
    drop(stdin);
    assert!(child.wait().unwrap().success(), "tributary put {args:?} failed");
}

/// Sends `name` (`-INT`, `-KILL`) to a child process.
pub fn signal(child: &std::process::Child, name: &str) {
    assert!(Command::new("kill").args([name, &child.id().to_string()]).status().unwrap().success());
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The response of `tributary run --metrics-addr 127.0.0.1:PORT`, if it answers.
pub fn scrape(port: u16) -> Option<String> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

/// One series' value from [`scrape`]: the first line starting with `series` (a name, with its
/// labels if it has any).
pub fn metric(port: u16, series: &str) -> Option<f64> {
    scrape(port)?.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}
