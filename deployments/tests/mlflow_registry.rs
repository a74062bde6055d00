//! Models from a real MLflow tracking server (started by `cargo xtask services up`, artifacts on
//! moto's S3), logged and registered by MLflow's own Python client
//! (`tests/fixtures/mlflow/register.py`): every URI form resolves and predicts as onnxruntime
//! does, with the registry's version in the envelopes; a scikit-learn pickle fails with the way
//! out, and `processors/models/export_to_mlflow.py` is that way; an alias moved mid-stream
//! switches versions at a batch boundary; a broken new version leaves the old one serving. A
//! second server, with MLflow's basic auth, is started by its test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{free_port, json_lines, required, root, scrape, unique};
use serde_json::Value;

const BIKES_MAPPING: &str = "outputs = { count = \"variable\" }\n[processors.model.features]\n\
    float_input = { fields = [\"features.t1\", \"features.t2\", \"features.hum\", \"features.weather_code\"], type = \"float\" }\n";

/// The registered models: once per test run (nextest runs each test in its own process, so
/// they share one registration, under a file lock, keyed by `NEXTEST_RUN_ID`), or once per
/// process under `cargo test`. The tests that move aliases each move their own.
fn registry() -> &'static (PathBuf, Value) {
    static REGISTRY: OnceLock<(PathBuf, Value)> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        required("MLFLOW_TRACKING_URI");
        let run = std::env::var("NEXTEST_RUN_ID").unwrap_or_else(|_| unique("run"));
        let dir = std::env::temp_dir().join(format!("tributary-mlflow-{run}"));
        std::fs::create_dir_all(&dir).unwrap();
        let lock = std::fs::File::create(dir.join("lock")).unwrap();
        lock.lock().unwrap();
        if !dir.join("registry.json").exists() {
            let prefix = format!("{}_", unique("t").replace('-', "_"));
            let status = Command::new(root().join(".venv/bin/python"))
                .arg(root().join("tests/fixtures/mlflow/register.py"))
                .args([&prefix, dir.to_str().unwrap()])
                .stdout(Stdio::null())
                .status()
                .expect("run register.py (cargo xtask setup installs the venv)");
            assert!(status.success(), "tests/fixtures/mlflow/register.py failed");
        }
        let registry = serde_json::from_str(&std::fs::read_to_string(dir.join("registry.json")).unwrap()).unwrap();
        (dir, registry)
    })
}

/// A pipeline from `source` (a `[sources.events]` body) through `model` to a file.
fn config(work: &Path, source: &str, model: &str, extra: &str, mapping: &str) -> PathBuf {
    let path = work.join("pipeline.toml");
    let (out, rejected) = (work.join("out.jsonl"), work.join("rejected.jsonl"));
    std::fs::write(
        &path,
        format!(
            "[pipeline]\nbatch_size = 20\n\n[sources.events]\n{source}\n\n\
             [processors.model]\ntype = \"onnx\"\ninputs = [\"events\"]\nmodel = {model:?}\nmodel_name = \"bikes\"\n\
             echo = [\"id\"]\n{extra}\n{mapping}\n\
             [sinks.out]\ntype = \"file\"\ninputs = [\"model\"]\npath = {out:?}\n\n\
             [dead_letter]\ntype = \"file\"\npath = {rejected:?}\n"
        ),
    )
    .unwrap();
    path
}

fn tributary(args: &[&str], config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tributary")).args(args).arg(config).current_dir(root()).output().unwrap()
}

/// `tributary inspect <uri>`.
fn inspect(uri: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tributary")).args(["inspect", uri]).current_dir(root()).output().unwrap()
}

/// Runs `model` over the fixture events; the envelopes by id.
fn predict(model: &str) -> HashMap<u64, Value> {
    let (dir, _) = registry();
    let work = tempfile::tempdir().unwrap();
    let source = format!("type = \"file\"\npath = {:?}", dir.join("events.jsonl"));
    let config = config(work.path(), &source, model, "", BIKES_MAPPING);
    let output = tributary(&["run", "--no-status", "--config"], &config);
    assert!(output.status.success(), "{model}: {}", String::from_utf8_lossy(&output.stderr));
    assert!(json_lines(&work.path().join("rejected.jsonl")).is_empty());
    json_lines(&work.path().join("out.jsonl"))
        .into_iter()
        .map(|e| (e["prediction"]["id"].as_u64().unwrap(), e))
        .collect()
}

