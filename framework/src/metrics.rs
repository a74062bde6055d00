//! Counters the runtime keeps for status lines, logs and (later) a metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

/// Pipeline-wide counters, updated by the runtime, read by anyone.
#[derive(Debug, Default)]
pub struct Metrics {
    records_in: AtomicU64,
    outputs_delivered: AtomicU64,
    dead_lettered: AtomicU64,
    failed: AtomicU64,
    batches: AtomicU64,
    batch_micros: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Records read from sources.
    pub records_in: u64,
    /// Outputs sinks confirmed.
    pub outputs_delivered: u64,
    /// Records (or outputs) written to the dead-letter destination.
    pub dead_lettered: u64,
    /// Records that could be neither delivered nor dead-lettered (never committed).
    pub failed: u64,
    /// Source batches finished.
    pub batches: u64,
    /// Total time spent in finished batches (decode to last delivery), in microseconds.
    pub batch_micros: u64,
}

impl Metrics {
    pub(crate) fn add_in(&self, n: usize) {
        self.records_in.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub(crate) fn add_delivered(&self, n: usize) {
        self.outputs_delivered.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub(crate) fn add_dead_lettered(&self, n: usize) {
        self.dead_lettered.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub(crate) fn add_failed(&self, n: usize) {
        self.failed.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub(crate) fn add_batch(&self, took: std::time::Duration) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batch_micros.fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The current counters.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            records_in: self.records_in.load(Ordering::Relaxed),
            outputs_delivered: self.outputs_delivered.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            batch_micros: self.batch_micros.load(Ordering::Relaxed),
        }
    }

    /// The counters in the Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let s = self.snapshot();
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: f64| {
            out.push_str(&format!(
                "# HELP tributary_{name} {help}\n# TYPE tributary_{name} counter\ntributary_{name} {value}\n"
            ));
        };
        counter("records_in_total", "Records read from sources.", s.records_in as f64);
        counter("outputs_delivered_total", "Outputs sinks confirmed.", s.outputs_delivered as f64);
        counter("dead_lettered_total", "Records written to the dead-letter destination.", s.dead_lettered as f64);
        counter("failed_total", "Records neither delivered nor dead-lettered.", s.failed as f64);
        counter("batches_total", "Source batches finished.", s.batches as f64);
        counter("batch_seconds_total", "Time spent in finished batches.", s.batch_micros as f64 / 1e6);
        out
    }
}
