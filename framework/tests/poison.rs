//! A processor that fails a whole batch fatally because of some of its records (ONNX Runtime
//! refusing one record's values), with in-process doubles: the batch is split until those
//! records are isolated and dead-lettered with the error, and the rest are delivered; a
//! processor that fails every record alone too stops the pipeline as before.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::TestSource;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tributary_framework::config::{self, ComponentSpec};
use tributary_framework::registry::{BuildFuture, Registry};
use tributary_framework::runtime::{Pipeline, RunSummary, RuntimeError};
use tributary_framework::{ComponentError, Delivery, Input, Outcome, Processor, Sink};

/// Fails any batch holding one of `poison` (every batch when `poison` is empty) as an
/// inference engine does: one error for the whole call. Counts its calls.
struct Model {
    poison: Vec<u64>,
    calls: Arc<Mutex<u32>>,
}

#[async_trait]
impl Processor for Model {
    async fn process(&self, batch: &[Input<'_>]) -> Result<Vec<Outcome>, ComponentError> {
        *self.calls.lock().unwrap() += 1;
        let ids: Vec<u64> = batch.iter().map(|i| i.value["id"].as_u64().unwrap()).collect();
        if self.poison.is_empty() || ids.iter().any(|id| self.poison.contains(id)) {
            return Err(ComponentError::Fatal("input 'x': NaN is not allowed".into()));
        }
        Ok(batch.iter().map(|i| Outcome::one(i.value.clone())).collect())
    }
}

#[derive(Default)]
struct Collect(Mutex<Vec<Value>>);

#[async_trait]
impl Sink for Collect {
    async fn deliver(&self, batch: &[Input<'_>]) -> Result<Vec<Delivery>, ComponentError> {
        self.0.lock().unwrap().extend(batch.iter().map(|i| i.value.value().clone()));
        Ok(vec![Delivery::Delivered; batch.len()])
    }
}

/// 50 records in batches of 20 through a model poisoned by `poison`.
async fn run(poison: Vec<u64>) -> (Result<RunSummary, RuntimeError>, Vec<u64>, Vec<Value>, u32) {
    let (out, dead) = (Arc::new(Collect::default()), Arc::new(Collect::default()));
    let calls = Arc::new(Mutex::new(0));
    let (o, d, c) = (out.clone(), dead.clone(), calls.clone());
    let registry = Registry::new()
        .source::<tributary_framework::registry::Untyped>(
            "test",
            |_: ComponentSpec| -> BuildFuture<Box<dyn tributary_framework::Source>> {
                let source = TestSource {
                    next: 0,
                    total: Some(50),
                    partitions: 1,
                    reads: Arc::default(),
                    commits: Arc::default(),
                };
                Box::pin(async move { Ok(Box::new(source) as Box<dyn tributary_framework::Source>) })
            },
        )
        .processor::<tributary_framework::registry::Untyped>(
            "model",
            move |_: ComponentSpec| -> BuildFuture<Arc<dyn Processor>> {
                let model = Model { poison: poison.clone(), calls: c.clone() };
                Box::pin(async move { Ok(Arc::new(model) as Arc<dyn Processor>) })
            },
        )
        .sink::<tributary_framework::registry::Untyped>("out", move |_: ComponentSpec| -> BuildFuture<Arc<dyn Sink>> {
            let o = o.clone();
            Box::pin(async move { Ok(o as Arc<dyn Sink>) })
        })
        .sink::<tributary_framework::registry::Untyped>(
            "dead",
            move |_: ComponentSpec| -> BuildFuture<Arc<dyn Sink>> {
                let d = d.clone();
                Box::pin(async move { Ok(d as Arc<dyn Sink>) })
            },
        );
    let toml = "[pipeline]\nbatch_size = 20\n\n[sources.rides]\ntype = \"test\"\n\n\
        [processors.m]\ntype = \"model\"\ninputs = [\"rides\"]\n\n\
        [sinks.o]\ntype = \"out\"\ninputs = [\"m\"]\n\n[dead_letter]\ntype = \"dead\"\n";
    let config = config::from_toml_str("poison.toml", toml).unwrap();
    let pipeline = Pipeline::build(&config, &registry).await.unwrap();
    let result = pipeline.run(CancellationToken::new()).await;
    let mut delivered: Vec<u64> = out.0.lock().unwrap().iter().map(|v| v["id"].as_u64().unwrap()).collect();
    delivered.sort_unstable();
    let dead = dead.0.lock().unwrap().clone();
    let calls = *calls.lock().unwrap();
    (result, delivered, dead, calls)
}

/// Regression (issue 19): one record that made the processor fail its batch fatally stopped
/// the worker at that batch after every restart.
#[tokio::test]
async fn a_batch_failed_by_a_poison_record_is_split_until_the_record_is_isolated() {
    let (result, delivered, dead, calls) = run(vec![13, 37]).await;
    let summary = result.expect("the run ends normally");
    let expected: Vec<u64> = (0..50).filter(|id| *id != 13 && *id != 37).collect();
    assert_eq!(delivered, expected, "every other record is delivered once");
    let mut dead_ids: Vec<u64> = dead
        .iter()
        .map(|d| serde_json::from_str::<Value>(d["payload"].as_str().unwrap()).unwrap()["id"].as_u64().unwrap())
        .collect();
    dead_ids.sort_unstable();
    assert_eq!(dead_ids, vec![13, 37]);
    for d in &dead {
        let reason = d["reason"].as_str().unwrap();
        assert!(reason.contains("isolated from its batch") && reason.contains("NaN is not allowed"), "{reason}");
        assert_eq!(d["component"], "m");
    }
    assert_eq!(summary.committed.len(), 1, "the partition is committed to its end");
    // Three batches; each poisoned batch of 20 costs about 2 log2(20) more calls, not 20.
    assert!(calls <= 3 + 2 * 12, "{calls} calls");
}

/// A processor that fails every record alone as well is broken, not fed poison: the pipeline
/// stops with its error and nothing is dead-lettered.
#[tokio::test]
async fn a_processor_that_fails_every_record_still_stops_the_pipeline() {
    let (result, delivered, dead, _) = run(Vec::new()).await;
    let error = result.expect_err("a broken processor stops the pipeline").to_string();
    assert!(error.contains("NaN is not allowed"), "{error}");
    assert!(delivered.is_empty() && dead.is_empty(), "{delivered:?} {dead:?}");
}
