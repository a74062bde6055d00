//! Sink `kinesis`: PutRecords to an Amazon Kinesis data stream.
//!
//! ```toml
//! [sinks.predictions]
//! type = "kinesis"
//! inputs = ["ride_duration"]
//! stream = "${PREDICTIONS_STREAM_NAME:-ride_predictions}"
//! partition_key = "{prediction.ride_id}"
//! dry_run = "${TEST_RUN:-false}"
//! ```
//!
//! Outputs are sent as JSON in PutRecords calls within the API's limits (500 records and 5 MiB
//! per call, 1 MiB per record including its key). A record the stream refuses in a call
//! (`ProvisionedThroughputExceededException`, `InternalFailure`) is reported for retry, so the
//! runtime resends only those, with backoff and jitter. A batch needing several calls makes up to
//! `concurrency` (default 4) at once; when some of them fail as a whole, only their records are
//! retried, so the records of the accepted calls are not sent twice. The whole batch is encoded
//! before the first call. A record over 1 MiB, or whose key cannot
//! be made, is rejected (dead-lettered). Credentials and endpoint come from the AWS SDK's standard
//! chain (`AWS_ENDPOINT_URL_KINESIS` or `AWS_ENDPOINT_URL` for a local stand-in).

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use futures::stream::{self, StreamExt};
use serde::Deserialize;
use tributary_framework::config::{ComponentSpec, flag};
use tributary_framework::registry::BuildFuture;
use tributary_framework::{ComponentError, Delivery, Input, Sink};

use tributary_framework::template::Template;

/// PutRecords limits.
pub const MAX_RECORDS_PER_CALL: usize = 500;
/// Bytes (data plus partition keys) per PutRecords call.
pub const MAX_BYTES_PER_CALL: usize = 5 * 1024 * 1024;
/// Bytes (data plus partition key) per record.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Why Kinesis would refuse a record of `data_len` bytes with partition key `key`, if it would:
/// a key of 1 to 256 characters, and at most 1 MiB of data and key together.
pub fn refusal(data_len: usize, key: &str) -> Option<String> {
    let characters = key.chars().count();
    if key.is_empty() || characters > 256 {
        return Some(format!("partition key must be 1 to 256 characters, got {characters}"));
    }
    let size = data_len + key.len();
    (size > MAX_RECORD_BYTES)
        .then(|| format!("record is {size} bytes with its partition key, over Kinesis' 1 MiB limit"))
}

/// `[sinks.<id>]` (or `[dead_letter]`) with `type = "kinesis"`.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KinesisSinkConfig {
    /// The stream's name or ARN.
    pub stream: String,
    /// Partition key template: `{dotted.path}` fields of the output. When a field is missing the
    /// source record's own partition key is used. Default: `{prediction.ride_id}`, the seeds'
    /// `PartitionKey=str(ride_id)`.
    #[serde(default = "default_partition_key")]
    pub partition_key: String,
    /// Send nothing; log what would be sent (the seeds' `TEST_RUN`). Accepts `true`/`false` or
    /// text such as `"True"`.
    #[serde(default, deserialize_with = "flag")]
    #[schemars(schema_with = "tributary_framework::schema::flag")]
    pub dry_run: bool,
    /// PutRecords calls in flight at once when a batch needs several (over 500 records or
    /// 5 MiB); at least 1. Above 1, records of one partition key in different calls of a batch
    /// may land out of order. PutRecords promises no order even within one call ("PutRecords
    /// doesn't guarantee the ordering of records"); 1 sends the calls one after another.
    /// Default 4.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_partition_key() -> String {
    "{prediction.ride_id}".into()
}

fn default_concurrency() -> usize {
    4
}

/// Writes outputs to a Kinesis stream.
pub struct KinesisSink {
    client: Client,
    stream: String,
    key: Template,
    dry_run: bool,
    concurrency: usize,
}

