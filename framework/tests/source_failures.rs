//! How a pipeline with several sources ends when one of them fails, with in-process doubles: a
//! fatal read error or a panic in one source stops its siblings cleanly (what they delivered is
//! committed), and the error names the source.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::TestSource;
use tokio_util::sync::CancellationToken;
use tributary_framework::config::{self, ComponentSpec};
use tributary_framework::registry::{BuildFuture, Registry};
use tributary_framework::runtime::{Pipeline, RuntimeError};
use tributary_framework::{ComponentError, Delivery, Input, Position, Record, Sink, Source};

/// What a failing source does after its first batches.
#[derive(Clone, Copy)]
enum Failure {
    Fatal,
    Panic,
}

/// Reads `ok` batches from an endless [`TestSource`], then fails as told.
struct FailingSource {
    inner: TestSource,
    ok: u32,
    failure: Failure,
}

#[async_trait]
impl Source for FailingSource {
    async fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Record>>, ComponentError> {
        if self.ok == 0 {
            match self.failure {
                Failure::Fatal => return Err(ComponentError::Fatal("access denied".into())),
                Failure::Panic => panic!("a bug in the source"),
            }
        }
        self.ok -= 1;
        self.inner.next_batch(max).await
    }
}

/// Takes everything.
struct Take;

#[async_trait]
impl Sink for Take {
    async fn deliver(&self, batch: &[Input<'_>]) -> Result<Vec<Delivery>, ComponentError> {
        Ok(vec![Delivery::Delivered; batch.len()])
    }
}

fn endless(commits: Arc<Mutex<Vec<Position>>>) -> TestSource {
    TestSource { next: 0, total: None, partitions: 1, reads: Arc::default(), commits }
}

/// Sources `a_endless` (never ends by itself) and `b_failing` (fails as told after 3 batches),
/// both into one sink; returns how the run ended and what the endless one committed.
async fn run_with(failure: Failure) -> (Result<(), RuntimeError>, Vec<Position>) {
    let commits = Arc::new(Mutex::new(Vec::new()));
    let c = commits.clone();
    let registry = Registry::new()
        .source::<tributary_framework::registry::Untyped>(
            "endless",
            move |_: ComponentSpec| -> BuildFuture<Box<dyn Source>> {
                let source = endless(c.clone());
                Box::pin(async move { Ok(Box::new(source) as Box<dyn Source>) })
            },
        )
        .source::<tributary_framework::registry::Untyped>(
            "failing",
            move |_: ComponentSpec| -> BuildFuture<Box<dyn Source>> {
                let inner = endless(Arc::default());
                Box::pin(async move { Ok(Box::new(FailingSource { inner, ok: 3, failure }) as Box<dyn Source>) })
            },
        )
        .sink::<tributary_framework::registry::Untyped>("take", |_: ComponentSpec| -> BuildFuture<Arc<dyn Sink>> {
            Box::pin(async { Ok(Arc::new(Take) as Arc<dyn Sink>) })
        });
    let toml = "[pipeline]\nbatch_size = 10\ncommit_interval_ms = 10\n\n\
        [sources.a_endless]\ntype = \"endless\"\n\n[sources.b_failing]\ntype = \"failing\"\n\n\
        [sinks.out]\ntype = \"take\"\ninputs = [\"a_endless\", \"b_failing\"]\n";
    let config = config::from_toml_str("sources.toml", toml).unwrap();
    let pipeline = Pipeline::build(&config, &registry).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(20), pipeline.run(CancellationToken::new()))
        .await
        .expect("the pipeline stops when one of its sources fails");
    let commits = commits.lock().unwrap().clone();
    (ended.map(|_| ()), commits)
}

/// Regression (issue 19): a fatal read error stopped only its own source; a sibling source
/// kept reading, and the run never ended (nor reported the error).
#[tokio::test]
async fn a_fatal_source_error_stops_its_sibling_sources_and_names_the_source() {
    let (ended, commits) = run_with(Failure::Fatal).await;
    let error = ended.unwrap_err().to_string();
    assert!(error.contains("b_failing") && error.contains("access denied"), "{error}");
    assert!(!commits.is_empty(), "the sibling committed what it delivered before stopping");
}

/// Regression (issue 19): a panicking source task was reported as source `?`, and its
/// siblings went on.
#[tokio::test]
async fn a_panicking_source_is_named_and_stops_its_siblings() {
    let (ended, commits) = run_with(Failure::Panic).await;
    let error = ended.unwrap_err().to_string();
    assert!(error.contains("b_failing") && error.contains("panicked") && !error.contains("source ?"), "{error}");
    assert!(!commits.is_empty(), "the sibling committed what it delivered before stopping");
}
