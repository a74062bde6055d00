//! `tributary-bench`: the measurements behind BENCHMARKS.md. Run it with `cargo xtask bench`
//! (release build; `TRIBUTARY_BIN` names the `tributary` binary to time). `--quick` runs fewer
//! records, for a smoke test.
//!
//! 1. Processing rate per core: decode -> predict -> encode through the real graph
//!    (`Graph::run_batch`, `ride_duration` on ONNX Runtime, `blackhole` sink encoding JSON) at
//!    batch sizes 1, 100 and 1,000, as records per CPU-second of the whole process.
//! 2. Start to first prediction: `tributary run` spawned until its first output line.
//! 3. Peak RSS of `tributary run` over a long generator stream.
//! 4. The Lambda handler against the seeds' Python handler and a vectorized one (`bench/python/`),
//!    side by side: time per 100-record Kinesis batch (decode, predict, put to each loopback
//!    Kinesis server: kinesis-mock, moto, ferrokinesis), process start to ready, peak RSS; then
//!    10,000-record events. Needs the local services (`cargo xtask bench` starts them).
//! 5. One Kinesis worker end to end against a Python consumer written the seeds' way.
//! 6. Kafka consume -> predict -> produce on the local broker against three Python peers
//!    (confluent-kafka per record and batched, Quix Streams) and a bare Rust consume -> produce
//!    loop (the broker's ceiling).
//! 7. The cost of fan-out: 1, 2 and 3 model consumers read once, next to one pipeline each.
//! 8. Models exported the standard way (skl2onnx, onnxmltools) run by configuration, next to
//!    Python onnxruntime and scikit-learn.
//! 9. Models from the MLflow registry: start to first prediction, the pause a reload causes,
//!    the shadow model's cost.
//! 10. The web service: `tributary serve` against the seeds' Flask app under gunicorn, loaded
//!     by wrk at concurrency 1, 16 and 64.
//! 11. Batch: a generated TLC month scored Parquet -> ride_duration -> Parquet, against the
//!     seeds' pandas way and vectorized Python (pyarrow + onnxruntime).
//!
//! `tributary-bench lambda-handler EVENTS BATCHES` is the Rust side of 4, run as its own process.

