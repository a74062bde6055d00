//! The JSON-lines sink behind `stdout`, `stderr` and `file`: encode a whole batch, write it,
//! flush, and only then report the batch delivered.

use async_trait::async_trait;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;
use tributary_framework::{ComponentError, Delivery, Input, Sink};

/// Writes one JSON document per line to `W`.
pub struct JsonLinesSink<W> {
    writer: Mutex<W>,
    name: String,
}

impl<W: AsyncWrite + Unpin + Send> JsonLinesSink<W> {
    /// A sink writing to `writer`; `name` appears in error messages.
    pub fn new(writer: W, name: impl Into<String>) -> Self {
        JsonLinesSink { writer: Mutex::new(writer), name: name.into() }
    }

    fn io_error(&self, e: std::io::Error) -> ComponentError {
        ComponentError::Retryable(format!("writing {}: {e}", self.name))
    }
}

#[async_trait]
impl<W: AsyncWrite + Unpin + Send> Sink for JsonLinesSink<W> {
    async fn deliver(&self, batch: &[Input<'_>]) -> Result<Vec<Delivery>, ComponentError> {
        let mut buf = Vec::with_capacity(batch.len() * 128);
        let mut results = Vec::with_capacity(batch.len());
        for input in batch {
            let start = buf.len();
            match write_line(&mut buf, input.value) {
                Ok(()) => results.push(Delivery::Delivered),
                Err(e) => {
                    buf.truncate(start);
                    results.push(Delivery::Reject(format!("cannot encode as JSON: {e}")));
                }
            }
        }
        let mut writer = self.writer.lock().await;
        writer.write_all(&buf).await.map_err(|e| self.io_error(e))?;
        writer.flush().await.map_err(|e| self.io_error(e))?;
        Ok(results)
    }

    async fn close(&self) -> Result<(), ComponentError> {
        self.writer.lock().await.flush().await.map_err(|e| self.io_error(e))
    }
}

fn write_line(buf: &mut Vec<u8>, value: &impl serde::Serialize) -> Result<(), serde_json::Error> {
    serde_json::to_writer(&mut *buf, value)?;
    buf.push(b'\n');
    Ok(())
}
