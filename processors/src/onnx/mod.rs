//! Processor `onnx`: any ONNX model whose features are fields of the event, by configuration
//! alone ([`OnnxConfig`]).
//!
//! At build time (so `tributary validate` reports it) the configured features are checked
//! against the inputs the model declares: every input mapped, no unknown names, element types
//! equal, shapes `[N]` or `[N, 1]`; and every configured output must be a numeric tensor. Each
//! record's features are extracted (a missing or mistyped field rejects that record, naming the
//! field), the batch runs as one inference (on a blocking thread, unless the model is fast enough
//! for it to take at most 50 us: see [`OnnxModel::predict`]), and each record becomes
//! `{"model": <model_name>, "version": <version>, "prediction": {<outputs>, <echo fields>}}`.
//!
//! [`OnnxModel`] is the shared inference half: the `ride_duration` processor prepares its
//! features with its own validation and runs them through the same code.

pub mod config;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use ort::session::{Session, SessionInputValue};
use ort::value::{Tensor, TensorElementType, ValueType};
use serde_json::{Map, Value, json};
use tributary_framework::config::ComponentSpec;
use tributary_framework::registry::BuildFuture;
use tributary_framework::template::{Template, lookup};
use tributary_framework::{ComponentError, Input, Outcome, Processor};

pub use self::config::{Feature, FeatureType, OnnxConfig};
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

/// One model input's values for a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Column {
    /// `tensor(float)`.
    Float(Vec<f32>),
    /// `tensor(double)`.
    Double(Vec<f64>),
    /// `tensor(int64)`.
    Int64(Vec<i64>),
    /// `tensor(string)`.
    String(Vec<String>),
}

impl Column {
    fn new(kind: FeatureType, capacity: usize) -> Self {
        match kind {
            FeatureType::Float => Column::Float(Vec::with_capacity(capacity)),
            FeatureType::Double => Column::Double(Vec::with_capacity(capacity)),
            FeatureType::Int64 => Column::Int64(Vec::with_capacity(capacity)),
            FeatureType::String => Column::String(Vec::with_capacity(capacity)),
        }
    }

    fn len(&self) -> usize {
        match self {
            Column::Float(v) => v.len(),
            Column::Double(v) => v.len(),
            Column::Int64(v) => v.len(),
            Column::String(v) => v.len(),
        }
    }

    /// Drops the values after the first `len` (a record whose later feature was rejected).
    fn truncate(&mut self, len: usize) {
        match self {
            Column::Float(v) => v.truncate(len),
            Column::Double(v) => v.truncate(len),
            Column::Int64(v) => v.truncate(len),
            Column::String(v) => v.truncate(len),
        }
    }

    /// Appends one event value, or says why it does not fit.
    fn push(&mut self, value: &Value) -> Result<(), String> {
        match (self, value) {
            (Column::Float(v), Value::Number(n)) => v.push(n.as_f64().unwrap_or(f64::NAN) as f32),
            (Column::Double(v), Value::Number(n)) => v.push(n.as_f64().unwrap_or(f64::NAN)),
            (Column::Int64(v), Value::Number(n)) => v.push(n.as_i64().ok_or("must be an integer")?),
            (Column::String(v), Value::String(s)) => v.push(s.clone()),
            (Column::String(v), Value::Number(_) | Value::Bool(_)) => v.push(value.to_string()),
            (Column::String(_), _) => return Err("must be a string".into()),
            _ => return Err("must be a number".into()),
        }
        Ok(())
    }

    fn into_input(self, column: bool) -> Result<SessionInputValue<'static>, ort::Error> {
        let n = self.len();
        let shape = if column { vec![n as i64, 1] } else { vec![n as i64] };
        Ok(match self {
            Column::Float(v) => Tensor::from_array((shape, v))?.into(),
            Column::Double(v) => Tensor::from_array((shape, v))?.into(),
            Column::Int64(v) => Tensor::from_array((shape, v))?.into(),
            Column::String(v) => Tensor::from_string_array((shape, v.as_slice()))?.into(),
        })
    }
}

/// A model input as the model declares it.
#[derive(Clone, Debug)]
struct DeclaredInput {
    name: String,
    /// Declared as `[N, 1]` rather than `[N]`.
    column: bool,
}

/// A loaded model with a checked signature: runs columns, returns one number per record and
/// output.
pub struct OnnxModel {
    pool: Arc<SessionPool>,
    inputs: Vec<DeclaredInput>,
    outputs: Vec<String>,
    /// The last call's model time per row, in nanoseconds (0 until the first call).
    nanos_per_row: AtomicU64,
    /// Where the model came from, for messages.
    pub location: String,
    /// The envelope's version: configured, or derived from the model's location or bytes.
    pub version: String,
}

