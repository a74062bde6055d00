//! Reading one Parquet file as columns: only the columns asked for, a batch at a time, each
//! cast to the type its field wants.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::file::reader::ChunkReader;
use tributary_framework::columns::{Column, ColumnBatch, ColumnData, ColumnKind};

/// A field the processors read: its event path, the column the source maps to it, its type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldColumn {
    /// The event path (`ride.PULocationID`).
    pub path: String,
    /// The column name as configured (`PULocationID`).
    pub column: String,
    /// The type the processor wants.
    pub kind: ColumnKind,
}

/// One batch of a file.
pub struct FileBatch {
    /// Index in the file of the batch's first row.
    pub first_row: u64,
    /// The processors' fields.
    pub columns: ColumnBatch,
    /// The pass-through columns, under their configured names, as the file has them.
    pub passthrough: RecordBatch,
}

/// An open Parquet file, read a batch at a time.
pub struct FileReader {
    /// The file.
    pub path: PathBuf,
    /// Rows in the file (from its footer).
    pub rows: u64,
    /// First row of each row group.
    group_starts: Vec<u64>,
    reader: ParquetRecordBatchReader,
    /// (field, the column's name in this file).
    fields: Vec<(FieldColumn, String)>,
    /// (configured name, the column's name in this file).
    passthrough: Vec<(String, String)>,
    next_row: u64,
    reader_broken: bool,
}

/// Runs the Parquet reader, turning a panic inside it (a malformed file the crate does not
/// expect) into an error for this file: one bad file must not end the job.
fn guarded<T>(read: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).map_err(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        format!("the Parquet reader failed on this file: {what}")
    })
}

impl FileReader {
    /// Opens `path`, checking that every field's column is there and can be cast.
    ///
    /// # Errors
    /// The file cannot be read, or a column is missing or of a type that cannot serve; the
    /// message names the file and the column.
    pub fn open(
        path: &Path,
        fields: &[FieldColumn],
        passthrough: &[String],
        batch_rows: usize,
    ) -> Result<FileReader, String> {
        Self::open_as(path, path, fields, passthrough, batch_rows)
    }

    /// [`FileReader::open`] on `path`, naming it `shown_as` in messages and positions (an S3
    /// object read from its downloaded copy).
    ///
    /// # Errors
    /// As [`FileReader::open`].
    pub fn open_as(
        path: &Path,
        shown_as: &Path,
        fields: &[FieldColumn],
        passthrough: &[String],
        batch_rows: usize,
    ) -> Result<FileReader, String> {
        let file = File::open(path).map_err(|e| format!("{}: cannot open: {e}", shown_as.display()))?;
        Self::from_reader(shown_as, file, fields, passthrough, batch_rows)
    }

    /// [`FileReader::open`] on bytes already in memory (an object read whole); `path` names
    /// them in messages.
    ///
    /// # Errors
    /// As [`FileReader::open`].
    pub fn from_bytes(
        path: &Path,
        bytes: bytes::Bytes,
        fields: &[FieldColumn],
        passthrough: &[String],
        batch_rows: usize,
    ) -> Result<FileReader, String> {
        Self::from_reader(path, bytes, fields, passthrough, batch_rows)
    }

