//! Runs one source batch through the graph: decode once, processors level by level (each level
//! concurrently), sinks concurrently, retries with backoff, and dead letters. Returns the fate of
//! every record. The streaming runtime and the Lambda adapter both call [`Graph::run_batch`].
//!
//! Decoding is skipped when a source's only consumers are processors that read events from
//! their JSON text ([`Processor::reads_json_text`]): they parse the fields they need from the
//! payload, and hand back the records they do not read that way, which are then decoded (or
//! rejected as not JSON, as the decoder would have) and processed as values.

use std::collections::HashSet;
use std::sync::Arc;

use futures::future::join_all;
use serde_json::Value;

use crate::component::{Delivery, Input, Outcome, Processor, Sink};
use crate::dead_letter;
use crate::error::ComponentError;
use crate::graph::{Graph, NodeRef};
use crate::output::Output;
use crate::record::{Payload, Record};
use crate::retry::OnExhausted;

/// What finally happened to one source record, over all its branches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordStatus {
    /// Every branch delivered it (or filtered it out).
    Delivered,
    /// At least one branch rejected it and the dead-letter destination has it; the others
    /// delivered it.
    DeadLettered,
    /// Some branch could neither deliver nor dead-letter it: it must not be committed.
    Failed(String),
}

/// The result of [`Graph::run_batch`]: one status per input record, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Per-record status, index-aligned with the batch.
    pub statuses: Vec<RecordStatus>,
}

impl BatchReport {
    /// Indices of failed records, lowest first.
    pub fn failed(&self) -> impl Iterator<Item = (usize, &str)> {
        self.statuses.iter().enumerate().filter_map(|(i, s)| match s {
            RecordStatus::Failed(reason) => Some((i, reason.as_str())),
            _ => None,
        })
    }
}

/// A batch decoded and processed but not delivered ([`Graph::evaluate_batch`]).
pub struct Evaluated {
    source: usize,
    source_items: Vec<Item>,
    outputs: Vec<Vec<Item>>,
    rejections: Vec<Rejection>,
    statuses: Vec<RecordStatus>,
}

/// Why a record of an evaluated batch has no answer ([`Graph::answers`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Whose fault, in HTTP terms.
    pub kind: RefusalKind,
    /// The component that refused it (`<source>.decode` for a payload that is not JSON).
    pub component: Arc<str>,
    /// The reason, as a dead letter carries it.
    pub reason: String,
}

/// The kinds of [`Refusal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    /// The record is at fault (invalid, rejected by a processor): it would be dead-lettered.
    Rejected,
    /// A component kept failing transiently until the retries gave up: try again later.
    Unavailable,
    /// A component failed fatally.
    Failed,
}

/// A value in flight, with the index of the source record it derives from.
#[derive(Clone)]
struct Item {
    origin: usize,
    value: Arc<Output>,
}

/// One result of a processor or sink call, normalised.
enum Verdict {
    Done(Vec<Output>),
    Retry(String),
    Reject(String),
    Fatal(String),
    /// A processor reading JSON text did not read this record that way: decode it.
    Decode,
}

/// The end state of one item after retries.
enum Final {
    Done(Vec<Output>),
    DeadLetter(String),
    Failed(String),
    /// To be decoded and processed as a value ([`Verdict::Decode`]).
    Decode,
}

