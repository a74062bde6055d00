//! The live status line of `tributary run` on a terminal: records in, out, dead-lettered, rate.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tributary_framework::metrics::{Metrics, MetricsSnapshot};

/// Formats one status line.
pub fn line(snapshot: &MetricsSnapshot, rate: f64) -> String {
    format!(
        "in {} | out {} | dead-lettered {} | failed {} | {:.0} records/s",
        snapshot.records_in, snapshot.outputs_delivered, snapshot.dead_lettered, snapshot.failed, rate
    )
}

/// Per-source shard progress from the sources' gauges: shards read, leases held, worst lag.
fn shards(metrics: &Metrics) -> String {
    let mut out = String::new();
    for (source, gauges) in metrics.gauges() {
        let find = |name: &str| gauges.iter().find(|g| g.name == name).map(|g| g.value);
        let Some(reading) = find("shards_reading") else { continue };
        let lag = gauges.iter().filter(|g| g.name == "millis_behind_latest").map(|g| g.value).fold(0.0, f64::max);
        out.push_str(&format!(" | {source}: {reading:.0} shard(s)"));
        if let Some(leases) = find("leases_held") {
            out.push_str(&format!(", {leases:.0} lease(s)"));
        }
        out.push_str(&format!(", lag {:.1} s", lag / 1000.0));
    }
    out
}

/// Redraws the status line on stderr every 250 ms until `stop` is cancelled, then prints the
/// final counters on their own line. Several pipelines' counters are summed; their sources'
/// shard progress is listed one after the other.
pub async fn show(pipelines: Vec<Arc<Metrics>>, stop: CancellationToken) {
    let total = || MetricsSnapshot::sum(pipelines.iter().map(|m| m.snapshot()));
    let started = Instant::now();
    let mut last = (Instant::now(), 0u64);
    let mut rate = 0.0;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let snap = total();
        let dt = last.0.elapsed().as_secs_f64();
        if dt > 0.0 {
            rate = 0.7 * rate + 0.3 * (snap.records_in.saturating_sub(last.1)) as f64 / dt;
        }
        last = (Instant::now(), snap.records_in);
        let mut err = std::io::stderr().lock();
        let _ =
            write!(err, "\r\x1b[2K{}{}", line(&snap, rate), pipelines.iter().map(|m| shards(m)).collect::<String>());
        let _ = err.flush();
    }
    let snap = total();
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "\r\x1b[2K{} (average over {secs:.1} s)", line(&snap, snap.records_in as f64 / secs));
}
