//! Processor `onnx`: any ONNX model a data scientist exports, by configuration alone
//! ([`OnnxConfig`]).
//!
//! At build time (so `tributary validate` reports it) the configured features are checked
//! against the inputs the model declares ([`input`]): every input mapped, no unknown names,
//! element types equal, and the values per record (`[N]`, `[N, 1]`, `[N, F]` from `fields` or
//! from an array field, `[N, ...]` from nested arrays, DictVectorizer maps from `entries`); the
//! configured outputs must be outputs the model has, of a type tributary reads ([`output`]).
//! skl2onnx's DictVectorizer inputs and ZipMap outputs are rewritten at load into their batched
//! equivalents ([`graph`]). Each record's features are extracted (a missing or mistyped field
//! rejects that record, naming the field and the model input), the batch runs as one inference
//! ([`OnnxModel::predict`]), and each record becomes
//! `{"model": <model_name>, "version": <version>, "prediction": {<outputs>, <echo fields>}}`.
//!
//! [`OnnxModel`] is the shared inference half: the `ride_duration` processor prepares its
//! features with its own validation and runs them through the same code.

mod columns;
pub mod config;
pub mod graph;
pub mod input;
pub mod inspect;
pub mod labels;
pub mod model;
pub mod output;
pub mod reload;
mod shadow;
pub mod tensor;
pub mod tensors;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use tributary_framework::config::ComponentSpec;
use tributary_framework::registry::BuildFuture;
use tributary_framework::template::lookup;
use tributary_framework::{ComponentError, Input, Outcome, Processor};

pub use self::config::{ElementType, Feature, OnnxConfig, OutputSpec};
use self::input::InputPlan;
pub use self::model::{Feed, OnnxModel, Port, PortKind};
use self::output::OutputPlan;
pub use self::tensor::Values;
use crate::mlflow::SignatureInput;

/// A signature mismatch: the config key at fault and the message.
pub type SignatureError = (String, String);

/// The generic processor.
pub struct OnnxProcessor {
    /// The model serving now; a batch takes it once, so a reload swaps models between batches.
    current: reload::Current<Loaded>,
    echo: Vec<(String, String)>,
    model_name: Value,
    /// The shadow model, when `shadow` is set.
    shadow: Option<shadow::Shadow>,
}

/// A model with its checked mappings: what one batch runs on.
pub(crate) struct Loaded {
    model: Arc<OnnxModel>,
    /// One per model input, in the model's order.
    inputs: Vec<InputPlan>,
    /// Each prediction field, with the position of its model output among those fetched.
    outputs: Vec<(OutputPlan, usize)>,
    /// The model outputs the plans read, by index.
    fetch: Arc<[usize]>,
    version: Value,
}

/// Builds the processor: loads the model and checks the mapping against its signature.
pub fn build(spec: ComponentSpec) -> BuildFuture<Arc<dyn Processor>> {
    Box::pin(async move {
        let config: OnnxConfig = spec.parse()?;
        let processor = OnnxProcessor::load(&config).await.map_err(|(key, e)| spec.error(&key, e))?;
        processor.start_reloading(&config, spec.path.component.clone());
        Ok(Arc::new(processor) as Arc<dyn Processor>)
    })
}

impl OnnxProcessor {
    /// Loads the model named by `config` and checks the feature and output mappings.
    ///
    /// # Errors
    /// The config key at fault and what is wrong.
    pub async fn load(config: &OnnxConfig) -> Result<Self, SignatureError> {
        if config.outputs.is_empty() {
            return Err(("outputs".into(), "name at least one model output".into()));
        }
        if config.reload_interval_s > 0 {
            reload::check_config(&config.model, config.version.as_deref())?;
        }
        let loaded = Loaded::open(config).await?;
        tracing::info!(model = %loaded.model.location, version = %loaded.model.version, name = %config.model_name, "onnx model loaded");
        let echo = config.echo.iter().map(|p| (p.rsplit('.').next().unwrap_or(p).to_string(), p.clone())).collect();
        let shadow = match &config.shadow {
            Some(uri) => Some(shadow::Shadow::open(config, uri).await?),
            None => None,
        };
        Ok(OnnxProcessor {
            shadow,
            current: reload::Current::new(loaded, config.reload_interval_s > 0),
            echo,
            model_name: Value::String(config.model_name.clone()),
        })
    }

    /// Starts following the registry in the background when `reload_interval_s` is set (see
    /// [`reload`]); the task ends with the processor.
    pub fn start_reloading(&self, config: &OnnxConfig, id: String) {
        if let (Some(shadow), Some(uri)) = (&self.shadow, &config.shadow) {
            shadow.start_reloading(config, uri, &id);
        }
        follow(&self.current, config.clone(), id);
    }

