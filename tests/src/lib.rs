//! Shared harness for tributary's integration tests: repository paths, running a pipeline from
//! TOML with file sinks, and finding the local services (which must be running: tests fail with
//! instructions rather than skip).

pub mod fuzz;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tributary_framework::config;
use tributary_framework::runtime::{Pipeline, RunSummary};

/// The repository root: the parent of `CARGO_MANIFEST_DIR` as cargo sets it when it runs the
/// tests, read at run time. (A compiled-in path would be another clone's when clones share a
/// target directory: cargo reuses the unchanged test binary.)
pub fn repo_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|| panic!("CARGO_MANIFEST_DIR is not set: run the tests with cargo test"));
    Path::new(&manifest_dir).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// A path under the repository root, as a string for configs.
pub fn repo_path(relative: &str) -> String {
    repo_root().join(relative).display().to_string()
}

/// The committed ride-duration model.
pub fn model_path() -> String {
    repo_path("processors/models/ride_duration/model.onnx")
}

/// Reads a JSON-lines file (missing file: no lines).
pub fn read_json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// Outputs of a finished pipeline run.
pub struct Run {
    /// Lines of `{out}`.
    pub outputs: Vec<Value>,
    /// Lines of `{dead}`.
    pub dead: Vec<Value>,
    /// The run summary.
    pub summary: RunSummary,
}

/// Builds and runs a pipeline. In `toml`, `{out}` and `{dead}` are replaced by paths of files
/// in a fresh temporary folder, `{model}` by the committed model and `{root}` by the repository.
///
/// # Errors
/// Configuration, build or run errors.
pub async fn run_pipeline(toml: &str) -> Result<Run> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out.jsonl");
    let dead = dir.path().join("dead.jsonl");
    let text = toml
        .replace("{out}", &out.display().to_string())
        .replace("{dead}", &dead.display().to_string())
        .replace("{model}", &model_path())
        .replace("{root}", &repo_root().display().to_string());
    let config = config::from_toml_str("test.toml", &text)?;
    let pipeline = Pipeline::build(&config, &tributary::registry()).await?;
    let summary = pipeline.run(CancellationToken::new()).await?;
    Ok(Run { outputs: read_json_lines(&out), dead: read_json_lines(&dead), summary })
}

/// The S3/DynamoDB stand-in's endpoint, checked to be reachable.
///
/// # Panics
/// When `AWS_ENDPOINT_URL` is unset or nothing answers there, with how to start the services.
pub fn require_moto() -> String {
    let hint = "start the local services with `cargo xtask services up` and export the variables it prints \
                (`cargo xtask test` does both)";
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| panic!("AWS_ENDPOINT_URL is not set: {hint}"));
    let host = endpoint.trim_start_matches("http://").trim_start_matches("https://").trim_end_matches('/');
    let reachable = std::net::ToSocketAddrs::to_socket_addrs(host)
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    assert!(reachable, "nothing answers at AWS_ENDPOINT_URL={endpoint}: {hint}");
    endpoint
}

/// An S3 client for the local stand-in (path-style addressing).
pub async fn s3_client() -> aws_sdk_s3::Client {
    require_moto();
    tributary_aws::s3_client().await
}

/// The usual test pipeline: `[sources.rides]` with the keys in `source`, `ride_duration` with
/// the keys in `processor`, a file sink at `{out}` and a file dead-letter destination at `{dead}`
/// (placeholders that [`run_pipeline`] fills in).
pub fn ride_pipeline(source: &str, processor: &str) -> String {
    format!(
        "[sources.rides]\n{source}\n[processors.ride_duration]\ntype = \"ride_duration\"\ninputs = [\"rides\"]\n{processor}\n\
         [sinks.out]\ntype = \"file\"\ninputs = [\"ride_duration\"]\npath = \"{{out}}\"\n\
         [dead_letter]\ntype = \"file\"\npath = \"{{dead}}\"\n"
    )
}

/// The keys of a `file` source reading `path`.
pub fn file_source(path: &std::path::Path) -> String {
    format!("type = \"file\"\npath = \"{}\"", path.display())
}

/// A name unique to this test run, for buckets and streams.
pub fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Reads a whole file under the repository as text.
///
/// # Errors
/// When the file cannot be read.
pub fn read_repo_file(relative: &str) -> Result<String> {
    std::fs::read_to_string(repo_root().join(relative)).with_context(|| format!("reading {relative}"))
}