/// Builds the sink; unless `dry_run`, checks that the stream exists and is reachable.
pub fn build(spec: ComponentSpec) -> BuildFuture<Arc<dyn Sink>> {
    Box::pin(async move {
        let config: KinesisSinkConfig = spec.parse()?;
        let key = Template::parse(&config.partition_key).map_err(|e| spec.error("partition_key", e))?;
        if config.concurrency == 0 {
            return Err(spec.error("concurrency", "must be at least 1"));
        }
        let client = tributary_aws::kinesis_client().await;
        if !config.dry_run {
            let request = client.describe_stream_summary();
            let request = if config.stream.starts_with("arn:") {
                request.stream_arn(&config.stream)
            } else {
                request.stream_name(&config.stream)
            };
            request.send().await.map_err(|e| {
                spec.error("stream", format!("cannot use stream {:?}: {}", config.stream, tributary_aws::describe(&e)))
            })?;
        }
        Ok(Arc::new(KinesisSink {
            client,
            stream: config.stream,
            key,
            dry_run: config.dry_run,
            concurrency: config.concurrency,
        }) as Arc<dyn Sink>)
    })
}

/// What one PutRecords call did: each entry's delivery, in order, or why the call failed as a
/// whole.
type CallOutcome = Result<Vec<Delivery>, ComponentError>;

/// Splits records, each given with its size (data plus partition key, as the API counts it),
/// into PutRecords calls within the API's limits: at most 500 records and 5 MiB each, in order.
/// `tributary put` splits its input the same way.
pub fn within_call_limits<T>(records: impl IntoIterator<Item = (T, usize)>) -> Vec<Vec<T>> {
    let mut calls = Vec::new();
    let (mut call, mut bytes) = (Vec::new(), 0);
    for (record, size) in records {
        if call.len() == MAX_RECORDS_PER_CALL || (!call.is_empty() && bytes + size > MAX_BYTES_PER_CALL) {
            calls.push(std::mem::take(&mut call));
            bytes = 0;
        }
        bytes += size;
        call.push(record);
    }
    if !call.is_empty() {
        calls.push(call);
    }
    calls
}

/// The records of one PutRecords call.
struct Call {
    /// Each entry's index in the batch.
    indices: Vec<usize>,
    entries: Vec<PutRecordsRequestEntry>,
}

impl KinesisSink {
    fn encode(&self, input: &Input<'_>) -> Result<(Vec<u8>, String), String> {
        let data = serde_json::to_vec(input.value).map_err(|e| format!("cannot encode as JSON: {e}"))?;
        let key = self
            .key
            .render_output(input.value)
            .or_else(|| input.record.partition_key.clone())
            .unwrap_or_else(|| input.record.position.offset.to_string());
        match refusal(data.len(), &key) {
            Some(reason) => Err(reason),
            None => Ok((data, key)),
        }
    }

    /// One PutRecords call: each entry's delivery, in order.
    async fn put(&self, entries: Vec<PutRecordsRequestEntry>) -> CallOutcome {
        let sent = entries.len();
        let request = self.client.put_records().set_records(Some(entries));
        let request = if self.stream.starts_with("arn:") {
            request.stream_arn(&self.stream)
        } else {
            request.stream_name(&self.stream)
        };
        let output = request.send().await.map_err(|e| classify(&self.stream, e))?;
        if output.records().len() != sent {
            return Err(ComponentError::Retryable(format!(
                "PutRecords to {} answered {} entries for {sent} records",
                self.stream,
                output.records().len(),
            )));
        }
        Ok(output
            .records()
            .iter()
            .map(|entry| match entry.error_code() {
                None => Delivery::Delivered,
                Some(code) => Delivery::Retry(format!("{code}: {}", entry.error_message().unwrap_or_default())),
            })
            .collect())
    }

