//! Benchmark 9: models from the MLflow registry (the tracking server `cargo xtask services up`
//! starts on loopback, artifacts on moto's S3 through the server's proxy). The ride-duration
//! model is registered twice (`bench/python/register_ride_duration.py`), then:
//!
//! - start to first prediction of `tributary run` with `model = "models:/<name>@champion"`,
//!   next to the same model from a local file;
//! - the pause a reload causes: batches of 1,000 run back to back while the alias moves to
//!   version 2 (`reload_interval_s = 1`); each batch's wall time, the batch that switched, and
//!   the longest against the median;
//! - the shadow model's cost: CPU time per record with `shadow = "models:/<name>/2"` (its
//!   comparisons to a `blackhole` sink) against none.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::json;
use tributary_framework::config;
use tributary_framework::runtime::Pipeline;
use tributary_framework::{Record, Source};
use tributary_processors::mlflow::TrackingClient;
use tributary_sources::generator::{GeneratorConfig, GeneratorSource};

use crate::{MODEL, cpu_seconds, median, run_batches, start_to_first_prediction};

const BATCH: usize = 1_000;

/// The `onnx` processor on the ride-duration model at `model`, generator rides in.
fn pipeline_toml(model: &str, extra: &str, shadow_sink: bool) -> String {
    let mut toml = format!(
        "[sources.rides]\ntype = \"generator\"\n\n[processors.duration]\ntype = \"onnx\"\ninputs = [\"rides\"]\n\
         model = \"{model}\"\nmodel_name = \"ride_duration_prediction_model\"\necho = [\"ride_id\"]\n{extra}\n\
         outputs = {{ ride_duration = \"ride_duration\" }}\n[processors.duration.features]\n\
         PU_DO = {{ template = \"{{ride.PULocationID}}_{{ride.DOLocationID}}\", type = \"string\" }}\n\
         trip_distance = {{ field = \"ride.trip_distance\", type = \"float\" }}\n\n\
         [sinks.nowhere]\ntype = \"blackhole\"\ninputs = [\"duration\"]\n"
    );
    if shadow_sink {
        toml.push_str("\n[sinks.shadow_log]\ntype = \"blackhole\"\ninputs = [\"duration.shadow\"]\n");
    }
    toml
}

async fn rides(records: usize) -> Result<Vec<Vec<Record>>> {
    let mut generator = GeneratorSource::new(
        "rides".into(),
        GeneratorConfig { count: Some(records as u64), rate: None, seed: 1, first_ride_id: 1 },
    );
    let mut batches = Vec::new();
    while let Some(b) = generator.next_batch(BATCH).await? {
        batches.push(b);
    }
    Ok(batches)
}

/// Runs the three measurements and prints them.
pub async fn measure(root: &Path, bin: &Path, dir: &Path, quick: bool) -> Result<()> {
    if std::env::var_os("MLFLOW_TRACKING_URI").is_none() {
        bail!("MLFLOW_TRACKING_URI is not set: run through `cargo xtask bench` (it starts the MLflow server)");
    }
    let name = format!("bench_ride_duration_{}", std::process::id());
    let python = root.join(".venv/bin/python");
    let status = Command::new(&python).arg("bench/python/register_ride_duration.py").arg(&name).status()?;
    if !status.success() {
        bail!("bench/python/register_ride_duration.py failed");
    }
    let uri = format!("models:/{name}@champion");

    let runs = if quick { 3 } else { 11 };
    let local = start_to_first_prediction(bin, dir, runs, MODEL)?;
    let registry = start_to_first_prediction(bin, dir, runs, &uri)?;
    println!("| `model =` | start to first prediction, median | min | max | runs |\n|---|---:|---:|---:|---:|");
    println!("| `{MODEL}` (local file) | {:.1} ms | {:.1} ms | {:.1} ms | {} |", local.0, local.1, local.2, local.3);
    println!(
        "| `models:/<name>@champion` (registry on loopback) | {:.1} ms | {:.1} ms | {:.1} ms | {} |\n",
        registry.0, registry.1, registry.2, registry.3
    );

    reload_pause(&uri, &name, if quick { 8 } else { 12 }).await?;
    shadow_cost(&uri, &name, if quick { 10_000 } else { 100_000 }).await
}

