//! Shared sources, with in-process doubles: two pipelines read one source once, progress
//! independently, keep their own checkpoints, and the source commits only what both did.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::TestSource;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tributary_framework::config::{self, ComponentSpec};
use tributary_framework::metrics::Metrics;
use tributary_framework::registry::{BuildFuture, Registry};
use tributary_framework::runtime::{Pipeline, RunSummary, RuntimeError};
use tributary_framework::shared::SharedSources;
use tributary_framework::{
    ComponentError, Delivery, Input, Offset, Outcome, Position, Processor, Record, Sink, Source,
};

/// Sleeps `delay` per batch; fails (retryable) the records whose id is in `fail_from..`.
struct Model {
    delay: Duration,
    fail_from: u64,
}

#[async_trait]
impl Processor for Model {
    async fn process(&self, batch: &[Input<'_>]) -> Result<Vec<Outcome>, ComponentError> {
        tokio::time::sleep(self.delay).await;
        Ok(batch
            .iter()
            .map(|i| {
                if i.value["id"].as_u64().unwrap() >= self.fail_from {
                    Outcome::Retry("model down".into())
                } else {
                    Outcome::one(i.value.clone())
                }
            })
            .collect())
    }
}

/// Records the ids it delivers and when it delivered the last one.
#[derive(Default)]
struct Collect {
    ids: Mutex<Vec<u64>>,
    last: Mutex<Option<Instant>>,
}

#[async_trait]
impl Sink for Collect {
    async fn deliver(&self, batch: &[Input<'_>]) -> Result<Vec<Delivery>, ComponentError> {
        self.ids.lock().unwrap().extend(batch.iter().map(|i| i.value["id"].as_u64().unwrap()));
        *self.last.lock().unwrap() = Some(Instant::now());
        Ok(vec![Delivery::Delivered; batch.len()])
    }
}

struct World {
    registry: Registry,
    reads: Arc<AtomicU64>,
    commits: Arc<Mutex<Vec<Position>>>,
    sinks: [Arc<Collect>; 2],
}

/// Source `counted` (from `start`, `total` records), processors `model_a`/`model_b` with the
/// given behaviour, sinks `out_a`/`out_b`.
fn world(start: u64, total: u64, a: Model, b: Model) -> World {
    let reads = Arc::new(AtomicU64::new(0));
    let commits = Arc::new(Mutex::new(Vec::new()));
    let sinks = [Arc::new(Collect::default()), Arc::new(Collect::default())];
    let (r, c) = (reads.clone(), commits.clone());
    let (a, b) = (Arc::new(a), Arc::new(b));
    let (sa, sb) = (sinks[0].clone(), sinks[1].clone());
    let registry = Registry::new()
        .source::<tributary_framework::registry::Untyped>(
            "counted",
            move |_: ComponentSpec| -> BuildFuture<Box<dyn Source>> {
                let source =
                    TestSource { next: start, total: Some(total), partitions: 2, reads: r.clone(), commits: c.clone() };
                Box::pin(async move { Ok(Box::new(source) as Box<dyn Source>) })
            },
        )
        .processor::<tributary_framework::registry::Untyped>("model_a", move |_| -> BuildFuture<Arc<dyn Processor>> {
            let a = a.clone();
            Box::pin(async move { Ok(a as Arc<dyn Processor>) })
        })
        .processor::<tributary_framework::registry::Untyped>("model_b", move |_| -> BuildFuture<Arc<dyn Processor>> {
            let b = b.clone();
            Box::pin(async move { Ok(b as Arc<dyn Processor>) })
        })
        .sink::<tributary_framework::registry::Untyped>("out_a", move |_| -> BuildFuture<Arc<dyn Sink>> {
            let s = sa.clone();
            Box::pin(async move { Ok(s as Arc<dyn Sink>) })
        })
        .sink::<tributary_framework::registry::Untyped>("out_b", move |_| -> BuildFuture<Arc<dyn Sink>> {
            let s = sb.clone();
            Box::pin(async move { Ok(s as Arc<dyn Sink>) })
        });
    World { registry, reads, commits, sinks }
}

fn toml(consumer: &str, checkpoint: &std::path::Path) -> String {
    format!(
        "[pipeline]\nbatch_size = 100\ncommit_interval_ms = 10\n[retry]\nmax_attempts = 2\ninitial_backoff_ms = 1\n\
         on_exhausted = \"fail\"\n\
         [sources.rides]\ntype = \"counted\"\nshared = \"rides\"\nconsumer_checkpoint = \"{}\"\n\
         [processors.m]\ntype = \"model_{consumer}\"\ninputs = [\"rides\"]\n\
         [sinks.out]\ntype = \"out_{consumer}\"\ninputs = [\"m\"]\n",
        checkpoint.display()
    )
}

/// Builds both consumers on one share and runs them to the end.
async fn run_both(w: &World, dir: &std::path::Path) -> Vec<Result<RunSummary, RuntimeError>> {
    run_both_with_metrics(w, dir).await.0
}

/// [`run_both`], also returning each pipeline's metrics.
async fn run_both_with_metrics(
    w: &World,
    dir: &std::path::Path,
) -> (Vec<Result<RunSummary, RuntimeError>>, Vec<Arc<Metrics>>) {
    let mut shared = SharedSources::new(64);
    let mut pipelines = Vec::new();
    for consumer in ["a", "b"] {
        let config = config::from_toml_str(consumer, &toml(consumer, &dir.join(format!("{consumer}.json")))).unwrap();
        pipelines.push(Pipeline::build_shared(&config, &w.registry, &mut shared, consumer).await.unwrap());
    }
    let metrics = pipelines.iter().map(Pipeline::metrics).collect();
    let shutdown = CancellationToken::new();
    let readers = shared.start(shutdown.clone());
    let results = futures::future::join_all(pipelines.into_iter().map(|p| p.run(shutdown.clone()))).await;
    for reader in readers {
        reader.await.unwrap();
    }
    (results, metrics)
}

fn highest_commit(commits: &[Position], partition: &str) -> Option<u64> {
    commits
        .iter()
        .filter(|p| &*p.partition == partition)
        .filter_map(|p| match p.offset {
            Offset::Index(i) => Some(i),
            Offset::Sequence(_) => None,
        })
        .max()
}

#[tokio::test]
async fn two_pipelines_read_a_shared_source_once_and_each_gets_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let fast = || Model { delay: Duration::ZERO, fail_from: u64::MAX };
    let w = world(0, 1000, fast(), fast());
    let (results, metrics) = run_both_with_metrics(&w, dir.path()).await;
    for result in results {
        result.unwrap();
    }
    for m in metrics {
        let gauges = &m.gauges()["rides"];
        assert!(gauges.iter().any(|g| g.name == "source_reads"), "the real source's gauges reach every consumer");
        assert!(gauges.iter().any(|g| g.name == "shared_batches_queued"), "{gauges:?}");
    }
    for sink in &w.sinks {
        let mut ids = sink.ids.lock().unwrap().clone();
        ids.sort_unstable();
        assert_eq!(ids, (0..1000).collect::<Vec<_>>());
    }
    assert_eq!(w.reads.load(Ordering::SeqCst), 11, "10 batches and the end, read once for both");
    let commits = w.commits.lock().unwrap();
    assert_eq!((highest_commit(&commits, "p0"), highest_commit(&commits, "p1")), (Some(998), Some(999)));
}

#[tokio::test]
async fn a_slow_consumer_does_not_hold_back_a_fast_one() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(
        0,
        1000,
        Model { delay: Duration::from_millis(60), fail_from: u64::MAX },
        Model { delay: Duration::ZERO, fail_from: u64::MAX },
    );
    let started = Instant::now();
    for result in run_both(&w, dir.path()).await {
        result.unwrap();
    }
    let (slow, fast) = (w.sinks[0].last.lock().unwrap().unwrap(), w.sinks[1].last.lock().unwrap().unwrap());
    assert!(slow.duration_since(started) >= Duration::from_millis(600), "ten slow batches");
    assert!(
        fast.duration_since(started) < Duration::from_millis(300),
        "the fast consumer finished after {:?}, the slow one after {:?}",
        fast.duration_since(started),
        slow.duration_since(started)
    );
}