/// Every event predicted, by `version`, as onnxruntime predicts with `expected`'s model.
fn check(model: &str, version: &str, expected: &str) {
    let (dir, registry) = registry();
    let envelopes = predict(model);
    let events = json_lines(&dir.join("events.jsonl"));
    assert_eq!(envelopes.len(), events.len(), "{model}");
    for (id, envelope) in &envelopes {
        assert_eq!(envelope["version"], version, "{model}: {envelope}");
        let want = registry["expected"][expected][*id as usize].as_f64().unwrap();
        let got = envelope["prediction"]["count"].as_f64().unwrap();
        assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "{model}: event {id}: {got} against {want}");
    }
}

#[test]
fn each_registry_uri_form_resolves_and_predicts_with_its_version() {
    let (_, r) = registry();
    let bikes = r["bikes"].as_str().unwrap();
    check(&format!("models:/{bikes}@champion"), "1", "1");
    check(&format!("models:/{bikes}/2"), "2", "2");
    check(&format!("models:/{bikes}/latest"), "2", "2");
}

#[test]
fn run_uris_resolve_in_both_mlflow_layouts() {
    let (_, r) = registry();
    // MLflow 3: `runs:/` names a logged model whose source run is that run.
    let run = r["runs"]["1"].as_str().unwrap();
    check(&format!("runs:/{run}/model"), run, "1");
    // MLflow 2: the model folder is an artifact of the run.
    let legacy = r["legacy_run"].as_str().unwrap();
    check(&format!("runs:/{legacy}/model"), legacy, "legacy");
}

#[test]
fn inspect_shows_what_a_registry_uri_resolves_to() {
    let (_, r) = registry();
    let bikes = r["bikes"].as_str().unwrap();
    let output = inspect(&format!("models:/{bikes}@champion"));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(text.contains(&format!("resolved: models:/{bikes}@champion -> version 1 at mlflow-artifacts:/")), "{text}");
    assert!(text.contains("version (the envelope's default): 1\n"), "{text}");
    assert!(text.contains("MLflow signature inputs") && text.contains("tensor float32 [-1, 4]"), "{text}");
    assert!(text.contains(&format!("[processors.{bikes}]")), "{text}");
}

#[test]
fn a_scikit_learn_pickle_fails_validate_with_the_migration_command() {
    let (_, r) = registry();
    let work = tempfile::tempdir().unwrap();
    let uri = format!("models:/{}/1", r["rides_sklearn"].as_str().unwrap());
    let config = config(work.path(), "type = \"stdin\"", &uri, "", BIKES_MAPPING);
    let output = tributary(&["validate", "--config"], &config);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("processors.model") && stderr.contains("model"), "{stderr}");
    assert!(stderr.contains("Python pickle"), "{stderr}");
    assert!(stderr.contains(&format!("processors/models/export_to_mlflow.py {uri}")), "{stderr}");
}

#[test]
fn the_export_script_migrates_the_seeds_pipeline_to_a_new_onnx_version() {
    let (dir, r) = registry();
    let name = r["rides_sklearn"].as_str().unwrap();
    let output = Command::new(root().join(".venv/bin/python"))
        .arg(root().join("processors/models/export_to_mlflow.py"))
        .args([&format!("models:/{name}/1"), "--alias", "onnx"])
        .current_dir(root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains(&format!("registered {name} version 2")), "{stdout}");

    let work = tempfile::tempdir().unwrap();
    let source = format!("type = \"file\"\npath = {:?}", dir.join("rides.jsonl"));
    let mapping = "outputs = { count = \"variable\" }\n[processors.model.features]\n\
        input = { entries = { PU_DO = { field = \"ride.PU_DO\" }, trip_distance = { field = \"ride.trip_distance\" } }, type = \"float\" }\n";
    let config = config(work.path(), &source, &format!("models:/{name}@onnx"), "", mapping);
    let output = tributary(&["run", "--no-status", "--config"], &config);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let envelopes = json_lines(&work.path().join("out.jsonl"));
    let sklearn = r["sklearn_predictions"].as_array().unwrap();
    assert_eq!(envelopes.len(), sklearn.len());
    for envelope in envelopes {
        assert_eq!(envelope["version"], "2");
        let id = envelope["prediction"]["id"].as_u64().unwrap() as usize;
        let (got, want) = (envelope["prediction"]["count"].as_f64().unwrap(), sklearn[id].as_f64().unwrap());
        assert!((got - want).abs() <= 1e-4, "ride {id}: {got} against scikit-learn's {want}");
    }
}

