//! Shared sources: several pipelines of one process read a stream once and still progress
//! independently.
//!
//! A source table with `shared = "<name>"` joins the share of that name: the first pipeline to
//! build it builds the real source; every pipeline (the first included) gets a [`TeeSource`]
//! fed by one reader task. The reader hands each batch to every consumer through a bounded
//! queue of `buffer_batches` batches, so a slow consumer falls behind without holding back the
//! others until its queue is full; then the reader waits for it (memory stays bounded).
//!
//! Progress is per consumer: each keeps its own checkpoint file (`consumer_checkpoint`, default
//! `.tributary/consumers/<pipeline>.<source>.json`) and, after a restart, skips what it had
//! already done. The real source commits, per partition, the lowest position every consumer has
//! committed, so a consumer that fails or stops holds back only that commit: on restart the
//! stream is read again from there, and the others skip what they had done.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::component::Source;
use crate::config::ComponentSpec;
use crate::error::{ComponentError, ConfigError};
use crate::metrics::Gauge;
use crate::record::{Offset, Position, Record};
use crate::registry::Registry;
use crate::retry::RetryPolicy;

/// What the reader hands each consumer: a batch, or the fatal error that ended the share.
#[derive(Clone)]
enum Feed {
    Batch(Arc<Vec<Record>>),
    Failed(Arc<str>),
}

/// Batches a consumer may be behind the reader before the reader waits for it.
pub const DEFAULT_BUFFER_BATCHES: usize = 64;

/// `a` is at or before `b` in one partition. Kinesis sequence numbers are decimal text of up to
/// 128 bits: compared by length, then digits.
pub fn at_or_before(a: &Offset, b: &Offset) -> bool {
    match (a, b) {
        (Offset::Index(a), Offset::Index(b)) => a <= b,
        (Offset::Sequence(a), Offset::Sequence(b)) => (a.len(), &**a) <= (b.len(), &**b),
        _ => false,
    }
}

/// What the consumers of one share have committed, and whether they are done.
#[derive(Default)]
struct Progress {
    /// Per consumer: partition -> newest committed position.
    committed: Vec<BTreeMap<Arc<str>, Position>>,
    closed: Vec<bool>,
}

impl Progress {
    /// Per partition, the lowest position every consumer has committed.
    fn lowest(&self) -> Vec<Position> {
        let Some((first, rest)) = self.committed.split_first() else { return Vec::new() };
        first
            .iter()
            .filter_map(|(partition, position)| {
                let mut low = position;
                for other in rest {
                    let theirs = other.get(partition)?;
                    if at_or_before(&theirs.offset, &low.offset) {
                        low = theirs;
                    }
                }
                Some(low.clone())
            })
            .collect()
    }
}

/// One share: the real source until the reader starts, and the consumers' queues.
struct Share {
    /// The source table, to check that every pipeline describes the same source.
    kind: String,
    options: serde_json::Map<String, Value>,
    source: Option<Box<dyn Source>>,
    senders: Vec<mpsc::Sender<Feed>>,
    progress: Arc<Mutex<Progress>>,
    changed: Arc<Notify>,
    /// The real source's gauges (lag, shards, leases), as of its last read.
    gauges: Arc<Mutex<Vec<Gauge>>>,
    batch_size: usize,
}

/// The shares of one process, built while its pipelines are built, then started.
#[derive(Default)]
pub struct SharedSources {
    shares: BTreeMap<String, Share>,
    buffer_batches: usize,
}

impl SharedSources {
    /// No shares yet; consumers may be `buffer_batches` batches behind.
    pub fn new(buffer_batches: usize) -> Self {
        SharedSources { shares: BTreeMap::new(), buffer_batches: buffer_batches.max(1) }
    }

