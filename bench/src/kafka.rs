//! Benchmark 6: consume -> predict -> produce on the local Kafka broker (tansu), the
//! `tributary` worker with `deployments/config/kafka-local.toml` next to the Python peers a user
//! would pick (confluent-kafka per record the usual way, confluent-kafka batched with one
//! onnxruntime call per batch, a Quix Streams application) and the broker's own ceiling on this
//! machine (a bare Rust consume -> produce loop).

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

/// One consumer's run: (seconds from process start, seconds from the first message or delivery
/// to the last delivery).
type Timing = (f64, f64);

/// A Python peer, run on its own topics of `count` rides.
struct Peer {
    /// Row label.
    label: &'static str,
    /// The script in `bench/python/`.
    script: &'static str,
    /// The pickled pipeline (`true`) or the ONNX model (`false`) as `MODEL_PATH`.
    pickled: bool,
}

const PEERS: [Peer; 3] = [
    Peer {
        label: "Python, per record: confluent-kafka `poll`, scikit-learn `predict` per ride (`kafka_consumer.py`)",
        script: "kafka_consumer.py",
        pickled: true,
    },
    Peer {
        label: "Python, batched: confluent-kafka `consume(num_messages=1000)`, one onnxruntime call per batch (`kafka_consumer_batched.py`)",
        script: "kafka_consumer_batched.py",
        pickled: false,
    },
    Peer {
        label: "Quix Streams 3.28: `StreamingDataFrame.apply`, onnxruntime per ride (`kafka_quix.py`)",
        script: "kafka_quix.py",
        pickled: false,
    },
];

/// Records/s of the worker over `count` rides, of each Python peer over `py_counts` (in `PEERS`
/// order), and of a bare Rust consume -> produce loop over `count` (the broker's ceiling).
pub async fn compare(
    root: &Path,
    bin: &Path,
    pickle: &Path,
    count: usize,
    py_counts: [usize; 3],
    rounds: usize,
) -> Result<()> {
    let brokers = std::env::var("KAFKA_BROKERS").context("KAFKA_BROKERS: run through `cargo xtask bench`")?;
    let pid = std::process::id();
    // The services started just before (for this section alone) are still warming up: measured
    // at once, the worker, which runs first, got a third less than after other sections.
    crate::settle(Duration::from_secs(60));
    let model = root.join(crate::MODEL);
    // Each consumer's timings, one per round, in row order: the worker, the peers, the bare loop.
    let mut timings: Vec<Vec<Timing>> = vec![Vec::new(); PEERS.len() + 2];
    for round in 0..rounds {
        let topics = |who: &str| (format!("kb-{who}-in-{pid}-{round}"), format!("kb-{who}-out-{pid}-{round}"));
        let (rust_in, rust_out) = topics("rust");
        let rust_dead = format!("{rust_in}-dead");
        topic_with_rides(&brokers, &rust_in, count).await?;
        for topic in [&rust_out, &rust_dead] {
            tributary_kafka::create_topic(&brokers, topic, 1).await.map_err(anyhow::Error::msg)?;
        }
        timings[0].push(worker(root, bin, &brokers, (&rust_in, &rust_out), count)?);
        drop_topics(&brokers, &[&rust_in, &rust_out, &rust_dead]).await?;

        for (n, (peer, &py_count)) in PEERS.iter().zip(&py_counts).enumerate() {
            let (input, output) = topics(&format!("py{n}"));
            topic_with_rides(&brokers, &input, py_count).await?;
            tributary_kafka::create_topic(&brokers, &output, 1).await.map_err(anyhow::Error::msg)?;
            let run = Command::new(root.join(".venv/bin/python"))
                .arg(format!("bench/python/{}", peer.script))
                .args([&brokers, &input, &output, &py_count.to_string()])
                .env("MODEL_PATH", if peer.pickled { pickle } else { &model })
                .output()?;
            if !run.status.success() {
                bail!("{} failed: {}", peer.script, String::from_utf8_lossy(&run.stderr));
            }
            drop_topics(&brokers, &[&input, &output]).await?;
            let result: Value = serde_json::from_slice(&run.stdout)?;
            let seconds = |key: &str| result[key].as_f64().unwrap_or(f64::NAN);
            timings[1 + n].push((seconds("seconds"), seconds("steady_seconds")));
        }

        let (bare_in, bare_out) = topics("bare");
        topic_with_rides(&brokers, &bare_in, count).await?;
        tributary_kafka::create_topic(&brokers, &bare_out, 1).await.map_err(anyhow::Error::msg)?;
        let (brokers_owned, input, output) = (brokers.clone(), bare_in.clone(), bare_out.clone());
        timings[PEERS.len() + 1]
            .push(tokio::task::spawn_blocking(move || ceiling(&brokers_owned, &input, &output, count)).await??);
        drop_topics(&brokers, &[&bare_in, &bare_out]).await?;
    }
    let mut labels = vec![("tributary worker (`kafka-local.toml`)", count)];
    labels.extend(PEERS.iter().zip(py_counts).map(|(peer, n)| (peer.label, n)));
    labels.push(("the broker's ceiling: a bare Rust consume -> produce loop, no decoding, no model", count));
    let rows: Vec<(String, usize, Timing)> = labels
        .into_iter()
        .zip(timings)
        .map(|((label, rides), mut runs)| {
            // The round with the median steady-state time, both of its figures.
            runs.sort_by(|a, b| a.1.total_cmp(&b.1));
            (label.to_string(), rides, runs[runs.len() / 2])
        })
        .collect();
    println!(
        "({rounds} round(s), each consumer once per round on fresh topics; the round with the median steady state)\n"
    );

    println!(
        "| consumer ({PARTITIONS} partitions -> 1) | rides | process start to last delivery | first to last delivery (steady state) |"
    );
    println!("|---|---:|---:|---:|");
    for (label, rides, (secs, steady)) in &rows {
        let rides = *rides as f64;
        println!(
            "| {label} | {rides} | {secs:.2} s ({:.0} records/s) | {steady:.2} s (**{:.0} records/s**) |",
            rides / secs,
            rides / steady
        );
    }
    let steady_rate = |row: &(String, usize, Timing)| row.1 as f64 / row.2.1;
    let ours = steady_rate(&rows[0]);
    let fastest_python = rows[1..=PEERS.len()].iter().map(steady_rate).fold(0.0, f64::max);
    let ceiling_rate = steady_rate(&rows[PEERS.len() + 1]);
    println!(
        "\nsteady state: tributary {:.1}x the fastest Python peer; {:.0}% of the bare loop's rate\n",
        ours / fastest_python,
        100.0 * ours / ceiling_rate
    );
    Ok(())
}