#[derive(Clone, Copy)]
enum Stage<'a> {
    Processor(&'a dyn Processor),
    /// A processor given its records' JSON text ([`Processor::process_json_text`]).
    JsonText(&'a dyn Processor),
    Sink(&'a dyn Sink),
}

impl Stage<'_> {
    /// One verdict per input. A processor that fails a batch fatally is asked again on its
    /// halves, recursively, so that the records it cannot take (a poison record: values ONNX
    /// Runtime rejects) are isolated and dead-lettered with its error, and the rest go on;
    /// when every record fails alone too, the failure is the processor's, not the records', and
    /// stays fatal. A sink's fatal error is always the sink's (access denied, no such stream).
    async fn verdicts(&self, inputs: &[Input<'_>]) -> Vec<Verdict> {
        let verdicts = self.bisect(inputs).await;
        let fatal = verdicts.iter().filter(|v| matches!(v, Verdict::Fatal(_))).count();
        if fatal == 0 || fatal == verdicts.len() {
            return verdicts;
        }
        verdicts
            .into_iter()
            .map(|v| match v {
                Verdict::Fatal(reason) => Verdict::Reject(format!("isolated from its batch: {reason}")),
                other => other,
            })
            .collect()
    }

    fn bisect<'s, 'i: 's>(&'s self, inputs: &'s [Input<'i>]) -> futures::future::BoxFuture<'s, Vec<Verdict>> {
        Box::pin(async move {
            match self.call(inputs).await {
                Ok(v) if v.len() == inputs.len() => v,
                Ok(v) => {
                    let msg = format!(
                        "component returned {} results for {} inputs (a bug in the plugin)",
                        v.len(),
                        inputs.len()
                    );
                    inputs.iter().map(|_| Verdict::Fatal(msg.clone())).collect()
                }
                Err(e) if e.is_retryable() => inputs.iter().map(|_| Verdict::Retry(e.to_string())).collect(),
                Err(e) if !matches!(self, Stage::Sink(_)) && inputs.len() > 1 => {
                    tracing::warn!(records = inputs.len(), error = %e, "processor failed the batch; splitting it to isolate the records at fault");
                    let (left, right) = inputs.split_at(inputs.len() / 2);
                    let mut verdicts = self.bisect(left).await;
                    verdicts.extend(self.bisect(right).await);
                    verdicts
                }
                Err(e) => inputs.iter().map(|_| Verdict::Fatal(e.to_string())).collect(),
            }
        })
    }

    async fn call(&self, inputs: &[Input<'_>]) -> Result<Vec<Verdict>, ComponentError> {
        Ok(match self {
            Stage::Processor(p) => p
                .process(inputs)
                .await?
                .into_iter()
                .map(|o| match o {
                    Outcome::Emit(values) => Verdict::Done(values),
                    Outcome::Retry(reason) => Verdict::Retry(reason),
                    Outcome::Reject(reason) => Verdict::Reject(reason),
                })
                .collect(),
            Stage::JsonText(p) => p
                .process_json_text(&inputs.iter().map(|input| input.record).collect::<Vec<_>>())
                .await?
                .into_iter()
                .map(|o| match o {
                    Some(Outcome::Emit(values)) => Verdict::Done(values),
                    Some(Outcome::Retry(reason)) => Verdict::Retry(reason),
                    Some(Outcome::Reject(reason)) => Verdict::Reject(reason),
                    None => Verdict::Decode,
                })
                .collect(),
            Stage::Sink(s) => s
                .deliver(inputs)
                .await?
                .into_iter()
                .map(|d| match d {
                    Delivery::Delivered => Verdict::Done(Vec::new()),
                    Delivery::Retry(reason) => Verdict::Retry(reason),
                    Delivery::Reject(reason) => Verdict::Reject(reason),
                })
                .collect(),
        })
    }
}

/// A rejection waiting for the dead-letter destination.
struct Rejection {
    origin: usize,
    component: Arc<str>,
    reason: String,
    output: Option<Arc<Output>>,
}

impl Graph {
    /// Runs one batch of records from source `source` (an index from [`Graph::source_index`])
    /// through every branch that consumes it, and reports each record's fate.
    pub async fn run_batch(&self, source: usize, records: &[Record]) -> BatchReport {
        let started = std::time::Instant::now();
        self.metrics.add_in(records.len());
        let evaluated = self.evaluate_batch(source, records).await;
        let report = self.deliver_evaluated(evaluated, records, &[], true).await;
        self.metrics.add_batch(started.elapsed());
        report
    }

