//! Sink `parquet`: the batch job's predictions, written columnar, one output file per input
//! file, atomically.
//!
//! ```toml
//! [sinks.predictions]
//! type = "parquet"
//! inputs = ["ride_duration"]
//! path = "target/batch/predictions"      # a folder; one file per input file, same name
//! columns = ["tpep_pickup_datetime", "PULocationID", "DOLocationID", "trip_distance"]
//! ```
//!
//! Each output file holds the chosen input columns as the input file has them, then the
//! processor's columns (for `ride_duration`: `ride_duration`, `model`, `version`), for the rows
//! the processor predicted (rejected rows go to the dead-letter destination). It is written to
//! `.<name>.tributary-tmp` in the same folder, flushed to disk, then renamed: a job killed
//! mid-file leaves no file under the final name, only a temporary one the next run removes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::types::Int8Type;
use arrow_array::{
    ArrayRef, BooleanArray, DictionaryArray, Float64Array, Int8Array, Int64Array, RecordBatch, StringArray,
};
use arrow_buffer::{BooleanBuffer, NullBuffer};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde::Deserialize;
use tributary_framework::columns::{Column, ColumnData};
use tributary_framework::config::ComponentSpec;
use tributary_framework::registry::BuildFuture;
use tributary_framework::{ConfigError, Sink};

/// What marks a temporary output file.
pub const TEMPORARY_SUFFIX: &str = ".tributary-tmp";

/// `[sinks.<id>]` with `type = "parquet"`.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParquetSinkConfig {
    /// The folder output files go to (created when missing); each takes its input file's name.
    pub path: String,
    /// Input columns copied into the output, before the prediction columns (a ride's pickup
    /// time, its zones). Default: none.
    #[serde(default)]
    pub columns: Vec<String>,
    /// `"zstd"` (default), `"snappy"` or `"none"`.
    #[serde(default = "default_compression")]
    pub compression: String,
}

fn default_compression() -> String {
    "zstd".into()
}

impl ParquetSinkConfig {
    /// The Parquet compression the config names.
    ///
    /// # Errors
    /// An unknown name.
    pub fn codec(&self) -> Result<Compression, String> {
        match self.compression.as_str() {
            "zstd" => Ok(Compression::ZSTD(ZstdLevel::default())),
            "snappy" => Ok(Compression::SNAPPY),
            "none" => Ok(Compression::UNCOMPRESSED),
            other => Err(format!("unknown compression {other:?}: use \"zstd\", \"snappy\" or \"none\"")),
        }
    }
}

/// One output file being written under its temporary name.
pub struct OutputFile {
    temporary: PathBuf,
    path: PathBuf,
    codec: Compression,
    writer: Option<ArrowWriter<File>>,
    rows: u64,
}