/// Deletes a measured consumer's topics. Tansu's in-memory storage keeps every message until
/// its topic goes (after about 20 worker runs of 300,000 records it held 4.7 GB, and the worker
/// ran at half its rate), so without this each consumer would meet a fuller broker than the one
/// before it in the round.
async fn drop_topics(brokers: &str, topics: &[&str]) -> Result<()> {
    use tributary_kafka::rdkafka::admin::{AdminClient, AdminOptions};
    use tributary_kafka::rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> =
        tributary_kafka::client_config(brokers, &[], &BTreeMap::new()).create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.delete_topics(topics, &options).await? {
        if let Err((topic, code)) = result {
            bail!("deleting topic {topic} on {brokers}: {code}");
        }
    }
    Ok(())
}

/// `tributary run` on `kafka-local.toml` from `input` to `output`, until `count` deliveries.
fn worker(root: &Path, bin: &Path, brokers: &str, (input, output): (&str, &str), count: usize) -> Result<Timing> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let started = Instant::now();
    let mut worker = Command::new(bin)
        .current_dir(root)
        .args(["run", "--no-status", "--config", "deployments/config/kafka-local.toml", "--metrics-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .env("KAFKA_BROKERS", brokers)
        .env("INPUT_TOPIC", input)
        .env("OUTPUT_TOPIC", output)
        .env("DEAD_LETTER_TOPIC", format!("{input}-dead"))
        .env("CONSUMER_GROUP", format!("bench-{}", std::process::id()))
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
    let secs = started.elapsed().as_secs_f64();
    let steady = first.map_or(secs, |f| f.elapsed().as_secs_f64());
    let _ = Command::new("kill").args(["-INT", &worker.id().to_string()]).status();
    worker.wait()?;
    Ok((secs, steady))
}

/// The broker's own ceiling on this machine: `count` records consumed from `input` and produced
/// unchanged (same key) to `output` by the leanest client loop librdkafka allows, in this
/// process: a `BaseConsumer` polled in a loop, a `ThreadedProducer` whose delivery callback only
/// counts, with the worker's producer settings (`tributary_kafka::PRODUCER_DEFAULTS`)
/// and nothing else: no decoding, no model, no envelope, no per-message future, and (unlike the
/// worker) no waiting for a batch's deliveries nor committing offsets. Timed from the first
/// message to the last delivery.
fn ceiling(brokers: &str, input: &str, output: &str, count: usize) -> Result<Timing> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tributary_kafka::rdkafka::ClientContext;
    use tributary_kafka::rdkafka::Message;
    use tributary_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
    use tributary_kafka::rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use tributary_kafka::rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};

    /// Counts deliveries and failures.
    #[derive(Default)]
    struct Count {
        delivered: AtomicUsize,
        failed: AtomicUsize,
    }
    impl ClientContext for Count {}
    impl ProducerContext for Count {
        type DeliveryOpaque = ();
        fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
            let counter = if result.is_ok() { &self.delivered } else { &self.failed };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    let started = Instant::now();
    let group = format!("bare-{input}");
    let consumer: BaseConsumer = tributary_kafka::client_config(
        brokers,
        &[("group.id", group.as_str()), ("auto.offset.reset", "earliest")],
        &BTreeMap::new(),
    )
    .create()?;
    consumer.subscribe(&[input])?;
    let mut settings = tributary_kafka::PRODUCER_DEFAULTS.to_vec();
    settings.push(("queue.buffering.max.messages", "1000000"));
    let producer: ThreadedProducer<Count> =
        tributary_kafka::client_config(brokers, &settings, &BTreeMap::new()).create_with_context(Count::default())?;
    let mut first = None;
    let mut sent = 0;
    while sent < count {
        if started.elapsed() > Duration::from_secs(300) {
            bail!("the bare loop did not consume {count} records in 5 minutes");
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)) else { continue };
        let message = message?;
        first.get_or_insert_with(Instant::now);
        let mut record = BaseRecord::to(output).payload(message.payload().unwrap_or_default());
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        while let Err((e, back)) = producer.send(record) {
            if e != KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) {
                bail!("producing to {output}: {e}");
            }
            record = back;
            std::thread::sleep(Duration::from_millis(1));
        }
        sent += 1;
    }
    producer.flush(Duration::from_secs(60))?;
    let (delivered, failed) =
        (producer.context().delivered.load(Ordering::Relaxed), producer.context().failed.load(Ordering::Relaxed));
    if delivered != count || failed > 0 {
        bail!("the bare loop delivered {delivered} of {count} records to {output} ({failed} failed)");
    }
    let first = first.context("no message")?;
    Ok((started.elapsed().as_secs_f64(), first.elapsed().as_secs_f64()))
}
