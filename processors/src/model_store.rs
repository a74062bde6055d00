//! Where models come from: a local path, an `s3://bucket/key` URI (the AWS SDK's standard
//! credential chain and endpoint variables, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`), an
//! MLflow model URI (`models:/...`, `runs:/...`, see [`crate::mlflow`]) or an
//! `mlflow-artifacts:/` folder.
//!
//! A location that does not end in `.onnx` is a model folder. When it holds an `MLmodel` file
//! (MLflow's), that file decides: the `onnx` flavor's `data` file is read, a scikit-learn pickle
//! is refused with the way to log an ONNX version, and the signature is kept for the processor
//! to check. A folder without `MLmodel` holds `model.onnx`. In MLflow 2's S3 layout
//! (`s3://<bucket>/<experiment>/<run_id>/artifacts/...`) the run id becomes the model version.

use sha2::{Digest, Sha256};

use crate::mlflow::{self, MlModel, ModelUri, SignatureInput, TrackingClient};

/// A model's bytes and what we know about where they came from.
#[derive(Clone, Debug)]
pub struct ModelBytes {
    /// The ONNX file's content.
    pub bytes: Vec<u8>,
    /// Where they were read (the resolved path or URI).
    pub location: String,
    /// The version the location names: the registered model version (`models:/`), the run id
    /// (`runs:/`, the `MLmodel` file's `run_id`, or MLflow 2's S3 layout).
    pub version: Option<String>,
    /// The `MLmodel` signature's inputs, when the folder has one with a signature.
    pub signature: Option<Vec<SignatureInput>>,
    /// What an MLflow URI resolved to, for `inspect` and logs.
    pub resolution: Option<String>,
}

