//! Source `kinesis`: a standalone consumer of a Kinesis data stream, in the manner of the Kinesis
//! Client Library.
//!
//! ```toml
//! [sources.rides]
//! type = "kinesis"
//! stream = "ride_events"
//! starting_position = "trim_horizon"      # or "latest", "at_timestamp" (with at_timestamp = <epoch s>)
//! checkpoint = { path = ".tributary/ride_events.json" }   # or { lease_table = "rides-app" }
//! ```
//!
//! - Shards are listed at start and every `discovery_interval_ms`, so the children of a split or
//!   merge are found.
//! - A shard is read only once all its parents are finished: read to their end and checkpointed
//!   there. Children of a reshard always start at their beginning.
//! - A shard with a checkpoint resumes after it; otherwise it starts at `starting_position`.
//! - Each shard is polled at most every `poll_interval_ms` (the API allows 5 GetRecords calls per
//!   second and shard). A throttled shard backs off on its own.
//! - An expired iterator is re-acquired after the last record read, so nothing is read twice.
//! - Positions are (shard id, sequence number). The runtime commits watermarks, and each commit
//!   is written to the checkpoint store.

mod checkpoint;
mod lease;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::DateTime;
pub use checkpoint::{Checkpoints, FileStore, ShardCheckpoint};
pub use lease::{Lease, LeaseTable};
use serde::Deserialize;
use tributary_aws::{IteratorAt, describe, error_code};
use tributary_framework::config::ComponentSpec;
use tributary_framework::metrics::Gauge;
use tributary_framework::registry::BuildFuture;
use tributary_framework::{ComponentError, Offset, Position, Record, Source};

/// Where a shard without a checkpoint starts.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StartingPosition {
    /// The oldest record still in the shard.
    #[default]
    TrimHorizon,
    /// Records put after the worker starts.
    Latest,
    /// Records from `at_timestamp` on.
    AtTimestamp,
}

/// Where checkpoints are kept: a file, or a DynamoDB lease table when `lease_table` is set.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// The checkpoint file, rewritten atomically at every commit (its folder is created).
    /// Default: `.tributary/<stream>.json`. Unused with `lease_table`.
    pub path: Option<String>,
    /// A DynamoDB lease table (hash key `leaseKey`, type S) shared by the workers of one
    /// application: they split the shards between them and take over those of a worker that
    /// stops renewing. Empty or unset: the file.
    pub lease_table: Option<String>,
    /// This worker's id in the lease table. Default: host name, process id and start time.
    pub worker_id: Option<String>,
    /// A lease not renewed for this long is taken over, in milliseconds.
    #[serde(default = "default_lease_duration")]
    pub lease_duration_ms: u64,
}

fn default_lease_duration() -> u64 {
    10_000
}

enum Store {
    File(FileStore),
    Leases(LeaseTable),
}

/// `[sources.<id>]` with `type = "kinesis"`.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KinesisSourceConfig {
    /// The stream's name.
    pub stream: String,
    /// Where shards without a checkpoint start (children of a reshard always start at their
    /// beginning).
    #[serde(default)]
    pub starting_position: StartingPosition,
    /// Epoch seconds, for `starting_position = "at_timestamp"`.
    pub at_timestamp: Option<f64>,
    /// The checkpoint store. Default: the file `.tributary/<stream>.json`.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// Least time between two GetRecords calls on one shard, in milliseconds (at least 200: the
    /// API allows 5 calls per second and shard).
    #[serde(default = "default_poll_interval")]
    pub poll_interval_ms: u64,
    /// Most records per GetRecords call (1 to 10000).
    #[serde(default = "default_max_records")]
    pub max_records_per_call: i32,
    /// How often shards are listed again to find the children of a reshard, in milliseconds.
    #[serde(default = "default_discovery")]
    pub discovery_interval_ms: u64,
}

