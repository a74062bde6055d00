//! Benchmark 4: the Lambda handler, tributary against two Python handlers: the seeds' own
//! (`bench/python/lambda_function.py`) and the whole batch vectorized
//! (`bench/python/lambda_function_vectorized.py`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tributary_framework::Source;
use tributary_sources::generator::{GeneratorConfig, GeneratorSource};

use crate::median;

const RECORDS_PER_BATCH: usize = 100;

/// The Rust side, as its own process: init (`Function::from_env`, the Lambda's own init), a
/// "ready" line, then `BATCHES` handler calls; prints the same JSON as `bench_handler.py`.
pub async fn handler_process(args: &[String]) -> Result<()> {
    let [events, batches] = args else { bail!("usage: tributary-bench lambda-handler EVENTS BATCHES") };
    let function = tributary::lambda::Function::from_env().await?;
    println!("{}", json!({"ready": true}));
    // One event per line, read when it is invoked (as the Lambda runtime does), so that only
    // one event is read at a time (the file's text stays in memory, as on the Python side).
    let text = std::fs::read_to_string(events)?;
    let events: Vec<&str> = text.lines().collect();
    let batches: usize = batches.parse()?;
    let mut times = Vec::new();
    let mut last = Value::Null;
    for i in 0..batches {
        // Read as the packaged function's runtime reads it (lambda_runtime's response layer:
        // `serde_path_to_error` over `serde_json::from_slice`, into an `Invocation`, so a
        // Kinesis event's records come straight from the text, base64 decoding included). The
        // Python side times its `json.loads` of the event likewise.
        let started = Instant::now();
        let text = events[i % events.len()].as_bytes();
        let event: tributary::lambda::Invocation =
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(text))?;
        last = function.handle_invocation(event).await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    if last != json!({"batchItemFailures": []}) {
        bail!("unexpected answer {last}");
    }
    let rss = crate::peak_rss_kb("/proc/self/status").unwrap_or(0);
    println!("{}", json!({"batch_ms": median(&mut times), "peak_rss_kb": rss}));
    Ok(())
}

/// `count` Kinesis events of `per_event` generated rides each, in the Lambda event shape, one per
/// line.
async fn write_events(path: &Path, count: usize, per_event: usize) -> Result<()> {
    let mut generator = GeneratorSource::new(
        "bench".into(),
        GeneratorConfig { count: Some((count * per_event) as u64), rate: None, seed: 3, first_ride_id: 1 },
    );
    let mut events = Vec::new();
    // Kinesis sequence numbers are 56 digits: a fixed prefix and a counter.
    let mut sequence: u64 = 0;
    while let Some(batch) = generator.next_batch(per_event).await? {
        let records: Vec<Value> = batch
            .iter()
            .map(|r| {
                sequence += 1;
                let sequence = format!("4960000000000000000000000000000000000{sequence:019}");
                json!({
                    "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "1", "sequenceNumber": sequence,
                                "data": base64_encode(r.raw_bytes()), "approximateArrivalTimestamp": 1_750_925_642.262},
                    "eventSource": "aws:kinesis", "eventVersion": "1.0",
                    "eventID": format!("shardId-000000000000:{sequence}"), "eventName": "aws:kinesis:record",
                    "invokeIdentityArn": "arn:aws:iam::000000000000:role/bench", "awsRegion": "us-east-1",
                    "eventSourceARN": "arn:aws:kinesis:us-east-1:000000000000:stream/ride_events"
                })
            })
            .collect();
        events.push(json!({ "Records": records }).to_string());
    }
    std::fs::write(path, events.join("\n"))?;
    Ok(())
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One handler process, or the medians of a cell's processes.
#[derive(Clone, Copy, Default)]
struct Handler {
    /// From spawn to the process's "ready" line, ms.
    init_ms: f64,
    /// Per batch, from the event's text, ms (median over the process's batches).
    batch_ms: f64,
    /// Peak resident memory, MB.
    rss_mb: f64,
    /// A Python handler alone, the event already parsed, ms (NaN for tributary).
    handler_ms: f64,
}

