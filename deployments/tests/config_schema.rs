//! `tributary schema`: the JSON Schema editors read, checked the way they use it (the
//! `check-jsonschema` validator on the TOML files themselves), and kept in step with
//! `docs/configuration.md`'s key tables.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use common::root;
use serde_json::Value;

/// `tributary schema`, parsed, and written to a file for the validator.
fn schema() -> (Value, tempfile::TempDir, PathBuf) {
    let out = Command::new(env!("CARGO_BIN_EXE_tributary")).arg("schema").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tributary.schema.json");
    std::fs::write(&path, &out.stdout).unwrap();
    (serde_json::from_slice(&out.stdout).unwrap(), dir, path)
}

/// `check-jsonschema` (pinned in requirements.txt) on TOML files: (passed, its report).
fn check(schema: &std::path::Path, files: &[PathBuf]) -> (bool, String) {
    let validator = root().join(".venv/bin/check-jsonschema");
    assert!(validator.is_file(), "{} is missing: run `cargo xtask setup`", validator.display());
    let out = Command::new(validator).arg("--schemafile").arg(schema).args(files).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn every_example_config_satisfies_the_schema_and_mistakes_are_flagged_by_key() {
    let (_, _dir, path) = schema();
    let mut configs: Vec<PathBuf> = std::fs::read_dir(root().join("deployments/config"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    configs.sort();
    assert!(configs.len() >= 10, "{configs:?}");
    let (ok, report) = check(&path, &configs);
    assert!(ok, "{report}");

    let work = tempfile::tempdir().unwrap();
    let bad = work.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[pipeline]\nbatch_size = \"10\"\n\n\
         [sources.rides]\ntype = \"file\"\npath = \"rides.jsonl\"\nformt = \"json_lines\"\n\n\
         [processors.duration]\ntype = \"ride_duration\"\ninputs = [\"rides\"]\nmodel = \"m.onnx\"\n\n\
         [processors.other]\ntype = \"no_such_plugin\"\ninputs = [\"rides\"]\n\n\
         [sinks.out]\ntype = \"kinesis\"\ninputs = [\"duration\"]\nstream = \"s\"\ndry_run = \"${TEST_RUN:-false}\"\nconcurrency = \"four\"\n\n\
         [sinks.no_inputs]\ntype = \"stdout\"\n",
    )
    .unwrap();
    let (ok, report) = check(&path, &[bad]);
    assert!(!ok, "{report}");
    for flagged in
        ["$.pipeline.batch_size", "'formt' was unexpected", "$.processors.other.type", "$.sinks.out.concurrency"]
    {
        assert!(report.contains(flagged), "{flagged} not flagged: {report}");
    }
    assert!(report.contains("'inputs' is a required property"), "{report}");
    assert!(!report.contains("dry_run"), "a `${{VAR}}` flag is text the loader reads: {report}");
}

/// The part of `docs/configuration.md` about plugin `name` of `section` ("Sources", ...): its
/// `###` section, and for sinks its row in the summary table.
fn documented(docs: &str, section: &str, name: &str) -> String {
    let part = docs.split("\n## ").find(|p| p.starts_with(section)).unwrap_or_default();
    let mut text = String::new();
    for sub in part.split("\n### ").skip(1) {
        let heading = sub.lines().next().unwrap_or_default();
        if heading.split(", ").any(|h| h == format!("`{name}`")) {
            text.push_str(sub);
        }
    }
    let row = part
        .lines()
        .find(|l| l.starts_with('|') && l.split('|').nth(1).is_some_and(|c| c.contains(&format!("`{name}`"))));
    text.push_str(row.unwrap_or_default());
    text
}

/// The keys of the `| key | default | meaning |` table rows in `text` (first path segment).
fn table_keys(text: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut in_key_table = false;
    for line in text.lines() {
        if line.starts_with("| key |") {
            in_key_table = true;
        } else if !line.starts_with('|') {
            in_key_table = false;
        } else if in_key_table && !line.starts_with("|---") {
            let cell = line.split('|').nth(1).unwrap_or_default();
            for key in cell.split(',').map(|k| k.trim().trim_matches('`')) {
                keys.insert(key.split('.').next().unwrap_or_default().to_string());
            }
        }
    }
    keys
}

#[test]
fn the_configuration_docs_name_every_key_of_every_plugin_and_no_other() {
    let (schema, _dir, _) = schema();
    let docs = std::fs::read_to_string(root().join("docs/configuration.md")).unwrap();
    let framework_keys = ["type", "inputs", "shared", "consumer_checkpoint"];
    let mut checked = 0;
    for (prefix, section) in [("source.", "Sources"), ("processor.", "Processors"), ("sink.", "Sinks")] {
        for (id, plugin) in schema["definitions"].as_object().unwrap() {
            let Some(name) = id.strip_prefix(prefix) else { continue };
            let text = documented(&docs, section, name);
            assert!(!text.is_empty(), "docs/configuration.md does not document the {section} plugin `{name}`");
            let keys: BTreeSet<String> = plugin["properties"]
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| !framework_keys.contains(&k.as_str()))
                .cloned()
                .collect();
            for key in &keys {
                assert!(
                    text.contains(&format!("`{key}`")) || text.contains(&format!("`{key}.")),
                    "docs/configuration.md ({section}, `{name}`) does not describe key `{key}`"
                );
            }
            for key in table_keys(&text) {
                assert!(
                    keys.contains(&key),
                    "docs/configuration.md ({section}, `{name}`) lists `{key}`, which the plugin does not take"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} plugins checked");
    for (definition, table) in [("PipelineSettings", "[pipeline]"), ("RetryPolicy", "[retry]")] {
        let text = documented(&docs, "Shape", table);
        let keys: BTreeSet<String> =
            schema["definitions"][definition]["properties"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(table_keys(&text), keys, "docs/configuration.md's `{table}` table");
    }
}