fn default_poll_interval() -> u64 {
    200
}
fn default_max_records() -> i32 {
    10_000
}
fn default_discovery() -> u64 {
    10_000
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Held by another worker (lease table only).
    Unowned,
    /// Some parent is not finished yet.
    Waiting,
    /// Being read.
    Reading,
    /// Read to its end (`last` is its last record); finished once that is committed.
    Closed { last: Option<String> },
    /// Done: read to its end and checkpointed there.
    Finished,
}

#[derive(Debug)]
struct Shard {
    parents: Vec<String>,
    state: State,
    iterator: Option<String>,
    last_read: Option<String>,
    next_poll: Instant,
    failures: u32,
    millis_behind: i64,
}

/// Reads a Kinesis stream.
pub struct KinesisSource {
    client: Client,
    config: KinesisSourceConfig,
    id: Arc<str>,
    store: Store,
    checkpoints: Checkpoints,
    next_lease_sync: Instant,
    lease_interval: Duration,
    shards: BTreeMap<String, Shard>,
    next_discovery: Instant,
    ready: VecDeque<Record>,
}

/// Builds the source: checks the stream and loads the checkpoints.
pub fn build(spec: ComponentSpec) -> BuildFuture<Box<dyn Source>> {
    Box::pin(async move {
        let config: KinesisSourceConfig = spec.parse()?;
        if config.poll_interval_ms < 200 {
            return Err(
                spec.error("poll_interval_ms", "must be at least 200 (5 GetRecords calls per second and shard)")
            );
        }
        if !(1..=10_000).contains(&config.max_records_per_call) {
            return Err(spec.error("max_records_per_call", "must be from 1 to 10000"));
        }
        if config.starting_position == StartingPosition::AtTimestamp && config.at_timestamp.is_none() {
            return Err(spec.error("at_timestamp", "required with starting_position = \"at_timestamp\""));
        }
        let cp = &config.checkpoint;
        let (store, checkpoints, lease_interval) = match cp.lease_table.as_deref().filter(|t| !t.is_empty()) {
            Some(table) => {
                let owner = cp.worker_id.clone().filter(|w| !w.is_empty()).unwrap_or_else(default_worker_id);
                let duration = Duration::from_millis(cp.lease_duration_ms);
                let leases = LeaseTable::open(table, &owner, duration)
                    .await
                    .map_err(|e| spec.error("checkpoint.lease_table", e))?;
                let checkpoints = Checkpoints { stream: config.stream.clone(), ..Checkpoints::default() };
                (Store::Leases(leases), checkpoints, duration / 3)
            }
            None => {
                let path = cp.path.clone().unwrap_or_else(|| format!(".tributary/{}.json", config.stream));
                let store = FileStore::new(path);
                let checkpoints = store.load(&config.stream).map_err(|e| spec.error("checkpoint.path", e))?;
                (Store::File(store), checkpoints, Duration::MAX)
            }
        };
        let client = tributary_aws::kinesis_client().await;
        let mut source = KinesisSource {
            client,
            id: Arc::from(spec.path.component.as_str()),
            store,
            checkpoints,
            shards: BTreeMap::new(),
            next_discovery: Instant::now(),
            next_lease_sync: Instant::now(),
            lease_interval,
            ready: VecDeque::new(),
            config,
        };
        source.discover().await.map_err(|e| spec.error("stream", e.to_string()))?;
        source.sync_leases().await.map_err(|e| spec.error("checkpoint", e.to_string()))?;
        Ok(Box::new(source) as Box<dyn Source>)
    })
}

fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let started = std::time::SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    format!("{host}-{}-{started}", std::process::id())
}

fn unknown(shard: &str) -> ComponentError {
    ComponentError::Fatal(format!("shard {shard} vanished from the shard table (a bug)"))
}

