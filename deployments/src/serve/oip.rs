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
use tributary_framework::inference::{InferError, parse_infer_request, tensor_json};

use super::App;
use super::predict::{body_refused, error};

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
        app.built().map_err(|reason| error(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}")))?;
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

/// `GET /v2/models/{name}/ready`: 503 while the model's new version failed to load.
pub(crate) async fn model_ready(State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    match model(&app, &name).map(|p| p.ready()) {
        Ok(Ok(())) => Json(json!({"name": name, "ready": true})).into_response(),
        Ok(Err(reason)) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"name": name, "ready": false, "reason": reason})))
                .into_response()
        }
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
    let (inputs, outputs) = match parse_infer_request(&request) {
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