    /// Decodes and processes a batch like [`Graph::run_batch`], but delivers nothing: returns,
    /// per record, the values the sinks would receive, or why the record was rejected. For
    /// answering a request directly (a Lambda invoked with a bare event).
    pub async fn evaluate(&self, source: usize, records: &[Record]) -> Vec<Result<Vec<Output>, String>> {
        let evaluated = self.evaluate_batch(source, records).await;
        let all: Vec<usize> = (0..self.sinks.len()).collect();
        self.answers(&evaluated, &all).into_iter().map(|a| a.map_err(|refusal| refusal.reason)).collect()
    }

    /// Decodes and processes a batch, delivering nothing yet: the first half of
    /// [`Graph::run_batch`], for answering requests ([`Graph::answers`]) before delivering to
    /// the other sinks ([`Graph::deliver_evaluated`]).
    pub async fn evaluate_batch(&self, source: usize, records: &[Record]) -> Evaluated {
        let mut statuses = vec![RecordStatus::Delivered; records.len()];
        let mut rejections = Vec::new();
        let (source_items, outputs) = self.process(source, records, &mut rejections, &mut statuses).await;
        Evaluated { source, source_items, outputs, rejections, statuses }
    }

    /// Per record of an evaluated batch: the values that the sinks at indices `sinks` (see
    /// [`Graph::sink_index`]) would receive, in sink-input order, or why the record has none.
    pub fn answers(&self, evaluated: &Evaluated, sinks: &[usize]) -> Vec<Result<Vec<Output>, Refusal>> {
        let mut results: Vec<Result<Vec<Output>, Refusal>> =
            (0..evaluated.statuses.len()).map(|_| Ok(Vec::new())).collect();
        let mut inputs: Vec<NodeRef> = Vec::new();
        for input in sinks.iter().filter_map(|&s| self.sinks.get(s)).flat_map(|s| s.inputs.iter().copied()) {
            if !inputs.contains(&input) {
                inputs.push(input);
            }
        }
        for item in gather(&inputs, evaluated.source, &evaluated.source_items, &evaluated.outputs) {
            if let Ok(values) = &mut results[item.origin] {
                values.push(Output::clone(&item.value));
            }
        }
        for rejection in &evaluated.rejections {
            let reason = rejection.reason.clone();
            let component = rejection.component.clone();
            // A retry that gave up is not the record's fault: it may succeed later.
            results[rejection.origin] = Err(if reason.starts_with("gave up after") {
                Refusal { kind: RefusalKind::Unavailable, component, reason }
            } else {
                Refusal { kind: RefusalKind::Rejected, component, reason }
            });
        }
        for (origin, status) in evaluated.statuses.iter().enumerate() {
            if let RecordStatus::Failed(reason) = status {
                let component = Arc::from(reason.split_once(": ").map_or("", |(c, _)| c));
                results[origin] = Err(Refusal { kind: RefusalKind::Failed, component, reason: reason.clone() });
            }
        }
        results
    }

    /// The second half of [`Graph::run_batch`] for an evaluated batch: delivers to every sink
    /// except those at indices `skip`, and dead-letters the rejections when `dead_letter`.
    pub async fn deliver_evaluated(
        &self,
        evaluated: Evaluated,
        records: &[Record],
        skip: &[usize],
        dead_letter: bool,
    ) -> BatchReport {
        let Evaluated { source, source_items, outputs, mut rejections, mut statuses } = evaluated;
        self.deliver_to(source, records, &source_items, &outputs, &mut rejections, &mut statuses, skip).await;
        if dead_letter {
            self.dead_letter(rejections, records, &mut statuses).await;
        }
        let failed = statuses.iter().filter(|s| matches!(s, RecordStatus::Failed(_))).count();
        self.metrics.add_failed(failed);
        BatchReport { statuses }
    }

