//! A shadow model (`shadow = "models:/<name>@challenger"`): a second model, checked against the
//! same features and outputs, run on every batch the primary predicts, after it. Its results go
//! to the sink that consumes the processor's `shadow` side output
//! (`inputs = ["<processor>.shadow"]`), one record per prediction:
//! `{"model", "version", "shadow_version", "prediction", "shadow_prediction"}`.
//!
//! The primary's outcomes are made before the shadow runs and never depend on it: a record the
//! shadow rejects, a failed shadow inference or a failed shadow delivery is counted
//! (`shadow_failures`) and logged, never retried and never dead-lettered. The shadow costs the
//! batch its own compute and its sink's write.
//!
//! With `reload_interval_s`, the shadow follows its own URI as the primary follows `model` (see
//! [`super::reload`]): moving the `challenger` alias changes the shadow at a batch boundary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value, json};
use tributary_framework::metrics::Gauge;
use tributary_framework::{Delivery, Input, Output, Sink};

use super::{Loaded, OnnxConfig, SignatureError, Values, reload};

/// The shadow model and where its comparisons go.
pub(crate) struct Shadow {
    current: reload::Current<Loaded>,
    sink: OnceLock<Arc<dyn Sink>>,
    compared: AtomicU64,
    failures: AtomicU64,
}

impl Shadow {
    /// Loads `uri` with `config`'s mapping.
    pub(crate) async fn open(config: &OnnxConfig, uri: &str) -> Result<Self, SignatureError> {
        let loaded = Loaded::open(&Self::config(config, uri)).await.map_err(|(key, e)| {
            let key = if key == "model" { "shadow".to_string() } else { key };
            (key, format!("the shadow model: {e}"))
        })?;
        tracing::info!(model = %loaded.model.location, version = %loaded.version(), "shadow model loaded");
        Ok(Shadow {
            current: reload::Current::new(loaded, config.reload_interval_s > 0),
            sink: OnceLock::new(),
            compared: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    /// The primary's config with the shadow's model.
    fn config(config: &OnnxConfig, uri: &str) -> OnnxConfig {
        let mut shadow = config.clone();
        shadow.model = uri.to_string();
        shadow.version = None;
        shadow
    }

    /// Follows `uri` in the registry when the processor reloads (`id`: the processor's).
    pub(crate) fn start_reloading(&self, config: &OnnxConfig, uri: &str, id: &str) {
        super::follow(&self.current, Self::config(config, uri), format!("{id}.shadow"));
    }

    /// Sets the sink of the `shadow` side output.
    pub(crate) fn attach(&self, sink: Arc<dyn Sink>) -> Result<(), String> {
        self.sink.set(sink).map_err(|_| "the `shadow` side output already has a sink".to_string())
    }

    pub(crate) fn gauges(&self) -> Vec<Gauge> {
        let mut gauges = vec![
            Gauge { name: "shadow_compared", labels: Vec::new(), value: self.compared.load(Ordering::Relaxed) as f64 },
            Gauge { name: "shadow_failures", labels: Vec::new(), value: self.failures.load(Ordering::Relaxed) as f64 },
        ];
        let reloading = self.current.gauges_named(["shadow_serving", "shadow_reloads", "shadow_reload_failures"]);
        if reloading.is_empty() {
            let version = self.current.get().version().to_string();
            gauges.push(Gauge { name: "shadow_serving", labels: vec![("version", version)], value: 1.0 });
        }
        gauges.extend(reloading);
        gauges
    }

    fn failed(&self, n: usize, why: &str) {
        self.failures.fetch_add(n as u64, Ordering::Relaxed);
        tracing::warn!(records = n, "shadow model: {why}");
    }

    /// Runs the shadow on the records the primary predicted (`predicted`: index in `batch`,
    /// the primary's prediction) and delivers the comparisons. Never fails: see the module.
    pub(crate) async fn compare(
        &self,
        model_name: &Value,
        version: &Value,
        batch: &[Input<'_>],
        predicted: Vec<(usize, Value)>,
    ) {
        let Some(sink) = self.sink.get() else { return };
        let loaded = self.current.get();
        let mut columns: Vec<Values> = loaded.inputs.iter().map(|plan| plan.values(predicted.len())).collect();
        let mut rows = Vec::with_capacity(predicted.len());
        for (row, prediction) in predicted {
            match loaded.features(batch[row].value.value(), &mut columns) {
                Ok(()) => rows.push((row, prediction)),
                Err(reason) => self.failed(1, &format!("record {} rejected: {reason}", batch[row].record.position)),
            }
        }
        if rows.is_empty() {
            return;
        }
        let n = rows.len();
        let feeds = loaded.inputs.iter().zip(columns).map(|(plan, values)| plan.feed(values)).collect();
        let fetched = match loaded.model.predict(feeds, n, loaded.fetch.clone()).await {
            Ok(fetched) => fetched,
            Err(e) => return self.failed(n, &format!("inference failed: {e}")),
        };
        let mut comparisons = Vec::with_capacity(n);
        for (k, (row, prediction)) in rows.into_iter().enumerate() {
            let mut shadow = Map::new();
            for (plan, at) in &loaded.outputs {
                match plan.value(&fetched[*at], n, k) {
                    Ok(value) => {
                        shadow.insert(plan.field.clone(), value);
                    }
                    Err(e) => return self.failed(n, &format!("unreadable output: {e}")),
                }
            }
            let comparison = json!({
                "model": model_name,
                "version": version,
                "shadow_version": loaded.version,
                "prediction": prediction,
                "shadow_prediction": shadow,
            });
            comparisons.push((row, Output::from(comparison)));
        }
        let inputs: Vec<Input<'_>> =
            comparisons.iter().map(|(row, value)| Input { value, record: batch[*row].record }).collect();
        match sink.deliver(&inputs).await {
            Ok(deliveries) => {
                let delivered = deliveries.iter().filter(|d| **d == Delivery::Delivered).count();
                self.compared.fetch_add(delivered as u64, Ordering::Relaxed);
                if delivered < inputs.len() {
                    self.failed(inputs.len() - delivered, "its sink did not take every comparison");
                }
            }
            Err(e) => self.failed(inputs.len(), &format!("its sink failed: {e}")),
        }
    }
}
