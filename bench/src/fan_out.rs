//! Benchmark 7: the cost of fan-out. One stream of rides feeds 1, 2 or 3 model consumers
//! (ride_duration; + the placeholder tip model; + the ride-duration model again as a generic
//! `onnx` consumer), either read once by one pipeline (joint fan-out: one decode, one batch
//! through every consumer) or by one pipeline per consumer (independent consumers: each reads
//! and decodes every record). In process, no network: what is measured is the CPU cost of the
//! pipeline itself, as records of the stream handled per CPU-second.

use anyhow::Result;
use tributary_framework::config;
use tributary_framework::runtime::Pipeline;
use tributary_framework::{Record, Source};
use tributary_sources::generator::{GeneratorConfig, GeneratorSource};

use crate::{cpu_seconds, median, run_batches};

/// The consumers, in the order they are added.
const CONSUMERS: [(&str, &str); 3] = [
    ("ride_duration", "type = \"ride_duration\"\nmodel = \"processors/models/ride_duration/model.onnx\"\n"),
    ("tip", "type = \"tip\"\nmodel = \"processors/models/tip/model.onnx\"\n"),
    (
        "duration_onnx",
        "type = \"onnx\"\nmodel = \"processors/models/ride_duration/model.onnx\"\nmodel_name = \"d\"\n\
         echo = [\"ride_id\"]\noutputs = { ride_duration = \"ride_duration\" }\n\
         features = { PU_DO = { template = \"{ride.PULocationID}_{ride.DOLocationID}\", type = \"string\" }, \
         trip_distance = { field = \"ride.trip_distance\", type = \"float\" } }\n",
    ),
];

fn pipeline_toml(consumers: &[(&str, &str)]) -> String {
    let mut toml = String::from("[sources.rides]\ntype = \"generator\"\n");
    for (id, body) in consumers {
        toml.push_str(&format!("[processors.{id}]\ninputs = [\"rides\"]\n{body}"));
    }
    let ids: Vec<String> = consumers.iter().map(|(id, _)| format!("\"{id}\"")).collect();
    toml.push_str(&format!("[sinks.nowhere]\ntype = \"blackhole\"\ninputs = [{}]\n", ids.join(", ")));
    toml
}

async fn graphs(tomls: &[String]) -> Result<Vec<std::sync::Arc<tributary_framework::graph::Graph>>> {
    let mut graphs = Vec::new();
    for toml in tomls {
        let config = config::from_toml_str("bench.toml", toml)?;
        graphs.push(Pipeline::build(&config, &tributary::registry()).await?.graph());
    }
    Ok(graphs)
}

/// Stream records per CPU-second (median of 3) through `graphs`, each given every batch.
async fn rate(graphs: &[std::sync::Arc<tributary_framework::graph::Graph>], batches: &[Vec<Record>]) -> Result<f64> {
    let records: usize = batches.iter().map(Vec::len).sum();
    for graph in graphs {
        run_batches(graph, &batches[..batches.len().min(5)]).await?;
    }
    let mut rates = Vec::new();
    for _ in 0..3 {
        let cpu0 = cpu_seconds()?;
        for graph in graphs {
            run_batches(graph, batches).await?;
        }
        rates.push(records as f64 / (cpu_seconds()? - cpu0).max(1e-9));
    }
    Ok(median(&mut rates))
}

/// Prints the fan-out table for `records` rides in batches of 1,000.
pub async fn compare(records: usize) -> Result<()> {
    let mut generator = GeneratorSource::new(
        "rides".into(),
        GeneratorConfig { count: Some(records as u64), rate: None, seed: 3, first_ride_id: 1 },
    );
    let mut batches = Vec::new();
    while let Some(b) = generator.next_batch(1_000).await? {
        batches.push(b);
    }
    println!("| model consumers | read once (one pipeline) | one pipeline per consumer | read-once advantage |");
    println!("|---:|---:|---:|---:|");
    let mut single = 0.0;
    for k in 1..=CONSUMERS.len() {
        let joint = rate(&graphs(&[pipeline_toml(&CONSUMERS[..k])]).await?, &batches).await?;
        let separate_tomls: Vec<String> =
            CONSUMERS[..k].iter().map(|c| pipeline_toml(std::slice::from_ref(c))).collect();
        let separate = rate(&graphs(&separate_tomls).await?, &batches).await?;
        if k == 1 {
            single = joint;
        }
        println!(
            "| {k} | {joint:.0} records/s ({:.2} of 1 consumer) | {separate:.0} records/s | {:.2}x |",
            joint / single,
            joint / separate
        );
    }
    println!();
    Ok(())
}
