//! Source `file`: reads JSON lines or Kinesis event documents from a file, then finishes.
//!
//! ```toml
//! [sources.rides]
//! type = "file"
//! path = "shared/events.jsonl"
//! format = "auto"        # or "json_lines", "documents"
//! ```

use std::sync::Arc;

use serde::Deserialize;
use tokio::io::BufReader;
use tributary_framework::Source;
use tributary_framework::config::ComponentSpec;
use tributary_framework::registry::BuildFuture;

use crate::document::{DocumentReader, Format};

/// `[sources.<id>]` with `type = "file"`.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to read, relative to the working directory.
    pub path: String,
    /// Layout of the file; `auto` detects JSON lines or JSON documents.
    #[serde(default)]
    pub format: Format,
    /// The longest line (or documents input) read, in bytes; a longer line is dead-lettered
    /// with its line number, never held whole. Default 16 MiB.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
}

fn default_max_line_bytes() -> usize {
    crate::document::DEFAULT_MAX_LINE_BYTES
}

/// Builds the source, opening the file so that a missing file fails at start.
pub fn build(spec: ComponentSpec) -> BuildFuture<Box<dyn Source>> {
    Box::pin(async move {
        let config: FileConfig = spec.parse()?;
        let file = tokio::fs::File::open(&config.path)
            .await
            .map_err(|e| spec.error("path", format!("cannot open {:?}: {e}", config.path)))?;
        let reader = BufReader::with_capacity(256 * 1024, file);
        let source: Arc<str> = Arc::from(spec.path.component.as_str());
        Ok(Box::new(
            DocumentReader::new(reader, source, Arc::from(config.path.as_str()), config.format)
                .with_max_line_bytes(config.max_line_bytes),
        ) as Box<dyn Source>)
    })
}
