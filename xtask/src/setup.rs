//! `cargo xtask setup`: everything the project needs beyond Rust, installed idempotently.
//!
//! - `.venv/`: a Python virtual environment with `requirements.txt` (model training, parity
//!   fixtures, the moto server); reinstalled only when `requirements.txt` changes.
//! - `.venv/lib/libonnxruntime.so`: a link to the ONNX Runtime library shipped in the
//!   `onnxruntime` wheel, where tributary looks for it.
//! - `.tools/node_modules/kinesis-local`: kinesis-mock (npm), the local Kinesis; Node.js itself
//!   is installed with apt when missing.
//! - tansu (crates.io), the local Kafka broker, and ferrokinesis (crates.io), a Kinesis emulator
//!   for the benchmarks: `cargo install`ed once into a cache outside the clone
//!   (`$TRIBUTARY_TOOLS_CACHE`, default `~/.cache/tributary/tools`), because they take about ten
//!   and three minutes to build on two cores. The packaging step copies the virtual
//!   environment's `cargo-lambda` there too ([`stable_cargo_lambda`]). cargo-fuzz is installed
//!   the same way by `cargo xtask fuzz`, which alone uses it.
//! - Debian's `libssl-dev`, `zlib1g-dev`, `pkg-config`, `make` and `g++`, with apt when missing:
//!   `rdkafka` compiles librdkafka from source with TLS and zlib. For the benchmarks only,
//!   installed by `cargo xtask bench` ([`bench_tools`]): Debian's `wrk`, and the Python peers of
//!   `bench/requirements.txt` (confluent-kafka, Quix Streams) into `.venv`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::run as run_cmd;

/// Runs every setup step.
pub fn all(root: &Path) -> Result<()> {
    python(root)?;
    onnxruntime(root)?;
    kinesis_mock(root)?;
    build_packages(root)?;
    TANSU.install(root)?;
    FERROKINESIS.install(root)?;
    Ok(())
}

/// What `cargo xtask demo` needs and nothing more: ONNX Runtime's library, from the pinned
/// `onnxruntime` wheel alone (`pip install --no-deps`: the library, not the Python stack around
/// it), unless a full setup already put it there. Says what it installs and how long it took.
pub fn demo(root: &Path) -> Result<()> {
    if find_wheel_library(&root.join(".venv").join("lib")).is_err() {
        let started = std::time::Instant::now();
        let pin = pinned(root, "onnxruntime")?;
        create_venv(root)?;
        eprintln!("xtask: installing {pin} (the ONNX Runtime library, without its Python dependencies) into .venv");
        pip_install(root, &["--no-deps", &pin])?;
        eprintln!("xtask: installed {pin} in {:.1} s", started.elapsed().as_secs_f64());
    }
    onnxruntime(root)
}

/// `pip install ARGS` into `.venv`, quietly.
fn pip_install(root: &Path, args: &[&str]) -> Result<()> {
    let python = root.join(".venv").join("bin").join("python");
    run_cmd(
        root,
        Command::new(python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            // Bytecode is compiled on first import, for the modules used: compiling every
            // installed file (mlflow, scikit-learn, ...) up front cost CI time for nothing.
            .arg("--no-compile")
            .args(args),
    )
}

/// `name==version` as `requirements.txt` pins it.
fn pinned(root: &Path, name: &str) -> Result<String> {
    let requirements = fs::read_to_string(root.join("requirements.txt")).context("reading requirements.txt")?;
    requirements
        .lines()
        .map(str::trim)
        .find(|line| line.split("==").next() == Some(name))
        .map(str::to_string)
        .with_context(|| format!("requirements.txt does not pin {name}"))
}

/// What running a pipeline needs (the virtual environment and ONNX Runtime), for `soak`.
pub fn runtime_only(root: &Path) -> Result<()> {
    python(root)?;
    onnxruntime(root)
}

/// A server built from crates.io with `cargo install`, cached outside any clone.
pub struct CargoTool {
    /// The crate (and binary) name.
    pub name: &'static str,
    /// The pinned version.
    pub version: &'static str,
    /// Cargo features to build with.
    features: &'static [&'static str],
    /// What it is, for the build message.
    what: &'static str,
    /// About how long the build takes on two cores.
    build_minutes: u32,
}

/// The Kafka broker used by tests and `services up`.
pub const TANSU: CargoTool = CargoTool {
    name: "tansu",
    version: "0.6.0",
    features: &["dynostore"],
    what: "the local Kafka broker",
    build_minutes: 10,
};

