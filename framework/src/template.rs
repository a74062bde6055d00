//! Field templates over JSON values: `"{prediction.ride_id}"`, `"ride-{ride_id}"`, for sink
//! keys, join keys and model features. Each `{dotted.path}` is replaced by the value at that
//! path (strings as they are, other values as JSON text); `{{` and `}}` are literal braces.
//!
//! A [`Shape`] is a JSON document built from another: its strings are templates, and a string
//! that is exactly one `{path}` takes the value at that path with its type (a number stays a
//! number, an object an object). HTTP request mappings and response bodies are shapes.

use std::borrow::Cow;

use serde_json::Value;

use crate::output::Output;

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    /// A field: its dotted path and the path's keys.
    Field(String, Vec<String>),
}

impl Template {
    /// Parses a template.
    ///
    /// # Errors
    /// An unterminated `{` or an empty `{}`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let field: String = chars.by_ref().take_while(|c| *c != '}').collect();
                    if field.trim().is_empty() {
                        return Err(format!("empty or unterminated `{{...}}` in {text:?}"));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    let path = field.trim().to_string();
                    let keys = path.split('.').map(str::to_owned).collect();
                    parts.push(Part::Field(path, keys));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// Renders the template against `value`; `None` when a field is missing or null.
    pub fn render(&self, value: &Value) -> Option<String> {
        self.render_by(|_, keys| keys.iter().try_fold(value, |v, key| v.get(key)).map(Cow::Borrowed)).ok()
    }

    /// Renders the template against a processor's output, reading a serialized output's fields
    /// from its text ([`Output::field`]) instead of decoding it whole.
    pub fn render_output(&self, output: &Output) -> Option<String> {
        self.render_by(|_, keys| output.field(keys)).ok()
    }

    /// The dotted paths of the fields the template reads, in order.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Field(path, _) => Some(path.as_str()),
            Part::Text(_) => None,
        })
    }

    /// Renders the template with each field's value from `get` (by dotted path; `None` when it
    /// is missing), as [`Template::render`] does from a JSON value.
    ///
    /// # Errors
    /// The dotted path of the first field that is missing or null.
    pub fn render_with<'v>(&self, mut get: impl FnMut(&str) -> Option<Cow<'v, Value>>) -> Result<String, String> {
        self.render_by(|path, _| get(path))
    }

    /// The one rendering loop: each field's value from `get` (given its dotted path and its
    /// keys); the dotted path of the first field that is missing or null.
    fn render_by<'v>(&self, mut get: impl FnMut(&str, &[String]) -> Option<Cow<'v, Value>>) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(path, keys) => {
                    get(path, keys).and_then(|found| push_value(&mut out, &found)).ok_or_else(|| path.clone())?;
                }
            }
        }
        Ok(out)
    }

    /// The first field of the template that is missing or null in `value`, as a dotted path;
    /// `None` when the template renders.
    pub fn missing_field(&self, value: &Value) -> Option<String> {
        self.parts.iter().find_map(|part| match part {
            Part::Field(path, keys) if keys.iter().try_fold(value, |v, key| v.get(key)).is_none_or(Value::is_null) => {
                Some(path.clone())
            }
            _ => None,
        })
    }
}

/// Appends a field's value to `out` (a string as it is, another value as JSON text); `None` for
/// null.
fn push_value(out: &mut String, value: &Value) -> Option<()> {
    match value {
        Value::Null => return None,
        Value::String(s) => out.push_str(s),
        other => out.push_str(&other.to_string()),
    }
    Some(())
}

/// The value at a dotted path (`"ride.trip_distance"`), if present.
pub fn lookup<'a>(value: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(value, |v, key| v.get(key))
}

/// A JSON document whose strings are [`Template`]s over another document (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub enum Shape {
    /// The whole value at a dotted path, with its type (`"{body}"`, `"{prediction.ride_duration}"`).
    Field(Vec<String>),
    /// A string with fields in it (`"ride-{request_id}"`).
    Text(Template),
    /// A literal (number, boolean, null, or a string without fields).
    Literal(Value),
    /// An array of shapes.
    Array(Vec<Shape>),
    /// An object of shapes, keys in the order written.
    Object(Vec<(String, Shape)>),
}

impl Shape {
    /// Parses a shape from its JSON form.
    ///
    /// # Errors
    /// A string that is not a valid template, with the key path where it is.
    pub fn parse(value: &Value) -> Result<Self, String> {
        Self::parse_at(value, "")
    }