#[tokio::test]
async fn a_failing_consumer_holds_back_only_the_shared_commit_and_catches_up_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // Consumer a fails from record 500 on; b does everything.
    let w = world(
        0,
        1000,
        Model { delay: Duration::ZERO, fail_from: 500 },
        Model { delay: Duration::ZERO, fail_from: u64::MAX },
    );
    let results = run_both(&w, dir.path()).await;
    assert!(matches!(results[0], Err(RuntimeError::RecordFailed { .. })), "{:?}", results[0].as_ref().err());
    results[1].as_ref().unwrap();
    assert_eq!(w.sinks[1].ids.lock().unwrap().len(), 1000, "b was not held back by a");
    let first_commits = w.commits.lock().unwrap().clone();
    let low = highest_commit(&first_commits, "p0").unwrap().max(highest_commit(&first_commits, "p1").unwrap());
    assert!(low < 500, "the shared commit stays before a's first failure, got {low}");

    // Restart from the shared commit, a now healthy: a does the rest, b skips what it did.
    let restart_from =
        highest_commit(&first_commits, "p0").unwrap().min(highest_commit(&first_commits, "p1").unwrap()) + 1;
    let w2 = world(
        restart_from,
        1000,
        Model { delay: Duration::ZERO, fail_from: u64::MAX },
        Model { delay: Duration::ZERO, fail_from: u64::MAX },
    );
    for result in run_both(&w2, dir.path()).await {
        result.unwrap();
    }
    let mut a_ids: Vec<u64> =
        w.sinks[0].ids.lock().unwrap().iter().chain(w2.sinks[0].ids.lock().unwrap().iter()).copied().collect();
    a_ids.sort_unstable();
    a_ids.dedup();
    assert_eq!(a_ids, (0..1000).collect::<Vec<_>>(), "a caught up");
    assert!(
        w2.sinks[1].ids.lock().unwrap().is_empty(),
        "b had done everything: {:?}",
        w2.sinks[1].ids.lock().unwrap().len()
    );
    let second = w2.commits.lock().unwrap();
    assert_eq!((highest_commit(&second, "p0"), highest_commit(&second, "p1")), (Some(998), Some(999)));
    let checkpoint: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("b.json")).unwrap()).unwrap();
    assert_eq!(checkpoint.as_array().unwrap().len(), 2, "{checkpoint}");
}