/// A signature mismatch: the config key at fault and the message.
pub type SignatureError = (String, String);

impl OnnxModel {
    /// Loads `model` and checks that `features` (input name and type) cover exactly its
    /// inputs and that `outputs` are numeric outputs of it.
    ///
    /// # Errors
    /// The config key at fault (`model`, `features.<input>` or `outputs`) and what is wrong.
    pub async fn load(
        model: &str,
        version: Option<&str>,
        features: &[(String, FeatureType)],
        outputs: &[String],
        sessions: usize,
        threads: usize,
    ) -> Result<Self, SignatureError> {
        let at_model = |e: String| ("model".to_string(), e);
        let fetched = model_store::fetch(model).await.map_err(|e| at_model(e.to_string()))?;
        let version = version.filter(|v| !v.is_empty()).map_or_else(|| fetched.default_version(), str::to_string);
        let location = fetched.location.clone();
        let bytes = fetched.bytes;
        let pool = tokio::task::spawn_blocking(move || SessionPool::new(&bytes, sessions, threads))
            .await
            .map_err(|e| at_model(format!("model loading thread failed: {e}")))?
            .map_err(|e| at_model(format!("{location}: {e}")))?;
        let (declared, numeric_outputs) = declared(&pool);
        let inputs = check_features(&location, &declared, features)?;
        for output in outputs {
            if !numeric_outputs.contains(output) {
                return Err((
                    "outputs".into(),
                    format!("{location} has no numeric output {output:?}; its numeric outputs are {numeric_outputs:?}"),
                ));
            }
        }
        Ok(OnnxModel {
            pool: Arc::new(pool),
            inputs,
            outputs: outputs.to_vec(),
            nanos_per_row: AtomicU64::new(0),
            location,
            version,
        })
    }

    /// Runs one batch (call from a blocking thread): `columns` in the order of the `features`
    /// given to [`OnnxModel::load`]. Returns, per output, one value per record.
    ///
    /// # Errors
    /// ONNX Runtime refused the inputs or failed.
    pub fn infer(&self, columns: Vec<Column>) -> Result<Vec<Vec<f64>>, OnnxError> {
        self.run(&mut self.pool.acquire(), columns)
    }

    /// Runs the model on a batch's columns from async code. A call expected to take at most
    /// [`INLINE_BUDGET_NANOS`] (by the last call's time per row) runs right here when a session
    /// is free: handing it to a blocking thread and back costs about half that. Any other call
    /// runs on a blocking thread, so a slow model never stalls the async workers.
    ///
    /// # Errors
    /// As [`OnnxModel::infer`], as a fatal component error.
    pub async fn predict(self: &Arc<Self>, columns: Vec<Column>) -> Result<Vec<Vec<f64>>, ComponentError> {
        let rows = columns.first().map_or(0, Column::len) as u64;
        let inline = runs_inline(self.nanos_per_row.load(Ordering::Relaxed), rows);
        let fatal = |e: OnnxError| ComponentError::Fatal(e.to_string());
        if inline && let Some(mut session) = self.pool.try_acquire() {
            // As on a blocking thread, a panic in inference is a fatal error, not a lost task.
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run(&mut session, columns)));
            return run.map_err(|_| ComponentError::Fatal("inference panicked".into()))?.map_err(fatal);
        }
        let model = self.clone();
        tokio::task::spawn_blocking(move || model.infer(columns))
            .await
            .map_err(|e| ComponentError::Fatal(format!("inference thread failed: {e}")))?
            .map_err(fatal)
    }

    fn run(&self, session: &mut Session, columns: Vec<Column>) -> Result<Vec<Vec<f64>>, OnnxError> {
        let err = |e: ort::Error| OnnxError::Inference(e.to_string());
        let n = columns.first().map_or(0, Column::len);
        let mut inputs: Vec<(String, SessionInputValue<'static>)> = Vec::with_capacity(columns.len());
        for (declared, column) in self.inputs.iter().zip(columns) {
            inputs.push((declared.name.clone(), column.into_input(declared.column).map_err(err)?));
        }
        let started = Instant::now();
        let results = session.run(inputs).map_err(err)?;
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos_per_row.store((nanos / n.max(1) as u64).max(1), Ordering::Relaxed);
        let mut out = Vec::with_capacity(self.outputs.len());
        for name in &self.outputs {
            let value = results.get(name).ok_or_else(|| OnnxError::Inference(format!("no output {name}")))?;
            let values: Vec<f64> = match value.dtype() {
                ValueType::Tensor { ty: TensorElementType::Float64, .. } => {
                    value.try_extract_tensor::<f64>().map_err(err)?.1.to_vec()
                }
                ValueType::Tensor { ty: TensorElementType::Int64, .. } => {
                    value.try_extract_tensor::<i64>().map_err(err)?.1.iter().map(|v| *v as f64).collect()
                }
                _ => value.try_extract_tensor::<f32>().map_err(err)?.1.iter().map(|v| f64::from(*v)).collect(),
            };
            if values.len() != n {
                return Err(OnnxError::Inference(format!("output {name} has {} values for {n} records", values.len())));
            }
            out.push(values);
        }
        Ok(out)
    }
}

