//! `POST <route>` (`/predict`): a JSON value is one event, a JSON array a batch of events
//! answered in order (see [`crate::http_api`] for the answers). Besides those status codes: 413
//! the body is over `max_body_bytes`; 429 the queue is full; 503 not ready (both with
//! `Retry-After`); 504 no answer within `timeout_ms`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::oneshot;

use crate::http_api::{self, Reply, Request};

use super::App;
use super::batcher::{Job, Refused};

/// Request counter: the `request_id` of requests without `X-Request-Id`, and the offset in
/// every served record's position.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// A JSON error answer `{"error": message}` (429 and 503 with `Retry-After: 1`).
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    respond(Reply::error(status.as_u16(), message))
}

/// The answer to a body that could not be read: 413 naming the limit when it is too large.
pub(crate) fn body_refused(rejection: &BytesRejection, limit: usize) -> Response {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over {limit} bytes (max_body_bytes of the http source)"),
        );
    }
    error(rejection.status(), rejection.body_text())
}

/// The handler of the prediction route.
pub(crate) async fn predict(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return body_refused(&rejection, app.plan.http.max_body_bytes),
    };
    let served = match app.built() {
        Ok(served) => served,
        Err(reason) => return error(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}")),
    };
    let n = REQUESTS.fetch_add(1, Ordering::Relaxed);
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map_or_else(|| format!("r{n}"), str::to_owned);
    let Request { records, array } = match http_api::records(&app.plan, body, &request_id, n) {
        Ok(request) => request,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    if records.is_empty() {
        return (StatusCode::OK, axum::Json(json!([]))).into_response();
    }
    let (reply, answers) = oneshot::channel();
    match served.batcher.submit(Job { records, reply }) {
        Ok(()) => {}
        Err(Refused::Full) => {
            return error(StatusCode::TOO_MANY_REQUESTS, "too many requests waiting; retry later");
        }
        Err(Refused::Closed) => return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
    }
    let timeout = Duration::from_millis(app.plan.http.timeout_ms);
    let answers = match tokio::time::timeout(timeout, answers).await {
        Ok(Ok(answers)) => answers,
        Ok(Err(_)) => return error(StatusCode::INTERNAL_SERVER_ERROR, "the batch was dropped"),
        Err(_) => {
            return error(
                StatusCode::GATEWAY_TIMEOUT,
                format!("no answer within {} ms (timeout_ms)", app.plan.http.timeout_ms),
            );
        }
    };
    respond(http_api::reply(&app.plan, answers, array))
}

/// A [`Reply`] as an HTTP response, with `Retry-After: 1` when the client should retry later.
fn respond(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let retry = reply.retry_later();
    let mut response = (status, axum::Json(reply.body)).into_response();
    if retry {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}
