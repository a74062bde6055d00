//! Section 11, batch scoring: one generated TLC month (`tributary tlc-sample`, the 2024 schema)
//! scored Parquet -> ride_duration -> Parquet by `tributary run` on
//! `deployments/config/batch.toml`, side by side with `bench/python/batch_score.py` the seeds'
//! way (pandas, `prepare_features` dicts, the scikit-learn pipeline) and vectorized
//! (pyarrow + numpy + onnxruntime on the same model.onnx). Rows per CPU-second of the whole
//! process (per core), wall time and peak RSS; then tributary's peak RSS on a file three times
//! as large, to show that memory does not grow with the file.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::median;

/// One run's figures.
#[derive(Clone, Copy)]
struct Run {
    wall_s: f64,
    cpu_s: f64,
    rss_mb: f64,
}

/// Runs `cmd` to its end, sampling its CPU time and peak RSS from /proc every 5 ms.
fn measure(cmd: &mut Command) -> Result<Run> {
    let started = Instant::now();
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().context("starting the scorer")?;
    let (stat, status) = (format!("/proc/{}/stat", child.id()), format!("/proc/{}/status", child.id()));
    let (mut cpu_s, mut rss_kb) = (0.0, 0u64);
    loop {
        if let Ok(text) = std::fs::read_to_string(&stat)
            && let Some((_, rest)) = text.rsplit_once(')')
        {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if let (Some(u), Some(s)) = (fields.get(11), fields.get(12)) {
                cpu_s = (u.parse::<f64>().unwrap_or(0.0) + s.parse::<f64>().unwrap_or(0.0)) / 100.0;
            }
        }
        if let Some(kb) = crate::peak_rss_kb(&status) {
            rss_kb = rss_kb.max(kb);
        }
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let wall_s = started.elapsed().as_secs_f64();
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(Run { wall_s, cpu_s, rss_mb: rss_kb as f64 / 1024.0 })
}

fn medians(runs: &[Run]) -> Run {
    let pick = |f: fn(&Run) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
    Run { wall_s: pick(|r| r.wall_s), cpu_s: pick(|r| r.cpu_s), rss_mb: pick(|r| r.rss_mb) }
}

fn sample(bin: &Path, root: &Path, out: &Path, rows: u64) -> Result<()> {
    let status = Command::new(bin)
        .current_dir(root)
        .args(["tlc-sample", "--month", "2024-01", "--bad-every", "10000", "--rows", &rows.to_string(), "--out"])
        .arg(out)
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("tributary tlc-sample failed");
    }
    Ok(())
}

fn tributary(bin: &Path, root: &Path, data: &Path, dir: &Path) -> Command {
    job(bin, root, data, dir, "deployments/config/batch.toml")
}

/// `tributary run` on a batch `config` over `data`, writing under `dir`.
fn job(bin: &Path, root: &Path, data: &Path, dir: &Path, config: &str) -> Command {
    let mut cmd = Command::new(bin);
    cmd.current_dir(root)
        .args(["run", "--no-status", "--force", "--config", config])
        .env("TLC_DATA", data)
        .env("PREDICTIONS", dir.join("predictions"))
        .env("DEAD_LETTERS", dir.join("dead_letters.jsonl"))
        .env_remove("RUN_ID")
        .env_remove("MODEL");
    cmd
}

fn python(root: &Path, mode: &str, input: &Path, output: &Path, model: &Path) -> Command {
    let mut cmd = Command::new(root.join(".venv/bin/python"));
    cmd.current_dir(root).arg("bench/python/batch_score.py").arg(mode).arg(input).arg(output).arg(model);
    cmd
}

/// Rounds that also run the seeds' way (each takes about 12 s here).
const SEEDS_RUNS: usize = 3;

/// Runs the section on a month of `rows` rows, `runs` rounds.
pub fn compare(root: &Path, bin: &Path, pickle: &Path, dir: &Path, rows: u64, runs: usize) -> Result<()> {
    let data = dir.join("tlc");
    let started = Instant::now();
    sample(bin, root, &data, rows)?;
    let input = data.join("yellow_tripdata_2024-01.parquet");
    let size_mb = std::fs::metadata(&input)?.len() as f64 / 1e6;
    println!(
        "input: {rows} generated rides, 2024 schema (19 columns), {size_mb:.1} MB zstd, one bad row in 10,000 \
         (generated in {:.1} s)\n",
        started.elapsed().as_secs_f64()
    );
    let model = root.join("processors/models/ride_duration/model.onnx");
    let out = dir.join("python.parquet");
    // Round by round, so that a slow spell of this shared machine falls on every scorer alike
    // rather than on whichever ran then; the seeds' way (12 s a run) in the first `SEEDS_RUNS`
    // rounds only.
    let (mut ours, mut generic, mut vectorized, mut seeds) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..runs {
        ours.push(measure(&mut tributary(bin, root, &data, dir))?);
        generic.push(measure(&mut job(bin, root, &data, dir, "deployments/config/batch-onnx.toml"))?);
        vectorized.push(measure(&mut python(root, "vectorized", &input, &out, &model))?);
        if round < SEEDS_RUNS {
            seeds.push(measure(&mut python(root, "seeds", &input, &out, pickle))?);
        }
    }
    let seeds_runs = seeds.len();
    let seeds = medians(&seeds);
    let (ours, vectorized, generic) = (medians(&ours), medians(&vectorized), medians(&generic));
    println!("| scorer | rows/s per CPU-second | rows/s wall | wall (s) | CPU (s) | peak RSS (MB) |");
    println!("|---|---:|---:|---:|---:|---:|");
    let rows_f = rows as f64;
    for (name, run) in [
        (format!("tributary, `ride_duration` (median of {runs})"), ours),
        (format!("tributary, the generic `onnx` processor, batch-onnx.toml (median of {runs})"), generic),
        (format!("Python vectorized: pyarrow + onnxruntime (median of {runs})"), vectorized),
        (format!("Python, the seeds' way: pandas + dicts + scikit-learn (median of {seeds_runs})"), seeds),
    ] {
        println!(
            "| {name} | {:.0} | {:.0} | {:.2} | {:.2} | {:.0} |",
            rows_f / run.cpu_s.max(1e-3),
            rows_f / run.wall_s,
            run.wall_s,
            run.cpu_s,
            run.rss_mb
        );
    }
    let per_cpu = |r: &Run| rows_f / r.cpu_s.max(1e-3);
    println!(
        "\nper core: {:.1}x the seeds' way, {:.1}x vectorized Python\n",
        per_cpu(&ours) / per_cpu(&seeds),
        per_cpu(&ours) / per_cpu(&vectorized)
    );
    let big = dir.join("big");
    sample(bin, root, &big, rows * 3)?;
    let large = measure(&mut tributary(bin, root, &big, dir))?;
    println!(
        "a file 3x as large ({} rows): tributary peak RSS {:.0} MB (against {:.0} MB), {:.0} rows/s per CPU-second\n",
        rows * 3,
        large.rss_mb,
        ours.rss_mb,
        rows_f * 3.0 / large.cpu_s.max(1e-3)
    );
    Ok(())
}
