//! Counters the runtime keeps for status lines, logs and (later) a metrics endpoint.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A value a source reports about itself (per-shard lag, leases held), exported as a gauge.
#[derive(Clone, Debug, PartialEq)]
pub struct Gauge {
    /// Metric name without prefix, e.g. `millis_behind_latest`.
    pub name: &'static str,
    /// Labels besides `source`, e.g. `("shard", "shardId-000000000000")`.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
}

/// Pipeline-wide counters, updated by the runtime, read by anyone.
#[derive(Debug, Default)]
pub struct Metrics {
    records_in: AtomicU64,
    outputs_delivered: AtomicU64,
    dead_lettered: AtomicU64,
    failed: AtomicU64,
    batches: AtomicU64,
    batch_micros: AtomicU64,
    gauges: Mutex<BTreeMap<String, Vec<Gauge>>>,
    processor_gauges: Mutex<BTreeMap<String, Vec<Gauge>>>,
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

    /// Replaces the gauges a source reports.
    pub fn set_source_gauges(&self, source: &str, gauges: Vec<Gauge>) {
        if let Ok(mut all) = self.gauges.lock() {
            all.insert(source.to_string(), gauges);
        }
    }

    /// Replaces the gauges a processor reports.
    pub fn set_processor_gauges(&self, processor: &str, gauges: Vec<Gauge>) {
        if let Ok(mut all) = self.processor_gauges.lock() {
            all.insert(processor.to_string(), gauges);
        }
    }

