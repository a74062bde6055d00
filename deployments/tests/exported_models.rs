//! Models exported the way data scientists export them (skl2onnx, onnxmltools; see
//! `tests/fixtures/models/export.py`) run by configuration through `tributary run`: predictions
//! equal Python onnxruntime's on the same inputs (max abs difference 1e-5) and the original
//! library's (1e-4 for regressors, the same labels for classifiers), on 600 events each, with bad
//! events in the mix dead-lettered naming the field and the model input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use common::{json_lines, root};
use serde_json::Value;

/// The exported models and their events, made once per test process.
fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tributary-exported-models-{}", std::process::id()));
        let python = root().join(".venv/bin/python");
        assert!(python.is_file(), "{} is missing: run `cargo xtask setup` (cargo xtask test does)", python.display());
        let status = Command::new(python)
            .arg(root().join("tests/fixtures/models/export.py"))
            .arg(&dir)
            .status()
            .expect("run export.py");
        assert!(status.success(), "tests/fixtures/models/export.py failed");
        dir
    })
}

/// What a run of one model gave: predictions by id, and dead letters.
struct Outcome {
    predictions: HashMap<u64, Value>,
    dead_letters: Vec<Value>,
}

/// Runs `tributary run` on the model's events with its mapping,
/// `tests/fixtures/models/<name>.toml` (the `[processors.model]` keys after `model`).
fn run(name: &str) -> Outcome {
    let mapping = std::fs::read_to_string(root().join(format!("tests/fixtures/models/{name}.toml"))).unwrap();
    let dir = fixtures();
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("pipeline.toml");
    let (events, model) = (dir.join(format!("{name}.events.jsonl")), dir.join(format!("{name}.onnx")));
    let (predictions, rejected) = (work.path().join("predictions.jsonl"), work.path().join("rejected.jsonl"));
    std::fs::write(
        &config,
        format!(
            "[sources.events]\ntype = \"file\"\npath = {events:?}\n\n\
             [processors.model]\ntype = \"onnx\"\ninputs = [\"events\"]\nmodel = {model:?}\nmodel_name = \"{name}\"\n\
             echo = [\"id\"]\n{mapping}\n\n\
             [sinks.predictions]\ntype = \"file\"\ninputs = [\"model\"]\npath = {predictions:?}\n\n\
             [dead_letter]\ntype = \"file\"\npath = {rejected:?}\n"
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["run", "--no-status", "--config"])
        .arg(&config)
        .current_dir(root())
        .output()
        .expect("start tributary run");
    assert!(output.status.success(), "tributary run failed: {}", String::from_utf8_lossy(&output.stderr));
    let predictions = json_lines(&predictions)
        .into_iter()
        .map(|envelope| {
            assert_eq!(envelope["model"], name);
            let prediction = envelope["prediction"].clone();
            (prediction["id"].as_u64().unwrap(), prediction)
        })
        .collect();
    Outcome { predictions, dead_letters: json_lines(&rejected) }
}

/// Every good event predicted, every bad one dead-lettered naming its field and the model input.
fn check_counts_and_dead_letters(name: &str, outcome: &Outcome, model_input: &str) -> Vec<Value> {
    let dir = fixtures();
    let expected = json_lines(&dir.join(format!("{name}.expected.jsonl")));
    assert_eq!(outcome.predictions.len(), expected.len(), "{name}: predictions");
    assert!(expected.len() >= 500);
    let bad = json_lines(&dir.join(format!("{name}.bad.jsonl")));
    assert_eq!(outcome.dead_letters.len(), bad.len(), "{name}: dead letters {:#?}", outcome.dead_letters);
    for case in &bad {
        let id = case["id"].as_u64().unwrap();
        let field = case["field"].as_str().unwrap();
        let letter = outcome
            .dead_letters
            .iter()
            .find(|l| serde_json::from_str::<Value>(l["payload"].as_str().unwrap()).unwrap()["id"] == id)
            .unwrap_or_else(|| panic!("{name}: event {id} was not dead-lettered"));
        let reason = letter["reason"].as_str().unwrap();
        assert!(reason.contains(&format!("`{field}")), "{name}: event {id}: {reason:?} should name `{field}`");
        assert!(reason.contains(&format!("model input {model_input}")), "{name}: event {id}: {reason:?}");
    }
    expected
}

fn assert_close(name: &str, id: u64, what: &str, got: &Value, want: &Value, tolerance: f64) {
    let (got, want) = (got.as_f64().unwrap_or(f64::NAN), want.as_f64().unwrap());
    assert!((got - want).abs() <= tolerance, "{name}: event {id}: {what} {got} against {want} (tolerance {tolerance})");
}

/// Regressor predictions against onnxruntime's (1e-5) and the library's (1e-4, plus 1e-6 of the
/// value: the exported graphs compute in 32-bit floats, whose spacing near 1,000 is 6e-5, while
/// the libraries compute in 64 bits).
fn check_regressor(name: &str, outcome: &Outcome, model_input: &str, field: &str) {
    for expected in check_counts_and_dead_letters(name, outcome, model_input) {
        let id = expected["id"].as_u64().unwrap();
        let got = &outcome.predictions[&id][field];
        assert_close(name, id, "vs onnxruntime", got, &expected["ort"][field], 1e-5);
        let library = &expected["library"][field];
        let tolerance = 1e-4 + 1e-6 * library.as_f64().unwrap().abs();
        assert_close(name, id, "vs the library", got, library, tolerance);
    }
}

/// Classifier labels identical to onnxruntime's and the library's; probabilities within 1e-5
/// of onnxruntime's; `probabilities` is an object of class -> probability.
fn check_classifier(name: &str, outcome: &Outcome, probability_of: Option<&str>) {
    for expected in check_counts_and_dead_letters(name, outcome, "X") {
        let id = expected["id"].as_u64().unwrap();
        let got = &outcome.predictions[&id];
        assert_eq!(got["label"], expected["ort"]["label"], "{name}: event {id}: label vs onnxruntime");
        assert_eq!(got["label"], expected["library"]["label"], "{name}: event {id}: label vs the library");
        let want = expected["ort"]["probabilities"].as_object().unwrap();
        let probabilities = got["probabilities"].as_object().unwrap_or_else(|| panic!("{name}: {got}"));
        assert_eq!(probabilities.len(), want.len(), "{name}: {got}");
        for (class, p) in want {
            assert_close(name, id, &format!("P({class})"), &probabilities[class], p, 1e-5);
        }
        let label = got["label"].as_str().map_or_else(|| got["label"].to_string(), str::to_string);
        assert_close(name, id, "probability of the label", &got["probability"], &want[&label], 1e-5);
        if let Some(class) = probability_of {
            assert_close(name, id, "P(index 1)", &got["p_positive"], &want[class], 1e-5);
        }
    }
}

#[test]
fn seed_003_bike_regression_with_a_matrix_input_from_four_fields() {
    check_regressor("bike_linear", &run("bike_linear"), "float_input", "variable");
}

#[test]
fn seeds_dict_vectorizer_random_forest_pipeline_from_entries() {
    check_regressor("rides_forest", &run("rides_forest"), "input", "duration");
}

#[test]
fn lightgbm_regressor_from_an_array_field() {
    check_regressor("lightgbm_regressor", &run("lightgbm_regressor"), "input", "y");
}

#[test]
fn one_named_input_per_column_string_int64_and_float() {
    let outcome = run("fare_columns");
    // Each bad event names its own field; the model input is that field's column.
    for input in ["passengers", "distance", "vendor"] {
        assert!(
            outcome
                .dead_letters
                .iter()
                .any(|l| l["reason"].as_str().unwrap().contains(&format!("(model input {input})"))),
            "no rejection names model input {input}: {:#?}",
            outcome.dead_letters
        );
    }
    let expected = json_lines(&fixtures().join("fare_columns.expected.jsonl"));
    assert_eq!(outcome.predictions.len(), expected.len());
    for expected in expected {
        let id = expected["id"].as_u64().unwrap();
        let got = &outcome.predictions[&id]["fare"];
        assert_close("fare_columns", id, "vs onnxruntime", got, &expected["ort"]["fare"], 1e-5);
        assert_close("fare_columns", id, "vs the library", got, &expected["library"]["fare"], 1e-4);
    }
}

#[test]
fn binary_classifier_with_zipmap_gives_label_and_probabilities_by_class() {
    check_classifier("fraud_zipmap", &run("fraud_zipmap"), Some("1"));
}

/// The `row` output (an array in class order) as an object of class -> probability.
fn row_as_probabilities(outcome: Outcome, classes: &[&str]) -> Outcome {
    let predictions = outcome
        .predictions
        .into_iter()
        .map(|(id, mut p)| {
            let row = p["row"].as_array().unwrap().clone();
            assert_eq!(row.len(), classes.len(), "{p}");
            p["probabilities"] =
                classes.iter().map(|c| c.to_string()).zip(row).collect::<serde_json::Map<_, _>>().into();
            (id, p)
        })
        .collect();
    Outcome { predictions, dead_letters: outcome.dead_letters }
}

#[test]
fn binary_classifier_without_zipmap_gives_the_probability_row() {
    check_classifier("fraud_tensor", &row_as_probabilities(run("fraud_tensor"), &["0", "1"]), Some("1"));
}

#[test]
fn three_class_string_labels_with_zipmap() {
    check_classifier("tier_zipmap", &run("tier_zipmap"), None);
}

#[test]
fn three_class_string_labels_without_zipmap() {
    // skl2onnx orders the columns as `classes_` (sorted): high, low, mid.
    check_classifier("tier_tensor", &row_as_probabilities(run("tier_tensor"), &["high", "low", "mid"]), None);
}

const FRAUD_FEATURES: &str =
    "[processors.model.features]\nX = { fields = [\"amount\", \"age\", \"score\"], type = \"float\" }";

/// `tributary validate` names the key when a model's inputs or outputs cannot be mapped.
#[test]
fn unmappable_models_fail_validate_naming_the_key() {
    let dir = fixtures();
    let cases = [
        (
            "bike_linear",
            "outputs = { y = \"variable\" }\n[processors.model.features]\nfloat_input = { fields = [\"a\", \"b\", \"c\"], type = \"float\" }",
            "features.float_input.fields",
        ),
        (
            "bike_linear",
            "outputs = { y = \"variable\" }\n[processors.model.features]\nfloat_input = { fields = [\"a\", \"b\", \"c\", \"d\"], type = \"double\" }",
            "features.float_input.type",
        ),
        (
            "bike_linear",
            "outputs = { y = \"nope\" }\n[processors.model.features]\nfloat_input = { field = \"x\", type = \"float\" }",
            "outputs.y",
        ),
        (
            "fraud_tensor",
            &format!("outputs = {{ p = {{ output = \"probabilities\", index = 2 }} }}\n{FRAUD_FEATURES}"),
            "outputs.p.index",
        ),
        (
            "rides_forest",
            "outputs = { y = \"variable\" }\n[processors.model.features]\ninput = { field = \"ride\", type = \"float\" }",
            "features.input",
        ),
        (
            "rides_forest",
            "outputs = { y = \"variable\" }\n[processors.model.features]\ninput = { entries = { PU_DOO = { field = \"a\" } }, type = \"float\" }",
            "features.input.entries.PU_DOO",
        ),
    ];
    for (name, mapping, key) in cases {
        let work = tempfile::tempdir().unwrap();
        let config = work.path().join("pipeline.toml");
        let model = dir.join(format!("{name}.onnx"));
        std::fs::write(
            &config,
            format!(
                "[sources.events]\ntype = \"stdin\"\n[processors.model]\ntype = \"onnx\"\ninputs = [\"events\"]\n\
                 model = {model:?}\nmodel_name = \"m\"\n{mapping}\n[sinks.out]\ntype = \"stdout\"\ninputs = [\"model\"]\n"
            ),
        )
        .unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_tributary"))
            .args(["validate", "--config"])
            .arg(&config)
            .current_dir(root())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name} {mapping}: validate passed");
        assert!(stderr.contains(key), "{name}: {stderr} should name {key}");
        assert!(stderr.contains("processors.model"), "{stderr}");
    }
}