    /// Decode, then processors level by level (each level concurrently). Returns the decoded
    /// records and each processor's outputs.
    async fn process(
        &self,
        source: usize,
        records: &[Record],
        rejections: &mut Vec<Rejection>,
        statuses: &mut [RecordStatus],
    ) -> (Vec<Item>, Vec<Vec<Item>>) {
        let json_text = self.source_read_as_json_text(source);
        let source_items = self.decode(source, records, rejections, json_text);
        let mut outputs: Vec<Vec<Item>> = vec![Vec::new(); self.processors.len()];
        let mut undecodable: HashSet<usize> = HashSet::new();
        for level in &self.levels {
            let calls = self.processors[level.clone()].iter().map(|node| {
                let items = gather(&node.inputs, source, &source_items, &outputs);
                let stage = if json_text && node.inputs == [NodeRef::Source(source)] {
                    Stage::JsonText(&*node.component)
                } else {
                    Stage::Processor(&*node.component)
                };
                async move {
                    let finals = self.call_with_retries(stage, &node.id, &items, records).await;
                    (items, finals)
                }
            });
            let results = join_all(calls).await;
            for (offset, (items, finals)) in results.into_iter().enumerate() {
                let index = level.start + offset;
                let to_decode =
                    self.take_finals(index, items.into_iter().zip(finals), &mut outputs, rejections, statuses);
                if !to_decode.is_empty() {
                    // Records the processor did not read from their text: as values, in order.
                    let items = self.decode_declined(source, records, to_decode, rejections, &mut undecodable);
                    let node = &self.processors[index];
                    let finals =
                        self.call_with_retries(Stage::Processor(&*node.component), &node.id, &items, records).await;
                    // (`Stage::Processor` never asks for decoding: nothing is handed back.)
                    self.take_finals(index, items.into_iter().zip(finals), &mut outputs, rejections, statuses);
                    outputs[index].sort_by_key(|item| item.origin);
                }
            }
        }
        (source_items, outputs)
    }

    /// Files the end states of processor `index`'s items (outputs, rejections, failures);
    /// returns the items it asks to have decoded.
    fn take_finals(
        &self,
        index: usize,
        finals: impl Iterator<Item = (Item, Final)>,
        outputs: &mut [Vec<Item>],
        rejections: &mut Vec<Rejection>,
        statuses: &mut [RecordStatus],
    ) -> Vec<Item> {
        let node_id = &self.processors[index].id;
        let mut to_decode = Vec::new();
        for (item, fin) in finals {
            match fin {
                Final::Done(values) => {
                    outputs[index].extend(values.into_iter().map(|v| Item { origin: item.origin, value: Arc::new(v) }));
                }
                Final::DeadLetter(reason) => {
                    rejections.push(Rejection {
                        origin: item.origin,
                        component: node_id.clone(),
                        reason,
                        output: None,
                    });
                }
                Final::Failed(reason) => fail(statuses, item.origin, node_id, &reason),
                Final::Decode => to_decode.push(item),
            }
        }
        to_decode
    }

    /// Whether the records of `source` go undecoded to its consumers: every node consuming it
    /// is a processor that reads JSON text and consumes nothing else.
    fn source_read_as_json_text(&self, source: usize) -> bool {
        let consumes = |inputs: &[NodeRef]| inputs.contains(&NodeRef::Source(source));
        let mut consumers = self.processors.iter().filter(|node| consumes(&node.inputs)).peekable();
        consumers.peek().is_some()
            && consumers.all(|node| node.inputs.len() == 1 && node.component.reads_json_text())
            && !self.sinks.iter().any(|node| consumes(&node.inputs))
    }

    /// Decodes the records a processor reading JSON text handed back. Those that are not JSON
    /// are rejected by the source's decoder, as on the decoding path, once per record however
    /// many processors hand it back (`undecodable` remembers them).
    fn decode_declined(
        &self,
        source: usize,
        records: &[Record],
        declined: Vec<Item>,
        rejections: &mut Vec<Rejection>,
        undecodable: &mut HashSet<usize>,
    ) -> Vec<Item> {
        let mut items = Vec::with_capacity(declined.len());
        for Item { origin, .. } in declined {
            match decode_json(records[origin].raw_bytes()) {
                Ok(value) => items.push(Item { origin, value: Arc::new(Output::from(value)) }),
                Err(reason) => {
                    if undecodable.insert(origin) {
                        rejections.push(Rejection { origin, component: self.decoder_id(source), reason, output: None });
                    }
                }
            }
        }
        items
    }