async fn reload_pause(uri: &str, name: &str, seconds: u64) -> Result<()> {
    let config = config::from_toml_str("bench.toml", &pipeline_toml(uri, "reload_interval_s = 1", false))?;
    let pipeline = Pipeline::build(&config, &tributary::registry()).await?;
    let graph = pipeline.graph();
    let batches = rides(50 * BATCH).await?;
    let serving = || {
        graph.refresh_processor_gauges();
        graph.metrics().processor_gauges().get("duration").and_then(|g| {
            g.iter().find(|g| g.name == "model_serving").and_then(|g| g.labels.first().map(|(_, v)| v.clone()))
        })
    };
    // The alias moves through the REST API from this process: a Python client would compete
    // for the CPU while it starts.
    let client = TrackingClient::from_env().map_err(anyhow::Error::msg)?;
    let body = json!({"name": name, "alias": "champion", "version": "2"});
    let mover = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        client.post_json("registered-models/alias", &body).await
    });
    let started = Instant::now();
    let mut times = Vec::new();
    let mut switched = None;
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        let t = Instant::now();
        run_batches(&graph, std::slice::from_ref(&batches[i % batches.len()])).await?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        if switched.is_none() && serving().as_deref() == Some("2") {
            switched = Some(times.len() - 1);
        }
        i += 1;
    }
    mover.await?.map_err(anyhow::Error::msg)?;
    let Some(at) = switched else { bail!("the processor never switched to version 2") };
    let typical = median(&mut times.clone());
    let (longest_at, longest) =
        times.iter().copied().enumerate().fold((0, 0.0), |best, (i, t)| if t > best.1 { (i, t) } else { best });
    let window = at.saturating_sub(10)..(at + 10).min(times.len());
    let excess: f64 = times[window.clone()].iter().map(|t| (t - typical).max(0.0)).sum();
    let around: Vec<String> =
        times[at.saturating_sub(3)..(at + 3).min(times.len())].iter().map(|t| format!("{t:.2}")).collect();
    println!(
        "Reload (alias moved through the REST API 2 s in, `reload_interval_s = 1`; {} batches of {BATCH} back to back, \
         {seconds} s): median batch {typical:.2} ms; the longest {longest:.2} ms, batch {longest_at} ({:+} from the switch); \
         the batches around the switch (batch {at}, the first on version 2, is the 4th): {} ms; time above the median over \
         the 20 batches around the switch: {excess:.2} ms, {:.1} batches' worth.\n",
        times.len(),
        longest_at as i64 - at as i64,
        around.join(", "),
        excess / typical,
    );
    Ok(())
}

async fn shadow_cost(uri: &str, name: &str, records: usize) -> Result<()> {
    let batches = rides(records).await?;
    let mut results = Vec::new();
    for (label, extra, sink) in [
        ("without a shadow", String::new(), false),
        ("with `shadow = \"models:/<name>/2\"`", format!("shadow = \"models:/{name}/2\""), true),
    ] {
        let config = config::from_toml_str("bench.toml", &pipeline_toml(uri, &extra, sink))?;
        let pipeline = Pipeline::build(&config, &tributary::registry()).await?;
        let graph = pipeline.graph();
        run_batches(&graph, &batches[..3.min(batches.len())]).await?;
        let mut per_record = Vec::new();
        for _ in 0..5 {
            let cpu0 = cpu_seconds()?;
            run_batches(&graph, &batches).await?;
            per_record.push((cpu_seconds()? - cpu0) / records as f64 * 1e6);
        }
        results.push((label, median(&mut per_record)));
    }
    println!(
        "| `onnx` processor, ride-duration model, batches of {BATCH} | us/record (CPU, median of 5) |\n|---|---:|"
    );
    for (label, us) in &results {
        println!("| {label} | {us:.2} |");
    }
    println!("\nThe shadow's cost: {:.2} us/record.\n", results[1].1 - results[0].1);
    Ok(())
}
