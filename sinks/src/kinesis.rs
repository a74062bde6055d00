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
//! runtime resends only those, with backoff and jitter. A record over 1 MiB, or whose key cannot
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
        let mut chunk: Vec<Pending> = Vec::new();
        let mut chunk_bytes = 0;
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
            if chunk.len() == MAX_RECORDS_PER_CALL || chunk_bytes + size > MAX_BYTES_PER_CALL {
                self.put(std::mem::take(&mut chunk), &mut results).await?;
                chunk_bytes = 0;
            }
            chunk_bytes += size;
            chunk.push(Pending { index, data, key });
        }
        if !chunk.is_empty() {
            self.put(chunk, &mut results).await?;
        }
        Ok(results)
    }
}
