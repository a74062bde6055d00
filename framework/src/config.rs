//! Pipeline configuration: a TOML file, then `TRIBUTARY_`-prefixed environment overrides
//! (`TRIBUTARY_SOURCES__RIDES__PATH=x` sets `[sources.rides] path`), then `${VAR}` and
//! `${VAR:-default}` substitution in string values.
//!
//! Components are tables keyed by id under `[sources]`, `[processors]` and `[sinks]`, plus one
//! optional `[dead_letter]` table. Each has a `type` (its plugin, see the registry) and, for
//! processors and sinks, `inputs`. The remaining keys belong to the plugin, which parses them
//! with [`ComponentSpec::parse`] into its own typed config so that unknown keys are errors that
//! name the file, the component and the key.

use std::collections::BTreeMap;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{ConfigError, ConfigPath};
use crate::retry::RetryPolicy;

/// The `[pipeline]` table: runtime limits shared by every source.
#[derive(Clone, Debug, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSettings {
    /// Most records a source hands to the graph at once (one inference batch).
    pub batch_size: usize,
    /// Batches per source in the graph at the same time. `1` keeps output order; more overlaps
    /// sinks' I/O with inference, at the cost of order across batches.
    pub max_in_flight: usize,
    /// How often, at most, a source commits its watermark, in milliseconds (always at shutdown).
    pub commit_interval_ms: u64,
    /// Records larger than this many bytes are dead-lettered unread (Kinesis' limit is 1 MiB).
    pub max_record_bytes: usize,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            batch_size: 1_000,
            max_in_flight: 1,
            commit_interval_ms: 1_000,
            max_record_bytes: 1024 * 1024,
        }
    }
}

/// One component table: its plugin `type`, its `inputs`, and the plugin's own keys.
#[derive(Clone, Debug, PartialEq)]
pub struct ComponentSpec {
    /// The plugin name (`type = "..."`).
    pub kind: String,
    /// Ids of the sources or processors this component consumes (empty for sources).
    pub inputs: Vec<String>,
    /// The plugin's own keys, after substitution.
    pub options: Map<String, Value>,
    /// Where the table is, for error messages.
    pub path: ConfigPath,
    /// Sources only: the share this source joins (`shared = "<name>"`), read once for every
    /// pipeline of the process that names it ([`crate::shared`]).
    pub share: Option<ShareSpec>,
}

/// `shared = "<name>"` and `consumer_checkpoint = "<path>"` on a source table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareSpec {
    /// The share's name: sources with the same name in pipelines of one process are read once.
    pub name: String,
    /// This consumer's own checkpoint file. Default
    /// `.tributary/consumers/<pipeline>.<source id>.json`.
    pub checkpoint: Option<String>,
}

impl ComponentSpec {
    /// Parses the plugin's own keys into its config type. Use `#[serde(deny_unknown_fields)]`
    /// on `T` so that typos are reported.
    ///
    /// # Errors
    /// A [`ConfigError::Invalid`] naming the file, component and key.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        serde_path_to_error::deserialize(Value::Object(self.options.clone())).map_err(|e| {
            let key = e.path().to_string();
            let path = ConfigPath { key: if key == "." { String::new() } else { key }, ..self.path.clone() };
            ConfigError::invalid(path, e.into_inner().to_string())
        })
    }

    /// An error about `key` of this component.
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::invalid(ConfigPath { key: key.to_string(), ..self.path.clone() }, message)
    }
}

/// A whole pipeline configuration, checked for shape but not yet built.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// The file it came from (for messages).
    pub file: String,
    /// Runtime limits.
    pub pipeline: PipelineSettings,
    /// Retry policy for processors and sinks.
    pub retry: RetryPolicy,
    /// Sources by id.
    pub sources: BTreeMap<String, ComponentSpec>,
    /// Processors by id.
    pub processors: BTreeMap<String, ComponentSpec>,
    /// Sinks by id.
    pub sinks: BTreeMap<String, ComponentSpec>,
    /// Where rejected records go; `None` means the plugin default chosen by the registry.
    pub dead_letter: Option<ComponentSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    pipeline: PipelineSettings,
    #[serde(default)]
    retry: RetryPolicy,
    #[serde(default)]
    sources: BTreeMap<String, Map<String, Value>>,
    #[serde(default)]
    processors: BTreeMap<String, Map<String, Value>>,
    #[serde(default)]
    sinks: BTreeMap<String, Map<String, Value>>,
    dead_letter: Option<Map<String, Value>>,
}

