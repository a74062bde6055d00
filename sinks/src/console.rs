//! Sinks `stdout` and `stderr`: one JSON document per line.
//!
//! ```toml
//! [sinks.console]
//! type = "stdout"
//! inputs = ["ride_duration"]
//! ```

use std::sync::Arc;

use serde::Deserialize;
use tributary_framework::Sink;
use tributary_framework::config::ComponentSpec;
use tributary_framework::registry::BuildFuture;

use crate::json_lines::JsonLinesSink;

/// `[sinks.<id>]` with `type = "stdout"` or `"stderr"`: no options.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {}

/// Builds a `stdout` sink.
pub fn build_stdout(spec: ComponentSpec) -> BuildFuture<Arc<dyn Sink>> {
    Box::pin(async move {
        let _: ConsoleConfig = spec.parse()?;
        Ok(Arc::new(JsonLinesSink::new(tokio::io::stdout(), "stdout")) as Arc<dyn Sink>)
    })
}

/// Builds a `stderr` sink.
pub fn build_stderr(spec: ComponentSpec) -> BuildFuture<Arc<dyn Sink>> {
    Box::pin(async move {
        let _: ConsoleConfig = spec.parse()?;
        Ok(Arc::new(JsonLinesSink::new(tokio::io::stderr(), "stderr")) as Arc<dyn Sink>)
    })
}