#[test]
fn without_a_tracking_server_the_error_says_how_to_start_one() {
    let work = tempfile::tempdir().unwrap();
    let config = config(work.path(), "type = \"stdin\"", "models:/bikes@champion", "", BIKES_MAPPING);
    let output = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["validate", "--config"])
        .arg(&config)
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("MLFLOW_TRACKING_URI is not set") && stderr.contains("cargo xtask services up"),
        "{stderr}"
    );
}

/// Moves `alias` of `name` to `version` through MLflow's Python client.
fn move_alias(name: &str, alias: &str, version: &str) {
    let status = Command::new(root().join(".venv/bin/python"))
        .args([
            "-c",
            "import sys; from mlflow import MlflowClient; MlflowClient().set_registered_model_alias(*sys.argv[1:])",
        ])
        .args([name, alias, version])
        .status()
        .unwrap();
    assert!(status.success());
}

/// What [`stream`] saw: the envelopes in order, stderr, the metrics text read at the end and
/// the shadow's comparisons.
struct Streamed {
    envelopes: Vec<Value>,
    stderr: String,
    metrics: String,
    comparisons: Vec<Value>,
}

/// Streams events to `tributary run` on stdin (20 every 50 ms) through `model` (and `shadow`,
/// when given) for `seconds` and at least 4 seconds after `during`, which is called once a
/// second in (while no events are written).
fn stream(model: &str, shadow: Option<&str>, seconds: u64, during: impl FnOnce()) -> Streamed {
    let (dir, _) = registry();
    let work = tempfile::tempdir().unwrap();
    let port = free_port();
    let shadow_log = work.path().join("shadow.jsonl");
    let extra = match shadow {
        Some(uri) => format!("reload_interval_s = 1\nshadow = {uri:?}"),
        None => "reload_interval_s = 1".to_string(),
    };
    let config = config(work.path(), "type = \"stdin\"", model, &extra, BIKES_MAPPING);
    if shadow.is_some() {
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&format!(
            "\n[sinks.shadow_log]\ntype = \"file\"\ninputs = [\"model.shadow\"]\npath = {shadow_log:?}\n"
        ));
        std::fs::write(&config, text).unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["run", "--no-status", "--metrics-addr", &format!("127.0.0.1:{port}"), "--config"])
        .arg(&config)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let events = json_lines(&dir.join("events.jsonl"));
    let mut stdin = child.stdin.take().unwrap();
    let started = Instant::now();
    let mut during = Some(during);
    let mut after: Option<Instant> = None;
    let mut id = 0usize;
    // Until `seconds` have passed and, however long `during` took, 4 more after it.
    while started.elapsed() < Duration::from_secs(seconds) || after.is_none_or(|t| t.elapsed() < Duration::from_secs(4))
    {
        for _ in 0..20 {
            let mut event = events[id % events.len()].clone();
            event["id"] = id.into();
            writeln!(stdin, "{event}").unwrap();
            id += 1;
        }
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        if started.elapsed() > Duration::from_secs(1)
            && let Some(f) = during.take()
        {
            f();
            after = Some(Instant::now());
        }
    }
    let metrics = scrape(port).expect("the metrics endpoint answers");
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "{stderr}");
    let envelopes = json_lines(&work.path().join("out.jsonl"));
    assert_eq!(envelopes.len(), id, "every event predicted once: {stderr}");
    for (i, e) in envelopes.iter().enumerate() {
        assert_eq!(e["prediction"]["id"], i, "in order, none twice");
    }
    Streamed { envelopes, stderr, metrics, comparisons: json_lines(&shadow_log) }
}

