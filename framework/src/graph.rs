//! The pipeline graph: validation of `inputs` wiring (unknown ids, cycles, dangling components)
//! and the built graph of components that the executor runs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::component::{Processor, Sink, Source};
use crate::config::{ComponentSpec, PipelineConfig};
use crate::dead_letter::LogDeadLetter;
use crate::error::ConfigError;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::retry::RetryPolicy;
use crate::shared::SharedSources;

/// A reference to something that produces values: a source or a processor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NodeRef {
    Source(usize),
    Processor(usize),
}

/// The checked wiring of a configuration: processors in topological order, grouped by level
/// (a level only consumes sources and earlier levels, so one level runs concurrently).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// Source ids, in config order.
    pub sources: Vec<String>,
    /// Processor ids by level.
    pub levels: Vec<Vec<String>>,
    /// Sink ids.
    pub sinks: Vec<String>,
}

/// Checks the `inputs` of every processor and sink.
///
/// # Errors
/// An id used twice, an input that names nothing (or a sink), a cycle, or a source or processor
/// whose output nobody consumes.
pub fn topology(config: &PipelineConfig) -> Result<Topology, ConfigError> {
    let sources: BTreeSet<&str> = config.sources.keys().map(String::as_str).collect();
    let processors: BTreeSet<&str> = config.processors.keys().map(String::as_str).collect();
    if config.sources.is_empty() {
        return Err(ConfigError::Load {
            file: config.file.clone(),
            message: "no [sources.<id>] table: nothing to read".into(),
        });
    }
    if config.sinks.is_empty() {
        return Err(ConfigError::Load {
            file: config.file.clone(),
            message: "no [sinks.<id>] table: nothing to deliver to".into(),
        });
    }
    for spec in config.processors.values().chain(config.sinks.values()) {
        if sources.contains(spec.path.component.as_str()) {
            return Err(
                spec.error("", "this id is also a source id; ids must be unique across sources, processors and sinks")
            );
        }
    }
    for spec in config.sinks.values() {
        if processors.contains(spec.path.component.as_str()) {
            return Err(spec.error("", "this id is also a processor id; ids must be unique"));
        }
    }
    let mut consumed: BTreeSet<&str> = BTreeSet::new();
    for spec in config.processors.values().chain(config.sinks.values()) {
        let mut seen = BTreeSet::new();
        for input in &spec.inputs {
            if let Some((processor, _)) = side_output(input, &processors) {
                if !config.sinks.contains_key(&spec.path.component) || spec.inputs.len() != 1 {
                    return Err(spec.error(
                        "inputs",
                        format!("{input:?} is a side output: only a sink can consume it, as its only input"),
                    ));
                }
                consumed.insert(processor);
                continue;
            }
            if !sources.contains(input.as_str()) && !processors.contains(input.as_str()) {
                let hint = if config.sinks.contains_key(input) { " (a sink produces nothing to consume)" } else { "" };
                let known: Vec<&str> = sources.iter().chain(processors.iter()).copied().collect();
                return Err(spec.error(
                    "inputs",
                    format!("unknown input {input:?}{hint}; sources and processors are: {}", known.join(", ")),
                ));
            }
            if input == &spec.path.component {
                return Err(spec.error("inputs", "a component cannot consume itself"));
            }
            if !seen.insert(input.as_str()) {
                return Err(spec.error("inputs", format!("{input:?} is listed twice")));
            }
            consumed.insert(input.as_str());
        }
    }
    for (id, spec) in config.sources.iter().chain(config.processors.iter()) {
        if !consumed.contains(id.as_str()) {
            return Err(
                spec.error("", "nothing consumes this component: list it in the `inputs` of a processor or sink")
            );
        }
    }
    let levels = levels(&config.processors)?;
    Ok(Topology {
        sources: config.sources.keys().cloned().collect(),
        levels,
        sinks: config.sinks.keys().cloned().collect(),
    })
}

/// `"<processor>.<output>"` naming a side output of a processor in `processors`: (processor, output).
fn side_output<'a>(input: &'a str, processors: &BTreeSet<&str>) -> Option<(&'a str, &'a str)> {
    let (processor, output) = input.split_once('.')?;
    (processors.contains(processor) && !output.is_empty()).then_some((processor, output))
}

