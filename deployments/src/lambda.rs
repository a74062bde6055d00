//! The AWS Lambda adapter: one pipeline, built once at init, serving each invocation.
//!
//! - A Kinesis event (`{"Records": [...]}`) runs through the whole pipeline as one batch
//!   ([`Graph::run_batch`]). The answer is a partial batch response: the sequence numbers of the
//!   records that failed (a sink still refusing after retries) in `batchItemFailures`, so that
//!   the event source mapping retries from the first of them. Poison records are dead-lettered
//!   and *not* reported, so they never block the shard.
//! - Any other event (the seeds' bare ride event, `{"ride": {...}, "ride_id": 123}`) is one
//!   record, answered directly with `{"predictions": [...]}` and not sent to the sinks; a record
//!   the processors reject is answered with an error naming the reason.
//!
//! Kinesis entries are decoded leniently from JSON (not with `aws_lambda_events`' typed event),
//! so that one entry with broken base64 is dead-lettered alone instead of failing the whole event.

use std::sync::Arc;

use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use bytes::Bytes;
use lambda_runtime::Diagnostic;
use serde_json::{Value, json};
use tributary_framework::config::{self, PipelineConfig};
use tributary_framework::graph::Graph;
use tributary_framework::registry::Registry;
use tributary_framework::runtime::Pipeline;
use tributary_framework::{ConfigError, Offset, Position, Record};
use tributary_sources::kinesis_event;

/// The configuration compiled into the binary (`deployments/config/lambda.toml`).
pub const BUNDLED_CONFIG: &str = include_str!("../config/lambda.toml");

/// The function's state, created once per execution environment.
pub struct Function {
    graph: Arc<Graph>,
    source: usize,
    source_id: Arc<str>,
}

/// Why an invocation was answered with an error.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    /// A direct invocation whose event the pipeline rejected.
    #[error("{0}")]
    InvalidEvent(String),
    /// A direct invocation that could not be processed now (retry later).
    #[error("{0}")]
    Failed(String),
}

impl From<InvocationError> for Diagnostic {
    fn from(error: InvocationError) -> Self {
        let error_type = match error {
            InvocationError::InvalidEvent(_) => "InvalidEvent",
            InvocationError::Failed(_) => "ProcessingFailed",
        };
        Diagnostic { error_type: error_type.into(), error_message: error.to_string() }
    }
}

impl Function {
    /// Loads `TRIBUTARY_CONFIG` (or the bundled configuration) and builds the pipeline: the
    /// model is fetched and its session created here, once.
    ///
    /// # Errors
    /// The configuration or a component is invalid, or it does not have exactly one source.
    pub async fn from_env() -> Result<Self, ConfigError> {
        let config = match std::env::var_os("TRIBUTARY_CONFIG") {
            Some(path) => config::load(std::path::Path::new(&path))?,
            None => config::from_toml_str("lambda.toml (bundled)", BUNDLED_CONFIG)?,
        };
        Self::build(&config).await
    }

    /// Builds the function from a configuration with exactly one source.
    ///
    /// # Errors
    /// As [`Function::from_env`].
    pub async fn build(config: &PipelineConfig) -> Result<Self, ConfigError> {
        Self::with_registry(config, &crate::registry()).await
    }

    /// Builds the function with a given plugin registry (embedders, tests).
    ///
    /// # Errors
    /// As [`Function::from_env`].
    pub async fn with_registry(config: &PipelineConfig, registry: &Registry) -> Result<Self, ConfigError> {
        if config.sources.len() != 1 {
            return Err(ConfigError::Load {
                file: config.file.clone(),
                message: format!(
                    "a Lambda pipeline has exactly one source (type = \"lambda\"), found {}",
                    config.sources.len()
                ),
            });
        }
        let pipeline = Pipeline::build(config, registry).await?;
        let graph = pipeline.graph();
        let source_id = graph.source_ids()[0].clone();
        Ok(Function { graph, source: 0, source_id })
    }

    /// Serves one invocation.
    ///
    /// # Errors
    /// Only for direct invocations: the event was rejected, or could not be processed.
    pub async fn handle(&self, event: Value) -> Result<Value, InvocationError> {
        if kinesis_event::is_event_document(&event) {
            let records = kinesis_event::records(&self.source_id, &event, "lambda");
            return Ok(self.kinesis(&records).await);
        }
        self.direct(event).await
    }

    /// [`Function::handle`] with the invocation's deadline: no retry is started that would end
    /// after it (see [`tributary_framework::retry::DEADLINE`]), so records still failing are
    /// reported in `batchItemFailures` in time, instead of the function timing out and the
    /// event source mapping resending the whole batch.
    ///
    /// # Errors
    /// As [`Function::handle`].
    pub async fn handle_until(&self, event: Value, deadline: std::time::Instant) -> Result<Value, InvocationError> {
        tributary_framework::retry::DEADLINE.scope(deadline, self.handle(event)).await
    }

