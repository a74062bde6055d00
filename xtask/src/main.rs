//! `cargo xtask`: the project's own tasks, so that a fresh clone needs two commands.
//!
//! - `setup`: the Python virtual environment (`.venv`, pinned `requirements.txt`) with the ONNX
//!   Runtime library linked at `.venv/lib/libonnxruntime.so`, and the moto server. Idempotent.
//! - `demo`: only what the demo needs (ONNX Runtime's library from the pinned wheel, tributary
//!   built with the ONNX processors alone), then runs `deployments/config/demo.toml`.
//! - `services up|down|status`: the local stand-ins for AWS services, on loopback.
//! - `test`: setup, the Lambda package (as `package-lambda --for-tests`; one test runs it), services up,
//!   every test, then the deployment files through linters (SAM template, Dockerfiles, compose
//!   file), services down; non-zero on any failure.
//! - `bench`: release build, then the benchmarks of BENCHMARKS.md.
//! - `package-lambda`: `target/lambda/tributary-lambda.zip` (and the same files in
//!   `target/lambda/tributary-lambda/`): `bootstrap`, ONNX Runtime and the model. With
//!   `--for-tests`, the same package built without link-time optimization (profile
//!   `lambda-test`) into `target/lambda-test/`, for the test that runs it.

mod fuzz;
mod services;
mod setup;
mod soak;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let root = match repository_root() {
        Ok(root) => root,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let root = root.as_path();
    eprintln!("xtask: repository {}", root.display());
    let result = match args.as_slice() {
        ["setup"] => setup::all(root),
        ["demo"] => demo(root),
        ["services", "up"] => services::up(root).map(|_| ()),
        ["services", "down"] => services::down(root),
        ["services", "status"] => services::status(root),
        ["test", rest @ ..] => test(root, rest),
        ["bench", rest @ ..] => bench(root, rest),
        ["package-lambda"] => package_lambda(root, LambdaBuild::Shipped),
        ["package-lambda", "--for-tests"] => package_lambda(root, LambdaBuild::ForTests),
        ["fuzz", rest @ ..] => fuzz::run(root, rest),
        ["soak", rest @ ..] => soak::run(root, rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <setup | demo | services up|down|status | test [-- cargo test args] | bench [--quick] | fuzz [--seconds N] [--runs N] [target ...] | soak [--minutes N] [--rate R] | package-lambda [--for-tests]>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The repository this run acts on, found at run time: the parent of `CARGO_MANIFEST_DIR`, which
/// cargo sets for the process it runs (`cargo xtask` is `cargo run -p xtask`), else the nearest
/// folder at or above the current one whose `Cargo.toml` has a `[workspace]` table.
///
/// Never a path compiled into the binary: clones that share a target directory (as CI's runs
/// do) share this binary too, because cargo sees no change in it, so a compiled-in path would
/// send every later clone's `setup`, `demo` and `test` to the first clone's folder.
fn repository_root() -> Result<PathBuf> {
    let start = match std::env::var_os("CARGO_MANIFEST_DIR") {
        Some(manifest_dir) => PathBuf::from(manifest_dir),
        None => std::env::current_dir().context("reading the current directory")?,
    };
    start
        .ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|manifest| manifest.contains("[workspace]"))
        })
        .map(Path::to_path_buf)
        .with_context(|| {
            format!("no workspace Cargo.toml at or above {}: run cargo xtask inside a clone", start.display())
        })
}

