//! Sink `file`: appends one JSON document per line, flushed before the batch counts as
//! delivered (so a committed source position never refers to output still in a buffer).
//!
//! ```toml
//! [sinks.predictions]
//! type = "file"
//! inputs = ["ride_duration"]
//! path = "out/predictions.jsonl"
//! ```

use std::sync::Arc;

use serde::Deserialize;
use tributary_framework::Sink;
use tributary_framework::config::ComponentSpec;
use tributary_framework::registry::BuildFuture;

use crate::json_lines::JsonLinesSink;

/// `[sinks.<id>]` (or `[dead_letter]`) with `type = "file"`.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file to append to, relative to the working directory; created with its parent
    /// folders if missing.
    pub path: String,
}

/// Builds the sink, opening the file so that an unwritable path fails at start.
pub fn build(spec: ComponentSpec) -> BuildFuture<Arc<dyn Sink>> {
    Box::pin(async move {
        let config: FileSinkConfig = spec.parse()?;
        let path = std::path::Path::new(&config.path);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| spec.error("path", format!("cannot create {}: {e}", parent.display())))?;
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .map_err(|e| spec.error("path", format!("cannot open {:?} for appending: {e}", config.path)))?;
        Ok(Arc::new(JsonLinesSink::new(file, config.path)) as Arc<dyn Sink>)
    })
}
