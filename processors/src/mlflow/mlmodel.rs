//! The `MLmodel` file MLflow writes beside every logged model: which flavors it has (the
//! `onnx` flavor's `data` names the ONNX file), the run or logged model it came from, and its
//! signature (column or tensor specs, stored as JSON strings inside the YAML).

use std::collections::BTreeMap;

use serde::Deserialize;

/// An `MLmodel` file, the parts tributary reads.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct MlModel {
    /// Flavor name -> its settings (`onnx: {data: model.onnx, ...}`, `sklearn: {pickled_model: ...}`).
    #[serde(default)]
    pub flavors: BTreeMap<String, serde_yaml_ng::Value>,
    /// The run that logged the model.
    pub run_id: Option<String>,
    /// MLflow 3's logged model id (`m-...`).
    pub model_id: Option<String>,
    /// The MLflow version that wrote the file.
    pub mlflow_version: Option<String>,
    /// The model signature, when logged with one.
    pub signature: Option<RawSignature>,
}

/// `signature:` as MLflow writes it: JSON arrays in YAML strings.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RawSignature {
    /// The input specs (JSON).
    pub inputs: Option<String>,
    /// The output specs (JSON).
    pub outputs: Option<String>,
}

/// One input of a signature.
#[derive(Clone, Debug, PartialEq)]
pub enum SignatureInput {
    /// A tensor spec: `{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}, "name": "x"}`.
    Tensor {
        /// The input's name (absent for a single unnamed tensor).
        name: Option<String>,
        /// numpy dtype name (`float32`, `int64`, `str`, ...).
        dtype: String,
        /// Shape, -1 for a free dimension.
        shape: Vec<i64>,
    },
    /// A column spec (`{"type": "double", "name": "trip_distance"}`), as a DataFrame input has.
    Column {
        /// The column's name.
        name: Option<String>,
        /// MLflow's column type (`double`, `long`, `string`, ...).
        kind: String,
    },
}

impl std::fmt::Display for SignatureInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureInput::Tensor { name, dtype, shape } => {
                write!(f, "{}: tensor {dtype} {shape:?}", name.as_deref().unwrap_or("(unnamed)"))
            }
            SignatureInput::Column { name, kind } => {
                write!(f, "{}: column {kind}", name.as_deref().unwrap_or("(unnamed)"))
            }
        }
    }
}

impl MlModel {
    /// Parses an `MLmodel` file.
    ///
    /// # Errors
    /// The text is not YAML of that shape.
    pub fn parse(text: &str) -> Result<Self, String> {
        serde_yaml_ng::from_str(text).map_err(|e| format!("MLmodel is not valid: {e}"))
    }

    /// The ONNX file inside the model folder (the `onnx` flavor's `data`).
    ///
    /// # Errors
    /// The model has no `onnx` flavor; for a scikit-learn pickle the message says how to log an
    /// ONNX version of it.
    pub fn onnx_data(&self, uri: &str) -> Result<String, String> {
        if let Some(onnx) = self.flavors.get("onnx") {
            return Ok(onnx.get("data").and_then(|d| d.as_str()).unwrap_or("model.onnx").to_string());
        }
        let flavors: Vec<&str> = self.flavors.keys().map(String::as_str).collect();
        if self.flavors.contains_key("sklearn") {
            return Err(format!(
                "{uri} is a scikit-learn model (MLflow flavor `sklearn`): a Python pickle, which only Python \
                 can load. Log an ONNX version of it as a new version of the same registered model with \
                 `.venv/bin/python processors/models/export_to_mlflow.py {uri}` (skl2onnx; see \
                 docs/configuration.md, \"Models from MLflow\"), then point `model` at that version"
            ));
        }
        Err(format!("{uri} has no `onnx` flavor (its flavors: {flavors:?}); log it with mlflow.onnx.log_model"))
    }

