//! Following the MLflow registry (`reload_interval_s`, for the `onnx` and `ride_duration`
//! processors): every interval the processor's
//! `models:/<name>@<alias>` or `models:/<name>/latest` is resolved again; when it names another
//! version, that version is loaded and its mappings checked here, in the background, and then
//! swapped in. Batches take the serving model once, when they start, so a batch in flight
//! finishes on the model it started with and every envelope's `version` is the model that made
//! it. A version that fails to load or to check is logged and counted, and the old one keeps
//! serving; it is not tried again until the URI points elsewhere.
//!
//! Gauges (`--metrics-addr`, label `processor`): `model_serving{version}` (1 for the version
//! serving), `model_reloads` and `model_reload_failures`.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use tributary_framework::metrics::Gauge;

use super::SignatureError;
use crate::mlflow::{self, ModelUri, TrackingClient};

/// A loaded model with its checked mappings, as a processor serves it.
pub trait Serving: Send + Sync + 'static {
    /// The envelope version it writes.
    fn version(&self) -> &str;
}

/// The model a processor serves now, swapped between batches when it follows the registry,
/// with the reload counters.
pub struct Current<T> {
    slot: Arc<RwLock<Arc<T>>>,
    /// The counters, when the processor follows the registry.
    stats: Option<Arc<Stats>>,
}

impl<T: Serving> Current<T> {
    /// Serves `loaded`; `reloading` when `reload_interval_s` is set (then it reports gauges).
    pub fn new(loaded: T, reloading: bool) -> Self {
        Current { slot: Arc::new(RwLock::new(Arc::new(loaded))), stats: reloading.then(Arc::default) }
    }

    /// The model serving now: a batch takes it once, when it starts.
    pub fn get(&self) -> Arc<T> {
        self.slot.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// `model_serving{version}`, `model_reloads`, `model_reload_failures`; none unless reloading.
    pub fn gauges(&self) -> Vec<Gauge> {
        self.gauges_named(["model_serving", "model_reloads", "model_reload_failures"])
    }

    /// [`Current::gauges`] under other names (serving, reloads, failures): a shadow model's.
    pub(crate) fn gauges_named(&self, [serving, reloads, failures]: [&'static str; 3]) -> Vec<Gauge> {
        let Some(stats) = &self.stats else { return Vec::new() };
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        vec![
            Gauge { name: serving, labels: vec![("version", self.get().version().to_string())], value: 1.0 },
            Gauge { name: reloads, labels: Vec::new(), value: count(&stats.reloads) },
            Gauge { name: failures, labels: Vec::new(), value: count(&stats.failures) },
        ]
    }

    /// `Err` while the URI points at a version that failed to load (the previous one keeps
    /// serving): `tributary serve` answers not ready meanwhile.
    ///
    /// # Errors
    /// The version that cannot serve.
    pub fn ready(&self) -> Result<(), String> {
        match self.stats.as_ref().and_then(|s| s.refused()) {
            Some(version) => Err(format!(
                "the registry points at version {version}, which failed to load; version {} keeps serving",
                self.get().version()
            )),
            None => Ok(()),
        }
    }

    /// When reloading, starts the watcher task for processor `id` serving `model`, re-resolved
    /// every `interval_s`: `open` loads and checks the model `model` points at then. The task
    /// ends with the processor.
    pub fn follow<F, Fut>(&self, model: String, interval_s: u64, id: String, open: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, String>> + Send + 'static,
    {
        if let Some(stats) = &self.stats {
            spawn(model, interval_s, id, Arc::downgrade(&self.slot), stats.clone(), open);
        }
    }
}

/// Reload counters.
#[derive(Debug, Default)]
struct Stats {
    reloads: AtomicU64,
    failures: AtomicU64,
    /// The version the URI points at and that failed to load, until a load succeeds or the
    /// URI points back at the version serving. The watcher does not try it again meanwhile.
    refused: std::sync::Mutex<Option<String>>,
}

impl Stats {
    fn refused(&self) -> Option<String> {
        self.refused.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn set_refused(&self, version: Option<String>) {
        *self.refused.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = version;
    }
}

/// `reload_interval_s` needs a URI that can move (`model`), and a version that follows it.
///
/// # Errors
/// The key at fault and why.
pub fn check_config(model: &str, version: Option<&str>) -> Result<(), SignatureError> {
    match ModelUri::parse(model) {
        Some(Ok(uri)) if uri.moves() => {}
        _ => {
            return Err((
                "reload_interval_s".into(),
                format!(
                    "{model:?} always names the same model; reloading follows models:/<name>@<alias> or \
                     models:/<name>/latest"
                ),
            ));
        }
    }
    if version.is_some_and(|v| !v.is_empty()) {
        return Err((
            "version".into(),
            "with reload_interval_s the version is the registry's (the one serving); remove `version`".into(),
        ));
    }
    Ok(())
}

/// The watcher task of [`Current::follow`].
fn spawn<T, F, Fut>(
    model: String,
    interval_s: u64,
    id: String,
    current: Weak<RwLock<Arc<T>>>,
    stats: Arc<Stats>,
    open: F,
) where
    T: Serving,
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, String>> + Send + 'static,
{
    let Some(Ok(uri)) = ModelUri::parse(&model) else { return };
    let client = match TrackingClient::from_env() {
        Ok(client) => client,
        Err(e) => {
            tracing::warn!(processor = %id, "model reloading off: {e}");
            return;
        }
    };
    let interval = Duration::from_secs(interval_s.max(1));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let Some(current) = current.upgrade() else { return };
            let serving = current.read().map(|l| l.version().to_string()).unwrap_or_default();
            let resolution = match mlflow::resolve(&uri, &client).await {
                Ok(resolution) => resolution,
                Err(e) => {
                    tracing::warn!(processor = %id, "cannot check {model} for a new version: {e}");
                    continue;
                }
            };
            if resolution.version == serving {
                // Also when the URI points back at it: nothing is refused any more.
                stats.set_refused(None);
                continue;
            }
            if stats.refused().as_ref() == Some(&resolution.version) {
                continue;
            }
            tracing::info!(processor = %id, from = %serving, to = %resolution.version, "{model} moved; loading");
            match open().await {
                Ok(loaded) => {
                    let version = loaded.version().to_string();
                    if let Ok(mut slot) = current.write() {
                        *slot = Arc::new(loaded);
                    }
                    stats.reloads.fetch_add(1, Ordering::Relaxed);
                    stats.set_refused(None);
                    tracing::info!(processor = %id, version = %version, "now serving {model} version {version}");
                }
                Err(e) => {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        processor = %id,
                        version = %resolution.version,
                        "version {} of {model} cannot serve ({e}); version {serving} keeps serving",
                        resolution.version,
                    );
                    stats.set_refused(Some(resolution.version));
                }
            }
        }
    });
}
