//! `cargo xtask fuzz [--seconds N] [--runs N] [target ...]`: runs the cargo-fuzz targets of
//! `fuzz/` under libFuzzer on the nightly toolchain (installing cargo-fuzz once), each for N
//! seconds (default 60) or N executions (`--runs`, whichever ends first when both are given),
//! growing its corpus in `fuzz/corpus/<target>` (then minimized to the inputs that keep its
//! coverage); crashes land in `fuzz/artifacts/<target>`.
//! Prints the executions, the corpus size and the outcome of each target. The stable test
//! `tests/tests/fuzz_corpora.rs` replays both folders in every `cargo xtask test`.
//!
//! Built without a sanitizer (`--sanitizer none`): tributary's crates forbid `unsafe`, and what
//! is looked for is panics, hangs (`-timeout=10`) and memory blow-ups (`-rss_limit_mb=2048`,
//! inputs up to 64 KiB); it runs about twice as fast as under AddressSanitizer.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::setup::CARGO_FUZZ;

/// The targets, as in `fuzz/Cargo.toml` and `tributary_tests::fuzz::TARGETS`.
const TARGETS: &[&str] =
    &["documents", "kinesis_event", "lambda_event", "template", "config", "http_request", "parquet_file", "ride_event"];

pub fn run(root: &Path, args: &[&str]) -> Result<()> {
    let mut seconds: Option<u64> = None;
    let mut runs: Option<u64> = None;
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match *arg {
            "--seconds" => {
                seconds = Some(args.next().and_then(|s| s.parse().ok()).context("--seconds takes a number")?);
            }
            "--runs" => {
                runs = Some(args.next().and_then(|s| s.parse().ok()).context("--runs takes a number")?);
            }
            name if TARGETS.contains(&name) => targets.push(name),
            other => bail!("unknown fuzz target or option {other:?}; targets: {}", TARGETS.join(", ")),
        }
    }
    if targets.is_empty() {
        targets = TARGETS.to_vec();
    }
    let toolchains = Command::new("rustup").args(["toolchain", "list"]).output().context("running rustup")?;
    if !String::from_utf8_lossy(&toolchains.stdout).lines().any(|l| l.starts_with("nightly")) {
        bail!(
            "cargo fuzz needs a nightly toolchain and this machine has none (`rustup toolchain list`); \
             the stable replay of the corpora still runs in `cargo xtask test`"
        );
    }
    CARGO_FUZZ.install(root)?;
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), std::path::PathBuf::from).join("fuzz");
    let fuzz = |args: &[&str]| {
        let mut cmd = Command::new(CARGO_FUZZ.binary());
        cmd.current_dir(root)
            .env("RUSTUP_TOOLCHAIN", "nightly")
            .env_remove("CARGO_TARGET_DIR")
            .arg("fuzz")
            .args(args)
            .args(["--sanitizer", "none", "--target-dir"])
            .arg(&target_dir);
        cmd
    };
    eprintln!("xtask: building the fuzz targets (nightly, release)");
    if targets.len() == TARGETS.len() {
        crate::run(root, &mut fuzz(&["build"]))?;
    } else {
        for target in &targets {
            crate::run(root, fuzz(&["build"]).arg(target))?;
        }
    }
    let logs = target_dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let mut summary = Vec::new();
    for target in targets {
        let corpus = root.join("fuzz/corpus").join(target);
        let artifacts = root.join("fuzz/artifacts").join(target);
        std::fs::create_dir_all(&corpus)?;
        std::fs::create_dir_all(&artifacts)?;
        let log_path = logs.join(format!("{target}.log"));
        let mut limits = Vec::new();
        if let Some(runs) = runs {
            limits.push(format!("-runs={runs}"));
        }
        if let Some(seconds) = seconds.or(if runs.is_some() { None } else { Some(60) }) {
            limits.push(format!("-max_total_time={seconds}"));
        }
        eprintln!("xtask: fuzzing {target} ({}; libFuzzer's log: {})", limits.join(" "), log_path.display());
        let status = fuzz(&["run"])
            .arg(target)
            .arg(&corpus)
            .arg("--")
            .args(&limits)
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .args(["-timeout=10", "-rss_limit_mb=2048", "-max_len=65536", "-print_final_stats=1"])
            .stderr(std::fs::File::create(&log_path)?)
            .status()
            .with_context(|| format!("running {}", CARGO_FUZZ.binary().display()))?;
        let log = String::from_utf8_lossy(&std::fs::read(&log_path)?).into_owned();
        // Keeps the corpus small enough to commit: a smallest set of inputs with the same
        // coverage (libFuzzer's -set_cover_merge), which replaces the corpus.
        let minimal = target_dir.join("minimal").join(target);
        let _ = std::fs::remove_dir_all(&minimal);
        std::fs::create_dir_all(&minimal)?;
        let merge_log = std::fs::File::create(logs.join(format!("{target}.merge.log")))?;
        let merged = fuzz(&["run"])
            .arg(target)
            .arg(&minimal)
            .arg(&corpus)
            .args(["--", "-set_cover_merge=1"])
            .stdout(merge_log.try_clone()?)
            .stderr(merge_log)
            .status();
        if merged.is_ok_and(|s| s.success()) && std::fs::read_dir(&minimal).is_ok_and(|mut d| d.next().is_some()) {
            std::fs::remove_dir_all(&corpus)?;
            std::fs::rename(&minimal, &corpus).or_else(|_| copy_dir(&minimal, &corpus))?;
        } else {
            eprintln!("xtask: minimizing the {target} corpus failed; it is left as the run grew it");
        }
        let stat = |name: &str| {
            log.lines()
                .find_map(|l| l.strip_prefix(&format!("stat::{name}:")))
                .map_or_else(|| "?".to_string(), |v| v.trim().to_string())
        };
        let files = std::fs::read_dir(&corpus).map(Iterator::count).unwrap_or(0);
        let outcome = if status.success() { "ok".to_string() } else { format!("FAILED ({status})") };
        if !status.success() {
            eprintln!(
                "{}",
                log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        summary.push((target, stat("number_of_executed_units"), stat("peak_rss_mb"), files, outcome));
    }
    println!("\n| target | executions | peak RSS (MB) | corpus files | outcome |\n|---|---|---|---|---|");
    for (target, execs, rss, files, outcome) in &summary {
        println!("| {target} | {execs} | {rss} | {files} | {outcome} |");
    }
    if summary.iter().any(|s| s.4 != "ok") {
        bail!("a fuzz target failed: its input is in fuzz/artifacts/<target>/ (commit it: the replay test keeps it)");
    }
    Ok(())
}

/// Copies the files of `from` into a new folder `to` (when a rename crosses file systems).
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}
