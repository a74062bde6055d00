//! Ride events read straight from their JSON text: the streaming fast path
//! ([`Processor::process_json_text`](tributary_framework::Processor::process_json_text)).
//!
//! Only the three ride fields and `ride_id` are parsed, borrowed from the payload; every other
//! field is checked as decoding checks it (UTF-8, escapes, numbers in range) without building a
//! value. An event this reader does not take as it is (not
//! an object, a duplicate or escaped key, a value of another type, an id or distance that
//! [`prepare`](super::features::prepare) would reject) gives `None`, and the runtime then
//! decodes it and hands it to [`prepare`](super::features::prepare), which says what is wrong:
//! both paths give every event the same outcome.

use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::features::{RideFeatures, ZONES, is_miles, is_ride_id, pair_index};

/// An event's features, when its text is a ride event of the usual shape whose values pass the
/// checks of [`prepare`](super::features::prepare).
pub fn prepare(text: &[u8]) -> Option<RideFeatures> {
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let event = deserializer.deserialize_map(EventVisitor).ok()?;
    deserializer.end().ok()?;
    let ride = event.ride?;
    let ride_id = event.ride_id.filter(is_ride_id)?;
    if !(ZONES.contains(&ride.pickup) && ZONES.contains(&ride.dropoff)) {
        return None;
    }
    if !is_miles(ride.distance) {
        return None;
    }
    #[allow(clippy::cast_possible_wrap, clippy::cast_possible_truncation, reason = "checked zone ids, 1..=265")]
    Some(RideFeatures {
        pair: pair_index(ride.pickup as i64, ride.dropoff as i64),
        trip_distance: ride.distance as f32,
        ride_id,
    })
}

struct Event {
    ride: Option<Ride>,
    ride_id: Option<Value>,
}

struct Ride {
    pickup: u64,
    dropoff: u64,
    distance: f64,
}

/// Stores a field's value, refusing a key seen twice (the decoded value would keep the last;
/// the fallback path decides such events).
fn once<T, E: de::Error>(slot: &mut Option<T>, value: T, key: &str) -> Result<(), E> {
    if slot.replace(value).is_some() {
        return Err(E::custom(format!("duplicate key {key}")));
    }
    Ok(())
}

struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = Event;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a ride event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Event, A::Error> {
        let (mut ride, mut ride_id) = (None, None);
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "ride" => once(&mut ride, map.next_value_seed(RideSeed)?, key)?,
                "ride_id" => once(&mut ride_id, map.next_value::<Value>()?, key)?,
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(Event { ride, ride_id })
    }
}

/// Reads the `ride` object (an object only: a sequence is refused, as `prepare` refuses it).
struct RideSeed;

impl<'de> de::DeserializeSeed<'de> for RideSeed {
    type Value = Ride;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Ride, D::Error> {
        deserializer.deserialize_map(RideVisitor)
    }
}

struct RideVisitor;

impl<'de> Visitor<'de> for RideVisitor {
    type Value = Ride;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a ride object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ride, A::Error> {
        let (mut pickup, mut dropoff, mut distance) = (None, None, None);
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "PULocationID" => once(&mut pickup, map.next_value::<u64>()?, key)?,
                "DOLocationID" => once(&mut dropoff, map.next_value::<u64>()?, key)?,
                "trip_distance" => once(&mut distance, map.next_value::<f64>()?, key)?,
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        match (pickup, dropoff, distance) {
            (Some(pickup), Some(dropoff), Some(distance)) => Ok(Ride { pickup, dropoff, distance }),
            _ => Err(de::Error::custom("a ride field is missing")),
        }
    }
}

