//! `onnx` on columns (the batch job's fast path, [`tributary_framework::columns`]): the same
//! features, checks, reject reasons and model as on events, reading each row from the batch's
//! columns instead of a JSON event.
//!
//! A field that feeds a number tensor is asked of the source as a number of that kind (so a file's
//! `int32` and another's `int64` both serve an `int64` input); a template's fields, a string
//! input's and a map entry's as the file holds them. The answer is one column per configured
//! output (numbers, or text: a class label, or the JSON of a whole ZipMap), then `model` and
//! `version`. `echo` fields must be present, as on events, but are not written again: the
//! parquet sink's `columns` copies input columns beside the predictions.

use serde_json::Value;
use tributary_framework::ComponentError;
use tributary_framework::columns::{Column, ColumnBatch, ColumnData, ColumnField, ColumnKind, ColumnOutput};

use super::OnnxProcessor;
use super::input::{ColumnRow, InputPlan};
use super::tensor::Values;

impl OnnxProcessor {
    /// The fields the features and `echo` read from each row.
    pub(super) fn fields(&self) -> Vec<ColumnField> {
        let loaded = self.current.get();
        let echo = self.echo.iter().map(|(_, path)| ColumnField { path: path.clone(), kind: ColumnKind::Any });
        loaded.inputs.iter().flat_map(InputPlan::fields).chain(echo).collect()
    }

    /// See the module.
    pub(super) async fn predict_columns(&self, batch: &ColumnBatch) -> Result<ColumnOutput, ComponentError> {
        let loaded = self.current.get();
        let rows = batch.rows;
        let mut features: Vec<Values> = loaded.inputs.iter().map(|plan| plan.values(rows)).collect();
        let mut scored = Vec::with_capacity(rows);
        let mut rejected = Vec::new();
        for i in 0..rows {
            let absent = |path: &String| batch.fields.get(path).is_none_or(|c| c.is_null(i));
            if let Some((_, path)) = self.echo.iter().find(|(_, path)| absent(path)) {
                rejected.push((i, format!("event has no `{path}`")));
                continue;
            }
            match loaded.features(&ColumnRow { batch, row: i }, &mut features) {
                Ok(()) => scored.push(i),
                Err(reason) => rejected.push((i, reason)),
            }
        }
        let mut predicted: Vec<Vec<Option<Value>>> = vec![vec![None; rows]; loaded.outputs.len()];
        if !scored.is_empty() {
            let feeds = loaded.inputs.iter().zip(features).map(|(plan, values)| plan.feed(values)).collect();
            let n = scored.len();
            let fetched = loaded.model.predict(feeds, n, loaded.fetch.clone()).await?;
            for ((plan, at), column) in loaded.outputs.iter().zip(&mut predicted) {
                for (k, &row) in scored.iter().enumerate() {
                    column[row] = Some(plan.value(&fetched[*at], n, k).map_err(ComponentError::Fatal)?);
                }
            }
        }
        let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
        let mut columns: Vec<(String, Column)> = loaded
            .outputs
            .iter()
            .zip(predicted)
            .map(|((plan, _), values)| (plan.field.clone(), column(values)))
            .collect();
        columns.push(("model".into(), Column::new(ColumnData::Same(text(&self.model_name), rows))));
        columns.push(("version".into(), Column::new(ColumnData::Same(text(&loaded.version), rows))));
        Ok(ColumnOutput { columns, rejected })
    }
}

/// One prediction field's values (`None` for rows not predicted) as a column: integers when
/// every value is one, numbers when every value is one, else text (a string as it is, another
/// value as JSON).
fn column(values: Vec<Option<Value>>) -> Column {
    let present = || values.iter().flatten().filter(|v| !v.is_null());
    let nulls: Vec<bool> = values.iter().map(|v| v.as_ref().is_none_or(Value::is_null)).collect();
    let data = if present().all(|v| v.is_i64()) {
        ColumnData::Int64(values.iter().map(|v| v.as_ref().and_then(Value::as_i64).unwrap_or_default()).collect())
    } else if present().all(Value::is_number) {
        ColumnData::Float64(values.iter().map(|v| v.as_ref().and_then(Value::as_f64).unwrap_or_default()).collect())
    } else {
        ColumnData::Utf8(
            values
                .iter()
                .map(|v| match v {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                })
                .collect(),
        )
    };
    Column { data, nulls: nulls.iter().any(|n| *n).then_some(nulls) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prediction_columns_take_the_values_type() {
        let ints = column(vec![Some(json!(1)), None, Some(json!(0))]);
        assert_eq!(ints.data, ColumnData::Int64(vec![1, 0, 0]));
        assert_eq!(ints.nulls, Some(vec![false, true, false]));
        let numbers = column(vec![Some(json!(1)), Some(json!(2.5))]);
        assert_eq!(numbers.data, ColumnData::Float64(vec![1.0, 2.5]));
        assert_eq!(numbers.nulls, None);
        let labels = column(vec![Some(json!("spam")), Some(json!({"a": 0.5}))]);
        assert_eq!(labels.data, ColumnData::Utf8(vec!["spam".into(), r#"{"a":0.5}"#.into()]));
    }
}
