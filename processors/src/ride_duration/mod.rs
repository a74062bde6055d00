//! Processor `ride_duration`: the seeds' ride-duration model on ONNX Runtime.
//!
//! ```toml
//! [processors.ride_duration]
//! type = "ride_duration"
//! inputs = ["rides"]
//! model = "s3://mlflow-models/1/${RUN_ID}/artifacts/model"   # or a local .onnx path
//! ```
//!
//! Each ride event becomes the seeds' envelope:
//! `{"model": "ride_duration_prediction_model", "version": "<run id>",
//!   "prediction": {"ride_duration": <minutes>, "ride_id": <as given>}}`.
//! The whole scikit-learn pipeline (vectorisation included) is inside the ONNX graph; this
//! module only prepares `PU_DO` and `trip_distance` as the seeds did and validates them (zone
//! ids, distances), then runs whole batches through the generic `onnx` processor's
//! [`OnnxModel`]. Without the validation, the same model is a plain `onnx` configuration
//! (`deployments/config/fan-out.toml` shows it). On a Parquet batch job it takes columns
//! instead of events ([`columns`]): same fields, same checks, same model. On a stream it reads
//! events of the usual shape straight from their JSON text ([`event_text`]), without a decoded
//! value per event.

mod columns;
pub mod config;
pub mod event_text;
pub mod features;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tributary_framework::config::ComponentSpec;
use tributary_framework::record::Record;
use tributary_framework::registry::BuildFuture;
use tributary_framework::{ComponentError, Input, Outcome, Output, Processor};

pub use config::RideDurationConfig;
use features::RideFeatures;

use crate::onnx::input::InputPlan;
use crate::onnx::output::OutputPlan;
use crate::onnx::reload;
use crate::onnx::{ElementType, Feature, OnnxModel, OutputSpec, Values};

/// The model's input and output names (see `processors/models/ride_duration/schema.json`).
const INPUT_PU_DO: &str = "PU_DO";
const INPUT_DISTANCE: &str = "trip_distance";
const OUTPUT: &str = "ride_duration";

/// Predicts ride durations.
pub struct RideDuration {
    /// The model serving now; a batch takes it once (a reload swaps models between batches).
    current: reload::Current<RideModel>,
    model_name: String,
    /// `model_name` as JSON text, escaped once (see [`Envelope`]).
    model_name_json: Box<RawValue>,
}

/// A ride-duration model with its checked inputs and output.
struct RideModel {
    model: Arc<OnnxModel>,
    /// How `PU_DO` and `trip_distance` are fed.
    pu_do: InputPlan,
    distance: InputPlan,
    /// Whether the model declares `PU_DO` first (feeds go in the model's order).
    pu_do_first: bool,
    /// The `ride_duration` output.
    output: OutputPlan,
    fetch: Arc<[usize]>,
    version: String,
    /// `version` as JSON text, escaped once (see [`Envelope`]).
    version_json: Box<RawValue>,
    /// When the model's `PU_DO` LabelEncoder was removed at load (see `onnx::graph`): the code
    /// of every zone pair, by [`features::pair_index`], looked up once per model.
    pair_codes: Option<Vec<i64>>,
}

impl reload::Serving for RideModel {
    fn version(&self) -> &str {
        &self.version
    }
}

/// Builds the processor: fetches the model, starts its sessions and checks its signature.
pub fn build(spec: ComponentSpec) -> BuildFuture<Arc<dyn Processor>> {
    Box::pin(async move {
        let config: RideDurationConfig = spec.parse()?;
        if config.reload_interval_s > 0 {
            reload::check_config(&config.model, config.version.as_deref()).map_err(|(key, e)| spec.error(&key, e))?;
        }
        let processor = RideDuration::load(&config).await.map_err(|e| spec.error("model", e))?;
        processor.start_reloading(&config, spec.path.component.clone());
        Ok(Arc::new(processor) as Arc<dyn Processor>)
    })
}

impl RideDuration {
    /// Loads the model named by `config`.
    ///
    /// # Errors
    /// A message saying what is wrong with the model or the runtime.
    pub async fn load(config: &RideDurationConfig) -> Result<Self, String> {
        let model = RideModel::open(config).await?;
        Ok(RideDuration {
            current: reload::Current::new(model, config.reload_interval_s > 0),
            model_name: config.model_name.clone(),
            model_name_json: json_text(&config.model_name)?,
        })
    }

    /// Starts following the registry when `reload_interval_s` is set; the task ends with the
    /// processor.
    pub fn start_reloading(&self, config: &RideDurationConfig, id: String) {
        let config = config.clone();
        let (model, interval) = (config.model.clone(), config.reload_interval_s);
        self.current.follow(model, interval, id, move || {
            let config = config.clone();
            async move { RideModel::open(&config).await }
        });
    }

