//! `tributary put` and `tributary tail` on Kinesis: what the seeds did with
//! `aws kinesis put-record`, `get-shard-iterator`, `get-records`, `jq` and `base64 --decode`, as
//! two commands.
//!
//! ```text
//! tributary put --stream ride_events '{"ride": {...}, "ride_id": 156}'
//! cat rides.jsonl | tributary put --stream ride_events
//! tributary tail --stream ride_predictions            # from TRIM_HORIZON, until caught up
//! tributary tail --stream ride_predictions --from latest --follow
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Result, bail};
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, PutRecordsResultEntry};
use serde_json::json;
use tributary_aws::{IteratorAt, describe, error_code, kinesis_client as client};
use tributary_sinks::kinesis::{refusal, within_call_limits};

use super::{From, Message, TailArgs, data_value, print_line};

/// Puts `messages` on Kinesis stream `stream` (`tributary put` without `--brokers`).
///
/// # Errors
/// A missing stream, or records still failing after retries.
pub async fn put(stream: &str, messages: Vec<Message>) -> Result<()> {
    // Every entry is checked before anything is sent, then they go in calls within PutRecords'
    // limits.
    let entries = messages
        .into_iter()
        .enumerate()
        .map(|(position, message)| {
            let key = message.key.unwrap_or_else(|| position.to_string());
            if let Some(reason) = refusal(message.data.len(), &key) {
                bail!("input {position}: {reason}");
            }
            let size = message.data.len() + key.len();
            let entry = PutRecordsRequestEntry::builder().data(Blob::new(message.data)).partition_key(key).build()?;
            Ok(((position, entry), size))
        })
        .collect::<Result<Vec<_>>>()?;
    let client = client().await;
    let mut put = 0;
    for call in within_call_limits(entries) {
        let mut pending = call;
        for attempt in 1..=5 {
            let output = client
                .put_records()
                .stream_name(stream)
                .set_records(Some(pending.iter().map(|(_, e)| e.clone()).collect()))
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("PutRecords to {stream}: {}", describe(&e)))?;
            let mut retry = Vec::new();
            for ((position, entry), result) in with_results(pending, output.records()) {
                let Some(result) = result else {
                    tracing::warn!(position, attempt, "record missing from the PutRecords answer; retrying");
                    retry.push((position, entry));
                    continue;
                };
                match result.error_code() {
                    None => {
                        put += 1;
                        println!(
                            "{}",
                            json!({"ShardId": result.shard_id(), "SequenceNumber": result.sequence_number(), "input": position})
                        );
                    }
                    Some(code) => {
                        tracing::warn!(position, code, attempt, "record not put; retrying");
                        retry.push((position, entry));
                    }
                }
            }
            pending = retry;
            if pending.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        if !pending.is_empty() {
            bail!("{} record(s) still failing after 5 attempts", pending.len());
        }
    }
    eprintln!("put {put} record(s) to {stream}");
    Ok(())
}

/// Each entry of a PutRecords call with its result, `None` for entries the answer has no result
/// for (a short answer must not drop them: they are retried).
fn with_results<T>(
    pending: Vec<T>,
    results: &[PutRecordsResultEntry],
) -> impl Iterator<Item = (T, Option<&PutRecordsResultEntry>)> {
    pending.into_iter().enumerate().map(move |(i, entry)| (entry, results.get(i)))
}

