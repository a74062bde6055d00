//! `[processors.<id>]` with `type = "onnx"`.

use std::collections::BTreeMap;

use serde::Deserialize;

pub use super::tensor::ElementType;

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
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OnnxConfig {
    /// The ONNX model: a local path, an `s3://` URI, an MLflow model URI
    /// (`models:/<name>@<alias>`, `models:/<name>/<version>`, `models:/<name>/latest`,
    /// `runs:/<run_id>/<path>`, resolved through `MLFLOW_TRACKING_URI`) or an
    /// `mlflow-artifacts:/` folder. A location not ending in `.onnx` is a model folder: its
    /// `MLmodel` file names the ONNX file (else `model.onnx`).
    pub model: String,
    /// The `model` field of every output envelope.
    pub model_name: String,
    /// The `version` field of every output envelope. Default: the registered model version for
    /// `models:/` URIs, the run id for `runs:/` URIs, a model folder's `MLmodel` `run_id` and
    /// MLflow 2's S3 layout, else the first 12 hex digits of the model's SHA-256. An empty string counts as unset. Not allowed with
    /// `reload_interval_s` (the version then follows the registry).
    pub version: Option<String>,
    /// One entry per model input, keyed by the input's name in the model: where its values come
    /// from in the event, and their type. Every model input must be listed
    /// (`tributary inspect MODEL` prints the list to fill in).
    pub features: BTreeMap<String, Feature>,
    /// The prediction's fields: `field name = "model output name"`, or a table picking part of
    /// an output (`{ output = "probabilities", index = 1 }`).
    pub outputs: BTreeMap<String, OutputSpec>,
    /// Event fields (dotted paths) copied into the prediction under their last path segment,
    /// such as `ride_id`. A record without one is rejected.
    #[serde(default)]
    pub echo: Vec<String>,
    /// Seconds between checks of where `model` points, for `models:/<name>@<alias>` and
    /// `models:/<name>/latest`: when the alias moves (or a new version is registered), the new
    /// version is loaded and checked in the background and takes over at a batch boundary; one
    /// that fails to load or to check leaves the old one serving. Default: off (0).
    #[serde(default)]
    pub reload_interval_s: u64,
    /// A second model (any location `model` takes, such as `models:/<name>@challenger`) run on
    /// the same batches with the same features and outputs, after the primary, never changing
    /// its outcomes. Its comparisons go to the sink whose `inputs` are
    /// `["<this processor's id>.shadow"]`. With `reload_interval_s`, it follows its alias too.
    pub shadow: Option<String>,
    /// ONNX Runtime sessions (batches inferred at the same time). Default 1.
    #[serde(default = "one")]
    pub sessions: usize,
    /// Intra-op threads per session. Default 1.
    #[serde(default = "one")]
    pub threads: usize,
}

/// Where one model input's values come from. Exactly one of `field`, `fields`, `template` and
/// `entries` is set.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Feature {
    /// A dotted path into the event, such as `ride.trip_distance`: one value for an `[N]` or
    /// `[N, 1]` input, or an array (nested arrays are read row-major) of as many values as one
    /// record takes, for an input such as `[N, 6]` or `[N, 3, 8, 8]`.
    pub field: Option<String>,
    /// Several dotted paths, one value each, in the order of the model's columns: an `[N, F]`
    /// input with F = the number of fields (scikit-learn's `FloatTensorType([None, F])`).
    pub fields: Option<Vec<String>>,
    /// A template over the event's fields, such as `"{ride.PULocationID}_{ride.DOLocationID}"`
    /// (for string inputs).
    pub template: Option<String>,
    /// For a `map(string, float)` input (skl2onnx's `DictVectorizer`): the map's entries, keyed
    /// as scikit-learn's `DictVectorizer` saw them. A string value `v` under key `k` becomes
    /// the feature `k=v` with value 1, a number stays the value of `k`, as `DictVectorizer`
    /// does; features the model has not seen count as 0.
    pub entries: Option<BTreeMap<String, Entry>>,
    /// The tensor element type the model declares for this input (for `entries`: the map's
    /// value type): `float`, `double`, `int32`, `int64`, `bool` or `string`.
    #[serde(rename = "type")]
    pub kind: ElementType,
}

impl Feature {
    /// A feature read from one field.
    pub fn field(path: &str, kind: ElementType) -> Self {
        Feature { field: Some(path.to_string()), kind, ..Feature::default() }
    }
}

/// One entry of a `map(string, float)` input: a field or a template.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// A dotted path into the event.
    pub field: Option<String>,
    /// A template over the event's fields (its value is a string).
    pub template: Option<String>,
}

/// A prediction field: a whole model output, or part of one.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum OutputSpec {
    /// The whole output: a number for `[N]` and `[N, 1]`, an array for `[N, K]`, an object of
    /// class -> probability for a ZipMap.
    Name(String),
    /// Part of an output.
    Pick(OutputPick),
}

/// Part of a model output, such as one class's probability.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputPick {
    /// The model output's name.
    pub output: String,
    /// The value at this position of the record's row (`index = 1`: the positive class of a
    /// binary classifier's `[N, 2]` probabilities, or of its ZipMap in class order).
    pub index: Option<usize>,
    /// `"max"`: the highest value of the row, the predicted class's probability.
    pub select: Option<Select>,
}

/// A reduction of a record's row of values.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Select {
    /// The highest value.
    Max,
}

impl OutputSpec {
    /// The model output it reads.
    pub fn output(&self) -> &str {
        match self {
            OutputSpec::Name(name) => name,
            OutputSpec::Pick(pick) => &pick.output,
        }
    }
}

fn one() -> usize {
    1
}