impl OutputFile {
    /// Starts `dir/name` (nothing is created before the first batch).
    ///
    /// # Errors
    /// The folder cannot be created.
    pub fn start(dir: &Path, name: &str, codec: Compression) -> Result<OutputFile, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(OutputFile {
            temporary: dir.join(format!(".{name}{TEMPORARY_SUFFIX}")),
            path: dir.join(name),
            codec,
            writer: None,
            rows: 0,
        })
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the rows whose `keep` is true: the pass-through columns, then `outputs`.
    ///
    /// # Errors
    /// The columns do not line up, or the write fails.
    pub fn write(
        &mut self,
        passthrough: &RecordBatch,
        outputs: &[(String, Column)],
        keep: &[bool],
    ) -> Result<(), String> {
        let mut fields: Vec<Field> = passthrough.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut arrays: Vec<ArrayRef> = passthrough.columns().to_vec();
        for (name, column) in outputs {
            if fields.iter().any(|f| f.name() == name) {
                return Err(format!(
                    "the processor writes a column `{name}` and the sink copies an input column of that name: leave it out of `columns`"
                ));
            }
            let array = to_array(column);
            fields.push(Field::new(name, array.data_type().clone(), true));
            arrays.push(array);
        }
        let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(keep.len()));
        let batch = RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
            .map_err(|e| format!("output columns do not line up: {e}"))?;
        // The kept rows as a few runs of neighbouring rows, each written as a slice of the batch
        // (no copy); rows rejected all over the batch are filtered out into a new batch instead.
        let runs = kept_runs(keep);
        let pieces = if runs.len() <= MAX_SLICES {
            runs.iter().map(|&(start, len)| batch.slice(start, len)).collect()
        } else {
            vec![
                arrow_select::filter::filter_record_batch(&batch, &BooleanArray::from(keep.to_vec()))
                    .map_err(|e| e.to_string())?,
            ]
        };
        if self.writer.is_none() {
            let file = File::create(&self.temporary)
                .map_err(|e| format!("cannot create {}: {e}", self.temporary.display()))?;
            // A column with the same text in every row (the model's name and version) arrives as
            // an Arrow dictionary of one value (see `to_array`), so the dictionary encoder hashes
            // the text once per batch, not once per row; its min/max statistics are not kept
            // (comparing every row's text with the last: 4% of the job's profile), since they
            // would say only what every row says.
            let mut builder = WriterProperties::builder().set_compression(self.codec);
            for (name, column) in outputs {
                if matches!(column.data, ColumnData::Same(..)) {
                    let path = ColumnPath::from(name.as_str());
                    builder = builder.set_column_statistics_enabled(path, EnabledStatistics::None);
                }
            }
            builder = with_encodings(builder, &batch.schema(), outputs);
            let properties = builder.build();
            // The file's schema is Parquet's own: no Arrow schema in its metadata, which would
            // make readers (pyarrow, pandas) load the constant columns as dictionaries.
            let options = ArrowWriterOptions::new().with_properties(properties).with_skip_arrow_metadata(true);
            self.writer = Some(
                ArrowWriter::try_new_with_options(file, batch.schema(), options)
                    .map_err(|e| format!("{}: {e}", self.temporary.display()))?,
            );
        }
        let writer = self.writer.as_mut().ok_or("no writer")?;
        for piece in pieces {
            writer.write(&piece).map_err(|e| format!("{}: {e}", self.temporary.display()))?;
            self.rows += piece.num_rows() as u64;
        }
        Ok(())
    }

    /// Finishes the file: footer, flush to disk, rename to the final name, flush the folder.
    /// Returns the rows written (0 when no batch came, and then no file is made).
    ///
    /// # Errors
    /// Any step fails; the final name is then untouched.
    pub fn commit(mut self) -> Result<u64, String> {
        let Some(writer) = self.writer.take() else {
            return Ok(0);
        };
        let file = writer.into_inner().map_err(|e| format!("{}: {e}", self.temporary.display()))?;
        file.sync_all().map_err(|e| format!("{}: {e}", self.temporary.display()))?;
        std::fs::rename(&self.temporary, &self.path)
            .map_err(|e| format!("cannot rename {} to {}: {e}", self.temporary.display(), self.path.display()))?;
        if let Some(dir) = self.path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(|e| format!("cannot flush {}: {e}", dir.display()))?;
        }
        Ok(self.rows)
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

/// Encodings for the columns whose values are nearly all different, where a dictionary only
/// costs: the writer hashes every value until the dictionary is full (1 MiB), then writes the
/// rest plain, and zstd finds little to match in plain 8-byte values.
///
/// - A processor's float columns (predictions): `BYTE_STREAM_SPLIT`, the encoding Parquet has
///   for floating-point data (each byte of the values in its own stream, which zstd compresses
///   faster and better; a float32 model's predictions widened to float64 have zero low bytes).
/// - Timestamps among the copied input columns (a ride's pickup time): `DELTA_BINARY_PACKED`.
///
/// On a TLC month (3M rows, the seeds' columns and `ride_duration`) the writer took about a
/// quarter less CPU time and the file was 4% smaller (BENCHMARKS.md). Both encodings are read by
/// pyarrow, pandas, DuckDB and Spark.
fn with_encodings(
    mut builder: parquet::file::properties::WriterPropertiesBuilder,
    schema: &Schema,
    outputs: &[(String, Column)],
) -> parquet::file::properties::WriterPropertiesBuilder {
    let mut set = |name: &str, encoding: Encoding| {
        let path = ColumnPath::from(name);
        builder = std::mem::take(&mut builder)
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path, encoding);
    };
    for field in schema.fields() {
        if matches!(field.data_type(), DataType::Timestamp(..)) {
            set(field.name(), Encoding::DELTA_BINARY_PACKED);
        }
    }
    for (name, column) in outputs {
        if matches!(column.data, ColumnData::Float64(_)) {
            set(name, Encoding::BYTE_STREAM_SPLIT);
        }
    }
    builder
}

/// Up to this many runs of kept rows, a batch is written as slices of itself rather than
/// filtered into a copy (with one bad row in 10,000 a batch has a run or two).
const MAX_SLICES: usize = 8;

