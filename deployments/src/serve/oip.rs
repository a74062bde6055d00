//! The Open Inference Protocol v2 REST endpoints (KServe, Seldon MLServer, Triton): health,
//! server and model metadata, and `infer` with JSON tensors. A model is a processor that wraps
//! one (`onnx`, `ride_duration`), named by its id. `infer` runs the model on the tensors as
//! given (no feature mapping, no dynamic batching: a request's tensors are already a batch).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tributary_framework::inference::{InferError, Tensor, TensorData};

use super::App;
use super::predict::{body_refused, error, retry_later};

/// `GET /v2`.
pub(crate) async fn server_metadata() -> Json<Value> {
    Json(json!({"name": "tributary", "version": env!("CARGO_PKG_VERSION"), "extensions": []}))
}

/// `GET /v2/health/live`: the process answers.
pub(crate) async fn live() -> Json<Value> {
    Json(json!({"live": true}))
}

/// `GET /v2/health/ready`: 200 once every model is loaded (and none failed to reload), else 503.
pub(crate) async fn ready(State(app): State<Arc<App>>) -> Response {
    match app.ready() {
        Ok(_) => Json(json!({"ready": true})).into_response(),
        Err(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"ready": false, "reason": reason}))).into_response()
        }
    }
}

/// The processor named `name`, or the answer saying why not.
#[allow(clippy::result_large_err, reason = "the error is the response, returned at once")]
fn model<'a>(app: &'a App, name: &str) -> Result<&'a Arc<dyn tributary_framework::Processor>, Response> {
    let served =
        app.ready().map_err(|reason| retry_later(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}")))?;
    served.graph.processor(name).filter(|p| p.model_metadata(name).is_some()).ok_or_else(|| {
        let models: Vec<&str> = served
            .graph
            .processor_ids()
            .filter(|id| served.graph.processor(id).is_some_and(|p| p.model_metadata(id).is_some()))
            .collect();
        error(StatusCode::NOT_FOUND, format!("no model {name:?}; models: {}", models.join(", ")))
    })
}

/// `GET /v2/models/{name}`: inputs and outputs from the model.
pub(crate) async fn model_metadata(State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    match model(&app, &name) {
        Ok(processor) => Json(processor.model_metadata(&name)).into_response(),
        Err(response) => response,
    }
}

/// `GET /v2/models/{name}/ready`.
pub(crate) async fn model_ready(State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    match model(&app, &name) {
        Ok(_) => Json(json!({"name": name, "ready": true})).into_response(),
        Err(response) => response,
    }
}

/// `POST /v2/models/{name}/infer`.
pub(crate) async fn infer(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return body_refused(&rejection, app.plan.http.max_body_bytes),
    };
    let processor = match model(&app, &name) {
        Ok(processor) => processor,
        Err(response) => return response,
    };
    let request: Value = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("the request body is not JSON: {e}")),
    };
    let (inputs, outputs) = match parse_request(&request) {
        Ok(parsed) => parsed,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    match processor.infer(inputs, &outputs).await {
        Ok(tensors) => {
            let version = processor.model_metadata(&name).and_then(|m| m.versions.into_iter().next());
            let mut answer = json!({
                "model_name": name,
                "model_version": version,
                "outputs": tensors.iter().map(tensor_json).collect::<Vec<_>>(),
            });
            if let Some(id) = request.get("id") {
                answer["id"] = id.clone();
            }
            Json(answer).into_response()
        }
        Err(InferError::Invalid(m) | InferError::Unsupported(m)) => error(StatusCode::BAD_REQUEST, m),
        Err(InferError::Failed(m)) => error(StatusCode::INTERNAL_SERVER_ERROR, m),
    }
}

/// The request's input tensors and the names of the outputs it asks for.
fn parse_request(request: &Value) -> Result<(Vec<Tensor>, Vec<String>), String> {
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

fn tensor_json(tensor: &Tensor) -> Value {
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
        let (a, outputs) = parse_request(&nested).unwrap();
        assert_eq!(a, parse_request(&flat).unwrap().0);
        assert_eq!(a[0].data, TensorData::Fp32(vec![1.0, 2.0, 3.0, 4.5]));
        assert_eq!(outputs, vec!["variable".to_string()]);
        let bad = json!({"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": ["a"]}]});
        assert_eq!(parse_request(&bad).unwrap_err(), "inputs[0]: `data` of a INT64 tensor holds integers");
        let deep = (0..100).fold(json!(1), |v, _| json!([v]));
        let deep = json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": deep}]});
        assert!(parse_request(&deep).unwrap_err().contains("nested too deeply"));
    }
}
