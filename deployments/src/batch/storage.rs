//! Where a batch job's files live: local paths, or `s3://` URLs (feature `parquet-s3`). Inputs
//! on S3 are downloaded to a temporary file before they are read; outputs for S3 are written
//! locally, then uploaded whole.

use std::path::{Path, PathBuf};

/// One input file.
#[derive(Clone, Debug)]
pub(crate) enum InputFile {
    Local(PathBuf),
    #[cfg(feature = "parquet-s3")]
    S3(tributary_sources::parquet::s3::S3Object),
}

impl InputFile {
    /// The path or URL, as messages and the checkpoint name it.
    pub fn key(&self) -> String {
        match self {
            InputFile::Local(path) => path.display().to_string(),
            #[cfg(feature = "parquet-s3")]
            InputFile::S3(object) => object.url(),
        }
    }

    /// The file name its outputs take.
    pub fn name(&self) -> String {
        match self {
            InputFile::Local(path) => path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            #[cfg(feature = "parquet-s3")]
            InputFile::S3(object) => object.name().to_string(),
        }
    }

    /// Size and modification time (ms since the Unix epoch).
    pub fn stamp(&self) -> Result<(u64, u64), String> {
        match self {
            InputFile::Local(path) => super::checkpoint::stamp(path),
            #[cfg(feature = "parquet-s3")]
            InputFile::S3(object) => Ok((object.size, object.modified_unix_ms)),
        }
    }
}

/// Clients and scratch space for the job's remote files.
pub(crate) struct Storage {
    #[cfg(feature = "parquet-s3")]
    s3: Option<aws_sdk_s3::Client>,
    /// Downloads and staged outputs (removed when the job ends).
    scratch: tempfile::TempDir,
}

/// A local copy of an input, kept while it is read.
pub(crate) struct Fetched {
    pub path: PathBuf,
    _download: Option<tempfile::TempPath>,
}

impl Storage {
    /// Storage for paths like `paths` (an S3 client is made when one of them is `s3://`).
    pub async fn new(paths: &[&str]) -> Result<Storage, String> {
        let remote = paths.iter().any(|p| p.starts_with("s3://"));
        #[cfg(not(feature = "parquet-s3"))]
        if remote {
            return Err("s3:// paths need a build with the `parquet-s3` feature".into());
        }
        Ok(Storage {
            #[cfg(feature = "parquet-s3")]
            s3: if remote { Some(tributary_aws::s3_client().await) } else { None },
            scratch: tempfile::Builder::new()
                .prefix("tributary-batch-")
                .tempdir()
                .map_err(|e| format!("cannot make a scratch folder: {e}"))?,
        })
    }

    /// The files `path` names, in order.
    pub async fn list(&self, path: &str) -> Result<Vec<InputFile>, String> {
        #[cfg(feature = "parquet-s3")]
        if let Some(client) = &self.s3
            && path.starts_with("s3://")
        {
            let objects = tributary_sources::parquet::s3::list(client, path).await?;
            return Ok(objects.into_iter().map(InputFile::S3).collect());
        }
        Ok(tributary_sources::parquet::list_files(path)?.into_iter().map(InputFile::Local).collect())
    }

    /// A local file to read `input` from.
    pub async fn fetch(&self, input: &InputFile) -> Result<Fetched, String> {
        match input {
            InputFile::Local(path) => Ok(Fetched { path: path.clone(), _download: None }),
            #[cfg(feature = "parquet-s3")]
            InputFile::S3(object) => {
                let client = self.s3.as_ref().ok_or("no S3 client")?;
                let download = tempfile::Builder::new()
                    .suffix(".parquet")
                    .tempfile_in(self.scratch.path())
                    .map_err(|e| format!("cannot make a download file: {e}"))?
                    .into_temp_path();
                tributary_sources::parquet::s3::download(client, object, &download).await?;
                Ok(Fetched { path: download.to_path_buf(), _download: Some(download) })
            }
        }
    }

    /// The local folder an output sink writes to: its own path, or scratch space for `s3://`.
    pub fn output_dir(&self, sink_path: &str, sink_id: &str) -> PathBuf {
        if sink_path.starts_with("s3://") { self.scratch.path().join(sink_id) } else { PathBuf::from(sink_path) }
    }

    /// Puts a finished output file where its sink's path says: nothing to do locally; for
    /// `s3://bucket/prefix/` an upload to `<prefix><name>`, then the local copy is removed.
    pub async fn publish(&self, sink_path: &str, file: &Path) -> Result<(), String> {
        if !sink_path.starts_with("s3://") {
            return Ok(());
        }
        #[cfg(feature = "parquet-s3")]
        {
            let client = self.s3.as_ref().ok_or("no S3 client")?;
            let (bucket, prefix) = tributary_sources::parquet::s3::parse_url(sink_path)
                .ok_or_else(|| format!("{sink_path}: expected s3://bucket/prefix/"))?;
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let key = if prefix.is_empty() || prefix.ends_with('/') {
                format!("{prefix}{name}")
            } else {
                format!("{prefix}/{name}")
            };
            tributary_sinks::parquet::s3::upload(client, file, bucket, &key).await?;
            let _ = std::fs::remove_file(file);
            Ok(())
        }
        #[cfg(not(feature = "parquet-s3"))]
        {
            let _ = file;
            Err("s3:// paths need a build with the `parquet-s3` feature".into())
        }
    }

    /// Cleans up after a killed run: temporary files in a local output folder, unfinished
    /// uploads under an S3 prefix. Returns how many.
    pub async fn clean(&self, sink_path: &str) -> usize {
        #[cfg(feature = "parquet-s3")]
        if let (Some(client), Some((bucket, prefix))) = (&self.s3, tributary_sources::parquet::s3::parse_url(sink_path))
        {
            return tributary_sinks::parquet::s3::abort_unfinished(client, bucket, prefix).await;
        }
        tributary_sinks::parquet::remove_temporaries(Path::new(sink_path))
    }
}
