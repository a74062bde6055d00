//! Sinks `stdout` and `stderr`: one JSON document per line.
//!
//! ```toml
//! [sinks.console]
//! type = "stdout"
//! inputs = ["ride_duration"]
//! ```

use async_trait::async_trait;
use serde::Deserialize;
use tributary_framework::config::ComponentSpec;
use tributary_framework::registry::BuildFuture;
use tributary_framework::{ComponentError, Delivery, Input, Sink};

use crate::json_lines::JsonLines;

/// `[sinks.<id>]` with `type = "stdout"` or `"stderr"`: no options.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {}

/// Writes JSON lines to standard output.
pub struct StdoutSink(JsonLines<tokio::io::Stdout>);

/// Writes JSON lines to standard error.
pub struct StderrSink(JsonLines<tokio::io::Stderr>);

/// Builds a `stdout` sink.
pub fn build_stdout(spec: ComponentSpec) -> BuildFuture<std::sync::Arc<dyn Sink>> {
    Box::pin(async move {
        let _: ConsoleConfig = spec.parse()?;
        Ok(std::sync::Arc::new(StdoutSink(JsonLines::new(tokio::io::stdout(), "stdout"))) as std::sync::Arc<dyn Sink>)
    })
}

/// Builds a `stderr` sink.
pub fn build_stderr(spec: ComponentSpec) -> BuildFuture<std::sync::Arc<dyn Sink>> {
    Box::pin(async move {
        let _: ConsoleConfig = spec.parse()?;
        Ok(std::sync::Arc::new(StderrSink(JsonLines::new(tokio::io::stderr(), "stderr"))) as std::sync::Arc<dyn Sink>)
    })
}

#[async_trait]
impl Sink for StdoutSink {
    async fn deliver(&self, batch: &[Input<'_>]) -> Result<Vec<Delivery>, ComponentError> {
        self.0.deliver(batch).await
    }
    async fn close(&self) -> Result<(), ComponentError> {
        self.0.close().await
    }
}

#[async_trait]
impl Sink for StderrSink {
    async fn deliver(&self, batch: &[Input<'_>]) -> Result<Vec<Delivery>, ComponentError> {
        self.0.deliver(batch).await
    }
    async fn close(&self) -> Result<(), ComponentError> {
        self.0.close().await
    }
}
