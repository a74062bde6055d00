//! How each model input is filled from events: the plan checked against the model at build
//! time ([`InputPlan::new`]), and the per-record extraction that rejects a record naming the
//! field and the model input ([`InputPlan::push`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use tributary_framework::columns::{ColumnBatch, ColumnData, ColumnField, ColumnKind};
use tributary_framework::template::{Template, lookup};

use super::SignatureError;
use super::config::{Entry, Feature};
use super::model::{Feed, Port, PortKind};
use super::tensor::{ElementType, Values};

/// The most values one record may give one input (a 4 x 1024 x 1024 tensor).
const MAX_VALUES_PER_RECORD: usize = 1 << 22;

/// Where one value comes from in an event.
enum Source {
    Field(String),
    Template(Template),
}

impl Source {
    fn new(field: Option<&String>, template: Option<&String>, key: &str) -> Result<Self, SignatureError> {
        match (field, template) {
            (Some(field), None) => Ok(Source::Field(field.clone())),
            (None, Some(template)) => Template::parse(template).map(Source::Template).map_err(|e| (key.to_string(), e)),
            _ => Err((key.to_string(), "set exactly one of `field` and `template`".into())),
        }
    }

    /// The value in `record` (borrowed from it, or a template's text), or a reason naming what
    /// is missing.
    fn read<'a, R: Record + ?Sized>(&self, record: &'a R) -> Result<Cow<'a, Value>, String> {
        match self {
            Source::Field(path) => record.get(path).ok_or_else(|| format!("`{path}` is missing")),
            Source::Template(template) => template
                .render_with(|path| record.get(path))
                .map(|text| Cow::Owned(Value::String(text)))
                .map_err(|missing| format!("`{missing}` is missing")),
        }
    }

    fn name(&self) -> String {
        match self {
            Source::Field(path) => path.clone(),
            Source::Template(_) => "template".into(),
        }
    }

    /// The fields it reads, and as what: a field feeding a number tensor is read as a number of
    /// that kind; a template's fields, a string tensor's and a map entry's as they come.
    fn fields(&self, ty: Option<ElementType>) -> Vec<ColumnField> {
        match self {
            Source::Field(path) => {
                let kind = match ty {
                    Some(ElementType::Float | ElementType::Double) => ColumnKind::Float64,
                    Some(ElementType::Int32 | ElementType::Int64) => ColumnKind::Int64,
                    _ => ColumnKind::Any,
                };
                vec![ColumnField { path: path.clone(), kind }]
            }
            Source::Template(template) => {
                template.fields().map(|path| ColumnField { path: path.to_string(), kind: ColumnKind::Any }).collect()
            }
        }
    }
}

/// Where a record's values are read: an event, or one row of a column batch (the batch job's
/// path, [`tributary_framework::columns`]); either way the same checks and reasons apply.
pub trait Record {
    /// The value at a dotted path; `None` when it is missing or null.
    fn get(&self, path: &str) -> Option<Cow<'_, Value>>;
}

impl Record for Value {
    fn get(&self, path: &str) -> Option<Cow<'_, Value>> {
        lookup(self, path).filter(|v| !v.is_null()).map(Cow::Borrowed)
    }
}

/// Row `row` of a column batch, as a record.
pub struct ColumnRow<'a> {
    /// The batch.
    pub batch: &'a ColumnBatch,
    /// The row.
    pub row: usize,
}

impl Record for ColumnRow<'_> {
    fn get(&self, path: &str) -> Option<Cow<'_, Value>> {
        let column = self.batch.fields.get(path)?;
        let i = self.row;
        if column.is_null(i) {
            return None;
        }
        Some(Cow::Owned(match &column.data {
            ColumnData::Int64(v) => Value::from(v[i]),
            ColumnData::Float64(v) => serde_json::Number::from_f64(v[i]).map(Value::Number)?,
            ColumnData::Utf8(v) => Value::String(v[i].clone()),
            ColumnData::Same(text, _) => Value::String(text.clone()),
        }))
    }
}

/// How one model input is filled.
pub struct InputPlan {
    /// The model input's name, for messages.
    input: String,
    ty: ElementType,
    /// Values per record.
    width: usize,
    /// The dimensions after the batch.
    row_dims: Vec<i64>,
    fill: Fill,
}

/// What the model learned a map entry to be: a number (the vocabulary has `key`), a category
/// (it has `key=value` features), or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EntryKind {
    Number,
    Category,
    Either,
}

