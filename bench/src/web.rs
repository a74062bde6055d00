//! Section 10, the web service: `tributary serve` on `deployments/config/web-service.toml` against the
//! seeds' Flask app (`bench/python/predict.py`, the same model as a scikit-learn pipeline) under
//! gunicorn with one worker per core, both loaded by `wrk` (one thread, keep-alive connections)
//! on the same machine at concurrency 1, 16 and 64: requests/s, p50 and p99 latency, and the
//! mean inference batch tributary's dynamic batching formed.

use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The seeds' test.py ride.
const RIDE: &str = r#"{"PULocationID": 10, "DOLocationID": 50, "trip_distance": 40}"#;

/// One wrk run's figures.
struct Load {
    requests_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
}

/// Kills the child when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the section: `seconds` of load per server and concurrency.
pub fn compare(root: &Path, bin: &Path, pickle: &Path, dir: &Path, seconds: u64) -> Result<()> {
    let wrk = which("wrk").context("wrk is not installed: `cargo xtask bench` installs it (apt-get install wrk)")?;
    let script = dir.join("post.lua");
    std::fs::write(
        &script,
        format!("wrk.method = \"POST\"\nwrk.body = '{RIDE}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"),
    )?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tributary_port = free_port()?;
    let tributary = Server(
        Command::new(bin)
            .current_dir(root)
            .args(["serve", "--config", "deployments/config/web-service.toml", "--addr"])
            .arg(format!("127.0.0.1:{tributary_port}"))
            .env("RUN_ID", "bench")
            .env_remove("MODEL_LOCATION")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting tributary serve")?,
    );
    let gunicorn_port = free_port()?;
    let gunicorn = Server(
        Command::new(root.join(".venv/bin/gunicorn"))
            .current_dir(root.join("bench/python"))
            .args([
                "--bind",
                &format!("127.0.0.1:{gunicorn_port}"),
                "--workers",
                &cores.to_string(),
                "--log-level",
                "warning",
            ])
            .arg("predict:app")
            .env("MODEL_PATH", pickle)
            .env("RUN_ID", "bench")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting gunicorn (in .venv: cargo xtask setup)")?,
    );
    let ours = answer(tributary_port)?;
    let theirs = answer(gunicorn_port)?;
    println!("both answer the seeds' ride: tributary `{ours}`, gunicorn `{theirs}`\n");
    println!(
        "`wrk -t1 -c<concurrency> -d{seconds}s --latency`, POST /predict with the seeds' ride, keep-alive; \
         gunicorn with {cores} sync workers (one per core), tributary with its default 2 async worker threads.\n"
    );
    println!("| concurrency | server | requests/s | p50 | p99 | errors | mean batch |");
    println!("|---:|---|---:|---:|---:|---:|---:|");
    let mut ratios = Vec::new();
    for concurrency in [1usize, 16, 64] {
        let before = batch_totals(tributary_port);
        let t = load(&wrk, &script, tributary_port, concurrency, seconds)?;
        let after = batch_totals(tributary_port);
        let mean = match (before, after) {
            (Some((s0, c0)), Some((s1, c1))) if c1 > c0 => format!("{:.1}", (s1 - s0) / (c1 - c0)),
            _ => "?".into(),
        };
        let g = load(&wrk, &script, gunicorn_port, concurrency, seconds)?;
        for (name, figures, batch) in [("tributary serve", &t, mean.as_str()), ("gunicorn + Flask", &g, "")] {
            println!(
                "| {concurrency} | {name} | {:.0} | {} | {} | {} | {batch} |",
                figures.requests_per_s,
                micros(figures.p50_us),
                micros(figures.p99_us),
                figures.errors
            );
        }
        ratios.push((concurrency, t.requests_per_s / g.requests_per_s, g.p99_us / t.p99_us));
    }
    println!();
    for (concurrency, throughput, p99) in ratios {
        println!("- concurrency {concurrency}: tributary {throughput:.1}x gunicorn's requests/s, p99 {p99:.1}x lower");
    }
    println!();
    drop((tributary, gunicorn));
    Ok(())
}

fn micros(us: f64) -> String {
    if us >= 1000.0 { format!("{:.2} ms", us / 1000.0) } else { format!("{us:.0} us") }
}

/// Waits until `port` answers the ride with 200 and returns the body.
fn answer(port: u16) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((200, body)) = post(port) {
            return Ok(body);
        }
        if Instant::now() > deadline {
            bail!("nothing answered 200 on 127.0.0.1:{port} within 60 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn post(port: u16) -> Option<(u16, String)> {
    use std::io::Write;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let request = format!(
        "POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{RIDE}",
        RIDE.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    Some((status, text.split("\r\n\r\n").nth(1)?.trim().to_string()))
}

/// `tributary_http_batch_size_sum` and `_count` from tributary's /metrics.
fn batch_totals(port: u16) -> Option<(f64, f64)> {
    use std::io::Write;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let value = |name: &str| text.lines().find(|l| l.starts_with(name))?.rsplit(' ').next()?.parse::<f64>().ok();
    Some((value("tributary_http_batch_size_sum ")?, value("tributary_http_batch_size_count ")?))
}

/// One wrk run (after a one-second warm-up at the same concurrency).
fn load(wrk: &Path, script: &Path, port: u16, concurrency: usize, seconds: u64) -> Result<Load> {
    let url = format!("http://127.0.0.1:{port}/predict");
    let run = |secs: u64| -> Result<String> {
        let output = Command::new(wrk)
            .args(["-t1", &format!("-c{concurrency}"), &format!("-d{secs}s"), "--latency", "-s"])
            .arg(script)
            .arg(&url)
            .output()?;
        if !output.status.success() {
            bail!("wrk failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    run(1)?;
    let text = run(seconds)?;
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
    };
    let requests_per_s =
        field("Requests/sec:").and_then(|v| v.parse().ok()).context("no Requests/sec in wrk's output")?;
    let p50_us = field("50%").as_deref().and_then(duration_us).context("no 50% in wrk's output")?;
    let p99_us = field("99%").as_deref().and_then(duration_us).context("no 99% in wrk's output")?;
    let non_2xx = text
        .lines()
        .find(|l| l.contains("Non-2xx or 3xx responses:"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    let socket = text
        .lines()
        .find(|l| l.contains("Socket errors:"))
        .map(|l| l.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    Ok(Load { requests_per_s, p50_us, p99_us, errors: non_2xx + socket })
}

/// wrk's durations: `101.00us`, `1.23ms`, `2.00s`.
fn duration_us(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => number,
        "ms" => number * 1e3,
        "s" => number * 1e6,
        "m" => number * 60e6,
        _ => return None,
    })
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|p| p.is_file()))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_durations() {
        assert_eq!(duration_us("101.00us"), Some(101.0));
        assert_eq!(duration_us("1.50ms"), Some(1500.0));
        assert_eq!(duration_us("2.00s"), Some(2e6));
        assert_eq!(duration_us("x"), None);
    }
}
