//! `[processors.<id>]` with `type = "onnx"`.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Configuration of a generic ONNX model consumer.
///
/// ```toml
/// [processors.tip]
/// type = "onnx"
/// inputs = ["rides"]
/// model = "processors/models/tip/model.onnx"
/// model_name = "tip_prediction_model"
/// echo = ["ride_id"]
/// outputs = { tip_amount = "tip_amount" }
///
/// [processors.tip.features]
/// trip_distance = { field = "ride.trip_distance", type = "float" }
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnnxConfig {
    /// The ONNX model: a local path or an `s3://` URI (a URI not ending in `.onnx` is a folder
    /// holding `model.onnx`, as MLflow stores it).
    pub model: String,
    /// The `model` field of every output envelope.
    pub model_name: String,
    /// The `version` field of every output envelope. Default: the MLflow run id when `model`
    /// follows MLflow's S3 layout, else the first 12 hex digits of the model's SHA-256. An
    /// empty string counts as unset.
    pub version: Option<String>,
    /// One entry per model input, keyed by the input's name in the model: where its value comes
    /// from in the event, and its type. Every model input must be listed.
    pub features: BTreeMap<String, Feature>,
    /// The prediction's fields: `field name = "model output name"`. Each output must hold one
    /// number per record.
    pub outputs: BTreeMap<String, String>,
    /// Event fields (dotted paths) copied into the prediction under their last path segment,
    /// such as `ride_id`. A record without one is rejected.
    #[serde(default)]
    pub echo: Vec<String>,
    /// ONNX Runtime sessions (batches inferred at the same time). Default 1.
    #[serde(default = "one")]
    pub sessions: usize,
    /// Intra-op threads per session. Default 1.
    #[serde(default = "one")]
    pub threads: usize,
}

/// Where one model input comes from. Exactly one of `field` and `template` is set.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feature {
    /// A dotted path into the event, such as `ride.trip_distance`.
    pub field: Option<String>,
    /// A template over the event's fields, such as `"{ride.PULocationID}_{ride.DOLocationID}"`
    /// (for string inputs).
    pub template: Option<String>,
    /// The tensor element type the model declares for this input.
    #[serde(rename = "type")]
    pub kind: FeatureType,
}

/// A model input's element type.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FeatureType {
    /// 32-bit float (`tensor(float)`); JSON numbers.
    Float,
    /// 64-bit float (`tensor(double)`); JSON numbers.
    Double,
    /// 64-bit integer (`tensor(int64)`); JSON integers.
    Int64,
    /// String (`tensor(string)`); JSON strings, or numbers and booleans as their JSON text.
    String,
}

fn one() -> usize {
    1
}
