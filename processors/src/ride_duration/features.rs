//! The seeds' feature preparation, with validation: a ride event
//! `{"ride": {"PULocationID", "DOLocationID", "trip_distance"}, "ride_id"}` becomes
//! `PU_DO = "<PU>_<DO>"` and `trip_distance`, or a reason to reject it.

use serde_json::Value;

/// NYC TLC taxi zone ids run from 1 to 265.
pub const ZONES: std::ops::RangeInclusive<u64> = 1..=265;

/// One ride's model inputs, plus the id to echo back.
#[derive(Clone, Debug, PartialEq)]
pub struct RideFeatures {
    /// The zone pair, as its place in the table of every pair ([`pair_index`]): the model is
    /// fed its code (or its text, [`RideFeatures::pu_do`]) from a table, not a string per ride.
    pub pair: usize,
    /// Miles.
    pub trip_distance: f32,
    /// The event's `ride_id`, as given (number or string).
    pub ride_id: Value,
}

impl RideFeatures {
    /// `"<PULocationID>_<DOLocationID>"`, as the seeds' `prepare_features` writes it.
    pub fn pu_do(&self) -> &'static str {
        pair_text(self.pair)
    }
}

/// Prepares features from a decoded event.
///
/// # Errors
/// A human-readable reason naming the offending field.
pub fn prepare(event: &Value) -> Result<RideFeatures, String> {
    let Some(object) = event.as_object() else {
        return Err(format!("event must be a JSON object, found {}", kind(event)));
    };
    let ride = object.get("ride").ok_or("event has no `ride` object")?;
    if !ride.is_object() {
        return Err(format!("`ride` must be an object, found {}", kind(ride)));
    }
    let ride_id = match object.get("ride_id") {
        None => return Err("event has no `ride_id`".into()),
        Some(id) if is_ride_id(id) => id.clone(),
        Some(other) => return Err(format!("`ride_id` must be a number or a non-empty string, found {}", kind(other))),
    };
    let pu = zone(ride, "PULocationID")?;
    let dropoff = zone(ride, "DOLocationID")?;
    let distance = match ride.get("trip_distance") {
        None => return Err("`ride.trip_distance` is missing".into()),
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(other) => return Err(format!("`ride.trip_distance` must be a number, found {}", kind(other))),
    };
    if !is_miles(distance) {
        return Err(format!("`ride.trip_distance` must be a non-negative number of miles, found {distance}"));
    }
    #[allow(clippy::cast_possible_wrap, reason = "checked zone ids, 1..=265")]
    Ok(RideFeatures { pair: pair_index(pu as i64, dropoff as i64), trip_distance: distance as f32, ride_id })
}

/// Whether a `ride_id` can be echoed back: a number or a non-empty string (events and their
/// text alike).
pub(super) fn is_ride_id(id: &Value) -> bool {
    match id {
        Value::Number(_) => true,
        Value::String(s) => !s.is_empty(),
        _ => false,
    }
}

/// Whether a trip distance can be scored: a finite, non-negative number of miles (events, text
/// and columns alike).
pub(super) fn is_miles(distance: f64) -> bool {
    distance.is_finite() && distance >= 0.0
}

/// `"<pu>_<do>"` for a pair of checked zone ids (1..=265), as the seeds' `prepare_features`
/// writes it.
pub(super) fn pair(pu: i64, dropoff: i64) -> &'static str {
    pair_text(pair_index(pu, dropoff))
}

/// The text of the pair at `index` ([`pair_index`]), from a table of every pair made once
/// (70,225 pairs, one after another in one string): a batch borrows its rides' pairs instead of
/// formatting a string per ride.
pub(super) fn pair_text(index: usize) -> &'static str {
    static PAIRS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    let pairs = PAIRS.get_or_init(|| {
        let zones = *ZONES.end() as usize;
        // Written from the zones' names rather than formatted pair by pair: this runs at each
        // process start (70,225 `format!` calls were about a sixth of a small batch job's CPU).
        let names: Vec<String> = ZONES.map(|zone| zone.to_string()).collect();
        let mut text = String::with_capacity(zones * zones * 8);
        let mut ends = Vec::with_capacity(zones * zones);
        for pickup in &names {
            for drop in &names {
                text.push_str(pickup);
                text.push('_');
                text.push_str(drop);
                ends.push(text.len());
            }
        }
        // The table lives as long as the process, like the `OnceLock` holding it.
        let text: &'static str = Box::leak(text.into_boxed_str());
        let starts = std::iter::once(0).chain(ends.iter().copied());
        starts.zip(ends.iter().copied()).map(|(start, end)| &text[start..end]).collect()
    });
    pairs[index]
}

/// The place of a pair of checked zone ids (1..=265) in the table of all pairs, pickup-major.
pub(super) fn pair_index(pu: i64, dropoff: i64) -> usize {
    (pu as usize - 1) * *ZONES.end() as usize + (dropoff as usize - 1)
}

fn zone(ride: &Value, key: &str) -> Result<u64, String> {
    match ride.get(key) {
        None => Err(format!("`ride.{key}` is missing")),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(id) if ZONES.contains(&id) => Ok(id),
            _ => Err(format!("`ride.{key}` must be a taxi zone id from 1 to 265, found {n}")),
        },
        Some(other) => Err(format!("`ride.{key}` must be a taxi zone id from 1 to 265, found {}", kind(other))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pairs_are_written_as_the_seeds_write_them() {
        assert_eq!(pair(130, 205), "130_205");
        assert_eq!(pair(1, 10), "1_10");
        assert_eq!(pair(265, 9), "265_9");
        for pu in 1..=265 {
            for dropoff in 1..=265 {
                assert_eq!(pair(pu, dropoff), format!("{pu}_{dropoff}"));
            }
        }
    }

    #[test]
    fn seed_event() {
        let f = prepare(
            &json!({"ride": {"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66}, "ride_id": 156}),
        )
        .unwrap();
        assert_eq!(f.pu_do(), "130_205");
        assert!((f.trip_distance - 3.66).abs() < 1e-6);
        assert_eq!(f.ride_id, json!(156));
    }

    #[test]
    fn rejections_name_the_field() {
        let cases = [
            (json!({"ride_id": 1}), "no `ride`"),
            (json!({"ride": {"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1.0}}), "no `ride_id`"),
            (
                json!({"ride": {"PULocationID": 13000, "DOLocationID": 2, "trip_distance": 1.0}, "ride_id": 1}),
                "PULocationID",
            ),
            (
                json!({"ride": {"PULocationID": 0, "DOLocationID": 2, "trip_distance": 1.0}, "ride_id": 1}),
                "PULocationID",
            ),
            (
                json!({"ride": {"PULocationID": 1, "DOLocationID": 2.5, "trip_distance": 1.0}, "ride_id": 1}),
                "DOLocationID",
            ),
            (
                json!({"ride": {"PULocationID": 1, "DOLocationID": 2, "trip_distance": "3"}, "ride_id": 1}),
                "trip_distance",
            ),
            (
                json!({"ride": {"PULocationID": 1, "DOLocationID": 2, "trip_distance": -1.0}, "ride_id": 1}),
                "non-negative",
            ),
            (json!({"ride": {"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1.0}, "ride_id": null}), "ride_id"),
            (json!([1, 2]), "object"),
        ];
        for (event, expected) in cases {
            let reason = prepare(&event).unwrap_err();
            assert!(reason.contains(expected), "{event}: {reason}");
        }
    }
}
