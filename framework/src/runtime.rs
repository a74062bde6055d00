//! The streaming runtime: one driver task per source reads batches, hands each to the graph,
//! and commits watermarks as batches finish. Stops on shutdown (finishing what is in flight and
//! committing) or when every finite source is exhausted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::component::Source;
use crate::config::{PipelineConfig, PipelineSettings};
use crate::error::{ComponentError, ConfigError};
use crate::executor::{BatchReport, RecordStatus};
use crate::graph::{self, Graph};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::record::Position;
use crate::registry::Registry;
use crate::retry::RetryPolicy;
use crate::shared::SharedSources;
use crate::watermark::{Ticket, WatermarkTracker};

/// Why a run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A source failed in a way retries cannot fix.
    #[error("source {source_id}: {error}")]
    Source {
        /// The source's id.
        source_id: String,
        /// What it reported.
        error: ComponentError,
    },
    /// A record could be neither delivered nor dead-lettered; the run stops so that it is read
    /// again (from the last commit) on restart.
    #[error("source {source_id}: record at {position} failed: {reason}")]
    RecordFailed {
        /// The source's id.
        source_id: String,
        /// The first failed record's position.
        position: Position,
        /// Why it failed.
        reason: String,
    },
    /// A sink failed to close cleanly.
    #[error("sink {sink}: {error}")]
    Close {
        /// The sink's id.
        sink: String,
        /// What it reported.
        error: ComponentError,
    },
}

/// What a finished run did.
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    /// Final counters.
    pub metrics: MetricsSnapshot,
    /// The last committed position of every partition.
    pub committed: Vec<Position>,
}

/// A built pipeline: the shared graph and the sources that feed it.
pub struct Pipeline {
    graph: Arc<Graph>,
    sources: Vec<Box<dyn Source>>,
    settings: PipelineSettings,
}

impl Pipeline {
    /// Checks and builds every component of `config`.
    ///
    /// # Errors
    /// Any configuration or build error, naming the file, component and key.
    pub async fn build(config: &PipelineConfig, registry: &Registry) -> Result<Self, ConfigError> {
        let (graph, sources) = graph::build(config, registry).await?;
        Ok(Pipeline { graph: Arc::new(graph), sources, settings: config.pipeline.clone() })
    }

    /// Like [`Pipeline::build`], but sources that name a share (`shared = "..."`) join it in
    /// `shared`, as the pipeline `name`; start the shares with [`SharedSources::start`] once
    /// every pipeline is built.
    ///
    /// # Errors
    /// As [`Pipeline::build`].
    pub async fn build_shared(
        config: &PipelineConfig,
        registry: &Registry,
        shared: &mut SharedSources,
        name: &str,
    ) -> Result<Self, ConfigError> {
        let (graph, sources) = graph::build_with(config, registry, Some((shared, name))).await?;
        Ok(Pipeline { graph: Arc::new(graph), sources, settings: config.pipeline.clone() })
    }

    /// The graph, for callers that feed batches themselves (the Lambda adapter).
    pub fn graph(&self) -> Arc<Graph> {
        self.graph.clone()
    }