/// A Kinesis emulator written in Rust, one of the loopback Kinesis servers of the Lambda
/// benchmark (`services up` starts it beside kinesis-mock).
pub const FERROKINESIS: CargoTool = CargoTool {
    name: "ferrokinesis",
    version: "0.7.0",
    features: &[],
    what: "a local Kinesis for the benchmarks",
    build_minutes: 3,
};

/// cargo-fuzz, for `cargo xtask fuzz` only (it drives the nightly toolchain's libFuzzer).
pub const CARGO_FUZZ: CargoTool =
    CargoTool { name: "cargo-fuzz", version: "0.13.2", features: &[], what: "the fuzzing driver", build_minutes: 2 };

/// Where tools built from source are cached, outside any clone.
fn tools_cache() -> PathBuf {
    std::env::var_os("TRIBUTARY_TOOLS_CACHE").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into())).join(".cache/tributary/tools"),
        PathBuf::from,
    )
}

impl CargoTool {
    /// The installed binary.
    pub fn binary(&self) -> PathBuf {
        tools_cache().join(format!("{}-{}", self.name, self.version)).join("bin").join(self.name)
    }

    /// Builds and installs it unless it is already installed.
    pub fn install(&self, root: &Path) -> Result<()> {
        let binary = self.binary();
        if binary.is_file() {
            return Ok(());
        }
        let install_root = binary.parent().and_then(Path::parent).context("tool cache path")?.to_path_buf();
        eprintln!(
            "xtask: building {} {} ({}) into {}; about {} minutes, once",
            self.name,
            self.version,
            self.what,
            install_root.display(),
            self.build_minutes
        );
        let mut cargo = crate::cargo();
        cargo.args(["install", self.name, "--version", self.version, "--locked"]);
        if !self.features.is_empty() {
            cargo.args(["--features", &self.features.join(",")]);
        }
        cargo
            .arg("--root")
            .arg(&install_root)
            .arg("--target-dir")
            .arg(tools_cache().join("build"))
            // The project's CARGO_TARGET_DIR must not receive the tool's build.
            .env_remove("CARGO_TARGET_DIR");
        run_cmd(root, &mut cargo).with_context(|| format!("building {} with cargo install", self.name))?;
        // Only the binary is kept: the build folder runs to hundreds of MB.
        let _ = fs::remove_dir_all(tools_cache().join("build"));
        Ok(())
    }
}

/// The virtual environment's `cargo-lambda`, copied (once per version) to a path outside the
/// clone, for packaging. cargo-lambda writes its own path into the zig linker wrappers it makes;
/// with the clone's path there, every fresh clone had a new linker and rebuilt all of the
/// function's dependencies (about four minutes of each CI run).
pub fn stable_cargo_lambda(root: &Path) -> Result<PathBuf> {
    let installed = root.join(".venv/bin/cargo-lambda");
    let output =
        Command::new(&installed).args(["lambda", "--version"]).output().context("running cargo-lambda --version")?;
    let version = String::from_utf8_lossy(&output.stdout);
    let version = version.split_whitespace().nth(1).context("cargo-lambda --version printed no version")?;
    let stable = tools_cache().join(format!("cargo-lambda-{version}")).join("cargo-lambda");
    if !stable.is_file() {
        let dir = stable.parent().context("tool cache path")?;
        fs::create_dir_all(dir)?;
        // Copied under another name, then renamed: another clone may be doing the same.
        let partial = dir.join(format!("cargo-lambda.{}", std::process::id()));
        fs::copy(&installed, &partial)?;
        fs::rename(&partial, &stable)?;
    }
    Ok(stable)
}

/// Debian packages needed to build librdkafka (rdkafka-sys) from source.
fn build_packages(root: &Path) -> Result<()> {
    apt(root, &["libssl-dev", "zlib1g-dev", "pkg-config", "make", "g++"], "to build librdkafka")
}

/// What only the benchmarks use: Debian's `wrk`, the HTTP load generator of the web-service
/// section (C, one thread, so it takes little of the two cores from the servers it measures),
/// and `bench/requirements.txt`, the Kafka section's Python peers.
pub fn bench_tools(root: &Path) -> Result<()> {
    apt(root, &["wrk"], "the HTTP load generator of the benchmarks")?;
    requirements(root, "bench/requirements.txt", ".bench-requirements-installed")
}

