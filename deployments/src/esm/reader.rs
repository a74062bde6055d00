//! Reading one shard: gather a batch (batch size, batching window), deliver it, repeat; one batch
//! at a time per shard, in order, until the shard is read to its end (closed by a reshard) or
//! the emulator stops.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::Result;
use aws_sdk_kinesis::types::ShardIteratorType;
use tributary_aws::{describe, error_code};

use super::Shared;
use super::event::ShardRecord;
use super::shards::Start;

/// How a shard's reading ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ShardEnd {
    /// The shard is closed and every record in it was delivered (or discarded).
    Closed,
    /// The emulator is stopping (Ctrl-C, or idle with `--exit-when-idle-s`).
    Stopped,
}

/// Reads `shard` from `start`, invoking the function with each batch.
///
/// # Errors
/// GetShardIterator failed.
pub(super) async fn read_shard(shared: &Shared, shard: &str, start: Start) -> Result<ShardEnd> {
    let args = &shared.args;
    let mut last_read: Option<String> = None;
    let mut iterator = open_iterator(shared, shard, start, None).await?;
    let mut buffer: VecDeque<ShardRecord> = VecDeque::new();
    let mut idle_since = Instant::now();
    let batch_size = usize::from(args.batch_size);
    loop {
        if shared.stop.is_cancelled() {
            return Ok(ShardEnd::Stopped);
        }
        // Gather up to a batch, within the batching window.
        let window_started = Instant::now();
        while buffer.len() < batch_size
            && let Some(current) = iterator.clone()
        {
            let output = match shared.client.get_records().shard_iterator(current).send().await {
                Ok(output) => output,
                // Iterators expire after five minutes (a long retry of the previous batch):
                // carry on after the last record read.
                Err(e) if error_code(&e) == Some("ExpiredIteratorException") => {
                    tracing::info!(%shard, "shard iterator expired; getting a new one");
                    iterator = open_iterator(shared, shard, start, last_read.as_deref()).await?;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(%shard, error = %describe(&e), "GetRecords failed; retrying");
                    tokio::select! {
                        () = shared.stop.cancelled() => return Ok(ShardEnd::Stopped),
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            for r in output.records() {
                buffer.push_back(ShardRecord {
                    shard_id: shard.to_string(),
                    sequence_number: r.sequence_number().to_string(),
                    partition_key: r.partition_key().to_string(),
                    data: r.data().as_ref().to_vec(),
                    arrival_epoch_s: r.approximate_arrival_timestamp().map_or(0.0, |t| t.as_secs_f64()),
                });
            }
            if let Some(last) = output.records().last() {
                last_read = Some(last.sequence_number().to_string());
            }
            let caught_up = output.records().is_empty() && output.millis_behind_latest().unwrap_or(0) == 0;
            iterator = output.next_shard_iterator;
            if caught_up && window_started.elapsed() >= Duration::from_millis(args.batching_window_ms) {
                break;
            }
            if caught_up {
                // At most 5 GetRecords calls per second and shard.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        if buffer.is_empty() {
            if iterator.is_none() {
                tracing::info!(%shard, "shard read to its end (closed by a reshard)");
                return Ok(ShardEnd::Closed);
            }
            if let Some(limit) = args.exit_when_idle_s
                && idle_since.elapsed() >= Duration::from_secs(limit)
            {
                return Ok(ShardEnd::Stopped);
            }
            tokio::select! {
                () = shared.stop.cancelled() => return Ok(ShardEnd::Stopped),
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            continue;
        }
        let n = buffer.len().min(batch_size);
        let records: Vec<ShardRecord> = buffer.drain(..n).collect();
        super::process(shared, records).await;
        idle_since = Instant::now();
    }
}

/// A shard iterator at `start`, or just after `after` once records have been read.
async fn open_iterator(shared: &Shared, shard: &str, start: Start, after: Option<&str>) -> Result<Option<String>> {
    let request = shared.client.get_shard_iterator().stream_name(&shared.args.stream).shard_id(shard);
    let request = match (after, start) {
        (Some(sequence), _) => {
            request.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).starting_sequence_number(sequence)
        }
        (None, Start::TrimHorizon) => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        (None, Start::Latest) => request.shard_iterator_type(ShardIteratorType::Latest),
    };
    let output = request.send().await.map_err(|e| anyhow::anyhow!("GetShardIterator {shard}: {}", describe(&e)))?;
    Ok(output.shard_iterator)
}
