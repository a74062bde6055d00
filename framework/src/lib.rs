//! The core of tributary: what a record is, what a component promises, and the runtime that
//! moves records from sources through processors to sinks with at-least-once delivery.
//!
//! The crate knows nothing about Kinesis, Kafka or ONNX: those live in plugin crates
//! (`tributary-sources`, `tributary-processors`, `tributary-sinks`) that implement the traits in
//! [`component`] and are listed by name in a [`registry::Registry`].
//!
//! The contracts, in one place:
//! - A [`Record`] is decoded once (JSON) and shared by every branch that consumes its source.
//! - Processors work on whole batches and return one [`Outcome`] per record.
//! - Sinks return one [`Delivery`] per record.
//! - A source position is committed only when every branch delivered or dead-lettered the
//!   record and every earlier record of the same partition ([`watermark`]).

pub mod checkpoint_file;
pub mod columns;
pub mod component;
pub mod config;
pub mod dead_letter;
pub mod error;
pub mod executor;
pub mod graph;
pub mod inference;
pub mod metrics;
pub mod output;
pub mod record;
pub mod registry;
pub mod retry;
pub mod runtime;
pub mod schema;
pub mod shared;
pub mod template;
pub mod watermark;

pub use component::{Delivery, Input, Outcome, Processor, Sink, Source};
pub use output::Output;

/// The log target of what a sink in dry-run mode would have sent. Logged at INFO, and shown at
/// the default verbosity (a dry run is asked for to see this).
pub const DRY_RUN_LOG_TARGET: &str = "tributary::dry_run";
pub use error::{ComponentError, ConfigError};
pub use record::{Offset, Payload, Position, Record};