    /// ONNX Runtime's own time per record on `events` (features prepared beforehand, outputs
    /// not turned into JSON): the median of `runs` calls, in seconds per record. The floor no
    /// caller of this model can beat; for the benchmarks.
    ///
    /// # Errors
    /// An event is rejected, or inference fails.
    pub async fn model_seconds_per_record(&self, events: &[Value], runs: usize) -> Result<f64, String> {
        let loaded = self.current.get();
        let mut columns: Vec<Values> = loaded.inputs.iter().map(|plan| plan.values(events.len())).collect();
        for event in events {
            loaded.features(event, &mut columns)?;
        }
        let feeds: Vec<Feed> = loaded.inputs.iter().zip(columns).map(|(plan, values)| plan.feed(values)).collect();
        let mut seconds = Vec::with_capacity(runs);
        for _ in 0..runs.max(1) {
            let feeds = feeds.clone();
            let started = std::time::Instant::now();
            loaded.model.predict(feeds, events.len(), loaded.fetch.clone()).await.map_err(|e| e.to_string())?;
            seconds.push(started.elapsed().as_secs_f64() / events.len().max(1) as f64);
        }
        seconds.sort_by(f64::total_cmp);
        Ok(seconds[seconds.len() / 2])
    }
}

impl Loaded {
    /// Opens the model `config` names and checks the mappings against it.
    pub(crate) async fn open(config: &OnnxConfig) -> Result<Self, SignatureError> {
        let model = OnnxModel::open(&config.model, config.version.as_deref(), config.sessions, config.threads)
            .await
            .map_err(|e| ("model".to_string(), e))?;
        let location = &model.location;
        let names: Vec<&str> = model.inputs().iter().map(|p| p.name.as_str()).collect();
        if let Some(unknown) = config.features.keys().find(|k| !names.contains(&k.as_str())) {
            return Err((
                format!("features.{unknown}"),
                format!("{location} has no input {unknown:?}; its inputs are {names:?}"),
            ));
        }
        let mut inputs = Vec::new();
        for port in model.inputs() {
            let Some(feature) = config.features.get(&port.name) else {
                return Err((
                    "features".into(),
                    format!(
                        "model input {:?} ({}) of {location} is not mapped to event fields",
                        port.name,
                        port.describe()
                    ),
                ));
            };
            inputs.push(InputPlan::new(port, feature, location)?);
        }
        if let Some(signature) = &model.signature {
            check_signature(signature, &inputs, location)?;
        }
        let outputs: Vec<OutputPlan> = config
            .outputs
            .iter()
            .map(|(field, spec)| OutputPlan::new(field, spec, model.outputs(), location))
            .collect::<Result<_, _>>()?;
        let mut fetch: Vec<usize> = outputs.iter().map(|o| o.output).collect();
        fetch.sort_unstable();
        fetch.dedup();
        let outputs = outputs
            .into_iter()
            .map(|plan| {
                let at = fetch.iter().position(|i| *i == plan.output).unwrap_or_default();
                (plan, at)
            })
            .collect();
        Ok(Loaded {
            version: Value::String(model.version.clone()),
            model: Arc::new(model),
            inputs,
            outputs,
            fetch: fetch.into(),
        })
    }

    /// Adds one event's values to `columns`, or says which field is wrong; a rejected record
    /// leaves no values behind.
    fn features<R: input::Record + ?Sized>(&self, record: &R, columns: &mut [Values]) -> Result<(), String> {
        let lengths: Vec<usize> = columns.iter().map(Values::len).collect();
        for (plan, column) in self.inputs.iter().zip(columns.iter_mut()) {
            if let Err(reason) = plan.push(record, column) {
                columns.iter_mut().zip(lengths).for_each(|(c, len)| c.truncate(len));
                return Err(reason);
            }
        }
        Ok(())
    }

    /// The envelope version this model writes.
    pub(crate) fn version(&self) -> &str {
        self.version.as_str().unwrap_or_default()
    }
}

/// Starts `current` following `config.model` for processor `id` (see [`reload`]): each new
/// version is opened and checked with `config`'s mapping. The primary's and the shadow's.
fn follow(current: &reload::Current<Loaded>, config: OnnxConfig, id: String) {
    let (model, interval) = (config.model.clone(), config.reload_interval_s);
    current.follow(model, interval, id, move || {
        let config = config.clone();
        async move { Loaded::open(&config).await.map_err(|(key, e)| format!("{key}: {e}")) }
    });
}

impl reload::Serving for Loaded {
    fn version(&self) -> &str {
        Loaded::version(self)
    }
}

