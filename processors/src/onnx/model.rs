//! [`OnnxModel`]: a model loaded into a session pool, with its inputs and outputs described as
//! tributary maps them ([`Port`]), run on whole batches.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ort::session::{Session, SessionInputValue};
use ort::value::{Outlet, ValueType};
use tributary_framework::ComponentError;

use super::graph::{self, Rewritten};
use super::labels::LabelCodes;
use super::tensor::{ElementType, Values};
use crate::mlflow::SignatureInput;
use crate::model_store;
use crate::onnx_runtime::{OnnxError, SessionPool};

/// Model time up to which a call runs on the async thread that makes it (see
/// [`OnnxModel::predict`]): twice what a hand-off to a blocking thread and back costs here
/// (about 25 us), and short enough not to hold up other tasks on that thread.
pub const INLINE_BUDGET_NANOS: u64 = 50_000;

/// Whether a call of `rows` rows runs inline, given the last call's model time per row (0: none
/// measured yet, so the first call always goes to a blocking thread).
fn runs_inline(nanos_per_row: u64, rows: u64) -> bool {
    nanos_per_row > 0 && nanos_per_row.saturating_mul(rows) <= INLINE_BUDGET_NANOS
}

/// A model input or output, as users map it.
#[derive(Clone, Debug)]
pub struct Port {
    /// Its name in the exported model.
    pub name: String,
    /// What it holds.
    pub kind: PortKind,
    /// The name ONNX Runtime knows it by after the load-time rewrites (see [`graph`]).
    session_name: String,
    /// For a string input whose LabelEncoder the rewrites removed: its codes, which are what
    /// ONNX Runtime is fed.
    codes: Option<Arc<LabelCodes>>,
}

/// What a [`Port`] holds.
#[derive(Clone, Debug)]
pub enum PortKind {
    /// A tensor; `dims` as declared, the first being the batch (-1: dynamic).
    Tensor {
        /// Its element type.
        ty: ElementType,
        /// Its declared dimensions.
        dims: Vec<i64>,
    },
    /// A `map(string, T)` input served by a DictVectorizer: fed as `[N, V]` rows over its
    /// vocabulary.
    Dict {
        /// The column of each feature name (`"PU_DO=130_205"`, `"trip_distance"`).
        columns: Arc<HashMap<String, usize>>,
        /// The feature names in column order.
        vocabulary: Arc<[String]>,
        /// The map's value type.
        ty: ElementType,
    },
    /// A ZipMap output: per record, the probability of each class.
    ClassMap {
        /// The classes, in column order.
        labels: Arc<[String]>,
    },
    /// A type tributary does not map, as ONNX Runtime describes it.
    Unsupported(String),
}

impl Port {
    /// Values per record: the product of the dimensions after the batch, when all are known.
    pub fn width(&self) -> Option<usize> {
        match &self.kind {
            PortKind::Tensor { dims, .. } => dims
                .iter()
                .skip(1)
                .try_fold(1usize, |w, d| usize::try_from(*d).ok().filter(|d| *d > 0).map(|d| w.saturating_mul(d))),
            PortKind::Dict { vocabulary, .. } => Some(vocabulary.len()),
            PortKind::ClassMap { labels } => Some(labels.len()),
            PortKind::Unsupported(_) => None,
        }
    }

    /// How the model declares it, for messages and `tributary inspect`.
    pub fn describe(&self) -> String {
        match &self.kind {
            PortKind::Tensor { ty, dims } => format!("{} {dims:?}", ty.name()),
            PortKind::Dict { vocabulary, ty, .. } => {
                format!("map(string, {}) into a DictVectorizer of {} features", ty.name(), vocabulary.len())
            }
            PortKind::ClassMap { labels } => format!("ZipMap: probability per class of {labels:?}"),
            PortKind::Unsupported(description) => format!("{description} (not supported)"),
        }
    }
}

/// One input's values for a batch and the shape of one record's part.
#[derive(Clone, Debug)]
pub struct Feed {
    /// `rows * product(row_dims)` values.
    pub values: Values,
    /// The dimensions after the batch.
    pub row_dims: Vec<i64>,
}

/// A loaded model: a session pool, its ports, and where it came from.
pub struct OnnxModel {
    pool: SessionPool,
    inputs: Vec<Port>,
    outputs: Vec<Port>,
    /// The last call's model time per row, in nanoseconds (0 until the first call).
    nanos_per_row: AtomicU64,
    /// Where the model came from, for messages.
    pub location: String,
    /// The envelope's version: configured, or derived from the model's location or bytes.
    pub version: String,
    /// What an MLflow URI resolved to.
    pub resolution: Option<String>,
    /// The MLflow signature's inputs, when the model folder's `MLmodel` has one.
    pub signature: Option<Vec<SignatureInput>>,
}

