//! The three component traits every plugin implements, and the per-record results they return.

use async_trait::async_trait;

use crate::error::ComponentError;
use crate::output::Output;
use crate::record::{Position, Record};

/// One decoded value on its way through the graph, with the source record it came from.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// The decoded event (for a source's consumers) or a processor's output. It reads as a
    /// [`serde_json::Value`] (`Deref`); a sink that writes JSON serializes the [`Output`] itself, which
    /// copies a serialized output's text as it is.
    pub value: &'a Output,
    /// The source record this value derives from.
    pub record: &'a Record,
}

/// What a processor made of one input record.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Zero or more outputs, passed to every consumer of the processor.
    Emit(Vec<Output>),
    /// A transient failure: the runtime retries this record with backoff.
    Retry(String),
    /// A poison record: dead-lettered with this reason, never retried.
    Reject(String),
}

impl Outcome {
    /// A single output (a [`serde_json::Value`], or an [`Output`] serialized by the processor).
    pub fn one(output: impl Into<Output>) -> Self {
        Outcome::Emit(vec![output.into()])
    }
}

/// What a sink made of one output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Durably handed to the destination.
    Delivered,
    /// Not delivered this time (throttled, internal failure): retried with backoff.
    Retry(String),
    /// The destination will never take this output (too large, invalid): dead-lettered.
    Reject(String),
}

/// Reads records. Driven by one task per source; `commit` is called with watermark positions
/// only (every record up to and including each position has been delivered or dead-lettered).
#[async_trait]
pub trait Source: Send {
    /// Reads up to `max_records` records. `Ok(None)` means the input is finished (a file or a
    /// fixed count); an endless source waits until it has records.
    ///
    /// # Errors
    /// A [`ComponentError::Retryable`] is retried with backoff; a fatal error stops the pipeline.
    ///
    /// # Cancel safety
    /// The runtime drops this future on shutdown. Records it had read but not returned are not
    /// lost: their positions were never committed, so they are read again on restart.
    async fn next_batch(&mut self, max_records: usize) -> Result<Option<Vec<Record>>, ComponentError>;

    /// Records that everything up to and including each position is done. The default does
    /// nothing (sources with no durable position, such as stdin).
    ///
    /// # Errors
    /// A failed commit is logged and retried at the next commit.
    async fn commit(&mut self, positions: &[Position]) -> Result<(), ComponentError> {
        let _ = positions;
        Ok(())
    }

    /// Values the source reports about itself (per-shard lag, leases held), exported as gauges
    /// by `--metrics-addr` and summarised on the status line. The default reports none.
    fn gauges(&self) -> Vec<crate::metrics::Gauge> {
        Vec::new()
    }

    /// Called once when the source stops, after its final commit: release what it holds
    /// (leases), close connections. The default does nothing.
    ///
    /// # Errors
    /// Logged; the run's result is not changed.
    async fn close(&mut self) -> Result<(), ComponentError> {
        Ok(())
    }
}

