//! Field templates over JSON values: `"{prediction.ride_id}"`, `"ride-{ride_id}"`, for sink
//! keys, join keys and model features. Each `{dotted.path}` is replaced by the value at that
//! path (strings as they are, other values as JSON text); `{{` and `}}` are literal braces.

use serde_json::Value;

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Vec<String>),
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
                    parts.push(Part::Field(field.trim().split('.').map(str::to_owned).collect()));
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
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(path) => {
                    let found = path.iter().try_fold(value, |v, key| v.get(key))?;
                    match found {
                        Value::Null => return None,
                        Value::String(s) => out.push_str(s),
                        other => out.push_str(&other.to_string()),
                    }
                }
            }
        }
        Some(out)
    }

    /// The first field of the template that is missing or null in `value`, as a dotted path;
    /// `None` when the template renders.
    pub fn missing_field(&self, value: &Value) -> Option<String> {
        self.parts.iter().find_map(|part| match part {
            Part::Field(path) if path.iter().try_fold(value, |v, key| v.get(key)).is_none_or(Value::is_null) => {
                Some(path.join("."))
            }
            _ => None,
        })
    }
}

/// The value at a dotted path (`"ride.trip_distance"`), if present.
pub fn lookup<'a>(value: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(value, |v, key| v.get(key))
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
}