#[tokio::test]
async fn a_share_must_be_described_alike_and_a_consumer_checkpoint_needs_a_share() {
    let dir = tempfile::tempdir().unwrap();
    let fast = || Model { delay: Duration::ZERO, fail_from: u64::MAX };
    let w = world(0, 10, fast(), fast());
    let mut shared = SharedSources::new(4);
    let a = config::from_toml_str("a.toml", &toml("a", &dir.path().join("a.json"))).unwrap();
    Pipeline::build_shared(&a, &w.registry, &mut shared, "a").await.unwrap();
    let other = toml("b", &dir.path().join("b.json")).replace("shared = \"rides\"", "shared = \"rides\"\nlimit = 3");
    let b = config::from_toml_str("b.toml", &other).unwrap();
    let err = Pipeline::build_shared(&b, &w.registry, &mut shared, "b").await.err().unwrap().to_string();
    assert!(err.contains("b.toml: [sources.rides] key `shared`") && err.contains("described differently"), "{err}");

    let orphan = "[sources.r]\ntype = \"counted\"\nconsumer_checkpoint = \"x.json\"\n[sinks.o]\ntype = \"out_a\"\ninputs = [\"r\"]\n";
    let err = config::from_toml_str("d.toml", orphan).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("consumer_checkpoint") && err.contains("only for a source with `shared`"), "{err}");
}

/// Yields `ok` records in batches, then fails fatally.
struct FailsAfter {
    inner: TestSource,
    ok: u64,
}

#[async_trait]
impl Source for FailsAfter {
    async fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Record>>, ComponentError> {
        if self.inner.next >= self.ok {
            return Err(ComponentError::Fatal("stream deleted".into()));
        }
        self.inner.next_batch(max).await
    }
}

/// Regression: a fatal read error of a shared source stopped only its reader; the consuming
/// pipelines saw a normal end and the process exited 0 (issue 19). Now each consumer fails
/// with the error, naming the share, after what was read before it.
#[tokio::test]
async fn a_fatal_shared_read_fails_every_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(
        0,
        10_000,
        Model { delay: Duration::ZERO, fail_from: u64::MAX },
        Model { delay: Duration::ZERO, fail_from: u64::MAX },
    );
    let (reads, commits) = (w.reads.clone(), w.commits.clone());
    let failing = World {
        registry: w.registry.clone().source::<tributary_framework::registry::Untyped>(
            "counted",
            move |_: ComponentSpec| -> BuildFuture<Box<dyn Source>> {
                let inner =
                    TestSource { next: 0, total: None, partitions: 2, reads: reads.clone(), commits: commits.clone() };
                Box::pin(async move { Ok(Box::new(FailsAfter { inner, ok: 300 }) as Box<dyn Source>) })
            },
        ),
        reads: w.reads.clone(),
        commits: w.commits.clone(),
        sinks: w.sinks.clone(),
    };
    let results = run_both(&failing, dir.path()).await;
    for result in &results {
        let error = result.as_ref().err().map(ToString::to_string).unwrap_or_default();
        assert!(error.contains("shared source \"rides\"") && error.contains("stream deleted"), "{error:?}");
    }
    for sink in &failing.sinks {
        assert_eq!(sink.ids.lock().unwrap().len(), 300, "what was read before the error is delivered");
    }
}
