//! The JSON Schema of a whole pipeline config (`tributary schema`), assembled from the
//! registered plugins' typed config structs (derived with schemars from their serde attributes
//! and doc comments), so that editors with TOML schema support (taplo, Even Better TOML)
//! complete keys, show what each means, and flag unknown keys and wrong types.
//!
//! Each component table is checked against its plugin's config by its `type`
//! (`if type = "file" then <file's config>`), with the keys the framework reads itself added:
//! `type`, `inputs` (processors and sinks), `shared` and `consumer_checkpoint` (sources).

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Map, Value, json};

use crate::config::PipelineSettings;
use crate::retry::RetryPolicy;

/// A plugin's config schema: `<Config as JsonSchema>::json_schema`.
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// The config of a plugin registered without a typed one (tests' and embedders' closures): any
/// table.
pub struct Untyped;

impl JsonSchema for Untyped {
    fn schema_name() -> Cow<'static, str> {
        "Untyped".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "object" })
    }
}

/// The schema of a [`crate::config::flag`] field: a boolean, or text such as `"${TEST_RUN:-false}"`.
pub fn flag(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "anyOf": [{ "type": "boolean" }, { "type": "string" }] })
}

/// The plugins of each section, by name.
pub(crate) struct Plugins<'a> {
    pub sources: &'a BTreeMap<&'static str, SchemaFn>,
    pub processors: &'a BTreeMap<&'static str, SchemaFn>,
    pub sinks: &'a BTreeMap<&'static str, SchemaFn>,
}

/// The whole config's schema (draft 7, which the TOML editors read).
pub(crate) fn config_schema(plugins: &Plugins<'_>) -> Value {
    let mut generator = SchemaSettings::draft07().into_generator();
    let pipeline = generator.subschema_for::<PipelineSettings>().to_value();
    let retry = generator.subschema_for::<RetryPolicy>().to_value();
    let mut variants = Map::new();
    let text = json!({ "type": "string", "minLength": 1 });
    let inputs = json!({
        "type": "array", "items": { "type": "string" }, "minItems": 1,
        "description": "Ids of the sources or processors this component consumes."
    });
    let source_keys = [
        (
            "shared",
            with_description(
                &text,
                "The share this source joins: sources with the same name in pipelines of one process are read once.",
            ),
        ),
        ("consumer_checkpoint", with_description(&text, "This consumer's own checkpoint file (only with `shared`).")),
    ];
    let sources = section(&mut generator, &mut variants, "source", plugins.sources, &source_keys, &[]);
    let inputs_key = [("inputs", inputs)];
    let processors = section(&mut generator, &mut variants, "processor", plugins.processors, &inputs_key, &["inputs"]);
    let sinks = section(&mut generator, &mut variants, "sink", plugins.sinks, &inputs_key, &["inputs"]);
    let dead_letter = section(&mut generator, &mut variants, "dead_letter", plugins.sinks, &[], &[]);
    let mut definitions: Map<String, Value> = generator.take_definitions(true);
    definitions.extend(variants);
    let tables = |each: Value, what: &str| json!({ "type": "object", "additionalProperties": each, "description": format!("{what} by id.") });
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "tributary pipeline config",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "pipeline": pipeline,
            "retry": retry,
            "sources": tables(sources, "Sources"),
            "processors": tables(processors, "Processors"),
            "sinks": tables(sinks, "Sinks"),
            "dead_letter": with_description(&dead_letter, "Where rejected records go (a sink plugin, without `inputs`)."),
        },
        "definitions": definitions,
    })
}

fn with_description(schema: &Value, description: &str) -> Value {
    let mut schema = schema.clone();
    schema["description"] = Value::from(description);
    schema
}

/// One component table of `section`: a `type` among the plugins', then that plugin's keys plus
/// `common` (required: `type` and `required`). Each plugin's schema goes into `variants` as
/// `<section>.<name>`.
fn section(
    generator: &mut SchemaGenerator,
    variants: &mut Map<String, Value>,
    section: &str,
    plugins: &BTreeMap<&'static str, SchemaFn>,
    common: &[(&str, Value)],
    required: &[&str],
) -> Value {
    let mut branches = Vec::new();
    for (name, schema) in plugins {
        let mut variant = schema(generator).to_value();
        if let Some(object) = variant.as_object_mut() {
            object.remove("$schema");
            object.insert("title".into(), Value::from(format!("{section} `{name}`")));
            let properties = object.entry("properties").or_insert_with(|| json!({}));
            properties["type"] = json!({ "const": name });
            for (key, value) in common {
                properties[*key] = value.clone();
            }
            let names = object.entry("required").or_insert_with(|| json!([]));
            if let Some(names) = names.as_array_mut() {
                names.extend(std::iter::once("type").chain(required.iter().copied()).map(Value::from));
            }
        }
        let id = format!("{section}.{name}");
        variants.insert(id.clone(), variant);
        branches.push(json!({
            "if": { "properties": { "type": { "const": name } }, "required": ["type"] },
            "then": { "$ref": format!("#/definitions/{id}") },
        }));
    }
    let names: Vec<&str> = plugins.keys().copied().collect();
    json!({
        "type": "object",
        "required": ["type"],
        "properties": { "type": { "enum": names, "description": format!("The {} plugin.", section.replace('_', " ")) } },
        "allOf": branches,
    })
}
