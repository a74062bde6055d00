//! `tributary esm`: a local Kinesis event source mapping. It polls a Kinesis stream and invokes
//! a function through a Lambda runtime emulator (`cargo lambda watch`) with Kinesis events, as
//! the AWS event source mapping does: batch size and batching window, starting position,
//! retries, bisect on function error, maximum record age, partial batch responses
//! (`ReportBatchItemFailures`), one batch at a time per shard, in order.
//!
//! Shards are listed again every `--discovery-interval-ms` and whenever a shard is read to its
//! end, and the children of a reshard are read only after their parents ([`shards`]).
//! Positions are kept in memory (a restarted emulator starts again from `--starting-position`).

pub mod batch;
pub mod event;
pub mod invoke;
mod reader;
pub mod shards;

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::DateTime;
use clap::{Args, ValueEnum};
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tributary_aws::{describe, error_code, kinesis_client as client};

use batch::{Answer, Next};
use event::{Discarded, ShardRecord, StreamInfo, kinesis_event};
use invoke::Invoker;
use reader::ShardEnd;
use shards::{Listed, ShardTable};

/// Where a shard is first read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StartingPosition {
    /// The oldest record in the shard.
    TrimHorizon,
    /// Records put after the emulator starts.
    Latest,
    /// Records put at or after `--starting-position-timestamp`.
    AtTimestamp,
}

/// A `--starting-position-timestamp`: seconds since the epoch (`1750925642.5`) or an RFC 3339
/// date-time (`2026-11-22T09:00:00Z`), as the AWS CLI takes it.
fn parse_timestamp(text: &str) -> Result<DateTime, String> {
    if let Ok(seconds) = text.parse::<f64>() {
        return if seconds.is_finite() && seconds >= 0.0 {
            Ok(DateTime::from_secs_f64(seconds))
        } else {
            Err("must be a time after 1970".into())
        };
    }
    DateTime::from_str(text, aws_sdk_kinesis::primitives::DateTimeFormat::DateTimeWithOffset)
        .map_err(|e| format!("neither seconds since the epoch nor an RFC 3339 date-time ({e})"))
}

/// `tributary esm`.
#[derive(Clone, Debug, Args)]
pub struct EsmArgs {
    /// The Kinesis stream to read.
    #[arg(long)]
    pub stream: String,
    /// The function's invoke URL, e.g. http://127.0.0.1:9000/2015-03-31/functions/tributary-lambda/invocations
    #[arg(long)]
    pub function: String,
    /// Most records per invocation (BatchSize). As on AWS, an event also stops short of 6 MB,
    /// Lambda's payload limit.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=10000))]
    pub batch_size: u16,
    /// How long to gather records before invoking with fewer than --batch-size, in milliseconds,
    /// counted from the first record read (MaximumBatchingWindowInSeconds).
    #[arg(long, default_value_t = 0)]
    pub batching_window_ms: u64,
    /// Where to start reading each shard (StartingPosition). Shards made by a reshard after the
    /// start are read from their beginning.
    #[arg(long, value_enum, default_value_t = StartingPosition::TrimHorizon)]
    pub starting_position: StartingPosition,
    /// The time `--starting-position at-timestamp` starts at (StartingPositionTimestamp): seconds
    /// since the epoch or an RFC 3339 date-time.
    #[arg(long, value_parser = parse_timestamp, required_if_eq("starting_position", "at-timestamp"))]
    pub starting_position_timestamp: Option<DateTime>,
    /// Retries of a failed batch before it is discarded to the on-failure destination; -1 retries
    /// until `--maximum-record-age-s` (the emulator does not apply the stream's retention), or
    /// for ever without it (MaximumRetryAttempts).
    #[arg(long, default_value_t = 3, allow_negative_numbers = true)]
    pub maximum_retry_attempts: i64,
    /// Discard records older than this many seconds; -1 keeps them (MaximumRecordAgeInSeconds).
    /// It is also what ends the resending of a batch while cargo-lambda's emulator cannot be
    /// reached.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub maximum_record_age_s: i64,
    /// Split a batch in two and retry each half when the function errors, down to single records
    /// (BisectBatchOnFunctionError). As on AWS, a split does not count as a retry.
    #[arg(long)]
    pub bisect_batch_on_function_error: bool,
    /// Ignore `batchItemFailures` in responses (FunctionResponseTypes without ReportBatchItemFailures).
    #[arg(long)]
    pub no_report_batch_item_failures: bool,
    /// Append the invocation record of each batch given up on to this file (one JSON line each,
    /// as an SQS or SNS on-failure destination receives them); without it they are logged.
    #[arg(long)]
    pub on_failure: Option<std::path::PathBuf>,
    /// Pause before the first retry of a failed batch, in milliseconds; it doubles with each retry,
    /// up to 32 times this or 10 s, whichever is less.
    #[arg(long, default_value_t = 500)]
    pub retry_backoff_ms: u64,
    /// Exit once every shard has been caught up, with everything read delivered, for this many
    /// seconds (for scripts and tests). A batch being resent to an emulator that cannot be reached
    /// is not delivered: without --maximum-record-age-s, esm then waits for the emulator.
    #[arg(long)]
    pub exit_when_idle_s: Option<u64>,
    /// How long an invocation may take before it counts as a function error, in seconds (the
    /// function's Timeout; the default is Lambda's maximum). The emulator does not stop the
    /// function: what a timed-out invocation still writes lands, and its retry queues behind it.
    #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..))]
    pub function_timeout_s: u64,
    /// How often shards are listed again to find the children of a reshard, in milliseconds
    /// (they are also listed whenever a shard is read to its end).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub discovery_interval_ms: u64,
}