/// Each prediction equals onnxruntime's for the version its envelope names.
fn matches_its_version(envelopes: &[Value], expected: impl Fn(&str) -> &'static str) {
    let (_, r) = registry();
    for e in envelopes {
        let version = e["version"].as_str().unwrap();
        let id = e["prediction"]["id"].as_u64().unwrap() as usize;
        let want = r["expected"][expected(version)][id % 300].as_f64().unwrap();
        let got = e["prediction"]["count"].as_f64().unwrap();
        assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "event {id} (version {version}): {got} vs {want}");
    }
}

#[test]
fn a_moved_alias_switches_the_version_at_a_batch_boundary_with_every_record_predicted_once() {
    let (_, r) = registry();
    let bikes = r["bikes"].as_str().unwrap().to_string();
    // The shadow follows its own alias the other way, from version 2 to 1.
    move_alias(&bikes, "challenger", "2");
    let shadow = format!("models:/{bikes}@challenger");
    let Streamed { envelopes, stderr, metrics, comparisons } =
        stream(&format!("models:/{bikes}@reload"), Some(&shadow), 6, || {
            move_alias(&bikes, "reload", "2");
            move_alias(&bikes, "challenger", "1");
        });
    let one_switch = |versions: Vec<&str>, from: &str, to: &str| {
        let switch = versions.iter().position(|v| *v == to).unwrap_or_else(|| panic!("never reloaded: {stderr}"));
        assert!(switch > 0 && versions[..switch].iter().all(|v| *v == from), "{versions:?}");
        assert!(versions[switch..].iter().all(|v| *v == to), "one switch, never back: {versions:?}");
    };
    one_switch(envelopes.iter().map(|e| e["version"].as_str().unwrap()).collect(), "1", "2");
    matches_its_version(&envelopes, |v| if v == "1" { "1" } else { "2" });
    assert!(metrics.contains("tributary_model_reloads{processor=\"model\"} 1\n"), "{metrics}");
    assert!(metrics.contains("tributary_model_serving{processor=\"model\",version=\"2\"} 1\n"), "{metrics}");

    assert_eq!(comparisons.len(), envelopes.len(), "a comparison per prediction: {stderr}");
    one_switch(comparisons.iter().map(|c| c["shadow_version"].as_str().unwrap()).collect(), "2", "1");
    let (_, r) = registry();
    for c in &comparisons {
        let id = c["prediction"]["id"].as_u64().unwrap() as usize;
        let version = c["shadow_version"].as_str().unwrap();
        let want = r["expected"][version][id % 300].as_f64().unwrap();
        let got = c["shadow_prediction"]["count"].as_f64().unwrap();
        assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "shadow of {id} ({version}): {got} vs {want}");
    }
    assert!(metrics.contains("tributary_shadow_reloads{processor=\"model\"} 1\n"), "{metrics}");
    assert!(metrics.contains("tributary_shadow_serving{processor=\"model\",version=\"1\"} 1\n"), "{metrics}");
}

#[test]
fn a_broken_new_version_leaves_the_old_one_serving() {
    let (_, r) = registry();
    let broken = r["broken"].as_str().unwrap().to_string();
    let Streamed { envelopes, stderr, metrics, .. } =
        stream(&format!("models:/{broken}@champion"), None, 4, || move_alias(&broken, "champion", "2"));
    assert!(envelopes.iter().all(|e| e["version"] == "1"), "{stderr}");
    matches_its_version(&envelopes, |_| "broken_1");
    assert!(
        stderr.contains("version 2 of") && stderr.contains("cannot serve") && stderr.contains("other_input"),
        "{stderr}"
    );
    assert!(metrics.contains("tributary_model_reload_failures{processor=\"model\"} 1\n"), "{metrics}");
    assert!(metrics.contains("tributary_model_reloads{processor=\"model\"} 0\n"), "{metrics}");
}

