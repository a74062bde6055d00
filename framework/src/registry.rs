//! The plugin registry: every component `type` name, mapped to the function that builds it and
//! the schema of its config type (`.source::<FileConfig>("file", file::build)`), which
//! `tributary schema` assembles ([`crate::schema`]).
//!
//! The framework ships no plugins. The binaries assemble one registry, in one greppable list
//! (`tributary::registry()` in `deployments/`), so that adding a plugin is one module plus one line.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::component::{Processor, Sink, Source};
use crate::config::ComponentSpec;
use crate::error::ConfigError;
use crate::schema::SchemaFn;
#[doc(no_inline)]
pub use crate::schema::Untyped;
use schemars::JsonSchema;

/// What a builder returns: a future, because building may read a model from S3 or check that a
/// stream exists.
pub type BuildFuture<T> = Pin<Box<dyn Future<Output = Result<T, ConfigError>> + Send>>;
/// Builds a source from its config table.
pub type SourceBuilder = Arc<dyn Fn(ComponentSpec) -> BuildFuture<Box<dyn Source>> + Send + Sync>;
/// Builds a processor from its config table.
pub type ProcessorBuilder = Arc<dyn Fn(ComponentSpec) -> BuildFuture<Arc<dyn Processor>> + Send + Sync>;
/// Builds a sink (or a dead-letter destination) from its config table.
pub type SinkBuilder = Arc<dyn Fn(ComponentSpec) -> BuildFuture<Arc<dyn Sink>> + Send + Sync>;

/// Plugin names, each with its builder and its config's schema. Builders may be closures (tests
/// and embedders use them to hand in shared state).
#[derive(Clone, Default)]
pub struct Registry {
    sources: BTreeMap<&'static str, (SourceBuilder, SchemaFn)>,
    processors: BTreeMap<&'static str, (ProcessorBuilder, SchemaFn)>,
    sinks: BTreeMap<&'static str, (SinkBuilder, SchemaFn)>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a source plugin.
    ///
    /// `C` is the plugin's config type, which `build` parses: its schema is the plugin's part of
    /// [`Registry::config_schema`] ([`Untyped`] for a closure without one).
    #[must_use]
    pub fn source<C: JsonSchema>(
        mut self,
        name: &'static str,
        build: impl Fn(ComponentSpec) -> BuildFuture<Box<dyn Source>> + Send + Sync + 'static,
    ) -> Self {
        self.sources.insert(name, (Arc::new(build), C::json_schema));
        self
    }

    /// Adds a processor plugin.
    ///
    /// `C` is the plugin's config type, which `build` parses: its schema is the plugin's part of
    /// [`Registry::config_schema`] ([`Untyped`] for a closure without one).
    #[must_use]
    pub fn processor<C: JsonSchema>(
        mut self,
        name: &'static str,
        build: impl Fn(ComponentSpec) -> BuildFuture<Arc<dyn Processor>> + Send + Sync + 'static,
    ) -> Self {
        self.processors.insert(name, (Arc::new(build), C::json_schema));
        self
    }

    /// Adds a sink plugin (sinks also serve as dead-letter destinations).
    ///
    /// `C` is the plugin's config type, which `build` parses: its schema is the plugin's part of
    /// [`Registry::config_schema`] ([`Untyped`] for a closure without one).
    #[must_use]
    pub fn sink<C: JsonSchema>(
        mut self,
        name: &'static str,
        build: impl Fn(ComponentSpec) -> BuildFuture<Arc<dyn Sink>> + Send + Sync + 'static,
    ) -> Self {
        self.sinks.insert(name, (Arc::new(build), C::json_schema));
        self
    }

    /// The JSON Schema of a whole config with these plugins (see [`crate::schema`]).
    pub fn config_schema(&self) -> serde_json::Value {
        fn schemas<B>(plugins: &BTreeMap<&'static str, (B, SchemaFn)>) -> BTreeMap<&'static str, SchemaFn> {
            plugins.iter().map(|(name, (_, schema))| (*name, *schema)).collect()
        }
        let (sources, processors, sinks) = (schemas(&self.sources), schemas(&self.processors), schemas(&self.sinks));
        crate::schema::config_schema(&crate::schema::Plugins {
            sources: &sources,
            processors: &processors,
            sinks: &sinks,
        })
    }

    /// The registered names per kind: (sources, processors, sinks).
    pub fn names(&self) -> (Vec<&'static str>, Vec<&'static str>, Vec<&'static str>) {
        (
            self.sources.keys().copied().collect(),
            self.processors.keys().copied().collect(),
            self.sinks.keys().copied().collect(),
        )
    }

    /// Builds one processor from its table (the batch job builds its components itself).
    ///
    /// # Errors
    /// An unknown `type`, or the plugin's own error.
    pub async fn build_processor(&self, spec: ComponentSpec) -> Result<Arc<dyn Processor>, ConfigError> {
        let build = self.processor_builder(&spec)?;
        build(spec).await
    }

    /// Builds one sink from its table.
    ///
    /// # Errors
    /// An unknown `type`, or the plugin's own error.
    pub async fn build_sink(&self, spec: ComponentSpec) -> Result<Arc<dyn Sink>, ConfigError> {
        let build = self.sink_builder(&spec)?;
        build(spec).await
    }

    pub(crate) fn source_builder(&self, spec: &ComponentSpec) -> Result<SourceBuilder, ConfigError> {
        lookup(&self.sources, spec, "source")
    }

    pub(crate) fn processor_builder(&self, spec: &ComponentSpec) -> Result<ProcessorBuilder, ConfigError> {
        lookup(&self.processors, spec, "processor")
    }

    pub(crate) fn sink_builder(&self, spec: &ComponentSpec) -> Result<SinkBuilder, ConfigError> {
        lookup(&self.sinks, spec, "sink")
    }

    /// Checks every component's `type` against the registry without building anything.
    ///
    /// # Errors
    /// The first unknown plugin name.
    pub fn check_types(&self, config: &crate::config::PipelineConfig) -> Result<(), ConfigError> {
        for spec in config.sources.values() {
            self.source_builder(spec)?;
        }
        for spec in config.processors.values() {
            self.processor_builder(spec)?;
        }
        for spec in config.sinks.values().chain(config.dead_letter.iter()) {
            self.sink_builder(spec)?;
        }
        Ok(())
    }
}

fn lookup<B: Clone>(
    map: &BTreeMap<&'static str, (B, SchemaFn)>,
    spec: &ComponentSpec,
    kind: &str,
) -> Result<B, ConfigError> {
    map.get(spec.kind.as_str()).map(|(build, _)| build.clone()).ok_or_else(|| {
        let known: Vec<_> = map.keys().copied().collect();
        spec.error("type", format!("unknown {kind} type {:?}; known: {}", spec.kind, known.join(", ")))
    })
}