/// Checks an MLflow signature's tensor inputs against the inputs the features fill: each named
/// tensor must be a model input, and its dtype the type the features give. Column signatures
/// (a DataFrame's columns) describe the Python side's input, not the ONNX graph's, and are not
/// compared.
fn check_signature(signature: &[SignatureInput], inputs: &[InputPlan], location: &str) -> Result<(), SignatureError> {
    for spec in signature {
        let SignatureInput::Tensor { name, dtype, .. } = spec else { continue };
        let plan = match name {
            Some(name) => inputs.iter().find(|p| p.input() == name),
            None if inputs.len() == 1 => inputs.first(),
            None => None,
        };
        let Some(plan) = plan else {
            return Err((
                "model".into(),
                format!("the MLmodel signature of {location} has input {spec}, which the ONNX model does not take"),
            ));
        };
        let expected = match dtype.as_str() {
            "float32" => Some(ElementType::Float),
            "float64" => Some(ElementType::Double),
            "int32" => Some(ElementType::Int32),
            "int64" => Some(ElementType::Int64),
            "bool" => Some(ElementType::Bool),
            "str" | "object" | "string" => Some(ElementType::String),
            _ => None,
        };
        if expected.is_some_and(|t| t != plan.element_type()) {
            return Err((
                format!("features.{}", plan.input()),
                format!(
                    "the MLmodel signature of {location} says {spec}, but the features give {}",
                    plan.element_type().name()
                ),
            ));
        }
    }
    Ok(())
}

#[async_trait]
impl Processor for OnnxProcessor {
    async fn process(&self, batch: &[Input<'_>]) -> Result<Vec<Outcome>, ComponentError> {
        let loaded = self.current.get();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
        let mut columns: Vec<Values> = loaded.inputs.iter().map(|plan| plan.values(batch.len())).collect();
        let mut rows = Vec::with_capacity(batch.len());
        let mut predicted = Vec::new();
        for (i, input) in batch.iter().enumerate() {
            let echoed: Result<Map<String, Value>, String> = self
                .echo
                .iter()
                .map(|(name, path)| {
                    let v = lookup(input.value, path).filter(|v| !v.is_null());
                    v.map(|v| (name.clone(), v.clone())).ok_or_else(|| format!("event has no `{path}`"))
                })
                .collect();
            match echoed.and_then(|e| loaded.features(input.value.value(), &mut columns).map(|()| e)) {
                Ok(echoed) => rows.push((i, echoed)),
                Err(reason) => outcomes[i] = Some(Outcome::Reject(reason)),
            }
        }
        if !rows.is_empty() {
            let feeds = loaded.inputs.iter().zip(columns).map(|(plan, values)| plan.feed(values)).collect();
            let n = rows.len();
            let fetched = loaded.model.predict(feeds, n, loaded.fetch.clone()).await?;
            for (k, (row, echoed)) in rows.into_iter().enumerate() {
                let mut prediction = Map::new();
                for (plan, at) in &loaded.outputs {
                    let at = *at;
                    let value = plan.value(&fetched[at], n, k).map_err(ComponentError::Fatal)?;
                    prediction.insert(plan.field.clone(), value);
                }
                prediction.extend(echoed);
                let prediction = Value::Object(prediction);
                if self.shadow.is_some() {
                    predicted.push((row, prediction.clone()));
                }
                outcomes[row] = Some(Outcome::one(json!({
                    "model": self.model_name,
                    "version": loaded.version,
                    "prediction": prediction,
                })));
            }
        }
        if let Some(shadow) = &self.shadow
            && !predicted.is_empty()
        {
            shadow.compare(&self.model_name, &loaded.version, batch, predicted).await;
        }
        Ok(outcomes.into_iter().map(|o| o.unwrap_or_else(|| Outcome::Reject("not processed".into()))).collect())
    }

    fn ready(&self) -> Result<(), String> {
        self.current.ready()
    }

    /// The features' and `echo`'s fields; `None` with a shadow model, whose comparisons are
    /// made on events only.
    fn column_fields(&self) -> Option<Vec<tributary_framework::columns::ColumnField>> {
        self.shadow.is_none().then(|| self.fields())
    }

    async fn process_columns(
        &self,
        batch: &tributary_framework::columns::ColumnBatch,
    ) -> Result<tributary_framework::columns::ColumnOutput, ComponentError> {
        self.predict_columns(batch).await
    }

    fn model_metadata(&self, name: &str) -> Option<tributary_framework::inference::ModelMetadata> {
        Some(tensors::metadata(&self.current.get().model, name))
    }

    async fn infer(
        &self,
        inputs: Vec<tributary_framework::inference::Tensor>,
        outputs: &[String],
    ) -> Result<Vec<tributary_framework::inference::Tensor>, tributary_framework::inference::InferError> {
        tensors::infer(&self.current.get().model, inputs, outputs).await
    }

    fn gauges(&self) -> Vec<tributary_framework::metrics::Gauge> {
        self.current.gauges().into_iter().chain(self.shadow.iter().flat_map(shadow::Shadow::gauges)).collect()
    }

    fn attach_side_output(&self, output: &str, sink: Arc<dyn tributary_framework::Sink>) -> Result<(), String> {
        match (&self.shadow, output) {
            (Some(shadow), "shadow") => shadow.attach(sink),
            (None, "shadow") => Err("there is no `shadow` model in this processor: set `shadow = \"<model>\"`".into()),
            _ => Err(format!("the onnx processor's only side output is `shadow`, not {output:?}")),
        }
    }
}
