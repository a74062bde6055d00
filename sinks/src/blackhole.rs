//! Sink `blackhole`: encodes every output as JSON (so the cost of encoding is paid) and drops
//! it. For benchmarks and dry runs; it counts what it was given.
//!
//! ```toml
//! [sinks.nowhere]
//! type = "blackhole"
//! inputs = ["ride_duration"]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use serde::Deserialize;
use tributary_framework::config::ComponentSpec;
use tributary_framework::registry::BuildFuture;
use tributary_framework::{ComponentError, Delivery, Input, Sink};

/// `[sinks.<id>]` with `type = "blackhole"`: no options.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {}

/// Encodes and discards.
#[derive(Debug, Default)]
pub struct BlackholeSink {
    outputs: AtomicU64,
    bytes: AtomicU64,
}

impl BlackholeSink {
    /// Outputs and encoded bytes received so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.outputs.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }
}

/// Builds the sink.
pub fn build(spec: ComponentSpec) -> BuildFuture<Arc<dyn Sink>> {
    Box::pin(async move {
        let _: BlackholeConfig = spec.parse()?;
        Ok(Arc::new(BlackholeSink::default()) as Arc<dyn Sink>)
    })
}

#[async_trait]
impl Sink for BlackholeSink {
    async fn deliver(&self, batch: &[Input<'_>]) -> Result<Vec<Delivery>, ComponentError> {
        let mut buf = Vec::with_capacity(256);
        let mut bytes = 0;
        let results = batch
            .iter()
            .map(|input| {
                buf.clear();
                match serde_json::to_writer(&mut buf, input.value) {
                    Ok(()) => {
                        bytes += buf.len() as u64;
                        Delivery::Delivered
                    }
                    Err(e) => Delivery::Reject(format!("cannot encode as JSON: {e}")),
                }
            })
            .collect();
        self.outputs.fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        Ok(results)
    }
}
