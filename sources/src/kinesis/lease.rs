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
//!
//! Leases are also renewed by their own task (as the Kinesis Client Library's renewer), every
//! third of `lease_duration_ms`, whatever the pipeline is doing: a batch slower than the lease
//! duration (a slow model, a sink in backoff) keeps its leases. Conditional writes (renewals,
//! checkpoints, take-overs, releases) take turns, so none of them sees a counter the other
//! just moved.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
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
    /// Leases this worker holds, with the counter it last wrote (shared with the renewer).
    held: Held,
    /// Held while a conditional write sequence runs (see the module).
    writes: Arc<tokio::sync::Mutex<()>>,
    /// Leases the renewer found lost since the last sync.
    lost_by_renewer: Arc<Mutex<Vec<String>>>,
    /// Last counter seen on each lease, and when it was first seen.
    seen: HashMap<String, (i64, Instant)>,
    /// The renewer task, stopped with the table.
    renewer: tokio::task::AbortHandle,
}

type Held = Arc<Mutex<BTreeMap<String, i64>>>;

impl Drop for LeaseTable {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
        let held = Held::default();
        let writes = Arc::new(tokio::sync::Mutex::new(()));
        let lost_by_renewer: Arc<Mutex<Vec<String>>> = Arc::default();
        let renewer = {
            let (client, table, owner) = (client.clone(), table.to_string(), owner.to_string());
            let (held, writes, lost) = (held.clone(), Arc::clone(&writes), lost_by_renewer.clone());
            let every = duration / 3;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let _turn = writes.lock().await;
                    match renew(&client, &table, &owner, &held).await {
                        Ok(gone) => lock(&lost).extend(gone),
                        Err(e) => tracing::warn!(table = %table, "renewing leases: {e}"),
                    }
                }
            })
            .abort_handle()
        };
        Ok(LeaseTable {
            client,
            table: table.to_string(),
            owner: owner.to_string(),
            duration,
            held,
            writes,
            lost_by_renewer,
            seen: HashMap::new(),
            renewer,
        })
    }

    /// Shards this worker holds.
    pub fn held(&self) -> BTreeSet<String> {
        lock(&self.held).keys().cloned().collect()
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

    /// Conditional update of one of this table's leases (see [`update`]).
    async fn update(
        &self,
        shard: &str,
        update_expression: &str,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<Option<i64>, ComponentError> {
        update(&self.client, &self.table, shard, update_expression, condition, values).await
    }

    /// Renews, creates missing leases for `shards` (id -> parents), takes and steals.
    ///
    /// # Errors
    /// The table cannot be read or written (retried by the caller).
    pub async fn sync(&mut self, shards: &BTreeMap<String, Vec<String>>) -> Result<Sync, ComponentError> {
        let mut sync = Sync::default();
        let writes = Arc::clone(&self.writes);
        let _turn = writes.lock().await;
        // Renew what we hold (the renewer does too, between syncs).
        sync.lost = std::mem::take(&mut *lock(&self.lost_by_renewer));
        sync.lost.extend(renew(&self.client, &self.table, &self.owner, &self.held).await?);
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
        let holding = lock(&self.held).len();
        if candidates.is_empty() && holding < target {
            // Steal one from the busiest worker.
            if let Some((_, theirs)) = per_owner.iter().max_by_key(|(_, v)| v.len()).filter(|(_, v)| v.len() > target) {
                candidates.extend(theirs.first().copied());
            }
        }
        for lease in candidates {
            if lock(&self.held).len() >= target {
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
                lock(&self.held).insert(lease.shard.clone(), c);
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
        let writes = Arc::clone(&self.writes);
        let _turn = writes.lock().await;
        let Some(counter) = lock(&self.held).get(shard).copied() else { return Ok(false) };
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
            lock(&self.held).remove(shard);
        }
        Ok(ok)
    }

    /// Gives every held lease back.
    pub async fn release_all(&mut self) {
        let writes = Arc::clone(&self.writes);
        let _turn = writes.lock().await;
        let held = std::mem::take(&mut *lock(&self.held));
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

/// Conditional update; `Ok(Some(counter))` on success, `Ok(None)` when the condition failed.
async fn update(
    client: &Client,
    table: &str,
    shard: &str,
    update: &str,
    condition: &str,
    values: Vec<(&str, AttributeValue)>,
) -> Result<Option<i64>, ComponentError> {
    let mut request = client
        .update_item()
        .table_name(table)
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

/// Renews every lease in `held` (bumps its counter if this worker still owns it); returns the
/// shards found lost, which leave `held`. The caller holds the write turn.
async fn renew(client: &Client, table: &str, owner: &str, held: &Held) -> Result<Vec<String>, ComponentError> {
    let snapshot: Vec<(String, i64)> = lock(held).iter().map(|(k, v)| (k.clone(), *v)).collect();
    let mut lost = Vec::new();
    for (shard, counter) in snapshot {
        let renewed = update(
            client,
            table,
            &shard,
            "SET #c = #c + :one",
            "#o = :me AND #c = :c",
            vec![(":one", n(1)), (":me", s(owner)), (":c", n(counter))],
        )
        .await?;
        match renewed {
            Some(c) => {
                if let Some(at) = lock(held).get_mut(&shard) {
                    *at = c;
                }
            }
            None => {
                tracing::warn!(shard = %shard, "lease lost to another worker");
                lock(held).remove(&shard);
                lost.push(shard);
            }
        }
    }
    Ok(lost)
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};

    use super::*;

    /// A new lease table on the local DynamoDB (moto).
    async fn table() -> String {
        if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
            panic!(
                "AWS_ENDPOINT_URL is not set: start moto with `cargo xtask services up` and export the \
                 variables it prints (`cargo xtask test` does both)"
            );
        }
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let table = format!("leases-renewer-{}-{nanos}", std::process::id());
        let schema = KeySchemaElement::builder().attribute_name("leaseKey").key_type(KeyType::Hash).build();
        let attribute =
            AttributeDefinition::builder().attribute_name("leaseKey").attribute_type(ScalarAttributeType::S).build();
        tributary_aws::dynamodb_client()
            .await
            .create_table()
            .table_name(&table)
            .key_schema(schema.unwrap_or_else(|e| panic!("{e}")))
            .attribute_definitions(attribute.unwrap_or_else(|e| panic!("{e}")))
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateTable on moto: {e}"));
        table
    }

    /// Regression (issue 19): leases were renewed only when the source read its next batch, so a
    /// batch slower than the lease duration let other workers take every lease (duplicates and
    /// churn). The renewer keeps them; a worker that stops (is dropped: killed) loses them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leases_are_kept_through_a_batch_slower_than_the_lease_duration() {
        let table = table().await;
        let duration = Duration::from_millis(900);
        let shards = BTreeMap::from([("shardId-0".to_string(), Vec::new())]);
        let mut busy = LeaseTable::open(&table, "busy", duration).await.unwrap_or_else(|e| panic!("{e}"));
        busy.sync(&shards).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(busy.held().len(), 1);
        let mut other = LeaseTable::open(&table, "other", duration).await.unwrap_or_else(|e| panic!("{e}"));
        other.sync(&shards).await.unwrap_or_else(|e| panic!("{e}"));
        // The busy worker does not sync for three lease durations (a slow batch).
        tokio::time::sleep(duration * 3).await;
        let sync = other.sync(&shards).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(sync.gained.is_empty(), "a lease was taken from a live, busy worker: {sync:?}");
        assert_eq!(busy.held().len(), 1);
        // A worker that is gone stops renewing: its lease is taken once it expires.
        drop(busy);
        tokio::time::sleep(duration / 2).await;
        other.sync(&shards).await.unwrap_or_else(|e| panic!("{e}"));
        tokio::time::sleep(duration * 2).await;
        let sync = other.sync(&shards).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sync.gained, vec!["shardId-0".to_string()]);
    }
}
