//! Tensors in and out of a model, without the pipeline's feature mapping: what a processor that
//! wraps a model offers to the Open Inference Protocol (KServe v2) endpoints of
//! `tributary serve` ([`crate::Processor::model_metadata`], [`crate::Processor::infer`]).
//! Datatype names are the protocol's (`FP32`, `INT64`, `BYTES`, ...).

use serde::Serialize;
use serde_json::{Value, json};

/// A model input or output as the protocol describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TensorSpec {
    /// Its name in the model.
    pub name: String,
    /// The protocol's datatype name.
    pub datatype: String,
    /// Its dimensions; -1 where any size is accepted (the batch).
    pub shape: Vec<i64>,
}

/// What `GET /v2/models/{name}` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModelMetadata {
    /// The model's name (the processor id).
    pub name: String,
    /// The version serving now.
    pub versions: Vec<String>,
    /// The runtime (`onnxruntime_onnx`).
    pub platform: String,
    /// Inputs, in the model's order.
    pub inputs: Vec<TensorSpec>,
    /// Outputs, in the model's order.
    pub outputs: Vec<TensorSpec>,
}

/// A tensor's values, row-major.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// `BOOL`.
    Bool(Vec<bool>),
    /// `INT32`.
    Int32(Vec<i32>),
    /// `INT64`.
    Int64(Vec<i64>),
    /// `FP32`.
    Fp32(Vec<f32>),
    /// `FP64`.
    Fp64(Vec<f64>),
    /// `BYTES` (UTF-8 strings).
    Bytes(Vec<String>),
}

impl TensorData {
    /// The protocol's datatype name.
    pub fn datatype(&self) -> &'static str {
        match self {
            TensorData::Bool(_) => "BOOL",
            TensorData::Int32(_) => "INT32",
            TensorData::Int64(_) => "INT64",
            TensorData::Fp32(_) => "FP32",
            TensorData::Fp64(_) => "FP64",
            TensorData::Bytes(_) => "BYTES",
        }
    }

    /// How many elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::Bool(v) => v.len(),
            TensorData::Int32(v) => v.len(),
            TensorData::Int64(v) => v.len(),
            TensorData::Fp32(v) => v.len(),
            TensorData::Fp64(v) => v.len(),
            TensorData::Bytes(v) => v.len(),
        }
    }

    /// No elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A named tensor: an inference request's input or a response's output.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// The model's input or output name.
    pub name: String,
    /// Its dimensions; the product is the number of elements.
    pub shape: Vec<i64>,
    /// Its values.
    pub data: TensorData,
}

/// Why an inference request was not served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InferError {
    /// The request does not fit the model (names, datatypes, shapes): the client's mistake.
    Invalid(String),
    /// The model failed.
    Failed(String),
    /// The processor does not take tensors directly.
    Unsupported(String),
}

impl std::fmt::Display for InferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InferError::Invalid(m) | InferError::Failed(m) | InferError::Unsupported(m) => f.write_str(m),
        }
    }
}

/// An Open Inference Protocol `infer` request body: its input tensors and the names of the
/// outputs it asks for (all when empty). `data` may be flat or nested.
///
/// # Errors
/// What is missing or of the wrong type, with the input's index.
pub fn parse_infer_request(request: &Value) -> Result<(Vec<Tensor>, Vec<String>), String> {
    let inputs = request.get("inputs").and_then(Value::as_array).ok_or("the request has no `inputs` array")?;
    let tensors =
        inputs.iter().enumerate().map(|(i, input)| parse_tensor(input).map_err(|e| format!("inputs[{i}]: {e}")));
    let tensors = tensors.collect::<Result<Vec<_>, _>>()?;
    let outputs = match request.get("outputs") {
        None => Vec::new(),
        Some(Value::Array(outputs)) => outputs
            .iter()
            .map(|o| o.get("name").and_then(Value::as_str).map(str::to_owned).ok_or("every output needs a `name`"))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("`outputs` must be an array".into()),
    };
    Ok((tensors, outputs))
}

