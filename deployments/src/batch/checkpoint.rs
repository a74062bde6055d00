//! The batch job's checkpoint: one entry per input file scored, written (atomically) after the
//! file's outputs are in place. A rerun skips a file whose entry matches its size and
//! modification time; a changed file is scored again; `--force` ignores the entries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What the checkpoint says about one input file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// The file's size when it was scored.
    pub size: u64,
    /// Its modification time, in milliseconds since the Unix epoch.
    pub modified_unix_ms: u64,
    /// Rows read.
    pub rows: u64,
    /// Rows predicted (by every processor).
    pub predicted: u64,
    /// Rejections dead-lettered.
    pub dead_lettered: u64,
}

/// Every input file scored so far, by path.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Input path -> what was done.
    pub files: BTreeMap<String, Done>,
    #[serde(skip)]
    path: PathBuf,
}

impl Checkpoint {
    /// Reads the checkpoint at `path` (empty when there is none).
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Checkpoint, String> {
        let mut checkpoint = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<Checkpoint>(&bytes)
                .map_err(|e| format!("{}: not a batch checkpoint: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Checkpoint::default(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        checkpoint.path = path.to_path_buf();
        Ok(checkpoint)
    }

    /// Whether `file` was scored as it is now.
    pub fn is_done(&self, file: &str, size: u64, modified_unix_ms: u64) -> bool {
        self.files.get(file).is_some_and(|d| d.size == size && d.modified_unix_ms == modified_unix_ms)
    }

    /// Records `file` as done and writes the checkpoint.
    ///
    /// # Errors
    /// The checkpoint cannot be written.
    pub fn mark(&mut self, file: &str, done: Done) -> Result<(), String> {
        self.files.insert(file.to_string(), done);
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        tributary_framework::checkpoint_file::replace_blocking(&self.path, &bytes)
    }
}

/// A file's size and modification time (milliseconds since the Unix epoch).
///
/// # Errors
/// The file cannot be examined.
pub fn stamp(file: &Path) -> Result<(u64, u64), String> {
    let meta = std::fs::metadata(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Ok((meta.len(), modified))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_done_only_as_it_was_scored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/_checkpoint.json");
        let mut checkpoint = Checkpoint::load(&path).unwrap();
        let input = "data/a.parquet";
        assert!(!checkpoint.is_done(input, 10, 5));
        checkpoint
            .mark(input, Done { size: 10, modified_unix_ms: 5, rows: 3, predicted: 3, dead_lettered: 0 })
            .unwrap();
        let again = Checkpoint::load(&path).unwrap();
        assert!(again.is_done(input, 10, 5));
        assert!(!again.is_done(input, 11, 5), "a changed file is scored again");
    }
}