#[test]
fn a_shadow_model_writes_its_comparisons_without_changing_the_primary_deliveries() {
    let (dir, r) = registry();
    let bikes = r["bikes"].as_str().unwrap();
    let events = dir.join("events.jsonl");
    let run = |shadow: bool| {
        let work = tempfile::tempdir().unwrap();
        // A share with one consumer, for its checkpoint: the watermark the primary committed.
        let checkpoint = work.path().join("checkpoint.json");
        let source =
            format!("type = \"file\"\npath = {events:?}\nshared = \"events\"\nconsumer_checkpoint = {checkpoint:?}");
        let mut extra = String::new();
        if shadow {
            extra = format!("shadow = \"models:/{bikes}/2\"");
        }
        let config = config(work.path(), &source, &format!("models:/{bikes}@champion"), &extra, BIKES_MAPPING);
        if shadow {
            let log = work.path().join("shadow.jsonl");
            let mut text = std::fs::read_to_string(&config).unwrap();
            text.push_str(&format!(
                "\n[sinks.shadow_log]\ntype = \"file\"\ninputs = [\"model.shadow\"]\npath = {log:?}\n"
            ));
            std::fs::write(&config, text).unwrap();
        }
        let output = tributary(&["run", "--no-status", "--config"], &config);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let out = std::fs::read_to_string(work.path().join("out.jsonl")).unwrap();
        let watermark = std::fs::read_to_string(&checkpoint).unwrap();
        let rejected = json_lines(&work.path().join("rejected.jsonl"));
        (out, watermark, json_lines(&work.path().join("shadow.jsonl")), rejected)
    };
    let (without, watermark_without, none, _) = run(false);
    let (with, watermark, comparisons, rejected) = run(true);
    assert!(none.is_empty());
    assert_eq!(with, without, "the primary's deliveries are the same, byte for byte");
    assert_eq!(watermark, watermark_without, "and so is the watermark it committed");
    assert!(watermark.contains("\"offset\": 300"), "the watermark covers the file's 300 events: {watermark}");
    assert!(rejected.is_empty());
    assert_eq!(comparisons.len(), 300);
    for c in &comparisons {
        assert_eq!(
            (c["model"].as_str(), c["version"].as_str(), c["shadow_version"].as_str()),
            (Some("bikes"), Some("1"), Some("2"))
        );
        let id = c["prediction"]["id"].as_u64().unwrap() as usize;
        for (field, version) in [("prediction", "1"), ("shadow_prediction", "2")] {
            let want = r["expected"][version][id].as_f64().unwrap();
            let got = c[field]["count"].as_f64().unwrap();
            assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "{field} of {id}: {got} vs {want}");
        }
    }
}

#[test]
fn a_signature_that_disagrees_with_the_features_fails_validate_naming_the_feature() {
    let (dir, r) = registry();
    let broken = r["broken"].as_str().unwrap();
    let work = tempfile::tempdir().unwrap();
    let source = format!("type = \"file\"\npath = {:?}", dir.join("events.jsonl"));
    let config = config(work.path(), &source, &format!("models:/{broken}/3"), "", BIKES_MAPPING);
    let output = tributary(&["validate", "--config"], &config);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("processors.model")
            && stderr.contains("features.float_input")
            && stderr.contains("MLmodel signature")
            && stderr.contains("float64")
            && stderr.contains("the features give float"),
        "{stderr}"
    );
}

#[test]
fn a_shadow_side_output_without_a_shadow_model_is_a_config_error() {
    let work = tempfile::tempdir().unwrap();
    let model = root().join("processors/models/ride_duration/model.onnx");
    let text = format!(
        "[sources.events]\ntype = \"stdin\"\n\n[processors.model]\ntype = \"onnx\"\ninputs = [\"events\"]\nmodel = {model:?}\n\
         model_name = \"m\"\noutputs = {{ d = \"ride_duration\" }}\n[processors.model.features]\n\
         PU_DO = {{ field = \"PU_DO\", type = \"string\" }}\ntrip_distance = {{ field = \"d\", type = \"float\" }}\n\n\
         [sinks.out]\ntype = \"blackhole\"\ninputs = [\"model\"]\n\n\
         [sinks.shadow_log]\ntype = \"blackhole\"\ninputs = [\"model.shadow\"]\n"
    );
    let path = work.path().join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    let output = tributary(&["validate", "--config"], &path);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("sinks.shadow_log") && stderr.contains("inputs") && stderr.contains("no `shadow` model"),
        "{stderr}"
    );
}