/// Kahn's algorithm over processors; a processor's level is one more than its deepest
/// processor input.
fn levels(processors: &BTreeMap<String, ComponentSpec>) -> Result<Vec<Vec<String>>, ConfigError> {
    let mut level_of: BTreeMap<&str, usize> = BTreeMap::new();
    let mut remaining: BTreeSet<&str> = processors.keys().map(String::as_str).collect();
    while !remaining.is_empty() {
        let ready: Vec<&str> = remaining
            .iter()
            .copied()
            .filter(|id| {
                processors[*id].inputs.iter().all(|i| !processors.contains_key(i) || level_of.contains_key(i.as_str()))
            })
            .collect();
        if ready.is_empty() {
            return Err(cycle_error(processors, &remaining));
        }
        for id in ready {
            let level =
                processors[id].inputs.iter().filter_map(|i| level_of.get(i.as_str()).map(|l| l + 1)).max().unwrap_or(0);
            level_of.insert(id, level);
            remaining.remove(id);
        }
    }
    let depth = level_of.values().copied().max().map_or(0, |m| m + 1);
    let mut levels = vec![Vec::new(); depth];
    for (id, level) in level_of {
        levels[level].push(id.to_string());
    }
    Ok(levels)
}

fn cycle_error(processors: &BTreeMap<String, ComponentSpec>, remaining: &BTreeSet<&str>) -> ConfigError {
    // Every remaining processor waits on another remaining one: walk back until a repeat.
    let Some(start) = remaining.iter().next().copied() else {
        return ConfigError::Load { file: String::new(), message: "cycle".into() };
    };
    let mut path = vec![start];
    let mut current = start;
    loop {
        let next = processors[current].inputs.iter().map(String::as_str).find(|i| remaining.contains(i));
        let Some(next) = next else { break };
        if let Some(pos) = path.iter().position(|p| *p == next) {
            path.drain(..pos);
            path.push(next);
            break;
        }
        path.push(next);
        current = next;
    }
    path.reverse();
    let spec = &processors[path[0]];
    spec.error("inputs", format!("cycle: {}", path.join(" -> ")))
}

pub(crate) struct ProcessorNode {
    pub(crate) id: Arc<str>,
    pub(crate) inputs: Vec<NodeRef>,
    pub(crate) component: Arc<dyn Processor>,
}

pub(crate) struct SinkNode {
    pub(crate) id: Arc<str>,
    pub(crate) inputs: Vec<NodeRef>,
    pub(crate) component: Arc<dyn Sink>,
}

/// A built graph: components wired by index, ready to run batches
/// ([`Graph::run_batch`](crate::executor)).
pub struct Graph {
    pub(crate) source_ids: Vec<Arc<str>>,
    /// Processors in topological order; `levels` slices this vector.
    pub(crate) processors: Vec<ProcessorNode>,
    pub(crate) levels: Vec<std::ops::Range<usize>>,
    pub(crate) sinks: Vec<SinkNode>,
    pub(crate) dead_letter: SinkNode,
    pub(crate) retry: RetryPolicy,
    pub(crate) max_record_bytes: usize,
    pub(crate) metrics: Arc<Metrics>,
}

impl Graph {
    /// The pipeline's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Copies every processor's gauges into the metrics (each batch read).
    pub fn refresh_processor_gauges(&self) {
        for node in &self.processors {
            let gauges = node.component.gauges();
            if !gauges.is_empty() {
                self.metrics.set_processor_gauges(&node.id, gauges);
            }
        }
    }

    /// The index of a source id, for [`Graph::run_batch`](crate::executor).
    pub fn source_index(&self, id: &str) -> Option<usize> {
        self.source_ids.iter().position(|s| &**s == id)
    }

    /// The index of a sink id, for [`Graph::answers`](crate::executor).
    pub fn sink_index(&self, id: &str) -> Option<usize> {
        self.sinks.iter().position(|s| &*s.id == id)
    }

