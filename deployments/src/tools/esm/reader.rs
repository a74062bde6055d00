//! Reading one shard: gather a batch (batch size, batching window), deliver it, repeat; one batch
//! at a time per shard, in order, until the shard is read to its end (closed by a reshard), is
//! gone (deleted or past retention), or the emulator stops. Kinesis errors are retried, as the
//! AWS event source mapping does; they never end the reader.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use tributary_aws::{IteratorAt, describe, error_code};

use super::event::{self, MAX_EVENT_BYTES, ShardRecord};
use super::{Activity, Shared, StartingPosition};

/// How a shard's reading ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ShardEnd {
    /// The shard is closed (or gone) and every record read from it was delivered or discarded.
    Closed,
    /// The emulator is stopping (Ctrl-C, or idle with `--exit-when-idle-s`).
    Stopped,
}

/// What a GetShardIterator attempt gave.
enum Opened {
    Iterator(Option<String>),
    /// The shard or the stream no longer exists.
    Gone,
    Stopped,
}

/// Whether a reader counts as busy for `--exit-when-idle-s`: from its start until it is caught
/// up with nothing left to deliver, and again while it reads, delivers or retries a failed call.
struct Busy<'a> {
    activity: &'a Activity,
    busy: bool,
}

impl<'a> Busy<'a> {
    /// Takes over the `begin` the caller made when it started the reader.
    fn adopt(activity: &'a Activity) -> Self {
        Busy { activity, busy: true }
    }

    fn set(&mut self, busy: bool) {
        if busy != self.busy {
            if busy {
                self.activity.begin();
            } else {
                self.activity.end();
            }
            self.busy = busy;
        }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.set(false);
    }
}

