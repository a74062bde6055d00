//! Processor `tip`: **a placeholder model consumer.** The model behind it
//! (`processors/models/tip/model.onnx`, trained by `processors/models/tip/train.py` on
//! synthetic rides) is a one-feature linear regression, not a tip model anyone should use. The
//! plumbing is real: it is the generic [`onnx`](crate::onnx) processor with the tip model's
//! feature mapping built in, and it emits its own envelope:
//!
//! ```json
//! {"model": "tip_prediction_model", "version": "<sha>", "prediction": {"tip_amount": 2.31, "ride_id": 156}}
//! ```
//!
//! ```toml
//! [processors.tip]
//! type = "tip"
//! inputs = ["rides"]
//! model = "processors/models/tip/model.onnx"
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use tributary_framework::Processor;
use tributary_framework::config::ComponentSpec;
use tributary_framework::registry::BuildFuture;

use crate::onnx::{ElementType, Feature, OnnxConfig, OnnxProcessor, OutputSpec};

/// `[processors.<id>]` with `type = "tip"`.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TipConfig {
    /// The tip model: a local path or an `s3://` URI. Default
    /// `processors/models/tip/model.onnx` (relative to the working directory).
    #[serde(default = "default_model")]
    pub model: String,
    /// The `model` field of every envelope. Default `tip_prediction_model`.
    #[serde(default = "default_model_name")]
    pub model_name: String,
    /// The `version` field. Default: derived from the model, as for `onnx`.
    pub version: Option<String>,
}

fn default_model() -> String {
    "processors/models/tip/model.onnx".into()
}

fn default_model_name() -> String {
    "tip_prediction_model".into()
}

impl TipConfig {
    /// The equivalent `onnx` configuration.
    pub fn to_onnx(&self) -> OnnxConfig {
        let feature = Feature::field("ride.trip_distance", ElementType::Float);
        OnnxConfig {
            model: self.model.clone(),
            model_name: self.model_name.clone(),
            version: self.version.clone(),
            features: BTreeMap::from([("trip_distance".to_string(), feature)]),
            outputs: BTreeMap::from([("tip_amount".to_string(), OutputSpec::Name("tip_amount".to_string()))]),
            echo: vec!["ride_id".into()],
            reload_interval_s: 0,
            shadow: None,
            sessions: 1,
            threads: 1,
        }
    }
}

/// Builds the processor.
pub fn build(spec: ComponentSpec) -> BuildFuture<Arc<dyn Processor>> {
    Box::pin(async move {
        let config: TipConfig = spec.parse()?;
        let processor = OnnxProcessor::load(&config.to_onnx()).await.map_err(|(key, e)| {
            let key = if key.starts_with("features") || key == "outputs" { "model".to_string() } else { key };
            spec.error(&key, format!("not a tip model: {e}"))
        })?;
        Ok(Arc::new(processor) as Arc<dyn Processor>)
    })
}
