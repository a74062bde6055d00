//! Columnar batches: the batch job's fast path (`tributary run` on a `parquet` source).
//!
//! A stream hands processors one JSON value per record; a Parquet file already holds its rows as
//! typed columns, and turning three million rows a month into JSON values only to read three
//! numbers back out of each would cost more than the model. So a processor that can may also
//! take a [`ColumnBatch`]: the same fields its event path reads (`ride.PULocationID`), each a
//! typed column, and answer a [`ColumnOutput`]: its prediction columns plus the rows it rejected
//! and why. Processors keep one definition: the source maps event fields to its columns (the
//! `parquet` source's `event` table), so a processor asks for `ride.trip_distance` whether it
//! runs on a stream or on a file.
//!
//! The types are plain vectors, not Arrow arrays, so that the framework and the processors do
//! not depend on Arrow; the `parquet` source and sink convert at the edges (a copy of the few
//! columns a model reads, which costs far less than the model).

use std::collections::BTreeMap;

/// The values of one column.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnData {
    /// Integers (any integer width in the file).
    Int64(Vec<i64>),
    /// Floating point numbers (any float width in the file).
    Float64(Vec<f64>),
    /// Text.
    Utf8(Vec<String>),
    /// The same text in every one of `rows` rows (a model's name and version).
    Same(String, usize),
}

impl ColumnData {
    /// How many values it holds.
    pub fn len(&self) -> usize {
        match self {
            ColumnData::Int64(v) => v.len(),
            ColumnData::Float64(v) => v.len(),
            ColumnData::Utf8(v) => v.len(),
            ColumnData::Same(_, rows) => *rows,
        }
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The type a processor wants a field as; the source casts the file's column to it (an
/// `int32` zone id in one year's files and `int64` in another's both arrive as
/// [`ColumnKind::Int64`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// Integers; a float column is accepted when every value is integral.
    Int64,
    /// Floats; integer columns are widened.
    Float64,
    /// Text.
    Utf8,
    /// Whatever the file holds (integers, floats or text), uncast: for fields a processor
    /// reads as values of any type, such as a template's or a copied (echoed) field.
    Any,
}

/// One column with its missing values.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// The values (a placeholder where a value is null).
    pub data: ColumnData,
    /// `nulls[i]` is true where row `i` has no value; `None` when no row is null.
    pub nulls: Option<Vec<bool>>,
}

impl Column {
    /// A column without nulls.
    pub fn new(data: ColumnData) -> Self {
        Column { data, nulls: None }
    }

    /// Whether row `i` is null.
    pub fn is_null(&self, i: usize) -> bool {
        self.nulls.as_ref().is_some_and(|n| n[i])
    }
}

/// A field a processor reads from each row, and the type it wants it as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnField {
    /// The event path, as on the stream (`ride.PULocationID`).
    pub path: String,
    /// The type to cast the file's column to.
    pub kind: ColumnKind,
}

/// Rows of a file as the columns the processors asked for, keyed by event path.
#[derive(Clone, Debug, Default)]
pub struct ColumnBatch {
    /// Rows in the batch.
    pub rows: usize,
    /// Columns by the event path they stand for.
    pub fields: BTreeMap<String, Column>,
}

impl ColumnBatch {
    /// The column standing for `path`.
    ///
    /// # Errors
    /// A message naming the field when the batch does not have it (the source maps no column
    /// to it).
    pub fn field(&self, path: &str) -> Result<&Column, String> {
        self.fields.get(path).ok_or_else(|| format!("the batch has no column for `{path}`"))
    }
}

/// What a processor made of a [`ColumnBatch`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ColumnOutput {
    /// Output columns, each with one value per input row (rejected rows hold a placeholder),
    /// in the order the sink writes them.
    pub columns: Vec<(String, Column)>,
    /// Rows that were not predicted (row index in the batch, reason), in row order. They are
    /// dead-lettered and left out of the output.
    pub rejected: Vec<(usize, String)>,
}
