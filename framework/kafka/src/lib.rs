//! Kafka for tributary: what the `kafka` source, the `kafka` sink and `tributary put`/`tail
//! --brokers` share.
//!
//! - [`client_config`]: the librdkafka settings of a component: `brokers`, tributary's defaults,
//!   then every `[<component>.librdkafka]` entry, which wins (TLS, SASL, timeouts, tuning);
//! - [`PRODUCER_DEFAULTS`]: how the `kafka` sink produces (and the benchmark's bare loop, which
//!   must produce the same way);
//! - [`Context`]: a librdkafka client context that reports broker errors (down at start, gone
//!   away) through `tracing`, rate-limited, and keeps per-partition consumer lag from
//!   librdkafka's statistics;
//! - [`create_topic`]: topic administration for the CLI and tests;
//! - [`is_fatal`]: the errors no retry fixes (authorization, authentication), which the
//!   context remembers ([`Context::fatal`]) so that the source and sink stop on them.
//!
//! librdkafka (2.12, through `rdkafka-sys`) is compiled from source and linked statically, so
//! binaries do not depend on the host's librdkafka (Debian 12 ships 2.0, too old for some
//! brokers' version handshake). It is built with zlib and the system OpenSSL, which enables TLS
//! and SASL PLAIN, SCRAM-SHA-256/512 and OAUTHBEARER. GSSAPI (Kerberos) is not built in.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;

pub use rdkafka;

/// The producer settings of the `kafka` sink: idempotent (librdkafka's own retries neither
/// duplicate nor reorder), acknowledged by every in-sync replica, and a short linger.
///
/// The linger: the sink enqueues a whole batch and the runtime waits for its reports before the
/// next batch (with `max_in_flight = 1`), so librdkafka's default 5 ms only delayed every batch:
/// the Kafka benchmark ran at half the broker's ceiling. With 0 the worker took more CPU and its
/// rate swung by 2x between runs (a batch's first messages leaving alone while the rest are
/// encoded, presumably); 1 ms was as fast as 0.5 and steady (BENCHMARKS.md, the second session
/// of 2026-12-06).
pub const PRODUCER_DEFAULTS: [(&str, &str); 3] = [("enable.idempotence", "true"), ("acks", "all"), ("linger.ms", "1")];

/// The librdkafka configuration of a component: `bootstrap.servers`, then `defaults`, then the
/// user's `properties` (which override both).
pub fn client_config(brokers: &str, defaults: &[(&str, &str)], properties: &BTreeMap<String, String>) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    // librdkafka logs through the context below, at its own level; keep it to warnings.
    config.set_log_level(RDKafkaLogLevel::Warning);
    for (key, value) in defaults {
        config.set(*key, *value);
    }
    for (key, value) in properties {
        config.set(key, value);
    }
    config
}

/// A client context that logs librdkafka errors through `tracing` (at most one line per error
/// kind every 10 seconds, since librdkafka repeats them while it reconnects with backoff) and
/// keeps the consumer lag of each partition from the statistics callback
/// (`statistics.interval.ms`).
#[derive(Debug)]
pub struct Context {
    /// The component id, for log lines.
    component: String,
    brokers: String,
    last_logged: Mutex<HashMap<String, Instant>>,
    lag: Mutex<BTreeMap<(String, i32), i64>>,
    /// The first fatal error (see [`is_fatal`]) seen, returned or reported.
    fatal: FatalError,
}

/// Where a client's first fatal error is kept; clones share it (a producer's owner keeps one,
/// since librdkafka's wrappers do not lend their context back).
#[derive(Clone, Debug)]
pub struct FatalError {
    slot: std::sync::Arc<Mutex<Option<String>>>,
    /// The component and brokers, for the message.
    who: std::sync::Arc<str>,
}

impl FatalError {
    /// The first fatal error noted.
    pub fn get(&self) -> Option<String> {
        self.slot.lock().ok().and_then(|f| f.clone())
    }

    /// Keeps `error` when it is fatal (the first one only); true if it is fatal.
    pub fn note(&self, error: &KafkaError) -> bool {
        if !is_fatal(error) {
            return false;
        }
        if let Ok(mut fatal) = self.slot.lock() {
            fatal.get_or_insert_with(|| {
                format!("{}: {}; no retry fixes this (check the ACLs and credentials)", self.who, describe(error))
            });
        }
        true
    }
}

/// Whether `error` is one no retry can fix: a missing ACL (topic, group, cluster, transactional
/// id), failed SASL or TLS authentication. A component stops on it with the broker's reason
/// (a missing ACL would otherwise dead-letter every record, or retry forever).
pub fn is_fatal(error: &KafkaError) -> bool {
    error.rdkafka_error_code().is_some_and(is_fatal_code)
}

fn is_fatal_code(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            | RDKafkaErrorCode::DelegationTokenAuthorizationFailed
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::Authentication
    )
}