/// Runs a command in `dir`, failing with its command line if it fails.
pub(crate) fn run(dir: &Path, cmd: &mut Command) -> Result<()> {
    let status = cmd.current_dir(dir).status().with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// The features the demo's build has: the ONNX processors only, no Kafka (librdkafka compiles
/// from C), AWS SDKs, HTTP server or Parquet.
const DEMO_FEATURES: &str = "onnx,mimalloc";

fn demo(root: &Path) -> Result<()> {
    setup::demo(root)?;
    let tributary = ["-p", "tributary", "--bin", "tributary", "--no-default-features", "--features", DEMO_FEATURES];
    timed(&format!("building tributary with the features the demo uses ({DEMO_FEATURES})"), || {
        run(root, cargo().args(["build", "--quiet"]).args(tributary))
    })?;
    eprintln!("xtask: running deployments/config/demo.toml");
    run(
        root,
        cargo().args(["run", "--quiet"]).args(tributary).args([
            "--",
            "run",
            "--config",
            "deployments/config/demo.toml",
        ]),
    )
}

/// Runs one step of a command, saying what it is and then how long it took.
fn timed<T>(what: &str, step: impl FnOnce() -> Result<T>) -> Result<T> {
    eprintln!("xtask: {what}");
    let started = std::time::Instant::now();
    let result = step();
    eprintln!("xtask: {what}: {:.1} s", started.elapsed().as_secs_f64());
    result
}

fn test(root: &Path, extra: &[&str]) -> Result<()> {
    timed("setup", || setup::all(root))?;
    timed("building tests", || run(root, cargo().args(["test", "--workspace", "--no-run", "--quiet"])))?;
    timed("building the Lambda package (profile lambda-test)", || build_lambda_package(root, LambdaBuild::ForTests))?;
    let started = timed("starting services", || services::up(root))?;
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--no-fail-fast"]);
    let extra: Vec<&str> = extra.iter().copied().skip_while(|a| *a == "--").collect();
    if !extra.is_empty() {
        cmd.arg("--").args(&extra);
    }
    services::apply_env(root, &mut cmd);
    let result =
        timed("running tests", || run(root, &mut cmd)).and_then(|()| timed("linting", || lint_deployments(root)));
    services::stop(root, &started)?;
    result
}

/// The deployment files the tests cannot run here (no AWS account, no Docker engine): the SAM
/// template through cfn-lint, the Dockerfiles through hadolint (settings in `.hadolint.yaml`),
/// the compose file against the compose specification's schema.
fn lint_deployments(root: &Path) -> Result<()> {
    eprintln!("xtask: cfn-lint deployments/lambda/template.yaml");
    run(root, Command::new(root.join(".venv/bin/cfn-lint")).arg("deployments/lambda/template.yaml"))?;
    let dockerfiles = ["deployments/lambda/Dockerfile", "deployments/worker/Dockerfile"];
    eprintln!("xtask: hadolint {}", dockerfiles.join(" "));
    run(root, Command::new(root.join(".venv/bin/hadolint")).args(["--no-color"]).args(dockerfiles))?;
    eprintln!("xtask: check-jsonschema (compose spec) deployments/local/compose.yaml");
    run(
        root,
        Command::new(root.join(".venv/bin/check-jsonschema")).args([
            "--builtin-schema",
            "vendor.compose-spec",
            "deployments/local/compose.yaml",
        ]),
    )
}

fn package_lambda(root: &Path, build: LambdaBuild) -> Result<()> {
    setup::all(root)?;
    build_lambda_package(root, build)
}

/// Which Lambda package to build.
#[derive(Clone, Copy)]
enum LambdaBuild {
    /// The one to deploy: the `release` profile (thin LTO), into `target/lambda/`.
    Shipped,
    /// The one `deployments/tests/lambda_package.rs` runs: profile `lambda-test` (release code
    /// without link-time optimization, which took 140 of the package's 170 s on 2 cores), into
    /// `target/lambda-test/`, so that a test build is never what the SAM template deploys.
    ForTests,
}

/// `target/lambda/tributary-lambda/` (or `target/lambda-test/...`) and its zip, in this
/// checkout's `target/` whatever `CARGO_TARGET_DIR` says (the SAM template and the docs point
/// there).
fn build_lambda_package(root: &Path, build: LambdaBuild) -> Result<()> {
    let (profile, out) = match build {
        LambdaBuild::Shipped => (["--release"].as_slice(), root.join("target/lambda")),
        LambdaBuild::ForTests => (["--profile", "lambda-test"].as_slice(), root.join("target/lambda-test")),
    };
    let venv_bin = root.join(".venv/bin");
    let path = std::env::join_paths(
        std::iter::once(venv_bin.clone()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )?;
    // cargo-lambda from outside the clone (see `setup::stable_cargo_lambda`); zig (from the
    // `ziglang` wheel, found through the virtual environment on PATH) links against Amazon Linux
    // 2023's glibc, whatever this machine has; symbols are stripped to keep the package small.
    run(
        root,
        Command::new(setup::stable_cargo_lambda(root)?)
            .env("PATH", path)
            .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
            .env("CARGO_PROFILE_RELEASE_STRIP", "symbols")
            // The function needs neither Kafka nor the CLI's extras.
            .args(["lambda", "build"])
            .args(profile)
            .args(["-p", "tributary", "--bin", "tributary-lambda"])
            .arg("--lambda-dir")
            .arg(&out)
            .args(["--no-default-features", "--features", "lambda,onnx,s3,parquet-s3,mimalloc"]),
    )?;
    // The package: bootstrap, libonnxruntime.so beside it (where tributary looks first after
    // ORT_DYLIB_PATH), model.onnx (MODEL_LOCATION's default, relative to /var/task), and
    // web-service.toml (TRIBUTARY_CONFIG for API Gateway and function URL requests), and
    // batch-s3.toml (TRIBUTARY_CONFIG for S3 ObjectCreated notifications).
    let dir = out.join("tributary-lambda");
    let _ = std::fs::remove_file(dir.join("bootstrap.zip"));
    std::fs::copy(root.join(".venv/lib/libonnxruntime.so"), dir.join("libonnxruntime.so"))?;
    std::fs::copy(root.join("processors/models/ride_duration/model.onnx"), dir.join("model.onnx"))?;
    std::fs::copy(root.join("deployments/config/web-service.toml"), dir.join("web-service.toml"))?;
    std::fs::copy(root.join("deployments/config/batch-s3.toml"), dir.join("batch-s3.toml"))?;
    let zip = out.join("tributary-lambda.zip");
    let _ = std::fs::remove_file(&zip);
    run(
        &dir,
        Command::new(venv_bin.join("python")).args(["-m", "zipfile", "-c"]).arg(&zip).args([
            "bootstrap",
            "libonnxruntime.so",
            "model.onnx",
            "web-service.toml",
            "batch-s3.toml",
        ]),
    )?;
    eprintln!("xtask: built {} (folder: {})", zip.display(), dir.display());
    Ok(())
}

fn bench(root: &Path, extra: &[&str]) -> Result<()> {
    setup::all(root)?;
    setup::bench_tools(root)?;
    eprintln!("xtask: building release binaries");
    run(root, cargo().args(["build", "--release", "--quiet", "-p", "tributary", "-p", "tributary-bench"]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let target = if target.is_absolute() { target } else { root.join(target) };
    let release = target.join("release");
    let bench = |sections: &[u32]| {
        let list = sections.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let mut cmd = Command::new(release.join("tributary-bench"));
        cmd.env("TRIBUTARY_BIN", release.join("tributary")).args(other_bench_args(extra)).args(["--sections", &list]);
        cmd
    };
    // The sections that need no services run first, before any is started: services keep the
    // cores partly busy even when idle (a JVM, Python servers), which in-process timings pay for.
    let (alone, with_services): (Vec<u32>, Vec<u32>) =
        bench_sections(extra).into_iter().partition(|n| !NEED_SERVICES.contains(n));
    if !alone.is_empty() {
        eprintln!("xtask: sections {alone:?} need no services: run before any is started");
        run(root, &mut bench(&alone))?;
    }
    if with_services.is_empty() {
        return Ok(());
    }
    let started = services::up(root)?;
    let mut cmd = bench(&with_services);
    services::apply_env(root, &mut cmd);
    let result = run(root, &mut cmd);
    services::stop(root, &started)?;
    result
}

/// The sections that talk to the local services: 4 (Lambda: the Kinesis servers), 5 (Kinesis
/// worker), 6 (Kafka), 9 (MLflow).
const NEED_SERVICES: [u32; 4] = [4, 5, 6, 9];

/// The benchmark sections asked for (`--sections 1,11`); by default all but 9 (the registry
/// section, run when asked for), as `tributary-bench` itself defaults.
fn bench_sections(args: &[&str]) -> Vec<u32> {
    match args.iter().position(|a| *a == "--sections").and_then(|i| args.get(i + 1)) {
        Some(list) => list.split(',').filter_map(|n| n.trim().parse().ok()).collect(),
        None => (1..=11).filter(|n| *n != 9).collect(),
    }
}

/// The benchmark arguments other than `--sections LIST` (such as `--quick`).
fn other_bench_args<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut others = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if *arg == "--sections" {
            args.next();
        } else {
            others.push(*arg);
        }
    }
    others
}
