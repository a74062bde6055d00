//! Source `http`: records arrive as HTTP requests to `tributary serve` (the seeds' web service),
//! which gathers concurrent requests into batches and hands them to the graph itself
//! (`deployments/src/serve/`). Under `tributary run` it reads nothing.
//!
//! ```toml
//! [sources.requests]
//! type = "http"
//! route = "/predict"
//! # The event the processors expect, built from the request: `{body}` is the JSON body (one
//! # element of it, for an array), `{request_id}` the `X-Request-Id` header or a counter.
//! request = { ride = "{body}", ride_id = "{request_id}" }
//! max_batch_size = 64
//! ```

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use tributary_framework::config::ComponentSpec;
use tributary_framework::registry::BuildFuture;
use tributary_framework::{ComponentError, Record, Source};

/// `[sources.<id>]` with `type = "http"`: the route, the request mapping, batching and limits.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The path that takes prediction requests (`POST`): a JSON value is one event, a JSON
    /// array a batch of them, answered in order. Default `/predict`.
    #[serde(default = "default_route")]
    pub route: String,
    /// The event handed to the processors, as a JSON shape over `{"body": <the request's JSON
    /// value>, "request_id": <X-Request-Id or a counter>}` (see `template::Shape`: a string that
    /// is exactly `"{path}"` takes that value with its type). Default: the body itself.
    pub request: Option<Value>,
    /// Most events in one inference call: concurrent requests are gathered up to this.
    /// Default 64.
    #[serde(default = "default_max_batch_size")]
    pub max_batch_size: usize,
    /// How long a batch may wait for more requests once it has one, in microseconds. Default 0:
    /// a batch takes what is queued when the model is free, so a lone request waits for
    /// nothing, and under load requests gather while the model runs the previous batch.
    #[serde(default)]
    pub max_batch_delay_us: u64,
    /// Batches inferred at the same time. Default 2.
    #[serde(default = "default_concurrent_batches")]
    pub max_concurrent_batches: usize,
    /// Requests waiting for a batch; beyond it requests are refused with 429 and `Retry-After`.
    /// Default 1024.
    #[serde(default = "default_queue")]
    pub queue_size: usize,
    /// A request not answered within this many milliseconds gets 504. Default 10000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Largest request body in bytes; larger ones get 413. Default 1048576 (1 MiB).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Served batches waiting to be delivered to the pipeline's other sinks (the tee) and its
    /// dead-letter destination; when they are all taken, answers wait for room. Default 64.
    #[serde(default = "default_tee_buffer")]
    pub tee_buffer: usize,
}

fn default_route() -> String {
    "/predict".into()
}
fn default_max_batch_size() -> usize {
    64
}
fn default_concurrent_batches() -> usize {
    2
}
fn default_queue() -> usize {
    1024
}
fn default_timeout_ms() -> u64 {
    10_000
}
fn default_max_body_bytes() -> usize {
    1 << 20
}
fn default_tee_buffer() -> usize {
    64
}

impl HttpConfig {
    /// Checks the limits, naming the key at fault.
    ///
    /// # Errors
    /// (key, message).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let positive = [
            ("max_batch_size", self.max_batch_size),
            ("max_concurrent_batches", self.max_concurrent_batches),
            ("queue_size", self.queue_size),
            ("max_body_bytes", self.max_body_bytes),
            ("tee_buffer", self.tee_buffer),
            ("timeout_ms", usize::try_from(self.timeout_ms).unwrap_or(usize::MAX)),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err((key, "must be at least 1".into()));
        }
        if !self.route.starts_with('/') || self.route.starts_with("/v2") || self.route == "/metrics" {
            return Err(("route", format!("{:?} must start with `/` and not be /metrics or under /v2", self.route)));
        }
        Ok(())
    }
}

/// The placeholder source of a served pipeline.
#[derive(Debug, Default)]
pub struct HttpSource;

/// Builds the source (checks its options).
pub fn build(spec: ComponentSpec) -> BuildFuture<Box<dyn Source>> {
    Box::pin(async move {
        let config: HttpConfig = spec.parse()?;
        config.check().map_err(|(key, message)| spec.error(key, message))?;
        Ok(Box::new(HttpSource) as Box<dyn Source>)
    })
}

#[async_trait]
impl Source for HttpSource {
    async fn next_batch(&mut self, _max_records: usize) -> Result<Option<Vec<Record>>, ComponentError> {
        Err(ComponentError::Fatal(
            "an `http` source receives requests only under `tributary serve --config <this file>`".into(),
        ))
    }
}
