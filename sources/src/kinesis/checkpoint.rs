//! Checkpoint stores for the Kinesis source: the last committed sequence number of every shard,
//! and whether a closed shard has been processed to its end (so that its children may start).
//!
//! `file` (the default) keeps one small JSON document, rewritten atomically (a temporary file
//! renamed over the old one) at every commit.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One shard's checkpoint.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq, Serialize)]
pub struct ShardCheckpoint {
    /// Everything up to and including this sequence number is done.
    pub sequence: Option<String>,
    /// The shard is closed and every record in it is done.
    #[serde(default)]
    pub finished: bool,
}

/// Checkpoints of one stream.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq, Serialize)]
pub struct Checkpoints {
    /// The stream they belong to.
    pub stream: String,
    /// By shard id.
    pub shards: BTreeMap<String, ShardCheckpoint>,
}

/// A checkpoint file.
#[derive(Clone, Debug)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// A store at `path` (created with its folder at the first save).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileStore { path: path.into() }
    }

    /// Reads the checkpoints; a missing file means none.
    ///
    /// # Errors
    /// An unreadable or corrupt file, or checkpoints of another stream.
    pub fn load(&self, stream: &str) -> Result<Checkpoints, String> {
        match std::fs::read(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Checkpoints { stream: stream.into(), shards: BTreeMap::new() })
            }
            Err(e) => Err(format!("cannot read checkpoint file {}: {e}", self.path.display())),
            Ok(bytes) => {
                let checkpoints: Checkpoints = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("checkpoint file {} is corrupt: {e}", self.path.display()))?;
                if checkpoints.stream != stream {
                    return Err(format!(
                        "checkpoint file {} belongs to stream {:?}, not {stream:?}",
                        self.path.display(),
                        checkpoints.stream
                    ));
                }
                Ok(checkpoints)
            }
        }
    }

    /// Writes the checkpoints atomically and durably (see
    /// [`tributary_framework::checkpoint_file`]).
    ///
    /// # Errors
    /// The folder or file cannot be written.
    pub async fn save(&self, checkpoints: &Checkpoints) -> Result<(), String> {
        let bytes = serde_json::to_vec_pretty(checkpoints).map_err(|e| e.to_string())?;
        tributary_framework::checkpoint_file::replace(&self.path, bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_stream_check() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("cp/rides.json"));
        assert!(store.load("rides").unwrap().shards.is_empty());
        let mut cp = Checkpoints { stream: "rides".into(), ..Checkpoints::default() };
        cp.shards.insert("shardId-0".into(), ShardCheckpoint { sequence: Some("42".into()), finished: true });
        store.save(&cp).await.unwrap();
        assert_eq!(store.load("rides").unwrap(), cp);
        assert!(store.load("other").unwrap_err().contains("belongs to stream"));
    }
}