impl Context {
    /// A context for the component `component` connecting to `brokers`.
    pub fn new(component: impl Into<String>, brokers: impl Into<String>) -> Self {
        let (component, brokers) = (component.into(), brokers.into());
        let fatal =
            FatalError { slot: std::sync::Arc::default(), who: format!("{component} (brokers {brokers})").into() };
        Context { component, brokers, last_logged: Mutex::new(HashMap::new()), lag: Mutex::new(BTreeMap::new()), fatal }
    }

    /// The first fatal error the client returned or reported (see [`is_fatal`]), described
    /// with the component and brokers: the source and sink fail with it.
    pub fn fatal(&self) -> Option<String> {
        self.fatal.get()
    }

    /// The shared slot of [`Context::fatal`], for the client's owner.
    pub fn fatal_error(&self) -> FatalError {
        self.fatal.clone()
    }

    /// Consumer lag per (topic, partition), as of the last statistics report.
    pub fn lag(&self) -> BTreeMap<(String, i32), i64> {
        self.lag.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Logs an error a client returned (rather than reported through the error callback), with
    /// the same rate limit.
    pub fn report(&self, error: &KafkaError) {
        self.fatal.note(error);
        if self.should_log(&format!("returned {:?}", error.rdkafka_error_code())) {
            tracing::warn!(component = %self.component, brokers = %self.brokers, "Kafka client: {}", describe(error));
        }
    }

    fn should_log(&self, kind: &str) -> bool {
        let Ok(mut last) = self.last_logged.lock() else { return true };
        let now = Instant::now();
        match last.get(kind) {
            Some(at) if now.duration_since(*at) < Duration::from_secs(10) => false,
            _ => {
                last.insert(kind.to_string(), now);
                true
            }
        }
    }
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        use RDKafkaLogLevel::{Alert, Critical, Emerg, Error, Warning};
        match level {
            Emerg | Alert | Critical | Error => {
                tracing::error!(component = %self.component, facility, "librdkafka: {message}");
            }
            Warning => tracing::warn!(component = %self.component, facility, "librdkafka: {message}"),
            _ => tracing::debug!(component = %self.component, facility, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.fatal.note(&error);
        let kind = format!("{:?}", error.rdkafka_error_code());
        if !self.should_log(&kind) {
            return;
        }
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            tracing::warn!(
                component = %self.component,
                brokers = %self.brokers,
                "no Kafka broker reachable; librdkafka keeps reconnecting with backoff: {reason}"
            );
        } else {
            tracing::warn!(component = %self.component, brokers = %self.brokers, "Kafka client error: {error}: {reason}");
        }
    }

    fn stats(&self, statistics: Statistics) {
        let mut lag = BTreeMap::new();
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // Partition -1 is librdkafka's internal "unassigned" queue; lag -1 means unknown.
                if p.partition >= 0 && p.consumer_lag >= 0 && p.fetch_state == "active" {
                    lag.insert((topic.clone(), *partition), p.consumer_lag);
                }
            }
        }
        if let Ok(mut current) = self.lag.lock() {
            *current = lag;
        }
    }
}

impl ConsumerContext for Context {}

/// Creates `topic` with `partitions` partitions (replication factor 1) unless it exists.
///
/// # Errors
/// The broker is unreachable or refused the request.
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers, &[], &BTreeMap::new())
        .create()
        .map_err(|e| format!("Kafka admin client for {brokers}: {e}"))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results =
        admin.create_topics([&new], &options).await.map_err(|e| format!("creating topic {topic} on {brokers}: {e}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(format!("creating topic {name} on {brokers}: {code}")),
        }
    }
    Ok(())
}

/// One line about a producer or consumer error, for dead-letter reasons and logs.
pub fn describe(error: &KafkaError) -> String {
    match error.rdkafka_error_code() {
        Some(code) => format!("{error} ({code:?})"),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode;

    use super::{Context, is_fatal};

    /// Regression (issue 19): a `TopicAuthorizationFailed` (a missing ACL) was treated as a
    /// per-record rejection, so it dead-lettered the whole stream instead of stopping it.
    #[test]
    fn a_topic_authorization_failure_is_fatal_not_a_per_record_rejection() {
        let denied = KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed);
        assert!(is_fatal(&denied));
        for code in [RDKafkaErrorCode::SaslAuthenticationFailed, RDKafkaErrorCode::GroupAuthorizationFailed] {
            assert!(is_fatal(&KafkaError::MessageConsumption(code)), "{code:?}");
        }
        for code in
            [RDKafkaErrorCode::MessageSizeTooLarge, RDKafkaErrorCode::AllBrokersDown, RDKafkaErrorCode::RequestTimedOut]
        {
            assert!(!is_fatal(&KafkaError::MessageProduction(code)), "{code:?}");
        }
        let context = Context::new("sinks.out", "127.0.0.1:9092");
        assert_eq!(context.fatal(), None);
        context.report(&KafkaError::MessageProduction(RDKafkaErrorCode::AllBrokersDown));
        assert_eq!(context.fatal(), None, "a broker down is retried");
        context.report(&denied);
        let fatal = context.fatal().unwrap();
        assert!(
            fatal.contains("sinks.out") && fatal.contains("TopicAuthorizationFailed") && fatal.contains("ACL"),
            "{fatal}"
        );
    }
}
