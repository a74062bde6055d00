//! Source `kafka`: a consumer-group member on `rdkafka`.
//!
//! ```toml
//! [sources.rides]
//! type = "kafka"
//! brokers = "${KAFKA_BROKERS:-127.0.0.1:9092}"
//! topics = ["ride_events"]
//! group_id = "tributary-ride-duration"
//! start = "earliest"                    # where a group without offsets starts ("latest")
//!
//! [sources.rides.librdkafka]            # any librdkafka consumer property; these win
//! "security.protocol" = "SASL_SSL"
//! "sasl.mechanisms" = "SCRAM-SHA-512"
//! "sasl.username" = "${KAFKA_USER}"
//! "sasl.password" = "${KAFKA_PASSWORD}"
//! ```
//!
//! Offsets follow the runtime's watermark rule: `enable.auto.offset.store` is off, and an offset
//! is stored only when every branch has delivered or dead-lettered its record and every earlier
//! record of its partition. Stored offsets are committed at every runtime commit, when partitions
//! are revoked in a rebalance (synchronously, before another member takes them), and when the
//! source stops. A killed consumer therefore resumes after its last commit: records after it
//! are read again, none is skipped.
//!
//! Positions are `<topic>/<partition>` and the message offset. A message without a payload (a
//! tombstone) is dead-lettered. A broker that is down, at start or later, is retried by
//! librdkafka with backoff and reported in the log; the source waits meanwhile.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::FutureExt;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use serde::Deserialize;
use tributary_framework::config::ComponentSpec;
use tributary_framework::metrics::Gauge;
use tributary_framework::registry::BuildFuture;
use tributary_framework::{ComponentError, Offset, Position, Record, Source};
use tributary_kafka::rdkafka;
use tributary_kafka::rdkafka::ClientContext;

/// How long `next_batch` waits for a first message before returning an empty batch.
const IDLE_RETURN: Duration = Duration::from_secs(1);

/// Where a consumer group without committed offsets starts (`auto.offset.reset`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    /// The oldest message still in the partition.
    #[default]
    Earliest,
    /// Messages produced after the group starts.
    Latest,
}

/// `[sources.<id>]` with `type = "kafka"`.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Bootstrap brokers, comma-separated `host:port`.
    pub brokers: String,
    /// Topics to subscribe to.
    pub topics: Vec<String>,
    /// The consumer group. Members of one group share the topics' partitions.
    pub group_id: String,
    /// Where a group without committed offsets starts. Default `earliest`.
    #[serde(default)]
    pub start: Start,
    /// Any librdkafka consumer property (TLS, SASL, session timeout, fetch sizes); these
    /// override tributary's defaults. `enable.auto.offset.store` must stay `false`.
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

/// Commits the offsets stored so far; nothing stored since the last commit is not an error.
fn commit_stored<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    mode: CommitMode,
) -> Result<(), rdkafka::error::KafkaError> {
    match consumer.commit_consumer_state(mode) {
        Err(e) if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::NoOffset) => Ok(()),
        other => other,
    }
}

/// Consumer context: librdkafka error reporting, plus the synchronous commit on revoke.
struct GroupContext {
    inner: tributary_kafka::Context,
}

impl ClientContext for GroupContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.inner.log(level, fac, log_message);
    }
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.inner.error(error, reason);
    }
    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        self.inner.stats(statistics);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            // Hand over exactly what is done: the offsets stored so far (the watermarks).
            match commit_stored(consumer, CommitMode::Sync) {
                Ok(()) => tracing::info!(partitions = partitions.count(), "partitions revoked; offsets committed"),
                Err(e) => {
                    tracing::warn!(error = %e, "commit on revoke failed; the next owner re-reads from the last commit")
                }
            }
        }
    }
}

/// The consumer.
pub struct KafkaSource {
    id: Arc<str>,
    consumer: StreamConsumer<GroupContext>,
    partitions: Partitions,
}

