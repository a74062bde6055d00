//! Source `stdin`: the same formats as [`crate::file`], from standard input, until it closes.
//!
//! ```toml
//! [sources.rides]
//! type = "stdin"
//! ```

use std::sync::Arc;

use serde::Deserialize;
use tokio::io::BufReader;
use tributary_framework::Source;
use tributary_framework::config::ComponentSpec;
use tributary_framework::registry::BuildFuture;

use crate::document::{DocumentReader, Format};

/// `[sources.<id>]` with `type = "stdin"`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {
    /// Layout of the input; `auto` detects JSON lines or JSON documents. Note that `auto` and
    /// `documents` read all of stdin before the first record when it is not JSON lines.
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

/// Builds the source.
pub fn build(spec: ComponentSpec) -> BuildFuture<Box<dyn Source>> {
    Box::pin(async move {
        let config: StdinConfig = spec.parse()?;
        let source: Arc<str> = Arc::from(spec.path.component.as_str());
        let reader = DocumentReader::new(BufReader::new(tokio::io::stdin()), source, Arc::from("stdin"), config.format)
            .with_max_line_bytes(config.max_line_bytes);
        Ok(Box::new(reader) as Box<dyn Source>)
    })
}
