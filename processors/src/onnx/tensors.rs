//! A loaded model's tensors as the Open Inference Protocol sees them (`tributary serve`'s
//! `/v2/models/{name}` and `/infer`): metadata from its ports, and inference on tensors given
//! by name, bypassing the feature mapping.
//!
//! A DictVectorizer input (skl2onnx's `map(string, float)`, rewritten at load, see [`super::graph`])
//! is served as what the session takes: `FP32 [-1, V]` rows over its vocabulary. A ZipMap output
//! is served as `FP32 [-1, classes]` probabilities.

use std::sync::Arc;

use tributary_framework::inference::{InferError, ModelMetadata, Tensor, TensorData, TensorSpec};

use super::model::{Feed, OnnxModel, Port, PortKind};
use super::tensor::{ElementType, Values};

/// The protocol's datatype for an element type.
fn datatype(ty: ElementType) -> &'static str {
    match ty {
        ElementType::Float => "FP32",
        ElementType::Double => "FP64",
        ElementType::Int32 => "INT32",
        ElementType::Int64 => "INT64",
        ElementType::Bool => "BOOL",
        ElementType::String => "BYTES",
    }
}

/// The element type and dimensions a port is served with, when it can be.
fn served(port: &Port) -> Option<(ElementType, Vec<i64>)> {
    match &port.kind {
        PortKind::Tensor { ty, dims } => Some((*ty, dims.clone())),
        PortKind::Dict { vocabulary, ty, .. } => Some((*ty, vec![-1, vocabulary.len() as i64])),
        PortKind::ClassMap { labels } => Some((ElementType::Float, vec![-1, labels.len() as i64])),
        PortKind::Unsupported(_) => None,
    }
}

fn spec(port: &Port) -> Option<TensorSpec> {
    served(port).map(|(ty, shape)| TensorSpec { name: port.name.clone(), datatype: datatype(ty).into(), shape })
}

/// `GET /v2/models/{name}`: the ports the protocol can carry.
pub fn metadata(model: &OnnxModel, name: &str) -> ModelMetadata {
    ModelMetadata {
        name: name.to_string(),
        versions: vec![model.version.clone()],
        platform: "onnxruntime_onnx".into(),
        inputs: model.inputs().iter().filter_map(spec).collect(),
        outputs: model.outputs().iter().filter_map(spec).collect(),
    }
}

/// Runs `model` on `inputs` (every model input, by name, sharing the first dimension) and
/// returns the `outputs` asked for (all that can be served when empty).
///
/// # Errors
/// A missing or unknown input, a datatype or shape that does not fit, an unknown output
/// ([`InferError::Invalid`]); ONNX Runtime failing ([`InferError::Failed`]).
pub async fn infer(model: &Arc<OnnxModel>, inputs: Vec<Tensor>, outputs: &[String]) -> Result<Vec<Tensor>, InferError> {
    let invalid = |m: String| InferError::Invalid(m);
    let mut given: Vec<Option<Tensor>> = inputs.into_iter().map(Some).collect();
    let mut feeds = Vec::with_capacity(model.inputs().len());
    let mut rows: Option<usize> = None;
    for port in model.inputs() {
        let (ty, dims) = served(port)
            .ok_or_else(|| invalid(format!("input {:?} has a type the protocol cannot carry", port.name)))?;
        let tensor = given
            .iter_mut()
            .find(|t| t.as_ref().is_some_and(|t| t.name == port.name))
            .and_then(Option::take)
            .ok_or_else(|| invalid(format!("input {:?} ({} {dims:?}) is missing", port.name, datatype(ty))))?;
        if tensor.data.datatype() != datatype(ty) {
            return Err(invalid(format!(
                "input {:?} is {} in the model, the request gives {}",
                port.name,
                datatype(ty),
                tensor.data.datatype()
            )));
        }
        let count: Option<usize> =
            tensor.shape.iter().try_fold(1usize, |n, d| usize::try_from(*d).ok().and_then(|d| n.checked_mul(d)));
        if tensor.shape.is_empty() || count != Some(tensor.data.len()) {
            return Err(invalid(format!(
                "input {:?}: shape {:?} does not match its {} values",
                port.name,
                tensor.shape,
                tensor.data.len()
            )));
        }
        let fits = tensor.shape.len() == dims.len()
            && tensor.shape.iter().zip(&dims).skip(1).all(|(given, declared)| *declared <= 0 || given == declared);
        if !fits {
            return Err(invalid(format!(
                "input {:?}: shape {:?} does not fit the model's {dims:?}",
                port.name, tensor.shape
            )));
        }
        let batch = usize::try_from(tensor.shape[0]).unwrap_or(0);
        if *rows.get_or_insert(batch) != batch {
            return Err(invalid(format!("input {:?} has {batch} rows, an earlier input {rows:?}", port.name)));
        }
        feeds.push(Feed { values: values(tensor.data), row_dims: tensor.shape[1..].to_vec() });
    }
    if let Some(extra) = given.into_iter().flatten().next() {
        return Err(invalid(format!("the model has no input {:?}", extra.name)));
    }
    let rows = rows.unwrap_or(0);
    if rows == 0 {
        return Err(invalid("no rows to infer".into()));
    }
    let fetch: Vec<usize> = if outputs.is_empty() {
        model.outputs().iter().enumerate().filter(|(_, p)| served(p).is_some()).map(|(i, _)| i).collect()
    } else {
        outputs
            .iter()
            .map(|name| {
                model
                    .outputs()
                    .iter()
                    .position(|p| &p.name == name && served(p).is_some())
                    .ok_or_else(|| invalid(format!("the model has no output {name:?} the protocol can carry")))
            })
            .collect::<Result<_, _>>()?
    };
    let results =
        model.predict(feeds, rows, Arc::from(fetch.clone())).await.map_err(|e| InferError::Failed(e.to_string()))?;
    Ok(fetch
        .iter()
        .zip(results)
        .map(|(&index, values)| {
            let per_row = (values.len() / rows) as i64;
            let declared = served(&model.outputs()[index]).map(|(_, dims)| dims).unwrap_or_default();
            let shape =
                if declared.len() == 1 && per_row == 1 { vec![rows as i64] } else { vec![rows as i64, per_row] };
            Tensor { name: model.outputs()[index].name.clone(), shape, data: data(values) }
        })
        .collect())
}

fn values(data: TensorData) -> Values {
    match data {
        TensorData::Bool(v) => Values::Bool(v),
        TensorData::Int32(v) => Values::Int32(v),
        TensorData::Int64(v) => Values::Int64(v),
        TensorData::Fp32(v) => Values::Float(v),
        TensorData::Fp64(v) => Values::Double(v),
        TensorData::Bytes(v) => Values::String(v),
    }
}

fn data(values: Values) -> TensorData {
    match values {
        Values::Bool(v) => TensorData::Bool(v),
        Values::Int32(v) => TensorData::Int32(v),
        Values::Int64(v) => TensorData::Int64(v),
        Values::Float(v) => TensorData::Fp32(v),
        Values::Double(v) => TensorData::Fp64(v),
        Values::String(v) => TensorData::Bytes(v),
        Values::Interned(v) => TensorData::Bytes(v.into_iter().map(str::to_string).collect()),
    }
}
