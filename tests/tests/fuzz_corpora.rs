//! Replays every committed fuzz input on stable: each target's corpus (`fuzz/corpus/<target>`:
//! the seeds' samples, the example configs, and what `cargo xtask fuzz` found interesting) and
//! every crash it ever wrote (`fuzz/artifacts/<target>`), through the same bodies libFuzzer
//! runs (`tributary_tests::fuzz`). A fixed crash stays fixed without a nightly toolchain.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::{AssertUnwindSafe, catch_unwind};

use tributary_tests::fuzz::TARGETS;
use tributary_tests::repo_root;

#[test]
fn every_committed_fuzz_input_runs_without_a_panic() {
    let mut failures = Vec::new();
    for (name, body) in TARGETS {
        let mut replayed = 0;
        for folder in ["corpus", "artifacts"] {
            let dir = repo_root().join("fuzz").join(folder).join(name);
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries {
                let path = entry.unwrap().path();
                // (A file a running `cargo xtask fuzz` just replaced is skipped.)
                let Ok(data) = std::fs::read(&path) else { continue };
                if catch_unwind(AssertUnwindSafe(|| body(&data))).is_err() {
                    failures.push(path.display().to_string());
                }
                replayed += 1;
            }
        }
        assert!(replayed > 0, "fuzz/corpus/{name} is empty: the seed corpus is committed");
    }
    assert!(failures.is_empty(), "inputs that panic: {failures:#?}");
}