impl OnnxModel {
    /// Fetches `model` (a path, an `s3://` URI or an MLflow URI; see [`model_store`]), rewrites its DictVectorizer inputs and ZipMap
    /// outputs (see [`graph`]), and starts `sessions` sessions of `threads` threads each.
    ///
    /// # Errors
    /// The model cannot be read, is not ONNX, or ONNX Runtime refuses it.
    pub async fn open(model: &str, version: Option<&str>, sessions: usize, threads: usize) -> Result<Self, String> {
        let fetched = model_store::fetch(model).await.map_err(|e| e.to_string())?;
        let version = version.filter(|v| !v.is_empty()).map_or_else(|| fetched.default_version(), str::to_string);
        let location = fetched.location.clone();
        let (resolution, signature) = (fetched.resolution, fetched.signature);
        let bytes = fetched.bytes;
        let at = location.clone();
        let (pool, rewritten) = tokio::task::spawn_blocking(move || -> Result<_, String> {
            let rewritten = graph::rewrite(&bytes).map_err(|e| format!("{at}: {e}"))?;
            let pool = SessionPool::new(&rewritten.bytes, sessions, threads).map_err(|e| format!("{at}: {e}"))?;
            Ok((pool, rewritten))
        })
        .await
        .map_err(|e| format!("model loading thread failed: {e}"))??;
        let (inputs, outputs) = ports(&pool, &rewritten);
        Ok(OnnxModel {
            pool,
            inputs,
            outputs,
            nanos_per_row: AtomicU64::new(0),
            location,
            version,
            resolution,
            signature,
        })
    }

    /// The codes ONNX Runtime is fed for string input `name`, when its LabelEncoder was
    /// removed at load (see [`graph`]).
    pub fn input_codes(&self, name: &str) -> Option<&LabelCodes> {
        self.inputs.iter().find(|p| p.name == name).and_then(|p| p.codes.as_deref())
    }

    /// The inputs, in the order [`OnnxModel::predict`] takes them.
    pub fn inputs(&self) -> &[Port] {
        &self.inputs
    }

    /// The outputs; [`OnnxModel::predict`] fetches them by index.
    pub fn outputs(&self) -> &[Port] {
        &self.outputs
    }

    /// The model's metadata as ONNX Runtime reads it: (key, value) pairs for `tributary inspect`.
    pub fn metadata(&self) -> Vec<(String, String)> {
        let session = self.pool.acquire();
        let Ok(metadata) = session.metadata() else { return Vec::new() };
        let mut out = Vec::new();
        let mut add = |key: &str, value: Option<String>| {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                out.push((key.to_string(), value));
            }
        };
        add("producer", metadata.producer());
        add("graph", metadata.name());
        add("domain", metadata.domain());
        add("model version", metadata.version().map(|v| v.to_string()));
        add("description", metadata.description());
        add("graph description", metadata.graph_description());
        for key in metadata.custom_keys().unwrap_or_default() {
            let value = metadata.custom(&key);
            add(&key, value);
        }
        out
    }

    /// Runs one batch of `rows` records from async code: `feeds` in the order of
    /// [`OnnxModel::inputs`]; returns the outputs at `fetch` (indices into
    /// [`OnnxModel::outputs`]), each with its values for every record.
    ///
    /// A call expected to take at most [`INLINE_BUDGET_NANOS`] (by the last call's time per row)
    /// runs right here when a session is free: handing it to a blocking thread and back costs
    /// about half that. Any other call runs on a blocking thread, so a slow model never stalls
    /// the async workers.
    ///
    /// # Errors
    /// ONNX Runtime refused the inputs or failed, as a fatal component error.
    pub async fn predict(
        self: &Arc<Self>,
        feeds: Vec<Feed>,
        rows: usize,
        fetch: Arc<[usize]>,
    ) -> Result<Vec<Values>, ComponentError> {
        let inline = runs_inline(self.nanos_per_row.load(Ordering::Relaxed), rows as u64);
        let fatal = |e: OnnxError| ComponentError::Fatal(e.to_string());
        if inline && let Some(mut session) = self.pool.try_acquire() {
            // As on a blocking thread, a panic in inference is a fatal error, not a lost task.
            let run =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run(&mut session, feeds, rows, &fetch)));
            return run.map_err(|_| ComponentError::Fatal("inference panicked".into()))?.map_err(fatal);
        }
        let model = self.clone();
        tokio::task::spawn_blocking(move || model.run(&mut model.pool.acquire(), feeds, rows, &fetch))
            .await
            .map_err(|e| ComponentError::Fatal(format!("inference thread failed: {e}")))?
            .map_err(fatal)
    }

    fn run(
        &self,
        session: &mut Session,
        feeds: Vec<Feed>,
        rows: usize,
        fetch: &[usize],
    ) -> Result<Vec<Values>, OnnxError> {
        let err = |e: ort::Error| OnnxError::Inference(e.to_string());
        let mut inputs: Vec<(String, SessionInputValue<'static>)> = Vec::with_capacity(feeds.len());
        for (port, feed) in self.inputs.iter().zip(feeds) {
            let shape: Vec<i64> = std::iter::once(rows as i64).chain(feed.row_dims).collect();
            let values = match &port.codes {
                Some(codes) => {
                    codes.encode(feed.values).map_err(|e| OnnxError::Inference(format!("input {}: {e}", port.name)))?
                }
                None => feed.values,
            };
            inputs.push((port.session_name.clone(), values.into_input(shape).map_err(err)?));
        }
        let started = Instant::now();
        let results = session.run(inputs).map_err(err)?;
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos_per_row.store((nanos / rows.max(1) as u64).max(1), Ordering::Relaxed);
        let mut out = Vec::with_capacity(fetch.len());
        for &index in fetch {
            let port = &self.outputs[index];
            let ty = match &port.kind {
                PortKind::Tensor { ty, .. } => *ty,
                PortKind::ClassMap { .. } => ElementType::Float,
                _ => return Err(OnnxError::Inference(format!("output {} cannot be read", port.name))),
            };
            let value = results
                .get(&port.session_name)
                .ok_or_else(|| OnnxError::Inference(format!("no output {}", port.name)))?;
            let values = Values::from_output(value, ty).map_err(err)?;
            if rows > 0 && (values.len() % rows != 0 || values.is_empty()) {
                return Err(OnnxError::Inference(format!(
                    "output {} has {} values for {rows} records",
                    port.name,
                    values.len()
                )));
            }
            out.push(values);
        }
        Ok(out)
    }
}

