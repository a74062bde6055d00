//! Sink `response`: what reaches it is the answer to the request the record came from, under
//! `tributary serve` (HTTP) and in the Lambda function (direct and API Gateway invocations).
//! Records read from a stream have nobody to answer: there it accepts and drops them.
//!
//! ```toml
//! [sinks.answer]
//! type = "response"
//! inputs = ["ride_duration"]
//! # The seeds' Flask answer, over each prediction envelope:
//! body = { duration = "{prediction.ride_duration}", model_version = "{version}" }
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use tributary_framework::config::ComponentSpec;
use tributary_framework::registry::BuildFuture;
use tributary_framework::template::Shape;
use tributary_framework::{ComponentError, Delivery, Input, Output, Sink};

/// `[sinks.<id>]` with `type = "response"`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponseConfig {
    /// The answer to one event, as a JSON shape over each value this sink receives (a string
    /// that is exactly `"{path}"` takes that value with its type). One value gives one
    /// document, several an array. Default: `{"predictions": [<values>]}`, as the Lambda
    /// function answers a direct invocation.
    pub body: Option<Value>,
}

impl ResponseConfig {
    /// The parsed `body` shape.
    ///
    /// # Errors
    /// (key, message) for a template that does not parse.
    pub fn shape(&self) -> Result<Option<Shape>, (&'static str, String)> {
        self.body.as_ref().map(Shape::parse).transpose().map_err(|e| ("body", e))
    }
}

/// The answer to one event from the values its response sinks receive, shaped by `shape`.
pub fn answer(shape: Option<&Shape>, values: Vec<Output>) -> Value {
    match shape {
        None => serde_json::json!({ "predictions": values }),
        Some(shape) if values.len() == 1 => shape.render(&values[0]),
        Some(shape) => Value::Array(values.iter().map(|v| shape.render(v)).collect()),
    }
}

/// Accepts and drops what it is given: the answers are taken from the graph by whoever serves.
#[derive(Debug, Default)]
pub struct ResponseSink;

/// Builds the sink (checks its body template).
pub fn build(spec: ComponentSpec) -> BuildFuture<Arc<dyn Sink>> {
    Box::pin(async move {
        let config: ResponseConfig = spec.parse()?;
        config.shape().map_err(|(key, message)| spec.error(key, message))?;
        Ok(Arc::new(ResponseSink) as Arc<dyn Sink>)
    })
}

#[async_trait]
impl Sink for ResponseSink {
    async fn deliver(&self, batch: &[Input<'_>]) -> Result<Vec<Delivery>, ComponentError> {
        Ok(vec![Delivery::Delivered; batch.len()])
    }
}
