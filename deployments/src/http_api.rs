//! Prediction requests over HTTP, shared by `tributary serve` and the Lambda function's API
//! Gateway and function URL invocations: which parts of a config serve them ([`HttpPlan`]), a
//! request body into records ([`records`]), and the graph's answers into a status and a JSON
//! body ([`reply`]).
//!
//! Status codes: 200 answered; 400 the body is not JSON; 422 the processors rejected the event
//! (with the reason a dead letter would carry); 500 a component failed; 503 a component kept
//! failing (retry later). A JSON array is a batch: 200, with every element the event's answer or
//! `{"error", "component", "status"}`.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};
use tributary_framework::config::PipelineConfig;
use tributary_framework::executor::{Refusal, RefusalKind};
use tributary_framework::template::Shape;
use tributary_framework::{ConfigError, Offset, Output, Position, Record};
use tributary_sinks::response::{ResponseConfig, answer};
use tributary_sources::http::HttpConfig;

/// What a served config declares, checked before anything is built.
#[derive(Clone, Debug)]
pub struct HttpPlan {
    /// The `http` source's id.
    pub source_id: String,
    /// Its options.
    pub http: HttpConfig,
    /// Its `request` shape, when set.
    pub request: Option<Shape>,
    /// The `response` sink's id.
    pub response_sink: String,
    /// Its `body` shape, when set.
    pub body: Option<Shape>,
    /// Whether rejections go to a configured `[dead_letter]` destination.
    pub dead_letter: bool,
}

impl HttpPlan {
    /// Reads the serving parts of `config`.
    ///
    /// # Errors
    /// Not exactly one source, or not an `http` one; not exactly one `response` sink; bad options.
    pub fn of(config: &PipelineConfig) -> Result<Self, ConfigError> {
        let mut sources = config.sources.iter();
        let (source_id, spec) = match (sources.next(), sources.next()) {
            (Some(only), None) => only,
            _ => {
                return Err(ConfigError::Load {
                    file: config.file.clone(),
                    message: format!(
                        "a served pipeline has exactly one source, with type = \"http\"; found {}",
                        config.sources.len()
                    ),
                });
            }
        };
        if spec.kind != "http" {
            return Err(spec.error("type", format!("serving HTTP requests needs type = \"http\", not {:?}", spec.kind)));
        }
        let http: HttpConfig = spec.parse()?;
        http.check().map_err(|(key, message)| spec.error(key, message))?;
        let request = http.request.as_ref().map(Shape::parse).transpose().map_err(|e| spec.error("request", e))?;
        let responses: Vec<_> = config.sinks.iter().filter(|(_, s)| s.kind == "response").collect();
        let [(response_sink, sink_spec)] = responses.as_slice() else {
            return Err(ConfigError::Load {
                file: config.file.clone(),
                message: format!(
                    "a served pipeline answers with what reaches its one `type = \"response\"` sink; found {}",
                    responses.len()
                ),
            });
        };
        let body = sink_spec.parse::<ResponseConfig>()?.shape().map_err(|(key, e)| sink_spec.error(key, e))?;
        Ok(HttpPlan {
            source_id: source_id.clone(),
            http,
            request,
            response_sink: (*response_sink).clone(),
            body,
            dead_letter: config.dead_letter.is_some(),
        })
    }
}

/// A request body as records for the graph.
#[derive(Debug)]
pub struct Request {
    /// One record per event.
    pub records: Vec<Record>,
    /// The body was a JSON array (answered with an array).
    pub array: bool,
}

/// Turns a request body into records: the body itself when it is one value and there is no
/// `request` shape (the graph decodes it once), else each element of an array, or the value,
/// through the shape over `{"body", "request_id"}`. `n` numbers the request (the records'
/// offset); `request_id` names it (array elements get `-<index>`).
///
/// # Errors
/// The body is not JSON where it must be parsed here (a 400).
pub fn records(plan: &HttpPlan, body: Bytes, request_id: &str, n: u64) -> Result<Request, String> {
    let array = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let source: Arc<str> = Arc::from(plan.source_id.as_str());
    let position = |item: Option<usize>| Position {
        source: source.clone(),
        partition: match item {
            Some(i) => format!("http:{request_id}:{i}"),
            None => format!("http:{request_id}"),
        }
        .into(),
        offset: Offset::Index(n),
    };
    if plan.request.is_none() && !array {
        return Ok(Request { records: vec![Record::new(body, position(None))], array });
    }
    let value: Value = serde_json::from_slice(&body).map_err(|e| format!("the request body is not JSON: {e}"))?;
    let items = match value {
        Value::Array(items) => items,
        one => vec![one],
    };
    let records = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let event = match &plan.request {
                Some(shape) => {
                    let id = if array { format!("{request_id}-{i}") } else { request_id.to_string() };
                    shape.render(&json!({ "body": item, "request_id": id }))
                }
                None => item,
            };
            let bytes = serde_json::to_vec(&event).unwrap_or_default();
            Record::new(bytes, position(array.then_some(i)))
        })
        .collect();
    Ok(Request { records, array })
}