/// The ports of a loaded model, the rewritten ones under their exported names.
fn ports(pool: &SessionPool, rewritten: &Rewritten) -> (Vec<Port>, Vec<Port>) {
    let session = pool.acquire();
    let inputs = session
        .inputs()
        .iter()
        .map(|outlet| match rewritten.dict_inputs.iter().find(|d| d.tensor == outlet.name()) {
            Some(dict) => Port {
                name: dict.input.clone(),
                kind: match ElementType::of_onnx_code(dict.elem_type) {
                    Some(ty) => PortKind::Dict {
                        columns: Arc::new(dict.vocabulary.iter().enumerate().map(|(i, f)| (f.clone(), i)).collect()),
                        vocabulary: dict.vocabulary.clone().into(),
                        ty,
                    },
                    None => PortKind::Unsupported(format!("map(string, type {})", dict.elem_type)),
                },
                session_name: dict.tensor.clone(),
                codes: None,
            },
            None => match rewritten.label_inputs.iter().find(|l| l.tensor == outlet.name()) {
                // Users map and see the string input; ONNX Runtime gets its codes.
                Some(label) => {
                    let dims = match plain_port(outlet).kind {
                        PortKind::Tensor { dims, .. } => dims,
                        _ => vec![-1],
                    };
                    Port {
                        name: label.input.clone(),
                        kind: PortKind::Tensor { ty: ElementType::String, dims },
                        session_name: label.tensor.clone(),
                        codes: Some(Arc::new(LabelCodes::new(label))),
                    }
                }
                None => plain_port(outlet),
            },
        })
        .collect();
    let mut outputs: Vec<Port> = session
        .outputs()
        .iter()
        .map(|outlet| match rewritten.class_maps.iter().find(|c| c.tensor == outlet.name()) {
            Some(map) => Port {
                name: map.output.clone(),
                kind: PortKind::ClassMap { labels: map.labels.clone().into() },
                session_name: map.tensor.clone(),
                codes: None,
            },
            None => plain_port(outlet),
        })
        .collect();
    // A ZipMap whose input is also an output of its own: both are offered.
    for map in &rewritten.class_maps {
        if !outputs.iter().any(|p| p.name == map.output) {
            outputs.push(Port {
                name: map.output.clone(),
                kind: PortKind::ClassMap { labels: map.labels.clone().into() },
                session_name: map.tensor.clone(),
                codes: None,
            });
        }
    }
    (inputs, outputs)
}

fn plain_port(outlet: &Outlet) -> Port {
    let kind = match outlet.dtype() {
        ValueType::Tensor { ty, shape, .. } => match ElementType::of(*ty) {
            Some(element) => PortKind::Tensor { ty: element, dims: shape.to_vec() },
            None => PortKind::Unsupported(outlet.dtype().to_string()),
        },
        other => PortKind::Unsupported(other.to_string()),
    };
    Port { name: outlet.name().to_string(), kind, session_name: outlet.name().to_string(), codes: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_calls_measured_to_fit_the_budget_run_inline() {
        assert!(!runs_inline(0, 1), "an unmeasured model goes to a blocking thread");
        assert!(runs_inline(1_000, 1));
        assert!(runs_inline(1_000, 50));
        assert!(!runs_inline(1_000, 51));
        assert!(!runs_inline(2_000_000, 1), "a 2 ms model never runs inline");
        assert!(!runs_inline(u64::MAX, 2), "no overflow");
    }
}