    fn decoder_id(&self, source: usize) -> Arc<str> {
        Arc::from(format!("{}.decode", self.source_ids[source]))
    }

    /// Every sink but those at `skip`, concurrently, on what it consumes.
    #[allow(clippy::too_many_arguments)]
    async fn deliver_to(
        &self,
        source: usize,
        records: &[Record],
        source_items: &[Item],
        outputs: &[Vec<Item>],
        rejections: &mut Vec<Rejection>,
        statuses: &mut [RecordStatus],
        skip: &[usize],
    ) {
        let targets = self.sinks.iter().enumerate().filter(|(i, _)| !skip.contains(i)).map(|(_, node)| node);
        let deliveries = targets.map(|node| {
            let items = gather(&node.inputs, source, source_items, outputs);
            async move {
                let finals = self.call_with_retries(Stage::Sink(&*node.component), &node.id, &items, records).await;
                (node, items, finals)
            }
        });
        let mut delivered = 0;
        for (node, items, finals) in join_all(deliveries).await {
            for (item, fin) in items.into_iter().zip(finals) {
                match fin {
                    Final::Done(_) => delivered += 1,
                    Final::DeadLetter(reason) => rejections.push(Rejection {
                        origin: item.origin,
                        component: node.id.clone(),
                        reason,
                        output: Some(item.value),
                    }),
                    Final::Failed(reason) => fail(statuses, item.origin, &node.id, &reason),
                    Final::Decode => fail(statuses, item.origin, &node.id, SINK_DECODE),
                }
            }
        }
        self.metrics.add_delivered(delivered);
    }

    /// Decodes each record's payload once (size check, then JSON). With `json_text`, only the
    /// size check: the items' values are placeholders, as their consumers read the records'
    /// text ([`Graph::source_read_as_json_text`]).
    fn decode(&self, source: usize, records: &[Record], rejections: &mut Vec<Rejection>, json_text: bool) -> Vec<Item> {
        let decoder = self.decoder_id(source);
        let undecoded = Arc::new(Output::from(Value::Null));
        let mut items = Vec::with_capacity(records.len());
        for (origin, record) in records.iter().enumerate() {
            let result = match &record.payload {
                Payload::Invalid { reason, .. } => Err(reason.clone()),
                Payload::Bytes(b) if b.len() > self.max_record_bytes => {
                    Err(format!("record is {} bytes, over the {}-byte limit", b.len(), self.max_record_bytes))
                }
                Payload::Bytes(_) if json_text => Ok(Arc::clone(&undecoded)),
                Payload::Bytes(b) => decode_json(b).map(|value| Arc::new(Output::from(value))),
            };
            match result {
                Ok(value) => items.push(Item { origin, value }),
                Err(reason) => rejections.push(Rejection { origin, component: decoder.clone(), reason, output: None }),
            }
        }
        items
    }

    async fn dead_letter(&self, rejections: Vec<Rejection>, records: &[Record], statuses: &mut [RecordStatus]) {
        if rejections.is_empty() {
            return;
        }
        let items: Vec<Item> = rejections
            .iter()
            .map(|r| {
                let output = r.output.as_deref().map(Output::value);
                let doc = dead_letter::entry(&records[r.origin], &r.component, &r.reason, output);
                Item { origin: r.origin, value: Arc::new(Output::from(doc)) }
            })
            .collect();
        let node = &self.dead_letter;
        // A dead-letter destination that gives up fails the records: never drop them.
        let finals = self.call_with_retries(Stage::Sink(&*node.component), &node.id, &items, records).await;
        let mut written = 0;
        for (item, fin) in items.iter().zip(finals) {
            match fin {
                Final::Done(_) => {
                    written += 1;
                    if statuses[item.origin] == RecordStatus::Delivered {
                        statuses[item.origin] = RecordStatus::DeadLettered;
                    }
                }
                Final::DeadLetter(reason) | Final::Failed(reason) => {
                    fail(statuses, item.origin, &node.id, &format!("dead-letter destination refused it: {reason}"));
                }
                Final::Decode => fail(statuses, item.origin, &node.id, SINK_DECODE),
            }
        }
        self.metrics.add_dead_lettered(written);
    }