/// What every shard reader uses.
struct Shared {
    args: EsmArgs,
    client: Client,
    invoker: Invoker,
    stream: StreamInfo,
    on_failure: Mutex<Option<std::fs::File>>,
    stop: CancellationToken,
    activity: Activity,
}

/// How many shard readers are busy (starting, reading a backlog, delivering or retrying), and
/// when the last one became idle (caught up, everything delivered), for `--exit-when-idle-s`.
struct Activity(std::sync::Mutex<(usize, Instant)>);

impl Activity {
    fn new() -> Self {
        Activity(std::sync::Mutex::new((0, Instant::now())))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, (usize, Instant)> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A reader became busy.
    fn begin(&self) {
        self.state().0 += 1;
    }

    /// A reader became idle.
    fn end(&self) {
        let mut state = self.state();
        state.0 = state.0.saturating_sub(1);
        state.1 = Instant::now();
    }

    /// How long no reader has been busy.
    fn idle_for(&self) -> Duration {
        let state = self.state();
        if state.0 > 0 { Duration::ZERO } else { state.1.elapsed() }
    }
}

/// Runs the emulator until Ctrl-C (or idle, with `--exit-when-idle-s`).
///
/// # Errors
/// A missing stream, an unusable URL, or an unwritable `--on-failure` file.
pub async fn run(args: EsmArgs) -> Result<()> {
    check_starting_position(&args, SystemTime::now())?;
    let client = client().await;
    let summary = client
        .describe_stream_summary()
        .stream_name(&args.stream)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("stream {}: {}", args.stream, describe(&e)))?;
    let summary = summary.stream_description_summary().context("no stream description")?;
    let arn = summary.stream_arn().to_string();
    let region = arn.split(':').nth(3).unwrap_or("us-east-1").to_string();
    let on_failure = match &args.on_failure {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?,
        ),
        None => None,
    };
    let invoker = Invoker::new(&args.function, !args.no_report_batch_item_failures)?
        .with_timeout(Duration::from_secs(args.function_timeout_s));
    let stop = CancellationToken::new();
    let shared = Arc::new(Shared {
        args,
        client,
        invoker,
        stream: StreamInfo { arn, region },
        on_failure: Mutex::new(on_failure),
        stop: stop.clone(),
        activity: Activity::new(),
    });
    let ctrl_c = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            ctrl_c.cancel();
        }
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("esm: second Ctrl-C, exiting now");
            std::process::exit(130);
        }
    });
    read_shards(shared).await
}

/// A timestamp only with `at-timestamp`, and not in the future: as CreateEventSourceMapping,
/// which refuses both (and GetShardIterator would refuse a future one on every try).
fn check_starting_position(args: &EsmArgs, now: SystemTime) -> Result<()> {
    match (args.starting_position, args.starting_position_timestamp) {
        (StartingPosition::AtTimestamp, Some(at)) if at > DateTime::from(now) => {
            anyhow::bail!("--starting-position-timestamp {at} is in the future")
        }
        (StartingPosition::AtTimestamp, _) | (_, None) => Ok(()),
        (position, Some(_)) => {
            anyhow::bail!("--starting-position-timestamp goes with --starting-position at-timestamp, not {position:?}")
        }
    }
}