    fn parse_at(value: &Value, at: &str) -> Result<Self, String> {
        let here = |key: &str| if at.is_empty() { key.to_string() } else { format!("{at}.{key}") };
        Ok(match value {
            Value::String(text) => {
                let template =
                    Template::parse(text).map_err(|e| if at.is_empty() { e } else { format!("{at}: {e}") })?;
                match template.parts.as_slice() {
                    [Part::Field(_, keys)] => Shape::Field(keys.clone()),
                    [] => Shape::Literal(Value::String(String::new())),
                    [Part::Text(literal)] => Shape::Literal(Value::String(literal.clone())),
                    _ => Shape::Text(template),
                }
            }
            Value::Array(items) => Shape::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Self::parse_at(v, &here(&i.to_string())))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => {
                Shape::Object(map.iter().map(|(k, v)| Ok((k.clone(), Self::parse_at(v, &here(k))?))).collect::<Result<
                    _,
                    String,
                >>(
                )?)
            }
            other => Shape::Literal(other.clone()),
        })
    }

    /// Builds the document from `value`. A field that is missing gives `null` inside an array
    /// and leaves its key out of an object (so that whoever reads the result names what is
    /// missing); a text with a missing field likewise.
    pub fn render(&self, value: &Value) -> Value {
        self.render_opt(value).unwrap_or(Value::Null)
    }

    fn render_opt(&self, value: &Value) -> Option<Value> {
        match self {
            Shape::Field(path) => path.iter().try_fold(value, |v, key| v.get(key)).cloned(),
            Shape::Text(template) => template.render(value).map(Value::String),
            Shape::Literal(literal) => Some(literal.clone()),
            Shape::Array(items) => Some(Value::Array(items.iter().map(|s| s.render(value)).collect())),
            Shape::Object(entries) => Some(Value::Object(
                entries.iter().filter_map(|(k, s)| s.render_opt(value).map(|v| (k.clone(), v))).collect(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_paths_and_literals() {
        let v = json!({"prediction": {"ride_id": 156, "name": "x"}});
        assert_eq!(Template::parse("{prediction.ride_id}").unwrap().render(&v).as_deref(), Some("156"));
        assert_eq!(Template::parse("r-{prediction.name}-{{}}").unwrap().render(&v).as_deref(), Some("r-x-{}"));
        assert_eq!(Template::parse("{missing}").unwrap().render(&v), None);
        assert!(Template::parse("{").is_err());
        assert_eq!(Template::parse("a{prediction.name}{x.y}").unwrap().missing_field(&v).as_deref(), Some("x.y"));
        assert_eq!(lookup(&v, "prediction.ride_id"), Some(&json!(156)));
    }

    #[test]
    fn a_serialized_output_renders_as_its_value_does() {
        let value = json!({"prediction": {"ride_id": 156, "name": "x\"y"}, "n": null});
        let serialized = Output::serialized(&value).unwrap();
        assert!(serialized.json_text().is_some());
        for text in ["{prediction.ride_id}", "r-{prediction.name}-{{}}", "{missing}", "{n}", "{prediction}"] {
            let template = Template::parse(text).unwrap();
            assert_eq!(template.render_output(&serialized), template.render(&value), "{text}");
            assert_eq!(template.render_output(&Output::from(value.clone())), template.render(&value), "{text}");
        }
    }

    #[test]
    fn shapes_keep_types_and_leave_out_missing_keys() {
        let shape = Shape::parse(&json!({
            "duration": "{prediction.ride_duration}", "model_version": "{version}", "id": "r-{prediction.ride_id}",
            "fixed": 1, "brace": "{{x}}", "list": ["{version}", "{nope}"], "gone": "{nope}"
        }))
        .unwrap();
        let envelope = json!({"version": "v2", "prediction": {"ride_duration": 12.5, "ride_id": 7}});
        assert_eq!(
            shape.render(&envelope),
            json!({"duration": 12.5, "model_version": "v2", "id": "r-7", "fixed": 1, "brace": "{x}",
                   "list": ["v2", null]})
        );
        assert_eq!(Shape::parse(&json!("{body}")).unwrap().render(&json!({"body": [1, 2]})), json!([1, 2]));
        assert!(Shape::parse(&json!({"a": {"b": "{"}})).unwrap_err().starts_with("a.b:"));
    }
}
