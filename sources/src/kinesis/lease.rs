//! The `dynamodb` checkpoint store: a lease table shared by several workers of one application.
//!
//! One item per shard: `leaseKey` (the shard id), `owner` (a worker id, absent when free),
//! `counter` (bumped by every renewal, take-over and release), `checkpoint` (sequence number),
//! `finished`, and `parents`. Every write is conditional on the owner and the counter this worker
//! last saw, so a worker that lost a lease can never move its checkpoint.
//!
//! Each sync (every third of `lease_duration_ms`) a worker renews its leases, then takes free or
//! expired ones (a lease whose counter has not moved for `lease_duration_ms`), up to its fair
//! share, ceil(unfinished leases / live workers). When there are none to take, it steals one
//! lease from the busiest worker. A worker that stops gracefully releases its leases.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use tributary_aws::{describe, error_code};
use tributary_framework::ComponentError;

/// One row of the lease table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lease {
    /// The shard id.
    pub shard: String,
    /// The worker holding it.
    pub owner: Option<String>,
    /// Bumped by every renewal, take-over and release.
    pub counter: i64,
    /// Last committed sequence number.
    pub checkpoint: Option<String>,
    /// Read to its end and checkpointed there.
    pub finished: bool,
}

/// This worker's view of the lease table.
pub struct LeaseTable {
    client: Client,
    table: String,
    owner: String,
    duration: Duration,
    /// Leases this worker holds, with the counter it last wrote.
    held: BTreeMap<String, i64>,
    /// Last counter seen on each lease, and when it was first seen.
    seen: HashMap<String, (i64, Instant)>,
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// What a sync changed for this worker.
#[derive(Debug, Default)]
pub struct Sync {
    /// Every lease in the table after the sync.
    pub leases: Vec<Lease>,
    /// Shards this worker took.
    pub gained: Vec<String>,
    /// Shards this worker no longer holds.
    pub lost: Vec<String>,
}

impl LeaseTable {
    /// Connects to `table` as worker `owner`.
    ///
    /// # Errors
    /// The table does not exist or cannot be read.
    pub async fn open(table: &str, owner: &str, duration: Duration) -> Result<Self, String> {
        let client = tributary_aws::dynamodb_client().await;
        client.describe_table().table_name(table).send().await.map_err(|e| {
            format!("lease table {table:?}: {} (create it with hash key `leaseKey` of type S)", describe(&e))
        })?;
        Ok(LeaseTable {
            client,
            table: table.to_string(),
            owner: owner.to_string(),
            duration,
            held: BTreeMap::new(),
            seen: HashMap::new(),
        })
    }

    /// Shards this worker holds.
    pub fn held(&self) -> BTreeSet<String> {
        self.held.keys().cloned().collect()
    }