/// Lists the shards, starts a reader for each shard that may start, and lists again every
/// `--discovery-interval-ms` and whenever a shard is read to its end. Returns on Ctrl-C once the
/// readers have stopped, or with `--exit-when-idle-s` once every reader has been caught up for that
/// long (or no shard is left to read) and the shards have been listed since the last one ended.
async fn read_shards(shared: Arc<Shared>) -> Result<()> {
    let args = &shared.args;
    let interval = Duration::from_millis(args.discovery_interval_ms);
    let idle_limit = args.exit_when_idle_s.map(Duration::from_secs);
    let mut table = ShardTable::default();
    let mut readers: JoinSet<(String, ShardEnd)> = JoinSet::new();
    let mut next_listing = Instant::now();
    // A shard ended and its children may not have been listed yet.
    let mut listing_stale = false;
    loop {
        if shared.stop.is_cancelled() {
            while let Some(joined) = readers.join_next().await {
                joined.context("shard reader")?;
            }
            return Ok(());
        }
        if Instant::now() >= next_listing {
            match list(&shared).await {
                Ok(listed) => {
                    let first = table.is_empty();
                    let added = table.add(listed, args.starting_position);
                    if first {
                        eprintln!("esm: {added} shard(s) of {} -> {}", args.stream, args.function);
                    } else if added > 0 {
                        tracing::info!(added, "new shards found (a reshard)");
                    }
                    listing_stale = false;
                    next_listing = Instant::now() + interval;
                }
                Err(ListError::Gone(e)) => {
                    // The stream was deleted: stop the readers, then fail.
                    shared.stop.cancel();
                    while readers.join_next().await.is_some() {}
                    return Err(e);
                }
                Err(ListError::Failed(e)) if table.is_empty() => return Err(e),
                Err(ListError::Failed(e)) => {
                    tracing::warn!(error = %e, "listing shards failed; trying again");
                    next_listing = Instant::now() + interval.min(Duration::from_secs(1));
                }
            }
        }
        for (shard, start) in table.start_ready() {
            tracing::info!(%shard, ?start, "reading shard");
            // Busy from now until the reader is caught up (it takes this over).
            shared.activity.begin();
            let shared = shared.clone();
            readers.spawn(async move {
                let end = reader::read_shard(&shared, &shard, start).await;
                (shard, end)
            });
        }
        if let Some(limit) = idle_limit
            && !listing_stale
            && (readers.is_empty() || shared.activity.idle_for() >= limit)
        {
            shared.stop.cancel();
            continue;
        }
        tokio::select! {
            Some(joined) = readers.join_next() => {
                let (shard, end) = joined.context("shard reader")?;
                let closed = end == ShardEnd::Closed;
                table.ended(&shard, closed);
                if closed {
                    listing_stale = true;
                    next_listing = Instant::now(); // its children are listed by now
                }
            }
            () = tokio::time::sleep_until(next_listing.into()) => {}
            () = tokio::time::sleep(Duration::from_millis(250)), if idle_limit.is_some() => {}
            () = shared.stop.cancelled() => {}
        }
    }
}

/// Why the shards could not be listed.
enum ListError {
    /// The stream does not exist (any more).
    Gone(anyhow::Error),
    /// Anything else: tried again later.
    Failed(anyhow::Error),
}

/// Every shard of the stream, as the table takes them.
async fn list(shared: &Shared) -> Result<Vec<Listed>, ListError> {
    let stream = &shared.args.stream;
    let shards = tributary_aws::list_shards(&shared.client, stream).await.map_err(|e| {
        let error = anyhow::anyhow!("ListShards {stream}: {}", describe(&e));
        match error_code(&e) {
            Some("ResourceNotFoundException") => ListError::Gone(anyhow::anyhow!("stream {stream} is gone ({error})")),
            _ => ListError::Failed(error),
        }
    })?;
    Ok(shards
        .iter()
        .map(|s| Listed {
            id: s.shard_id().to_string(),
            parents: tributary_aws::shard_parents(s),
            closed: tributary_aws::shard_is_closed(s),
        })
        .collect())
}

