//! Sink `kafka`: produce outputs to a Kafka topic, one delivery report per output.
//!
//! ```toml
//! [sinks.predictions]
//! type = "kafka"
//! inputs = ["ride_duration"]
//! brokers = "${KAFKA_BROKERS:-127.0.0.1:9092}"
//! topic = "ride_predictions"
//! key = "{prediction.ride_id}"
//!
//! [sinks.predictions.librdkafka]        # any librdkafka producer property; these win
//! "compression.type" = "lz4"
//! ```
//!
//! The producer is idempotent (`enable.idempotence = true`, so librdkafka's own retries neither
//! duplicate nor reorder within a partition) and waits for `acks = all`. Each output becomes one
//! message; `deliver` returns once librdkafka has reported on every message of the batch, so
//! `Delivered` means the broker acknowledged it. A message the broker will never take (over
//! `message.max.bytes`, an invalid record) is rejected and dead-lettered; any other failure
//! (timeout, broker gone, not enough replicas) is retried by the runtime with backoff.
//!
//! Backpressure: librdkafka's queue holds at most `max_in_flight` messages; a batch that finds
//! it full waits for room, which holds the runtime's batch and so the source.
//!
//! The key is rendered from the output (`{dotted.path}`); when the field is missing the source
//! record's own key is used, and without one the message has no key.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;
use tributary_framework::config::ComponentSpec;
use tributary_framework::registry::BuildFuture;
use tributary_framework::{ComponentError, Delivery, Input, Sink};
use tributary_kafka::{Context, rdkafka};

use tributary_framework::template::Template;

/// `[sinks.<id>]` (or `[dead_letter]`) with `type = "kafka"`.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers, comma-separated `host:port`.
    pub brokers: String,
    /// The topic to produce to.
    pub topic: String,
    /// Message key template over the output's fields. Default `{prediction.ride_id}`, as the
    /// seeds keyed by `ride_id`.
    #[serde(default = "default_key")]
    pub key: String,
    /// Messages librdkafka may hold unacknowledged (`queue.buffering.max.messages`). Default
    /// 100,000.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Any librdkafka producer property (TLS, SASL, `linger.ms`, compression); these override
    /// tributary's defaults.
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

fn default_key() -> String {
    "{prediction.ride_id}".into()
}

fn default_max_in_flight() -> usize {
    100_000
}

/// How long one message may wait for room in a full queue before it is reported for retry.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a message waiting for room in a full queue tries again.
const ROOM_POLL: Duration = Duration::from_millis(5);

/// Produces to a topic.
pub struct KafkaSink {
    producer: FutureProducer<Context>,
    /// The producer's first authorization or authentication failure: the sink stops on it.
    fatal: tributary_kafka::FatalError,
    topic: String,
    key: Template,
}

/// Builds the sink. If the broker answers, checks that the topic exists; a broker that is not
/// up yet is only reported (librdkafka reconnects, and deliveries are retried meanwhile).
pub fn build(spec: ComponentSpec) -> BuildFuture<Arc<dyn Sink>> {
    Box::pin(async move {
        let config: KafkaSinkConfig = spec.parse()?;
        let key = Template::parse(&config.key).map_err(|e| spec.error("key", e))?;
        if config.max_in_flight == 0 {
            return Err(spec.error("max_in_flight", "must be at least 1"));
        }
        let queue = config.max_in_flight.to_string();
        let mut defaults = tributary_kafka::PRODUCER_DEFAULTS.to_vec();
        defaults.extend([("queue.buffering.max.messages", queue.as_str()), ("message.timeout.ms", "30000")]);
        let context = Context::new(&spec.path.component, &config.brokers);
        let fatal = context.fatal_error();
        let producer: FutureProducer<Context> =
            tributary_kafka::client_config(&config.brokers, &defaults, &config.librdkafka)
                .create_with_context(context)
                .map_err(|e| spec.error("librdkafka", e.to_string()))?;
        check_topic(&producer, &config.topic).map_err(|e| spec.error("topic", e))?;
        Ok(Arc::new(KafkaSink { producer, topic: config.topic, key, fatal }) as Arc<dyn Sink>)
    })
}

