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
//! runtime resends only those, with backoff and jitter. A batch needing several calls sends them in
//! order; when a later call fails as a whole, only its records and the unsent ones are retried, so
//! the records of the accepted calls are not sent twice. A record over 1 MiB, or whose key cannot
//! be made, is rejected (dead-lettered). Credentials and endpoint come from the AWS SDK's standard
//! chain (`AWS_ENDPOINT_URL_KINESIS` or `AWS_ENDPOINT_URL` for a local stand-in).

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
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

/// `[sinks.<id>]` (or `[dead_letter]`) with `type = "kinesis"`.
#[derive(Clone, Debug, Deserialize)]
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
    pub dry_run: bool,
}

fn default_partition_key() -> String {
    "{prediction.ride_id}".into()
}

/// Writes outputs to a Kinesis stream.
pub struct KinesisSink {
    client: Client,
    stream: String,
    key: Template,
    dry_run: bool,
}

/// Builds the sink; unless `dry_run`, checks that the stream exists and is reachable.
pub fn build(spec: ComponentSpec) -> BuildFuture<Arc<dyn Sink>> {
    Box::pin(async move {
        let config: KinesisSinkConfig = spec.parse()?;
        let key = Template::parse(&config.partition_key).map_err(|e| spec.error("partition_key", e))?;
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
        Ok(Arc::new(KinesisSink { client, stream: config.stream, key, dry_run: config.dry_run }) as Arc<dyn Sink>)
    })
}

/// One encoded record waiting for a call.
struct Pending {
    index: usize,
    data: Vec<u8>,
    key: String,
}

impl KinesisSink {
    fn encode(&self, input: &Input<'_>) -> Result<(Vec<u8>, String), String> {
        let data = serde_json::to_vec(input.value).map_err(|e| format!("cannot encode as JSON: {e}"))?;
        let key = self
            .key
            .render(input.value)
            .or_else(|| input.record.partition_key.clone())
            .unwrap_or_else(|| input.record.position.offset.to_string());
        if key.is_empty() || key.chars().count() > 256 {
            return Err(format!("partition key must be 1 to 256 characters, got {}", key.chars().count()));
        }
        if data.len() + key.len() > MAX_RECORD_BYTES {
            return Err(format!("record is {} bytes with its key, over Kinesis' 1 MiB limit", data.len() + key.len()));
        }
        Ok((data, key))
    }

    async fn put(&self, chunk: Vec<Pending>, results: &mut [Delivery]) -> Result<(), ComponentError> {
        let indices: Vec<usize> = chunk.iter().map(|p| p.index).collect();
        let entries = chunk
            .into_iter()
            .map(|p| PutRecordsRequestEntry::builder().data(Blob::new(p.data)).partition_key(p.key).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ComponentError::Fatal(format!("building PutRecords entries: {e}")))?;
        let request = self.client.put_records().set_records(Some(entries));
        let request = if self.stream.starts_with("arn:") {
            request.stream_arn(&self.stream)
        } else {
            request.stream_name(&self.stream)
        };
        let output = request.send().await.map_err(|e| classify(&self.stream, e))?;
        for (index, entry) in indices.into_iter().zip(output.records()) {
            results[index] = match entry.error_code() {
                None => Delivery::Delivered,
                Some(code) => Delivery::Retry(format!("{code}: {}", entry.error_message().unwrap_or_default())),
            };
        }
        Ok(())
    }

    /// Sends the calls in order. A failed first call fails the whole delivery (the runtime retries
    /// or stops, by the error's kind). A failed later call must not do that: the calls before it
    /// were accepted, and resending them would duplicate their records. So its records, and those
    /// of the calls not yet made, are reported for retry; the retry's first call then meets the
    /// error again and reports it by its kind.
    async fn send(&self, calls: Vec<Vec<Pending>>, results: &mut [Delivery]) -> Result<(), ComponentError> {
        let mut calls = calls.into_iter();
        let mut first = true;
        while let Some(call) = calls.next() {
            let indices: Vec<usize> = call.iter().map(|p| p.index).collect();
            match self.put(call, results).await {
                Ok(()) => first = false,
                Err(error) if first => return Err(error),
                Err(error) => {
                    let reason = format!("{error} (after earlier PutRecords calls of this batch succeeded)");
                    for index in indices.into_iter().chain(calls.flatten().map(|p| p.index)) {
                        results[index] = Delivery::Retry(reason.clone());
                    }
                    break;
                }
            }
        }
        Ok(())
    }
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    stream: &str,
    error: SdkError<E, R>,
) -> ComponentError {
    let message = format!("PutRecords to {stream}: {}", tributary_aws::describe(&error));
    match tributary_aws::error_code(&error).unwrap_or_default() {
        "ResourceNotFoundException" | "AccessDeniedException" | "ValidationException" | "InvalidArgumentException" => {
            ComponentError::Fatal(message)
        }
        _ => ComponentError::Retryable(message),
    }
}

