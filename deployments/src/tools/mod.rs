//! The developer tools of the `tributary` binary, beside the pipelines: `put` and `tail` on a
//! Kinesis stream ([`kinesis`]) or a Kafka topic ([`kafka`], with `--brokers`), `create-topic`,
//! and `esm`, the local Kinesis event source mapping for the Lambda function ([`esm`]). Each
//! transport's module depends only on this one (the arguments and messages both share).

#[cfg(feature = "kinesis")]
pub mod esm;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "kinesis")]
pub mod kinesis;

use std::io::Read;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use serde_json::Value;
use tributary_framework::template::Template;

/// `tributary put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// The stream's name (with `--brokers`: the Kafka topic's).
    #[arg(long, visible_alias = "topic")]
    pub stream: String,
    /// Put to this Kafka cluster (`host:port,...`) instead of Kinesis.
    #[arg(long)]
    pub brokers: Option<String>,
    /// Partition key template over each value's fields (`{dotted.path}`); values without the
    /// field use their position in the input (Kinesis) or get no key (Kafka).
    #[arg(long, default_value = "{ride_id}")]
    pub partition_key: String,
    /// Put each input line as it is, without parsing it as JSON (to try how a pipeline handles
    /// malformed records). The key template still applies to lines that are JSON.
    #[arg(long)]
    pub raw: bool,
    /// JSON values to put; without any, JSON values are read from stdin (one per line, or
    /// concatenated documents).
    pub values: Vec<String>,
}

/// Where `tail` starts reading each shard.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum From {
    /// The oldest record still in the stream.
    TrimHorizon,
    /// Only records put after `tail` starts.
    Latest,
}

/// `tributary tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// The stream's name (with `--brokers`: the Kafka topic's).
    #[arg(long, visible_alias = "topic")]
    pub stream: String,
    /// Read from this Kafka cluster (`host:port,...`) instead of Kinesis.
    #[arg(long)]
    pub brokers: Option<String>,
    /// Where to start in every shard.
    #[arg(long, value_enum, default_value_t = From::TrimHorizon)]
    pub from: From,
    /// Keep polling for new records, and for the new shards of a reshard (Ctrl-C to stop);
    /// otherwise stop once every shard is caught up.
    #[arg(long)]
    pub follow: bool,
    /// Print each record with its shard, sequence number and partition key (Kafka: partition,
    /// offset and key).
    #[arg(long)]
    pub metadata: bool,
}

/// A record's data as `tail` prints it: its JSON, or its text when it is not JSON.
fn data_value(data: &[u8]) -> Value {
    serde_json::from_slice(data).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(data).into_owned()))
}

/// Writes one JSON line to stdout; an error means the reader went away.
pub fn print_line(value: &Value) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}")?;
    out.flush()
}

/// One record to put: its bytes and, when the key template renders, its key.
pub struct Message {
    /// The payload.
    pub data: Vec<u8>,
    /// The partition key (Kinesis: the input position when `None`; Kafka: no key).
    pub key: Option<String>,
}

/// Runs `put`: reads the values, then puts them on the Kafka topic (`--brokers`) or the Kinesis
/// stream.
///
/// # Errors
/// Unparseable input, a missing stream or topic, or records still failing after retries.
pub async fn put(args: PutArgs) -> Result<()> {
    let messages = messages(&args)?;
    match &args.brokers {
        #[cfg(feature = "kafka")]
        Some(brokers) => kafka::put(brokers, &args.stream, &messages).await,
        #[cfg(feature = "kinesis")]
        None => kinesis::put(&args.stream, messages).await,
        #[allow(unreachable_patterns, reason = "when the build has both transports")]
        _ => Err(missing_transport(args.brokers.is_some())),
    }
}

/// Runs `tail` on the Kafka topic (`--brokers`) or the Kinesis stream.
///
/// # Errors
/// A missing stream or topic, or an API error.
pub async fn tail(args: TailArgs) -> Result<()> {
    match args.brokers.clone() {
        #[cfg(feature = "kafka")]
        Some(brokers) => kafka::tail(brokers, args.stream, args.from, args.follow, args.metadata).await,
        #[cfg(feature = "kinesis")]
        None => kinesis::tail(args).await,
        #[allow(unreachable_patterns, reason = "when the build has both transports")]
        _ => Err(missing_transport(args.brokers.is_some())),
    }
}

/// The error for a transport this build was made without.
#[allow(dead_code, reason = "unused when the build has both transports")]
fn missing_transport(kafka: bool) -> anyhow::Error {
    if kafka {
        anyhow::anyhow!("this build has no Kafka support (feature `kafka`)")
    } else {
        anyhow::anyhow!("this build has no Kinesis support (feature `kinesis`); give --brokers for Kafka")
    }
}

/// The values `put` was given (arguments, or stdin), each with its key.
fn messages(args: &PutArgs) -> Result<Vec<Message>> {
    let template = Template::parse(&args.partition_key).map_err(anyhow::Error::msg)?;
    let text = if args.values.is_empty() {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading stdin")?;
        text
    } else {
        args.values.join("\n")
    };
    if args.raw {
        return Ok(text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| Message {
                data: line.as_bytes().to_vec(),
                key: serde_json::from_str::<Value>(line).ok().and_then(|v| template.render(&v)),
            })
            .collect());
    }
    serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .map(|v| {
            let v = v?;
            Ok(Message { data: serde_json::to_vec(&v)?, key: template.render(&v) })
        })
        .collect::<Result<_>>()
        .context("input is not a sequence of JSON values (use --raw to put lines as they are)")
}