    /// Makes the calls, up to `concurrency` at once. When every call fails, the delivery fails
    /// with the first call's error (the runtime retries or stops, by its kind). When only some
    /// fail, it must not: the others were accepted, and resending them would duplicate their
    /// records. So only the failed calls' records are reported for retry; if the error lasts, the
    /// retry's calls all fail and it is reported by its kind. (A fatal error met this way is
    /// reported as a retry; should the retry policy be exhausted by then, its records take the
    /// policy's `on_exhausted` path.)
    async fn send(&self, calls: Vec<Call>, results: &mut [Delivery]) -> Result<(), ComponentError> {
        let outcomes: Vec<(Vec<usize>, CallOutcome)> = stream::iter(calls)
            .map(|call| async move { (call.indices, self.put(call.entries).await) })
            .buffered(self.concurrency)
            .collect()
            .await;
        let any_accepted = outcomes.iter().any(|(_, outcome)| outcome.is_ok());
        for (indices, outcome) in outcomes {
            match outcome {
                Ok(deliveries) => {
                    for (index, delivery) in indices.into_iter().zip(deliveries) {
                        results[index] = delivery;
                    }
                }
                Err(error) if !any_accepted => return Err(error),
                Err(error) => {
                    let reason = format!("{error} (other PutRecords calls of this batch succeeded)");
                    for index in indices {
                        results[index] = Delivery::Retry(reason.clone());
                    }
                }
            }
        }
        Ok(())
    }
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    stream: &str,
    error: SdkError<E, aws_sdk_kinesis::config::http::HttpResponse>,
) -> ComponentError {
    tributary_aws::component_error(&format!("PutRecords to {stream}"), &error)
}

#[async_trait]
impl Sink for KinesisSink {
    async fn deliver(&self, batch: &[Input<'_>]) -> Result<Vec<Delivery>, ComponentError> {
        let mut results = vec![Delivery::Delivered; batch.len()];
        // Each entry to send, with its index in the batch and its size.
        let mut accepted = Vec::new();
        for (index, input) in batch.iter().enumerate() {
            let (data, key) = match self.encode(input) {
                Ok(encoded) => encoded,
                Err(reason) => {
                    results[index] = Delivery::Reject(reason);
                    continue;
                }
            };
            if self.dry_run {
                tracing::info!(
                    target: tributary_framework::DRY_RUN_LOG_TARGET,
                    stream = %self.stream, partition_key = %key, data = %String::from_utf8_lossy(&data),
                    "dry run: not sent"
                );
                continue;
            }
            let size = data.len() + key.len();
            let entry = PutRecordsRequestEntry::builder()
                .data(Blob::new(data))
                .partition_key(key)
                .build()
                .map_err(|e| ComponentError::Fatal(format!("building a PutRecords entry: {e}")))?;
            accepted.push(((index, entry), size));
        }
        let calls = within_call_limits(accepted)
            .into_iter()
            .map(|call| {
                let (indices, entries) = call.into_iter().unzip();
                Call { indices, entries }
            })
            .collect();
        self.send(calls, &mut results).await?;
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    //! The call-splitting logic against an in-process HTTP double that answers PutRecords from a
    //! script (the integration tests use kinesis-mock; it cannot fail one call of several).

    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
    use serde_json::{Value, json};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;
    use tributary_framework::{Offset, Position, Record};

    use super::*;

    /// A PutRecords double on loopback.
    struct Double {
        url: String,
        /// How many records each call carried, in arrival order.
        calls: Arc<Mutex<Vec<usize>>>,
        /// The most calls in flight at once.
        peak: Arc<AtomicUsize>,
    }

    /// Answers each PutRecords call, after 30 ms, with the next scripted status (200, the default
    /// once the script runs out, accepts every record); one task per connection.
    async fn double(script: Vec<u16>) -> Double {
        double_holding(script, 0).await
    }

    /// As [`double`], but the first `hold` calls are answered only once `hold` calls have
    /// arrived (or after a second), so that calls the client makes at once are in flight at once.
    async fn double_holding(script: Vec<u16>, hold: usize) -> Double {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(Mutex::new(Vec::new()));
        let peak = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let arrived = Arc::new(AtomicUsize::new(0));
        let (seen, most) = (calls.clone(), peak.clone());
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let (seen, most, script) = (seen.clone(), most.clone(), script.clone());
                let (in_flight, arrived) = (in_flight.clone(), arrived.clone());
                tokio::spawn(async move {
                    let mut reader = BufReader::new(socket);
                    while let Some(body) = read_request(&mut reader).await {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        let request: Value = serde_json::from_slice(&body).unwrap();
                        let records = request["Records"].as_array().map_or(0, Vec::len);
                        seen.lock().unwrap().push(records);
                        let status = script.lock().unwrap().next().unwrap_or(200);
                        arrived.fetch_add(1, Ordering::SeqCst);
                        let started = tokio::time::Instant::now();
                        while arrived.load(Ordering::SeqCst) < hold && started.elapsed().as_secs() < 1 {
                            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        reader.get_mut().write_all(response(status, records).as_bytes()).await.unwrap();
                    }
                });
            }
        });
        Double { url, calls, peak }
    }