enum Fill {
    /// The values of these sources in order: one field's array flattened, or (`fields`) one
    /// value from each.
    Tensor(Vec<Source>),
    /// DictVectorizer rows: per map entry, its key, source and kind, over the vocabulary's
    /// columns.
    Dict { entries: Vec<(String, Source, EntryKind)>, columns: Arc<HashMap<String, usize>> },
}

impl InputPlan {
    /// The model input this plan fills.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// The element type it is filled with.
    pub fn element_type(&self) -> ElementType {
        self.ty
    }

    /// Checks `feature` (configured under `features.<port.name>`) against the input the model
    /// declares.
    ///
    /// # Errors
    /// The config key at fault and what is wrong: a type or shape the mapping cannot fill.
    pub fn new(port: &Port, feature: &Feature, location: &str) -> Result<Self, SignatureError> {
        let name = &port.name;
        let key = format!("features.{name}");
        let configured =
            [feature.field.is_some(), feature.fields.is_some(), feature.template.is_some(), feature.entries.is_some()];
        if configured.iter().filter(|c| **c).count() != 1 {
            return Err((key, "set exactly one of `field`, `fields`, `template` and `entries`".into()));
        }
        let type_error = |declared: &str| {
            Err((
                format!("{key}.type"),
                format!("{location} declares input {name:?} as {declared}, configured as {}", feature.kind.name()),
            ))
        };
        match &port.kind {
            PortKind::Dict { columns, vocabulary, ty } => {
                let Some(entries) = &feature.entries else {
                    return Err((
                        key,
                        format!(
                            "{location} declares input {name:?} as {}: map it with `entries = {{ <feature> = {{ field = \"...\" }} }}`",
                            port.describe()
                        ),
                    ));
                };
                if *ty != feature.kind {
                    return type_error(&format!("map(string, {})", ty.name()));
                }
                if !matches!(ty, ElementType::Float | ElementType::Double) {
                    return Err((format!("{key}.type"), format!("map values of type {} are not supported", ty.name())));
                }
                let mut plan = Vec::new();
                for (entry_key, Entry { field, template }) in entries {
                    let at = format!("{key}.entries.{entry_key}");
                    let prefix = format!("{entry_key}=");
                    let kind =
                        match (columns.contains_key(entry_key), vocabulary.iter().any(|f| f.starts_with(&prefix))) {
                            (true, false) => EntryKind::Number,
                            (false, true) => EntryKind::Category,
                            (true, true) => EntryKind::Either,
                            (false, false) => {
                                return Err((
                                    at,
                                    format!(
                                        "{location}'s DictVectorizer has no feature {entry_key:?} (nor {prefix}...)"
                                    ),
                                ));
                            }
                        };
                    plan.push((entry_key.clone(), Source::new(field.as_ref(), template.as_ref(), &at)?, kind));
                }
                Ok(InputPlan {
                    input: name.clone(),
                    ty: *ty,
                    width: vocabulary.len(),
                    row_dims: vec![vocabulary.len() as i64],
                    fill: Fill::Dict { entries: plan, columns: columns.clone() },
                })
            }
            PortKind::Tensor { ty, dims } => {
                if feature.entries.is_some() {
                    return Err((
                        format!("{key}.entries"),
                        format!("{location} declares input {name:?} as {}, not a map", port.describe()),
                    ));
                }
                if *ty != feature.kind {
                    return type_error(ty.name());
                }
                let sources: Vec<Source> = match (&feature.field, &feature.fields, &feature.template) {
                    (Some(field), _, _) => vec![Source::Field(field.clone())],
                    (_, Some(fields), _) => fields.iter().map(|f| Source::Field(f.clone())).collect(),
                    (_, _, Some(template)) => vec![Source::new(None, Some(template), &key)?],
                    _ => Vec::new(),
                };
                let row_dims = row_dims(dims, feature.fields.as_ref().map(Vec::len)).map_err(|e| {
                    (key.clone(), format!("{location} declares input {name:?} as {}: {e}", port.describe()))
                })?;
                let width = row_dims
                    .iter()
                    .try_fold(1usize, |w, d| w.checked_mul(usize::try_from(*d).ok()?))
                    .filter(|w| *w <= MAX_VALUES_PER_RECORD)
                    .ok_or_else(|| {
                        (
                            key.clone(),
                            format!(
                                "{location} declares input {name:?} as {}: too many values per record",
                                port.describe()
                            ),
                        )
                    })?;
                if let Some(fields) = &feature.fields
                    && fields.len() != width
                {
                    return Err((
                        format!("{key}.fields"),
                        format!(
                            "{location} declares input {name:?} as {}: {width} values per record, `fields` names {}",
                            port.describe(),
                            fields.len()
                        ),
                    ));
                }
                if feature.template.is_some() && (width != 1 || *ty != ElementType::String) {
                    return Err((
                        key,
                        format!(
                            "a template gives one string; {location} declares input {name:?} as {}",
                            port.describe()
                        ),
                    ));
                }
                Ok(InputPlan { input: name.clone(), ty: *ty, width, row_dims, fill: Fill::Tensor(sources) })
            }
            PortKind::ClassMap { .. } | PortKind::Unsupported(_) => Err((
                key,
                format!(
                    "{location} declares input {name:?} as {}, which cannot be filled from events",
                    port.describe()
                ),
            )),
        }
    }

