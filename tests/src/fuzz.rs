//! The fuzz targets' bodies: one function per decoder of outside input, each taking any bytes
//! and returning normally whatever they are (an error is a normal answer; a panic, a hang or
//! unbounded memory is a bug). `fuzz/fuzz_targets/*.rs` call them under libFuzzer
//! (`cargo xtask fuzz`, nightly); `tests/tests/fuzz_corpora.rs` replays every committed corpus
//! and crash file through them on stable, in every `cargo xtask test`.

use std::sync::{Arc, OnceLock};

use serde_json::Value;
use tributary::lambda::{Function, Invocation};
use tributary_framework::config;
use tributary_framework::template::Template;
use tributary_sources::document::{DocumentReader, Format};
use tributary_sources::kinesis_event;

/// A target's name and body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, by the name of its corpus folder (`fuzz/corpus/<name>`).
pub const TARGETS: &[Target] = &[
    ("documents", documents),
    ("kinesis_event", kinesis_event),
    ("lambda_event", lambda_event),
    ("template", template),
    ("config", config),
    ("http_request", http_request),
    ("parquet_file", parquet_file),
    ("ride_event", ride_event),
];

/// One current-thread runtime for the async decoders, made once.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("runtime: {e}"))
    })
}

/// The `file`/`stdin` sources' reader: JSON lines, documents, Kinesis event lines, in each
/// format (the first byte picks it), with a small `max_line_bytes` so that the long-line path
/// is reached, in batches of 7; each record's payload then parsed as the runtime does.
pub fn documents(data: &[u8]) {
    let (format, input) = match data.split_first() {
        Some((b, rest)) if *b % 4 == 1 => (Format::JsonLines, rest),
        Some((b, rest)) if *b % 4 == 2 => (Format::Documents, rest),
        _ => (Format::Auto, data),
    };
    runtime().block_on(async {
        let mut reader = DocumentReader::new(input, "fuzz".into(), "input".into(), format).with_max_line_bytes(4096);
        while let Ok(Some(batch)) = reader.next_batch(7).await {
            assert!(!batch.is_empty() && batch.len() <= 7, "a batch of {} records", batch.len());
            for record in &batch {
                let _ = serde_json::from_slice::<Value>(record.raw_bytes());
            }
        }
    });
}

/// A Lambda Kinesis event document: recognised, then split into records.
pub fn kinesis_event(data: &[u8]) {
    let Ok(document) = serde_json::from_slice::<Value>(data) else { return };
    if kinesis_event::is_event_document(&document) {
        let source: Arc<str> = "fuzz".into();
        let records = kinesis_event::records(&source, &document, "fallback");
        for record in &records {
            let _ = serde_json::from_slice::<Value>(record.raw_bytes());
        }
    }
}

/// The Lambda function's handler (the parse of the event and the answer), on a pipeline from
/// the `lambda` source to a blackhole: any JSON event gets an answer or an error, and a Kinesis
/// event's answer is a partial batch response naming only sequence numbers of its records.
pub fn lambda_event(data: &[u8]) {
    static FUNCTION: OnceLock<Function> = OnceLock::new();
    let Ok(event) = serde_json::from_slice::<Value>(data) else { return };
    let function = FUNCTION.get_or_init(|| {
        let text =
            "[sources.kinesis]\ntype = \"lambda\"\n\n[sinks.out]\ntype = \"blackhole\"\ninputs = [\"kinesis\"]\n";
        runtime().block_on(async {
            let config = config::from_toml_str("fuzz.toml", text).unwrap_or_else(|e| panic!("{e}"));
            Function::build(&config).await.unwrap_or_else(|e| panic!("{e}"))
        })
    });
    let is_kinesis = kinesis_event::is_event_document(&event);
    let answer = runtime().block_on(function.handle(event));
    if is_kinesis {
        let answer = answer.as_ref().unwrap_or_else(|e| panic!("a Kinesis event is always answered: {e}"));
        assert!(answer["batchItemFailures"].is_array(), "{answer}");
    }
    // The packaged function reads the same bytes as an `Invocation` (entry by entry): it must
    // see the same event and give the same answer.
    let invocation =
        serde_json::from_slice::<Invocation>(data).unwrap_or_else(|e| panic!("JSON, yet no invocation: {e}"));
    assert_eq!(matches!(invocation, Invocation::Kinesis(_)), is_kinesis);
    let read = runtime().block_on(function.handle_invocation(invocation));
    assert_eq!(read.map_err(|e| e.to_string()), answer.map_err(|e| e.to_string()));
}