/// `tributary inspect` prints a snippet that, with its placeholders filled, validates.
#[test]
fn inspect_shows_the_signature_and_a_snippet_for_a_dict_vectorizer_pipeline() {
    let model = fixtures().join("rides_forest.onnx");
    let output = Command::new(env!("CARGO_BIN_EXE_tributary")).arg("inspect").arg(&model).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report = String::from_utf8(output.stdout).unwrap();
    assert!(report.contains("producer: skl2onnx"), "{report}");
    assert!(report.contains("input: map(string, float) into a DictVectorizer of"), "{report}");
    assert!(report.contains("variable: float [-1, 1]"), "{report}");
    let snippet = &report[report.find("[processors.").unwrap()..];
    assert!(
        snippet
            .contains("entries = { PU_DO = { field = \"<PU_DO>\" }, trip_distance = { field = \"<trip_distance>\" } }"),
        "{snippet}"
    );
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("pipeline.toml");
    let filled = snippet
        .replace("<source id>", "events")
        .replace("<PU_DO>", "ride.PU_DO")
        .replace("<trip_distance>", "ride.trip_distance");
    std::fs::write(
        &config,
        format!("[sources.events]\ntype = \"stdin\"\n{filled}\n[sinks.out]\ntype = \"stdout\"\ninputs = [\"rides_forest\"]\n"),
    )
    .unwrap();
    let validate =
        Command::new(env!("CARGO_BIN_EXE_tributary")).args(["validate", "--config"]).arg(&config).output().unwrap();
    assert!(validate.status.success(), "{filled}\n{}", String::from_utf8_lossy(&validate.stderr));
}

