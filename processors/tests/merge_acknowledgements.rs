//! The merge takes part in acknowledgements: an upload's source position is committed only once
//! its merged decision is delivered. The real detectors and merge run in a pipeline between an
//! in-process source that records commits and a sink that cannot deliver one decision.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tributary_framework::config::{self, ComponentSpec};
use tributary_framework::registry::{BuildFuture, Registry};
use tributary_framework::runtime::{Pipeline, RuntimeError};
use tributary_framework::{ComponentError, Delivery, Input, Offset, Position, Record, Sink, Source};
use tributary_processors::moderation;

/// Uploads `u-0` .. `u-9`, one partition, offsets 0..10; records commits.
struct Uploads {
    sent: bool,
    commits: Arc<Mutex<Vec<Position>>>,
}

#[async_trait]
impl Source for Uploads {
    async fn next_batch(&mut self, _max: usize) -> Result<Option<Vec<Record>>, ComponentError> {
        if self.sent {
            return Ok(None);
        }
        self.sent = true;
        Ok(Some(
            (0..10u64)
                .map(|i| {
                    let event = json!({"upload_id": format!("u-{i}"),
                        "features": {"audio_match": 0.1, "skin_ratio": 0.1, "motion": 0.1, "red_ratio": 0.1}});
                    let position =
                        Position { source: "uploads".into(), partition: "p".into(), offset: Offset::Index(i) };
                    Record::new(serde_json::to_vec(&event).unwrap(), position)
                })
                .collect(),
        ))
    }

    async fn commit(&mut self, positions: &[Position]) -> Result<(), ComponentError> {
        self.commits.lock().unwrap().extend_from_slice(positions);
        Ok(())
    }
}

/// Delivers every decision except the one for `refuse`, which it always asks to retry.
struct Decisions {
    refuse: Option<String>,
    delivered: Mutex<Vec<String>>,
}

#[async_trait]
impl Sink for Decisions {
    async fn deliver(&self, batch: &[Input<'_>]) -> Result<Vec<Delivery>, ComponentError> {
        Ok(batch
            .iter()
            .map(|input| {
                let id = input.value["upload_id"].as_str().unwrap().to_string();
                if Some(&id) == self.refuse.as_ref() {
                    Delivery::Retry("decision store unavailable".into())
                } else {
                    self.delivered.lock().unwrap().push(id);
                    Delivery::Delivered
                }
            })
            .collect())
    }
}

async fn run(refuse: Option<&str>) -> (Result<(), RuntimeError>, Vec<Position>, Vec<String>) {
    let commits = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::new(Decisions { refuse: refuse.map(str::to_string), delivered: Mutex::default() });
    let (c, s) = (commits.clone(), sink.clone());
    let registry = Registry::new()
        .source::<tributary_framework::registry::Untyped>(
            "uploads",
            move |_: ComponentSpec| -> BuildFuture<Box<dyn Source>> {
                let source = Uploads { sent: false, commits: c.clone() };
                Box::pin(async move { Ok(Box::new(source) as Box<dyn Source>) })
            },
        )
        .processor::<tributary_framework::registry::Untyped>("copyright", moderation::build_copyright)
        .processor::<tributary_framework::registry::Untyped>("nsfw", moderation::build_nsfw)
        .processor::<tributary_framework::registry::Untyped>("violence", moderation::build_violence)
        .processor::<tributary_framework::registry::Untyped>("merge", moderation::merge::build)
        .sink::<tributary_framework::registry::Untyped>("decisions", move |_| -> BuildFuture<Arc<dyn Sink>> {
            let s = s.clone();
            Box::pin(async move { Ok(s as Arc<dyn Sink>) })
        });
    let toml = "[retry]\nmax_attempts = 2\ninitial_backoff_ms = 1\non_exhausted = \"fail\"\n\
                [sources.uploads]\ntype = \"uploads\"\n\
                [processors.copyright]\ntype = \"copyright\"\ninputs = [\"uploads\"]\n\
                [processors.nsfw]\ntype = \"nsfw\"\ninputs = [\"uploads\"]\n\
                [processors.violence]\ntype = \"violence\"\ninputs = [\"uploads\"]\n\
                [processors.decision]\ntype = \"merge\"\ninputs = [\"copyright\", \"nsfw\", \"violence\"]\n\
                detectors = [\"copyright\", \"nsfw\", \"violence\"]\n\
                [sinks.out]\ntype = \"decisions\"\ninputs = [\"decision\"]\n";
    let pipeline = Pipeline::build(&config::from_toml_str("t.toml", toml).unwrap(), &registry).await.unwrap();
    let result = pipeline.run(CancellationToken::new()).await.map(|_| ());
    let commits = commits.lock().unwrap().clone();
    let delivered = sink.delivered.lock().unwrap().clone();
    (result, commits, delivered)
}

fn highest(commits: &[Position]) -> Option<u64> {
    commits
        .iter()
        .filter_map(|p| match p.offset {
            Offset::Index(i) => Some(i),
            Offset::Sequence(_) => None,
        })
        .max()
}

#[tokio::test]
async fn every_upload_is_committed_once_its_decision_is_delivered() {
    let (result, commits, delivered) = run(None).await;
    result.unwrap();
    assert_eq!(delivered.len(), 10);
    assert_eq!(highest(&commits), Some(9));
}

#[tokio::test]
async fn an_upload_whose_decision_is_not_delivered_is_not_committed() {
    let (result, commits, delivered) = run(Some("u-4")).await;
    match result {
        Err(RuntimeError::RecordFailed { position, .. }) => assert_eq!(position.offset, Offset::Index(4)),
        other => panic!("expected u-4 to fail, got {other:?}"),
    }
    assert_eq!(delivered.len(), 9, "the other decisions were delivered");
    assert_eq!(highest(&commits), Some(3), "the watermark stops before u-4, whose decision is not delivered");
}