/// A prediction request body, as `tributary serve` and the Lambda function's API Gateway path
/// take it (the request shape, arrays, the answer's status), through the function's handler on
/// a pipeline from an `http` source to a `response` sink; and the same bytes as an Open
/// Inference Protocol `infer` body.
pub fn http_request(data: &[u8]) {
    static FUNCTION: OnceLock<Function> = OnceLock::new();
    let function = FUNCTION.get_or_init(|| {
        let text = "[sources.q]\ntype = \"http\"\nrequest = { ride = \"{body}\", id = \"r-{request_id}\" }\n\n\
                    [sinks.a]\ntype = \"response\"\ninputs = [\"q\"]\nbody = { d = \"{ride.trip_distance}\", n = 1 }\n";
        runtime().block_on(async {
            let config = config::from_toml_str("fuzz.toml", text).unwrap_or_else(|e| panic!("{e}"));
            Function::build(&config).await.unwrap_or_else(|e| panic!("{e}"))
        })
    });
    let (encoded, body) = match data.split_first() {
        Some((b, rest)) if *b % 2 == 1 => {
            (true, base64::Engine::encode(&base64::engine::general_purpose::STANDARD, rest))
        }
        _ => (false, String::from_utf8_lossy(data).into_owned()),
    };
    let event = serde_json::json!({"version": "2.0", "rawPath": "/predict", "body": body, "isBase64Encoded": encoded,
                                   "requestContext": {"http": {"method": "POST"}}});
    let answer = runtime()
        .block_on(function.handle(event))
        .unwrap_or_else(|e| panic!("an API Gateway request is always answered: {e}"));
    let status = answer["statusCode"].as_u64().unwrap_or_default();
    assert!([200, 400, 413, 422].contains(&status), "{answer}");
    assert!(answer["body"].as_str().is_some_and(|b| serde_json::from_str::<Value>(b).is_ok()), "{answer}");
    if let Ok(request) = serde_json::from_slice::<Value>(data) {
        let _ = tributary_framework::inference::parse_infer_request(&request);
    }
}

/// A Parquet file, as the batch job reads it: the ride fields cast to integers and numbers, a
/// text field, a column copied through, every batch to the end. An error is the answer for a
/// malformed file; a panic inside the Parquet crate is turned into one (and reported by the
/// fuzzer, whose panic hook aborts first).
pub fn parquet_file(data: &[u8]) {
    use tributary_framework::columns::ColumnKind;
    use tributary_sources::parquet::read::{FieldColumn, FileReader};
    let field = |path: &str, column: &str, kind| FieldColumn { path: path.into(), column: column.into(), kind };
    let fields = [
        field("ride.PULocationID", "PULocationID", ColumnKind::Int64),
        field("ride.trip_distance", "trip_distance", ColumnKind::Float64),
        field("flag", "store_and_fwd_flag", ColumnKind::Utf8),
    ];
    let passthrough = ["VendorID".to_string()];
    let bytes = bytes::Bytes::copy_from_slice(data);
    let Ok(mut reader) = FileReader::from_bytes(std::path::Path::new("fuzz.parquet"), bytes, &fields, &passthrough, 7)
    else {
        return;
    };
    let mut rows = 0u64;
    while let Some(batch) = reader.next_batch() {
        let Ok(batch) = batch else { break };
        assert_eq!(batch.first_row, rows, "batches follow each other");
        for column in batch.columns.fields.values() {
            assert_eq!(column.data.len(), batch.columns.rows, "a column per row");
        }
        rows += batch.columns.rows as u64;
        let _ = reader.locate(rows.saturating_sub(1));
    }
}

/// A partition-key or object-key template (text up to the first newline) rendered over a JSON
/// value (the rest).
pub fn template(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (template, value) = text.split_once('\n').unwrap_or((&text, "{}"));
    let Ok(template) = Template::parse(template) else { return };
    let value = serde_json::from_str::<Value>(value).unwrap_or(Value::Null);
    let rendered = template.render(&value);
    let missing = template.missing_field(&value);
    assert!(rendered.is_some() || missing.is_some(), "a template that does not render names what is missing");
    // A processor's serialized output (JSON text) renders from its fields read in the text as
    // from its value decoded whole.
    if let Ok(output) = tributary_framework::Output::serialized(&value) {
        let from_text = template.render_output(&output);
        assert_eq!(from_text, template.render(output.value()), "a serialized output renders as its value");
    }
}

/// A ride event as the streaming fast path reads it, straight from its text
/// (`ride_duration::event_text`), against the decoding path (`serde_json::Value`, then
/// `features::prepare`): whatever the fast path reads, the decoded path reads the same way.
pub fn ride_event(data: &[u8]) {
    use tributary_processors::ride_duration::{event_text, features};
    let Some(fast) = event_text::prepare(data) else { return };
    let decoded = serde_json::from_slice::<Value>(data).map_err(|e| e.to_string());
    let slow = decoded.and_then(|event| features::prepare(&event));
    assert_eq!(Ok(&fast), slow.as_ref(), "the text reader and the decoded path disagree");
}

/// A pipeline configuration: loaded (`${VAR}` substitution, typed sections) and its topology
/// checked (ids, inputs, cycles), as `tributary validate` does before building components.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(config) = config::from_toml_str("fuzz.toml", text) {
        let _ = tributary_framework::graph::topology(&config);
    }
}
