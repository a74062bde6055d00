//! What a processor emits for a record: a JSON value, or the JSON text of a value the processor
//! serialized itself ([`Output::serialized`]).
//!
//! Most processors build a [`serde_json::Value`]. A processor on a hot path (one envelope per
//! record, in a fixed shape) can instead serialize a typed struct once: a sink that writes JSON
//! copies that text as it is ([`Output`]'s `Serialize` writes it raw for `serde_json`), and the
//! value is decoded from it only when a consumer reads it as a value (`Deref`, [`Output::value`]:
//! a template, a downstream processor), once per output. Building a `Value` per record and
//! serializing it again cost over a quarter of the streaming path (BENCHMARKS.md, section 1).

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;
use std::sync::OnceLock;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

/// A processor's output: a JSON value, or JSON text decoded on first use.
#[derive(Clone)]
pub struct Output {
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    Value(Value),
    /// Text written by `serde_json` (valid JSON by construction), and its value once decoded.
    Text {
        text: Box<RawValue>,
        value: OnceLock<Value>,
    },
}

impl Output {
    /// An output as the JSON text of `output` (for example a `#[derive(Serialize)]` struct whose
    /// fields are in the order the output's readers expect): one string, no `Value` built.
    ///
    /// # Errors
    /// `output` cannot be serialized as JSON (a map with non-string keys).
    pub fn serialized<T: Serialize + ?Sized>(output: &T) -> Result<Self, serde_json::Error> {
        let text = serde_json::value::to_raw_value(output)?;
        Ok(Output { repr: Repr::Text { text, value: OnceLock::new() } })
    }

    /// The output as a value (decoded from its text the first time it is asked for).
    pub fn value(&self) -> &Value {
        match &self.repr {
            Repr::Value(value) => value,
            Repr::Text { text, value } => value.get_or_init(|| decode(text)),
        }
    }

    /// The output as a value, owned.
    pub fn into_value(self) -> Value {
        match self.repr {
            Repr::Value(value) => value,
            Repr::Text { text, value } => value.into_inner().unwrap_or_else(|| decode(&text)),
        }
    }

    /// The output's JSON text, when the processor serialized it ([`Output::serialized`]).
    pub fn json_text(&self) -> Option<&str> {
        match &self.repr {
            Repr::Value(_) => None,
            Repr::Text { text, .. } => Some(text.get()),
        }
    }

    /// The value at a path of object keys, without decoding a serialized output whole: its text
    /// is scanned for the path (what a sink's key template reads, such as
    /// `{prediction.ride_id}`). `None` when the path is missing.
    pub fn field(&self, keys: &[String]) -> Option<Cow<'_, Value>> {
        match &self.repr {
            Repr::Text { text, value } if value.get().is_none() => find(text.get(), keys).map(Cow::Owned),
            _ => keys.iter().try_fold(self.value(), |v, key| v.get(key)).map(Cow::Borrowed),
        }
    }
}

/// Text written by `serde_json` decodes, except past `serde_json`'s nesting limit (128 levels),
/// which a serializer does not enforce: logged, and read as `null`.
fn decode(text: &RawValue) -> Value {
    serde_json::from_str(text.get()).unwrap_or_else(|e| {
        tracing::error!(error = %e, "a processor's serialized output does not decode; read as null");
        Value::Null
    })
}

/// The value at `keys` in `text` (JSON), reading nothing else into values; `None` when the path
/// is missing or the text is not JSON.
fn find(text: &str, keys: &[String]) -> Option<Value> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    PathSeed(keys).deserialize(&mut deserializer).ok().flatten()
}

/// Finds the value at its keys in the JSON value being read (the last of a duplicate key, as a
/// decoded value keeps it).
struct PathSeed<'k>(&'k [String]);

impl<'de> DeserializeSeed<'de> for PathSeed<'_> {
    type Value = Option<Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<Value>, D::Error> {
        if self.0.is_empty() { Value::deserialize(deserializer).map(Some) } else { deserializer.deserialize_any(self) }
    }
}