    /// The next request's body on a keep-alive connection; `None` once the client closes it.
    async fn read_request(reader: &mut BufReader<tokio::net::TcpStream>) -> Option<Vec<u8>> {
        let mut length = 0;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return None;
            }
            if line == "\r\n" {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await.ok()?;
        Some(body)
    }

    /// The answer for a scripted status: 200 accepts every record, 206 answers 200 with one
    /// entry too few, 400 is a missing stream, anything else an internal failure.
    fn response(status: u16, records: usize) -> String {
        let (status, answer) = match status {
            200 | 206 => {
                let answered = if status == 206 { records - 1 } else { records };
                let entries: Vec<Value> = (0..answered)
                    .map(|i| json!({"SequenceNumber": i.to_string(), "ShardId": "shardId-000000000000"}))
                    .collect();
                ("200 OK", json!({"FailedRecordCount": 0, "Records": entries}))
            }
            400 => ("400 Bad Request", json!({"__type": "ResourceNotFoundException", "message": "gone"})),
            _ => ("500 Internal Server Error", json!({"__type": "InternalFailure", "message": "boom"})),
        };
        let answer = answer.to_string();
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        )
    }

    fn sink(url: &str) -> KinesisSink {
        let config = aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(url)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .retry_config(RetryConfig::disabled())
            .build();
        KinesisSink {
            client: Client::from_conf(config),
            stream: "out".into(),
            key: Template::parse("{ride_id}").unwrap(),
            dry_run: false,
            concurrency: 1,
        }
    }

    async fn deliver(sink: &KinesisSink, count: usize) -> Result<Vec<Delivery>, ComponentError> {
        let values: Vec<tributary_framework::Output> = (0..count).map(|i| json!({"ride_id": i}).into()).collect();
        let records: Vec<Record> = (0..count)
            .map(|i| {
                let position = Position { source: "s".into(), partition: "p".into(), offset: Offset::Index(i as u64) };
                Record::new(Vec::new(), position)
            })
            .collect();
        let inputs: Vec<Input<'_>> =
            values.iter().zip(&records).map(|(value, record)| Input { value, record }).collect();
        sink.deliver(&inputs).await
    }

    #[test]
    fn calls_stay_within_500_records_and_5_mib() {
        let mib = 1024 * 1024;
        let split = |sizes: &[usize]| within_call_limits(sizes.iter().copied().enumerate());
        assert_eq!(split(&[mib; 6]), [vec![0, 1, 2, 3, 4], vec![5]]);
        assert_eq!(split(&[3 * mib, 2 * mib, 1]), [vec![0, 1], vec![2]]);
        assert_eq!(split(&[10; 1001]).iter().map(Vec::len).collect::<Vec<_>>(), [500, 500, 1]);
        assert!(split(&[]).is_empty());
    }

    #[test]
    fn kinesis_refuses_empty_or_long_keys_and_records_over_one_mebibyte() {
        assert!(refusal(10, "").unwrap().contains("1 to 256 characters, got 0"));
        assert!(refusal(10, &"k".repeat(257)).unwrap().contains("got 257"));
        // Characters, not bytes: 256 two-byte characters are a valid key.
        assert_eq!(refusal(10, &"é".repeat(256)), None);
        assert_eq!(refusal(MAX_RECORD_BYTES - 3, "abc"), None);
        assert!(refusal(MAX_RECORD_BYTES - 2, "abc").unwrap().contains("1048577 bytes"));
    }

    #[tokio::test]
    async fn a_failed_call_among_accepted_ones_retries_only_its_records() {
        let double = double(vec![200, 500, 200]).await;
        let results = deliver(&sink(&double.url), 1_100).await.expect("two calls were accepted");
        assert_eq!(*double.calls.lock().unwrap(), vec![500, 500, 100]);
        assert!(results[..500].iter().all(|d| *d == Delivery::Delivered));
        assert!(results[1_000..].iter().all(|d| *d == Delivery::Delivered));
        for result in &results[500..1_000] {
            let Delivery::Retry(reason) = result else { panic!("expected a retry, got {result:?}") };
            assert!(reason.contains("InternalFailure"), "{reason}");
        }
    }

    #[tokio::test]
    async fn with_concurrent_calls_a_failed_one_retries_only_its_records() {
        // Three calls at once; whichever the double answers second fails.
        let double = double_holding(vec![200, 500, 200], 3).await;
        let sink = KinesisSink { concurrency: 3, ..sink(&double.url) };
        let results = deliver(&sink, 1_200).await.expect("two calls were accepted");
        let retried: Vec<usize> = (0..results.len()).filter(|&i| results[i] != Delivery::Delivered).collect();
        let delivered = results.len() - retried.len();
        assert!(delivered == 700 || delivered == 1_000, "{delivered} delivered");
        let (first, last) = (retried[0], retried[retried.len() - 1]);
        assert_eq!(last - first + 1, retried.len(), "the retried records are one call's");
        assert!(retried.iter().all(|&i| matches!(&results[i], Delivery::Retry(r) if r.contains("InternalFailure"))));
    }

    #[tokio::test]
    async fn calls_run_concurrently_up_to_the_limit() {
        let double = double_holding(vec![], 3).await;
        let sink = KinesisSink { concurrency: 3, ..sink(&double.url) };
        let results = deliver(&sink, 2_100).await.unwrap();
        let mut sizes = double.calls.lock().unwrap().clone();
        sizes.sort_unstable();
        assert_eq!(sizes, vec![100, 500, 500, 500, 500]);
        assert!(results.iter().all(|d| *d == Delivery::Delivered));
        assert_eq!(double.peak.load(Ordering::SeqCst), 3, "calls in flight at once");
    }

    #[tokio::test]
    async fn a_delivery_whose_calls_all_fail_fails_by_the_error_kind() {
        let failing = double(vec![500]).await;
        assert!(matches!(deliver(&sink(&failing.url), 10).await, Err(ComponentError::Retryable(_))));
        let missing = double(vec![400]).await;
        assert!(matches!(deliver(&sink(&missing.url), 10).await, Err(ComponentError::Fatal(_))));
        let both_failing = double(vec![500, 500]).await;
        assert!(matches!(deliver(&sink(&both_failing.url), 600).await, Err(ComponentError::Retryable(_))));
        let short = double(vec![206]).await;
        let Err(ComponentError::Retryable(reason)) = deliver(&sink(&short.url), 10).await else {
            panic!("an answer with too few entries must not count as delivered")
        };
        assert!(reason.contains("answered 9 entries for 10 records"), "{reason}");
    }

    #[tokio::test]
    async fn calls_hold_at_most_500_records() {
        let double = double(vec![]).await;
        let results = deliver(&sink(&double.url), 1_001).await.unwrap();
        assert_eq!(*double.calls.lock().unwrap(), vec![500, 500, 1]);
        assert!(results.iter().all(|d| *d == Delivery::Delivered));
    }
}