impl KinesisSource {
    /// Lists the shards and adds the new ones.
    async fn discover(&mut self) -> Result<(), ComponentError> {
        let shards = tributary_aws::list_shards(&self.client, &self.config.stream)
            .await
            .map_err(|e| tributary_aws::component_error(&format!("ListShards {}", self.config.stream), &e))?;
        for shard in &shards {
            let id = shard.shard_id().to_string();
            if self.shards.contains_key(&id) {
                continue;
            }
            let parents = tributary_aws::shard_parents(shard);
            let finished = self.checkpoints.shards.get(&id).is_some_and(|c| c.finished);
            let state = match (&self.store, finished) {
                (_, true) => State::Finished,
                (Store::Leases(_), false) => State::Unowned,
                (Store::File(_), false) => State::Waiting,
            };
            tracing::debug!(source = %self.id, shard = %id, ?parents, ?state, "shard found");
            self.shards.insert(
                id,
                Shard {
                    parents,
                    state,
                    iterator: None,
                    last_read: None,
                    next_poll: Instant::now(),
                    failures: 0,
                    millis_behind: 0,
                },
            );
        }
        self.next_discovery = Instant::now() + Duration::from_millis(self.config.discovery_interval_ms);
        Ok(())
    }

    /// Starts reading every waiting shard whose parents are finished (or gone: a parent past
    /// the retention period is no longer listed).
    async fn start_ready_shards(&mut self) -> Result<(), ComponentError> {
        let ids: Vec<String> =
            self.shards.iter().filter(|(_, s)| s.state == State::Waiting).map(|(id, _)| id.clone()).collect();
        for id in ids {
            let parents_done = self.shards[&id].parents.iter().all(|p| {
                self.shards.get(p).is_none_or(|parent| parent.state == State::Finished)
                    || self.checkpoints.shards.get(p).is_some_and(|c| c.finished)
            });
            if !parents_done {
                continue;
            }
            let after = self.checkpoints.shards.get(&id).and_then(|c| c.sequence.clone());
            let has_parents = !self.shards[&id].parents.is_empty();
            let iterator = self.iterator(&id, after.as_deref(), has_parents).await?;
            let shard = self.shards.get_mut(&id).ok_or_else(|| unknown(&id))?;
            shard.iterator = iterator;
            shard.state = State::Reading;
            shard.last_read = after;
            tracing::info!(source = %self.id, shard = %id, "reading shard");
        }
        Ok(())
    }

    async fn iterator(
        &self,
        shard: &str,
        after: Option<&str>,
        has_parents: bool,
    ) -> Result<Option<String>, ComponentError> {
        let at = match (after, has_parents, self.config.starting_position) {
            (Some(seq), _, _) => IteratorAt::After(seq),
            (None, true, _) | (None, false, StartingPosition::TrimHorizon) => IteratorAt::TrimHorizon,
            (None, false, StartingPosition::Latest) => IteratorAt::Latest,
            (None, false, StartingPosition::AtTimestamp) => {
                IteratorAt::Timestamp(DateTime::from_secs_f64(self.config.at_timestamp.unwrap_or(0.0)))
            }
        };
        tributary_aws::shard_iterator(&self.client, &self.config.stream, shard, at)
            .await
            .map_err(|e| ComponentError::Retryable(format!("GetShardIterator {shard}: {}", describe(&e))))
    }

