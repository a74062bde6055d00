//! `[processors.<id>]` with `type = "ride_duration"`.

use serde::Deserialize;

/// Configuration of the ride-duration processor.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RideDurationConfig {
    /// The ONNX model: a local path (relative to the working directory) or an `s3://` URI. A URI
    /// not ending in `.onnx` is a folder holding `model.onnx` (MLflow's `artifacts/model`).
    pub model: String,
    /// The `model` field of every output envelope.
    #[serde(default = "default_model_name")]
    pub model_name: String,
    /// The `version` field of every output envelope. Default: the MLflow run id when `model`
    /// follows MLflow's S3 layout, else the first 12 hex digits of the model file's SHA-256.
    /// An empty string counts as unset (so `version = "${RUN_ID:-}"` falls back).
    pub version: Option<String>,
    /// ONNX Runtime sessions (batches inferred at the same time). Default 1.
    #[serde(default = "one")]
    pub sessions: usize,
    /// Intra-op threads per session. Default 1: the model is tiny, batches are the parallelism.
    #[serde(default = "one")]
    pub threads: usize,
}

fn default_model_name() -> String {
    "ride_duration_prediction_model".to_string()
}

fn one() -> usize {
    1
}