/// Reads `shard` from `start`, invoking the function with each batch. The caller counted the
/// reader as busy (`Activity::begin`) when it started it.
pub(super) async fn read_shard(shared: &Shared, shard: &str, start: StartingPosition) -> ShardEnd {
    let args = &shared.args;
    let mut busy = Busy::adopt(&shared.activity);
    let opened_at = SystemTime::now();
    let mut last_read: Option<String> = None;
    let first = match (start, args.starting_position_timestamp) {
        (StartingPosition::TrimHorizon, _) => IteratorAt::TrimHorizon,
        (StartingPosition::Latest, _) => IteratorAt::Latest,
        (StartingPosition::AtTimestamp, Some(at)) => IteratorAt::Timestamp(at),
        // Unreachable: clap requires the timestamp with `at-timestamp`. Read nothing rather than
        // everything.
        (StartingPosition::AtTimestamp, None) => IteratorAt::Latest,
    };
    // Where an iterator that expires before anything was read is renewed.
    let reopen = first.reopened(opened_at);
    let mut iterator = match open_iterator(shared, shard, first).await {
        Opened::Iterator(iterator) => iterator,
        Opened::Gone => return ShardEnd::Closed,
        Opened::Stopped => return ShardEnd::Stopped,
    };
    // Records read and not yet delivered, each with its entry's size in the event.
    let mut buffer: VecDeque<(ShardRecord, usize)> = VecDeque::new();
    let mut buffered_bytes = 0;
    // When the oldest record in the buffer was read: the batching window runs from there.
    let mut first_buffered: Option<Instant> = None;
    let window = Duration::from_millis(args.batching_window_ms);
    let batch_size = usize::from(args.batch_size);
    loop {
        if shared.stop.is_cancelled() {
            return ShardEnd::Stopped;
        }
        // Gather up to a batch (or 6 MB of event), for at most the batching window from the
        // first record read.
        while buffer.len() < batch_size
            && buffered_bytes < MAX_EVENT_BYTES
            && let Some(current) = iterator.clone()
        {
            let output = match shared.client.get_records().shard_iterator(current).send().await {
                Ok(output) => output,
                Err(e) => {
                    busy.set(true);
                    match error_code(&e) {
                        // Iterators expire after five minutes (a long retry of the previous batch):
                        // carry on after the last record read.
                        Some("ExpiredIteratorException") => {
                            tracing::info!(%shard, "shard iterator expired; getting a new one");
                            let position = last_read.as_deref().map_or(reopen, IteratorAt::After);
                            match open_iterator(shared, shard, position).await {
                                Opened::Iterator(renewed) => iterator = renewed,
                                Opened::Gone => iterator = None,
                                Opened::Stopped => return ShardEnd::Stopped,
                            }
                            continue;
                        }
                        Some("ResourceNotFoundException") => {
                            tracing::warn!(%shard, error = %describe(&e), "shard gone; delivering what was read");
                            iterator = None;
                            break;
                        }
                        _ => {
                            tracing::warn!(%shard, error = %describe(&e), "GetRecords failed; retrying");
                            if pause(shared, Duration::from_secs(1)).await.is_err() {
                                return ShardEnd::Stopped;
                            }
                            continue;
                        }
                    }
                }
            };
            for r in output.records() {
                let record = ShardRecord {
                    shard_id: shard.to_string(),
                    sequence_number: r.sequence_number().to_string(),
                    partition_key: r.partition_key().to_string(),
                    data: r.data().as_ref().to_vec(),
                    arrival_epoch_s: r.approximate_arrival_timestamp().map_or(0.0, |t| t.as_secs_f64()),
                };
                let size = event::entry_bytes(&shared.stream, &record);
                buffered_bytes += size;
                buffer.push_back((record, size));
            }
            if let Some(last) = output.records().last() {
                last_read = Some(last.sequence_number().to_string());
                first_buffered.get_or_insert_with(Instant::now);
            }
            let caught_up = output.records().is_empty() && output.millis_behind_latest().unwrap_or(0) == 0;
            busy.set(!(caught_up && buffer.is_empty()));
            iterator = output.next_shard_iterator;
            // Invoke once caught up, after the window if there is one; a backlog fills the batch,
            // unless a window is set and has run out.
            let window_over = first_buffered.is_some_and(|first| first.elapsed() >= window);
            if (caught_up && (first_buffered.is_none() || window_over)) || (!window.is_zero() && window_over) {
                break;
            }
            if caught_up {
                // At most 5 GetRecords calls per second and shard.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        if buffer.is_empty() {
            if iterator.is_none() {
                tracing::info!(%shard, "shard read to its end");
                return ShardEnd::Closed;
            }
            if pause(shared, Duration::from_millis(250)).await.is_err() {
                return ShardEnd::Stopped;
            }
            continue;
        }
        let n = event::fitting(buffer.iter().map(|(_, size)| *size), batch_size);
        let records: Vec<ShardRecord> = buffer
            .drain(..n)
            .map(|(record, size)| {
                buffered_bytes -= size;
                record
            })
            .collect();
        if buffer.is_empty() {
            first_buffered = None;
        }
        super::process(shared, records).await;
    }
}

/// Sleeps for `duration`; `Err` when the emulator stops meanwhile.
async fn pause(shared: &Shared, duration: Duration) -> Result<(), ()> {
    tokio::select! {
        () = shared.stop.cancelled() => Err(()),
        () = tokio::time::sleep(duration) => Ok(()),
    }
}

/// A shard iterator at `position`, retrying failed calls every second (a missing shard or stream
/// is `Gone`).
async fn open_iterator(shared: &Shared, shard: &str, at: IteratorAt<'_>) -> Opened {
    loop {
        match tributary_aws::shard_iterator(&shared.client, &shared.args.stream, shard, at).await {
            Ok(iterator) => return Opened::Iterator(iterator),
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => {
                tracing::warn!(%shard, error = %describe(&e), "shard gone");
                return Opened::Gone;
            }
            Err(e) => {
                tracing::warn!(%shard, error = %describe(&e), "GetShardIterator failed; retrying");
                if pause(shared, Duration::from_secs(1)).await.is_err() {
                    return Opened::Stopped;
                }
            }
        }
    }
}