    /// Runs the model once on the rides that have features; each other ride keeps the outcome
    /// it has (a rejection, or none: handed back to the runtime).
    async fn score(
        &self,
        rides: Vec<Result<RideFeatures, Option<Outcome>>>,
    ) -> Result<Vec<Option<Outcome>>, ComponentError> {
        let model = self.current.get();
        let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(rides.len());
        let len = rides.len();
        let (mut rows, mut pairs) = (Vec::with_capacity(len), Vec::with_capacity(len));
        let (mut distance, mut ids) = (Vec::with_capacity(len), Vec::with_capacity(len));
        for (i, ride) in rides.into_iter().enumerate() {
            match ride {
                Ok(RideFeatures { pair, trip_distance, ride_id }) => {
                    rows.push(i);
                    pairs.push(pair);
                    distance.push(trip_distance);
                    ids.push(ride_id);
                    outcomes.push(None);
                }
                Err(outcome) => outcomes.push(outcome),
            }
        }
        if !rows.is_empty() {
            let n = rows.len();
            let predictions = model.predict(model.pu_do(&pairs), distance).await?;
            for (k, (row, ride_id)) in rows.into_iter().zip(ids).enumerate() {
                let prediction = model.output.value(&predictions, n, k).map_err(ComponentError::Fatal)?;
                let envelope = Envelope {
                    model: &self.model_name_json,
                    version: &model.version_json,
                    prediction: Prediction { ride_duration: &prediction, ride_id: &ride_id },
                };
                let output = Output::serialized(&envelope).map_err(|e| ComponentError::Fatal(e.to_string()))?;
                outcomes[row] = Some(Outcome::one(output));
            }
        }
        Ok(outcomes)
    }
}

/// The seeds' envelope of one prediction, fields in the seeds' order. Serialized straight into
/// the output's JSON text ([`Output::serialized`]): building a `Value` per ride (a copy of a
/// template map, eleven allocations) and serializing it again in the sink was over a quarter of
/// the streaming path's time. The model name and version, the same in every envelope, are
/// written as JSON text made once: they were about half of the text escaped per ride
/// (escaping took 6.7% of the path's profile).
#[derive(Serialize)]
struct Envelope<'a> {
    model: &'a RawValue,
    version: &'a RawValue,
    prediction: Prediction<'a>,
}

/// A string as JSON text.
fn json_text(text: &str) -> Result<Box<RawValue>, String> {
    serde_json::value::to_raw_value(text).map_err(|e| e.to_string())
}

#[derive(Serialize)]
struct Prediction<'a> {
    ride_duration: &'a Value,
    ride_id: &'a Value,
}

impl RideModel {
    /// The `PU_DO` input for zone pairs (by [`features::pair_index`]): their codes when the
    /// model's LabelEncoder was removed at load, else their text.
    fn pu_do(&self, pairs: &[usize]) -> Values {
        match &self.pair_codes {
            Some(codes) => Values::Int64(pairs.iter().map(|&pair| codes[pair]).collect()),
            None => Values::Interned(pairs.iter().map(|&pair| features::pair_text(pair)).collect()),
        }
    }

    /// Runs the model on prepared `PU_DO` pairs and distances (events and columns alike); its
    /// `ride_duration` output.
    async fn predict(&self, pu_do: Values, miles: Vec<f32>) -> Result<Values, ComponentError> {
        let n = pu_do.len();
        let (pu_do, distance) = (self.pu_do.feed(pu_do), self.distance.feed(Values::Float(miles)));
        let feeds = if self.pu_do_first { vec![pu_do, distance] } else { vec![distance, pu_do] };
        let mut outputs = self.model.predict(feeds, n, self.fetch.clone()).await?;
        if outputs.is_empty() {
            return Err(ComponentError::Fatal("no prediction".into()));
        }
        Ok(outputs.swap_remove(0))
    }

