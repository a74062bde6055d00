//! Content moderation: three **placeholder** detectors and the [`merge`] that joins their
//! results into one decision per upload.
//!
//! A `video_upload` event:
//!
//! ```json
//! {"event": "video_upload", "upload_id": "u-1001", "uploader": "ana", "duration_s": 93.5,
//!  "title": "Sunset timelapse",
//!  "features": {"audio_match": 0.02, "skin_ratio": 0.10, "motion": 0.35, "red_ratio": 0.05}}
//! ```
//!
//! The detectors `copyright`, `nsfw` and `violence` are stubs with deterministic scores, not
//! models: each reads one or two numeric features of the event (which a real system would get
//! from upstream media analysis) and emits
//! `{"detector": "<name>", "upload_id": ..., "score": <0..1>, "version": "placeholder-1"}`.
//! A missing or out-of-range feature rejects the upload for that detector (it is dead-lettered
//! for that branch, and the merge marks the decision incomplete).
//!
//! | detector | score |
//! |---|---|
//! | `copyright` | `features.audio_match` |
//! | `nsfw` | `features.skin_ratio` |
//! | `violence` | `0.6 * features.red_ratio + 0.4 * features.motion` |
//!
//! `simulated_latency_ms` makes a detector sleep that long per batch, standing in for a real
//! model's cost in demos and the fan-out benchmark.

pub mod merge;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tributary_framework::config::ComponentSpec;
use tributary_framework::registry::BuildFuture;
use tributary_framework::{ComponentError, Input, Outcome, Processor};

/// The placeholder detectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detector {
    /// Copyright match, from `features.audio_match`.
    Copyright,
    /// Nudity, from `features.skin_ratio`.
    Nsfw,
    /// Violence, from `features.red_ratio` and `features.motion`.
    Violence,
}

impl Detector {
    /// The detector's name: its plugin type and the `detector` field of its results.
    pub fn name(self) -> &'static str {
        match self {
            Detector::Copyright => "copyright",
            Detector::Nsfw => "nsfw",
            Detector::Violence => "violence",
        }
    }

    /// The deterministic placeholder score of one event, or why there is none.
    ///
    /// # Errors
    /// The event is not an upload, or a feature is missing or outside 0..=1.
    pub fn score(self, event: &Value) -> Result<f64, String> {
        let upload_id = event.get("upload_id").filter(|v| v.is_string() || v.is_number());
        if upload_id.is_none() {
            return Err("event has no `upload_id` (a string or number): not a video_upload event".into());
        }
        let feature = |name: &str| -> Result<f64, String> {
            match event.get("features").and_then(|f| f.get(name)) {
                None => Err(format!("`features.{name}` is missing")),
                Some(Value::Number(n)) => match n.as_f64() {
                    Some(x) if (0.0..=1.0).contains(&x) => Ok(x),
                    _ => Err(format!("`features.{name}` must be between 0 and 1, found {n}")),
                },
                Some(other) => Err(format!("`features.{name}` must be a number, found {other}")),
            }
        };
        Ok(match self {
            Detector::Copyright => feature("audio_match")?,
            Detector::Nsfw => feature("skin_ratio")?,
            Detector::Violence => 0.6 * feature("red_ratio")? + 0.4 * feature("motion")?,
        })
    }
}

/// `[processors.<id>]` with `type = "copyright" | "nsfw" | "violence"`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    /// Sleep this long per batch, standing in for a real model's cost. Default 0.
    #[serde(default)]
    pub simulated_latency_ms: u64,
}

/// A placeholder detector processor.
pub struct DetectorProcessor {
    detector: Detector,
    latency: Duration,
}

impl DetectorProcessor {
    /// A detector with the given configuration.
    pub fn new(detector: Detector, config: &DetectorConfig) -> Self {
        DetectorProcessor { detector, latency: Duration::from_millis(config.simulated_latency_ms) }
    }
}

fn build(detector: Detector, spec: ComponentSpec) -> BuildFuture<Arc<dyn Processor>> {
    Box::pin(async move {
        let config: DetectorConfig = spec.parse()?;
        Ok(Arc::new(DetectorProcessor::new(detector, &config)) as Arc<dyn Processor>)
    })
}

/// Builds the `copyright` placeholder.
pub fn build_copyright(spec: ComponentSpec) -> BuildFuture<Arc<dyn Processor>> {
    build(Detector::Copyright, spec)
}

/// Builds the `nsfw` placeholder.
pub fn build_nsfw(spec: ComponentSpec) -> BuildFuture<Arc<dyn Processor>> {
    build(Detector::Nsfw, spec)
}

/// Builds the `violence` placeholder.
pub fn build_violence(spec: ComponentSpec) -> BuildFuture<Arc<dyn Processor>> {
    build(Detector::Violence, spec)
}

#[async_trait]
impl Processor for DetectorProcessor {
    async fn process(&self, batch: &[Input<'_>]) -> Result<Vec<Outcome>, ComponentError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        Ok(batch
            .iter()
            .map(|input| match self.detector.score(input.value) {
                Ok(score) => Outcome::one(json!({
                    "detector": self.detector.name(),
                    "upload_id": input.value["upload_id"],
                    "score": score,
                    "version": "placeholder-1",
                })),
                Err(reason) => Outcome::Reject(reason),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_deterministic_and_bad_features_are_named() {
        let event = json!({"upload_id": "u1", "features": {"audio_match": 0.5, "skin_ratio": 0.25, "motion": 1.0, "red_ratio": 0.5}});
        assert_eq!(Detector::Copyright.score(&event), Ok(0.5));
        assert_eq!(Detector::Nsfw.score(&event), Ok(0.25));
        assert!((Detector::Violence.score(&event).unwrap() - 0.7).abs() < 1e-12);
        let missing = json!({"upload_id": "u1", "features": {"audio_match": 0.5}});
        assert!(Detector::Nsfw.score(&missing).unwrap_err().contains("features.skin_ratio"));
        let out_of_range = json!({"upload_id": "u1", "features": {"audio_match": 3}});
        assert!(Detector::Copyright.score(&out_of_range).unwrap_err().contains("between 0 and 1"));
        assert!(Detector::Copyright.score(&json!({"ride_id": 1})).unwrap_err().contains("upload_id"));
    }
}
