//! `cargo xtask` acts on the clone it is run in, even when clones share a target directory.
//!
//! CI (and a developer's fresh-clone check) builds every clone into one `CARGO_TARGET_DIR`.
//! cargo then hands the second clone the first clone's xtask binary, unchanged; when xtask
//! compiled its repository path in (`env!("CARGO_MANIFEST_DIR")`), `cargo xtask setup`, `demo`
//! and `test` in the second clone ran in the first clone's folder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// This checkout: the parent of the xtask crate, as cargo tells the test at run time.
fn checkout() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("run with cargo test");
    Path::new(&manifest_dir).parent().unwrap().to_path_buf()
}

/// Copies the working tree's files that git tracks or would track (uncommitted ones included,
/// so the test checks the code under test, not the last commit) into `to`.
fn clone_working_tree(from: &Path, to: &Path) {
    let listing = Command::new("git")
        .args(["ls-files", "-z", "--cached", "--others", "--exclude-standard"])
        .current_dir(from)
        .output()
        .expect("git ls-files");
    assert!(listing.status.success(), "git ls-files failed in {}", from.display());
    for relative in listing.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let relative = Path::new(std::str::from_utf8(relative).unwrap());
        let source = from.join(relative);
        if !source.is_file() {
            continue; // deleted in the working tree
        }
        let target = to.join(relative);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&source, &target).unwrap();
    }
}

/// Runs `cargo xtask services status` in `clone` with `target_dir`; returns stdout and stderr.
fn xtask_status(clone: &Path, target_dir: &Path) -> String {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["xtask", "services", "status"])
        .current_dir(clone)
        .env("CARGO_TARGET_DIR", target_dir)
        .env_remove("CARGO_MANIFEST_DIR")
        .output()
        .expect("cargo xtask");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "cargo xtask services status failed in {}:\n{text}", clone.display());
    text
}

#[test]
fn xtask_in_a_second_clone_sharing_the_target_dir_acts_on_the_second_clone() {
    let scratch = tempfile::tempdir().unwrap();
    let (first, second, target) =
        (scratch.path().join("first"), scratch.path().join("second"), scratch.path().join("target"));
    clone_working_tree(&checkout(), &first);
    clone_working_tree(&checkout(), &second);

    let from_first = xtask_status(&first, &target);
    assert!(from_first.contains(&format!("xtask: repository {}\n", first.display())), "{from_first}");

    let from_second = xtask_status(&second, &target);
    assert!(from_second.contains(&format!("xtask: repository {}\n", second.display())), "{from_second}");
    assert!(from_second.contains(&second.join(".services").display().to_string()), "{from_second}");
    assert!(
        !from_second.contains(&first.display().to_string()),
        "the second clone's xtask names the first:\n{from_second}"
    );
}