/// The model's inputs (name, element type, whether `[N, 1]`) and its numeric outputs.
/// An input as declared: name, element type (when supported) and shape.
type Declared = (String, Option<FeatureType>, Vec<i64>);

fn declared(pool: &SessionPool) -> (Vec<Declared>, Vec<String>) {
    let session = pool.acquire();
    let inputs = session
        .inputs()
        .iter()
        .map(|o| match o.dtype() {
            ValueType::Tensor { ty, shape, .. } => (o.name().to_string(), feature_type(*ty), shape.to_vec()),
            _ => (o.name().to_string(), None, Vec::new()),
        })
        .collect();
    let outputs = session
        .outputs()
        .iter()
        .filter(|o| {
            matches!(o.dtype(), ValueType::Tensor { ty, .. }
                if matches!(ty, TensorElementType::Float32 | TensorElementType::Float64 | TensorElementType::Int64))
        })
        .map(|o| o.name().to_string())
        .collect();
    (inputs, outputs)
}

fn feature_type(ty: TensorElementType) -> Option<FeatureType> {
    match ty {
        TensorElementType::Float32 => Some(FeatureType::Float),
        TensorElementType::Float64 => Some(FeatureType::Double),
        TensorElementType::Int64 => Some(FeatureType::Int64),
        TensorElementType::String => Some(FeatureType::String),
        _ => None,
    }
}

fn check_features(
    location: &str,
    declared: &[Declared],
    features: &[(String, FeatureType)],
) -> Result<Vec<DeclaredInput>, SignatureError> {
    let names: Vec<&str> = declared.iter().map(|(n, _, _)| n.as_str()).collect();
    for (name, _) in features {
        if !names.contains(&name.as_str()) {
            return Err((
                format!("features.{name}"),
                format!("{location} has no input {name:?}; its inputs are {names:?}"),
            ));
        }
    }
    let mut inputs = Vec::new();
    for (name, kind, shape) in declared {
        let Some((_, configured)) = features.iter().find(|(n, _)| n == name) else {
            return Err((
                "features".into(),
                format!("model input {name:?} of {location} is not mapped to an event field"),
            ));
        };
        if *kind != Some(*configured) {
            let kind = kind.map_or_else(|| "an unsupported type".to_string(), |k| format!("{k:?}").to_lowercase());
            return Err((
                format!("features.{name}.type"),
                format!("{location} declares input {name:?} as {kind}, configured as {configured:?}").to_lowercase(),
            ));
        }
        let column = match shape.as_slice() {
            [_] => false,
            [_, 1 | -1] => true,
            other => {
                return Err((
                    format!("features.{name}"),
                    format!(
                        "{location} declares input {name:?} with shape {other:?}; only [N] and [N, 1] are supported"
                    ),
                ));
            }
        };
        inputs.push(DeclaredInput { name: name.clone(), column });
    }
    // Keep the configured order: `infer` receives columns in it.
    inputs.sort_by_key(|i| features.iter().position(|(n, _)| *n == i.name));
    Ok(inputs)
}

/// Where a feature's value comes from in an event.
enum Extract {
    Field(String),
    Template(Template),
}

/// The generic processor.
pub struct OnnxProcessor {
    model: Arc<OnnxModel>,
    extract: Vec<(Extract, FeatureType)>,
    output_fields: Vec<String>,
    echo: Vec<(String, String)>,
    model_name: Value,
    version: Value,
}

/// Builds the processor: loads the model and checks the mapping against its signature.
pub fn build(spec: ComponentSpec) -> BuildFuture<Arc<dyn Processor>> {
    Box::pin(async move {
        let config: OnnxConfig = spec.parse()?;
        let processor = OnnxProcessor::load(&config).await.map_err(|(key, e)| spec.error(&key, e))?;
        Ok(Arc::new(processor) as Arc<dyn Processor>)
    })
}

