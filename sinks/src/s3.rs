//! Sink `s3`: each delivered batch becomes one JSON-lines object under a prefix. Meant as a
//! dead-letter destination (the Lambda function's "S3 prefix" option) or an archive.
//!
//! ```toml
//! [dead_letter]
//! type = "s3"
//! bucket = "my-bucket"
//! prefix = "tributary/dead-letter/"
//! ```
//!
//! Object keys are `<prefix><unix ms>-<instance>-<counter>.jsonl`, so they sort by time; the
//! instance is 64 random bits drawn when the sink is built, so that replicas writing to one
//! prefix never collide (a process id does: it is 1 in every container).
//! Credentials and endpoint come from the AWS SDK chain; with a custom endpoint
//! (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`) path-style addressing is used.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use serde::Deserialize;
use tributary_framework::config::ComponentSpec;
use tributary_framework::registry::BuildFuture;
use tributary_framework::{ComponentError, Delivery, Input, Sink};

/// `[sinks.<id>]` (or `[dead_letter]`) with `type = "s3"`.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3SinkConfig {
    /// The bucket.
    pub bucket: String,
    /// Key prefix of every object (include a trailing `/` for a folder).
    #[serde(default)]
    pub prefix: String,
}

/// Writes each batch as one object.
pub struct S3Sink {
    client: Client,
    bucket: String,
    prefix: String,
    keys: KeyNamer,
}

/// Object keys unique across processes and containers: time, a random instance id, a counter.
struct KeyNamer {
    instance: u64,
    counter: AtomicU64,
}

impl KeyNamer {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        // std's RandomState is seeded from the OS's random source: 64 random bits, no new
        // dependency.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
        KeyNamer { instance: hasher.finish(), counter: AtomicU64::new(0) }
    }

    fn next(&self, prefix: &str, millis: u128) -> String {
        format!("{prefix}{millis}-{:016x}-{}.jsonl", self.instance, self.counter.fetch_add(1, Ordering::Relaxed))
    }
}

/// Builds the sink, checking that the bucket is reachable.
pub fn build(spec: ComponentSpec) -> BuildFuture<Arc<dyn Sink>> {
    Box::pin(async move {
        let config: S3SinkConfig = spec.parse()?;
        let client = tributary_aws::s3_client().await;
        client.head_bucket().bucket(&config.bucket).send().await.map_err(|e| {
            let why = tributary_aws::error_code(&e).map_or_else(|| tributary_aws::describe(&e), str::to_owned);
            spec.error("bucket", format!("cannot use bucket {:?}: {why}", config.bucket))
        })?;
        Ok(Arc::new(S3Sink { client, bucket: config.bucket, prefix: config.prefix, keys: KeyNamer::new() })
            as Arc<dyn Sink>)
    })
}

#[async_trait]
impl Sink for S3Sink {
    async fn deliver(&self, batch: &[Input<'_>]) -> Result<Vec<Delivery>, ComponentError> {
        let mut body = Vec::with_capacity(batch.len() * 256);
        let mut results = Vec::with_capacity(batch.len());
        for input in batch {
            let start = body.len();
            match serde_json::to_writer(&mut body, input.value) {
                Ok(()) => {
                    body.push(b'\n');
                    results.push(Delivery::Delivered);
                }
                Err(e) => {
                    body.truncate(start);
                    results.push(Delivery::Reject(format!("cannot encode as JSON: {e}")));
                }
            }
        }
        if body.is_empty() {
            return Ok(results);
        }
        let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let key = self.keys.next(&self.prefix, millis);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/x-ndjson")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| tributary_aws::component_error(&format!("PutObject s3://{}/{key}", self.bucket), &e))?;
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: keys were `<ms>-<pid>-<counter>`, the same for two replicas with PID 1
    /// writing in the same millisecond (issue 19): one overwrote the other's dead letters.
    #[test]
    fn dead_letter_keys_of_two_replicas_do_not_collide() {
        let (a, b) = (KeyNamer::new(), KeyNamer::new());
        assert_ne!(a.next("dl/", 1_750_000_000_000), b.next("dl/", 1_750_000_000_000));
        assert!(a.next("dl/", 5).starts_with("dl/5-"));
    }
}
