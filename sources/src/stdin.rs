//! Source `stdin`: the same formats as [`crate::file`], from standard input, until it closes.
//!
//! ```toml
//! [sources.rides]
//! type = "stdin"
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::BufReader;
use tributary_framework::config::ComponentSpec;
use tributary_framework::registry::BuildFuture;
use tributary_framework::{ComponentError, Record, Source};

use crate::document::{DocumentReader, Format};

/// `[sources.<id>]` with `type = "stdin"`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {
    /// Layout of the input; `auto` detects JSON lines or JSON documents. Note that `auto` and
    /// `documents` read all of stdin before the first record when it is not JSON lines.
    #[serde(default)]
    pub format: Format,
}

/// Reads standard input to its end.
pub struct StdinSource {
    reader: DocumentReader<BufReader<tokio::io::Stdin>>,
}

/// Builds the source.
pub fn build(spec: ComponentSpec) -> BuildFuture<Box<dyn Source>> {
    Box::pin(async move {
        let config: StdinConfig = spec.parse()?;
        let source: Arc<str> = Arc::from(spec.path.component.as_str());
        let reader = DocumentReader::new(BufReader::new(tokio::io::stdin()), source, Arc::from("stdin"), config.format);
        Ok(Box::new(StdinSource { reader }) as Box<dyn Source>)
    })
}

#[async_trait]
impl Source for StdinSource {
    async fn next_batch(&mut self, max_records: usize) -> Result<Option<Vec<Record>>, ComponentError> {
        self.reader.next_batch(max_records).await
    }
}
