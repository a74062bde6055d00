//! Parquet inputs on S3 (`path = "s3://bucket/prefix/"`, or with a glob in the last part:
//! `s3://bucket/trips/yellow_tripdata_2024-*.parquet`): listed in key order, each downloaded to
//! a temporary file before it is read, so memory stays bounded whatever the object's size.

use std::path::Path;

use aws_sdk_s3::Client;
use tokio::io::AsyncWriteExt;

/// One object to score.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Object {
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Last modified, milliseconds since the Unix epoch.
    pub modified_unix_ms: u64,
}

impl S3Object {
    /// `s3://bucket/key`.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// The key's last part (the output file takes it).
    pub fn name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or(&self.key)
    }
}

/// `(bucket, rest)` of an `s3://` URL.
pub fn parse_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then_some((bucket, key))
}

/// The objects `url` names: a key, every `*.parquet` object directly under a prefix ending in
/// `/`, or those matching a glob in the last part; in key order.
///
/// # Errors
/// The listing fails, or nothing matches.
pub async fn list(client: &Client, url: &str) -> Result<Vec<S3Object>, String> {
    let (bucket, rest) = parse_url(url).ok_or_else(|| format!("{url}: expected s3://bucket/prefix"))?;
    let (prefix, pattern) = match rest.rsplit_once('/') {
        Some((folder, last)) => (format!("{folder}/"), last.to_string()),
        None => (String::new(), rest.to_string()),
    };
    let pattern = if pattern.is_empty() { "*.parquet".to_string() } else { pattern };
    let mut objects = Vec::new();
    let mut pages = client.list_objects_v2().bucket(bucket).prefix(&prefix).delimiter("/").into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| format!("{url}: cannot list: {}", tributary_aws::describe(&e)))?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            let name = key.strip_prefix(&prefix).unwrap_or(key);
            if super::wildcard(&pattern, name) {
                objects.push(S3Object {
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                    size: object.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    modified_unix_ms: object
                        .last_modified()
                        .and_then(|t| u64::try_from(t.to_millis().ok()?).ok())
                        .unwrap_or(0),
                });
            }
        }
    }
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    if objects.is_empty() {
        return Err(format!("{url}: no object matches"));
    }
    Ok(objects)
}

/// Downloads `object` to `dest`, streaming.
///
/// # Errors
/// The object cannot be read or the file written.
pub async fn download(client: &Client, object: &S3Object, dest: &Path) -> Result<(), String> {
    let at = |e: String| format!("{}: {e}", object.url());
    let response = client
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .send()
        .await
        .map_err(|e| at(format!("cannot read: {}", tributary_aws::describe(&e))))?;
    let mut body = response.body;
    let mut file =
        tokio::fs::File::create(dest).await.map_err(|e| at(format!("cannot create {}: {e}", dest.display())))?;
    while let Some(chunk) = body.try_next().await.map_err(|e| at(format!("download failed: {e}")))? {
        file.write_all(&chunk).await.map_err(|e| at(format!("cannot write {}: {e}", dest.display())))?;
    }
    file.flush().await.map_err(|e| at(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(parse_url("s3://b/trips/"), Some(("b", "trips/")));
        assert_eq!(parse_url("s3://b"), Some(("b", "")));
        assert_eq!(parse_url("s3:///x"), None);
        assert_eq!(parse_url("data/x"), None);
    }
}