/// Interned partition names (`topic/partition`), and back.
#[derive(Default)]
struct Partitions {
    /// topic -> partition -> name; looked up by `&str`, so reading a message allocates nothing.
    names: HashMap<String, HashMap<i32, Arc<str>>>,
    keys: HashMap<Arc<str>, (String, i32)>,
}

impl Partitions {
    fn name(&mut self, topic: &str, partition: i32) -> Arc<str> {
        if let Some(name) = self.names.get(topic).and_then(|p| p.get(&partition)) {
            return name.clone();
        }
        let name: Arc<str> = Arc::from(format!("{topic}/{partition}"));
        self.keys.insert(name.clone(), (topic.to_string(), partition));
        self.names.entry(topic.to_string()).or_default().insert(partition, name.clone());
        name
    }
}

/// Builds the source and subscribes. The broker need not be up yet.
pub fn build(spec: ComponentSpec) -> BuildFuture<Box<dyn Source>> {
    Box::pin(async move {
        let config: KafkaSourceConfig = spec.parse()?;
        if config.topics.is_empty() {
            return Err(spec.error("topics", "list at least one topic"));
        }
        if config.librdkafka.get("enable.auto.offset.store").is_some_and(|v| v != "false") {
            return Err(spec.error(
                "librdkafka.enable.auto.offset.store",
                "must stay false: offsets are stored only after delivery",
            ));
        }
        let source = KafkaSource::new(&spec.path.component, &config).map_err(|e| spec.error("librdkafka", e))?;
        Ok(Box::new(source) as Box<dyn Source>)
    })
}

impl KafkaSource {
    /// Creates the consumer and subscribes to the topics.
    ///
    /// # Errors
    /// librdkafka refused the configuration.
    pub fn new(id: &str, config: &KafkaSourceConfig) -> Result<Self, String> {
        let start = match config.start {
            Start::Earliest => "earliest",
            Start::Latest => "latest",
        };
        let defaults = [
            ("group.id", config.group_id.as_str()),
            ("auto.offset.reset", start),
            ("enable.auto.offset.store", "false"),
            // Commits happen at the runtime's commits, on revoke and at close.
            ("enable.auto.commit", "false"),
            ("statistics.interval.ms", "5000"),
            ("enable.partition.eof", "false"),
        ];
        let context = GroupContext { inner: tributary_kafka::Context::new(id, &config.brokers) };
        let consumer: StreamConsumer<GroupContext> =
            tributary_kafka::client_config(&config.brokers, &defaults, &config.librdkafka)
                .create_with_context(context)
                .map_err(|e| e.to_string())?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(|e| format!("subscribing to {topics:?}: {e}"))?;
        tracing::info!(source = id, brokers = %config.brokers, ?topics, group = %config.group_id, "kafka consumer subscribed");
        Ok(KafkaSource { id: Arc::from(id), consumer, partitions: Partitions::default() })
    }
}

/// A consumed message as a record.
fn record(source: &Arc<str>, partitions: &mut Partitions, message: &BorrowedMessage<'_>) -> Record {
    let partition = partitions.name(message.topic(), message.partition());
    let offset = u64::try_from(message.offset()).unwrap_or_default();
    let position = Position { source: source.clone(), partition, offset: Offset::Index(offset) };
    let record = match message.payload() {
        Some(payload) => Record::new(bytes::Bytes::copy_from_slice(payload), position),
        None => Record::invalid(bytes::Bytes::new(), "message has no payload (a tombstone)", position),
    };
    let arrival = message
        .timestamp()
        .to_millis()
        .and_then(|ms| u64::try_from(ms).ok())
        .map_or_else(SystemTime::now, |ms| UNIX_EPOCH + Duration::from_millis(ms));
    record.with_partition_key(message.key().map(|k| String::from_utf8_lossy(k).into_owned())).with_arrival(arrival)
}

