//! `GET /metrics` of `tributary serve`, in the Prometheus text format: requests by route and
//! status, request latency and batch size histograms, requests in flight and queued, and the
//! pipeline's own counters and processor gauges (model version serving, reloads).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::App;

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];
/// Upper bounds of the batch size buckets, in events.
const BATCH_BUCKETS: [f64; 11] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// A cumulative histogram over fixed bounds.
#[derive(Debug, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], value: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len()];
        }
        if let Some(i) = bounds.iter().position(|b| value <= *b) {
            self.counts[i] += 1;
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, count) in bounds.iter().zip(self.counts.iter().chain(std::iter::repeat(&0))) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// The server's own counters.
#[derive(Debug, Default)]
pub(crate) struct HttpMetrics {
    /// (route, status) -> requests.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// route -> latency histogram.
    latency: Mutex<BTreeMap<String, Histogram>>,
    batches: Mutex<Histogram>,
    in_flight: AtomicI64,
}

impl HttpMetrics {
    /// Records one inference batch's size.
    pub(crate) fn observe_batch(&self, events: usize) {
        if let Ok(mut h) = self.batches.lock() {
            h.observe(&BATCH_BUCKETS, events as f64);
        }
    }

    fn observe_request(&self, route: &str, status: u16, seconds: f64) {
        if let Ok(mut requests) = self.requests.lock() {
            *requests.entry((route.to_string(), status)).or_default() += 1;
        }
        if let Ok(mut latency) = self.latency.lock() {
            latency.entry(route.to_string()).or_default().observe(&LATENCY_BUCKETS, seconds);
        }
    }

    fn render(&self, out: &mut String, queued: usize) {
        out.push_str("# HELP tributary_http_requests_total HTTP requests answered, by route and status.\n");
        out.push_str("# TYPE tributary_http_requests_total counter\n");
        if let Ok(requests) = self.requests.lock() {
            for ((route, status), n) in requests.iter() {
                let _ = writeln!(
                    out,
                    "tributary_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        out.push_str("# HELP tributary_http_request_duration_seconds Time to answer, by route.\n");
        out.push_str("# TYPE tributary_http_request_duration_seconds histogram\n");
        if let Ok(latency) = self.latency.lock() {
            for (route, histogram) in latency.iter() {
                let labels = format!("route=\"{}\"", escape(route));
                histogram.render(out, "tributary_http_request_duration_seconds", &labels, &LATENCY_BUCKETS);
            }
        }
        out.push_str("# HELP tributary_http_batch_size Events per inference call.\n");
        out.push_str("# TYPE tributary_http_batch_size histogram\n");
        if let Ok(batches) = self.batches.lock() {
            batches.render(out, "tributary_http_batch_size", "", &BATCH_BUCKETS);
        }
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        out.push_str(
            "# HELP tributary_http_in_flight Requests being answered.\n# TYPE tributary_http_in_flight gauge\n",
        );
        let _ = writeln!(out, "tributary_http_in_flight {in_flight}");
        out.push_str(
            "# HELP tributary_http_queued Requests waiting for a batch.\n# TYPE tributary_http_queued gauge\n",
        );
        let _ = writeln!(out, "tributary_http_queued {queued}");
    }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Middleware: counts and times every request by its route template.
pub(crate) async fn track(
    State(app): State<Arc<App>>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let route = matched.map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let started = Instant::now();
    app.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
    let response = next.run(request).await;
    app.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    app.metrics.observe_request(&route, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(app): State<Arc<App>>) -> Response {
    let mut out = String::new();
    let queued = app.served.get().map_or(0, |s| s.batcher.depth());
    app.metrics.render(&mut out, queued);
    if let Some(served) = app.served.get() {
        served.graph.refresh_processor_gauges();
        out.push_str(&served.graph.metrics().prometheus());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let metrics = HttpMetrics::default();
        metrics.observe_request("/predict", 200, 0.0002);
        metrics.observe_request("/predict", 200, 0.002);
        metrics.observe_request("/a\"b", 429, 7.0);
        metrics.observe_batch(3);
        let mut out = String::new();
        metrics.render(&mut out, 5);
        assert!(out.contains("tributary_http_requests_total{route=\"/predict\",status=\"200\"} 2\n"), "{out}");
        assert!(out.contains("tributary_http_requests_total{route=\"/a\\\"b\",status=\"429\"} 1\n"), "{out}");
        assert!(out.contains("tributary_http_request_duration_seconds_bucket{route=\"/predict\",le=\"0.00025\"} 1\n"));
        assert!(out.contains("tributary_http_request_duration_seconds_bucket{route=\"/predict\",le=\"0.0025\"} 2\n"));
        assert!(
            out.contains("tributary_http_request_duration_seconds_bucket{route=\"/a\\\"b\",le=\"5\"} 0\n"),
            "{out}"
        );
        assert!(out.contains("tributary_http_request_duration_seconds_bucket{route=\"/a\\\"b\",le=\"+Inf\"} 1\n"));
        assert!(
            out.contains(
                "tributary_http_batch_size_bucket{le=\"2\"} 0\ntributary_http_batch_size_bucket{le=\"4\"} 1\n"
            )
        );
        assert!(out.contains("tributary_http_queued 5\n"));
    }
}