/// An HTTP answer: status and JSON body.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Value,
}

impl Reply {
    /// An error answer `{"error": message}`.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Reply { status, body: json!({ "error": message.into() }) }
    }

    /// Whether the client should retry later (`Retry-After`).
    pub fn retry_later(&self) -> bool {
        matches!(self.status, 429 | 503)
    }
}

/// The answer to a request from its records' answers ([`tributary_framework::graph::Graph::answers`]).
pub fn reply(plan: &HttpPlan, answers: Vec<Result<Vec<Output>, Refusal>>, array: bool) -> Reply {
    let shape = plan.body.as_ref();
    if array {
        let items = answers
            .into_iter()
            .map(|a| match a {
                Ok(values) => answer(shape, values),
                Err(refusal) => {
                    json!({"error": refusal.reason, "component": &*refusal.component, "status": status_of(&refusal)})
                }
            })
            .collect();
        return Reply { status: 200, body: Value::Array(items) };
    }
    match answers.into_iter().next() {
        Some(Ok(values)) => Reply { status: 200, body: answer(shape, values) },
        Some(Err(refusal)) => Reply {
            status: status_of(&refusal),
            body: json!({"error": refusal.reason, "component": &*refusal.component}),
        },
        None => Reply { status: 200, body: json!([]) },
    }
}

/// The status of a refused event: 400 when its body is not JSON (the decoder refused it), 422
/// when a processor rejected it, 503 when a component kept failing, 500 when one failed.
pub fn status_of(refusal: &Refusal) -> u16 {
    match refusal.kind {
        RefusalKind::Rejected if refusal.component.ends_with(".decode") => 400,
        RefusalKind::Rejected => 422,
        RefusalKind::Unavailable => 503,
        RefusalKind::Failed => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(toml: &str) -> HttpPlan {
        let config = tributary_framework::config::from_toml_str("t.toml", toml).unwrap();
        HttpPlan::of(&config).unwrap()
    }

    #[test]
    fn request_shapes_and_arrays_become_records_in_order() {
        let plan = plan(
            "[sources.q]\ntype = \"http\"\nrequest = { ride = \"{body}\", ride_id = \"{request_id}\" }\n\
             [sinks.a]\ntype = \"response\"\ninputs = [\"q\"]\n",
        );
        let request = records(&plan, Bytes::from_static(b" [{\"a\": 1}, 2]"), "r7", 7).unwrap();
        assert!(request.array);
        let events: Vec<Value> =
            request.records.iter().map(|r| serde_json::from_slice(r.raw_bytes()).unwrap()).collect();
        assert_eq!(events, [json!({"ride": {"a": 1}, "ride_id": "r7-0"}), json!({"ride": 2, "ride_id": "r7-1"})]);
        assert_eq!(request.records[1].position.to_string(), "q/http:r7:1@7");
        assert!(
            records(&plan, Bytes::from_static(b"{"), "r", 0).unwrap_err().starts_with("the request body is not JSON")
        );
    }

    #[test]
    fn configs_that_cannot_serve_name_what_is_missing() {
        let two_responses = "[sources.q]\ntype = \"http\"\n[sinks.a]\ntype = \"response\"\ninputs = [\"q\"]\n\
                             [sinks.b]\ntype = \"response\"\ninputs = [\"q\"]\n";
        let config = tributary_framework::config::from_toml_str("t.toml", two_responses).unwrap();
        assert!(HttpPlan::of(&config).unwrap_err().to_string().contains("one `type = \"response\"` sink; found 2"));
        let not_http = "[sources.q]\ntype = \"stdin\"\n[sinks.a]\ntype = \"response\"\ninputs = [\"q\"]\n";
        let config = tributary_framework::config::from_toml_str("t.toml", not_http).unwrap();
        let message = HttpPlan::of(&config).unwrap_err().to_string();
        assert!(message.contains("sources.q") && message.contains("type"), "{message}");
        let bad = "[sources.q]\ntype = \"http\"\nqueue_size = 0\n[sinks.a]\ntype = \"response\"\ninputs = [\"q\"]\n";
        let config = tributary_framework::config::from_toml_str("t.toml", bad).unwrap();
        let message = HttpPlan::of(&config).unwrap_err().to_string();
        assert!(message.contains("queue_size") && message.contains("at least 1"), "{message}");
    }
}