/// The model's good events as one Parquet file, one column per event field (`trip.distance` in
/// column `trip_distance`), plus a copy of every 25th with one field null, which must be
/// dead-lettered naming it (a field `mapping` reads). Returns the `[sources.events.event]` table and the nulled
/// (id, field) pairs.
fn events_as_parquet(name: &str, mapping: &str, path: &Path) -> (String, Vec<(u64, String)>) {
    use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
    let expected: Vec<u64> = json_lines(&fixtures().join(format!("{name}.expected.jsonl")))
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    let flat = |event: &Value| {
        let mut leaves = std::collections::BTreeMap::new();
        let mut stack = vec![(String::new(), event.clone())];
        while let Some((at, value)) = stack.pop() {
            match value {
                Value::Object(map) => {
                    stack.extend(map.into_iter().map(|(k, v)| (if at.is_empty() { k } else { format!("{at}.{k}") }, v)))
                }
                leaf => {
                    leaves.insert(at, leaf);
                }
            }
        }
        leaves
    };
    let mut rows: Vec<_> = json_lines(&fixtures().join(format!("{name}.events.jsonl")))
        .iter()
        .filter(|e| expected.contains(&e["id"].as_u64().unwrap()))
        .map(flat)
        .collect();
    // The fields the mapping reads.
    let paths: Vec<String> = rows[0]
        .keys()
        .filter(|p| mapping.contains(&format!("\"{p}\"")) || mapping.contains(&format!("{{{p}}}")))
        .cloned()
        .collect();
    let mut nulled = Vec::new();
    for k in (0..rows.len()).step_by(25) {
        let mut row = rows[k].clone();
        let (id, field) = (20_000 + k as u64, paths[k % paths.len()].clone());
        row.insert("id".into(), Value::from(id));
        row.insert(field.clone(), Value::Null);
        rows.push(row);
        nulled.push((id, field));
    }
    let mut columns: Vec<(String, ArrayRef)> = Vec::new();
    let mut event = String::new();
    for path in rows[0].keys() {
        let column = path.replace('.', "_");
        event.push_str(&format!("{path} = \"{{{column}}}\"\n"));
        let values: Vec<&Value> = rows.iter().map(|r| &r[path]).collect();
        let array: ArrayRef = if values.iter().all(|v| v.is_null() || v.is_i64()) {
            Arc::new(values.iter().map(|v| v.as_i64()).collect::<Int64Array>())
        } else if values.iter().all(|v| v.is_null() || v.is_number()) {
            Arc::new(values.iter().map(|v| v.as_f64()).collect::<Float64Array>())
        } else {
            Arc::new(values.iter().map(|v| v.as_str()).collect::<StringArray>())
        };
        columns.push((column, array));
    }
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    (event, nulled)
}