/// The runs of `true` in `keep`, as (first row, length).
fn kept_runs(keep: &[bool]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, &k) in keep.iter().chain([&false]).enumerate() {
        match (k, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push((s, i - s));
                start = None;
            }
            _ => {}
        }
    }
    runs
}

/// Removes the temporary files a killed job left in `dir`; returns how many.
pub fn remove_temporaries(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(TEMPORARY_SUFFIX))
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

fn to_array(column: &Column) -> ArrayRef {
    // Arrow's validity is the opposite of `nulls`: true where a row has a value.
    let validity =
        || column.nulls.as_ref().map(|nulls| NullBuffer::new(BooleanBuffer::collect_bool(nulls.len(), |i| !nulls[i])));
    match &column.data {
        ColumnData::Int64(v) => Arc::new(Int64Array::new(v.clone().into(), validity())),
        ColumnData::Float64(v) => Arc::new(Float64Array::new(v.clone().into(), validity())),
        ColumnData::Utf8(v) => {
            Arc::new(StringArray::from_iter(v.iter().enumerate().map(|(i, x)| (!column.is_null(i)).then_some(x))))
        }
        ColumnData::Same(text, rows) => Arc::new(DictionaryArray::<Int8Type>::new(
            Int8Array::from(vec![0; *rows]),
            Arc::new(StringArray::from_iter_values([text])),
        )),
    }
}

