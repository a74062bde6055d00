//! Checkpoint files (the Kinesis source's file store, shared-source consumer checkpoints),
//! replaced atomically and durably: the new content goes to a temporary file beside the old
//! one, is flushed to disk (`fsync`), renamed over the old one, and the folder is flushed so
//! the rename survives a power cut. A crash at any point leaves the old checkpoint or the new
//! one, never a mix. The blocking file calls run on tokio's blocking pool, not on the
//! pipeline's worker threads.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Replaces `path` with `bytes` (see the module), off the async worker threads.
///
/// # Errors
/// The folder, the temporary file or the rename fails; the old file is then unchanged.
pub async fn replace(path: &Path, bytes: Vec<u8>) -> Result<(), String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || replace_blocking(&path, &bytes))
        .await
        .map_err(|e| format!("checkpoint writer stopped: {e}"))?
}

/// [`replace`], on the calling thread.
///
/// # Errors
/// As [`replace`].
pub fn replace_blocking(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).map(Path::to_path_buf);
    if let Some(dir) = &dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let tmp = temporary(path);
    let written = std::fs::File::create(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("cannot write {}: {e}", tmp.display()));
    }
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))?;
    let folder = dir.unwrap_or_else(|| PathBuf::from("."));
    std::fs::File::open(&folder)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("cannot flush the folder {}: {e}", folder.display()))
}

/// `<path>.tmp`, beside it.
fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_checkpoint_is_replaced_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp/rides.json");
        replace(&path, b"[1]".to_vec()).await.unwrap();
        replace(&path, b"[1, 2]".to_vec()).await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"[1, 2]");
        assert!(!temporary(&path).exists(), "no temporary file left behind");
        // A write that cannot happen (the temporary name is taken by a folder) leaves the old
        // checkpoint as it was.
        std::fs::create_dir(temporary(&path)).unwrap();
        let error = replace(&path, b"[3]".to_vec()).await.unwrap_err();
        assert!(error.contains("cannot write"), "{error}");
        assert_eq!(std::fs::read(&path).unwrap(), b"[1, 2]");
    }
}