    /// One GetRecords call on one shard; records go to `self.ready`.
    async fn poll(&mut self, id: &str, limit: i32) -> Result<(), ComponentError> {
        let Some(iterator) = self.shards[id].iterator.clone() else { return Ok(()) };
        let result = self.client.get_records().shard_iterator(iterator).limit(limit).send().await;
        let interval = Duration::from_millis(self.config.poll_interval_ms);
        match result {
            Ok(output) => {
                let partition: Arc<str> = Arc::from(id);
                let mut last = None;
                for r in output.records() {
                    let position = Position {
                        source: self.id.clone(),
                        partition: partition.clone(),
                        offset: Offset::Sequence(Arc::from(r.sequence_number())),
                    };
                    let arrival = r
                        .approximate_arrival_timestamp()
                        .map_or_else(std::time::SystemTime::now, |t| crate::kinesis_event::arrival_at(t.as_secs_f64()));
                    self.ready.push_back(
                        Record::new(r.data().as_ref().to_vec(), position)
                            .with_partition_key(Some(r.partition_key().to_string()))
                            .with_arrival(arrival),
                    );
                    last = Some(r.sequence_number().to_string());
                }
                let shard = self.shards.get_mut(id).ok_or_else(|| unknown(id))?;
                if last.is_some() {
                    shard.last_read = last;
                }
                shard.failures = 0;
                shard.millis_behind = output.millis_behind_latest().unwrap_or(0);
                shard.next_poll = Instant::now() + interval;
                shard.iterator = output.next_shard_iterator;
                if shard.iterator.is_none() {
                    tracing::info!(source = %self.id, shard = %id, "shard closed (resharded); finishing it before its children");
                    shard.state = State::Closed { last: shard.last_read.clone() };
                    self.finish_closed_shards().await?;
                }
                Ok(())
            }
            Err(e) => {
                let code = error_code(&e).unwrap_or_default().to_string();
                let message = format!("GetRecords {id}: {}", describe(&e));
                let shard = self.shards.get_mut(id).ok_or_else(|| unknown(id))?;
                shard.failures += 1;
                let backoff = Duration::from_millis((500u64 << shard.failures.min(5)).min(10_000));
                shard.next_poll = Instant::now() + backoff;
                match code.as_str() {
                    "ExpiredIteratorException" => {
                        tracing::warn!(source = %self.id, shard = %id, "shard iterator expired; getting a new one");
                        let after = shard
                            .last_read
                            .clone()
                            .or_else(|| self.checkpoints.shards.get(id).and_then(|c| c.sequence.clone()));
                        let has_parents = !shard.parents.is_empty();
                        let iterator = self.iterator(id, after.as_deref(), has_parents).await?;
                        let shard = self.shards.get_mut(id).ok_or_else(|| unknown(id))?;
                        shard.iterator = iterator;
                        shard.next_poll = Instant::now();
                        Ok(())
                    }
                    _ if tributary_aws::classify(&e) == tributary_aws::ErrorClass::Fatal => {
                        Err(ComponentError::Fatal(message))
                    }
                    _ => {
                        tracing::warn!(source = %self.id, shard = %id, ?backoff, %message, "read failed; backing off");
                        Ok(())
                    }
                }
            }
        }
    }

    /// Marks closed shards whose last record is committed as finished (and saves that).
    async fn finish_closed_shards(&mut self) -> Result<(), ComponentError> {
        let mut finished = Vec::new();
        for (id, shard) in &mut self.shards {
            if let State::Closed { last } = &shard.state {
                let committed = self.checkpoints.shards.get(id).and_then(|c| c.sequence.clone());
                if last.is_none() || *last == committed {
                    shard.state = State::Finished;
                    self.checkpoints.shards.entry(id.clone()).or_default().finished = true;
                    finished.push(id.clone());
                    tracing::info!(source = %self.id, shard = %id, "shard finished");
                }
            }
        }
        if !finished.is_empty() {
            self.persist(&finished).await?;
        }
        Ok(())
    }

    /// Writes the checkpoints of `shards` to the store. With leases, a shard whose lease was lost
    /// stops being read here (its new owner resumes from its own checkpoint).
    async fn persist(&mut self, shards: &[String]) -> Result<(), ComponentError> {
        match &mut self.store {
            Store::File(store) => store.save(&self.checkpoints).await.map_err(ComponentError::Retryable),
            Store::Leases(leases) => {
                for id in shards {
                    let cp = self.checkpoints.shards.get(id).cloned().unwrap_or_default();
                    if !leases.checkpoint(id, cp.sequence.as_deref(), cp.finished).await?
                        && let Some(shard) = self.shards.get_mut(id)
                    {
                        shard.state = State::Unowned;
                        shard.iterator = None;
                    }
                }
                Ok(())
            }
        }
    }

