//! Benchmark 8: models exported the standard way (`tests/fixtures/models/export.py`: skl2onnx,
//! onnxmltools, LightGBM) run by configuration (`tests/fixtures/models/<name>.toml`), next to
//! Python doing the same (`bench/python/exported_models.py`). In process, one worker thread,
//! batches of 1,000: decode -> `onnx` processor -> encode, as CPU time per record; ONNX Runtime's
//! own time per record (the floor); and the Python onnxruntime consumer (one `run` per batch, or
//! per record where onnxruntime takes one map per call) and scikit-learn's batch `predict`.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tributary_framework::Record;
use tributary_framework::config;
use tributary_framework::record::{Offset, Position};
use tributary_framework::runtime::Pipeline;
use tributary_processors::onnx::{OnnxConfig, OnnxProcessor};

use crate::{cpu_seconds, median, run_batches};

const MODELS: [(&str, &str); 8] = [
    ("bike_linear", "regressor, [N, 4] from 4 fields"),
    ("lightgbm_regressor", "LightGBM regressor, [N, 6] from an array"),
    ("fare_columns", "one input per column: string, int64, float"),
    ("rides_forest", "DictVectorizer + random forest, map input"),
    ("fraud_zipmap", "binary classifier, ZipMap"),
    ("fraud_tensor", "binary classifier, [N, 2] probabilities"),
    ("tier_zipmap", "3-class, string labels, ZipMap"),
    ("tier_tensor", "3-class, string labels, [N, 3]"),
];

const BATCH: usize = 1_000;

/// Runs the comparison on `records` records per model and prints the table.
pub async fn compare(root: &Path, records: usize) -> Result<()> {
    let fixtures = tempfile::tempdir()?;
    let python = root.join(".venv/bin/python");
    let status = Command::new(&python).arg("tests/fixtures/models/export.py").arg(fixtures.path()).status()?;
    if !status.success() {
        bail!("tests/fixtures/models/export.py failed");
    }
    let output = Command::new(&python)
        .arg("bench/python/exported_models.py")
        .arg(fixtures.path())
        .args([records.to_string(), BATCH.to_string()])
        .output()?;
    if !output.status.success() {
        bail!("bench/python/exported_models.py failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let reference: Value = serde_json::from_slice(&output.stdout).context("bench/python/exported_models.py output")?;
    println!(
        "| model | tributary us/record (CPU) | ONNX Runtime's own us/record | tributary above the model | of which JSON decode + envelope encode | Python onnxruntime us/record | ratio | scikit-learn batch predict us/record | ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, what) in MODELS {
        let mapping = std::fs::read_to_string(root.join(format!("tests/fixtures/models/{name}.toml")))?;
        let model = fixtures.path().join(format!("{name}.onnx"));
        let toml = format!(
            "[sources.events]\ntype = \"generator\"\n[processors.model]\ntype = \"onnx\"\ninputs = [\"events\"]\n\
             model = {model:?}\nmodel_name = \"{name}\"\necho = [\"id\"]\n{mapping}\n\
             [sinks.nowhere]\ntype = \"blackhole\"\ninputs = [\"model\"]\n"
        );
        let config = config::from_toml_str("bench.toml", &toml)?;
        let lines = good_events(&fixtures.path().join(format!("{name}.events.jsonl")))?;
        let (ours, floor, json) = measure(&config, &lines, records).await?;
        let python = reference[name]["ort"].as_f64().unwrap_or(f64::NAN);
        let sklearn = reference[name]["sklearn"].as_f64();
        println!(
            "| {name} ({what}) | {ours:.2} | {floor:.2} | {:.2} | {json:.2} | {python:.2} | {:.1}x | {} | {} |",
            ours - floor,
            python / ours,
            sklearn.map_or_else(|| "-".into(), |s| format!("{s:.2}")),
            sklearn.map_or_else(|| "-".into(), |s| format!("{:.1}x", s / ours)),
        );
    }
    println!(
        "\nPython onnxruntime's own `run` time per record (arrays built beforehand): {}; scikit-learn's `predict` \
         alone on the DictVectorizer pipeline: {:.2} us/record.\n",
        MODELS
            .iter()
            .filter_map(|(name, _)| reference[name]["ort_run"].as_f64().map(|t| format!("{name} {t:.2}")))
            .collect::<Vec<_>>()
            .join(", "),
        reference["rides_forest"]["sklearn_predict"].as_f64().unwrap_or(f64::NAN),
    );
    Ok(())
}

/// The good events' lines (ids below 10,000; export.py numbers bad ones from 10,000).
fn good_events(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).ok().and_then(|v| v["id"].as_u64()).is_some_and(|id| id < 10_000))
        .map(str::to_string)
        .collect())
}

