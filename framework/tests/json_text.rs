//! The streaming fast path: a source whose only consumers read JSON text is not decoded; the
//! records they hand back are decoded (or rejected as not JSON, once) and processed as values;
//! outputs keep the batch's order. Checked with in-process doubles.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::TestSource;
use serde_json::{Value, json};
use tributary_framework::config::{self, ComponentSpec};
use tributary_framework::executor::RecordStatus;
use tributary_framework::registry::{BuildFuture, Registry, Untyped};
use tributary_framework::runtime::Pipeline;
use tributary_framework::{
    ComponentError, Delivery, Input, Offset, Outcome, Position, Processor, Record, Sink, Source,
};

/// Reads `{"id": n}` from the text for even `n` (output `"via": "text"`) and hands back the
/// rest; as values it outputs `"via": "value"`, and rejects ids divisible by 5. Counts the
/// records each path saw.
#[derive(Default)]
struct TextReader {
    from_text: Mutex<usize>,
    from_values: Mutex<usize>,
}

fn id_of_text(record: &Record) -> Option<u64> {
    let value: Value = serde_json::from_slice(record.raw_bytes()).ok()?;
    value["id"].as_u64().filter(|id| id % 2 == 0)
}

#[async_trait]
impl Processor for TextReader {
    async fn process(&self, batch: &[Input<'_>]) -> Result<Vec<Outcome>, ComponentError> {
        *self.from_values.lock().unwrap() += batch.len();
        Ok(batch
            .iter()
            .map(|input| match input.value["id"].as_u64() {
                Some(id) if id % 5 == 0 => Outcome::Reject(format!("{id} is divisible by 5")),
                Some(id) => Outcome::one(json!({"id": id, "via": "value"})),
                None => Outcome::Reject("no id".into()),
            })
            .collect())
    }

    fn reads_json_text(&self) -> bool {
        true
    }

    async fn process_json_text(&self, batch: &[&Record]) -> Result<Vec<Option<Outcome>>, ComponentError> {
        *self.from_text.lock().unwrap() += batch.len();
        Ok(batch.iter().map(|r| id_of_text(r).map(|id| Outcome::one(json!({"id": id, "via": "text"})))).collect())
    }
}

#[derive(Default)]
struct Collect(Mutex<Vec<Value>>);

#[async_trait]
impl Sink for Collect {
    async fn deliver(&self, batch: &[Input<'_>]) -> Result<Vec<Delivery>, ComponentError> {
        self.0.lock().unwrap().extend(batch.iter().map(|input| input.value.value().clone()));
        Ok(vec![Delivery::Delivered; batch.len()])
    }
}

struct Doubles {
    one: Arc<TextReader>,
    two: Arc<TextReader>,
    out: Arc<Collect>,
    dead: Arc<Collect>,
}

async fn graph_of(toml: &str) -> (Pipeline, Doubles) {
    let d = Doubles { one: Arc::default(), two: Arc::default(), out: Arc::default(), dead: Arc::default() };
    let (one, two, out, dead) = (d.one.clone(), d.two.clone(), d.out.clone(), d.dead.clone());
    let registry = Registry::new()
        .source::<Untyped>("test", |_spec: ComponentSpec| -> BuildFuture<Box<dyn Source>> {
            Box::pin(async move {
                let source = TestSource {
                    next: 0,
                    total: Some(0),
                    partitions: 1,
                    reads: Arc::default(),
                    commits: Arc::default(),
                };
                Ok(Box::new(source) as Box<dyn Source>)
            })
        })
        .processor::<Untyped>("one", move |_spec: ComponentSpec| -> BuildFuture<Arc<dyn Processor>> {
            let p = one.clone();
            Box::pin(async move { Ok(p as Arc<dyn Processor>) })
        })
        .processor::<Untyped>("two", move |_spec: ComponentSpec| -> BuildFuture<Arc<dyn Processor>> {
            let p = two.clone();
            Box::pin(async move { Ok(p as Arc<dyn Processor>) })
        })
        .sink::<Untyped>("out", move |_spec: ComponentSpec| -> BuildFuture<Arc<dyn Sink>> {
            let s = out.clone();
            Box::pin(async move { Ok(s as Arc<dyn Sink>) })
        })
        .sink::<Untyped>("dead", move |_spec: ComponentSpec| -> BuildFuture<Arc<dyn Sink>> {
            let s = dead.clone();
            Box::pin(async move { Ok(s as Arc<dyn Sink>) })
        });
    let config = config::from_toml_str("test.toml", toml).unwrap();
    (Pipeline::build(&config, &registry).await.unwrap(), d)
}

/// Ids 0 to 11 as JSON, with a record that is not JSON at 3 and one the source could not
/// read at 7 (their ids are lost: they must be dead-lettered, not processed).
fn batch() -> Vec<Record> {
    (0..12u64)
        .map(|i| {
            let position = Position { source: "s".into(), partition: "p".into(), offset: Offset::Index(i) };
            match i {
                3 => Record::new(&b"{\"id\": 3"[..], position),
                7 => Record::invalid(&b"%%"[..], "invalid base64", position),
                _ => Record::new(serde_json::to_vec(&json!({"id": i})).unwrap(), position),
            }
        })
        .collect()
}

fn outputs(sink: &Collect) -> Vec<(u64, String)> {
    let values = sink.0.lock().unwrap();
    // Processor outputs only (a sink on the source gets the events themselves, without `via`).
    values.iter().filter_map(|v| Some((v["id"].as_u64()?, v["via"].as_str()?.to_owned()))).collect()
}

fn dead_letters(sink: &Collect) -> Vec<(u64, String)> {
    let values = sink.0.lock().unwrap();
    let mut entries: Vec<(u64, String)> = values
        .iter()
        .map(|v| (v["position"]["offset"].as_u64().unwrap(), v["component"].as_str().unwrap().to_owned()))
        .collect();
    entries.sort();
    entries
}

const ONE: &str = r#"
[sources.s]
type = "test"
[processors.m]
type = "one"
inputs = ["s"]
[sinks.o]
type = "out"
inputs = ["m"]
[dead_letter]
type = "dead"
"#;

#[tokio::test]
async fn a_lone_text_reader_gets_the_records_undecoded_and_hands_back_the_rest_in_order() {
    let (pipeline, d) = graph_of(ONE).await;
    let report = pipeline.graph().run_batch(0, &batch()).await;
    // Read from text: the even ids 0 to 10; handed back and decoded: 1 5 9 11 (5 rejected as a
    // value); 3 is not JSON, 7 was never a payload.
    assert_eq!(
        outputs(&d.out),
        vec![
            (0, "text".into()),
            (1, "value".into()),
            (2, "text".into()),
            (4, "text".into()),
            (6, "text".into()),
            (8, "text".into()),
            (9, "value".into()),
            (10, "text".into()),
            (11, "value".into()),
        ]
    );
    assert_eq!(*d.one.from_text.lock().unwrap(), 11, "every payload but the source's invalid one");
    assert_eq!(*d.one.from_values.lock().unwrap(), 4, "the odd ids that are JSON: 1, 5, 9, 11");
    assert_eq!(dead_letters(&d.dead), vec![(3, "s.decode".into()), (5, "m".into()), (7, "s.decode".into())]);
    let dead: Vec<usize> = (0..12).filter(|&i| report.statuses[i] == RecordStatus::DeadLettered).collect();
    assert_eq!(dead, vec![3, 5, 7]);
}

#[tokio::test]
async fn two_text_readers_of_one_source_dead_letter_a_record_that_is_not_json_once() {
    let (pipeline, d) = graph_of(&format!(
        "{ONE}\n[processors.n]\ntype = \"two\"\ninputs = [\"s\"]\n[sinks.p]\ntype = \"out\"\ninputs = [\"n\"]\n"
    ))
    .await;
    let report = pipeline.graph().run_batch(0, &batch()).await;
    assert_eq!(*d.two.from_text.lock().unwrap(), 11);
    assert_eq!(
        dead_letters(&d.dead),
        vec![(3, "s.decode".into()), (5, "m".into()), (5, "n".into()), (7, "s.decode".into())]
    );
    assert_eq!(report.statuses.iter().filter(|s| **s == RecordStatus::DeadLettered).count(), 3);
    assert_eq!(outputs(&d.out).len(), 18, "both branches' nine outputs");
}

#[tokio::test]
async fn a_sink_on_the_source_means_the_records_are_decoded_first() {
    let (pipeline, d) = graph_of(&format!("{ONE}\n[sinks.raw]\ntype = \"out\"\ninputs = [\"s\"]\n")).await;
    pipeline.graph().run_batch(0, &batch()).await;
    assert_eq!(*d.one.from_text.lock().unwrap(), 0);
    assert_eq!(*d.one.from_values.lock().unwrap(), 10, "the ten records that are JSON");
    // As values, 0, 5 and 10 are divisible by 5 (the text path emitted 0 and 10).
    let expected: Vec<(u64, String)> = [1, 2, 4, 6, 8, 9, 11].into_iter().map(|id| (id, "value".into())).collect();
    assert_eq!(outputs(&d.out), expected);
    let m = |offset| (offset, "m".to_owned());
    let decode = |offset| (offset, "s.decode".to_owned());
    assert_eq!(dead_letters(&d.dead), vec![m(0), decode(3), m(5), decode(7), m(10)]);
}