/// Installs the Debian `packages` that are missing, saying `why`.
fn apt(root: &Path, packages: &[&str], why: &str) -> Result<()> {
    let installed = |p: &str| {
        Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", p])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
    };
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {} with apt-get ({why})", missing.join(" "));
    run_cmd(root, Command::new("apt-get").arg("update").arg("-q"))?;
    run_cmd(root, Command::new("apt-get").args(["install", "-y", "-q"]).args(&missing))
        .with_context(|| format!("installing {}; install them by hand if apt-get is not available", missing.join(" ")))
}

/// Creates `.venv` unless it exists.
fn create_venv(root: &Path) -> Result<()> {
    let venv = root.join(".venv");
    if !venv.join("bin").join("python").is_file() {
        eprintln!("xtask: creating .venv");
        let interpreter = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        run_cmd(root, Command::new(&interpreter).args(["-m", "venv"]).arg(&venv)).with_context(|| {
            format!("creating the virtual environment with {interpreter} (install python3 and python3-venv)")
        })?;
    }
    Ok(())
}

fn python(root: &Path) -> Result<()> {
    requirements(root, "requirements.txt", ".requirements-installed")
}

/// Installs the requirements `file` (relative to the root) into `.venv` unless the copy of it
/// kept in `.venv/<stamp>` says it is already installed.
fn requirements(root: &Path, file: &str, stamp: &str) -> Result<()> {
    create_venv(root)?;
    let requirements = fs::read(root.join(file)).with_context(|| format!("reading {file}"))?;
    let stamp = root.join(".venv").join(stamp);
    if fs::read(&stamp).ok().as_deref() == Some(&requirements[..]) {
        return Ok(());
    }
    eprintln!("xtask: installing Python packages from {file}");
    pip_install(root, &["-r", file])?;
    fs::write(&stamp, &requirements).context("writing the install stamp")?;
    Ok(())
}

fn onnxruntime(root: &Path) -> Result<()> {
    let lib_dir = root.join(".venv").join("lib");
    let link = lib_dir.join("libonnxruntime.so");
    let target = find_wheel_library(&lib_dir)?;
    if fs::read_link(&link).ok().as_deref() == Some(target.as_path()) {
        return Ok(());
    }
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(&target, &link).with_context(|| format!("linking {}", link.display()))?;
    eprintln!("xtask: linked {} -> {}", link.display(), target.display());
    Ok(())
}

/// `.venv/lib/python3.*/site-packages/onnxruntime/capi/libonnxruntime.so.1.*`
fn find_wheel_library(lib_dir: &Path) -> Result<PathBuf> {
    for entry in fs::read_dir(lib_dir).with_context(|| format!("reading {}", lib_dir.display()))? {
        let capi = entry?.path().join("site-packages").join("onnxruntime").join("capi");
        let Ok(files) = fs::read_dir(&capi) else { continue };
        for file in files {
            let path = file?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.starts_with("libonnxruntime.so.") {
                return Ok(path);
            }
        }
    }
    bail!(
        "libonnxruntime.so.* not found under {}/python3*/site-packages/onnxruntime/capi: is `onnxruntime` in requirements.txt?",
        lib_dir.display()
    )
}

/// The npm package of kinesis-mock and its pinned version.
pub const KINESIS_MOCK: (&str, &str) = ("kinesis-local", "0.6.2");

fn kinesis_mock(root: &Path) -> Result<()> {
    let (package, version) = KINESIS_MOCK;
    let manifest = root.join(".tools/node_modules").join(package).join("package.json");
    let installed = fs::read_to_string(&manifest).unwrap_or_default();
    if installed.contains(&format!("\"version\" : \"{version}\""))
        || installed.contains(&format!("\"version\": \"{version}\""))
    {
        return Ok(());
    }
    node(root)?;
    eprintln!("xtask: installing {package}@{version} (kinesis-mock) into .tools/");
    run_cmd(
        root,
        Command::new("npm")
            .args(["install", "--prefix", ".tools", "--no-audit", "--no-fund", "--silent"])
            .arg(format!("{package}@{version}")),
    )
}

/// Makes sure `node` and `npm` exist, installing Debian's packages when they do not.
fn node(root: &Path) -> Result<()> {
    let works = |cmd: &str| Command::new(cmd).arg("--version").output().is_ok_and(|o| o.status.success());
    if works("node") && works("npm") {
        return Ok(());
    }
    eprintln!("xtask: Node.js not found; installing nodejs and npm with apt-get");
    run_cmd(root, Command::new("apt-get").arg("update").arg("-q"))?;
    run_cmd(root, Command::new("apt-get").args(["install", "-y", "-q", "nodejs", "npm"])).context(
        "installing Node.js (needed for kinesis-mock); install nodejs and npm by hand if apt-get is not available",
    )
}