/// Turns a batch of inputs into one outcome per input, in order.
#[async_trait]
pub trait Processor: Send + Sync {
    /// Processes a whole batch (vectorised inference). Must return exactly one outcome per
    /// input; CPU-heavy work belongs off the async executor (`spawn_blocking`).
    ///
    /// # Errors
    /// An error applies to the whole batch: retryable errors are retried, fatal ones fail the
    /// batch's records (they are not committed).
    async fn process(&self, batch: &[Input<'_>]) -> Result<Vec<Outcome>, ComponentError>;

    /// Whether the processor reads events straight from their JSON text
    /// ([`Processor::process_json_text`]). When a source's only consumer is such a processor,
    /// the runtime does not decode that source's records into values first (the streaming fast
    /// path: a typed, borrowed parse of the fields a model needs instead of a whole
    /// `serde_json::Value`). The default is `false`.
    fn reads_json_text(&self) -> bool {
        false
    }

    /// Processes events still in their JSON text (each record's payload is
    /// [`Payload::Bytes`](crate::record::Payload::Bytes) within the size limit), parsing only
    /// what the processor needs. Returns one entry per record: `None` for a record it does not
    /// read this way (another shape, a value it would reject, not JSON at all), which the
    /// runtime then decodes and passes to [`Processor::process`], or rejects as not JSON, so that
    /// both paths give every record the same outcome. Called only when
    /// [`Processor::reads_json_text`] is `true`.
    ///
    /// # Errors
    /// As for [`Processor::process`].
    async fn process_json_text(&self, batch: &[&Record]) -> Result<Vec<Option<Outcome>>, ComponentError> {
        Ok(vec![None; batch.len()])
    }

    /// Values the processor reports about itself (the model version it serves, reloads),
    /// exported as gauges labelled `processor="<id>"` by `--metrics-addr`. The default reports
    /// none.
    fn gauges(&self) -> Vec<crate::metrics::Gauge> {
        Vec::new()
    }

    /// The fields this processor reads from each row when it runs on columns (the batch job's
    /// fast path, [`crate::columns`]); `None` (the default) when it only takes events.
    fn column_fields(&self) -> Option<Vec<crate::columns::ColumnField>> {
        None
    }

    /// Processes rows as columns: one value per input row in each output column, and the rows
    /// rejected with their reasons. Called only when [`Processor::column_fields`] is `Some`.
    ///
    /// # Errors
    /// As for [`Processor::process`]: the error applies to the whole batch.
    async fn process_columns(
        &self,
        batch: &crate::columns::ColumnBatch,
    ) -> Result<crate::columns::ColumnOutput, ComponentError> {
        let _ = batch;
        Err(ComponentError::Fatal("this processor takes events, not columns".into()))
    }

    /// Hands the processor the sink that consumes its side output `output` (a sink with
    /// `inputs = ["<processor>.<output>"]`, such as a shadow model's comparisons). The processor
    /// delivers to it itself, best effort: side outputs never change the records' outcomes,
    /// retries or acknowledgements. The default has no side outputs.
    ///
    /// # Errors
    /// The processor has no side output of that name (or it is not configured).
    fn attach_side_output(&self, output: &str, sink: std::sync::Arc<dyn Sink>) -> Result<(), String> {
        let _ = sink;
        Err(format!("this processor has no side output {output:?}"))
    }

    /// Whether the processor can serve as it should: `Err` with the reason while it cannot
    /// (a model that follows the registry and whose new version failed to load). `tributary
    /// serve` answers not ready meanwhile. The default is always ready.
    ///
    /// # Errors
    /// Why it is not ready.
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }

    /// The model's tensors, for processors that wrap one (Open Inference Protocol metadata).
    /// The default is `None`.
    fn model_metadata(&self, name: &str) -> Option<crate::inference::ModelMetadata> {
        let _ = name;
        None
    }

    /// Runs the model on tensors as given, bypassing the feature mapping (Open Inference
    /// Protocol `infer`), fetching the named outputs (all when empty).
    ///
    /// # Errors
    /// The request does not fit the model, the model failed, or the processor wraps no model.
    async fn infer(
        &self,
        inputs: Vec<crate::inference::Tensor>,
        outputs: &[String],
    ) -> Result<Vec<crate::inference::Tensor>, crate::inference::InferError> {
        let _ = (inputs, outputs);
        Err(crate::inference::InferError::Unsupported("this processor takes events, not tensors".into()))
    }
}

/// Delivers outputs and reports one result per output, in order.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Delivers a batch. `Delivered` must mean the destination has it (written and flushed, or
    /// acknowledged by the service).
    ///
    /// # Errors
    /// An error applies to the whole batch, as for [`Processor::process`].
    async fn deliver(&self, batch: &[Input<'_>]) -> Result<Vec<Delivery>, ComponentError>;

    /// Called once when the pipeline stops, after the last delivery.
    ///
    /// # Errors
    /// Reported, and makes the run fail.
    async fn close(&self) -> Result<(), ComponentError> {
        Ok(())
    }
}