/// The same allocator as the `tributary` binaries (see `deployments/src/main.rs`), so that the
/// in-process sections measure what they run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod batch;
mod exported;
mod fan_out;
mod kafka;
mod lambda;
mod registry;
mod web;
mod worker;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tributary_framework::config;
use tributary_framework::graph::Graph;
use tributary_framework::runtime::Pipeline;
use tributary_framework::{Record, Source};
use tributary_sources::generator::{GeneratorConfig, GeneratorSource};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let root = repo_root()?;
    if args.get(1).map(String::as_str) == Some("lambda-handler") {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        return runtime.block_on(lambda::handler_process(&args[2..]));
    }
    let quick = args.iter().any(|a| a == "--quick");
    // `--sections 4,5` runs only those.
    let sections: Vec<u32> = args
        .iter()
        .position(|a| a == "--sections")
        .and_then(|i| args.get(i + 1))
        .map(|list| list.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| (1..=11).filter(|n| *n != 9).collect());
    let wants = |n: u32| sections.contains(&n);
    println!("## tributary benchmarks\n");
    println!(
        "machine: {}, {} cores; {}\n",
        cpu_model(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        today()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    if wants(1) {
        // A build just finished, or services someone started (by hand; `cargo xtask bench` runs
        // this section before starting any) may still keep the cores busy.
        settle(Duration::from_secs(60));
        println!("### 1. Processing rate (decode -> ride_duration -> encode), one worker thread\n");
        println!(
            "| batch size | records | records/s per CPU-second (median of 5) | records/s wall | us/record (CPU) |"
        );
        println!("|---:|---:|---:|---:|---:|");
        for (batch, records) in [(1usize, 20_000usize), (100, 200_000), (1_000, 1_000_000)] {
            let records = if quick { records / 20 } else { records };
            let (per_cpu, per_wall) = runtime.block_on(processing_rate(batch, records))?;
            println!("| {batch} | {records} | {per_cpu:.0} | {per_wall:.0} | {:.2} |", 1e6 / per_cpu);
        }
    }

    let bin = PathBuf::from(std::env::var("TRIBUTARY_BIN").context("TRIBUTARY_BIN: run through `cargo xtask bench`")?);
    let dir = tempfile::tempdir()?;
    if wants(2) {
        println!("\n### 2. Process start to first prediction (`tributary run`, model from a local file)\n");
        let first = start_to_first_prediction(&bin, dir.path(), if quick { 3 } else { 11 }, MODEL)?;
        println!("median {:.1} ms, min {:.1} ms, max {:.1} ms over {} runs\n", first.0, first.1, first.2, first.3);
    }

    if wants(3) {
        let count = if quick { 100_000 } else { 2_000_000 };
        println!("### 3. Peak memory of `tributary run` (generator -> ride_duration -> blackhole, {count} records)\n");
        let (rss_kb, secs) = peak_rss(&bin, dir.path(), count)?;
        println!(
            "peak RSS {:.1} MB; {:.0} records/s wall for the whole process\n",
            rss_kb as f64 / 1024.0,
            count as f64 / secs
        );
    }

    if wants(4) {
        println!(
            "### 4. Lambda handler: tributary vs the seeds' Python handler (100-record Kinesis batches, loopback Kinesis servers)\n"
        );
        runtime.block_on(lambda::compare(&root, dir.path(), if quick { 5 } else { 20 }, if quick { 1 } else { 3 }))?;
    }

    if wants(5) {
        println!("### 5. Kinesis worker end to end (kinesis-mock on loopback)\n");
        let pickle = lambda::reference_model(&root)?;
        runtime.block_on(worker::compare(&root, &bin, &pickle, if quick { 500 } else { 2000 }))?;
    }

    if wants(6) {
        println!("### 6. Kafka end to end: consume -> predict -> produce (tansu on loopback)\n");
        let pickle = lambda::reference_model(&root)?;
        // The Python peers get as many rides as take them a few seconds.
        let (count, py_counts) =
            if quick { (20_000, [2_000, 10_000, 2_000]) } else { (300_000, [10_000, 100_000, 20_000]) };
        runtime.block_on(kafka::compare(&root, &bin, &pickle, count, py_counts, if quick { 1 } else { 3 }))?;
    }

    if wants(7) {
        println!("### 7. The cost of fan-out (in process, batches of 1,000, one worker thread)\n");
        runtime.block_on(fan_out::compare(if quick { 20_000 } else { 200_000 }))?;
    }

    if wants(8) {
        println!("### 8. Exported models by configuration (in process, batches of 1,000, one worker thread)\n");
        runtime.block_on(exported::compare(&root, if quick { 10_000 } else { 100_000 }))?;
    }

    if wants(9) {
        println!("### 9. Models from the MLflow registry (tracking server and artifact proxy on loopback)\n");
        runtime.block_on(registry::measure(&root, &bin, dir.path(), quick))?;
    }

    if wants(10) {
        println!("### 10. Web service: `tributary serve` vs the seeds' Flask app under gunicorn (wrk on loopback)\n");
        let pickle = lambda::reference_model(&root)?;
        web::compare(&root, &bin, &pickle, dir.path(), if quick { 2 } else { 10 })?;
    }

    if wants(11) {
        println!("### 11. Batch: a TLC month, Parquet -> ride_duration -> Parquet, against Python\n");
        let pickle = lambda::reference_model(&root)?;
        batch::compare(
            &root,
            &bin,
            &pickle,
            dir.path(),
            if quick { 300_000 } else { 3_000_000 },
            if quick { 1 } else { 7 },
        )?;
    }
    Ok(())
}

/// The repository: the current directory, where `cargo xtask bench` runs this. Not a path
/// compiled in, which a target directory shared between clones would hand to every clone.
fn repo_root() -> Result<PathBuf> {
    let root = std::env::current_dir()?;
    if !root.join(MODEL).is_file() {
        bail!(
            "{} has no {MODEL}: run the benchmarks from the repository root (cargo xtask bench does)",
            root.display()
        );
    }
    Ok(root)
}

const MODEL: &str = "processors/models/ride_duration/model.onnx";

/// Runs `records` generated rides through the graph in batches of `batch`; returns
/// (records per CPU-second, records per wall-second), median of 5 runs.
async fn processing_rate(batch: usize, records: usize) -> Result<(f64, f64)> {
    let toml = format!(
        "[sources.rides]\ntype = \"generator\"\n[processors.ride_duration]\ntype = \"ride_duration\"\n\
         inputs = [\"rides\"]\nmodel = \"{MODEL}\"\n[sinks.nowhere]\ntype = \"blackhole\"\ninputs = [\"ride_duration\"]\n"
    );
    let config = config::from_toml_str("bench.toml", &toml)?;
    let pipeline = Pipeline::build(&config, &tributary::registry()).await?;
    let graph = pipeline.graph();
    // Records made before timing: the source is not what is measured.
    let mut generator = GeneratorSource::new(
        "rides".into(),
        GeneratorConfig { count: Some(records as u64), rate: None, seed: 1, first_ride_id: 1 },
    );
    let mut batches: Vec<Vec<Record>> = Vec::new();
    while let Some(b) = generator.next_batch(batch).await? {
        batches.push(b);
    }
    run_batches(&graph, &batches[..batches.len().min(10)]).await?; // warm-up
    let mut cpu_rates = Vec::new();
    let mut wall_rates = Vec::new();
    for _ in 0..5 {
        let (cpu0, wall0) = (cpu_seconds()?, Instant::now());
        run_batches(&graph, &batches).await?;
        let (cpu, wall) = (cpu_seconds()? - cpu0, wall0.elapsed().as_secs_f64());
        cpu_rates.push(records as f64 / cpu.max(1e-9));
        wall_rates.push(records as f64 / wall);
    }
    Ok((median(&mut cpu_rates), median(&mut wall_rates)))
}

pub(crate) async fn run_batches(graph: &Graph, batches: &[Vec<Record>]) -> Result<()> {
    for batch in batches {
        let report = graph.run_batch(0, batch).await;
        if report.failed().next().is_some() {
            bail!("a record failed: {:?}", report.failed().next());
        }
    }
    Ok(())
}

/// A counter from `tributary run --metrics-addr 127.0.0.1:PORT` (0 while it does not answer).
pub(crate) fn metric(port: u16, name: &str) -> f64 {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return 0.0 };
    if stream.write_all(b"GET / HTTP/1.1\r\n\r\n").is_err() {
        return 0.0;
    }
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Waits until this machine's CPUs are mostly idle (under a quarter busy over half a second,
/// from /proc/stat), at most `limit`: services just started (a JVM, a Python server) keep the
/// cores busy for a while, which the first measurement after them would pay for.
pub(crate) fn settle(limit: Duration) {
    fn ticks() -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
        // user nice system idle iowait irq softirq: idle and iowait are not busy. Steal (time
        // the hypervisor gave to other machines) is left out: waiting does not end it.
        let first = fields.get(..7)?;
        Some((first.iter().sum(), first[3] + first[4]))
    }
    let started = Instant::now();
    while started.elapsed() < limit {
        let Some((total, idle)) = ticks() else { return };
        std::thread::sleep(Duration::from_millis(500));
        let Some((total_after, idle_after)) = ticks() else { return };
        let busy = 1.0 - (idle_after - idle) as f64 / (total_after - total).max(1) as f64;
        if busy < 0.25 {
            eprintln!("bench: CPUs settled ({:.0}% busy) after {:.1} s", busy * 100.0, started.elapsed().as_secs_f64());
            return;
        }
    }
    eprintln!("bench: CPUs still busy after {} s; measuring anyway", limit.as_secs());
}

pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// User + system CPU time of this process (all threads), from /proc/self/stat.
/// The peak RSS (`VmHWM`, kB) in a `/proc/<pid>/status` file, while the process lives.
pub(crate) fn peak_rss_kb(status_path: &str) -> Option<u64> {
    let status = std::fs::read_to_string(status_path).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
}

pub(crate) fn cpu_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).context("parsing /proc/self/stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) (utime, stime) are at 11 and 12 after the name.
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0) // USER_HZ is 100 on Linux.
}

fn write_config(dir: &Path, name: &str, body: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, body)?;
    Ok(path)
}

/// (median, min, max, runs) in milliseconds, with the ride-duration processor's model at `model`.
pub(crate) fn start_to_first_prediction(
    bin: &Path,
    dir: &Path,
    runs: usize,
    model: &str,
) -> Result<(f64, f64, f64, usize)> {
    let config = write_config(
        dir,
        "first.toml",
        &format!(
            "[sources.rides]\ntype = \"generator\"\ncount = 1\n[processors.ride_duration]\ntype = \"ride_duration\"\n\
             inputs = [\"rides\"]\nmodel = \"{model}\"\n[sinks.out]\ntype = \"stdout\"\ninputs = [\"ride_duration\"]\n"
        ),
    )?;
    let mut times = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let mut child = Command::new(bin).args(["run", "--config"]).arg(&config).stdout(Stdio::piped()).spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let elapsed = started.elapsed().as_secs_f64() * 1e3;
        if !line.contains("ride_duration") {
            bail!("unexpected first line {line:?}");
        }
        child.wait()?;
        times.push(elapsed);
    }
    let (min, max) = (times.iter().copied().fold(f64::MAX, f64::min), times.iter().copied().fold(0.0, f64::max));
    Ok((median(&mut times), min, max, runs))
}

/// (peak RSS in kB, wall seconds) of one `tributary run` over `count` generated rides.
pub(crate) fn peak_rss(bin: &Path, dir: &Path, count: u64) -> Result<(u64, f64)> {
    let config = write_config(
        dir,
        "rss.toml",
        &format!(
            "[sources.rides]\ntype = \"generator\"\ncount = {count}\n[processors.ride_duration]\ntype = \"ride_duration\"\n\
             inputs = [\"rides\"]\nmodel = \"{MODEL}\"\n[sinks.nowhere]\ntype = \"blackhole\"\ninputs = [\"ride_duration\"]\n"
        ),
    )?;
    let started = Instant::now();
    let mut child = Command::new(bin).args(["run", "--no-status", "--config"]).arg(&config).spawn()?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Some(kb) = peak_rss_kb(&status_path) {
            peak = peak.max(kb);
        }
        if let Some(exit) = child.try_wait()? {
            if !exit.success() {
                bail!("tributary run failed: {exit}");
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok((peak, started.elapsed().as_secs_f64()))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn today() -> String {
    Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