/// Delivers one batch: invoke, then retry, bisect or discard as the answers say.
async fn process(shared: &Shared, records: Vec<ShardRecord>) {
    let args = &shared.args;
    // Each part of the batch still to deliver: its records, the retries it has used, how many
    // invocations its records were in (those of larger batches before a split included), and
    // the last answer.
    let mut queue: VecDeque<(Vec<ShardRecord>, i64, i64, Option<Answer>)> = VecDeque::from([(records, 0, 0, None)]);
    while let Some((mut batch, retries, sent, last_answer)) = queue.pop_front() {
        if args.maximum_record_age_s >= 0 {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
            let (expired, fresh): (Vec<_>, Vec<_>) =
                batch.into_iter().partition(|r| now - r.arrival_epoch_s > args.maximum_record_age_s as f64);
            discard(shared, &expired, Discarded::RecordAgeExceeded, sent, last_answer.as_ref()).await;
            batch = fresh;
            if batch.is_empty() {
                continue;
            }
        }
        // On Ctrl-C the invocation is abandoned: positions are only kept in memory anyway.
        let event = kinesis_event(&shared.stream, &batch);
        tracing::info!(records = batch.len(), first = %batch[0].sequence_number, "invoking the function");
        let answer = tokio::select! {
            answer = shared.invoker.invoke(&event) => answer,
            () = shared.stop.cancelled() => return,
        };
        let sent = sent + 1;
        let sequences: Vec<String> = batch.iter().map(|r| r.sequence_number.clone()).collect();
        let from = match batch::next(&sequences, &answer, args.bisect_batch_on_function_error) {
            Next::Done => continue,
            Next::Bisect => {
                // As on AWS, splitting a batch does not count as a retry.
                tracing::warn!(records = batch.len(), ?answer, "function error; bisecting the batch");
                let second = batch.split_off(batch.len() / 2);
                queue.push_front((second, retries, sent, Some(answer.clone())));
                queue.push_front((batch, retries, sent, Some(answer)));
                continue;
            }
            Next::Resend => {
                // The function was not reached (cargo-lambda's emulator is down or restarting): as
                // AWS does, send again until the records are too old. Not a retry, nor an invocation.
                tracing::warn!(records = batch.len(), ?answer, "cannot invoke the function; trying again in 1 s");
                tokio::select! {
                    () = shared.stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                queue.push_front((batch, retries, sent - 1, last_answer));
                continue;
            }
            Next::RetryFrom(from) => from,
        };
        let failed = batch.split_off(from);
        if let Answer::FunctionError(reason) = &answer {
            tracing::warn!(records = failed.len(), %reason, "invocation failed");
        }
        if args.maximum_retry_attempts >= 0 && retries >= args.maximum_retry_attempts {
            discard(shared, &failed, Discarded::RetryAttemptsExhausted, sent, Some(&answer)).await;
            continue;
        }
        let pause = Duration::from_millis(args.retry_backoff_ms.saturating_mul(1 << retries.clamp(0, 5)))
            .min(Duration::from_secs(10));
        tracing::warn!(records = failed.len(), retry = retries + 1, ?pause, "retrying from the first failed record");
        tokio::select! {
            () = shared.stop.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        queue.push_front((failed, retries + 1, sent, Some(answer)));
    }
}

/// Sends the description of records the mapping gives up on (AWS's invocation record) to the
/// on-failure file, or the log, and moves on. `invocations`: how many invocations they were in.
async fn discard(
    shared: &Shared,
    records: &[ShardRecord],
    condition: Discarded,
    invocations: i64,
    last_answer: Option<&Answer>,
) {
    if records.is_empty() {
        return;
    }
    let function = event::function_arn(&shared.stream, &shared.args.function);
    let info = event::invocation_record(
        &shared.stream,
        &function,
        records,
        condition,
        invocations,
        last_answer,
        SystemTime::now(),
    );
    tracing::error!(%info, "discarding batch");
    if let Some(file) = shared.on_failure.lock().await.as_mut()
        && let Err(e) = writeln!(file, "{info}")
    {
        tracing::error!(error = %e, "cannot write the on-failure file");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_epoch_seconds_or_rfc_3339() {
        assert_eq!(parse_timestamp("1750925642.5").unwrap(), DateTime::from_secs_f64(1_750_925_642.5));
        assert_eq!(parse_timestamp("2025-06-26T08:14:02Z").unwrap(), DateTime::from_secs(1_750_925_642));
        assert_eq!(parse_timestamp("2025-06-26T10:14:02+02:00").unwrap(), DateTime::from_secs(1_750_925_642));
        assert!(parse_timestamp("-1").is_err());
        assert!(parse_timestamp("yesterday").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn a_timestamp_goes_only_with_at_timestamp_and_not_in_the_future() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            esm: EsmArgs,
        }
        let args = |extra: &[&str]| {
            let base = ["esm", "--stream", "s", "--function", "http://127.0.0.1:1/"];
            Cli::try_parse_from(base.iter().chain(extra)).map(|cli| cli.esm)
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let at = |t: &str| args(&["--starting-position", "at-timestamp", "--starting-position-timestamp", t]).unwrap();
        assert!(check_starting_position(&at("1999999999"), now).is_ok());
        assert!(check_starting_position(&at("2000000001"), now).unwrap_err().to_string().contains("in the future"));
        let stray = args(&["--starting-position", "latest", "--starting-position-timestamp", "1"]).unwrap();
        assert!(check_starting_position(&stray, now).unwrap_err().to_string().contains("goes with"));
        assert!(args(&["--starting-position", "at-timestamp"]).is_err(), "clap asks for the timestamp");
        assert!(check_starting_position(&args(&[]).unwrap(), now).is_ok());
    }
}
