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
    pub(crate) fn add_batch(&self) {
        self.batches.fetch_add(1, Ordering::Relaxed);
    }

    /// The current counters.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            records_in: self.records_in.load(Ordering::Relaxed),
            outputs_delivered: self.outputs_delivered.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
        }
    }
}
