//! Benchmark 6: consume -> predict -> produce on the local Kafka broker (tansu), the
//! `tributary` worker with `deployments/config/kafka-local.toml` next to a Python consumer
//! written the usual way (`bench/python/kafka_consumer.py`: confluent-kafka, scikit-learn per
//! record).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tributary_framework::Source;
use tributary_kafka::rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tributary_sources::generator::{GeneratorConfig, GeneratorSource};

use crate::metric;

const PARTITIONS: i32 = 3;

async fn topic_with_rides(brokers: &str, topic: &str, count: usize) -> Result<()> {
    tributary_kafka::create_topic(brokers, topic, PARTITIONS).await.map_err(anyhow::Error::msg)?;
    let producer: FutureProducer =
        tributary_kafka::client_config(brokers, &[("linger.ms", "20")], &BTreeMap::new()).create()?;
    let mut generator = GeneratorSource::new(
        "bench".into(),
        GeneratorConfig { count: Some(count as u64), rate: None, seed: 11, first_ride_id: 1 },
    );
    while let Some(batch) = generator.next_batch(10_000).await? {
        let keys: Vec<String> = (0..batch.len()).map(|i| i.to_string()).collect();
        let sends = batch.iter().zip(&keys).map(|(r, key)| {
            producer.send(
                FutureRecord::to(topic).payload(r.raw_bytes().as_ref()).key(key.as_str()),
                Duration::from_secs(30),
            )
        });
        for result in futures::future::join_all(sends).await {
            if let Err((e, _)) = result {
                bail!("filling {topic}: {e}");
            }
        }
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(())
}

/// Records/s of the worker over `count` rides and of the Python consumer over `py_count`.
pub async fn compare(root: &Path, bin: &Path, pickle: &Path, count: usize, py_count: usize) -> Result<()> {
    let brokers = std::env::var("KAFKA_BROKERS").context("KAFKA_BROKERS: run through `cargo xtask bench`")?;
    let pid = std::process::id();
    let (rust_in, rust_out, py_in, py_out) =
        (format!("kb-rin-{pid}"), format!("kb-rout-{pid}"), format!("kb-pin-{pid}"), format!("kb-pout-{pid}"));
    topic_with_rides(&brokers, &rust_in, count).await?;
    topic_with_rides(&brokers, &py_in, py_count).await?;
    for topic in [&rust_out, &py_out, &format!("{rust_in}-dead")] {
        tributary_kafka::create_topic(&brokers, topic, 1).await.map_err(anyhow::Error::msg)?;
    }

    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let started = Instant::now();
    let mut worker = Command::new(bin)
        .current_dir(root)
        .args(["run", "--no-status", "--config", "deployments/config/kafka-local.toml", "--metrics-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .env("KAFKA_BROKERS", &brokers)
        .env("INPUT_TOPIC", &rust_in)
        .env("OUTPUT_TOPIC", &rust_out)
        .env("DEAD_LETTER_TOPIC", format!("{rust_in}-dead"))
        .env("CONSUMER_GROUP", format!("bench-{pid}"))
        .env("RUN_ID", "bench")
        .stdout(Stdio::null())
        .spawn()?;
    let mut first: Option<Instant> = None;
    loop {
        let delivered = metric(port, "tributary_outputs_delivered_total");
        if first.is_none() && delivered > 0.0 {
            first = Some(Instant::now());
        }
        if delivered >= count as f64 {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            let _ = worker.kill();
            bail!("the worker did not deliver {count} records in 5 minutes");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let rust_secs = started.elapsed().as_secs_f64();
    let rust_steady = first.map_or(rust_secs, |f| f.elapsed().as_secs_f64());
    let _ = Command::new("kill").args(["-INT", &worker.id().to_string()]).status();
    worker.wait()?;

    let output = Command::new(root.join(".venv/bin/python"))
        .args(["bench/python/kafka_consumer.py", &brokers, &py_in, &py_out, &py_count.to_string()])
        .env("MODEL_PATH", pickle)
        .output()?;
    if !output.status.success() {
        bail!("the Python consumer failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let result: Value = serde_json::from_slice(&output.stdout)?;
    let (py_secs, py_steady) =
        (result["seconds"].as_f64().unwrap_or(f64::NAN), result["steady_seconds"].as_f64().unwrap_or(f64::NAN));
    let (rust_rate, py_rate) = (count as f64 / rust_steady, py_count as f64 / py_steady);
    println!("| | tributary worker | Python consumer (confluent-kafka, scikit-learn per record) | ratio |");
    println!("|---|---:|---:|---:|");
    println!("| rides ({PARTITIONS} partitions -> 1) | {count} | {py_count} | |");
    println!(
        "| process start to last delivery | {rust_secs:.2} s ({:.0} records/s) | {py_secs:.2} s ({:.0} records/s) | |",
        count as f64 / rust_secs,
        py_count as f64 / py_secs
    );
    println!(
        "| first to last delivery (steady state) | {rust_steady:.2} s (**{rust_rate:.0} records/s**) | {py_steady:.2} s ({py_rate:.0} records/s) | {:.0}x |",
        rust_rate / py_rate
    );
    println!();
    Ok(())
}