/// Runs one handler process to its end.
fn measure(mut command: Command) -> Result<Handler> {
    let started = Instant::now();
    let mut child = command.stdout(Stdio::piped()).spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let ready = lines.next().context("no ready line")??;
    let init_ms = started.elapsed().as_secs_f64() * 1e3;
    if !ready.contains("ready") {
        bail!("unexpected first line {ready:?}");
    }
    let result: Value = serde_json::from_str(&lines.last().context("no result line")??)?;
    if !child.wait()?.success() {
        bail!("benchmark process failed");
    }
    Ok(Handler {
        init_ms,
        batch_ms: result["batch_ms"].as_f64().unwrap_or(f64::NAN),
        rss_mb: result["peak_rss_kb"].as_u64().unwrap_or(0) as f64 / 1024.0,
        handler_ms: result["handler_ms"].as_f64().unwrap_or(f64::NAN),
    })
}

/// The scikit-learn pipeline of the committed model (same seed), pickled for the Python references.
pub fn reference_model(root: &Path) -> Result<std::path::PathBuf> {
    let model_dir = root.join("target/bench/model");
    let pickle = model_dir.join("model.pkl");
    if !pickle.is_file() {
        let status = Command::new(root.join(".venv/bin/python"))
            .args(["processors/models/ride_duration/train.py", "--out-dir"])
            .arg(&model_dir)
            .arg("--sklearn-out")
            .arg(&pickle)
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("training the reference scikit-learn model failed");
        }
    }
    Ok(pickle)
}

/// The handlers compared.
#[derive(Clone, Copy)]
enum Side {
    /// `tributary-bench lambda-handler`: the packaged function's handler.
    Rust,
    /// `bench/python/lambda_function.py`: the seeds' handler (scikit-learn per record, one
    /// `put_record` each).
    Seeds,
    /// `bench/python/lambda_function_vectorized.py`: the whole batch in one onnxruntime call,
    /// `put_records`.
    Vectorized,
}

impl Side {
    const ALL: [Side; 3] = [Side::Rust, Side::Seeds, Side::Vectorized];

    /// The process that times this handler over `batches` events of `events`.
    fn command(self, root: &Path, bench_bin: &Path, events: &Path, batches: usize, pickle: &Path) -> Command {
        let python = |module: &str, model: &Path| {
            let mut cmd = Command::new(root.join(".venv/bin/python"));
            cmd.arg("bench/python/bench_handler.py").arg(events).arg(batches.to_string()).arg(module);
            cmd.env("MODEL_PATH", model);
            cmd
        };
        match self {
            Side::Rust => {
                let mut cmd = Command::new(bench_bin);
                cmd.arg("lambda-handler").arg(events).arg(batches.to_string());
                cmd.env("MODEL_LOCATION", crate::MODEL).env_remove("TRIBUTARY_CONFIG");
                cmd
            }
            Side::Seeds => python("lambda_function", pickle),
            Side::Vectorized => python("lambda_function_vectorized", &root.join(crate::MODEL)),
        }
    }
}

/// Where the handlers' predictions go in one row of the comparison.
struct Target {
    /// Row label.
    what: &'static str,
    /// The Kinesis endpoint, or `None` for a dry run (`TEST_RUN=True`).
    endpoint: Option<String>,
    /// The server's name, for the table of its own time.
    server: &'static str,
}

/// The rows: a dry run, then each loopback Kinesis server the services provide (kinesis-mock,
/// moto, ferrokinesis).
fn targets() -> Result<Vec<Target>> {
    let endpoint =
        |var: &str| std::env::var(var).with_context(|| format!("{var} is unset (run through `cargo xtask bench`)"));
    Ok(vec![
        Target {
            what: "per 100-record batch, TEST_RUN=True (decode, predict, encode; nothing sent)",
            endpoint: None,
            server: "",
        },
        Target {
            what: "per 100-record batch, put to kinesis-mock on loopback (1 PutRecords vs 100 `put_record`)",
            endpoint: Some(endpoint("AWS_ENDPOINT_URL_KINESIS")?),
            server: "kinesis-mock",
        },
        Target {
            what: "per 100-record batch, put to moto server on loopback (1 PutRecords vs 100 `put_record`)",
            endpoint: Some(endpoint("AWS_ENDPOINT_URL")?),
            server: "moto",
        },
        Target {
            what: "per 100-record batch, put to ferrokinesis on loopback (1 PutRecords vs 100 `put_record`)",
            endpoint: Some(endpoint("TRIBUTARY_FERROKINESIS")?),
            server: "ferrokinesis",
        },
    ])
}