/// The registry entry: a `parquet` sink is written by the batch job, which builds it itself;
/// any other command is told so.
pub fn build(spec: ComponentSpec) -> BuildFuture<Arc<dyn Sink>> {
    Box::pin(async move {
        Err::<Arc<dyn Sink>, ConfigError>(spec.error(
            "type",
            "a parquet sink is written by a batch job: `tributary run --config <file>` with a parquet source",
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Int32Array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    #[test]
    fn an_output_file_appears_whole_under_its_name_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let ids: ArrayRef = Arc::new(Int32Array::from(vec![1, 2, 3]));
        let input = RecordBatch::try_from_iter([("PULocationID", ids)]).unwrap();
        let predictions = Column::new(ColumnData::Float64(vec![10.0, 0.0, 12.5]));
        let outputs = vec![
            ("ride_duration".to_string(), predictions),
            ("version".to_string(), Column::new(ColumnData::Same("v1".into(), 3))),
        ];
        let mut out = OutputFile::start(dir.path(), "a.parquet", Compression::SNAPPY).unwrap();
        out.write(&input, &outputs, &[true, false, true]).unwrap();
        assert!(!dir.path().join("a.parquet").exists(), "nothing under the final name before commit");
        assert_eq!(out.commit().unwrap(), 2);
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(dir.path().join("a.parquet")).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let batch = reader.map(Result::unwrap).next().unwrap();
        assert_eq!(batch.num_rows(), 2);
        let names: Vec<_> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["PULocationID", "ride_duration", "version"]);
        // An abandoned file leaves only its temporary name, which the next run removes.
        let mut abandoned = OutputFile::start(dir.path(), "b.parquet", Compression::SNAPPY).unwrap();
        abandoned.write(&input, &outputs, &[true; 3]).unwrap();
        std::mem::forget(abandoned);
        assert!(!dir.path().join("b.parquet").exists());
        assert_eq!(remove_temporaries(dir.path()), 1);
    }

    #[test]
    fn kept_rows_are_written_in_order_whether_sliced_or_filtered() {
        use arrow_array::cast::AsArray;
        assert_eq!(kept_runs(&[true, true, false, true, false, false, true]), [(0, 2), (3, 1), (6, 1)]);
        assert_eq!(kept_runs(&[false, false]), []);
        let rows = 40;
        let dir = tempfile::tempdir().unwrap();
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows));
        let input = RecordBatch::try_from_iter([("ride_id", ids)]).unwrap();
        let outputs = vec![(
            "ride_duration".to_string(),
            Column::new(ColumnData::Float64((0..rows).map(|i| i as f64 / 2.0).collect())),
        )];
        // A few runs (written as slices), then every third row gone (filtered: more runs than
        // MAX_SLICES), then no row at all.
        let few: Vec<bool> = (0..rows).map(|i| ![0, 7, 8, 39].contains(&i)).collect();
        let many: Vec<bool> = (0..rows).map(|i| i % 3 != 0).collect();
        assert!(kept_runs(&few).len() <= MAX_SLICES && kept_runs(&many).len() > MAX_SLICES);
        let mut out = OutputFile::start(dir.path(), "a.parquet", Compression::SNAPPY).unwrap();
        for keep in [&few, &many, &vec![false; rows as usize]] {
            out.write(&input, &outputs, keep).unwrap();
        }
        let expected: Vec<i64> =
            [&few, &many].iter().flat_map(|keep| (0..rows).filter(|&i| keep[i as usize])).collect();
        assert_eq!(out.commit().unwrap(), expected.len() as u64);
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(dir.path().join("a.parquet")).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let (mut ids, mut durations) = (Vec::new(), Vec::new());
        for batch in reader.map(Result::unwrap) {
            ids.extend(batch.column(0).as_primitive::<arrow_array::types::Int64Type>().values().iter().copied());
            durations
                .extend(batch.column(1).as_primitive::<arrow_array::types::Float64Type>().values().iter().copied());
        }
        assert_eq!(ids, expected);
        assert_eq!(durations, expected.iter().map(|&i| i as f64 / 2.0).collect::<Vec<_>>());
    }

    #[test]
    fn predictions_are_byte_stream_split_and_timestamps_delta_encoded_and_read_back_unchanged() {
        use arrow_array::TimestampMicrosecondArray;
        use arrow_array::cast::AsArray;
        let dir = tempfile::tempdir().unwrap();
        let pickups = vec![1_704_067_200_000_000_i64, 1_704_067_260_000_000, 1_704_067_200_500_000];
        let times: ArrayRef = Arc::new(TimestampMicrosecondArray::from(pickups.clone()));
        let miles: ArrayRef = Arc::new(Float64Array::from(vec![3.66, 1.0, 2.5]));
        let input = RecordBatch::try_from_iter([("tpep_pickup_datetime", times), ("trip_distance", miles)]).unwrap();
        let durations = vec![22.232_950_210_571_29, 0.0, -1.5];
        let outputs = vec![(
            "ride_duration".to_string(),
            Column { data: ColumnData::Float64(durations.clone()), nulls: Some(vec![false, true, false]) },
        )];
        let mut out = OutputFile::start(dir.path(), "a.parquet", Compression::ZSTD(ZstdLevel::default())).unwrap();
        out.write(&input, &outputs, &[true; 3]).unwrap();
        out.commit().unwrap();
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(File::open(dir.path().join("a.parquet")).unwrap()).unwrap();
        let chunks = builder.metadata().row_group(0).columns();
        let encodings = |i: usize| chunks[i].encodings().collect::<Vec<Encoding>>();
        assert!(encodings(0).contains(&Encoding::DELTA_BINARY_PACKED), "{:?}", encodings(0));
        // A copied float column keeps its dictionary: a distance has few values.
        assert!(encodings(1).contains(&Encoding::RLE_DICTIONARY), "{:?}", encodings(1));
        assert!(encodings(2).contains(&Encoding::BYTE_STREAM_SPLIT), "{:?}", encodings(2));
        assert!(!encodings(2).contains(&Encoding::RLE_DICTIONARY), "{:?}", encodings(2));
        let batch = builder.build().unwrap().map(Result::unwrap).next().unwrap();
        let read = batch.column(0).as_primitive::<arrow_array::types::TimestampMicrosecondType>();
        assert_eq!(read.values().to_vec(), pickups);
        let read = batch.column(2).as_primitive::<arrow_array::types::Float64Type>();
        assert_eq!(read.iter().collect::<Vec<_>>(), [Some(durations[0]), None, Some(durations[2])]);
    }

    #[test]
    fn constant_columns_read_back_as_text_in_every_row_and_are_stored_as_a_dictionary() {
        use arrow_array::cast::AsArray;
        use parquet::basic::Encoding;
        let dir = tempfile::tempdir().unwrap();
        let ids: ArrayRef = Arc::new(Int32Array::from(vec![1, 2, 3]));
        let input = RecordBatch::try_from_iter([("PULocationID", ids)]).unwrap();
        let outputs = vec![
            (
                "ride_duration".to_string(),
                Column { data: ColumnData::Float64(vec![10.0, 0.0, 12.5]), nulls: Some(vec![false, true, false]) },
            ),
            ("model".to_string(), Column::new(ColumnData::Same("ride_duration_prediction_model".into(), 3))),
        ];
        let mut out = OutputFile::start(dir.path(), "a.parquet", Compression::SNAPPY).unwrap();
        out.write(&input, &outputs, &[true; 3]).unwrap();
        out.write(&input, &outputs, &[true; 3]).unwrap();
        out.commit().unwrap();
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(File::open(dir.path().join("a.parquet")).unwrap()).unwrap();
        let model_chunk = builder.metadata().row_group(0).column(2);
        let encodings: Vec<Encoding> = model_chunk.encodings().collect();
        assert!(encodings.contains(&Encoding::RLE_DICTIONARY), "{encodings:?}");
        let batch = builder.build().unwrap().map(Result::unwrap).next().unwrap();
        // A reader sees plain text, not an Arrow dictionary (no Arrow schema in the file).
        assert_eq!(batch.schema().field(2).data_type(), &arrow_schema::DataType::Utf8);
        let model = batch.column(2).as_string::<i32>();
        assert!((0..6).all(|i| model.value(i) == "ride_duration_prediction_model"));
        let durations = batch.column(1).as_primitive::<arrow_array::types::Float64Type>();
        assert_eq!(durations.iter().collect::<Vec<_>>(), [Some(10.0), None, Some(12.5), Some(10.0), None, Some(12.5)]);
    }
}