impl<'de> Visitor<'de> for PathSeed<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Value>, A::Error> {
        let Some((first, rest)) = self.0.split_first() else { return Ok(None) };
        let mut found = None;
        while let Some(wanted) = map.next_key_seed(IsKey(first))? {
            if wanted {
                found = map.next_value_seed(PathSeed(rest))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<Value>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Option<Value>, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Option<Value>, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Option<Value>, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Option<Value>, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Option<Value>, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Option<Value>, E> {
        Ok(None)
    }
}

/// Whether the object key being read is this one (compared in place, escaped or not).
struct IsKey<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for IsKey<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for IsKey<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

impl From<Value> for Output {
    fn from(value: Value) -> Self {
        Output { repr: Repr::Value(value) }
    }
}

impl Deref for Output {
    type Target = Value;

    fn deref(&self) -> &Value {
        self.value()
    }
}

impl Serialize for Output {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.repr {
            Repr::Value(value) => value.serialize(serializer),
            // `serde_json` writes raw values as they are; other serializers get the value.
            Repr::Text { text, .. } => text.serialize(serializer),
        }
    }
}

impl PartialEq for Output {
    fn eq(&self, other: &Self) -> bool {
        match (self.json_text(), other.json_text()) {
            (Some(a), Some(b)) if a == b => true,
            _ => self.value() == other.value(),
        }
    }
}

impl PartialEq<Value> for Output {
    fn eq(&self, other: &Value) -> bool {
        self.value() == other
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Value(value) => fmt::Debug::fmt(value, f),
            Repr::Text { text, .. } => write!(f, "Output({})", text.get()),
        }
    }
}

/// The output as JSON text (as `Value`'s `Display` writes a value).
impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Value(value) => fmt::Display::fmt(value, f),
            Repr::Text { text, .. } => f.write_str(text.get()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Serialize)]
    struct Envelope<'a> {
        model: &'a str,
        prediction: Prediction<'a>,
    }

    #[derive(Serialize)]
    struct Prediction<'a> {
        ride_duration: f64,
        ride_id: &'a Value,
    }

    fn envelope(duration: f64, id: &Value) -> Output {
        Output::serialized(&Envelope { model: "m\"1", prediction: Prediction { ride_duration: duration, ride_id: id } })
            .unwrap()
    }

    #[test]
    fn a_serialized_output_is_written_as_its_text_and_reads_as_its_value() {
        let output = envelope(12.5, &json!("r-1"));
        let expected = json!({"model": "m\"1", "prediction": {"ride_duration": 12.5, "ride_id": "r-1"}});
        assert_eq!(
            serde_json::to_string(&output).unwrap(),
            r#"{"model":"m\"1","prediction":{"ride_duration":12.5,"ride_id":"r-1"}}"#
        );
        assert_eq!(output.to_string(), serde_json::to_string(&output).unwrap());
        assert_eq!(serde_json::to_value(&output).unwrap(), expected);
        assert_eq!(output["prediction"]["ride_id"], "r-1");
        assert_eq!(*output.value(), expected);
        assert_eq!(output.clone().into_value(), expected);
        assert_eq!(output, Output::from(expected.clone()));

        // Inside another value's serialization, too.
        assert_eq!(serde_json::to_string(&[&output, &Output::from(json!(1))]).unwrap(), format!("[{},1]", output));
        // A non-finite number is written as `null`, as `serde_json` writes it.
        assert_eq!(envelope(f64::NAN, &json!(7))["prediction"]["ride_duration"], Value::Null);
    }

    #[test]
    fn fields_are_found_in_the_text_and_in_values_alike() {
        let keys = |path: &str| path.split('.').map(str::to_owned).collect::<Vec<_>>();
        for output in [envelope(3.5, &json!(156)), Output::from(envelope(3.5, &json!(156)).into_value())] {
            assert_eq!(output.field(&keys("prediction.ride_id")).as_deref(), Some(&json!(156)));
            assert_eq!(
                output.field(&keys("prediction")).as_deref(),
                Some(&json!({"ride_duration": 3.5, "ride_id": 156}))
            );
            assert_eq!(output.field(&keys("model")).as_deref(), Some(&json!("m\"1")));
            assert_eq!(output.field(&keys("prediction.missing")), None);
            assert_eq!(output.field(&keys("model.inner")), None);
            assert_eq!(output.field(&keys("nope")), None);
        }
    }

    fn json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            // Quarters: exact in binary, so they read back equal.
            (-4000i32..4000).prop_map(|n| Value::from(f64::from(n) / 4.0)),
            "[ab\"\\\\\u{e9}]{0,4}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("[ab\"]{0,2}", inner), 0..4)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// A serialized output's fields, read from its text, are its value's fields.
        #[test]
        fn any_field_read_from_the_text_is_the_values_field(
            value in json(),
            path in proptest::collection::vec("[ab\"]{0,2}", 1..4),
        ) {
            let output = Output::serialized(&value).unwrap();
            let expected = path.iter().try_fold(&value, |v, key| v.get(key));
            let found = output.field(&path);
            proptest::prop_assert_eq!(found.as_deref(), expected);
            proptest::prop_assert_eq!(output.value(), &value);
        }
    }
}