/// Prints a Kinesis stream's records (`tributary tail` without `--brokers`).
///
/// # Errors
/// A missing stream or an API error.
pub async fn tail(args: TailArgs) -> Result<()> {
    let client = client().await;
    let start = match args.from {
        From::TrimHorizon => IteratorAt::TrimHorizon,
        From::Latest => IteratorAt::Latest,
    };
    let mut shards: BTreeMap<String, TailShard> = BTreeMap::new();
    for shard in list_shards(&client, &args.stream).await? {
        let reopen = start.reopened(SystemTime::now());
        let iterator = shard_iterator(&client, &args.stream, &shard, start).await?;
        shards.insert(shard, TailShard { iterator, reopen, last: None });
    }
    // While following, shards made by a reshard are found by listing again: every 10 s, and as
    // soon as a shard is read to its end. They are read from their beginning.
    let mut next_listing = Instant::now() + SHARD_LISTING_INTERVAL;
    loop {
        let mut caught_up = true;
        for (id, shard) in &mut shards {
            let Some(current) = shard.iterator.clone() else { continue };
            let output = match client.get_records().shard_iterator(current).send().await {
                Ok(output) => output,
                Err(e) => {
                    let message = format!("GetRecords {}/{id}: {}", args.stream, describe(&e));
                    match error_code(&e) {
                        // Expired (output blocked for minutes, e.g. in a pager): carry on after
                        // the last record printed.
                        Some("ExpiredIteratorException") => {
                            let at = shard.last.as_deref().map_or(shard.reopen, IteratorAt::After);
                            match shard_iterator(&client, &args.stream, id, at).await {
                                Ok(renewed) => shard.iterator = renewed,
                                Err(e) if args.follow => tracing::warn!(error = %e, "trying again"),
                                Err(e) => return Err(e),
                            }
                        }
                        Some("ResourceNotFoundException") => {
                            tracing::warn!("{message}; the shard is gone");
                            shard.iterator = None;
                        }
                        // While following, a failed call is tried again on the next round.
                        _ if args.follow => tracing::warn!("{message}; trying again"),
                        _ => bail!(message),
                    }
                    continue;
                }
            };
            for record in output.records() {
                let value = data_value(record.data().as_ref());
                let line = if args.metadata {
                    json!({"shard": id, "sequence_number": record.sequence_number(),
                           "partition_key": record.partition_key(), "data": value})
                } else {
                    value
                };
                if print_line(&line).is_err() {
                    // The reader went away (`| head`): stop quietly.
                    return Ok(());
                }
                shard.last = Some(record.sequence_number().to_string());
            }
            if !output.records().is_empty() || output.millis_behind_latest().unwrap_or(0) > 0 {
                caught_up = false;
            }
            shard.iterator = output.next_shard_iterator;
            if shard.iterator.is_none() {
                next_listing = Instant::now();
            }
        }
        if args.follow && Instant::now() >= next_listing {
            match tributary_aws::list_shards(&client, &args.stream).await {
                Ok(listed) => {
                    for id in listed.iter().map(|s| s.shard_id().to_string()) {
                        if let std::collections::btree_map::Entry::Vacant(slot) = shards.entry(id) {
                            let reopen = IteratorAt::TrimHorizon;
                            match shard_iterator(&client, &args.stream, slot.key(), reopen).await {
                                Ok(iterator) => {
                                    slot.insert(TailShard { iterator, reopen, last: None });
                                    caught_up = false;
                                }
                                // Not added: tried again at the next listing.
                                Err(e) => tracing::warn!(error = %e, "trying again later"),
                            }
                        }
                    }
                }
                Err(e) if error_code(&e) == Some("ResourceNotFoundException") => {
                    bail!("stream {} is gone ({})", args.stream, describe(&e))
                }
                Err(e) => tracing::warn!(error = %describe(&e), "listing shards failed; trying again later"),
            }
            next_listing = Instant::now() + SHARD_LISTING_INTERVAL;
        }
        if shards.values().all(|s| s.iterator.is_none()) || (caught_up && !args.follow) {
            return Ok(());
        }
        if caught_up {
            // Stay inside the 5 GetRecords calls per second and shard.
            tokio::time::sleep(Duration::from_millis(1000)).await;
        }
    }
}

/// One shard `tail` reads.
struct TailShard {
    /// `None` once the shard is read to its end.
    iterator: Option<String>,
    /// Where an expired iterator is renewed when nothing has been printed from the shard yet.
    reopen: IteratorAt<'static>,
    /// The sequence number of the last record printed.
    last: Option<String>,
}

/// How often `tail --follow` lists the shards again.
const SHARD_LISTING_INTERVAL: Duration = Duration::from_secs(10);

async fn shard_iterator(client: &Client, stream: &str, shard: &str, at: IteratorAt<'_>) -> Result<Option<String>> {
    tributary_aws::shard_iterator(client, stream, shard, at)
        .await
        .map_err(|e| anyhow::anyhow!("GetShardIterator {stream}/{shard}: {}", describe(&e)))
}

async fn list_shards(client: &Client, stream: &str) -> Result<Vec<String>> {
    let shards = tributary_aws::list_shards(client, stream)
        .await
        .map_err(|e| anyhow::anyhow!("ListShards {stream}: {}", describe(&e)))?;
    Ok(shards.iter().map(|s| s.shard_id().to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: `put` zipped the entries with the answer's results, so entries past a short
    /// PutRecords answer were neither counted nor retried, and dropped without a word (issue 19).
    #[test]
    fn put_retries_entries_missing_from_a_short_put_records_answer() {
        let results = vec![PutRecordsResultEntry::builder().shard_id("shardId-0").sequence_number("1").build()];
        let paired: Vec<(u32, bool)> =
            with_results(vec![10, 11, 12], &results).map(|(e, r)| (e, r.is_some())).collect();
        assert_eq!(paired, vec![(10, true), (11, false), (12, false)]);
    }
}
