//! The batch job as a Lambda function behind S3: each `ObjectCreated` notification names one
//! object, scored into the config's sinks (AWS's own way to spread a month of files over many
//! machines: one invocation per object). No checkpoint: S3 sends each notification at least
//! once, and scoring an object again replaces its outputs whole.

use serde_json::{Value, json};
use tributary_framework::ConfigError;
use tributary_framework::config::PipelineConfig;
use tributary_framework::registry::Registry;
use tributary_sources::parquet::s3::S3Object;

use super::plan::Plan;
use super::progress::Progress;
use super::storage::{InputFile, Storage};

/// A batch config, built once per execution environment, scoring the objects events name.
pub struct ObjectJob {
    plan: Plan,
    storage: Storage,
}

impl ObjectJob {
    /// Builds the job from a batch config (a `parquet` source, whose `path` is not listed: the
    /// events name the objects).
    ///
    /// # Errors
    /// The config is not a valid batch job.
    pub async fn build(config: &PipelineConfig, registry: &Registry) -> Result<ObjectJob, ConfigError> {
        let plan = Plan::build(config, registry).await?;
        let mut paths = vec!["s3://"];
        paths.extend(plan.outputs.iter().map(|o| o.config.path.as_str()));
        let storage =
            Storage::new(&paths).await.map_err(|message| ConfigError::Load { file: config.file.clone(), message })?;
        Ok(ObjectJob { plan, storage })
    }

    /// Scores every object an S3 event notification names; answers what was scored.
    ///
    /// # Errors
    /// The event is not an S3 notification (`Err(Ok(reason))`), or an object could not be
    /// scored (`Err(Err(reason))`: the invocation fails, so S3's asynchronous invocation retries
    /// it).
    pub async fn handle(&self, event: &Value) -> Result<Value, Result<String, String>> {
        let objects = objects(event).map_err(Ok)?;
        let mut scored = Vec::new();
        for object in objects {
            let url = object.url();
            let size = object.size;
            let mut progress = Progress::new(1, size, false);
            let counts = super::score_file(&self.plan, &self.storage, &InputFile::S3(object), size, &mut progress)
                .await
                .map_err(Err)?;
            tracing::info!(object = %url, rows = counts.rows, dead_lettered = counts.dead_lettered, "scored");
            scored.push(json!({"object": url, "rows": counts.rows, "predicted": counts.predicted,
                               "dead_lettered": counts.dead_lettered}));
        }
        Ok(json!({ "scored": scored }))
    }
}

/// The objects of an S3 event notification's `ObjectCreated` records (other records, such as
/// deletions, are skipped).
fn objects(event: &Value) -> Result<Vec<S3Object>, String> {
    let records = event.get("Records").and_then(Value::as_array).ok_or(
        "this function scores the Parquet objects of S3 ObjectCreated notifications ({\"Records\": [...]}); \
         its config is a batch job",
    )?;
    let mut objects = Vec::new();
    for (i, record) in records.iter().enumerate() {
        if record.get("eventSource").and_then(Value::as_str) != Some("aws:s3") {
            return Err(format!("Records[{i}] is not an S3 notification (eventSource {})", record["eventSource"]));
        }
        if !record.get("eventName").and_then(Value::as_str).is_some_and(|n| n.starts_with("ObjectCreated:")) {
            continue;
        }
        let bucket = record.pointer("/s3/bucket/name").and_then(Value::as_str);
        let key = record.pointer("/s3/object/key").and_then(Value::as_str);
        let (Some(bucket), Some(key)) = (bucket, key) else {
            return Err(format!("Records[{i}] has no s3.bucket.name or s3.object.key"));
        };
        objects.push(S3Object {
            bucket: bucket.to_string(),
            key: decode_key(key)
                .ok_or_else(|| format!("Records[{i}]: s3.object.key {key:?} is not URL-encoded UTF-8"))?,
            size: record.pointer("/s3/object/size").and_then(Value::as_u64).unwrap_or(0),
            modified_unix_ms: 0,
        });
    }
    Ok(objects)
}

/// An S3 notification's object key, which is URL-encoded with `+` for spaces.
fn decode_key(key: &str) -> Option<String> {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_created_records_name_their_objects() {
        let event = json!({"Records": [
            {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
             "s3": {"bucket": {"name": "trips"}, "object": {"key": "tlc/yellow+tripdata%3D2024-01.parquet", "size": 12}}},
            {"eventSource": "aws:s3", "eventName": "ObjectRemoved:Delete",
             "s3": {"bucket": {"name": "trips"}, "object": {"key": "gone.parquet"}}},
        ]});
        let found = objects(&event).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].url(), "s3://trips/tlc/yellow tripdata=2024-01.parquet");
        assert_eq!(found[0].size, 12);
        assert!(objects(&json!({"ride": {}})).unwrap_err().contains("S3 ObjectCreated"));
        assert!(objects(&json!({"Records": [{"eventSource": "aws:kinesis"}]})).unwrap_err().contains("not an S3"));
        assert_eq!(decode_key("a%2"), None);
    }
}