    async fn kinesis(&self, records: &[Record]) -> Value {
        let report = self.graph.run_batch(self.source, records).await;
        let failures: Vec<KinesisBatchItemFailure> = report
            .failed()
            .map(|(index, reason)| {
                let sequence = records[index].position.offset.to_string();
                tracing::warn!(%sequence, %reason, "record failed; reporting it in batchItemFailures");
                let mut failure = KinesisBatchItemFailure::default();
                failure.item_identifier = Some(sequence);
                failure
            })
            .collect();
        let mut response = KinesisEventResponse::default();
        response.batch_item_failures = failures;
        serde_json::to_value(response).unwrap_or_else(|_| json!({"batchItemFailures": []}))
    }

    async fn direct(&self, event: Value) -> Result<Value, InvocationError> {
        let position =
            Position { source: self.source_id.clone(), partition: "direct".into(), offset: Offset::Index(0) };
        let payload = Bytes::from(serde_json::to_vec(&event).unwrap_or_default());
        let record = Record::new(payload, position);
        let mut results = self.graph.evaluate(self.source, std::slice::from_ref(&record)).await;
        match results.pop() {
            Some(Ok(predictions)) => Ok(json!({ "predictions": predictions })),
            Some(Err(reason)) if reason.contains("gave up after") => Err(InvocationError::Failed(reason)),
            Some(Err(reason)) => Err(InvocationError::InvalidEvent(format!(
                "not a Kinesis event ({{\"Records\": [...]}}) nor an event the pipeline accepts: {reason}"
            ))),
            None => Err(InvocationError::Failed("no result".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use serde_json::{Value, json};
    use tributary_framework::config;
    use tributary_framework::registry::BuildFuture;
    use tributary_framework::{ComponentError, Delivery, Input, Outcome, Processor, Sink};

    use super::*;

    /// Passes events through.
    struct Echo;

    #[async_trait]
    impl Processor for Echo {
        async fn process(&self, batch: &[Input<'_>]) -> Result<Vec<Outcome>, ComponentError> {
            Ok(batch.iter().map(|i| Outcome::one(i.value.clone())).collect())
        }
    }

    /// Refuses (retryably) every event with an odd `n`.
    struct OddFails;

    #[async_trait]
    impl Sink for OddFails {
        async fn deliver(&self, batch: &[Input<'_>]) -> Result<Vec<Delivery>, ComponentError> {
            Ok(batch
                .iter()
                .map(|i| {
                    if i.value["n"].as_u64().unwrap_or(0) % 2 == 1 {
                        Delivery::Retry("throttled".into())
                    } else {
                        Delivery::Delivered
                    }
                })
                .collect())
        }
    }

    fn registry() -> Registry {
        crate::registry()
            .processor("echo", |_| -> BuildFuture<Arc<dyn Processor>> { Box::pin(async { Ok(Arc::new(Echo) as _) }) })
            .sink("odd_fails", |_| -> BuildFuture<Arc<dyn Sink>> { Box::pin(async { Ok(Arc::new(OddFails) as _) }) })
    }

    fn event(values: &[Value]) -> Value {
        use base64::Engine;
        let records: Vec<Value> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                json!({"kinesis": {"sequenceNumber": format!("{}", 100 + i), "partitionKey": "k",
                                   "data": base64::engine::general_purpose::STANDARD.encode(v.to_string())},
                       "eventID": format!("shardId-000000000000:{}", 100 + i),
                       "eventSourceARN": "arn:aws:kinesis:us-east-1:1:stream/s"})
            })
            .collect();
        json!({ "Records": records })
    }

    #[tokio::test]
    async fn sink_failures_are_reported_lowest_first_and_poison_is_not() {
        let config = config::from_toml_str(
            "t.toml",
            "[retry]\nmax_attempts = 2\ninitial_backoff_ms = 1\nmax_backoff_ms = 1\non_exhausted = \"fail\"\n\
             [sources.k]\ntype = \"lambda\"\n[processors.e]\ntype = \"echo\"\ninputs = [\"k\"]\n\
             [sinks.s]\ntype = \"odd_fails\"\ninputs = [\"e\"]\n",
        )
        .unwrap();
        let function = Function::with_registry(&config, &registry()).await.unwrap();
        let mut values: Vec<Value> = (0..6).map(|n| json!({ "n": n })).collect();
        values.insert(2, json!("poison is a string, not an object")); // delivered by echo: not odd
        let mut event = event(&values);
        event["Records"][4]["kinesis"]["data"] = json!("%%% not base64"); // poison: dead-lettered
        let answer = function.handle(event).await.unwrap();
        // Records (sequence 100 + index): n=1 at 101, n=3 at 104 (replaced by poison), n=5 at 106.
        assert_eq!(answer, json!({"batchItemFailures": [{"itemIdentifier": "101"}, {"itemIdentifier": "106"}]}));
    }
}