    /// Opens the model `config` names and checks that it is a ride-duration model.
    async fn open(config: &RideDurationConfig) -> Result<Self, String> {
        let model = OnnxModel::open(&config.model, config.version.as_deref(), config.sessions, config.threads).await?;
        let not_ride_duration = |(_, e): (String, String)| {
            format!(
                "does not look like a ride-duration model (expected inputs {INPUT_PU_DO}: string and \
                 {INPUT_DISTANCE}: float, output {OUTPUT}): {e}"
            )
        };
        let (mut pu_do, mut distance) = (None, None);
        for port in model.inputs() {
            let (slot, kind) = match port.name.as_str() {
                INPUT_PU_DO => (&mut pu_do, ElementType::String),
                INPUT_DISTANCE => (&mut distance, ElementType::Float),
                other => return Err(not_ride_duration(("".into(), format!("it has an input {other:?}")))),
            };
            *slot = Some(
                InputPlan::new(port, &Feature::field(&port.name, kind), &model.location).map_err(not_ride_duration)?,
            );
        }
        let (Some(pu_do), Some(distance)) = (pu_do, distance) else {
            return Err(not_ride_duration(("".into(), format!("it has {} inputs", model.inputs().len()))));
        };
        let pu_do_first = model.inputs().first().is_some_and(|p| p.name == INPUT_PU_DO);
        let output = OutputPlan::new(OUTPUT, &OutputSpec::Name(OUTPUT.into()), model.outputs(), &model.location)
            .map_err(not_ride_duration)?;
        let pair_codes = model.input_codes(INPUT_PU_DO).map(|codes| {
            let zones = || features::ZONES.map(|zone| zone as i64);
            zones().flat_map(|pu| zones().map(move |dropoff| codes.code(features::pair(pu, dropoff)))).collect()
        });
        tracing::info!(model = %model.location, version = %model.version, "ride-duration model loaded");
        Ok(RideModel {
            version: model.version.clone(),
            version_json: json_text(&model.version)?,
            fetch: vec![output.output].into(),
            model: Arc::new(model),
            pu_do,
            distance,
            pu_do_first,
            output,
            pair_codes,
        })
    }
}

#[async_trait]
impl Processor for RideDuration {
    async fn process(&self, batch: &[Input<'_>]) -> Result<Vec<Outcome>, ComponentError> {
        let rides =
            batch.iter().map(|input| features::prepare(input.value).map_err(|reason| Some(Outcome::Reject(reason))));
        let outcomes = self.score(rides.collect()).await?;
        Ok(outcomes.into_iter().map(|o| o.unwrap_or_else(|| Outcome::Reject("not processed".into()))).collect())
    }

    fn reads_json_text(&self) -> bool {
        true
    }

    async fn process_json_text(&self, batch: &[&Record]) -> Result<Vec<Option<Outcome>>, ComponentError> {
        self.score(batch.iter().map(|record| event_text::prepare(record.raw_bytes()).ok_or(None)).collect()).await
    }

    fn ready(&self) -> Result<(), String> {
        self.current.ready()
    }

    fn column_fields(&self) -> Option<Vec<tributary_framework::columns::ColumnField>> {
        Some(columns::fields())
    }

    async fn process_columns(
        &self,
        batch: &tributary_framework::columns::ColumnBatch,
    ) -> Result<tributary_framework::columns::ColumnOutput, ComponentError> {
        self.predict_columns(batch).await
    }

    fn model_metadata(&self, name: &str) -> Option<tributary_framework::inference::ModelMetadata> {
        Some(crate::onnx::tensors::metadata(&self.current.get().model, name))
    }

    async fn infer(
        &self,
        inputs: Vec<tributary_framework::inference::Tensor>,
        outputs: &[String],
    ) -> Result<Vec<tributary_framework::inference::Tensor>, tributary_framework::inference::InferError> {
        crate::onnx::tensors::infer(&self.current.get().model, inputs, outputs).await
    }

    fn gauges(&self) -> Vec<tributary_framework::metrics::Gauge> {
        self.current.gauges()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

    #[test]
    fn an_envelope_is_written_in_the_seeds_field_order_and_reads_as_its_value() {
        for (prediction, id) in [(json!(3.5), json!(7)), (json!(0.0), json!("r-\"1")), (Value::Null, json!(-2.5))] {
            let (model, version) =
                (json_text("ride_duration_prediction_model").unwrap(), json_text("run-\"1").unwrap());
            let envelope = Envelope {
                model: &model,
                version: &version,
                prediction: Prediction { ride_duration: &prediction, ride_id: &id },
            };
            let output = Output::serialized(&envelope).unwrap();
            let value = json!({
                "model": "ride_duration_prediction_model",
                "version": "run-\"1",
                "prediction": {"ride_duration": prediction, "ride_id": id},
            });
            assert_eq!(output.to_string(), value.to_string());
            assert_eq!(*output.value(), value);
        }
        let (model, version) = (json_text("ride_duration_prediction_model").unwrap(), json_text("run-1").unwrap());
        let envelope = Envelope {
            model: &model,
            version: &version,
            prediction: Prediction { ride_duration: &json!(3.5), ride_id: &json!(7) },
        };
        assert_eq!(
            Output::serialized(&envelope).unwrap().to_string(),
            r#"{"model":"ride_duration_prediction_model","version":"run-1","prediction":{"ride_duration":3.5,"ride_id":7}}"#
        );
    }
}
