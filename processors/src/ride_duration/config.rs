//! `[processors.<id>]` with `type = "ride_duration"`.

use serde::Deserialize;

/// Configuration of the ride-duration processor.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RideDurationConfig {
    /// The ONNX model: a local path (relative to the working directory), an `s3://` URI or an
    /// MLflow URI (`models:/<name>@<alias>`, `models:/<name>/<version>`, `models:/<name>/latest`,
    /// `runs:/<run_id>/model`). A location not ending in `.onnx` is a model folder (its
    /// `MLmodel` names the ONNX file, else `model.onnx`).
    pub model: String,
    /// The `model` field of every output envelope.
    #[serde(default = "default_model_name")]
    pub model_name: String,
    /// The `version` field of every output envelope. Default: the registered version for
    /// `models:/`, the run id for `runs:/` and MLflow's S3 layout, else the first 12 hex digits
    /// of the model file's SHA-256.
    /// An empty string counts as unset (so `version = "${RUN_ID:-}"` falls back).
    pub version: Option<String>,
    /// Seconds between checks of where a `models:/<name>@<alias>` or `models:/<name>/latest`
    /// `model` points; a new version takes over at a batch boundary, as for the `onnx`
    /// processor. Default: off (0).
    #[serde(default)]
    pub reload_interval_s: u64,
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
