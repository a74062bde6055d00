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
//! module only prepares `PU_DO` and `trip_distance` as the seeds did, validates them, and runs
//! whole batches on a blocking thread.

pub mod config;
pub mod features;

use std::sync::Arc;

use async_trait::async_trait;
use ort::value::Tensor;
use serde_json::{Value, json};
use tributary_framework::config::ComponentSpec;
use tributary_framework::registry::BuildFuture;
use tributary_framework::{ComponentError, Input, Outcome, Processor};

use crate::model_store;
use crate::onnx_runtime::{OnnxError, SessionPool};
pub use config::RideDurationConfig;
use features::RideFeatures;

/// The model's input and output names (see `processors/models/ride_duration/schema.json`).
const INPUT_PU_DO: &str = "PU_DO";
const INPUT_DISTANCE: &str = "trip_distance";
const OUTPUT: &str = "ride_duration";

/// Predicts ride durations.
pub struct RideDuration {
    pool: Arc<SessionPool>,
    model_name: Value,
    version: Value,
}

/// Builds the processor: fetches the model, starts its sessions and checks its signature.
pub fn build(spec: ComponentSpec) -> BuildFuture<Arc<dyn Processor>> {
    Box::pin(async move {
        let config: RideDurationConfig = spec.parse()?;
        let processor = RideDuration::load(&config).await.map_err(|e| spec.error("model", e))?;
        Ok(Arc::new(processor) as Arc<dyn Processor>)
    })
}

impl RideDuration {
    /// Loads the model named by `config`.
    ///
    /// # Errors
    /// A message saying what is wrong with the model or the runtime.
    pub async fn load(config: &RideDurationConfig) -> Result<Self, String> {
        let model = model_store::fetch(&config.model).await.map_err(|e| e.to_string())?;
        let version = config.version.clone().filter(|v| !v.is_empty()).unwrap_or_else(|| model.default_version());
        let (sessions, threads) = (config.sessions, config.threads);
        let bytes = model.bytes;
        let pool = tokio::task::spawn_blocking(move || SessionPool::new(&bytes, sessions, threads))
            .await
            .map_err(|e| format!("model loading thread failed: {e}"))?
            .map_err(|e| format!("{}: {e}", model.location))?;
        let (inputs, outputs) = pool.signature();
        let has = |list: &[(String, String)], name: &str| list.iter().any(|(n, _)| n == name);
        if !has(&inputs, INPUT_PU_DO) || !has(&inputs, INPUT_DISTANCE) || !has(&outputs, OUTPUT) {
            return Err(format!(
                "{} does not look like a ride-duration model: expected inputs {INPUT_PU_DO} (string) and \
                 {INPUT_DISTANCE} (float) and output {OUTPUT}, found inputs {inputs:?}, outputs {outputs:?}",
                model.location
            ));
        }
        tracing::info!(model = %model.location, %version, "ride-duration model loaded");
        Ok(RideDuration {
            pool: Arc::new(pool),
            model_name: Value::String(config.model_name.clone()),
            version: Value::String(version),
        })
    }

    /// Runs the model on prepared features (on the calling thread).
    ///
    /// # Errors
    /// ONNX Runtime refused the inputs or failed.
    pub fn predict(pool: &SessionPool, pu_do: &[String], distance: Vec<f32>) -> Result<Vec<f32>, OnnxError> {
        let n = pu_do.len();
        let err = |e: ort::Error| OnnxError::Inference(e.to_string());
        let pu_do = Tensor::from_string_array(([n], pu_do)).map_err(err)?;
        let distance = Tensor::from_array(([n], distance)).map_err(err)?;
        let mut session = pool.acquire();
        let outputs = session.run(ort::inputs![INPUT_PU_DO => pu_do, INPUT_DISTANCE => distance]).map_err(err)?;
        let output = outputs.get(OUTPUT).ok_or_else(|| OnnxError::Inference(format!("no output {OUTPUT}")))?;
        let (_, values) = output.try_extract_tensor::<f32>().map_err(err)?;
        if values.len() != n {
            return Err(OnnxError::Inference(format!("model returned {} predictions for {n} rides", values.len())));
        }
        Ok(values.to_vec())
    }

    fn envelope(&self, prediction: f32, ride_id: Value) -> Value {
        json!({
            "model": self.model_name,
            "version": self.version,
            "prediction": {"ride_duration": f64::from(prediction), "ride_id": ride_id},
        })
    }
}

#[async_trait]
impl Processor for RideDuration {
    async fn process(&self, batch: &[Input<'_>]) -> Result<Vec<Outcome>, ComponentError> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
        let mut rows = Vec::with_capacity(batch.len());
        let mut pu_do = Vec::with_capacity(batch.len());
        let mut distance = Vec::with_capacity(batch.len());
        let mut ids = Vec::with_capacity(batch.len());
        for (i, input) in batch.iter().enumerate() {
            match features::prepare(input.value) {
                Ok(RideFeatures { pu_do: p, trip_distance, ride_id }) => {
                    rows.push(i);
                    pu_do.push(p);
                    distance.push(trip_distance);
                    ids.push(ride_id);
                }
                Err(reason) => outcomes[i] = Some(Outcome::Reject(reason)),
            }
        }
        if !rows.is_empty() {
            let pool = self.pool.clone();
            let predictions = tokio::task::spawn_blocking(move || Self::predict(&pool, &pu_do, distance))
                .await
                .map_err(|e| ComponentError::Fatal(format!("inference thread failed: {e}")))?
                .map_err(|e| ComponentError::Fatal(e.to_string()))?;
            for ((row, prediction), ride_id) in rows.into_iter().zip(predictions).zip(ids) {
                outcomes[row] = Some(Outcome::one(self.envelope(prediction, ride_id)));
            }
        }
        Ok(outcomes.into_iter().map(|o| o.unwrap_or_else(|| Outcome::Reject("not processed".into()))).collect())
    }
}