fn parse_tensor(input: &Value) -> Result<Tensor, String> {
    let name = input.get("name").and_then(Value::as_str).ok_or("no `name`")?.to_string();
    let shape: Vec<i64> = input
        .get("shape")
        .and_then(Value::as_array)
        .ok_or("no `shape` array")?
        .iter()
        .map(|d| d.as_i64().filter(|d| *d >= 0).ok_or("`shape` holds non-negative integers"))
        .collect::<Result<_, _>>()?;
    let datatype = input.get("datatype").and_then(Value::as_str).ok_or("no `datatype`")?;
    let mut flat = Vec::new();
    flatten(input.get("data").ok_or("no `data`")?, &mut flat, 0)?;
    let bad = |what: &str| format!("`data` of a {datatype} tensor holds {what}");
    let data = match datatype {
        "FP32" => TensorData::Fp32(
            flat.iter()
                .map(|v| v.as_f64().map(|f| f as f32).ok_or_else(|| bad("numbers")))
                .collect::<Result<_, _>>()?,
        ),
        "FP64" => {
            TensorData::Fp64(flat.iter().map(|v| v.as_f64().ok_or_else(|| bad("numbers"))).collect::<Result<_, _>>()?)
        }
        "INT32" => TensorData::Int32(
            flat.iter()
                .map(|v| v.as_i64().and_then(|i| i32::try_from(i).ok()).ok_or_else(|| bad("32-bit integers")))
                .collect::<Result<_, _>>()?,
        ),
        "INT64" => {
            TensorData::Int64(flat.iter().map(|v| v.as_i64().ok_or_else(|| bad("integers"))).collect::<Result<_, _>>()?)
        }
        "BOOL" => {
            TensorData::Bool(flat.iter().map(|v| v.as_bool().ok_or_else(|| bad("booleans"))).collect::<Result<_, _>>()?)
        }
        "BYTES" => TensorData::Bytes(
            flat.iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| bad("strings")))
                .collect::<Result<_, _>>()?,
        ),
        other => return Err(format!("datatype {other:?} is not served (FP32, FP64, INT32, INT64, BOOL, BYTES)")),
    };
    Ok(Tensor { name, shape, data })
}

/// Row-major elements of `data`, flat or nested (the protocol allows both).
fn flatten<'a>(data: &'a Value, out: &mut Vec<&'a Value>, depth: usize) -> Result<(), String> {
    if depth > 32 {
        return Err("`data` is nested too deeply".into());
    }
    match data {
        Value::Array(items) => items.iter().try_for_each(|item| flatten(item, out, depth + 1)),
        scalar => {
            out.push(scalar);
            Ok(())
        }
    }
}

/// A tensor as an `infer` response's output.
pub fn tensor_json(tensor: &Tensor) -> Value {
    let data = match &tensor.data {
        TensorData::Bool(v) => json!(v),
        TensorData::Int32(v) => json!(v),
        TensorData::Int64(v) => json!(v),
        TensorData::Fp32(v) => json!(v),
        TensorData::Fp64(v) => json!(v),
        TensorData::Bytes(v) => json!(v),
    };
    json!({"name": tensor.name, "shape": tensor.shape, "datatype": tensor.data.datatype(), "data": data})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_and_flat_data_parse_alike() {
        let nested = json!({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4.5]]}],
                            "outputs": [{"name": "variable"}]});
        let flat = json!({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4.5]}],
                          "outputs": [{"name": "variable"}]});
        let (a, outputs) = parse_infer_request(&nested).unwrap();
        assert_eq!(a, parse_infer_request(&flat).unwrap().0);
        assert_eq!(a[0].data, TensorData::Fp32(vec![1.0, 2.0, 3.0, 4.5]));
        assert_eq!(outputs, vec!["variable".to_string()]);
        let bad = json!({"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": ["a"]}]});
        assert_eq!(parse_infer_request(&bad).unwrap_err(), "inputs[0]: `data` of a INT64 tensor holds integers");
        let deep = (0..100).fold(json!(1), |v, _| json!([v]));
        let deep = json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": deep}]});
        assert!(parse_infer_request(&deep).unwrap_err().contains("nested too deeply"));
    }
}