impl ModelBytes {
    /// A version string: the one the location names, else the first 12 hex digits of the file's
    /// SHA-256.
    pub fn default_version(&self) -> String {
        self.version.clone().unwrap_or_else(|| {
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
    /// An MLflow URI could not be resolved, or its folder does not hold an ONNX model.
    #[error("{uri}: {message}")]
    Mlflow {
        /// The URI as configured.
        uri: String,
        /// What went wrong.
        message: String,
    },
}

/// Reads a model from a local path, an `s3://` URI, an MLflow model URI or an
/// `mlflow-artifacts:/` folder.
///
/// # Errors
/// A missing file, a malformed URI, an S3 error (missing bucket or key, no permission), an
/// unreachable tracking server, or a model folder without an ONNX model.
pub async fn fetch(location: &str) -> Result<ModelBytes, ModelStoreError> {
    let mlflow_error = |message: String| ModelStoreError::Mlflow { uri: location.to_string(), message };
    if let Some(uri) = ModelUri::parse(location) {
        let uri = uri.map_err(mlflow_error)?;
        let client = TrackingClient::from_env().map_err(mlflow_error)?;
        let resolution = mlflow::resolve(&uri, &client).await.map_err(mlflow_error)?;
        let mut model = from_folder(&resolution.folder, Some(&client), location).await.map_err(mlflow_error)?;
        model.version = Some(resolution.version);
        model.resolution = Some(resolution.description);
        return Ok(model);
    }
    if location.starts_with("mlflow-artifacts:") {
        let client = TrackingClient::from_env().map_err(mlflow_error)?;
        return from_folder(location, Some(&client), location).await.map_err(mlflow_error);
    }
    if let Some(rest) = location.strip_prefix("s3://") {
        let (bucket, key) = rest
            .split_once('/')
            .filter(|(b, k)| !b.is_empty() && !k.is_empty())
            .ok_or_else(|| ModelStoreError::BadUri(location.to_string()))?;
        if !key.ends_with(".onnx") {
            let folder = format!("s3://{bucket}/{}", key.trim_end_matches('/'));
            let mut model = from_folder(&folder, None, location)
                .await
                .map_err(|message| ModelStoreError::S3 { uri: folder.clone(), message })?;
            model.version = model.version.or_else(|| mlflow_run_id(key));
            return Ok(model);
        }
        let bytes = s3_get(bucket, key).await?;
        return Ok(ModelBytes {
            bytes,
            location: location.to_string(),
            version: mlflow_run_id(key),
            signature: None,
            resolution: None,
        });
    }
    if std::path::Path::new(location).is_dir() {
        return from_folder(location, None, location)
            .await
            .map_err(|message| ModelStoreError::File { path: location.to_string(), message });
    }
    let bytes = tokio::fs::read(location)
        .await
        .map_err(|e| ModelStoreError::File { path: location.to_string(), message: e.to_string() })?;
    Ok(ModelBytes { bytes, location: location.to_string(), version: None, signature: None, resolution: None })
}

/// Reads the model in `folder`: the `MLmodel` file's ONNX data when there is one, else
/// `model.onnx`. `configured` is the location as the user wrote it, for messages.
async fn from_folder(folder: &str, client: Option<&TrackingClient>, configured: &str) -> Result<ModelBytes, String> {
    let folder = folder.trim_end_matches('/');
    let read = async |uri: String| match client {
        Some(client) => mlflow::read(&uri, client).await,
        None => mlflow::read_plain(&uri).await,
    };
    let (file, signature, run_id) = match read(format!("{folder}/MLmodel")).await? {
        Some(text) => {
            let mlmodel = MlModel::parse(&String::from_utf8_lossy(&text)).map_err(|e| format!("{folder}/{e}"))?;
            let signature = mlmodel.signature_inputs().map_err(|e| format!("{folder}/{e}"))?;
            (mlmodel.onnx_data(configured)?, signature, mlmodel.run_id)
        }
        None => ("model.onnx".to_string(), None, None),
    };
    let location = format!("{folder}/{file}");
    let missing = || {
        let why = if location.starts_with("s3://") { "NoSuchKey, no such object" } else { "no such file" };
        format!("{location} does not exist ({why})")
    };
    let bytes = read(location.clone()).await?.ok_or_else(missing)?;
    // The run that logged the model, as MLmodel says (MLflow 3 keeps logged models outside the
    // run's folder, so the path alone does not tell).
    Ok(ModelBytes { bytes, location, version: run_id, signature, resolution: None })
}

/// `<experiment>/<run_id>/artifacts/...` -> the run id.
fn mlflow_run_id(key: &str) -> Option<String> {
    let parts: Vec<&str> = key.split('/').collect();
    let i = parts.iter().position(|p| *p == "artifacts")?;
    (i >= 1).then(|| parts[i - 1].to_string()).filter(|id| !id.is_empty())
}

/// An S3 object, `None` when the key does not exist; `endpoint` overrides the SDK's endpoint
/// (MLflow's `MLFLOW_S3_ENDPOINT_URL`).
///
/// # Errors
/// S3 refused or failed otherwise (the message does not repeat the URI), or this build has no
/// S3 support.
#[cfg(feature = "s3")]
pub(crate) async fn s3_get_optional(
    bucket: &str,
    key: &str,
    endpoint: Option<String>,
) -> Result<Option<Vec<u8>>, String> {
    use aws_sdk_s3::operation::get_object::GetObjectError;
    let client = tributary_aws::s3_client_at(endpoint).await;
    match client.get_object().bucket(bucket).key(key).send().await {
        Ok(object) => Ok(Some(object.body.collect().await.map_err(|e| e.to_string())?.into_bytes().to_vec())),
        Err(e) if matches!(e.as_service_error(), Some(GetObjectError::NoSuchKey(_))) => Ok(None),
        Err(e) => Err(tributary_aws::describe(&e)),
    }
}

#[cfg(not(feature = "s3"))]
pub(crate) async fn s3_get_optional(_: &str, _: &str, _: Option<String>) -> Result<Option<Vec<u8>>, String> {
    Err("this build has no S3 support (build with the `s3` feature)".into())
}

/// An S3 object that must exist (a model key ending in `.onnx`).
async fn s3_get(bucket: &str, key: &str) -> Result<Vec<u8>, ModelStoreError> {
    let uri = || format!("s3://{bucket}/{key}");
    match s3_get_optional(bucket, key, None).await {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(ModelStoreError::S3 { uri: uri(), message: "NoSuchKey, no such object".into() }),
        Err(message) => Err(ModelStoreError::S3 { uri: uri(), message }),
    }
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