#[async_trait]
impl Source for KafkaSource {
    async fn next_batch(&mut self, max_records: usize) -> Result<Option<Vec<Record>>, ComponentError> {
        // Wait for the first message, then take what is already fetched, up to the batch size.
        // An idle second returns an empty batch, so that gauges (assignment, lag) stay fresh.
        let mut records = Vec::new();
        // Authorization and authentication failures (reported or returned) are not retried:
        // see `tributary_kafka::is_fatal`.
        if let Some(fatal) = self.consumer.context().inner.fatal() {
            return Err(ComponentError::Fatal(fatal));
        }
        match tokio::time::timeout(IDLE_RETURN, self.consumer.recv()).await {
            Err(_) => return Ok(Some(records)),
            Ok(Ok(message)) => records.push(record(&self.id, &mut self.partitions, &message)),
            // Consumer errors are reports (a broker down, an unknown topic): librdkafka retries
            // by itself, so the source logs them and keeps consuming, without backing off;
            // a fatal one (a missing ACL) stops the source.
            Ok(Err(e)) => {
                self.consumer.context().inner.report(&e);
                if let Some(fatal) = self.consumer.context().inner.fatal() {
                    return Err(ComponentError::Fatal(fatal));
                }
                return Ok(Some(records));
            }
        }
        while records.len() < max_records {
            match self.consumer.recv().now_or_never() {
                Some(Ok(message)) => records.push(record(&self.id, &mut self.partitions, &message)),
                Some(Err(e)) => {
                    self.consumer.context().inner.report(&e);
                    break;
                }
                None => break,
            }
        }
        Ok(Some(records))
    }

    async fn commit(&mut self, positions: &[Position]) -> Result<(), ComponentError> {
        for position in positions {
            let (Some((topic, partition)), Offset::Index(offset)) =
                (self.partitions.keys.get(&position.partition), &position.offset)
            else {
                continue;
            };
            // librdkafka's rd_kafka_offset_store stores `offset + 1`, the next offset to read.
            let offset = i64::try_from(*offset).unwrap_or(i64::MAX - 1);
            if let Err(e) = self.consumer.store_offset(topic, *partition, offset) {
                // Revoked since it was read: its new owner re-reads from the last commit.
                tracing::debug!(source = %self.id, %position, error = %e, "offset not stored (partition not assigned)");
            }
        }
        commit_stored(&self.consumer, CommitMode::Async)
            .map_err(|e| ComponentError::Retryable(format!("committing offsets: {e}")))
    }

    fn gauges(&self) -> Vec<Gauge> {
        let assigned = self.consumer.assignment().map(|a| a.count()).unwrap_or(0);
        let mut gauges = vec![Gauge { name: "partitions_assigned", labels: Vec::new(), value: assigned as f64 }];
        for ((topic, partition), lag) in self.consumer.context().inner.lag() {
            gauges.push(Gauge {
                name: "consumer_lag",
                labels: vec![("partition", format!("{topic}/{partition}"))],
                value: lag as f64,
            });
        }
        gauges
    }

    async fn close(&mut self) -> Result<(), ComponentError> {
        // The runtime has stored its final watermarks; make them durable before leaving.
        commit_stored(&self.consumer, CommitMode::Sync)
            .map_err(|e| ComponentError::Retryable(format!("final offset commit: {e}")))?;
        // Dropping the consumer then leaves the group, so its partitions move at once.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_errors() {
        let config: KafkaSourceConfig = serde_json::from_value(serde_json::json!({
            "brokers": "127.0.0.1:9092", "topics": ["t"], "group_id": "g"
        }))
        .unwrap();
        assert_eq!(config.start, Start::Earliest);
        assert!(config.librdkafka.is_empty());
        let err = serde_json::from_value::<KafkaSourceConfig>(serde_json::json!({
            "brokers": "b", "topics": ["t"], "group_id": "g", "topic": "x"
        }))
        .unwrap_err();
        assert!(err.to_string().contains("topic"), "{err}");
    }
}
