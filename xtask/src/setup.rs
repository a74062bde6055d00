//! `cargo xtask setup`: everything the project needs beyond Rust, installed idempotently.
//!
//! - `.venv/`: a Python virtual environment with `requirements.txt` (model training, parity
//!   fixtures, the moto server); reinstalled only when `requirements.txt` changes.
//! - `.venv/lib/libonnxruntime.so`: a link to the ONNX Runtime library shipped in the
//!   `onnxruntime` wheel, where tributary looks for it.
//! - `.tools/node_modules/kinesis-local`: kinesis-mock (npm), the local Kinesis; Node.js itself
//!   is installed with apt when missing.

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
    Ok(())
}

fn python(root: &Path) -> Result<()> {
    let venv = root.join(".venv");
    let python = venv.join("bin").join("python");
    if !python.is_file() {
        eprintln!("xtask: creating .venv");
        let interpreter = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        run_cmd(root, Command::new(&interpreter).args(["-m", "venv"]).arg(&venv)).with_context(|| {
            format!("creating the virtual environment with {interpreter} (install python3 and python3-venv)")
        })?;
    }
    let requirements = fs::read(root.join("requirements.txt")).context("reading requirements.txt")?;
    let stamp = venv.join(".requirements-installed");
    if fs::read(&stamp).ok().as_deref() == Some(&requirements[..]) {
        return Ok(());
    }
    eprintln!("xtask: installing Python packages from requirements.txt");
    run_cmd(
        root,
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            "requirements.txt",
        ]),
    )?;
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