    /// Live counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.graph.metrics()
    }

    /// Runs until every source is exhausted or `shutdown` is cancelled, then finishes the
    /// batches in flight, commits, and closes the sinks. A source that fails fatally (or whose
    /// task panics) stops the others the same way, and the run ends with its error.
    ///
    /// # Errors
    /// A fatal source error, a record that failed permanently, or a sink that failed to close.
    /// Positions are committed up to the watermark in every case.
    pub async fn run(self, shutdown: CancellationToken) -> Result<RunSummary, RuntimeError> {
        let stop = shutdown.child_token();
        let mut drivers = FuturesUnordered::new();
        for (index, source) in self.sources.into_iter().enumerate() {
            let id = self.graph.source_ids[index].to_string();
            let driver = Driver {
                index,
                id: id.clone(),
                graph: self.graph.clone(),
                settings: self.settings.clone(),
                stop: stop.clone(),
            };
            let task = tokio::spawn(driver.run(source));
            drivers.push(async move { (id, task.await) });
        }
        let mut committed = Vec::new();
        let mut first_error = None;
        // As each source ends: the first to fail (or panic) stops the others, which finish
        // their batches in flight and commit.
        while let Some((id, ended)) = drivers.next().await {
            let result = ended.unwrap_or_else(|join| {
                Err(RuntimeError::Source {
                    source_id: id.clone(),
                    error: ComponentError::Fatal(format!("the source task panicked: {join}")),
                })
            });
            match result {
                Ok(positions) => committed.extend(positions),
                Err(e) => {
                    tracing::error!(source = %id, error = %e, "source failed; stopping the pipeline's other sources");
                    stop.cancel();
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Err((sink, error)) = self.graph.close_sinks().await {
            first_error.get_or_insert(RuntimeError::Close { sink, error });
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(RunSummary { metrics: self.graph.metrics.snapshot(), committed }),
        }
    }
}

struct Driver {
    index: usize,
    id: String,
    graph: Arc<Graph>,
    settings: PipelineSettings,
    stop: CancellationToken,
}

type Done = (Vec<Ticket>, Vec<Position>, BatchReport);

impl Driver {
    async fn run(self, mut source: Box<dyn Source>) -> Result<Vec<Position>, RuntimeError> {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
        let mut tracker = WatermarkTracker::default();
        let mut uncommitted: BTreeMap<Arc<str>, Position> = BTreeMap::new();
        let mut committed: BTreeMap<Arc<str>, Position> = BTreeMap::new();
        let commit_every = Duration::from_millis(self.settings.commit_interval_ms);
        let mut last_commit = Instant::now();
        let mut in_flight = 0usize;
        let mut reading = true;
        let mut failure: Option<RuntimeError> = None;
        let mut read_errors = 0u32;
        let read_backoff = RetryPolicy::source_reads();

        loop {
            // Acknowledgements first: they free capacity and move the watermark.
            while let Ok(done) = done_rx.try_recv() {
                in_flight -= 1;
                self.finish(done, &mut tracker, &mut failure, &mut reading);
            }
            uncommitted.extend(tracker.take_committable().into_iter().map(|p| (p.partition.clone(), p)));
            if !uncommitted.is_empty() && (last_commit.elapsed() >= commit_every || (!reading && in_flight == 0)) {
                self.commit(&mut *source, &mut uncommitted, &mut committed).await;
                last_commit = Instant::now();
            }
            if !reading || in_flight >= self.settings.max_in_flight {
                if in_flight == 0 {
                    break;
                }
                if let Some(done) = done_rx.recv().await {
                    in_flight -= 1;
                    self.finish(done, &mut tracker, &mut failure, &mut reading);
                }
                continue;
            }
            let read = tokio::select! {
                biased;
                () = self.stop.cancelled() => { reading = false; continue; }
                read = source.next_batch(self.settings.batch_size) => read,
            };
            self.graph.metrics.set_source_gauges(&self.id, source.gauges());
            self.graph.refresh_processor_gauges();
            match read {
                Ok(Some(records)) if records.is_empty() => {}
                Ok(Some(records)) => {
                    read_errors = 0;
                    let positions: Vec<Position> = records.iter().map(|r| r.position.clone()).collect();
                    let tickets = positions.iter().map(|p| tracker.register(p.clone())).collect();
                    let graph = self.graph.clone();
                    let tx = done_tx.clone();
                    let index = self.index;
                    in_flight += 1;
                    tokio::spawn(async move {
                        let report = graph.run_batch(index, &records).await;
                        let _ = tx.send((tickets, positions, report));
                    });
                }
                Ok(None) => reading = false,
                Err(error) if error.is_retryable() => {
                    read_errors += 1;
                    let pause = read_backoff.backoff(read_errors);
                    tracing::warn!(source = %self.id, %error, ?pause, "read failed; retrying");
                    tokio::select! {
                        () = self.stop.cancelled() => reading = false,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
                Err(error) => {
                    tracing::error!(source = %self.id, %error, "read failed; stopping");
                    failure.get_or_insert(RuntimeError::Source { source_id: self.id.clone(), error });
                    reading = false;
                    // The pipeline's other sources stop too (see `Pipeline::run`).
                    self.stop.cancel();
                }
            }
        }
        uncommitted.extend(tracker.take_committable().into_iter().map(|p| (p.partition.clone(), p)));
        self.commit(&mut *source, &mut uncommitted, &mut committed).await;
        if let Err(error) = source.close().await {
            tracing::warn!(source = %self.id, %error, "closing the source failed");
        }
        if !uncommitted.is_empty() && failure.is_none() {
            failure = Some(RuntimeError::Source {
                source_id: self.id.clone(),
                error: ComponentError::Fatal("final commit failed".into()),
            });
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(committed.into_values().collect()),
        }
    }

    fn finish(
        &self,
        (tickets, positions, report): Done,
        tracker: &mut WatermarkTracker,
        failure: &mut Option<RuntimeError>,
        reading: &mut bool,
    ) {
        for ((ticket, position), status) in tickets.iter().zip(&positions).zip(&report.statuses) {
            let ok = !matches!(status, RecordStatus::Failed(_));
            tracker.complete(ticket, ok);
            if let RecordStatus::Failed(reason) = status
                && failure.is_none()
            {
                *failure = Some(RuntimeError::RecordFailed {
                    source_id: self.id.clone(),
                    position: position.clone(),
                    reason: reason.clone(),
                });
                // Stop reading: everything after this record would be re-read anyway.
                *reading = false;
                self.stop.cancel();
            }
        }
    }

    async fn commit(
        &self,
        source: &mut dyn Source,
        uncommitted: &mut BTreeMap<Arc<str>, Position>,
        committed: &mut BTreeMap<Arc<str>, Position>,
    ) {
        if uncommitted.is_empty() {
            return;
        }
        let positions: Vec<Position> = uncommitted.values().cloned().collect();
        match source.commit(&positions).await {
            Ok(()) => {
                tracing::debug!(source = %self.id, partitions = positions.len(), "committed");
                committed.append(uncommitted);
            }
            Err(error) => tracing::warn!(source = %self.id, %error, "commit failed; will retry"),
        }
    }
}