/// A Kinesis client for `endpoint`.
async fn kinesis_at(endpoint: &str) -> aws_sdk_kinesis::Client {
    let config = aws_sdk_kinesis::config::Builder::from(&tributary_aws::config().await).endpoint_url(endpoint).build();
    aws_sdk_kinesis::Client::from_conf(config)
}

/// A new one-shard stream on `endpoint`, active. Every measured process writes to its own:
/// kinesis-mock's PutRecords slows down as a stream grows.
async fn fresh_stream(kinesis: &aws_sdk_kinesis::Client, endpoint: &str, number: usize) -> Result<String> {
    let name = format!("bench-{}-{number}", std::process::id());
    kinesis
        .create_stream()
        .stream_name(&name)
        .shard_count(1)
        .send()
        .await
        .with_context(|| format!("CreateStream on {endpoint} (are the services up?)"))?;
    for _ in 0..100 {
        let summary = kinesis.describe_stream_summary().stream_name(&name).send().await?;
        if summary.stream_description_summary().map(|d| d.stream_status().as_str()) == Some("ACTIVE") {
            return Ok(name);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    bail!("stream {name} on {endpoint} did not become active")
}

/// Runs both handlers `runs` times over `batches` batches per target and prints the comparison.
pub async fn compare(root: &Path, dir: &Path, batches: usize, runs: usize) -> Result<()> {
    let events = dir.join("events.jsonl");
    write_events(&events, 20, RECORDS_PER_BATCH).await?;
    let pickle = reference_model(root)?;
    let bench_bin = std::env::current_exe()?;
    let mut streams = 0;
    let mut table = Vec::new();
    for target in targets()? {
        let kinesis = match &target.endpoint {
            Some(endpoint) => Some(kinesis_at(endpoint).await),
            None => None,
        };
        // One list of measured processes per handler, in `Side` order.
        let mut measured: [Vec<Handler>; 3] = Default::default();
        for _ in 0..runs {
            for side in Side::ALL {
                let stream = match (&kinesis, &target.endpoint) {
                    (Some(kinesis), Some(endpoint)) => {
                        streams += 1;
                        fresh_stream(kinesis, endpoint, streams).await?
                    }
                    _ => "unused".to_string(),
                };
                let mut cmd = side.command(root, &bench_bin, &events, batches, &pickle);
                cmd.env("RUN_ID", "bench").env("PREDICTIONS_STREAM_NAME", &stream);
                cmd.env("TEST_RUN", if target.endpoint.is_some() { "False" } else { "True" });
                if let Some(endpoint) = &target.endpoint {
                    cmd.env("AWS_ENDPOINT_URL_KINESIS", endpoint);
                }
                measured[side as usize].push(measure(cmd)?);
            }
        }
        let floor = match (&kinesis, &target.endpoint) {
            (Some(kinesis), Some(endpoint)) => {
                // Two streams, each written as much as a handler's (moto's puts slow down as a
                // stream grows).
                let batch_stream = fresh_stream(kinesis, endpoint, streams + 1).await?;
                let single_stream = fresh_stream(kinesis, endpoint, streams + 2).await?;
                streams += 2;
                Some((target.server, server_time(kinesis, [&batch_stream, &single_stream], batches).await?))
            }
            _ => None,
        };
        let [r, p, v] = measured.map(|runs| summarize(&runs));
        table.push((target.what, r, p, v, floor));
    }
    println!(
        "| | tributary (Rust) | seeds' Python handler | vectorized Python handler | ratio to the seeds' | ratio to vectorized |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (what, r, p, v, _) in &table {
        let (r, p, v) = (r.batch_ms, p.batch_ms, v.batch_ms);
        println!("| {what} | {r:.2} ms | {p:.1} ms | {v:.2} ms | {:.0}x | {:.1}x |", p / r, v / r);
    }
    let (_, r, p, v, _) = &table[1];
    println!(
        "| process start to ready | {:.1} ms | {:.0} ms | {:.0} ms | {:.0}x | {:.0}x |",
        r.init_ms,
        p.init_ms,
        v.init_ms,
        p.init_ms / r.init_ms,
        v.init_ms / r.init_ms
    );
    println!(
        "| peak RSS | {:.1} MB | {:.1} MB | {:.1} MB | {:.1}x smaller | {:.1}x smaller |",
        r.rss_mb,
        p.rss_mb,
        v.rss_mb,
        p.rss_mb / r.rss_mb,
        v.rss_mb / r.rss_mb
    );
    println!("\n({runs} process(es) per cell, {batches} batches per process, medians)\n");
    let (_, r, p, v, _) = &table[0];
    println!(
        "Every handler is timed from its event's text (Python's `json.loads` of the event, which its \
         runtime does per invocation, included). The Python handlers alone, event already parsed, dry \
         run: seeds' {:.1} ms, vectorized {:.2} ms (tributary {:.1}x the vectorized one on that basis).\n",
        p.handler_ms,
        v.handler_ms,
        v.handler_ms / r.batch_ms
    );
    let floor = reading_floor(&events)?;
    println!(
        "The least a handler can spend reading these events (in this process: serde_json into borrowed \
         fields, each entry's `data` and `sequenceNumber` only, base64, each ride's four fields; no model, \
         no envelope, no request): {floor:.3} ms per event, {:.0}% of the vectorized Python handler's {:.2} ms \
         (dry run): no handler that reads this event format with serde_json can be more than {:.1}x it.\n",
        100.0 * floor / v.batch_ms,
        v.batch_ms,
        v.batch_ms / floor
    );
    println!("The servers' own time, from a bare SDK client in the benchmark process (no handler):\n");
    println!("| server | one PutRecords of 100 records | 100 PutRecord calls | Python handler / one PutRecords |");
    println!("|---|---:|---:|---:|");
    for (_, _, p, _, floor) in &table {
        if let Some((server, (put_records, put_record))) = floor {
            println!("| {server} | {put_records:.2} ms | {put_record:.1} ms | {:.0}x |", p.batch_ms / put_records);
        }
    }
    println!(
        "\n(medians of {batches} batches; the last column is the most any handler that makes one PutRecords call could reach)\n"
    );
    large_batches(root, dir, &bench_bin, &pickle).await?;
    Ok(())
}

/// Median milliseconds per event to read the events in `path` and nothing else: the fields a
/// handler cannot do without (each record's data and sequence number, the ride's three features
/// and its id), borrowed from the event's text where they can be, base64 decoded into one reused
/// buffer. The floor under any handler of this event format that reads it with serde_json (sonic-rs
/// and simd-json were no faster on these events: BENCHMARKS.md), whatever it does next.
fn reading_floor(path: &Path) -> Result<f64> {
    use base64::Engine;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Event<'a> {
        #[serde(rename = "Records", borrow)]
        records: Vec<Entry<'a>>,
    }
    #[derive(Deserialize)]
    struct Entry<'a> {
        #[serde(borrow)]
        kinesis: Kinesis<'a>,
    }
    #[derive(Deserialize)]
    struct Kinesis<'a> {
        data: &'a str,
        #[serde(rename = "sequenceNumber")]
        sequence_number: &'a str,
    }
    #[derive(Deserialize)]
    struct RideEvent {
        ride: Ride,
        ride_id: u64,
    }
    #[derive(Deserialize)]
    #[allow(non_snake_case)]
    struct Ride {
        PULocationID: u32,
        DOLocationID: u32,
        trip_distance: f64,
    }

    let text = std::fs::read_to_string(path)?;
    let events: Vec<&str> = text.lines().collect();
    let mut data = Vec::with_capacity(256);
    let mut times = Vec::new();
    let mut checksum = 0.0;
    for round in 0..2_000 {
        let started = Instant::now();
        let event: Event = serde_json::from_str(events[round % events.len()])?;
        for entry in &event.records {
            data.clear();
            base64::engine::general_purpose::STANDARD.decode_vec(entry.kinesis.data, &mut data)?;
            let ride: RideEvent = serde_json::from_slice(&data)?;
            checksum += f64::from(ride.ride.PULocationID + ride.ride.DOLocationID) + ride.ride.trip_distance;
            checksum += (ride.ride_id as f64) + entry.kinesis.sequence_number.len() as f64;
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    std::hint::black_box(checksum);
    Ok(median(&mut times))
}

/// Records in one event of Lambda's largest Kinesis batch (the event source mapping's
/// `BatchSize` maximum; about 6 MB of event with these rides, Lambda's payload limit).
const LARGEST_BATCH: usize = 10_000;

/// Lambda's smallest memory tier, for the largest batches: peak RSS of each handler invoked three
/// times with one 10,000-record event, dry run (nothing sent, so only the handler's own memory
/// is measured). The event's text stays in memory, as the runtime's copy of the request would.
async fn large_batches(root: &Path, dir: &Path, bench_bin: &Path, pickle: &Path) -> Result<()> {
    let events = dir.join("events-10k.jsonl");
    write_events(&events, 1, LARGEST_BATCH).await?;
    let event_mb = std::fs::metadata(&events)?.len() as f64 / 1e6;
    let mut rows = Vec::new();
    for side in Side::ALL {
        let mut cmd = side.command(root, bench_bin, &events, 3, pickle);
        cmd.env("RUN_ID", "bench").env("PREDICTIONS_STREAM_NAME", "unused").env("TEST_RUN", "True");
        rows.push(measure(cmd)?);
    }
    println!("Largest batches: {LARGEST_BATCH} records per event ({event_mb:.1} MB of event), dry run, 3 batches:\n");
    println!("| | tributary (Rust) | seeds' Python handler | vectorized Python handler |");
    println!("|---|---:|---:|---:|");
    println!(
        "| time per batch | {:.1} ms | {:.0} ms | {:.1} ms |",
        rows[0].batch_ms, rows[1].batch_ms, rows[2].batch_ms
    );
    println!("| peak RSS | {:.1} MB | {:.1} MB | {:.1} MB |\n", rows[0].rss_mb, rows[1].rss_mb, rows[2].rss_mb);
    Ok(())
}

/// The server's time for one batch's worth of output, from a bare SDK client: the median of
/// `batches` PutRecords calls of 100 prediction-sized records, and of `batches` runs of 100
/// PutRecord calls (the seeds' way, without boto3), each kind to its own stream.
async fn server_time(kinesis: &aws_sdk_kinesis::Client, streams: [&str; 2], batches: usize) -> Result<(f64, f64)> {
    let [batch_stream, single_stream] = streams;
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;
    let payload = |id: usize| {
        let prediction = json!({"model": "ride_duration_prediction_model", "version": "bench",
                                "prediction": {"ride_duration": 21.3, "ride_id": id}});
        Blob::new(prediction.to_string())
    };
    let (mut batch_ms, mut single_ms) = (Vec::new(), Vec::new());
    for batch in 0..batches {
        let entries = (0..RECORDS_PER_BATCH)
            .map(|i| {
                let id = batch * RECORDS_PER_BATCH + i;
                PutRecordsRequestEntry::builder().data(payload(id)).partition_key(id.to_string()).build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let started = Instant::now();
        let output = kinesis.put_records().stream_name(batch_stream).set_records(Some(entries)).send().await?;
        batch_ms.push(started.elapsed().as_secs_f64() * 1e3);
        if output.failed_record_count().unwrap_or(0) > 0 {
            bail!("PutRecords to {batch_stream} failed for some records");
        }
        let started = Instant::now();
        for i in 0..RECORDS_PER_BATCH {
            let id = batch * RECORDS_PER_BATCH + i;
            kinesis
                .put_record()
                .stream_name(single_stream)
                .data(payload(id))
                .partition_key(id.to_string())
                .send()
                .await?;
        }
        single_ms.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok((median(&mut batch_ms), median(&mut single_ms)))
}

/// Medians of a cell's processes, figure by figure.
fn summarize(runs: &[Handler]) -> Handler {
    let pick = |f: fn(&Handler) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
    Handler {
        init_ms: pick(|h| h.init_ms),
        batch_ms: pick(|h| h.batch_ms),
        rss_mb: pick(|h| h.rss_mb),
        handler_ms: pick(|h| h.handler_ms),
    }
}