    /// Joins `spec`'s share for the pipeline `pipeline` (its name, for the default checkpoint
    /// file): builds the real source on first use, and returns this consumer's source.
    ///
    /// # Errors
    /// The real source failed to build, the same share is described differently by two
    /// pipelines, or this consumer's checkpoint file is unreadable.
    pub async fn attach(
        &mut self,
        spec: &ComponentSpec,
        pipeline: &str,
        batch_size: usize,
        registry: &Registry,
    ) -> Result<Box<dyn Source>, ConfigError> {
        let Some(share) = &spec.share else {
            return registry.source_builder(spec)?(spec.clone()).await;
        };
        if !self.shares.contains_key(&share.name) {
            let source = registry.source_builder(spec)?(spec.clone()).await?;
            self.shares.insert(
                share.name.clone(),
                Share {
                    kind: spec.kind.clone(),
                    options: spec.options.clone(),
                    source: Some(source),
                    senders: Vec::new(),
                    progress: Arc::default(),
                    changed: Arc::default(),
                    gauges: Arc::default(),
                    batch_size,
                },
            );
        }
        let entry = self.shares.get_mut(&share.name).ok_or_else(|| spec.error("shared", "share vanished"))?;
        if entry.kind != spec.kind || entry.options != spec.options {
            return Err(spec.error(
                "shared",
                format!(
                    "share {:?} is described differently by another pipeline; its tables must be equal",
                    share.name
                ),
            ));
        }
        let path = share.checkpoint.clone().map_or_else(
            || PathBuf::from(".tributary/consumers").join(format!("{pipeline}.{}.json", spec.path.component)),
            PathBuf::from,
        );
        let done = read_checkpoint(&path).map_err(|e| spec.error("consumer_checkpoint", e))?;
        let (tx, rx) = mpsc::channel(self.buffer_batches);
        entry.senders.push(tx);
        let index = {
            let mut progress = entry.progress.lock().map_err(|_| spec.error("shared", "poisoned"))?;
            progress.committed.push(done.clone());
            progress.closed.push(false);
            progress.committed.len() - 1
        };
        Ok(Box::new(TeeSource {
            rx,
            index,
            done,
            path,
            progress: entry.progress.clone(),
            changed: entry.changed.clone(),
            gauges: entry.gauges.clone(),
        }))
    }

    /// Starts one reader task per share; each stops reading when `shutdown` is cancelled or
    /// its source ends, and closes its source once every consumer has closed.
    pub fn start(self, shutdown: CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
        self.shares
            .into_iter()
            .filter_map(|(name, mut share)| {
                let source = share.source.take()?;
                Some(tokio::spawn(read(name, source, share, shutdown.clone())))
            })
            .collect()
    }
}

/// The reader of one share.
async fn read(name: String, mut source: Box<dyn Source>, share: Share, shutdown: CancellationToken) {
    let mut senders: Vec<Option<mpsc::Sender<Feed>>> = share.senders.into_iter().map(Some).collect();
    let mut last_commit: BTreeMap<Arc<str>, Position> = BTreeMap::new();
    let mut errors = 0u32;
    loop {
        commit_lowest(&name, &mut *source, &share.progress, &mut last_commit).await;
        if senders.iter().all(Option::is_none) {
            break;
        }
        let read = tokio::select! {
            () = shutdown.cancelled() => break,
            read = source.next_batch(share.batch_size) => read,
        };
        if let Ok(mut gauges) = share.gauges.lock() {
            *gauges = source.gauges();
        }
        match read {
            Ok(Some(records)) if records.is_empty() => {}
            Ok(Some(records)) => {
                errors = 0;
                let batch = Arc::new(records);
                for slot in &mut senders {
                    let Some(tx) = slot else { continue };
                    // A full queue waits here: the slowest consumer bounds the reader.
                    let sent = tokio::select! {
                        () = shutdown.cancelled() => break,
                        sent = tx.send(Feed::Batch(batch.clone())) => sent,
                    };
                    if sent.is_err() {
                        // The consumer's pipeline ended (failed): its checkpoint stays as it was.
                        *slot = None;
                    }
                }
            }
            Ok(None) => break,
            Err(error) if error.is_retryable() => {
                errors += 1;
                let pause = RetryPolicy::source_reads().backoff(errors);
                tracing::warn!(share = %name, %error, ?pause, "shared read failed; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(pause) => {}
                }
            }
            Err(error) => {
                tracing::error!(share = %name, %error, "shared read failed; stopping");
                // Every consumer fails with it (and its process exits non-zero), after the
                // batches already queued for it: a fatal read is not a normal end.
                let failure: Arc<str> = Arc::from(format!("shared source {name:?}: {error}"));
                for tx in senders.iter().flatten() {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        _ = tx.send(Feed::Failed(failure.clone())) => {}
                    }
                }
                break;
            }
        }
    }
    // No more batches: consumers finish what they have, commit and close.
    drop(senders);
    loop {
        let changed = share.changed.notified();
        commit_lowest(&name, &mut *source, &share.progress, &mut last_commit).await;
        if share.progress.lock().map_or(true, |p| p.closed.iter().all(|c| *c)) {
            break;
        }
        changed.await;
    }
    commit_lowest(&name, &mut *source, &share.progress, &mut last_commit).await;
    if let Err(error) = source.close().await {
        tracing::warn!(share = %name, %error, "closing the shared source failed");
    }
}