impl OnnxProcessor {
    /// Loads the model named by `config` and checks the feature mapping.
    ///
    /// # Errors
    /// The config key at fault and what is wrong.
    pub async fn load(config: &OnnxConfig) -> Result<Self, SignatureError> {
        let mut extract = Vec::new();
        let mut features = Vec::new();
        for (name, feature) in &config.features {
            let key = format!("features.{name}");
            let source = match (&feature.field, &feature.template) {
                (Some(field), None) => Extract::Field(field.clone()),
                (None, Some(template)) => Extract::Template(Template::parse(template).map_err(|e| (key.clone(), e))?),
                _ => return Err((key, "set exactly one of `field` and `template`".into())),
            };
            extract.push((source, feature.kind));
            features.push((name.clone(), feature.kind));
        }
        if config.outputs.is_empty() {
            return Err(("outputs".into(), "name at least one model output".into()));
        }
        let (output_fields, output_names): (Vec<String>, Vec<String>) =
            config.outputs.iter().map(|(f, o)| (f.clone(), o.clone())).unzip();
        let model = OnnxModel::load(
            &config.model,
            config.version.as_deref(),
            &features,
            &output_names,
            config.sessions,
            config.threads,
        )
        .await?;
        tracing::info!(model = %model.location, version = %model.version, name = %config.model_name, "onnx model loaded");
        let echo = config.echo.iter().map(|p| (p.rsplit('.').next().unwrap_or(p).to_string(), p.clone())).collect();
        Ok(OnnxProcessor {
            version: Value::String(model.version.clone()),
            model: Arc::new(model),
            extract,
            output_fields,
            echo,
            model_name: Value::String(config.model_name.clone()),
        })
    }

    /// Adds one event's features to `columns`, or says which field is wrong.
    /// A rejected record leaves no values behind: the columns are cut back to where they were.
    fn features(&self, event: &Value, columns: &mut [Column]) -> Result<(), String> {
        let before = columns.first().map_or(0, Column::len);
        let pushed = self.push_features(event, columns);
        if pushed.is_err() {
            columns.iter_mut().for_each(|c| c.truncate(before));
        }
        pushed
    }

    fn push_features(&self, event: &Value, columns: &mut [Column]) -> Result<(), String> {
        for ((source, _), column) in self.extract.iter().zip(columns) {
            match source {
                Extract::Field(path) => {
                    let value = lookup(event, path).filter(|v| !v.is_null()).ok_or(format!("`{path}` is missing"))?;
                    column.push(value).map_err(|e| format!("`{path}` {e}"))?;
                }
                Extract::Template(template) => {
                    let text = template
                        .render(event)
                        .ok_or_else(|| format!("`{}` is missing", template.missing_field(event).unwrap_or_default()))?;
                    match column {
                        Column::String(v) => v.push(text),
                        other => other.push(&Value::String(text))?,
                    }
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Processor for OnnxProcessor {
    async fn process(&self, batch: &[Input<'_>]) -> Result<Vec<Outcome>, ComponentError> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
        let mut columns: Vec<Column> = self.extract.iter().map(|(_, kind)| Column::new(*kind, batch.len())).collect();
        let mut rows = Vec::with_capacity(batch.len());
        for (i, input) in batch.iter().enumerate() {
            let echoed: Result<Map<String, Value>, String> = self
                .echo
                .iter()
                .map(|(name, path)| {
                    let v = lookup(input.value, path).filter(|v| !v.is_null());
                    v.map(|v| (name.clone(), v.clone())).ok_or_else(|| format!("event has no `{path}`"))
                })
                .collect();
            match echoed.and_then(|e| self.features(input.value, &mut columns).map(|()| e)) {
                Ok(echoed) => rows.push((i, echoed)),
                Err(reason) => outcomes[i] = Some(Outcome::Reject(reason)),
            }
        }
        if !rows.is_empty() {
            let predictions = self.model.predict(columns).await?;
            for (k, (row, echoed)) in rows.into_iter().enumerate() {
                let mut prediction = Map::new();
                for (field, values) in self.output_fields.iter().zip(&predictions) {
                    prediction.insert(field.clone(), json!(values[k]));
                }
                prediction.extend(echoed);
                outcomes[row] = Some(Outcome::one(json!({
                    "model": self.model_name,
                    "version": self.version,
                    "prediction": prediction,
                })));
            }
        }
        Ok(outcomes.into_iter().map(|o| o.unwrap_or_else(|| Outcome::Reject("not processed".into()))).collect())
    }
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
