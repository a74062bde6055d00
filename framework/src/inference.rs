//! Tensors in and out of a model, without the pipeline's feature mapping: what a processor that
//! wraps a model offers to the Open Inference Protocol (KServe v2) endpoints of
//! `tributary serve` ([`crate::Processor::model_metadata`], [`crate::Processor::infer`]).
//! Datatype names are the protocol's (`FP32`, `INT64`, `BYTES`, ...).

use serde::Serialize;

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
