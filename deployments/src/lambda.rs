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
//! - An API Gateway request (REST `httpMethod` or HTTP API / function URL `routeKey` shape) is
//!   served as `tributary serve` serves it, when the config's source has `type = "http"`: the
//!   same request mapping, response body and status codes ([`crate::http_api`]), answered as
//!   `{"statusCode", "headers", "body"}`. The other sinks (the tee) get the records before the
//!   function answers, since a frozen function runs nothing.
//!
//! - With a batch config (a `parquet` source), the function is a [`Handler::Objects`]: each S3
//!   `ObjectCreated` notification's object is scored into the config's `parquet` sinks.
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
pub use tributary_sources::kinesis_event::Invocation;

use crate::http_api::{self, HttpPlan, Reply};

/// The configuration compiled into the binary (`deployments/config/lambda.toml`).
pub const BUNDLED_CONFIG: &str = include_str!("../config/lambda.toml");

/// The function's state, created once per execution environment.
pub struct Function {
    graph: Arc<Graph>,
    source: usize,
    source_id: Arc<str>,
    /// `[pipeline] batch_size`: records per graph batch within one invocation.
    batch_size: usize,
    /// The HTTP request mapping, when the source has `type = "http"`.
    http: Option<HttpPlan>,
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
        Self::build(&config_from_env()?).await
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
        let http = match config.sources.values().next() {
            Some(spec) if spec.kind == "http" => Some(HttpPlan::of(config)?),
            _ => None,
        };
        let pipeline = Pipeline::build(config, registry).await?;
        let graph = pipeline.graph();
        let source_id = graph.source_ids()[0].clone();
        Ok(Function { graph, source: 0, source_id, http, batch_size: config.pipeline.batch_size })
    }

    /// Serves one invocation.
    ///
    /// # Errors
    /// Only for direct invocations: the event was rejected, or could not be processed.
    pub async fn handle(&self, event: Value) -> Result<Value, InvocationError> {
        if kinesis_event::is_event_document(&event) {
            let records = kinesis_event::records(&self.source_id, &event, "lambda");
            // The event as JSON (every record's base64 data and metadata) is as large again as
            // its records: a 10,000-record batch's would stay resident for nothing.
            drop(event);
            return Ok(self.kinesis(&records).await);
        }
        if let Some(request) = api_request(&event) {
            return Ok(self.http(request).await);
        }
        self.direct(event).await
    }

    /// Serves one invocation read as an [`Invocation`]: a Kinesis event's records straight
    /// from its text, without the event as JSON values (what the packaged function does).
    ///
    /// # Errors
    /// As [`Function::handle`].
    pub async fn handle_invocation(&self, invocation: Invocation) -> Result<Value, InvocationError> {
        match invocation {
            Invocation::Kinesis(mut records) => {
                for record in &mut records {
                    record.position.source = self.source_id.clone();
                }
                Ok(self.kinesis(&records).await)
            }
            Invocation::Other(event) => self.handle(event).await,
        }
    }

    /// [`Function::handle_invocation`] with the invocation's deadline (see
    /// [`Function::handle_until`]).
    ///
    /// # Errors
    /// As [`Function::handle`].
    pub async fn handle_invocation_until(
        &self,
        invocation: Invocation,
        deadline: std::time::Instant,
    ) -> Result<Value, InvocationError> {
        tributary_framework::retry::DEADLINE.scope(deadline, self.handle_invocation(invocation)).await
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

    /// Runs the records through the graph `batch_size` at a time, as a worker's source hands
    /// them over, so that memory follows `[pipeline] batch_size` rather than the event source
    /// mapping's batch (up to 10,000 records, 6 MB); every failed record, in order, is reported.
    async fn kinesis(&self, records: &[Record]) -> Value {
        let mut failures: Vec<KinesisBatchItemFailure> = Vec::new();
        for chunk in records.chunks(self.batch_size.max(1)) {
            let report = self.graph.run_batch(self.source, chunk).await;
            failures.extend(report.failed().map(|(index, reason)| {
                let sequence = chunk[index].position.offset.to_string();
                tracing::warn!(%sequence, %reason, "record failed; reporting it in batchItemFailures");
                let mut failure = KinesisBatchItemFailure::default();
                failure.item_identifier = Some(sequence);
                failure
            }));
        }
        let mut response = KinesisEventResponse::default();
        response.batch_item_failures = failures;
        serde_json::to_value(response).unwrap_or_else(|_| json!({"batchItemFailures": []}))
    }

    /// An API Gateway request, answered in API Gateway's response shape.
    async fn http(&self, request: ApiRequest) -> Value {
        let reply = match &self.http {
            None => Reply::error(
                404,
                "this function's config has no `type = \"http\"` source to serve HTTP requests \
                 (see deployments/config/web-service.toml)",
            ),
            Some(plan) => self.http_reply(plan, request).await,
        };
        let mut headers = serde_json::Map::new();
        headers.insert("content-type".into(), json!("application/json"));
        if reply.retry_later() {
            headers.insert("retry-after".into(), json!("1"));
        }
        json!({"statusCode": reply.status, "headers": headers, "body": reply.body.to_string(), "isBase64Encoded": false})
    }

    async fn http_reply(&self, plan: &HttpPlan, request: ApiRequest) -> Reply {
        if !request.path.ends_with(&plan.http.route) {
            return Reply::error(
                404,
                format!("no route {}; predictions are at POST {}", request.path, plan.http.route),
            );
        }
        if request.method != "POST" {
            return Reply::error(405, format!("{} takes POST, not {}", plan.http.route, request.method));
        }
        if request.body.len() > plan.http.max_body_bytes {
            return Reply::error(
                413,
                format!("the request body is over {} bytes (max_body_bytes)", plan.http.max_body_bytes),
            );
        }
        let n = HTTP_REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = request.id.unwrap_or_else(|| format!("r{n}"));
        let parsed = match http_api::records(plan, request.body, &id, n) {
            Ok(parsed) => parsed,
            Err(message) => return Reply::error(400, message),
        };
        let response = self.graph.sink_index(&plan.response_sink).into_iter().collect::<Vec<_>>();
        let evaluated = self.graph.evaluate_batch(self.source, &parsed.records).await;
        let answers = self.graph.answers(&evaluated, &response);
        let report = self.graph.deliver_evaluated(evaluated, &parsed.records, &response, plan.dead_letter).await;
        for (index, reason) in report.failed() {
            tracing::error!(position = %parsed.records[index].position, %reason, "served record not delivered to the tee");
        }
        http_api::reply(plan, answers, parsed.array)
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

/// `TRIBUTARY_CONFIG`, or the bundled configuration.
fn config_from_env() -> Result<PipelineConfig, ConfigError> {
    match std::env::var_os("TRIBUTARY_CONFIG") {
        Some(path) => config::load(std::path::Path::new(&path)),
        None => config::from_toml_str("lambda.toml (bundled)", BUNDLED_CONFIG),
    }
}

/// What the function runs: a stream pipeline ([`Function`]), or a batch job scoring the objects
/// S3 `ObjectCreated` notifications name, when its config's source is `parquet` (feature
/// `parquet-s3`; see `crate::batch::objects`).
pub enum Handler {
    /// Kinesis events, API Gateway requests, direct invocations.
    Stream(Function),
    /// S3 notifications.
    #[cfg(feature = "parquet-s3")]
    Objects(crate::batch::objects::ObjectJob),
}

impl Handler {
    /// Loads `TRIBUTARY_CONFIG` (or the bundled configuration) and builds what it describes.
    ///
    /// # Errors
    /// As [`Function::from_env`].
    pub async fn from_env() -> Result<Self, ConfigError> {
        let config = config_from_env()?;
        #[cfg(feature = "parquet-s3")]
        if crate::batch::is_batch(&config) {
            return Ok(Handler::Objects(crate::batch::objects::ObjectJob::build(&config, &crate::registry()).await?));
        }
        Ok(Handler::Stream(Function::build(&config).await?))
    }

    /// Serves one invocation, as [`Function::handle_until`] for a stream pipeline.
    ///
    /// # Errors
    /// As [`Function::handle_until`]; for a batch job, an event that is not an S3 notification
    /// (`InvalidEvent`) or an object that could not be scored (`Failed`, so S3 retries).
    pub async fn handle_until(&self, event: Value, deadline: std::time::Instant) -> Result<Value, InvocationError> {
        match self {
            Handler::Stream(function) => function.handle_until(event, deadline).await,
            #[cfg(feature = "parquet-s3")]
            Handler::Objects(job) => job.handle(&event).await.map_err(|e| match e {
                Ok(reason) => InvocationError::InvalidEvent(reason),
                Err(reason) => InvocationError::Failed(reason),
            }),
        }
    }
}

/// Numbers the API Gateway requests of this execution environment.
static HTTP_REQUESTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The parts of an API Gateway request the function uses.
#[derive(Debug)]
struct ApiRequest {
    method: String,
    path: String,
    body: Bytes,
    /// The `X-Request-Id` header (or API Gateway's request id).
    id: Option<String>,
}

/// An API Gateway request: REST (`httpMethod`, `path`) or HTTP API / function URL payload 2.0
/// (`requestContext.http.method`, `rawPath`). `None` for any other event.
fn api_request(event: &Value) -> Option<ApiRequest> {
    let context = event.get("requestContext")?;
    let (method, path) = match (event.get("httpMethod"), context.get("http")) {
        (Some(method), _) => (method.as_str()?, event.get("path").and_then(Value::as_str).unwrap_or("/")),
        (None, Some(http)) => (
            http.get("method")?.as_str()?,
            event.get("rawPath").or_else(|| http.get("path")).and_then(Value::as_str).unwrap_or("/"),
        ),
        (None, None) => return None,
    };
    let text = event.get("body").and_then(Value::as_str).unwrap_or_default();
    let body = if event.get("isBase64Encoded").and_then(Value::as_bool).unwrap_or(false) {
        use base64::Engine;
        match base64::engine::general_purpose::STANDARD.decode(text) {
            Ok(bytes) => Bytes::from(bytes),
            // Not JSON either: the mapping answers 400.
            Err(_) => Bytes::from_static(b"<body is not valid base64>"),
        }
    } else {
        Bytes::from(text.to_owned())
    };
    let header = event
        .get("headers")
        .and_then(Value::as_object)
        .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case("x-request-id")))
        .and_then(|(_, v)| v.as_str())
        .map(str::to_owned);
    let id = header.or_else(|| context.get("requestId").and_then(Value::as_str).map(str::to_owned));
    Some(ApiRequest { method: method.to_ascii_uppercase(), path: path.to_string(), body, id })
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
            .processor::<tributary_framework::registry::Untyped>("echo", |_| -> BuildFuture<Arc<dyn Processor>> {
                Box::pin(async { Ok(Arc::new(Echo) as _) })
            })
            .sink::<tributary_framework::registry::Untyped>("odd_fails", |_| -> BuildFuture<Arc<dyn Sink>> {
                Box::pin(async { Ok(Arc::new(OddFails) as _) })
            })
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

    #[tokio::test]
    async fn an_event_larger_than_batch_size_is_run_in_batches_and_every_failure_reported() {
        let config = config::from_toml_str(
            "t.toml",
            "[pipeline]\nbatch_size = 3\n\
             [retry]\nmax_attempts = 1\non_exhausted = \"fail\"\n\
             [sources.k]\ntype = \"lambda\"\n[processors.e]\ntype = \"echo\"\ninputs = [\"k\"]\n\
             [sinks.s]\ntype = \"odd_fails\"\ninputs = [\"e\"]\n",
        )
        .unwrap();
        let function = Function::with_registry(&config, &registry()).await.unwrap();
        let values: Vec<Value> = (0..8).map(|n| json!({ "n": n })).collect();
        let answer = function.handle(event(&values)).await.unwrap();
        // Batches [0, 1, 2], [3, 4, 5], [6, 7]: the odd ones fail in each.
        let failed: Vec<&str> = answer["batchItemFailures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["itemIdentifier"].as_str().unwrap())
            .collect();
        assert_eq!(failed, ["101", "103", "105", "107"]);
        assert_eq!(function.graph.metrics().snapshot().batches, 3, "three graph batches");
    }
}
