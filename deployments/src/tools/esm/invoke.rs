//! Invoking a function through the Lambda invoke API of a local runtime emulator
//! (`cargo lambda watch`: `http://127.0.0.1:9000/2015-03-31/functions/<name>/invocations`).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::batch::{Answer, answer_from_response};

/// A function's raw answer.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// HTTP status of the invoke call.
    pub status: u16,
    /// Whether the emulator flagged a function error (status or `X-Amz-Function-Error`).
    pub function_error: bool,
    /// The response body (JSON, or the text as a JSON string).
    pub body: Value,
}

/// An HTTP client for one invoke URL.
#[derive(Clone)]
pub struct Invoker {
    client: Client<HttpConnector, Full<Bytes>>,
    url: http::Uri,
    report_batch_item_failures: bool,
    timeout: Option<Duration>,
}

impl Invoker {
    /// A client for `url` (plain HTTP).
    ///
    /// # Errors
    /// A URL that does not parse or is not `http://`.
    pub fn new(url: &str, report_batch_item_failures: bool) -> anyhow::Result<Self> {
        let uri: http::Uri = url.parse().map_err(|e| anyhow::anyhow!("invalid --function URL {url:?}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            anyhow::bail!("--function must be an http:// invoke URL of a local runtime emulator, got {url:?}");
        }
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(Invoker { client, url: uri, report_batch_item_failures, timeout: None })
    }

    /// Gives up on an invocation after `timeout`, as Lambda ends a function that runs past its
    /// timeout: the batch gets a function error.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends one event and interprets the answer.
    pub async fn invoke(&self, event: &Value) -> Answer {
        let answer = match self.timeout {
            Some(limit) => match tokio::time::timeout(limit, self.invoke_raw(event)).await {
                Ok(answer) => answer,
                // As on Lambda, a timeout is the function's error.
                Err(_) => {
                    let seconds = limit.as_secs_f64();
                    return Answer::FunctionError(format!(
                        "the function did not answer within {seconds} s (timed out)"
                    ));
                }
            },
            None => self.invoke_raw(event).await,
        };
        match answer {
            Ok(Invocation { body, function_error: false, .. }) => {
                answer_from_response(&body, self.report_batch_item_failures)
            }
            Ok(Invocation { status, body, .. }) => Answer::FunctionError(format!("HTTP {status}: {body}")),
            Err(reason) => Answer::Unanswered(reason),
        }
    }

    /// Sends one event and returns the raw answer.
    ///
    /// # Errors
    /// The emulator could not be reached or its answer read.
    pub async fn invoke_raw(&self, event: &Value) -> Result<Invocation, String> {
        let body = Full::new(Bytes::from(serde_json::to_vec(event).unwrap_or_default()));
        let request = http::Request::post(self.url.clone())
            .header("content-type", "application/json")
            .body(body)
            .map_err(|e| format!("building the request: {e}"))?;
        let response = self.client.request(request).await.map_err(|e| format!("invoking {}: {e}", self.url))?;
        let status = response.status().as_u16();
        let header_error = response.headers().get("x-amz-function-error").is_some();
        let bytes = response.into_body().collect().await.map_err(|e| format!("reading the response: {e}"))?.to_bytes();
        let body: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok(Invocation { status, function_error: header_error || !(200..300).contains(&status), body })
    }
}