    async fn scan(&self) -> Result<Vec<Lease>, ComponentError> {
        let mut leases = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| {
                    ComponentError::Retryable(format!("scanning lease table {}: {}", self.table, describe(&e)))
                })?;
            for item in page.items() {
                let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
                leases.push(Lease {
                    shard: text("leaseKey").unwrap_or_default(),
                    owner: text("owner"),
                    counter: item.get("counter").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).unwrap_or(0),
                    checkpoint: text("checkpoint"),
                    finished: item.get("finished").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
                });
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(leases),
            }
        }
    }

    /// Creates the lease of a shard if it has none yet.
    async fn create(&self, shard: &str, parents: &[String]) -> Result<(), ComponentError> {
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("leaseKey", s(shard))
            .item("counter", n(0))
            .item("finished", AttributeValue::Bool(false))
            .condition_expression("attribute_not_exists(leaseKey)");
        if !parents.is_empty() {
            request = request.item("parents", AttributeValue::Ss(parents.to_vec()));
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(ComponentError::Retryable(format!("creating lease {shard}: {}", describe(&e)))),
        }
    }

    /// Conditional update; `Ok(Some(counter))` on success, `Ok(None)` when the condition failed.
    async fn update(
        &self,
        shard: &str,
        update: &str,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<Option<i64>, ComponentError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("leaseKey", s(shard))
            .update_expression(update)
            .condition_expression(condition)
            .return_values(ReturnValue::AllNew);
        // Attribute names, some of them reserved words, by placeholder (only those used).
        for (placeholder, name) in [("#o", "owner"), ("#c", "counter"), ("#k", "checkpoint"), ("#f", "finished")] {
            if update.contains(placeholder) || condition.contains(placeholder) {
                request = request.expression_attribute_names(placeholder, name);
            }
        }
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        match request.send().await {
            Ok(out) => Ok(Some(
                out.attributes()
                    .and_then(|a| a.get("counter"))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            )),
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => Ok(None),
            Err(e) => Err(ComponentError::Retryable(format!("updating lease {shard}: {}", describe(&e)))),
        }
    }

    /// Renews, creates missing leases for `shards` (id -> parents), takes and steals.
    ///
    /// # Errors
    /// The table cannot be read or written (retried by the caller).
    pub async fn sync(&mut self, shards: &BTreeMap<String, Vec<String>>) -> Result<Sync, ComponentError> {
        let mut sync = Sync::default();
        // Renew what we hold.
        let held: Vec<(String, i64)> = self.held.iter().map(|(k, v)| (k.clone(), *v)).collect();
        for (shard, counter) in held {
            let renewed = self
                .update(
                    &shard,
                    "SET #c = #c + :one",
                    "#o = :me AND #c = :c",
                    vec![(":one", n(1)), (":me", s(&self.owner)), (":c", n(counter))],
                )
                .await?;
            match renewed {
                Some(c) => {
                    self.held.insert(shard, c);
                }
                None => {
                    tracing::warn!(shard = %shard, "lease lost to another worker");
                    self.held.remove(&shard);
                    sync.lost.push(shard);
                }
            }
        }
        let mut leases = self.scan().await?;
        let known: BTreeSet<String> = leases.iter().map(|l| l.shard.clone()).collect();
        let mut created = false;
        for (shard, parents) in shards {
            if !known.contains(shard) {
                self.create(shard, parents).await?;
                created = true;
            }
        }
        if created {
            leases = self.scan().await?;
        }
        // Expiry: a counter that has not moved for the lease duration.
        let now = Instant::now();
        let mut expired = BTreeSet::new();
        for lease in &leases {
            let entry = self.seen.entry(lease.shard.clone()).or_insert((lease.counter, now));
            if entry.0 != lease.counter {
                *entry = (lease.counter, now);
            }
            let mine = lease.owner.as_deref() == Some(self.owner.as_str());
            if lease.owner.is_some() && !mine && now.duration_since(entry.1) > self.duration {
                expired.insert(lease.shard.clone());
            }
        }
        let open: Vec<&Lease> = leases.iter().filter(|l| !l.finished).collect();
        let mut per_owner: BTreeMap<String, Vec<&Lease>> = BTreeMap::new();
        for lease in &open {
            if let Some(owner) = &lease.owner
                && !expired.contains(&lease.shard)
                && owner != &self.owner
            {
                per_owner.entry(owner.clone()).or_default().push(lease);
            }
        }
        let workers = per_owner.len() + 1;
        let target = open.len().div_ceil(workers);
        let mut candidates: Vec<&Lease> =
            open.iter().copied().filter(|l| l.owner.is_none() || expired.contains(&l.shard)).collect();
        if candidates.is_empty() && self.held.len() < target {
            // Steal one from the busiest worker.
            if let Some((_, theirs)) = per_owner.iter().max_by_key(|(_, v)| v.len()).filter(|(_, v)| v.len() > target) {
                candidates.extend(theirs.first().copied());
            }
        }
        for lease in candidates {
            if self.held.len() >= target {
                break;
            }
            let taken = self
                .update(
                    &lease.shard,
                    "SET #o = :me, #c = #c + :one",
                    "#c = :c",
                    vec![(":one", n(1)), (":me", s(&self.owner)), (":c", n(lease.counter))],
                )
                .await?;
            if let Some(c) = taken {
                tracing::info!(shard = %lease.shard, previous = ?lease.owner, "lease taken");
                self.held.insert(lease.shard.clone(), c);
                sync.gained.push(lease.shard.clone());
            }
        }
        sync.leases = leases;
        Ok(sync)
    }

    /// Writes a checkpoint (and `finished`) if this worker still holds the lease; `false` when
    /// it does not.
    ///
    /// # Errors
    /// The table cannot be written.
    pub async fn checkpoint(
        &mut self,
        shard: &str,
        sequence: Option<&str>,
        finished: bool,
    ) -> Result<bool, ComponentError> {
        let Some(&counter) = self.held.get(shard) else { return Ok(false) };
        let mut values = vec![(":me", s(&self.owner)), (":c", n(counter)), (":f", AttributeValue::Bool(finished))];
        let update = match sequence {
            Some(seq) => {
                values.push((":s", s(seq)));
                "SET #k = :s, #f = :f"
            }
            None => "SET #f = :f",
        };
        let ok = self.update(shard, update, "#o = :me AND #c = :c", values).await?.is_some();
        if !ok {
            tracing::warn!(shard, "lease lost; checkpoint not written");
            self.held.remove(shard);
        }
        Ok(ok)
    }

    /// Gives every held lease back.
    pub async fn release_all(&mut self) {
        let held = std::mem::take(&mut self.held);
        for (shard, counter) in held {
            let released = self
                .update(
                    &shard,
                    "REMOVE #o SET #c = #c + :one",
                    "#o = :me AND #c = :c",
                    vec![(":one", n(1)), (":me", s(&self.owner)), (":c", n(counter))],
                )
                .await;
            tracing::info!(shard = %shard, ok = matches!(released, Ok(Some(_))), "lease released");
        }
    }
}