    fn from_reader<R: ChunkReader + 'static>(
        path: &Path,
        input: R,
        fields: &[FieldColumn],
        passthrough: &[String],
        batch_rows: usize,
    ) -> Result<FileReader, String> {
        let at = |e: String| format!("{}: {e}", path.display());
        let builder = guarded(|| ParquetRecordBatchReaderBuilder::try_new(input))
            .map_err(at)?
            .map_err(|e| at(format!("not a readable Parquet file: {e}")))?;
        let schema = builder.schema().clone();
        let mut roots = Vec::new();
        let mut resolve = |wanted: &str| -> Result<String, String> {
            let (index, field) = find(&schema, wanted).ok_or_else(|| {
                at(format!(
                    "has no column `{wanted}` (its columns: {})",
                    schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
                ))
            })?;
            roots.push(index);
            Ok(field.name().clone())
        };
        let mut resolved = Vec::new();
        for f in fields {
            let actual = resolve(&f.column)?;
            let data_type =
                schema.field_with_name(&actual).map(|x| x.data_type().clone()).map_err(|e| at(e.to_string()))?;
            if !castable(&data_type, f.kind) {
                return Err(at(format!(
                    "column `{actual}` is {data_type}, which cannot serve `{}` ({})",
                    f.path,
                    kind_name(f.kind)
                )));
            }
            resolved.push((f.clone(), actual));
        }
        let mut kept = Vec::new();
        for name in passthrough {
            kept.push((name.clone(), resolve(name)?));
        }
        roots.sort_unstable();
        roots.dedup();
        let metadata = builder.metadata().clone();
        let mut group_starts = Vec::with_capacity(metadata.num_row_groups());
        let mut rows = 0u64;
        for group in metadata.row_groups() {
            group_starts.push(rows);
            rows += u64::try_from(group.num_rows()).unwrap_or(0);
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let reader = guarded(|| builder.with_projection(mask).with_batch_size(batch_rows.max(1)).build())
            .map_err(at)?
            .map_err(|e| at(format!("cannot read: {e}")))?;
        Ok(FileReader {
            path: path.to_path_buf(),
            rows,
            group_starts,
            reader,
            fields: resolved,
            passthrough: kept,
            next_row: 0,
            reader_broken: false,
        })
    }

    /// The row group of row `row` of the file, and the row's index within it.
    pub fn locate(&self, row: u64) -> (usize, u64) {
        let group = self.group_starts.partition_point(|&start| start <= row).saturating_sub(1);
        (group, row - self.group_starts.get(group).copied().unwrap_or(0))
    }

    /// The next batch, `None` at the end of the file.
    ///
    /// # Errors
    /// A page that cannot be decoded; the message names the file.
    pub fn next_batch(&mut self) -> Option<Result<FileBatch, String>> {
        if self.reader_broken {
            return None;
        }
        let batch = match guarded(|| self.reader.next()) {
            Ok(next) => match next? {
                Ok(batch) => batch,
                Err(e) => return Some(Err(format!("{}: cannot decode: {e}", self.path.display()))),
            },
            Err(e) => {
                // Nothing more is read from a file whose reader broke.
                self.reader_broken = true;
                return Some(Err(format!("{}: {e}", self.path.display())));
            }
        };
        let first_row = self.next_row;
        self.next_row += batch.num_rows() as u64;
        let mut columns = ColumnBatch { rows: batch.num_rows(), ..ColumnBatch::default() };
        for (field, actual) in &self.fields {
            let Some(array) = batch.column_by_name(actual) else {
                return Some(Err(format!("{}: column `{actual}` vanished", self.path.display())));
            };
            match to_column(array, field.kind) {
                Ok(column) => columns.fields.insert(field.path.clone(), column),
                Err(e) => return Some(Err(format!("{}: column `{actual}`: {e}", self.path.display()))),
            };
        }
        let mut kept_fields = Vec::with_capacity(self.passthrough.len());
        let mut kept_arrays = Vec::with_capacity(self.passthrough.len());
        for (name, actual) in &self.passthrough {
            let Some(array) = batch.column_by_name(actual) else {
                return Some(Err(format!("{}: column `{actual}` vanished", self.path.display())));
            };
            kept_fields.push(Field::new(name, array.data_type().clone(), true));
            kept_arrays.push(array.clone());
        }
        let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        let passthrough = RecordBatch::try_new_with_options(Arc::new(Schema::new(kept_fields)), kept_arrays, &options);
        Some(passthrough.map_err(|e| e.to_string()).map(|passthrough| FileBatch { first_row, columns, passthrough }))
    }
}

/// The column named `wanted`, or the only one whose name matches it ignoring case.
fn find<'a>(schema: &'a Schema, wanted: &str) -> Option<(usize, &'a Arc<Field>)> {
    if let Some(found) = schema.fields().iter().enumerate().find(|(_, f)| f.name() == wanted) {
        return Some(found);
    }
    let mut matches = schema.fields().iter().enumerate().filter(|(_, f)| f.name().eq_ignore_ascii_case(wanted));
    let first = matches.next()?;
    matches.next().is_none().then_some(first)
}

fn kind_name(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Int64 => "an integer",
        ColumnKind::Float64 => "a number",
        ColumnKind::Utf8 => "text",
        ColumnKind::Any => "a value",
    }
}

fn is_number(data_type: &DataType) -> bool {
    data_type.is_integer() || matches!(data_type, DataType::Float32 | DataType::Float64)
}

