//! Benchmark 5: one Kinesis worker end to end (input stream -> ONNX -> output stream, on
//! loopback kinesis-mock), next to a Python consumer written the seeds' way
//! (`bench/python/kinesis_consumer.py`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use serde_json::Value;
use tributary_framework::Source;
use tributary_sources::generator::{GeneratorConfig, GeneratorSource};

use crate::metric;

const SHARDS: i32 = 4;

async fn stream_with_rides(client: &aws_sdk_kinesis::Client, name: &str, count: usize) -> Result<()> {
    client.create_stream().stream_name(name).shard_count(SHARDS).send().await.context("CreateStream")?;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut generator = GeneratorSource::new(
        "bench".into(),
        GeneratorConfig { count: Some(count as u64), rate: None, seed: 11, first_ride_id: 1 },
    );
    while let Some(batch) = generator.next_batch(500).await? {
        let entries = batch
            .iter()
            .enumerate()
            .map(|(i, r)| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(r.raw_bytes().to_vec()))
                    .partition_key(i.to_string())
                    .build()
                    .map_err(anyhow::Error::from)
            })
            .collect::<Result<Vec<_>>>()?;
        let out =
            client.put_records().stream_name(name).set_records(Some(entries)).send().await.context("PutRecords")?;
        if out.failed_record_count().unwrap_or(0) > 0 {
            bail!("kinesis-mock refused records while filling {name}");
        }
    }
    Ok(())
}

async fn empty_stream(client: &aws_sdk_kinesis::Client, name: &str) -> Result<()> {
    client.create_stream().stream_name(name).shard_count(1).send().await.context("CreateStream")?;
    tokio::time::sleep(Duration::from_millis(700)).await;
    Ok(())
}

/// Records/s of the Rust worker and of the Python consumer over `count` rides.
pub async fn compare(root: &Path, bin: &Path, pickle: &Path, count: usize) -> Result<()> {
    let client = tributary_aws::kinesis_client().await;
    let pid = std::process::id();
    let (rust_in, rust_out, py_in, py_out) =
        (format!("wb-rin-{pid}"), format!("wb-rout-{pid}"), format!("wb-pin-{pid}"), format!("wb-pout-{pid}"));
    stream_with_rides(&client, &rust_in, count).await?;
    stream_with_rides(&client, &py_in, count).await?;
    empty_stream(&client, &rust_out).await?;
    empty_stream(&client, &py_out).await?;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let checkpoints = tempfile::tempdir()?;
    let started = Instant::now();
    let mut worker = Command::new(bin)
        .current_dir(root)
        .args(["run", "--no-status", "--config", "deployments/config/kinesis-worker.toml", "--metrics-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .env("INPUT_STREAM", &rust_in)
        .env("PREDICTIONS_STREAM_NAME", &rust_out)
        .env("CHECKPOINT_DIR", checkpoints.path())
        .env("RUN_ID", "bench")
        .env_remove("LEASE_TABLE")
        .stdout(Stdio::null())
        .spawn()?;
    while metric(port, "tributary_outputs_delivered_total") < count as f64 {
        if started.elapsed() > Duration::from_secs(300) {
            let _ = worker.kill();
            bail!("the worker did not deliver {count} records in 5 minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let rust_secs = started.elapsed().as_secs_f64();
    let _ = Command::new("kill").args(["-INT", &worker.id().to_string()]).status();
    worker.wait()?;

    let output = Command::new(root.join(".venv/bin/python"))
        .args(["bench/python/kinesis_consumer.py", &py_in, &py_out, &count.to_string()])
        .env("MODEL_PATH", pickle)
        .output()?;
    if !output.status.success() {
        bail!("the Python consumer failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let result: Value = serde_json::from_slice(&output.stdout)?;
    let py_secs = result["seconds"].as_f64().unwrap_or(f64::NAN);
    println!("| | tributary worker | seeds'-style Python consumer | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| {count} rides, {SHARDS} shards -> 1 shard, process start to last delivery | {rust_secs:.2} s ({:.0} records/s) | {py_secs:.2} s ({:.0} records/s) | {:.0}x |",
        count as f64 / rust_secs,
        count as f64 / py_secs,
        py_secs / rust_secs
    );
    println!();
    Ok(())
}
