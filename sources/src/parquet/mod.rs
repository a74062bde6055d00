//! Source `parquet`: rows of Parquet files (a file, a folder, a glob), read as columns for the
//! batch job (`tributary run` on a config whose source is `parquet`; `deployments/src/batch/`).
//!
//! ```toml
//! [sources.trips]
//! type = "parquet"
//! path = "data/tlc/yellow_tripdata_2024-*.parquet"
//! # The event the processors read, as on a stream: each leaf "{column}" names the column that
//! # stands for that field. Only these columns (and the sink's pass-through ones) are read.
//! event = { ride = { PULocationID = "{PULocationID}", DOLocationID = "{DOLocationID}", trip_distance = "{trip_distance}" } }
//! ```
//!
//! Files are read in name order, row group by row group, `batch_rows` rows at a time, so memory
//! stays bounded whatever the file size. Schema drift is absorbed: a column is found by its
//! name, or case-insensitively when the exact name is absent (`airport_fee` and
//! `Airport_fee`), and cast to the type the processor wants (`int32` and `int64` zone ids are
//! both integers; `double` and `int64` passenger counts both numbers). A file whose columns
//! cannot serve fails with the file and the column named ([`read`]).

pub mod read;
#[cfg(feature = "parquet-s3")]
pub mod s3;
pub mod tlc;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use tributary_framework::config::ComponentSpec;
use tributary_framework::registry::BuildFuture;
use tributary_framework::{ConfigError, Source};

/// `[sources.<id>]` with `type = "parquet"`.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParquetConfig {
    /// A Parquet file, a folder (its `*.parquet` files), or a glob whose last part has `*` or
    /// `?` (`data/yellow_tripdata_2024-*.parquet`).
    pub path: String,
    /// The event the processors read, as a table whose leaves are `"{column}"`: the column
    /// that stands for that field (`ride = { trip_distance = "{trip_distance}" }`).
    pub event: Value,
    /// Rows per batch handed to the processors. Default 65536.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// What a file that cannot be read does to the job: `"continue"` (default: the other
    /// files are scored, the job exits non-zero naming it) or `"stop"`.
    #[serde(default)]
    pub on_file_error: OnFileError,
}

/// What a failed file does to the job.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFileError {
    /// Score the other files; fail the job at the end.
    #[default]
    Continue,
    /// Stop at the first failed file.
    Stop,
}

fn default_batch_rows() -> usize {
    65_536
}

impl ParquetConfig {
    /// The event fields and the columns that stand for them (`ride.PULocationID` ->
    /// `PULocationID`).
    ///
    /// # Errors
    /// The key and what is wrong, when a leaf is not `"{column}"`.
    pub fn fields(&self) -> Result<BTreeMap<String, String>, (String, String)> {
        let mut fields = BTreeMap::new();
        walk(&self.event, "", &mut fields)?;
        if fields.is_empty() {
            return Err(("event".into(), "maps no column: give a table such as { x = \"{column}\" }".into()));
        }
        Ok(fields)
    }
}

fn walk(value: &Value, path: &str, fields: &mut BTreeMap<String, String>) -> Result<(), (String, String)> {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                walk(value, &path, fields)?;
            }
            Ok(())
        }
        Value::String(s) if s.len() > 2 && s.starts_with('{') && s.ends_with('}') => {
            fields.insert(path.to_string(), s[1..s.len() - 1].to_string());
            Ok(())
        }
        other => Err((
            format!("event.{path}"),
            format!("must be \"{{column}}\" (the column that stands for this field), found {other}"),
        )),
    }
}

/// The files `path` names, in name order.
///
/// # Errors
/// Nothing matches, or the folder cannot be read.
pub fn list_files(path: &str) -> Result<Vec<PathBuf>, String> {
    let as_path = Path::new(path);
    let (dir, pattern) = if as_path.is_dir() {
        (as_path.to_path_buf(), "*.parquet".to_string())
    } else if as_path.is_file() {
        return Ok(vec![as_path.to_path_buf()]);
    } else {
        let name = as_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !name.contains(['*', '?']) {
            return Err(format!("{path}: no such file or folder"));
        }
        let dir = as_path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        (dir.to_path_buf(), name)
    };
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| wildcard(&pattern, &n.to_string_lossy())))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("{path}: no file matches"));
    }
    Ok(files)
}

/// Whether `name` matches `pattern`, where `*` is any run of characters and `?` one.
pub fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The registry entry: a `parquet` source runs as a batch job, which builds it itself; any
/// other command is told so.
pub fn build(spec: ComponentSpec) -> BuildFuture<Box<dyn Source>> {
    Box::pin(async move {
        Err::<Box<dyn Source>, ConfigError>(spec.error(
            "type",
            "a parquet source runs as a batch job: `tributary run --config <file>` (processors that take columns, \
             parquet sinks)",
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard("*.parquet", "yellow_tripdata_2024-01.parquet"));
        assert!(wildcard("yellow_*_2024-0?.parquet", "yellow_tripdata_2024-01.parquet"));
        assert!(!wildcard("*.parquet", "notes.txt"));
        assert!(!wildcard("a?c", "abbc"));
        assert!(wildcard("*", ""));
    }

    #[test]
    fn event_fields_map_paths_to_columns() {
        let config: ParquetConfig = serde_json::from_value(serde_json::json!({
            "path": "x",
            "event": {"ride": {"PULocationID": "{PULocationID}", "trip_distance": "{trip_distance}"}},
        }))
        .unwrap();
        let fields = config.fields().unwrap();
        assert_eq!(fields["ride.PULocationID"], "PULocationID");
        assert_eq!(fields["ride.trip_distance"], "trip_distance");
        let bad: ParquetConfig =
            serde_json::from_value(serde_json::json!({"path": "x", "event": {"ride": {"x": 3}}})).unwrap();
        assert_eq!(bad.fields().unwrap_err().0, "event.ride.x");
    }

    #[test]
    fn files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.parquet", "a.parquet", "c.txt"] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let files = list_files(&dir.path().display().to_string()).unwrap();
        let names: Vec<_> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["a.parquet", "b.parquet"]);
        let glob = list_files(&dir.path().join("b*").display().to_string()).unwrap();
        assert_eq!(glob.len(), 1);
        assert!(list_files(&dir.path().join("z*").display().to_string()).unwrap_err().contains("no file matches"));
    }
}