fn is_text(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Whether a column of `data_type` can be cast to `kind`.
pub fn castable(data_type: &DataType, kind: ColumnKind) -> bool {
    match kind {
        ColumnKind::Int64 | ColumnKind::Float64 => is_number(data_type) || matches!(data_type, DataType::Null),
        ColumnKind::Utf8 | ColumnKind::Any => {
            is_text(data_type) || is_number(data_type) || matches!(data_type, DataType::Null)
        }
    }
}

macro_rules! widen {
    ($array:expr, $out:ty, $($t:ty),*) => {{
        $(
            if let Some(a) = $array.as_primitive_opt::<$t>() {
                #[allow(clippy::cast_possible_wrap, clippy::cast_possible_truncation, reason = "widening; u64 ids above i64 are not zone ids")]
                return Some(a.values().iter().map(|&v| v as $out).collect::<Vec<$out>>());
            }
        )*
        None
    }};
}

fn integers(array: &ArrayRef) -> Option<Vec<i64>> {
    widen!(array, i64, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type)
}

fn floats(array: &ArrayRef) -> Option<Vec<f64>> {
    widen!(
        array,
        f64,
        Float64Type,
        Float32Type,
        Int8Type,
        Int16Type,
        Int32Type,
        Int64Type,
        UInt8Type,
        UInt16Type,
        UInt32Type,
        UInt64Type
    )
}

/// Casts a column to `kind`. A float that is not a whole number, cast to an integer, becomes a
/// null (the processor then rejects the row naming the field).
///
/// # Errors
/// A type that cannot serve (checked up front by [`FileReader::open`]).
pub fn to_column(array: &ArrayRef, kind: ColumnKind) -> Result<Column, String> {
    let kind = match kind {
        ColumnKind::Any if matches!(array.data_type(), DataType::Float32 | DataType::Float64) => ColumnKind::Float64,
        ColumnKind::Any if is_text(array.data_type()) => ColumnKind::Utf8,
        ColumnKind::Any => ColumnKind::Int64,
        kind => kind,
    };
    let mut nulls: Option<Vec<bool>> =
        array.logical_nulls().filter(|n| n.null_count() > 0).map(|n| (0..n.len()).map(|i| n.is_null(i)).collect());
    let rows = array.len();
    let data = match kind {
        ColumnKind::Int64 if matches!(array.data_type(), DataType::Float32 | DataType::Float64) => {
            let values = floats(array).unwrap_or_default();
            let mut out = Vec::with_capacity(rows);
            for (i, v) in values.into_iter().enumerate() {
                if v.fract() == 0.0 && v.is_finite() {
                    #[allow(clippy::cast_possible_truncation, reason = "a whole number")]
                    out.push(v as i64);
                } else {
                    out.push(0);
                    nulls.get_or_insert_with(|| vec![false; rows])[i] = true;
                }
            }
            ColumnData::Int64(out)
        }
        ColumnKind::Int64 => ColumnData::Int64(
            integers(array)
                .or_else(|| matches!(array.data_type(), DataType::Null).then(|| vec![0; rows]))
                .ok_or_else(|| format!("{} cannot serve an integer", array.data_type()))?,
        ),
        ColumnKind::Float64 => ColumnData::Float64(
            floats(array)
                .or_else(|| matches!(array.data_type(), DataType::Null).then(|| vec![0.0; rows]))
                .ok_or_else(|| format!("{} cannot serve a number", array.data_type()))?,
        ),
        ColumnKind::Utf8 | ColumnKind::Any => ColumnData::Utf8(texts(array)?),
    };
    if matches!(array.data_type(), DataType::Null) {
        nulls = Some(vec![true; rows]);
    }
    Ok(Column { data, nulls })
}

fn texts(array: &ArrayRef) -> Result<Vec<String>, String> {
    let rows = array.len();
    Ok(match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().iter().map(|v| v.unwrap_or_default().to_string()).collect(),
        DataType::LargeUtf8 => array.as_string::<i64>().iter().map(|v| v.unwrap_or_default().to_string()).collect(),
        DataType::Utf8View => array.as_string_view().iter().map(|v| v.unwrap_or_default().to_string()).collect(),
        DataType::Null => vec![String::new(); rows],
        t if t.is_integer() => integers(array).unwrap_or_default().iter().map(ToString::to_string).collect(),
        DataType::Float32 | DataType::Float64 => {
            floats(array).unwrap_or_default().iter().map(ToString::to_string).collect()
        }
        other => return Err(format!("{other} cannot serve text")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float64Array, Int32Array, StringArray};

    #[test]
    fn drifted_types_cast_to_what_the_field_wants() {
        let int32: ArrayRef = Arc::new(Int32Array::from(vec![Some(130), None]));
        let column = to_column(&int32, ColumnKind::Int64).unwrap();
        assert_eq!(column.data, ColumnData::Int64(vec![130, 0]));
        assert!(column.is_null(1) && !column.is_null(0));
        let doubles: ArrayRef = Arc::new(Float64Array::from(vec![1.0, 2.5]));
        let column = to_column(&doubles, ColumnKind::Int64).unwrap();
        assert_eq!(column.data, ColumnData::Int64(vec![1, 0]));
        assert!(column.is_null(1), "2.5 is not a whole number of passengers");
        let column = to_column(&int32, ColumnKind::Float64).unwrap();
        assert_eq!(column.data, ColumnData::Float64(vec![130.0, 0.0]));
        let text: ArrayRef = Arc::new(StringArray::from(vec!["N", "Y"]));
        assert!(to_column(&text, ColumnKind::Int64).is_err());
        assert_eq!(to_column(&text, ColumnKind::Any).unwrap().data, ColumnData::Utf8(vec!["N".into(), "Y".into()]));
        assert_eq!(to_column(&doubles, ColumnKind::Any).unwrap().data, ColumnData::Float64(vec![1.0, 2.5]));
        assert_eq!(to_column(&int32, ColumnKind::Any).unwrap().data, ColumnData::Int64(vec![130, 0]));
        assert!(!castable(&DataType::Utf8, ColumnKind::Float64));
        assert!(castable(&DataType::Int32, ColumnKind::Utf8));
    }

    #[test]
    fn columns_are_found_ignoring_case_when_the_exact_name_is_absent() {
        let schema = Schema::new(vec![Field::new("Airport_fee", DataType::Float64, true)]);
        assert_eq!(find(&schema, "airport_fee").unwrap().0, 0);
        assert!(find(&schema, "airport").is_none());
    }
}