/// Loads a configuration file with environment overrides and substitution.
///
/// # Errors
/// A missing or malformed file, a bad override, an unset `${VAR}` without default, or a table
/// of the wrong shape.
pub fn load(path: &Path) -> Result<PipelineConfig, ConfigError> {
    let file = path.display().to_string();
    if !path.is_file() {
        return Err(ConfigError::Load { file, message: "no such file".into() });
    }
    let figment = Figment::new().merge(Toml::file_exact(path)).merge(env_overrides());
    let value: Value =
        figment.extract().map_err(|e| ConfigError::Load { file: file.clone(), message: e.to_string() })?;
    from_value(&file, value)
}

/// Parses configuration text (a bundled config, a test), with environment overrides.
///
/// # Errors
/// As [`load`].
pub fn from_toml_str(name: &str, text: &str) -> Result<PipelineConfig, ConfigError> {
    let figment = Figment::new().merge(Toml::string(text)).merge(env_overrides());
    let value: Value =
        figment.extract().map_err(|e| ConfigError::Load { file: name.to_string(), message: e.to_string() })?;
    from_value(name, value)
}

fn env_overrides() -> Env {
    // Only nested keys (`TRIBUTARY_SECTION__...`): plain `TRIBUTARY_CONFIG` and friends are
    // settings of the binaries, not of the pipeline.
    Env::prefixed("TRIBUTARY_").filter(|key| key.as_str().contains("__")).split("__")
}

fn from_value(file: &str, mut value: Value) -> Result<PipelineConfig, ConfigError> {
    substitute(file, &mut value, &mut Vec::new())?;
    let raw: RawConfig = serde_path_to_error::deserialize(value).map_err(|e| {
        let segments: Vec<String> = e.path().iter().map(|s| s.to_string()).collect();
        ConfigError::invalid(path_of(file, &segments), e.into_inner().to_string())
    })?;
    let section = |name: &str, tables: BTreeMap<String, Map<String, Value>>, wants_inputs: bool| {
        tables
            .into_iter()
            .map(|(id, table)| {
                let path =
                    ConfigPath { file: file.into(), section: name.into(), component: id.clone(), key: String::new() };
                component(path, table, wants_inputs).map(|spec| (id, spec))
            })
            .collect::<Result<BTreeMap<_, _>, _>>()
    };
    let config = PipelineConfig {
        file: file.to_string(),
        sources: section("sources", raw.sources, false)?,
        processors: section("processors", raw.processors, true)?,
        sinks: section("sinks", raw.sinks, true)?,
        dead_letter: raw
            .dead_letter
            .map(|t| {
                let path = ConfigPath { file: file.into(), section: "dead_letter".into(), ..ConfigPath::default() };
                component(path, t, false)
            })
            .transpose()?,
        pipeline: raw.pipeline,
        retry: raw.retry,
    };
    check_limits(&config)?;
    Ok(config)
}

fn path_of(file: &str, segments: &[String]) -> ConfigPath {
    let mut path = ConfigPath { file: file.into(), ..ConfigPath::default() };
    let mut rest = segments.iter();
    if let Some(section) = rest.next() {
        path.section = section.clone();
        if matches!(section.as_str(), "sources" | "processors" | "sinks") {
            path.component = rest.next().cloned().unwrap_or_default();
        }
    }
    path.key = rest.cloned().collect::<Vec<_>>().join(".");
    path
}

fn component(
    path: ConfigPath,
    mut table: Map<String, Value>,
    wants_inputs: bool,
) -> Result<ComponentSpec, ConfigError> {
    let at = |key: &str| ConfigPath { key: key.into(), ..path.clone() };
    let kind = match table.remove("type") {
        Some(Value::String(kind)) => kind,
        Some(other) => return Err(ConfigError::invalid(at("type"), format!("expected a plugin name, found {other}"))),
        None => return Err(ConfigError::invalid(at("type"), "missing; every component names its plugin")),
    };
    let inputs = match table.remove("inputs") {
        None if wants_inputs => {
            return Err(ConfigError::invalid(at("inputs"), "missing; name the sources or processors to consume"));
        }
        None => Vec::new(),
        Some(_) if !wants_inputs => {
            return Err(ConfigError::invalid(at("inputs"), "not allowed here: this component has no inputs"));
        }
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(ConfigError::invalid(at("inputs"), format!("expected component ids, found {other}"))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(ConfigError::invalid(at("inputs"), format!("expected a list of ids, found {other}")));
        }
    };
    if wants_inputs && inputs.is_empty() {
        return Err(ConfigError::invalid(at("inputs"), "empty; name at least one source or processor"));
    }
    let text = |key: &str, table: &mut Map<String, Value>| match table.remove(key) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
        Some(other) => Err(ConfigError::invalid(at(key), format!("expected a non-empty string, found {other}"))),
    };
    let share = if path.section == "sources" {
        let name = text("shared", &mut table)?;
        let checkpoint = text("consumer_checkpoint", &mut table)?;
        match (name, checkpoint) {
            (Some(name), checkpoint) => Some(ShareSpec { name, checkpoint }),
            (None, Some(_)) => {
                return Err(ConfigError::invalid(at("consumer_checkpoint"), "only for a source with `shared`"));
            }
            (None, None) => None,
        }
    } else {
        None
    };
    Ok(ComponentSpec { kind, inputs, options: table, path, share })
}