/// A registered version's folder read straight from S3, as a server with
/// `--default-artifact-root s3://...` hands it out, with only `MLFLOW_S3_ENDPOINT_URL` pointing at
/// the store (as MLflow's clients take it); the version is the run id its `MLmodel` names.
#[test]
fn an_s3_model_folder_is_read_with_mlflow_s3_endpoint_url() {
    let (dir, r) = registry();
    let bikes = r["bikes"].as_str().unwrap();
    let inspect = inspect(&format!("models:/{bikes}/1"));
    let text = String::from_utf8_lossy(&inspect.stdout);
    let folder = text
        .lines()
        .find_map(|l| l.strip_prefix("resolved: ").and_then(|l| l.split(" at mlflow-artifacts:/").nth(1)))
        .unwrap_or_else(|| panic!("{text}"));
    let s3 = format!("s3://mlflow-artifacts/{folder}");
    let work = tempfile::tempdir().unwrap();
    let source = format!("type = \"file\"\npath = {:?}", dir.join("events.jsonl"));
    let config = config(work.path(), &source, &s3, "", BIKES_MAPPING);
    let output = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["run", "--no-status", "--config"])
        .arg(&config)
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_S3")
        .env("MLFLOW_S3_ENDPOINT_URL", required("MLFLOW_S3_ENDPOINT_URL"))
        .current_dir(root())
        .output()
        .unwrap();
    assert!(output.status.success(), "{s3}: {}", String::from_utf8_lossy(&output.stderr));
    let envelopes = json_lines(&work.path().join("out.jsonl"));
    assert_eq!(envelopes.len(), 300);
    for e in &envelopes {
        assert_eq!(e["version"], r["runs"]["1"], "{e}");
        let id = e["prediction"]["id"].as_u64().unwrap() as usize;
        let (got, want) = (e["prediction"]["count"].as_f64().unwrap(), r["expected"]["1"][id].as_f64().unwrap());
        assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "event {id}: {got} vs {want}");
    }
}