/// Output files for a sink whose `path` is `s3://bucket/prefix/`: written locally as any other,
/// then uploaded whole. Files over one part are sent as a multipart upload, which S3 shows as an
/// object only once it is completed: a job killed mid-upload leaves no object, only an
/// unfinished upload, which the next run aborts ([`abort_unfinished`]).
#[cfg(feature = "parquet-s3")]
pub mod s3 {
    use std::path::Path;

    use aws_sdk_s3::Client;
    use aws_sdk_s3::primitives::ByteStream;
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    use tokio::io::AsyncReadExt;

    /// Bytes per part (S3's minimum for all parts but the last is 5 MiB).
    const PART: usize = 8 * 1024 * 1024;

    /// Uploads `file` to `bucket`/`key`.
    ///
    /// # Errors
    /// The upload fails; an unfinished multipart upload is aborted.
    pub async fn upload(client: &Client, file: &Path, bucket: &str, key: &str) -> Result<(), String> {
        let at = |e: String| format!("s3://{bucket}/{key}: {e}");
        let size = tokio::fs::metadata(file).await.map_err(|e| at(e.to_string()))?.len();
        if size <= PART as u64 {
            let body = ByteStream::from_path(file).await.map_err(|e| at(e.to_string()))?;
            client
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(body)
                .send()
                .await
                .map_err(|e| at(tributary_aws::describe(&e)))?;
            return Ok(());
        }
        let created = client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| at(tributary_aws::describe(&e)))?;
        let id = created.upload_id().ok_or_else(|| at("no upload id".into()))?.to_string();
        let sent = send_parts(client, file, bucket, key, &id).await;
        match sent {
            Ok(parts) => client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| at(tributary_aws::describe(&e))),
            Err(e) => {
                let _ = client.abort_multipart_upload().bucket(bucket).key(key).upload_id(&id).send().await;
                Err(at(e))
            }
        }
    }

    async fn send_parts(
        client: &Client,
        file: &Path,
        bucket: &str,
        key: &str,
        id: &str,
    ) -> Result<Vec<CompletedPart>, String> {
        let mut input = tokio::fs::File::open(file).await.map_err(|e| e.to_string())?;
        let mut parts = Vec::new();
        for number in 1.. {
            let mut chunk = Vec::with_capacity(PART);
            (&mut input).take(PART as u64).read_to_end(&mut chunk).await.map_err(|e| e.to_string())?;
            if chunk.is_empty() {
                break;
            }
            let part = client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(id)
                .part_number(number)
                .body(ByteStream::from(chunk))
                .send()
                .await
                .map_err(|e| tributary_aws::describe(&e))?;
            parts
                .push(CompletedPart::builder().part_number(number).set_e_tag(part.e_tag().map(str::to_string)).build());
        }
        Ok(parts)
    }

    /// Aborts the unfinished multipart uploads under `prefix` (a killed run's); returns how many.
    pub async fn abort_unfinished(client: &Client, bucket: &str, prefix: &str) -> usize {
        let Ok(listed) = client.list_multipart_uploads().bucket(bucket).prefix(prefix).send().await else {
            return 0;
        };
        let mut aborted = 0;
        for upload in listed.uploads() {
            if let (Some(key), Some(id)) = (upload.key(), upload.upload_id())
                && client.abort_multipart_upload().bucket(bucket).key(key).upload_id(id).send().await.is_ok()
            {
                aborted += 1;
            }
        }
        aborted
    }
}