    /// The signature's inputs, when there is a signature.
    ///
    /// # Errors
    /// The signature's JSON does not parse.
    pub fn signature_inputs(&self) -> Result<Option<Vec<SignatureInput>>, String> {
        let Some(text) = self.signature.as_ref().and_then(|s| s.inputs.as_deref()) else { return Ok(None) };
        let specs: Vec<serde_json::Value> =
            serde_json::from_str(text).map_err(|e| format!("MLmodel signature inputs are not JSON: {e}"))?;
        let name = |s: &serde_json::Value| s["name"].as_str().map(str::to_string);
        Ok(Some(
            specs
                .iter()
                .map(|s| match s["type"].as_str() {
                    Some("tensor") => SignatureInput::Tensor {
                        name: name(s),
                        dtype: s["tensor-spec"]["dtype"].as_str().unwrap_or_default().to_string(),
                        shape: s["tensor-spec"]["shape"]
                            .as_array()
                            .map(|d| d.iter().filter_map(serde_json::Value::as_i64).collect())
                            .unwrap_or_default(),
                    },
                    kind => SignatureInput::Column { name: name(s), kind: kind.unwrap_or_default().to_string() },
                })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As mlflow 3.17 writes it for `mlflow.onnx.log_model(..., signature=...)`, long JSON folded.
    const ONNX: &str = "artifact_path: null\nflavors:\n  onnx:\n    code: null\n    data: model.onnx\n    onnx_version: 1.23.2\n    providers:\n    - CUDAExecutionProvider\n    - CPUExecutionProvider\n  python_function:\n    data: model.onnx\n    loader_module: mlflow.onnx\nmlflow_version: 3.17.2\nmodel_id: m-0123\nrun_id: abc\nsignature:\n  inputs: '[{\"type\": \"tensor\", \"tensor-spec\": {\"dtype\": \"float32\", \"shape\":\n    [-1, 4]}, \"name\": \"float_input\"}]'\n  outputs: null\n  params: null\n";

    #[test]
    fn onnx_flavor_and_folded_signature() {
        let m = MlModel::parse(ONNX).unwrap_or_default();
        assert_eq!(m.onnx_data("x"), Ok("model.onnx".to_string()));
        assert_eq!(m.model_id.as_deref(), Some("m-0123"));
        assert_eq!(
            m.signature_inputs(),
            Ok(Some(vec![SignatureInput::Tensor {
                name: Some("float_input".into()),
                dtype: "float32".into(),
                shape: vec![-1, 4]
            }]))
        );
    }

    /// Everything tributary does with an `MLmodel` it read from a store.
    fn read_all(text: &str) {
        if let Ok(m) = MlModel::parse(text) {
            let _ = m.onnx_data("uri");
            let _ = m.signature_inputs().map(|inputs| inputs.map(|i| i.iter().map(ToString::to_string).count()));
        }
    }

    proptest::proptest! {
        /// Any text as an `MLmodel` file: an error or a model, never a panic.
        #[test]
        fn any_text_is_an_error_or_an_mlmodel(text in "\\PC{0,400}") {
            read_all(&text);
        }

        /// A real `MLmodel` with one character changed or cut short: an error or a model, never a
        /// panic (the signature's JSON inside the YAML included).
        #[test]
        fn damaged_mlmodels_are_an_error_or_an_mlmodel(at in 0usize..600, c in proptest::prelude::any::<char>(), cut in 0usize..600) {
            let mut chars: Vec<char> = ONNX.chars().collect();
            let at = at % chars.len();
            chars[at] = c;
            chars.truncate(chars.len() - cut % chars.len());
            read_all(&chars.into_iter().collect::<String>());
        }
    }

    #[test]
    fn sklearn_flavor_names_the_migration() {
        let m = MlModel::parse("flavors:\n  sklearn:\n    pickled_model: model.pkl\n  python_function: {}\n")
            .unwrap_or_default();
        let err = m.onnx_data("models:/rides@champion").err().unwrap_or_default();
        assert!(err.contains("Python pickle") && err.contains("export_to_mlflow.py models:/rides@champion"), "{err}");
    }
}