#[async_trait]
impl Sink for KinesisSink {
    async fn deliver(&self, batch: &[Input<'_>]) -> Result<Vec<Delivery>, ComponentError> {
        let mut results = vec![Delivery::Delivered; batch.len()];
        let mut calls: Vec<Vec<Pending>> = Vec::new();
        let mut call_bytes = 0;
        for (index, input) in batch.iter().enumerate() {
            let (data, key) = match self.encode(input) {
                Ok(encoded) => encoded,
                Err(reason) => {
                    results[index] = Delivery::Reject(reason);
                    continue;
                }
            };
            if self.dry_run {
                tracing::info!(stream = %self.stream, partition_key = %key, data = %String::from_utf8_lossy(&data), "dry run: not sent");
                continue;
            }
            let size = data.len() + key.len();
            match calls.last_mut() {
                Some(call) if call.len() < MAX_RECORDS_PER_CALL && call_bytes + size <= MAX_BYTES_PER_CALL => {
                    call_bytes += size;
                    call.push(Pending { index, data, key });
                }
                _ => {
                    call_bytes = size;
                    calls.push(vec![Pending { index, data, key }]);
                }
            }
        }
        self.send(calls, &mut results).await?;
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    //! The call-splitting logic against an in-process HTTP double that answers PutRecords from a
    //! script (the integration tests use kinesis-mock; it cannot fail one call of several).

    use std::sync::Mutex;

    use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
    use serde_json::{Value, json};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;
    use tributary_framework::{Offset, Position, Record};

    use super::*;

    /// Answers each PutRecords call with the next scripted status (200 accepts every record) and
    /// records how many records each call carried.
    async fn double(script: Vec<u16>) -> (String, Arc<Mutex<Vec<usize>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = calls.clone();
        tokio::spawn(async move {
            let mut script = script.into_iter();
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let mut reader = BufReader::new(socket);
                loop {
                    let mut length = 0;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            break;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = value.trim().parse().unwrap();
                        }
                    }
                    if line != "\r\n" {
                        break; // connection closed
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).await.unwrap();
                    let request: Value = serde_json::from_slice(&body).unwrap();
                    let records = request["Records"].as_array().map_or(0, Vec::len);
                    seen.lock().unwrap().push(records);
                    let (status, answer) = match script.next().unwrap_or(200) {
                        200 => {
                            let entries: Vec<Value> = (0..records)
                                .map(|i| json!({"SequenceNumber": i.to_string(), "ShardId": "shardId-000000000000"}))
                                .collect();
                            ("200 OK", json!({"FailedRecordCount": 0, "Records": entries}))
                        }
                        400 => ("400 Bad Request", json!({"__type": "ResourceNotFoundException", "message": "gone"})),
                        _ => ("500 Internal Server Error", json!({"__type": "InternalFailure", "message": "boom"})),
                    };
                    let answer = answer.to_string();
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                    reader.get_mut().write_all(response.as_bytes()).await.unwrap();
                }
            }
        });
        (url, calls)
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
        }
    }

    async fn deliver(sink: &KinesisSink, count: usize) -> Result<Vec<Delivery>, ComponentError> {
        let values: Vec<Value> = (0..count).map(|i| json!({"ride_id": i})).collect();
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

    #[tokio::test]
    async fn a_failed_later_call_retries_only_its_records_and_the_unsent_ones() {
        let (url, calls) = double(vec![200, 500]).await;
        let results = deliver(&sink(&url), 1_100).await.expect("the first call was accepted");
        assert_eq!(*calls.lock().unwrap(), vec![500, 500], "the third call is not made");
        assert!(results[..500].iter().all(|d| *d == Delivery::Delivered));
        for result in &results[500..] {
            let Delivery::Retry(reason) = result else { panic!("expected a retry, got {result:?}") };
            assert!(reason.contains("InternalFailure"), "{reason}");
        }
    }

    #[tokio::test]
    async fn a_failed_first_call_fails_the_delivery_by_its_kind() {
        let (url, _) = double(vec![500]).await;
        assert!(matches!(deliver(&sink(&url), 10).await, Err(ComponentError::Retryable(_))));
        let (url, _) = double(vec![400]).await;
        assert!(matches!(deliver(&sink(&url), 10).await, Err(ComponentError::Fatal(_))));
    }

    #[tokio::test]
    async fn calls_hold_at_most_500_records() {
        let (url, calls) = double(vec![]).await;
        let results = deliver(&sink(&url), 1_001).await.unwrap();
        assert_eq!(*calls.lock().unwrap(), vec![500, 500, 1]);
        assert!(results.iter().all(|d| *d == Delivery::Delivered));
    }
}