/// A value that is read and dropped, checked as a decoded value would be. (serde's `IgnoredAny`
/// skips strings and numbers by their syntax alone: an event with invalid UTF-8, a lone
/// surrogate escape or a number out of range in a field nobody reads would then be predicted
/// here and rejected as not JSON by the decoder; the fuzz target `ride_event` found it.)
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Skip, D::Error> {
        deserializer.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_unit<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ride_duration::features;

    /// Events of every shape the decoding path meets: this reader either gives what
    /// `features::prepare` gives on the decoded event, or hands the event back (`None`), and
    /// it hands back exactly the events `prepare` rejects, plus those whose text it does not
    /// take as it is.
    #[test]
    fn text_reading_agrees_with_the_decoded_path() {
        let events = [
            r#"{"ride": {"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66}, "ride_id": 156}"#,
            r#"{"ride_id": "abc", "extra": [1, {"x": null}], "ride": {"trip_distance": 2, "DOLocationID": 1, "PULocationID": 265, "fare": 9.5}}"#,
            r#"{"ride": {"PULocationID": 1, "DOLocationID": 2, "trip_distance": 0.0}, "ride_id": -7}"#,
            r#"{"ride": {"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1e1}, "ride_id": 1.5}"#,
            r#"{"ride": {"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1}, "ride_id": 18446744073709551615}"#,
            r#"  {"ride": {"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1}, "ride_id": 1}  "#,
            // Handed back: rejected by `prepare`.
            r#"{"ride": {"PULocationID": 0, "DOLocationID": 2, "trip_distance": 1}, "ride_id": 1}"#,
            r#"{"ride": {"PULocationID": 266, "DOLocationID": 2, "trip_distance": 1}, "ride_id": 1}"#,
            r#"{"ride": {"PULocationID": 1.0, "DOLocationID": 2, "trip_distance": 1}, "ride_id": 1}"#,
            r#"{"ride": {"PULocationID": 1, "DOLocationID": 2, "trip_distance": -0.5}, "ride_id": 1}"#,
            r#"{"ride": {"PULocationID": 1, "DOLocationID": 2, "trip_distance": "1"}, "ride_id": 1}"#,
            r#"{"ride": {"PULocationID": 1, "DOLocationID": 2}, "ride_id": 1}"#,
            r#"{"ride": [1, 2, 3.0], "ride_id": 1}"#,
            r#"{"ride": null, "ride_id": 1}"#,
            r#"{"ride": {"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1}, "ride_id": ""}"#,
            r#"{"ride": {"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1}, "ride_id": null}"#,
            r#"{"ride": {"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1}, "ride_id": {"a": 1}}"#,
            r#"{"ride": {"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1}}"#,
            r#"[{"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1}, 1]"#,
            // Handed back although `prepare` takes them: the decoded event keeps the last of a
            // duplicate key, and an escaped key is not borrowed.
            r#"{"ride": {"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1}, "ride_id": 1, "ride_id": 2}"#,
            r#"{"ride": {"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1, "DOLocationID": 3}, "ride_id": 1}"#,
            r#"{"ride": {"PULocationID": 1, "DOLocation\u0049D": 2, "trip_distance": 1}, "ride_id": 1}"#,
            // Not JSON, in a field nobody reads: a lone surrogate, a number out of range (as
            // invalid UTF-8 below, skipped by their syntax alone, they were read here).
            r#"{"ride": {"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1, "x": "\ud800"}, "ride_id": 1}"#,
            r#"{"ride": {"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1}, "ride_id": 1, "x": [1e400]}"#,
            // Not JSON at all.
            r#"{"ride": {"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1}, "ride_id": 1} x"#,
            r#"{"ride": "#,
            "",
        ];
        let (mut read, mut handed_back) = (0, 0);
        for text in events {
            let decoded = serde_json::from_str::<Value>(text).ok().map(|event| features::prepare(&event));
            match (prepare(text.as_bytes()), decoded) {
                (Some(fast), Some(Ok(slow))) => {
                    assert_eq!(fast, slow, "{text}");
                    read += 1;
                }
                (Some(fast), other) => panic!("{text}: read as {fast:?}, the decoded path gives {other:?}"),
                (None, _) => handed_back += 1,
            }
        }
        assert_eq!((read, handed_back), (6, events.len() - 6));
    }

    #[test]
    fn ride_ids_keep_their_json_type() {
        let text = |id: &str| {
            format!(r#"{{"ride": {{"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1}}, "ride_id": {id}}}"#)
        };
        for id in ["156", "-3", "2.5", r#""r-1""#] {
            let fast = prepare(text(id).as_bytes()).unwrap();
            assert_eq!(fast.ride_id.to_string(), id);
        }
    }

    /// Found by the fuzz target `ride_event`: invalid UTF-8 inside a field the reader skips was
    /// read here, and rejected as not JSON on the decoded path.
    #[test]
    fn invalid_utf8_in_a_skipped_field_is_handed_back() {
        let text = b"{\"ride\": {\"PULocationID\": 1, \"DOLocationID\": 2, \"trip_distance\": 1}, \"ride_id\": 1, \"x\": \"\xb4\"}";
        assert!(serde_json::from_slice::<Value>(text).is_err());
        assert_eq!(prepare(text), None);
    }
}
