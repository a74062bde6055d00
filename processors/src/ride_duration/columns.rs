//! `ride_duration` on columns (the batch job's fast path): the same fields, checks and model
//! as on events, without a JSON value per ride.
//!
//! Reads `ride.PULocationID`, `ride.DOLocationID` (integers) and `ride.trip_distance` (a
//! number), rejects what [`super::features::prepare`] rejects with the same reasons, and answers
//! three columns: `ride_duration` (minutes), `model` and `version`.

use tributary_framework::ComponentError;
use tributary_framework::columns::{Column, ColumnBatch, ColumnData, ColumnField, ColumnKind, ColumnOutput};

use super::RideDuration;
use super::features::{ZONES, is_miles, pair_index};

const PU: &str = "ride.PULocationID";
const DO: &str = "ride.DOLocationID";
const DISTANCE: &str = "ride.trip_distance";

/// The fields the processor reads from each row.
pub(super) fn fields() -> Vec<ColumnField> {
    vec![
        ColumnField { path: PU.into(), kind: ColumnKind::Int64 },
        ColumnField { path: DO.into(), kind: ColumnKind::Int64 },
        ColumnField { path: DISTANCE.into(), kind: ColumnKind::Float64 },
    ]
}

fn ints<'a>(batch: &'a ColumnBatch, path: &str) -> Result<(&'a [i64], &'a Column), ComponentError> {
    let column = batch.field(path).map_err(ComponentError::Fatal)?;
    match &column.data {
        ColumnData::Int64(v) => Ok((v, column)),
        _ => Err(ComponentError::Fatal(format!("`{path}` must arrive as integers"))),
    }
}

/// Why row `i` cannot be scored, if it cannot.
fn check(i: usize, pu: (&[i64], &Column), dropoff: (&[i64], &Column), distance: (&[f64], &Column)) -> Option<String> {
    for (path, (values, column)) in [(PU, pu), (DO, dropoff)] {
        if column.is_null(i) {
            return Some(format!("`{path}` is missing"));
        }
        if !u64::try_from(values[i]).is_ok_and(|id| ZONES.contains(&id)) {
            return Some(format!("`{path}` must be a taxi zone id from 1 to 265, found {}", values[i]));
        }
    }
    let miles = distance.0[i];
    if distance.1.is_null(i) {
        return Some(format!("`{DISTANCE}` is missing"));
    }
    if !is_miles(miles) {
        return Some(format!("`{DISTANCE}` must be a non-negative number of miles, found {miles}"));
    }
    None
}

impl RideDuration {
    /// See the module.
    pub(super) async fn predict_columns(&self, batch: &ColumnBatch) -> Result<ColumnOutput, ComponentError> {
        let model = self.current.get();
        let (pu, dropoff) = (ints(batch, PU)?, ints(batch, DO)?);
        let distance_column = batch.field(DISTANCE).map_err(ComponentError::Fatal)?;
        let ColumnData::Float64(distance) = &distance_column.data else {
            return Err(ComponentError::Fatal(format!("`{DISTANCE}` must arrive as numbers")));
        };
        let rows = batch.rows;
        let mut rejected = Vec::new();
        let mut scored = Vec::with_capacity(rows);
        let mut pairs = Vec::with_capacity(rows);
        let mut miles = Vec::with_capacity(rows);
        for i in 0..rows {
            match check(i, pu, dropoff, (distance, distance_column)) {
                Some(reason) => rejected.push((i, reason)),
                None => {
                    scored.push(i);
                    pairs.push(pair_index(pu.0[i], dropoff.0[i]));
                    #[allow(clippy::cast_possible_truncation, reason = "the model takes float32, as on events")]
                    miles.push(distance[i] as f32);
                }
            }
        }
        let mut durations = vec![0.0; rows];
        let mut nulls = vec![false; rows];
        for &(i, _) in &rejected {
            nulls[i] = true;
        }
        if !scored.is_empty() {
            let predictions = model.predict(model.pu_do(&pairs), miles).await?;
            let n = scored.len();
            for (k, &row) in scored.iter().enumerate() {
                durations[row] = model
                    .output
                    .number(&predictions, n, k)
                    .ok_or_else(|| ComponentError::Fatal("the model's ride_duration is not a number".into()))?;
            }
        }
        Ok(ColumnOutput {
            columns: vec![
                (
                    "ride_duration".into(),
                    Column { data: ColumnData::Float64(durations), nulls: (!rejected.is_empty()).then_some(nulls) },
                ),
                ("model".into(), Column::new(ColumnData::Same(self.model_name.clone(), rows))),
                ("version".into(), Column::new(ColumnData::Same(model.version.clone(), rows))),
            ],
            rejected,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_name_the_field_as_on_events() {
        let ids = |v: Vec<i64>, nulls: Option<Vec<bool>>| Column { data: ColumnData::Int64(v), nulls };
        let pu = ids(vec![130, 0, 5, 5], Some(vec![false, false, true, false]));
        let dropoff = ids(vec![205, 1, 1, 1], None);
        let distance = Column::new(ColumnData::Float64(vec![3.66, 1.0, 1.0, -2.0]));
        let (ColumnData::Int64(p), ColumnData::Int64(d), ColumnData::Float64(m)) =
            (&pu.data, &dropoff.data, &distance.data)
        else {
            unreachable!()
        };
        let reasons: Vec<Option<String>> = (0..4).map(|i| check(i, (p, &pu), (d, &dropoff), (m, &distance))).collect();
        assert_eq!(reasons[0], None);
        assert!(reasons[1].as_deref().unwrap().contains("PULocationID` must be a taxi zone id"));
        assert!(reasons[2].as_deref().unwrap().contains("PULocationID` is missing"));
        assert!(reasons[3].as_deref().unwrap().contains("non-negative"));
    }
}