    /// The fields it reads from each record (see [`Source::fields`]).
    pub fn fields(&self) -> Vec<ColumnField> {
        match &self.fill {
            Fill::Tensor(sources) => sources.iter().flat_map(|s| s.fields(Some(self.ty))).collect(),
            Fill::Dict { entries, .. } => entries.iter().flat_map(|(_, s, _)| s.fields(None)).collect(),
        }
    }

    /// Empty values for a batch of `rows`.
    pub fn values(&self, rows: usize) -> Values {
        Values::new(self.ty, rows * self.width)
    }

    /// The input for a batch.
    pub fn feed(&self, values: Values) -> Feed {
        Feed { values, row_dims: self.row_dims.clone() }
    }

    /// Appends one record's values, or says which field is wrong (then `values` is as before).
    pub fn push<R: Record + ?Sized>(&self, record: &R, values: &mut Values) -> Result<(), String> {
        let before = values.len();
        let pushed = self.try_push(record, values);
        if pushed.is_err() {
            values.truncate(before);
        }
        pushed.map_err(|e| format!("{e} (model input {})", self.input))
    }

    fn try_push<R: Record + ?Sized>(&self, record: &R, values: &mut Values) -> Result<(), String> {
        match &self.fill {
            Fill::Tensor(sources) => {
                let before = values.len();
                let one_value_each = sources.len() > 1;
                for source in sources {
                    let value = source.read(record)?;
                    if one_value_each && value.is_array() {
                        return Err(format!("`{}` must hold one value, found an array", source.name()));
                    }
                    push_flat(&value, values).map_err(|e| format!("`{}` {e}", source.name()))?;
                }
                let pushed = values.len() - before;
                if pushed != self.width {
                    let name = sources.first().map(Source::name).unwrap_or_default();
                    return Err(format!("`{name}` must hold {} values, found {pushed}", self.width));
                }
                Ok(())
            }
            Fill::Dict { entries, columns } => {
                // (column, value) of the record's non-zero features; the row is zeros elsewhere.
                let mut set: Vec<(usize, f64)> = Vec::with_capacity(entries.len());
                let mut probe = String::new();
                for (key, source, kind) in entries {
                    let value = source.read(record)?;
                    let fits = match (kind, value.as_ref()) {
                        (EntryKind::Number, Value::String(_) | Value::Array(_)) => Err("must be a number"),
                        (EntryKind::Category, Value::Number(_) | Value::Bool(_)) => {
                            Err("must be a string (a category)")
                        }
                        _ => Ok(()),
                    };
                    fits.and_then(|()| dict_entry(key, &value, columns, &mut probe, &mut set))
                        .map_err(|e| format!("`{}` {e}", source.name()))?;
                }
                let start = values.len();
                match values {
                    Values::Float(v) => {
                        v.resize(start + self.width, 0.0);
                        set.iter().for_each(|(column, x)| v[start + column] = *x as f32);
                    }
                    Values::Double(v) => {
                        v.resize(start + self.width, 0.0);
                        set.iter().for_each(|(column, x)| v[start + column] = *x);
                    }
                    _ => return Err("map values must be float or double".into()),
                }
                Ok(())
            }
        }
    }
}

/// The dimensions after the batch: as declared, a dynamic one resolved from `fields` (an `[N, F]`
/// input mapped field by field).
fn row_dims(dims: &[i64], fields: Option<usize>) -> Result<Vec<i64>, String> {
    match dims {
        [] => return Err("a scalar input has no batch dimension".into()),
        [first, ..] if *first >= 1 => {
            return Err(format!(
                "its batch dimension is fixed at {first}; export it with a dynamic one (skl2onnx: `None`; \
                 torch.onnx.export: `dynamic_axes`)"
            ));
        }
        _ => {}
    }
    let rest = &dims[1..];
    match (rest, fields) {
        ([], _) => Ok(Vec::new()),
        ([d], Some(f)) if *d <= 0 => Ok(vec![f as i64]),
        _ => match rest.iter().position(|d| *d <= 0) {
            Some(i) => Err(format!(
                "dimension {} is dynamic, so the values per record are not known; map a 2-D input with `fields`",
                i + 1
            )),
            None => Ok(rest.to_vec()),
        },
    }
}

