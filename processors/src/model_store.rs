//! Where models come from: a local path, or an `s3://bucket/key` URI read with the AWS SDK's
//! standard credential chain and endpoint variables (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`).
//!
//! An S3 URI that does not end in `.onnx` is a folder (an MLflow `artifacts/model` folder, say)
//! and `model.onnx` inside it is read. In the MLflow layout
//! (`s3://<bucket>/<experiment>/<run_id>/artifacts/...`) the run id becomes the model version.

use sha2::{Digest, Sha256};

/// A model's bytes and what we know about where they came from.
#[derive(Clone, Debug)]
pub struct ModelBytes {
    /// The ONNX file's content.
    pub bytes: Vec<u8>,
    /// Where they were read (the resolved path or URI).
    pub location: String,
    /// The MLflow run id, when the location follows MLflow's layout.
    pub run_id: Option<String>,
}

impl ModelBytes {
    /// A version string: the MLflow run id, else the first 12 hex digits of the file's SHA-256.
    pub fn default_version(&self) -> String {
        self.run_id.clone().unwrap_or_else(|| {
            let digest = Sha256::digest(&self.bytes);
            digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
        })
    }
}

/// Errors reading a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelStoreError {
    /// A local file could not be read.
    #[error("cannot read model file {path:?}: {message}")]
    File {
        /// The path.
        path: String,
        /// The OS error.
        message: String,
    },
    /// An S3 URI is malformed.
    #[error("{0:?} is not an s3://bucket/key URI")]
    BadUri(String),
    /// S3 refused or failed.
    #[error("cannot read {uri}: {message}")]
    S3 {
        /// The resolved URI.
        uri: String,
        /// The service's answer.
        message: String,
    },
    /// This build was made without the `s3` feature.
    #[error("{0}: this build has no S3 support (build with the `s3` feature)")]
    NoS3(String),
}

/// Reads a model from a local path or an `s3://` URI.
///
/// # Errors
/// A missing file, a malformed URI, or an S3 error (missing bucket or key, no permission).
pub async fn fetch(location: &str) -> Result<ModelBytes, ModelStoreError> {
    if let Some(rest) = location.strip_prefix("s3://") {
        let (bucket, key) = rest
            .split_once('/')
            .filter(|(b, k)| !b.is_empty() && !k.is_empty())
            .ok_or_else(|| ModelStoreError::BadUri(location.to_string()))?;
        let key =
            if key.ends_with(".onnx") { key.to_string() } else { format!("{}/model.onnx", key.trim_end_matches('/')) };
        let bytes = s3_get(bucket, &key).await?;
        Ok(ModelBytes { bytes, location: format!("s3://{bucket}/{key}"), run_id: mlflow_run_id(&key) })
    } else {
        let bytes = tokio::fs::read(location)
            .await
            .map_err(|e| ModelStoreError::File { path: location.to_string(), message: e.to_string() })?;
        Ok(ModelBytes { bytes, location: location.to_string(), run_id: None })
    }
}

/// `<experiment>/<run_id>/artifacts/...` -> the run id.
fn mlflow_run_id(key: &str) -> Option<String> {
    let parts: Vec<&str> = key.split('/').collect();
    let i = parts.iter().position(|p| *p == "artifacts")?;
    (i >= 1).then(|| parts[i - 1].to_string()).filter(|id| !id.is_empty())
}

#[cfg(feature = "s3")]
async fn s3_get(bucket: &str, key: &str) -> Result<Vec<u8>, ModelStoreError> {
    let uri = format!("s3://{bucket}/{key}");
    let client = tributary_aws::s3_client().await;
    let object = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| ModelStoreError::S3 { uri: uri.clone(), message: tributary_aws::describe(&e) })?;
    let body =
        object.body.collect().await.map_err(|e| ModelStoreError::S3 { uri: uri.clone(), message: e.to_string() })?;
    Ok(body.into_bytes().to_vec())
}

#[cfg(not(feature = "s3"))]
async fn s3_get(bucket: &str, key: &str) -> Result<Vec<u8>, ModelStoreError> {
    Err(ModelStoreError::NoS3(format!("s3://{bucket}/{key}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_id_from_mlflow_layout() {
        assert_eq!(mlflow_run_id("1/abc123/artifacts/model/model.onnx").as_deref(), Some("abc123"));
        assert_eq!(mlflow_run_id("models/model.onnx"), None);
    }

    #[tokio::test]
    async fn missing_file_is_named() {
        let err = fetch("no/such/model.onnx").await.unwrap_err().to_string();
        assert!(err.contains("no/such/model.onnx"), "{err}");
    }

    #[tokio::test]
    async fn bad_uri() {
        assert!(matches!(fetch("s3://bucket-only").await, Err(ModelStoreError::BadUri(_))));
    }
}
