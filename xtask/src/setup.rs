//! `cargo xtask setup`: everything the project needs beyond Rust, installed idempotently.
//!
//! - `.venv/`: a Python virtual environment with `requirements.txt` (model training, parity
//!   fixtures, the moto server); reinstalled only when `requirements.txt` changes.
//! - `.venv/lib/libonnxruntime.so`: a link to the ONNX Runtime library shipped in the
//!   `onnxruntime` wheel, where tributary looks for it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::run as run_cmd;

/// Runs every setup step.
pub fn all(root: &Path) -> Result<()> {
    python(root)?;
    onnxruntime(root)?;
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
