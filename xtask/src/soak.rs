//! `cargo xtask soak [--minutes N] [--rate R]`: a worker under steady load for N minutes
//! (default 30; not part of `cargo xtask test`). The release `tributary` runs the generator at R
//! rides per second (default 5000) through the ride-duration model into a JSON-lines file (the
//! file is truncated every sample, so the disk does not fill), with `--metrics-addr`. Every ten
//! seconds it samples the process's RSS (`/proc/<pid>/status`), the records delivered and the
//! lag (rides the generator is behind its schedule: expected minus read); at the end it prints
//! the samples as a table, the RSS growth after the first minute, the least-squares slopes of
//! RSS and lag, and the errors logged. Goal: RSS growth under 5%, no errors.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub fn run(root: &Path, args: &[&str]) -> Result<()> {
    let (mut minutes, mut rate) = (30u64, 5000u64);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u64> {
            args.next().and_then(|s| s.parse().ok()).with_context(|| format!("{name} takes a number"))
        };
        match *arg {
            "--minutes" => minutes = number("--minutes")?,
            "--rate" => rate = number("--rate")?,
            other => bail!("unknown soak option {other:?} (--minutes N, --rate R)"),
        }
    }
    crate::setup::runtime_only(root)?;
    eprintln!("xtask: building the release binary");
    crate::run(root, crate::cargo().args(["build", "--release", "--quiet", "-p", "tributary"]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), std::path::PathBuf::from);
    let binary = if target.is_absolute() { target } else { root.join(target) }.join("release/tributary");
    let work = tempfile_dir()?;
    let out = work.join("out.jsonl");
    let config = work.join("soak.toml");
    std::fs::write(
        &config,
        format!(
            "[sources.rides]\ntype = \"generator\"\nrate = {rate}\n\n\
             [processors.ride_duration]\ntype = \"ride_duration\"\ninputs = [\"rides\"]\n\
             model = \"processors/models/ride_duration/model.onnx\"\n\n\
             [sinks.out]\ntype = \"file\"\ninputs = [\"ride_duration\"]\npath = {out:?}\n\n[dead_letter]\ntype = \"stderr\"\n"
        ),
    )?;
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.local_addr()?.port()
    };
    let log_path = work.join("soak.log");
    let mut child = Command::new(&binary)
        .current_dir(root)
        .args(["run", "--no-status", "--metrics-addr", &format!("127.0.0.1:{port}"), "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path)?)
        .spawn()
        .context("starting tributary")?;
    eprintln!("xtask: soaking for {minutes} min at {rate} rides/s (pid {}, log {})", child.id(), log_path.display());
    let started = Instant::now();
    let mut samples: Vec<(f64, f64, f64, f64)> = Vec::new(); // seconds, RSS MiB, delivered, lag
    while started.elapsed() < Duration::from_secs(minutes * 60) {
        std::thread::sleep(Duration::from_secs(10));
        if let Some(status) = child.try_wait()? {
            bail!("tributary exited during the soak ({status}); see {}", log_path.display());
        }
        let rss = rss_mib(child.id())?;
        let metrics = scrape(port).unwrap_or_default();
        let read = metric(&metrics, "tributary_records_in_total");
        let delivered = metric(&metrics, "tributary_outputs_delivered_total");
        let seconds = started.elapsed().as_secs_f64();
        let lag = (seconds * rate as f64 - read).max(0.0);
        samples.push((seconds, rss, delivered, lag));
        // Keep the output file small: the soak measures the process, not the disk.
        let _ = std::fs::File::create(&out);
    }
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let status = child.wait()?;
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let errors = log.lines().filter(|l| l.contains("ERROR") || l.contains("WARN")).count();
    println!("\n| minute | RSS (MiB) | delivered | rides/s since last | lag (rides) |\n|---|---|---|---|---|");
    let mut previous = (0.0, 0.0);
    for (seconds, rss, delivered, lag) in &samples {
        let rate_now = (delivered - previous.1) / (seconds - previous.0);
        println!("| {:.1} | {rss:.1} | {delivered:.0} | {rate_now:.0} | {lag:.0} |", seconds / 60.0);
        previous = (*seconds, *delivered);
    }
    let after_first: Vec<_> = samples.iter().filter(|s| s.0 >= 60.0).collect();
    if let (Some(first), Some(last)) = (after_first.first(), after_first.last()) {
        let growth = (last.1 - first.1) / first.1 * 100.0;
        let rss_slope = slope(after_first.iter().map(|s| (s.0 / 60.0, s.1)));
        let lag_slope = slope(after_first.iter().map(|s| (s.0 / 60.0, s.3)));
        println!(
            "\nRSS after the first minute: {:.1} -> {:.1} MiB ({growth:+.2}%), slope {rss_slope:+.3} MiB/min; \
             lag slope {lag_slope:+.1} rides/min; {errors} warnings or errors logged; {status}",
            first.1, last.1
        );
    }
    Ok(())
}

/// A fresh folder for the soak's files.
fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("tributary-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS in /proc/<pid>/status")?;
    Ok(kib / 1024.0)
}

fn scrape(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

/// The sum of a counter's series.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Least-squares slope of (x, y) points.
fn slope(points: impl Iterator<Item = (f64, f64)>) -> f64 {
    let points: Vec<_> = points.collect();
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let num: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let den: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if den == 0.0 { 0.0 } else { num / den }
}