/// (tributary's CPU us per record, median of 5; ONNX Runtime's own us per record; the record
/// model's own us per record: parsing each event into a `serde_json::Value` and encoding the
/// envelope the pipeline made of it, the floor of any pipeline that keeps a JSON value per record).
async fn measure(config: &config::PipelineConfig, lines: &[String], records: usize) -> Result<(f64, f64, f64)> {
    let pipeline = Pipeline::build(config, &tributary::registry()).await?;
    let graph = pipeline.graph();
    let position =
        |i: usize| Position { source: "events".into(), partition: "0".into(), offset: Offset::Index(i as u64) };
    let all: Vec<Record> =
        (0..records).map(|i| Record::new(lines[i % lines.len()].clone().into_bytes(), position(i))).collect();
    let batches: Vec<Vec<Record>> = all.chunks(BATCH).map(<[Record]>::to_vec).collect();
    run_batches(&graph, &batches[..batches.len().min(3)]).await?; // warm-up
    let mut per_record = Vec::new();
    for _ in 0..5 {
        let cpu0 = cpu_seconds()?;
        run_batches(&graph, &batches).await?;
        per_record.push((cpu_seconds()? - cpu0) / records as f64 * 1e6);
    }
    let onnx: OnnxConfig = config.processors["model"].parse()?;
    let processor = OnnxProcessor::load(&onnx).await.map_err(|(key, e)| anyhow::anyhow!("{key}: {e}"))?;
    let events: Vec<Value> =
        (0..BATCH).map(|i| serde_json::from_str(&lines[i % lines.len()])).collect::<Result<_, _>>()?;
    let floor = processor.model_seconds_per_record(&events, 21).await.map_err(anyhow::Error::msg)? * 1e6;
    let json = json_seconds_per_record(&processor, &events, &lines[..BATCH.min(lines.len())]).await? * 1e6;
    Ok((median(&mut per_record), floor, json))
}

/// Median over 21 rounds of: decode `lines` into values, drop them, and encode the envelopes the
/// processor makes of `events`, per record. Wall time on one thread, nothing else running.
async fn json_seconds_per_record(processor: &OnnxProcessor, events: &[Value], lines: &[String]) -> Result<f64> {
    use tributary_framework::{Input, Outcome, Output, Processor};
    let events: Vec<Output> = events.iter().cloned().map(Output::from).collect();
    let records: Vec<Record> = events
        .iter()
        .enumerate()
        .map(|(i, _)| {
            Record::new(
                Vec::new(),
                Position { source: "e".into(), partition: "0".into(), offset: Offset::Index(i as u64) },
            )
        })
        .collect();
    let inputs: Vec<Input<'_>> = events.iter().zip(&records).map(|(value, record)| Input { value, record }).collect();
    let envelopes: Vec<Output> = processor
        .process(&inputs)
        .await?
        .into_iter()
        .filter_map(|o| if let Outcome::Emit(mut v) = o { v.pop() } else { None })
        .collect();
    let mut rounds = Vec::new();
    let mut buf = Vec::with_capacity(512);
    for _ in 0..21 {
        let started = std::time::Instant::now();
        for line in lines {
            let value: Value = serde_json::from_str(line)?;
            std::hint::black_box(&value);
        }
        for envelope in &envelopes {
            buf.clear();
            serde_json::to_writer(&mut buf, envelope)?;
            std::hint::black_box(&buf);
        }
        rounds.push(started.elapsed().as_secs_f64() / lines.len().max(1) as f64);
    }
    Ok(median(&mut rounds))
}
