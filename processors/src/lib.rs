//! Processors for tributary: the models.
//!
//! - [`model_store`]: fetches model bytes from a local path, an `s3://` URI (including the
//!   MLflow artifact layout `s3://<bucket>/<experiment>/<run_id>/artifacts/model/...`) or an
//!   MLflow model URI;
//! - [`mlflow`]: `models:/` and `runs:/` URIs resolved through the MLflow tracking server's REST
//!   API, artifacts read from S3, the server's proxy or disk, and the `MLmodel` file;
//! - [`onnx_runtime`] (feature `onnx`): finds `libonnxruntime.so`, and pools ONNX Runtime sessions;
//! - [`onnx`] (feature `onnx`): any ONNX model by configuration: event fields to model inputs,
//!   outputs to prediction fields;
//! - [`tip`] (feature `onnx`): a placeholder tip model (the `onnx` processor, preconfigured);
//! - [`moderation`]: placeholder `copyright`, `nsfw` and `violence` detectors and the `merge`
//!   that joins their scores into one decision per upload;
//! - [`ride_duration`] (feature `onnx`): the seeds' ride-duration model, with their feature
//!   preparation and output envelope.

pub mod mlflow;
pub mod model_store;
pub mod moderation;
#[cfg(feature = "onnx")]
pub mod onnx;
#[cfg(feature = "onnx")]
pub mod onnx_runtime;
#[cfg(feature = "onnx")]
pub mod ride_duration;
#[cfg(feature = "onnx")]
pub mod tip;