fn check_limits(config: &PipelineConfig) -> Result<(), ConfigError> {
    let at = |section: &str, key: &str| ConfigPath {
        file: config.file.clone(),
        section: section.into(),
        key: key.into(),
        ..ConfigPath::default()
    };
    let p = &config.pipeline;
    if !(1..=100_000).contains(&p.batch_size) {
        return Err(ConfigError::invalid(
            at("pipeline", "batch_size"),
            format!("{} is outside 1..=100000", p.batch_size),
        ));
    }
    if !(1..=64).contains(&p.max_in_flight) {
        return Err(ConfigError::invalid(
            at("pipeline", "max_in_flight"),
            format!("{} is outside 1..=64", p.max_in_flight),
        ));
    }
    if p.max_record_bytes == 0 {
        return Err(ConfigError::invalid(at("pipeline", "max_record_bytes"), "must be at least 1"));
    }
    let r = &config.retry;
    if r.max_attempts == 0 {
        return Err(ConfigError::invalid(at("retry", "max_attempts"), "must be at least 1 (1 means no retries)"));
    }
    if r.initial_backoff_ms > r.max_backoff_ms {
        return Err(ConfigError::invalid(
            at("retry", "initial_backoff_ms"),
            format!("{} is above max_backoff_ms ({})", r.initial_backoff_ms, r.max_backoff_ms),
        ));
    }
    Ok(())
}

/// Deserializes a flag from a boolean or from text (`true`/`false`, `1`/`0`, `yes`/`no`, any
/// case), so that `dry_run = "${TEST_RUN:-false}"` takes the seeds' `TEST_RUN=True`.
///
/// # Errors
/// Any other value.
pub fn flag<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Text(String),
    }
    match Flag::deserialize(deserializer)? {
        Flag::Bool(b) => Ok(b),
        Flag::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" | "" => Ok(false),
            other => Err(serde::de::Error::custom(format!("expected true or false, found {other:?}"))),
        },
    }
}

/// Replaces `${VAR}` and `${VAR:-default}` in every string; `$$` stands for a literal `$`.
fn substitute(file: &str, value: &mut Value, at: &mut Vec<String>) -> Result<(), ConfigError> {
    match value {
        Value::String(s) if s.contains('$') => {
            *s = interpolate(s, |name| std::env::var(name).ok())
                .map_err(|message| ConfigError::invalid(path_of(file, at), message))?;
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                at.push(i.to_string());
                substitute(file, item, at)?;
                at.pop();
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                at.push(k.clone());
                substitute(file, v, at)?;
                at.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

/// Expands `${VAR}`, `${VAR:-default}` and `$$` in `text`, looking variables up with `lookup`.
/// An empty variable counts as unset for `:-`, as in a POSIX shell.
///
/// # Errors
/// An unset variable without default, or an unterminated `${`.
pub fn interpolate(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| format!("unterminated `${{` in {text:?}"))?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (expr, None),
            };
            let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!("`${{{expr}}}` is not a variable reference"));
            }
            match (lookup(name).filter(|v| !v.is_empty()), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "environment variable {name} is not set (write ${{{name}:-default}} for a default)"
                    ));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "RUN_ID" => Some("abc123".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn interpolation_forms() {
        assert_eq!(interpolate("s3://m/1/${RUN_ID}/model", env).unwrap(), "s3://m/1/abc123/model");
        assert_eq!(interpolate("${STREAM:-ride_predictions}", env).unwrap(), "ride_predictions");
        assert_eq!(interpolate("${EMPTY:-x}", env).unwrap(), "x");
        assert_eq!(interpolate("cost $$5 $x", env).unwrap(), "cost $5 $x");
        assert!(interpolate("${NOPE}", env).unwrap_err().contains("NOPE is not set"));
        assert!(interpolate("${RUN_ID", env).unwrap_err().contains("unterminated"));
        assert!(interpolate("${a b}", env).unwrap_err().contains("not a variable"));
    }
}