/// Appends `value` (an array, flattened row-major, or one value) to `values`.
fn push_flat(value: &Value, values: &mut Values) -> Result<(), String> {
    match value {
        Value::Array(items) => items.iter().try_for_each(|item| push_flat(item, values)),
        Value::Null => Err("holds a null".into()),
        _ => values.push(value).map_err(str::to_string),
    }
}

/// One map entry's features, as scikit-learn's `DictVectorizer` makes them: `(column, value)`
/// pairs added to `set` (features the model has not seen are left out). `probe` is scratch space
/// for `key=value` names.
fn dict_entry(
    key: &str,
    value: &Value,
    columns: &HashMap<String, usize>,
    probe: &mut String,
    set: &mut Vec<(usize, f64)>,
) -> Result<(), &'static str> {
    let mut one_hot = |text: &str| {
        probe.clear();
        probe.push_str(key);
        probe.push('=');
        probe.push_str(text);
        if let Some(&column) = columns.get(probe.as_str()) {
            set.push((column, 1.0));
        }
    };
    let number = match value {
        Value::String(text) => {
            one_hot(text);
            return Ok(());
        }
        Value::Array(items) => {
            for item in items {
                one_hot(item.as_str().ok_or("must hold strings")?);
            }
            return Ok(());
        }
        Value::Number(n) => n.as_f64().filter(|x| x.is_finite()).ok_or("is not finite")?,
        Value::Bool(b) => f64::from(u8::from(*b)),
        _ => return Err("must be a string or a number"),
    };
    if let Some(&column) = columns.get(key) {
        set.push((column, number));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn row_dims_from_the_declared_shape() {
        assert_eq!(row_dims(&[-1], None).unwrap(), Vec::<i64>::new());
        assert_eq!(row_dims(&[-1, 1], None).unwrap(), vec![1]);
        assert_eq!(row_dims(&[-1, 4], Some(4)).unwrap(), vec![4]);
        assert_eq!(row_dims(&[-1, -1], Some(3)).unwrap(), vec![3]);
        assert_eq!(row_dims(&[-1, 3, 2, 2], None).unwrap(), vec![3, 2, 2]);
        assert!(row_dims(&[-1, 3, -1, -1], None).unwrap_err().contains("dimension 2 is dynamic"));
        assert!(row_dims(&[-1, -1], None).is_err());
        assert!(row_dims(&[], None).is_err());
        assert!(row_dims(&[8, 4], None).unwrap_err().contains("fixed at 8"));
        // A fixed batch of one cannot take a batch of records in one call either.
        assert!(row_dims(&[1, 4], None).unwrap_err().contains("fixed at 1"));
    }

    #[test]
    fn dict_entries_as_dict_vectorizer_makes_them() {
        let columns: HashMap<String, usize> =
            [("PU_DO=130_205", 0), ("PU_DO=1_2", 1), ("trip_distance", 2)].map(|(k, v)| (k.to_string(), v)).into();
        let (mut probe, mut set) = (String::new(), Vec::new());
        dict_entry("PU_DO", &json!("130_205"), &columns, &mut probe, &mut set).unwrap();
        dict_entry("trip_distance", &json!(3.5), &columns, &mut probe, &mut set).unwrap();
        dict_entry("PU_DO", &json!("9_9"), &columns, &mut probe, &mut set).unwrap();
        assert_eq!(set, vec![(0, 1.0), (2, 3.5)]);
        assert!(dict_entry("PU_DO", &json!({}), &columns, &mut probe, &mut set).is_err());
    }

    #[test]
    fn nested_arrays_are_read_row_major_and_bounded() {
        let mut values = Values::new(ElementType::Float, 4);
        push_flat(&json!([[1, 2], [3, 4]]), &mut values).unwrap();
        assert_eq!(values, Values::Float(vec![1.0, 2.0, 3.0, 4.0]));
        let mut values = Values::new(ElementType::Float, 4);
        assert!(push_flat(&json!([1, "a"]), &mut values).is_err());
        assert!(push_flat(&json!([1, null]), &mut values).is_err());
    }
}
