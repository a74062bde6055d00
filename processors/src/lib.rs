//! Processors for tributary: the models.
//!
//! - [`model_store`]: fetches model bytes from a local path or an `s3://` URI (including the
//!   MLflow artifact layout `s3://<bucket>/<experiment>/<run_id>/artifacts/model/...`);
//! - [`onnx_runtime`] (feature `onnx`): finds `libonnxruntime.so`, and pools ONNX Runtime sessions;
//! - [`ride_duration`] (feature `onnx`): the seeds' ride-duration model, with their feature
//!   preparation and output envelope.

pub mod model_store;
#[cfg(feature = "onnx")]
pub mod onnx_runtime;
#[cfg(feature = "onnx")]
pub mod ride_duration;