    /// Every processor's gauges, by processor id.
    pub fn processor_gauges(&self) -> BTreeMap<String, Vec<Gauge>> {
        self.processor_gauges.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Every source's gauges, by source id.
    pub fn gauges(&self) -> BTreeMap<String, Vec<Gauge>> {
        self.gauges.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// The counters (and sources' gauges) in the Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        prometheus(&[("", self)])
    }
}

impl MetricsSnapshot {
    /// The sum of several pipelines' counters.
    pub fn sum(snapshots: impl IntoIterator<Item = MetricsSnapshot>) -> MetricsSnapshot {
        snapshots.into_iter().fold(MetricsSnapshot::default(), |a, b| MetricsSnapshot {
            records_in: a.records_in + b.records_in,
            outputs_delivered: a.outputs_delivered + b.outputs_delivered,
            dead_lettered: a.dead_lettered + b.dead_lettered,
            failed: a.failed + b.failed,
            batches: a.batches + b.batches,
            batch_micros: a.batch_micros + b.batch_micros,
        })
    }
}

/// Several pipelines' counters and gauges in the Prometheus text format; each series is
/// labelled `pipeline="<name>"` unless the name is empty (a process with one pipeline).
pub fn prometheus(pipelines: &[(&str, &Metrics)]) -> String {
    let label =
        |name: &str| if name.is_empty() { String::new() } else { format!("pipeline=\"{}\"", escape_label(name)) };
    let mut out = String::new();
    type Counter = (&'static str, &'static str, fn(&MetricsSnapshot) -> f64);
    let counters: [Counter; 6] = [
        ("records_in_total", "Records read from sources.", |s| s.records_in as f64),
        ("outputs_delivered_total", "Outputs sinks confirmed.", |s| s.outputs_delivered as f64),
        ("dead_lettered_total", "Records written to the dead-letter destination.", |s| s.dead_lettered as f64),
        ("failed_total", "Records neither delivered nor dead-lettered.", |s| s.failed as f64),
        ("batches_total", "Source batches finished.", |s| s.batches as f64),
        ("batch_seconds_total", "Time spent in finished batches.", |s| s.batch_micros as f64 / 1e6),
    ];
    let snapshots: Vec<MetricsSnapshot> = pipelines.iter().map(|(_, m)| m.snapshot()).collect();
    for (name, help, value) in counters {
        out.push_str(&format!("# HELP tributary_{name} {help}\n# TYPE tributary_{name} counter\n"));
        for ((pipeline, _), snapshot) in pipelines.iter().zip(&snapshots) {
            let labels = label(pipeline);
            let labels = if labels.is_empty() { labels } else { format!("{{{labels}}}") };
            out.push_str(&format!("tributary_{name}{labels} {}\n", value(snapshot)));
        }
    }
    let mut by_name: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (pipeline, metrics) in pipelines {
        let pipeline = label(pipeline);
        let pipeline = if pipeline.is_empty() { pipeline } else { format!(",{pipeline}") };
        let sources = metrics.gauges().into_iter().map(|(id, g)| ("source", id, g));
        let processors = metrics.processor_gauges().into_iter().map(|(id, g)| ("processor", id, g));
        for (kind, id, gauges) in sources.chain(processors) {
            for g in gauges {
                let labels: String = g.labels.iter().map(|(k, v)| format!(",{k}=\"{}\"", escape_label(v))).collect();
                let id = escape_label(&id);
                by_name
                    .entry(g.name)
                    .or_default()
                    .push(format!("tributary_{}{{{kind}=\"{id}\"{pipeline}{labels}}} {}", g.name, g.value));
            }
        }
    }
    for (name, lines) in by_name {
        out.push_str(&format!("# TYPE tributary_{name} gauge\n"));
        for line in lines {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// A label value as the Prometheus text format wants it: backslash, double quote and line feed
/// escaped (a shard id or version is data, and may hold any of them).
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: label values were written with `"` turned into `'` and backslashes and line
    /// feeds left raw (issue 19), so a value holding a line feed broke the whole exposition.
    #[test]
    fn prometheus_label_values_are_escaped() {
        let m = Metrics::default();
        m.set_source_gauges(
            "a\"b",
            vec![Gauge { name: "lag", labels: vec![("shard", "x\\y\nz\"".into())], value: 1.0 }],
        );
        let text = prometheus(&[("p\n", &m)]);
        assert!(
            text.contains("tributary_lag{source=\"a\\\"b\",pipeline=\"p\\n\",shard=\"x\\\\y\\nz\\\"\"} 1\n"),
            "{text}"
        );
        assert!(text.lines().all(|l| l.starts_with('#') || l.starts_with("tributary_")), "{text}");
    }

    #[test]
    fn prometheus_text_has_counters_and_labelled_gauges() {
        let m = Metrics::default();
        m.add_in(3);
        m.set_source_gauges(
            "rides",
            vec![
                Gauge { name: "millis_behind_latest", labels: vec![("shard", "shardId-0".into())], value: 1500.0 },
                Gauge { name: "leases_held", labels: Vec::new(), value: 2.0 },
            ],
        );
        let text = m.prometheus();
        assert!(text.contains("# TYPE tributary_records_in_total counter\ntributary_records_in_total 3\n"), "{text}");
        assert!(text.contains("# TYPE tributary_millis_behind_latest gauge\n"), "{text}");
        assert!(text.contains("tributary_millis_behind_latest{source=\"rides\",shard=\"shardId-0\"} 1500\n"), "{text}");
        assert!(text.contains("tributary_leases_held{source=\"rides\"} 2\n"), "{text}");
        m.set_processor_gauges("duration", vec![Gauge { name: "model_reloads", labels: Vec::new(), value: 1.0 }]);
        assert!(m.prometheus().contains("tributary_model_reloads{processor=\"duration\"} 1\n"));
        let other = Metrics::default();
        other.add_in(5);
        let both = prometheus(&[("fan-out", &m), ("moderation", &other)]);
        assert!(both.contains("tributary_records_in_total{pipeline=\"fan-out\"} 3\n"), "{both}");
        assert!(both.contains("tributary_records_in_total{pipeline=\"moderation\"} 5\n"), "{both}");
        assert_eq!(both.matches("# TYPE tributary_records_in_total counter").count(), 1, "{both}");
        assert!(both.contains("tributary_leases_held{source=\"rides\",pipeline=\"fan-out\"} 2\n"), "{both}");
    }
}