async fn commit_lowest(
    name: &str,
    source: &mut dyn Source,
    progress: &Mutex<Progress>,
    last: &mut BTreeMap<Arc<str>, Position>,
) {
    let lowest = progress.lock().map(|p| p.lowest()).unwrap_or_default();
    let new: Vec<Position> = lowest.into_iter().filter(|p| last.get(&p.partition) != Some(p)).collect();
    if new.is_empty() {
        return;
    }
    match source.commit(&new).await {
        Ok(()) => last.extend(new.into_iter().map(|p| (p.partition.clone(), p))),
        Err(error) => tracing::warn!(share = name, %error, "shared commit failed; will retry"),
    }
}

/// One consumer's view of a share.
pub struct TeeSource {
    rx: mpsc::Receiver<Feed>,
    index: usize,
    /// This consumer's checkpoint: partition -> newest position it has committed.
    done: BTreeMap<Arc<str>, Position>,
    path: PathBuf,
    progress: Arc<Mutex<Progress>>,
    changed: Arc<Notify>,
    gauges: Arc<Mutex<Vec<Gauge>>>,
}

#[async_trait]
impl Source for TeeSource {
    async fn next_batch(&mut self, _max_records: usize) -> Result<Option<Vec<Record>>, ComponentError> {
        let batch = match self.rx.recv().await {
            None => return Ok(None),
            Some(Feed::Failed(failure)) => return Err(ComponentError::Fatal(failure.to_string())),
            Some(Feed::Batch(batch)) => batch,
        };
        // After a restart, skip what this consumer had already done.
        let done = &self.done;
        Ok(Some(
            batch
                .iter()
                .filter(|r| {
                    !done.get(&r.position.partition).is_some_and(|d| at_or_before(&r.position.offset, &d.offset))
                })
                .cloned()
                .collect(),
        ))
    }

    async fn commit(&mut self, positions: &[Position]) -> Result<(), ComponentError> {
        for position in positions {
            self.done.insert(position.partition.clone(), position.clone());
        }
        write_checkpoint(&self.path, &self.done).await.map_err(ComponentError::Retryable)?;
        if let Ok(mut progress) = self.progress.lock() {
            progress.committed[self.index].clone_from(&self.done);
        }
        self.changed.notify_one();
        Ok(())
    }

    /// The real source's gauges, and this consumer's queue length.
    fn gauges(&self) -> Vec<Gauge> {
        let mut gauges = self.gauges.lock().map(|g| g.clone()).unwrap_or_default();
        gauges.push(Gauge { name: "shared_batches_queued", labels: Vec::new(), value: self.rx.len() as f64 });
        gauges
    }

    async fn close(&mut self) -> Result<(), ComponentError> {
        if let Ok(mut progress) = self.progress.lock() {
            progress.closed[self.index] = true;
        }
        self.changed.notify_one();
        Ok(())
    }
}

impl Drop for TeeSource {
    fn drop(&mut self) {
        // A consumer that ended without closing (its pipeline failed) no longer holds the
        // reader's shutdown; its checkpoint still holds back the shared commit.
        if let Ok(mut progress) = self.progress.lock() {
            progress.closed[self.index] = true;
        }
        self.changed.notify_one();
    }
}

fn read_checkpoint(path: &std::path::Path) -> Result<BTreeMap<Arc<str>, Position>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let positions: Vec<Position> =
        serde_json::from_str(&text).map_err(|e| format!("{} is not a consumer checkpoint: {e}", path.display()))?;
    Ok(positions.into_iter().map(|p| (p.partition.clone(), p)).collect())
}

async fn write_checkpoint(path: &std::path::Path, done: &BTreeMap<Arc<str>, Position>) -> Result<(), String> {
    let positions: Vec<&Position> = done.values().collect();
    let text = serde_json::to_string_pretty(&positions).map_err(|e| e.to_string())?;
    crate::checkpoint_file::replace(path, text.into_bytes()).await
}