/// A tracking server with MLflow's basic auth (`mlflow server --app-name basic-auth`, as teams
/// run a shared registry): tributary sends `MLFLOW_TRACKING_USERNAME`/`PASSWORD` as MLflow's
/// clients do, and without them (or with a wrong password) says which variables to set.
#[test]
fn a_server_with_basic_auth_takes_the_credentials_mlflow_clients_use() {
    let work = tempfile::tempdir().unwrap();
    let password = "s3cret-for-the-test";
    let ini = work.path().join("basic_auth.ini");
    std::fs::write(
        &ini,
        format!(
            "[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{}\nadmin_username = admin\n\
             admin_password = {password}\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n",
            work.path().join("auth.db").display()
        ),
    )
    .unwrap();
    let port = free_port();
    let server = Command::new(root().join(".venv/bin/mlflow"))
        .args(["server", "--app-name", "basic-auth", "--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--workers", "1", "--backend-store-uri"])
        .arg(format!("sqlite:///{}", work.path().join("mlflow.db").display()))
        .arg("--artifacts-destination")
        .arg(work.path().join("artifacts"))
        .env("MLFLOW_AUTH_CONFIG_PATH", &ini)
        .env("MLFLOW_FLASK_SERVER_SECRET_KEY", "tributary-test")
        .current_dir(work.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: the server's workers and job runners stop with it.
        .process_group(0)
        .spawn()
        .expect("start mlflow server (cargo xtask setup installs the venv)");
    let _server = ProcessGroup(server);
    let uri = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(90);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the basic-auth MLflow server did not start");
        std::thread::sleep(Duration::from_millis(300));
    }
    // No model is registered there (registering through MLflow's client costs half a minute):
    // with the right credentials the server answers that the model does not exist, past its
    // authentication; without them, 401.
    let name = unique("authed").replace('-', "_");
    let inspect = |credentials: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_tributary"))
            .args(["inspect", &format!("models:/{name}@champion")])
            .current_dir(root())
            .env("MLFLOW_TRACKING_URI", &uri)
            .env_remove("MLFLOW_TRACKING_TOKEN")
            .env_remove("MLFLOW_TRACKING_USERNAME")
            .env_remove("MLFLOW_TRACKING_PASSWORD")
            .envs(credentials.iter().copied())
            .output()
            .unwrap()
    };
    let with = inspect(&[("MLFLOW_TRACKING_USERNAME", "admin"), ("MLFLOW_TRACKING_PASSWORD", password)]);
    let stderr = String::from_utf8_lossy(&with.stderr);
    assert!(!with.status.success());
    assert!(
        stderr.contains(&format!("registered model {name:?} has no alias \"champion\"")) && !stderr.contains("401"),
        "{stderr}"
    );

    let without = inspect(&[]);
    let stderr = String::from_utf8_lossy(&without.stderr);
    assert!(!without.status.success());
    assert!(stderr.contains("401") && stderr.contains("MLFLOW_TRACKING_USERNAME"), "{stderr}");
    let wrong = inspect(&[("MLFLOW_TRACKING_USERNAME", "admin"), ("MLFLOW_TRACKING_PASSWORD", "wrong")]);
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success() && stderr.contains("401"), "{stderr}");
    assert!(!stderr.contains(password) && !stderr.contains("wrong"), "no password in the message: {stderr}");
}

/// A process started in its own group, stopped with its children on drop (SIGTERM to the
/// group, SIGKILL after three seconds).
struct ProcessGroup(std::process::Child);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.0.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.0.wait();
    }
}

/// `GET path` on a loopback port: status and body.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    Some((status, text.split("\r\n\r\n").nth(1).unwrap_or_default().to_string()))
}

/// Polls `/v2/health/ready` until its status is `want`; returns the body.
fn ready_becomes(port: u16, want: u16, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Some((status, body)) = http_get(port, "/v2/health/ready")
            && status == want
        {
            return body;
        }
        assert!(Instant::now() < deadline, "/v2/health/ready never answered {want}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_served_model_is_not_ready_while_its_alias_points_at_a_version_that_failed_to_load() {
    let (_, r) = registry();
    let broken = r["broken"].as_str().unwrap().to_string();
    move_alias(&broken, "serving", "1");
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("served.toml");
    std::fs::write(
        &path,
        format!(
            "[sources.requests]\ntype = \"http\"\n\n\
             [processors.model]\ntype = \"onnx\"\ninputs = [\"requests\"]\nmodel = \"models:/{broken}@serving\"\n\
             model_name = \"bikes\"\nreload_interval_s = 1\n{BIKES_MAPPING}\n\
             [sinks.answer]\ntype = \"response\"\ninputs = [\"model\"]\n"
        ),
    )
    .unwrap();
    let port = free_port();
    // Stopped on drop, also when an assertion fails.
    let _server = ProcessGroup(
        Command::new(env!("CARGO_BIN_EXE_tributary"))
            .current_dir(root())
            .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    ready_becomes(port, 200, Duration::from_secs(60));
    move_alias(&broken, "serving", "2");
    let body = ready_becomes(port, 503, Duration::from_secs(20));
    assert!(body.contains("version 2, which failed to load; version 1 keeps serving"), "{body}");
    // Version 1 still answers meanwhile, through the Open Inference Protocol metadata too.
    let metadata = http_get(port, "/v2/models/model").unwrap();
    assert!(metadata.0 == 200 && metadata.1.contains("\"versions\":[\"1\"]"), "{metadata:?}");
    move_alias(&broken, "serving", "1");
    ready_becomes(port, 200, Duration::from_secs(20));
}