    /// Lease table only: renew, take and give up shards.
    async fn sync_leases(&mut self) -> Result<(), ComponentError> {
        let Store::Leases(leases) = &mut self.store else { return Ok(()) };
        let shards: BTreeMap<String, Vec<String>> =
            self.shards.iter().map(|(id, s)| (id.clone(), s.parents.clone())).collect();
        let sync = leases.sync(&shards).await?;
        self.next_lease_sync = Instant::now() + self.lease_interval;
        for lease in &sync.leases {
            let cp = self.checkpoints.shards.entry(lease.shard.clone()).or_default();
            cp.finished = lease.finished;
            if sync.gained.contains(&lease.shard) || !leases.held().contains(&lease.shard) {
                cp.sequence = lease.checkpoint.clone();
            }
            if lease.finished
                && let Some(shard) = self.shards.get_mut(&lease.shard)
            {
                shard.state = State::Finished;
            }
        }
        for id in &sync.lost {
            if let Some(shard) = self.shards.get_mut(id) {
                shard.state = State::Unowned;
                shard.iterator = None;
            }
        }
        for id in &sync.gained {
            if let Some(shard) = self.shards.get_mut(id)
                && shard.state == State::Unowned
            {
                shard.state = State::Waiting;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Source for KinesisSource {
    async fn next_batch(&mut self, max_records: usize) -> Result<Option<Vec<Record>>, ComponentError> {
        if Instant::now() >= self.next_discovery {
            self.discover().await?;
        }
        if Instant::now() >= self.next_lease_sync {
            self.sync_leases().await?;
        }
        self.start_ready_shards().await?;
        if self.ready.is_empty() {
            let now = Instant::now();
            let due: Vec<String> = self
                .shards
                .iter()
                .filter(|(_, s)| s.state == State::Reading && s.next_poll <= now)
                .map(|(id, _)| id.clone())
                .collect();
            for id in due {
                let limit = i32::try_from(max_records.saturating_sub(self.ready.len())).unwrap_or(i32::MAX);
                if limit == 0 {
                    break;
                }
                self.poll(&id, limit.min(self.config.max_records_per_call)).await?;
            }
        }
        if self.ready.is_empty() {
            // Nothing yet: wait for the next shard to become due, then hand back an empty batch
            // so that the runtime can commit in the meantime.
            let next = self.shards.values().filter(|s| s.state == State::Reading).map(|s| s.next_poll).min();
            let wait = next.map_or(Duration::from_millis(self.config.poll_interval_ms), |t| {
                t.saturating_duration_since(Instant::now())
            });
            tokio::time::sleep(wait.max(Duration::from_millis(20))).await;
            return Ok(Some(Vec::new()));
        }
        let n = self.ready.len().min(max_records);
        Ok(Some(self.ready.drain(..n).collect()))
    }

    async fn commit(&mut self, positions: &[Position]) -> Result<(), ComponentError> {
        for position in positions {
            if let Offset::Sequence(seq) = &position.offset {
                self.checkpoints.shards.entry(position.partition.to_string()).or_default().sequence =
                    Some(seq.to_string());
            }
        }
        let shards: Vec<String> = positions.iter().map(|p| p.partition.to_string()).collect();
        self.persist(&shards).await?;
        self.finish_closed_shards().await
    }

    fn gauges(&self) -> Vec<Gauge> {
        let reading: Vec<(&String, &Shard)> = self.shards.iter().filter(|(_, s)| s.state == State::Reading).collect();
        let mut gauges: Vec<Gauge> = reading
            .iter()
            .map(|(id, s)| Gauge {
                name: "millis_behind_latest",
                labels: vec![("shard", (*id).clone())],
                value: s.millis_behind as f64,
            })
            .collect();
        gauges.push(Gauge { name: "shards_reading", labels: Vec::new(), value: reading.len() as f64 });
        if let Store::Leases(leases) = &self.store {
            gauges.push(Gauge { name: "leases_held", labels: Vec::new(), value: leases.held().len() as f64 });
        }
        gauges
    }

    async fn close(&mut self) -> Result<(), ComponentError> {
        if let Store::Leases(leases) = &mut self.store {
            leases.release_all().await;
        }
        Ok(())
    }
}
