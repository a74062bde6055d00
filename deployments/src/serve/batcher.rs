//! Dynamic batching: requests wait in a bounded queue; one task takes what is queued (up to
//! `max_batch_size` events, waiting at most `max_batch_delay_us` for more) whenever one of
//! `max_concurrent_batches` slots is free, runs it through the graph as one batch, answers each
//! request with its part, then hands the batch to the tee (the other sinks and the dead-letter
//! destination) through a buffer of `tee_buffer` batches.
//!
//! Taking a slot before taking requests is what makes the batching adaptive: while the model
//! runs, requests gather in the queue, and the next batch takes them all at once; a lone
//! request finds a free slot and runs at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tributary_framework::executor::{Evaluated, Refusal};
use tributary_framework::graph::Graph;
use tributary_framework::{Output, Record};

use super::http_metrics::HttpMetrics;
use crate::http_api::HttpPlan;

/// One request's events and where its answers go.
pub(crate) struct Job {
    pub records: Vec<Record>,
    pub reply: oneshot::Sender<Vec<Result<Vec<Output>, Refusal>>>,
}

/// The handlers' end of the queue.
pub(crate) struct Batcher {
    queue: mpsc::Sender<Job>,
}

/// Why a job was not queued.
pub(crate) enum Refused {
    /// The queue is full.
    Full,
    /// The batcher has stopped (shutting down).
    Closed,
}

impl Batcher {
    /// Queues a job without waiting.
    pub(crate) fn submit(&self, job: Job) -> Result<(), Refused> {
        match self.queue.try_send(job) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(Refused::Full),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Refused::Closed),
        }
    }

    /// Requests waiting for a batch.
    pub(crate) fn depth(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }
}

/// Starts the batching task and the tee task. The tee task ends (closing the sinks) once the
/// [`Batcher`] is dropped and every batch has been delivered.
pub(crate) fn start(
    graph: Arc<Graph>,
    plan: &HttpPlan,
    metrics: Arc<HttpMetrics>,
) -> (Batcher, JoinHandle<anyhow::Result<()>>) {
    let (queue, jobs) = mpsc::channel(plan.http.queue_size);
    let (tee_tx, tee_rx) = mpsc::channel(plan.http.tee_buffer);
    let source = graph.source_index(&plan.source_id).unwrap_or(0);
    let response = graph.sink_index(&plan.response_sink).into_iter().collect::<Vec<usize>>();
    let settings = Settings {
        max: plan.http.max_batch_size,
        delay: Duration::from_micros(plan.http.max_batch_delay_us),
        slots: Arc::new(Semaphore::new(plan.http.max_concurrent_batches)),
        source,
        response: response.clone(),
    };
    tokio::spawn(gather(graph.clone(), jobs, settings, tee_tx, metrics));
    let tee = tokio::spawn(tee(graph, tee_rx, response, plan.dead_letter));
    (Batcher { queue }, tee)
}

struct Settings {
    max: usize,
    delay: Duration,
    slots: Arc<Semaphore>,
    source: usize,
    response: Vec<usize>,
}

async fn gather(
    graph: Arc<Graph>,
    mut jobs: mpsc::Receiver<Job>,
    settings: Settings,
    tee: mpsc::Sender<(Evaluated, Vec<Record>)>,
    metrics: Arc<HttpMetrics>,
) {
    let settings = Arc::new(settings);
    loop {
        let Ok(slot) = settings.slots.clone().acquire_owned().await else { return };
        let Some(first) = jobs.recv().await else { return };
        let mut batch = vec![first];
        let mut events = batch[0].records.len();
        while events < settings.max {
            match jobs.try_recv() {
                Ok(job) => {
                    events += job.records.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        if events < settings.max && !settings.delay.is_zero() {
            let until = tokio::time::Instant::now() + settings.delay;
            while events < settings.max {
                match tokio::time::timeout_at(until, jobs.recv()).await {
                    Ok(Some(job)) => {
                        events += job.records.len();
                        batch.push(job);
                    }
                    _ => break,
                }
            }
        }
        // Requests whose client gave up (timeout, closed connection) are not inferred.
        batch.retain(|job| !job.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let (graph, settings, tee, metrics) = (graph.clone(), settings.clone(), tee.clone(), metrics.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let sizes: Vec<usize> = batch.iter().map(|j| j.records.len()).collect();
            let mut records = Vec::with_capacity(sizes.iter().sum());
            let mut replies = Vec::with_capacity(batch.len());
            for job in batch {
                records.extend(job.records);
                replies.push(job.reply);
            }
            metrics.observe_batch(records.len());
            let evaluated = graph.evaluate_batch(settings.source, &records).await;
            let mut answers = graph.answers(&evaluated, &settings.response).into_iter();
            for (reply, size) in replies.into_iter().zip(sizes) {
                let _ = reply.send(answers.by_ref().take(size).collect());
            }
            // The answers are out; the other sinks get the batch through the bounded buffer
            // (holding the slot while it is full, so that the queue, then 429s, push back).
            let _ = tee.send((evaluated, records)).await;
        });
    }
}

/// Delivers each served batch to the sinks other than the response sink (and dead-letters its
/// rejections when a `[dead_letter]` destination is configured), then closes the sinks.
async fn tee(
    graph: Arc<Graph>,
    mut batches: mpsc::Receiver<(Evaluated, Vec<Record>)>,
    response: Vec<usize>,
    dead_letter: bool,
) -> anyhow::Result<()> {
    while let Some((evaluated, records)) = batches.recv().await {
        let report = graph.deliver_evaluated(evaluated, &records, &response, dead_letter).await;
        for (index, reason) in report.failed() {
            tracing::error!(position = %records[index].position, %reason, "served record not delivered to the tee");
        }
    }
    graph.close_sinks().await.map_err(|(sink, e)| anyhow::anyhow!("closing sink {sink}: {e}"))
}
