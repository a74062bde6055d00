//! `tributary put`, `tail` and `create-topic` on Kafka (`--brokers`): the Kafka side of the
//! developer tools ([`super`]).
//!
//! ```text
//! tributary create-topic --brokers 127.0.0.1:9092 --topic ride_events --partitions 3
//! cat rides.jsonl | tributary put --brokers 127.0.0.1:9092 --topic ride_events
//! tributary tail --brokers 127.0.0.1:9092 --topic ride_predictions
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use futures::future::join_all;
use serde_json::json;
use tributary_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use tributary_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use tributary_kafka::rdkafka::{Message as _, Offset, TopicPartitionList};
use tributary_kafka::{client_config, describe};

use super::{From, Message, data_value, print_line};

/// Produces `messages` to `topic` and prints where each landed.
///
/// # Errors
/// The broker is unreachable or refused a message.
pub async fn put(brokers: &str, topic: &str, messages: &[Message]) -> Result<()> {
    let producer: FutureProducer = client_config(brokers, &[("enable.idempotence", "true")], &BTreeMap::new())
        .create()
        .context("creating the Kafka producer")?;
    let sends = messages.iter().map(|Message { data, key }| {
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).payload(data.as_slice());
        if let Some(key) = key {
            record = record.key(key.as_str());
        }
        producer.send(record, Duration::from_secs(30))
    });
    let mut failed = 0;
    for (input, result) in join_all(sends).await.into_iter().enumerate() {
        match result {
            Ok(delivery) => {
                println!("{}", json!({"partition": delivery.partition, "offset": delivery.offset, "input": input}));
            }
            Err((error, _)) => {
                failed += 1;
                eprintln!("record {input} not produced: {}", describe(&error));
            }
        }
    }
    if failed > 0 {
        bail!("{failed} record(s) not produced to {topic}");
    }
    eprintln!("put {} record(s) to {topic}", messages.len());
    Ok(())
}

/// Prints a topic's messages, from every partition, as JSON lines. Reads without a consumer
/// group: nothing is committed.
///
/// # Errors
/// The broker is unreachable or the topic does not exist.
pub async fn tail(brokers: String, topic: String, from: From, follow: bool, metadata: bool) -> Result<()> {
    tokio::task::spawn_blocking(move || tail_blocking(&brokers, &topic, from, follow, metadata))
        .await
        .map_err(|e| anyhow!("tail thread failed: {e}"))?
}

fn tail_blocking(brokers: &str, topic: &str, from: From, follow: bool, metadata: bool) -> Result<()> {
    let consumer: BaseConsumer = client_config(
        brokers,
        &[("group.id", "tributary-tail"), ("enable.auto.commit", "false"), ("enable.auto.offset.store", "false")],
        &BTreeMap::new(),
    )
    .create()
    .context("creating the Kafka consumer")?;
    let timeout = Duration::from_secs(10);
    let meta = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| anyhow!("metadata of {topic}: {e}"))?;
    let partitions: Vec<i32> = meta
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        bail!("topic {topic} does not exist on {brokers}");
    }
    let mut assignment = TopicPartitionList::new();
    for &partition in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .map_err(|e| anyhow!("offsets of {topic}/{partition}: {e}"))?;
        let start = match from {
            From::TrimHorizon => low,
            From::Latest => high,
        };
        assignment.add_partition_offset(topic, partition, Offset::Offset(start)).map_err(|e| anyhow!("{e}"))?;
    }
    consumer.assign(&assignment).map_err(|e| anyhow!("assigning {topic}: {e}"))?;
    // Without --follow, stop once a second passes without a message. (High watermarks are not
    // used as the end: some brokers, tansu among them, report them in batches, not records.)
    let mut last_message = Instant::now();
    loop {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            if !follow && last_message.elapsed() >= IDLE_END {
                return Ok(());
            }
            continue;
        };
        last_message = Instant::now();
        let message = message.map_err(|e| anyhow!("reading {topic}: {}", describe(&e)))?;
        let value = data_value(message.payload().unwrap_or_default());
        let line = if metadata {
            let key = message.key().map(|k| String::from_utf8_lossy(k).into_owned());
            json!({"partition": message.partition(), "offset": message.offset(), "key": key, "data": value})
        } else {
            value
        };
        if print_line(&line).is_err() {
            // The reader went away (`| head`): stop quietly.
            return Ok(());
        }
    }
}

/// How long `tail` without `--follow` waits for another message before it ends.
const IDLE_END: Duration = Duration::from_secs(1);

/// Creates a topic (no error if it exists).
///
/// # Errors
/// The broker is unreachable or refused.
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) -> Result<()> {
    tributary_kafka::create_topic(brokers, topic, partitions).await.map_err(anyhow::Error::msg)?;
    eprintln!("topic {topic} ready with {partitions} partition(s) (an existing topic is left as it is)");
    Ok(())
}