/// Runs the model's mapping (the same `tests/fixtures/models/<name>.toml` as on events) as a
/// batch job on its events written as Parquet: the predictions (by id, one JSON object of the
/// output columns), the dead letters, and the rows given a null field.
fn run_on_parquet(name: &str) -> FileRun {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    let mapping = std::fs::read_to_string(root().join(format!("tests/fixtures/models/{name}.toml"))).unwrap();
    let work = tempfile::tempdir().unwrap();
    let (input, output) = (work.path().join("in"), work.path().join("out"));
    std::fs::create_dir_all(&input).unwrap();
    let (event, nulled) = events_as_parquet(name, &mapping, &input.join("events.parquet"));
    let (config, rejected) = (work.path().join("batch.toml"), work.path().join("rejected.jsonl"));
    let model = fixtures().join(format!("{name}.onnx"));
    std::fs::write(
        &config,
        format!(
            "[sources.events]\ntype = \"parquet\"\npath = {input:?}\n\n\
             [processors.model]\ntype = \"onnx\"\ninputs = [\"events\"]\nmodel = {model:?}\nmodel_name = \"{name}\"\n\
             echo = [\"id\"]\n{mapping}\n\n\
             [sinks.predictions]\ntype = \"parquet\"\ninputs = [\"model\"]\npath = {output:?}\ncolumns = [\"id\"]\n\n\
             [dead_letter]\ntype = \"file\"\npath = {rejected:?}\n\n\
             [sources.events.event]\n{event}"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["run", "--config"])
        .arg(&config)
        .current_dir(root())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{name}: tributary run failed: {}", String::from_utf8_lossy(&out.stderr));
    let file = File::open(output.join("events.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    let mut predictions = HashMap::new();
    for batch in reader.map(Result::unwrap) {
        let ids = batch.column_by_name("id").unwrap().as_primitive::<Int64Type>().clone();
        let json = arrow_json_rows(&batch);
        for (i, mut row) in json.into_iter().enumerate() {
            assert_eq!(row["model"], name);
            row.as_object_mut().unwrap().remove("id");
            predictions.insert(ids.value(i) as u64, row);
        }
    }
    FileRun { predictions, dead_letters: json_lines(&rejected), nulled }
}

/// What a batch job on a model's events gave (see [`run_on_parquet`]).
struct FileRun {
    predictions: HashMap<u64, Value>,
    dead_letters: Vec<Value>,
    nulled: Vec<(u64, String)>,
}

/// Each row of `batch` as a JSON object (numbers, or text parsed as JSON when it is an object).
fn arrow_json_rows(batch: &arrow_array::RecordBatch) -> Vec<Value> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};
    let mut rows = vec![serde_json::Map::new(); batch.num_rows()];
    for (field, array) in batch.schema().fields().iter().zip(batch.columns()) {
        for (i, row) in rows.iter_mut().enumerate() {
            let value = if let Some(ints) = array.as_primitive_opt::<Int64Type>() {
                Value::from(ints.value(i))
            } else if let Some(floats) = array.as_primitive_opt::<Float64Type>() {
                Value::from(floats.value(i))
            } else if let Some(texts) = array.as_string_opt::<i32>() {
                let text = texts.value(i);
                serde_json::from_str::<Value>(text).ok().filter(Value::is_object).unwrap_or_else(|| text.into())
            } else {
                panic!("unexpected output column {field}");
            };
            row.insert(field.name().clone(), value);
        }
    }
    rows.into_iter().map(Value::Object).collect()
}

/// The same mapping, the same model and the same answers on Parquet files as on events: a
/// DictVectorizer pipeline from `entries` with a template, an `[N, 4]` input from four fields,
/// one named input per column (string, int64, float), a ZipMap classifier (label, probabilities
/// as JSON text, picks); a null field dead-letters its row naming the field and model input.
#[test]
fn exported_models_score_parquet_files_with_the_same_mapping() {
    for (name, input) in
        [("rides_forest", "input"), ("bike_linear", "float_input"), ("fare_columns", ""), ("fraud_zipmap", "X")]
    {
        let FileRun { predictions, dead_letters, nulled } = run_on_parquet(name);
        let expected = json_lines(&fixtures().join(format!("{name}.expected.jsonl")));
        assert_eq!(predictions.len(), expected.len(), "{name}: predictions");
        assert_eq!(dead_letters.len(), nulled.len(), "{name}: dead letters {dead_letters:#?}");
        for (id, field) in &nulled {
            let letter = dead_letters
                .iter()
                .find(|l| l["payload"].as_str().unwrap().contains(&format!("\"id\":{id}")))
                .unwrap_or_else(|| panic!("{name}: row {id} was not dead-lettered: {dead_letters:#?}"));
            let reason = letter["reason"].as_str().unwrap();
            assert!(reason.contains(&format!("`{field}` is missing")), "{name}: {reason}");
            assert!(reason.contains(&format!("(model input {input}")), "{name}: {reason}");
        }
        for want in expected {
            let id = want["id"].as_u64().unwrap();
            let got = &predictions[&id];
            for (field, value) in want["ort"].as_object().unwrap() {
                match value {
                    Value::Object(by_class) => {
                        for (class, p) in by_class {
                            assert_close(name, id, &format!("{field}[{class}]"), &got[field][class], p, 1e-5);
                        }
                    }
                    Value::Number(_) if !got[field].is_number() => panic!("{name}: {id}: {field} {got}"),
                    Value::Number(_) => assert_close(name, id, field, &got[field], value, 1e-5),
                    other => assert_eq!(&got[field], other, "{name}: {id}: {field}"),
                }
            }
        }
    }
}