fn check_topic(producer: &FutureProducer<Context>, topic: &str) -> Result<(), String> {
    match producer.client().fetch_metadata(Some(topic), Duration::from_secs(3)) {
        Ok(metadata) => match metadata.topics().first().and_then(|t| t.error()) {
            // Brokers that auto-create topics create it on this request.
            Some(e) if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition => {
                Err(format!("topic {topic:?} does not exist; create it (`tributary create-topic`)"))
            }
            _ => Ok(()),
        },
        Err(e) => {
            tracing::warn!(%topic, error = %e, "Kafka broker not reachable yet; producing will retry");
            Ok(())
        }
    }
}

/// Whether the broker will never take this message (the message's fault: dead-lettered).
/// Authorization and authentication failures are the sink's, and stop it (see
/// [`tributary_kafka::is_fatal`]).
fn is_permanent(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
        )
    )
}

/// A message of the batch being delivered, before its report.
enum Pending {
    /// Enqueued; its report comes through this.
    Queued(rdkafka::producer::DeliveryFuture),
    /// Settled without the broker (not encodable, refused by librdkafka, no room in time).
    Done(Delivery),
}

impl KafkaSink {
    /// The delivery a message's report (or librdkafka's refusal) comes to.
    fn outcome(&self, report: Result<(), KafkaError>) -> Delivery {
        match report {
            Ok(()) => Delivery::Delivered,
            Err(error) if self.fatal.note(&error) => Delivery::Retry(tributary_kafka::describe(&error)),
            Err(error) if is_permanent(&error) => Delivery::Reject(tributary_kafka::describe(&error)),
            Err(error) => Delivery::Retry(tributary_kafka::describe(&error)),
        }
    }
}

#[async_trait]
impl Sink for KafkaSink {
    async fn deliver(&self, batch: &[Input<'_>]) -> Result<Vec<Delivery>, ComponentError> {
        if let Some(fatal) = self.fatal.get() {
            return Err(ComponentError::Fatal(fatal));
        }
        // Every message is enqueued in order, without a future or a clock reading each
        // (`send_result`); then the reports are awaited in that order, which wakes this task
        // about once per produce request rather than once per message. A message that finds the
        // queue full waits for room (retrying every `ROOM_POLL`, up to `QUEUE_TIMEOUT`) before
        // the next is enqueued, so the batch's order is kept; once one has waited that long, the
        // rest are reported for retry at once rather than each waiting as long again.
        // (librdkafka copies each message as it is enqueued: its encoding lives one iteration.)
        let mut pending = Vec::with_capacity(batch.len());
        let mut stalled = false;
        for input in batch {
            let payload = match serde_json::to_vec(input.value) {
                Ok(payload) => payload,
                Err(e) => {
                    pending.push(Pending::Done(Delivery::Reject(format!("cannot encode as JSON: {e}"))));
                    continue;
                }
            };
            let key = self.key.render_output(input.value).or_else(|| input.record.partition_key.clone());
            let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.topic).payload(payload.as_slice());
            if let Some(key) = &key {
                record = record.key(key.as_str());
            }
            let mut waiting_since = None;
            pending.push(loop {
                match self.producer.send_result(record) {
                    Ok(report) => break Pending::Queued(report),
                    Err((error @ KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                        let since = *waiting_since.get_or_insert_with(Instant::now);
                        if stalled || since.elapsed() >= QUEUE_TIMEOUT {
                            stalled = true;
                            break Pending::Done(self.outcome(Err(error)));
                        }
                        record = returned;
                        tokio::time::sleep(ROOM_POLL).await;
                    }
                    Err((error, _)) => break Pending::Done(self.outcome(Err(error))),
                }
            });
        }
        let mut deliveries = Vec::with_capacity(pending.len());
        for item in pending {
            deliveries.push(match item {
                Pending::Done(delivery) => delivery,
                Pending::Queued(report) => self.outcome(match report.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((error, _))) => Err(error),
                    Err(_) => Err(KafkaError::Canceled),
                }),
            });
        }
        match self.fatal.get() {
            Some(fatal) => Err(ComponentError::Fatal(fatal)),
            None => Ok(deliveries),
        }
    }

    async fn close(&self) -> Result<(), ComponentError> {
        // Every deliver already waited for its reports; this only drains stragglers.
        self.producer
            .flush(Duration::from_secs(10))
            .map_err(|e| ComponentError::Fatal(format!("flushing producer for {}: {e}", self.topic)))
    }
}
