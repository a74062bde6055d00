//! The runtime's contract, checked with in-process doubles: fan-out, retries, dead letters,
//! failures that block commits, watermark commits and graceful shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::TestSource;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tributary_framework::config::{self, ComponentSpec};
use tributary_framework::executor::RecordStatus;
use tributary_framework::registry::{BuildFuture, Registry};
use tributary_framework::runtime::{Pipeline, RuntimeError};
use tributary_framework::{
    ComponentError, Delivery, Input, Offset, Outcome, Position, Processor, Record, Sink, Source,
};

type Behaviour<T> = Arc<dyn Fn(&Value, u32) -> T + Send + Sync>;

/// Calls `behaviour(value, attempt)` per record, counting attempts per record id.
struct TestProcessor {
    behaviour: Behaviour<Outcome>,
    attempts: Mutex<HashMap<u64, u32>>,
}

#[async_trait]
impl Processor for TestProcessor {
    async fn process(&self, batch: &[Input<'_>]) -> Result<Vec<Outcome>, ComponentError> {
        let mut attempts = self.attempts.lock().unwrap();
        Ok(batch
            .iter()
            .map(|input| {
                let n = attempts.entry(input.value["id"].as_u64().unwrap_or(u64::MAX)).or_default();
                *n += 1;
                (self.behaviour)(input.value, *n)
            })
            .collect())
    }
}

/// Collects what it delivers; `behaviour(value, attempt)` decides each delivery.
struct TestSink {
    behaviour: Behaviour<Delivery>,
    delivered: Mutex<Vec<Value>>,
    attempts: Mutex<HashMap<String, u32>>,
}

#[async_trait]
impl Sink for TestSink {
    async fn deliver(&self, batch: &[Input<'_>]) -> Result<Vec<Delivery>, ComponentError> {
        let mut attempts = self.attempts.lock().unwrap();
        let mut delivered = self.delivered.lock().unwrap();
        Ok(batch
            .iter()
            .map(|input| {
                let n = attempts.entry(input.value.to_string()).or_default();
                *n += 1;
                let d = (self.behaviour)(input.value, *n);
                if d == Delivery::Delivered {
                    delivered.push(input.value.value().clone());
                }
                d
            })
            .collect())
    }
}

fn sink(behaviour: impl Fn(&Value, u32) -> Delivery + Send + Sync + 'static) -> Arc<TestSink> {
    Arc::new(TestSink { behaviour: Arc::new(behaviour), delivered: Mutex::default(), attempts: Mutex::default() })
}

fn ok_sink() -> Arc<TestSink> {
    sink(|_, _| Delivery::Delivered)
}

struct Harness {
    registry: Registry,
    commits: Arc<Mutex<Vec<Position>>>,
}

/// A registry where source `test` emits `total` records, processor `tag` adds `"by": <id>`
/// (through `behaviour`), and sinks `a`, `b` and the dead letter `dlq` are the given doubles.
fn harness(
    total: Option<u64>,
    behaviour: impl Fn(&Value, u32) -> Outcome + Send + Sync + 'static,
    sinks: Vec<(&'static str, Arc<TestSink>)>,
) -> Harness {
    let commits = Arc::new(Mutex::new(Vec::new()));
    let c = commits.clone();
    let behaviour: Behaviour<Outcome> = Arc::new(behaviour);
    let mut registry = Registry::new()
        .source::<tributary_framework::registry::Untyped>(
            "test",
            move |_spec: ComponentSpec| -> BuildFuture<Box<dyn Source>> {
                let commits = c.clone();
                Box::pin(async move {
                    Ok(Box::new(TestSource { next: 0, total, partitions: 3, reads: Arc::default(), commits })
                        as Box<dyn Source>)
                })
            },
        )
        .processor::<tributary_framework::registry::Untyped>(
            "tag",
            move |spec: ComponentSpec| -> BuildFuture<Arc<dyn Processor>> {
                let behaviour = behaviour.clone();
                let id = spec.path.component.clone();
                Box::pin(async move {
                    let wrapped: Behaviour<Outcome> = Arc::new(move |v: &Value, n| match behaviour(v, n) {
                        Outcome::Emit(values) => Outcome::Emit(
                            values
                                .into_iter()
                                .map(|out| {
                                    let mut out = out.into_value();
                                    out["by"] = json!(id);
                                    out.into()
                                })
                                .collect(),
                        ),
                        other => other,
                    });
                    Ok(Arc::new(TestProcessor { behaviour: wrapped, attempts: Mutex::default() }) as Arc<dyn Processor>)
                })
            },
        );
    for (name, s) in sinks {
        registry = registry.sink::<tributary_framework::registry::Untyped>(
            name,
            move |_spec: ComponentSpec| -> BuildFuture<Arc<dyn Sink>> {
                let s = s.clone();
                Box::pin(async move { Ok(s as Arc<dyn Sink>) })
            },
        );
    }
    Harness { registry, commits }
}

const FAST_RETRY: &str = "[retry]\nmax_attempts = 3\ninitial_backoff_ms = 1\nmax_backoff_ms = 2\n";

async fn pipeline(h: &Harness, toml: &str) -> Pipeline {
    let config = config::from_toml_str("test.toml", toml).unwrap();
    Pipeline::build(&config, &h.registry).await.unwrap()
}

fn ids(values: &[Value]) -> Vec<u64> {
    let mut ids: Vec<u64> = values.iter().map(|v| v["id"].as_u64().unwrap()).collect();
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn fan_out_reads_once_and_every_branch_delivers() {
    let (a, b) = (ok_sink(), ok_sink());
    let h = harness(Some(50), |v, _| Outcome::one(v.clone()), vec![("a", a.clone()), ("b", b.clone())]);
    let p = pipeline(
        &h,
        r#"
        [pipeline]
        batch_size = 7
        max_in_flight = 3
        [sources.s]
        type = "test"
        [processors.one]
        type = "tag"
        inputs = ["s"]
        [processors.two]
        type = "tag"
        inputs = ["s"]
        [sinks.models]
        type = "a"
        inputs = ["one", "two"]
        [sinks.raw]
        type = "b"
        inputs = ["s"]
        "#,
    )
    .await;
    let summary = p.run(CancellationToken::new()).await.unwrap();
    assert_eq!(summary.metrics.records_in, 50);
    let models = a.delivered.lock().unwrap().clone();
    assert_eq!(models.len(), 100);
    for by in ["one", "two"] {
        let of: Vec<Value> = models.iter().filter(|v| v["by"] == by).cloned().collect();
        assert_eq!(ids(&of), (0..50).collect::<Vec<_>>(), "branch {by}");
    }
    assert_eq!(ids(&b.delivered.lock().unwrap()), (0..50).collect::<Vec<_>>());
    // Watermark: each of the 3 partitions committed up to its last record.
    let mut last: Vec<(String, Offset)> =
        summary.committed.iter().map(|p| (p.partition.to_string(), p.offset.clone())).collect();
    last.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        last,
        vec![("p0".into(), Offset::Index(48)), ("p1".into(), Offset::Index(49)), ("p2".into(), Offset::Index(47))]
    );
}

#[tokio::test]
async fn transient_failures_are_retried_then_dead_lettered() {
    let (out, dlq) = (ok_sink(), ok_sink());
    // Even ids succeed on the 2nd attempt; multiples of 5 always fail; 7 is poison.
    let h = harness(
        Some(20),
        |v, attempt| {
            let id = v["id"].as_u64().unwrap();
            if id == 7 {
                Outcome::Reject("poison".into())
            } else if id % 5 == 0 || (id % 2 == 0 && attempt < 2) {
                Outcome::Retry("busy".into())
            } else {
                Outcome::one(v.clone())
            }
        },
        vec![("a", out.clone()), ("dl", dlq.clone())],
    );
    let p = pipeline(
        &h,
        &format!(
            "{FAST_RETRY}\n[sources.s]\ntype = \"test\"\n[processors.m]\ntype = \"tag\"\ninputs = [\"s\"]\n\
             [sinks.out]\ntype = \"a\"\ninputs = [\"m\"]\n[dead_letter]\ntype = \"dl\"\n"
        ),
    )
    .await;
    let summary = p.run(CancellationToken::new()).await.unwrap();
    let expected: Vec<u64> = (0..20).filter(|i| i % 5 != 0 && *i != 7).collect();
    assert_eq!(ids(&out.delivered.lock().unwrap()), expected);
    let dead = dlq.delivered.lock().unwrap().clone();
    let mut dead_ids: Vec<u64> = dead
        .iter()
        .map(|d| serde_json::from_str::<Value>(d["payload"].as_str().unwrap()).unwrap()["id"].as_u64().unwrap())
        .collect();
    dead_ids.sort_unstable();
    assert_eq!(dead_ids, vec![0, 5, 7, 10, 15]);
    let poison = dead.iter().find(|d| d["reason"] == "poison").unwrap();
    assert_eq!(poison["component"], "m");
    assert_eq!(poison["position"]["offset"], 7);
    assert!(dead.iter().any(|d| d["reason"].as_str().unwrap().starts_with("gave up after 3 attempt(s): busy")));
    assert_eq!(summary.metrics.dead_lettered, 5);
    // Dead-lettered records count as done: every partition is committed to its end.
    assert_eq!(summary.committed.len(), 3);
}

#[tokio::test]
async fn a_sink_rejection_is_dead_lettered_with_the_output() {
    let out = sink(|v, _| if v["id"] == 3 { Delivery::Reject("too large".into()) } else { Delivery::Delivered });
    let dlq = ok_sink();
    let h = harness(Some(6), |v, _| Outcome::one(v.clone()), vec![("a", out.clone()), ("dl", dlq.clone())]);
    let p = pipeline(
        &h,
        "[sources.s]\ntype = \"test\"\n[processors.m]\ntype = \"tag\"\ninputs = [\"s\"]\n\
         [sinks.out]\ntype = \"a\"\ninputs = [\"m\"]\n[dead_letter]\ntype = \"dl\"\n",
    )
    .await;
    p.run(CancellationToken::new()).await.unwrap();
    let dead = dlq.delivered.lock().unwrap().clone();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["component"], "out");
    assert_eq!(dead[0]["output"], json!({"id": 3, "by": "m"}));
}

#[tokio::test]
async fn a_record_nobody_can_take_is_never_committed() {
    // The dead-letter destination itself refuses record 4: it must fail, not vanish.
    let out = ok_sink();
    let dlq = sink(|_, _| Delivery::Retry("dead-letter stream unavailable".into()));
    let h = harness(
        Some(9),
        |v, _| if v["id"] == 4 { Outcome::Reject("bad".into()) } else { Outcome::one(v.clone()) },
        vec![("a", out.clone()), ("dl", dlq)],
    );
    let p = pipeline(
        &h,
        &format!(
            "{FAST_RETRY}\n[pipeline]\nbatch_size = 3\n[sources.s]\ntype = \"test\"\n[processors.m]\ntype = \"tag\"\n\
             inputs = [\"s\"]\n[sinks.out]\ntype = \"a\"\ninputs = [\"m\"]\n[dead_letter]\ntype = \"dl\"\n"
        ),
    )
    .await;
    let graph = p.graph();
    let err = p.run(CancellationToken::new()).await.unwrap_err();
    match &err {
        RuntimeError::RecordFailed { position, reason, .. } => {
            assert_eq!(position.offset, Offset::Index(4));
            assert!(reason.contains("dead-letter destination refused it"), "{reason}");
        }
        other => panic!("unexpected {other}"),
    }
    // Record 4 is in partition p1: its commits stop at record 1; other partitions move on.
    let commits = h.commits.lock().unwrap().clone();
    assert!(commits.iter().filter(|p| &*p.partition == "p1").all(|p| p.offset == Offset::Index(1)), "{commits:?}");
    assert!(commits.iter().any(|p| &*p.partition == "p1"), "p1 committed up to record 1");
    assert!(commits.iter().any(|p| &*p.partition == "p0"));
    assert!(graph.metrics().snapshot().failed >= 1);
}

#[tokio::test]
async fn run_batch_reports_each_record() {
    let out = ok_sink();
    let dlq = ok_sink();
    let h = harness(
        None,
        |v, _| if v["id"] == 1 { Outcome::Reject("no".into()) } else { Outcome::one(v.clone()) },
        vec![("a", out.clone()), ("dl", dlq.clone())],
    );
    let p = pipeline(
        &h,
        "[retry]\non_exhausted = \"fail\"\nmax_attempts = 1\n[sources.s]\ntype = \"test\"\n[processors.m]\ntype = \"tag\"\n\
         inputs = [\"s\"]\n[sinks.out]\ntype = \"a\"\ninputs = [\"m\"]\n[dead_letter]\ntype = \"dl\"\n",
    )
    .await;
    let graph = p.graph();
    let pos = |i| Position { source: "s".into(), partition: "p".into(), offset: Offset::Index(i) };
    let records = vec![
        Record::new(&b"{\"id\": 0}"[..], pos(0)),
        Record::new(&b"{\"id\": 1}"[..], pos(1)),
        Record::new(&b"not json"[..], pos(2)),
        Record::invalid(&b"%%"[..], "kinesis.data is not valid base64", pos(3)),
    ];
    let report = graph.run_batch(0, &records).await;
    assert_eq!(
        report.statuses,
        vec![
            RecordStatus::Delivered,
            RecordStatus::DeadLettered,
            RecordStatus::DeadLettered,
            RecordStatus::DeadLettered
        ]
    );
    let dead = dlq.delivered.lock().unwrap().clone();
    assert!(dead.iter().any(|d| d["component"] == "s.decode" && d["reason"].as_str().unwrap().contains("not JSON")));
    assert!(dead.iter().any(|d| d["reason"] == "kinesis.data is not valid base64" && d["payload"] == "%%"));
}

/// Regression (issue 19): the Lambda handler ignored the invocation's deadline, so a sink in
/// backoff kept a batch retrying until the function timed out and the event source mapping
/// resent the whole batch. Under `retry::DEADLINE`, no retry starts that would end after it:
/// the batch is answered in time, the failing records reported as failed, the others delivered.
#[tokio::test]
async fn no_retry_starts_that_would_end_after_the_batch_deadline() {
    let out = sink(|v, _| if v["id"] == 1 { Delivery::Retry("throttled".into()) } else { Delivery::Delivered });
    let h = harness(None, |v, _| Outcome::one(v.clone()), vec![("a", out.clone()), ("dl", ok_sink())]);
    let p = pipeline(
        &h,
        "[retry]\non_exhausted = \"fail\"\nmax_attempts = 1000\ninitial_backoff_ms = 200\nmax_backoff_ms = 200\n\
         [sources.s]\ntype = \"test\"\n[processors.m]\ntype = \"tag\"\n\
         inputs = [\"s\"]\n[sinks.out]\ntype = \"a\"\ninputs = [\"m\"]\n[dead_letter]\ntype = \"dl\"\n",
    )
    .await;
    let graph = p.graph();
    let pos = |i| Position { source: "s".into(), partition: "p".into(), offset: Offset::Index(i) };
    let records = vec![Record::new(&b"{\"id\": 0}"[..], pos(0)), Record::new(&b"{\"id\": 1}"[..], pos(1))];
    let started = std::time::Instant::now();
    let deadline = started + std::time::Duration::from_secs(1);
    let report = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tributary_framework::retry::DEADLINE.scope(deadline, graph.run_batch(0, &records)),
    )
    .await
    .expect("answered before the deadline, not after 1000 attempts");
    // By the deadline, give or take the last call (the sink's own time): not 1000 x 200 ms.
    assert!(started.elapsed() < std::time::Duration::from_millis(1500), "{:?}", started.elapsed());
    assert_eq!(report.statuses[0], RecordStatus::Delivered);
    let RecordStatus::Failed(reason) = &report.statuses[1] else { panic!("{:?}", report.statuses) };
    assert!(reason.contains("after the deadline") && reason.contains("throttled"), "{reason}");
}

#[tokio::test]
async fn shutdown_finishes_in_flight_batches_and_commits_only_delivered_records() {
    let out = ok_sink();
    let h = harness(None, |v, _| Outcome::one(v.clone()), vec![("a", out.clone())]);
    let p = pipeline(
        &h,
        "[pipeline]\nbatch_size = 10\nmax_in_flight = 4\ncommit_interval_ms = 1\n[sources.s]\ntype = \"test\"\n\
         [processors.m]\ntype = \"tag\"\ninputs = [\"s\"]\n[sinks.out]\ntype = \"a\"\ninputs = [\"m\"]\n",
    )
    .await;
    let metrics = p.metrics();
    let stop = CancellationToken::new();
    let run = tokio::spawn(p.run(stop.clone()));
    while metrics.snapshot().records_in < 500 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    stop.cancel();
    let summary = run.await.unwrap().unwrap();
    let delivered = ids(&out.delivered.lock().unwrap());
    let read = summary.metrics.records_in;
    assert!(read >= 500);
    // Everything read was delivered (in-flight batches finished), once.
    assert_eq!(delivered, (0..read).collect::<Vec<_>>());
    // The final commit covers everything delivered.
    let mut committed: Vec<u64> = summary
        .committed
        .iter()
        .map(|p| match p.offset {
            Offset::Index(i) => i,
            _ => 0,
        })
        .collect();
    committed.sort_unstable();
    assert_eq!(committed.last().copied(), Some(read - 1));
}

#[tokio::test]
async fn config_and_graph_errors_name_the_component_and_key() {
    let h = harness(Some(1), |v, _| Outcome::one(v.clone()), vec![("a", ok_sink())]);
    let cases = [
        (
            "[sources.s]\ntype = \"test\"\n[sinks.o]\ntype = \"a\"\ninputs = [\"nope\"]\n",
            "[sinks.o] key `inputs`: unknown input \"nope\"",
        ),
        (
            "[sources.s]\ntype = \"test\"\n[processors.x]\ntype = \"tag\"\ninputs = [\"y\"]\n[processors.y]\ntype = \"tag\"\ninputs = [\"x\", \"s\"]\n[sinks.o]\ntype = \"a\"\ninputs = [\"x\"]\n",
            "cycle: ",
        ),
        (
            "[sources.s]\ntype = \"test\"\n[sinks.o]\ntype = \"zzz\"\ninputs = [\"s\"]\n",
            "[sinks.o] key `type`: unknown sink type \"zzz\"",
        ),
        ("[sources.s]\ntype = \"test\"\n[sinks.o]\ninputs = [\"s\"]\n", "[sinks.o] key `type`: missing"),
        ("[sources.s]\ntype = \"test\"\n[sinks.o]\ntype = \"a\"\n", "[sinks.o] key `inputs`: missing"),
        (
            "[sources.s]\ntype = \"test\"\n[sources.t]\ntype = \"test\"\n[sinks.o]\ntype = \"a\"\ninputs = [\"s\"]\n",
            "[sources.t]: nothing consumes",
        ),
        (
            "[pipeline]\nbatch_size = 0\n[sources.s]\ntype = \"test\"\n[sinks.o]\ntype = \"a\"\ninputs = [\"s\"]\n",
            "[pipeline] key `batch_size`",
        ),
        ("[pipeline]\nbatch_sise = 3\n[sources.s]\ntype = \"test\"\n", "unknown field `batch_sise`"),
        ("[retry]\nmax_attempts = \"x\"\n", "[retry] key `max_attempts`: invalid type"),
    ];
    for (toml, expected) in cases {
        let result = async {
            let config = config::from_toml_str("bad.toml", toml)?;
            Pipeline::build(&config, &h.registry).await.map(|_| ())
        }
        .await;
        let message = result.unwrap_err().to_string();
        assert!(message.starts_with("bad.toml"), "{message}");
        assert!(message.contains(expected), "expected {expected:?} in {message:?}");
    }
}