    /// Closes every sink and the dead-letter destination (after the last delivery), as a
    /// finished run does.
    ///
    /// # Errors
    /// The first sink that failed to close, with its id.
    pub async fn close_sinks(&self) -> Result<(), (String, crate::error::ComponentError)> {
        let mut first = None;
        for sink in self.sinks.iter().chain(std::iter::once(&self.dead_letter)) {
            if let Err(error) = sink.component.close().await {
                first.get_or_insert((sink.id.to_string(), error));
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Processor ids, in topological order.
    pub fn processor_ids(&self) -> impl Iterator<Item = &str> {
        self.processors.iter().map(|p| &*p.id)
    }

    /// The processor with this id.
    pub fn processor(&self, id: &str) -> Option<&Arc<dyn Processor>> {
        self.processors.iter().find(|p| &*p.id == id).map(|p| &p.component)
    }

    /// Source ids in index order.
    pub fn source_ids(&self) -> &[Arc<str>] {
        &self.source_ids
    }
}

/// Builds every component of a checked configuration. Sources are returned separately: they
/// are owned by their driver tasks, while the graph is shared.
///
/// # Errors
/// A wiring error, an unknown plugin, or a component that fails to build (bad key, missing
/// model, unreachable stream).
pub async fn build(config: &PipelineConfig, registry: &Registry) -> Result<(Graph, Vec<Box<dyn Source>>), ConfigError> {
    build_with(config, registry, None).await
}

/// [`build`], with the sources that name a share joining it in `shared` (as the pipeline
/// `name`) instead of being built on their own.
///
/// # Errors
/// As [`build`], and a share described differently by two pipelines.
pub async fn build_with(
    config: &PipelineConfig,
    registry: &Registry,
    mut shared: Option<(&mut SharedSources, &str)>,
) -> Result<(Graph, Vec<Box<dyn Source>>), ConfigError> {
    let topo = topology(config)?;
    registry.check_types(config)?;
    let mut sources = Vec::new();
    for id in &topo.sources {
        let spec = &config.sources[id];
        let source = match shared.as_mut() {
            Some((hub, name)) => hub.attach(spec, name, config.pipeline.batch_size, registry).await?,
            None => registry.source_builder(spec)?(spec.clone()).await?,
        };
        sources.push(source);
    }
    let order: Vec<&String> = topo.levels.iter().flatten().collect();
    let resolve = |spec: &ComponentSpec| -> Vec<NodeRef> {
        spec.inputs
            .iter()
            .filter_map(|i| {
                topo.sources
                    .iter()
                    .position(|s| s == i)
                    .map(NodeRef::Source)
                    .or_else(|| order.iter().position(|p| *p == i).map(NodeRef::Processor))
            })
            .collect()
    };
    let mut processors = Vec::new();
    for id in &order {
        let spec = &config.processors[*id];
        let component = registry.processor_builder(spec)?(spec.clone()).await?;
        processors.push(ProcessorNode { id: Arc::from(id.as_str()), inputs: resolve(spec), component });
    }
    let mut sinks = Vec::new();
    let processor_ids: BTreeSet<&str> = order.iter().map(|p| p.as_str()).collect();
    for id in &topo.sinks {
        let spec = &config.sinks[id];
        let component = registry.sink_builder(spec)?(spec.clone()).await?;
        // A side output's sink gets its values from the processor, not from the graph; it is
        // kept with the others (no inputs) so that it is closed with them.
        if let Some((processor, output)) = spec.inputs.first().and_then(|i| side_output(i, &processor_ids)) {
            let node = processors.iter().find(|p| &*p.id == processor);
            if let Some(node) = node {
                node.component.attach_side_output(output, component.clone()).map_err(|e| spec.error("inputs", e))?;
            }
            sinks.push(SinkNode { id: Arc::from(id.as_str()), inputs: Vec::new(), component });
            continue;
        }
        sinks.push(SinkNode { id: Arc::from(id.as_str()), inputs: resolve(spec), component });
    }
    let dead_letter = match &config.dead_letter {
        Some(spec) => registry.sink_builder(spec)?(spec.clone()).await?,
        None => Arc::new(LogDeadLetter),
    };
    let mut levels = Vec::new();
    let mut start = 0;
    for level in &topo.levels {
        levels.push(start..start + level.len());
        start += level.len();
    }
    let graph = Graph {
        source_ids: topo.sources.iter().map(|s| Arc::from(s.as_str())).collect(),
        processors,
        levels,
        sinks,
        dead_letter: SinkNode { id: Arc::from("dead_letter"), inputs: Vec::new(), component: dead_letter },
        retry: config.retry.clone(),
        max_record_bytes: config.pipeline.max_record_bytes,
        metrics: Arc::new(Metrics::default()),
    };
    Ok((graph, sources))
}