    /// Calls a processor or sink on `items`, retrying retryable results with backoff until the
    /// retry policy gives up.
    async fn call_with_retries(&self, stage: Stage<'_>, id: &str, items: &[Item], records: &[Record]) -> Vec<Final> {
        let mut finals: Vec<Option<Final>> = (0..items.len()).map(|_| None).collect();
        let mut pending: Vec<usize> = (0..items.len()).collect();
        let mut attempt = 0u32;
        while !pending.is_empty() {
            attempt += 1;
            let inputs: Vec<Input<'_>> =
                pending.iter().map(|&i| Input { value: &items[i].value, record: &records[items[i].origin] }).collect();
            let verdicts = stage.verdicts(&inputs).await;
            let mut again = Vec::new();
            let mut last_reason = String::new();
            let pause = self.retry.backoff(attempt);
            let in_time = crate::retry::before_deadline(pause);
            for (&i, verdict) in pending.iter().zip(verdicts) {
                finals[i] = match verdict {
                    Verdict::Done(values) => Some(Final::Done(values)),
                    Verdict::Reject(reason) => Some(Final::DeadLetter(reason)),
                    Verdict::Fatal(reason) => Some(Final::Failed(reason)),
                    Verdict::Decode => Some(Final::Decode),
                    Verdict::Retry(reason) => {
                        if in_time && self.retry.may_retry(attempt, records[items[i].origin].arrival) {
                            again.push(i);
                            last_reason = reason;
                            None
                        } else {
                            let late = if in_time { "" } else { ", the next would end after the deadline" };
                            let reason = format!("gave up after {attempt} attempt(s){late}: {reason}");
                            Some(match self.retry.on_exhausted {
                                OnExhausted::DeadLetter => Final::DeadLetter(reason),
                                OnExhausted::Fail => Final::Failed(reason),
                            })
                        }
                    }
                };
            }
            if !again.is_empty() {
                tracing::warn!(component = id, records = again.len(), attempt, ?pause, reason = %last_reason, "retrying");
                tokio::time::sleep(pause).await;
            }
            pending = again;
        }
        finals.into_iter().map(|f| f.unwrap_or_else(|| Final::Failed("no result".into()))).collect()
    }
}

/// A sink's result cannot ask for decoding (only processors reading JSON text do).
const SINK_DECODE: &str = "a sink asked for its input to be decoded (a bug in the runtime)";

/// A payload as a JSON value, or why it is not one.
fn decode_json(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice::<Value>(bytes).map_err(|e| format!("payload is not JSON: {e}"))
}

/// The inputs of a node for this batch: the decoded records if it consumes the batch's source,
/// plus the outputs of the processors it consumes.
fn gather(inputs: &[NodeRef], source: usize, source_items: &[Item], outputs: &[Vec<Item>]) -> Vec<Item> {
    let mut items = Vec::new();
    for input in inputs {
        match *input {
            NodeRef::Source(s) if s == source => items.extend_from_slice(source_items),
            NodeRef::Source(_) => {}
            NodeRef::Processor(p) => items.extend_from_slice(&outputs[p]),
        }
    }
    items
}

fn fail(statuses: &mut [RecordStatus], origin: usize, component: &str, reason: &str) {
    if !matches!(statuses[origin], RecordStatus::Failed(_)) {
        tracing::error!(component, %reason, "record failed; it will not be committed");
        statuses[origin] = RecordStatus::Failed(format!("{component}: {reason}"));
    }
}
