//! `tributary inspect MODEL`: what a model takes and gives, and a ready-to-edit
//! `[processors.<name>]` table mapping every input and output.

use std::fmt::Write as _;
use std::path::Path;

use super::model::{OnnxModel, Port, PortKind};

/// Fields of an `[N, F]` input listed one by one in the snippet, up to this many.
const MAX_LISTED_FIELDS: usize = 16;

/// The report for `model` (a path, an `s3://` URI or an MLflow URI).
///
/// # Errors
/// The model cannot be read or loaded.
pub async fn inspect(model: &str) -> Result<String, String> {
    let loaded = OnnxModel::open(model, None, 1, 1).await?;
    let mut out = String::new();
    let _ = writeln!(out, "model: {}", loaded.location);
    if let Some(resolution) = &loaded.resolution {
        let _ = writeln!(out, "resolved: {resolution}");
    }
    let _ = writeln!(out, "version (the envelope's default): {}", loaded.version);
    for (key, value) in loaded.metadata() {
        let _ = writeln!(out, "{key}: {value}");
    }
    let _ = writeln!(out, "\ninputs:");
    for port in loaded.inputs() {
        let _ = writeln!(out, "  {}: {}", port.name, port.describe());
    }
    let _ = writeln!(out, "\noutputs:");
    for port in loaded.outputs() {
        let _ = writeln!(out, "  {}: {}", port.name, port.describe());
    }
    if let Some(signature) = mlflow_signature(model) {
        let _ = writeln!(out, "\nMLflow signature (MLmodel beside the model):\n{signature}");
    } else if let Some(inputs) = &loaded.signature {
        let _ = writeln!(out, "\nMLflow signature inputs (the model folder's MLmodel):");
        for input in inputs {
            let _ = writeln!(out, "  {input}");
        }
    }
    let _ = writeln!(
        out,
        "\n# Paste into a pipeline, then map each input to your events' fields:\n{}",
        snippet(model, &loaded)
    );
    Ok(out)
}

/// The `signature:` section of an `MLmodel` file beside a local model, as written.
fn mlflow_signature(model: &str) -> Option<String> {
    let path = Path::new(model);
    let dir = if path.is_dir() { path } else { path.parent()? };
    let text = std::fs::read_to_string(dir.join("MLmodel")).ok()?;
    let mut lines = text.lines().skip_while(|l| !l.starts_with("signature:"));
    let first = lines.next()?;
    let rest = lines.take_while(|l| l.starts_with(' ') || l.is_empty());
    Some(std::iter::once(first).chain(rest).collect::<Vec<_>>().join("\n"))
}

/// A `[processors.<name>]` table with every input and output mapped to a placeholder.
fn snippet(model: &str, loaded: &OnnxModel) -> String {
    // `.../fare/model.onnx` (MLflow's layout) is named after its folder.
    let path = Path::new(model.trim_end_matches('/'));
    let stem = path.file_stem().and_then(|s| s.to_str()).filter(|s| *s != "model");
    let folder = || path.parent().and_then(Path::file_name).and_then(|s| s.to_str());
    let registered = match crate::mlflow::ModelUri::parse(model) {
        Some(Ok(crate::mlflow::ModelUri::Alias { name, .. } | crate::mlflow::ModelUri::Version { name, .. }))
        | Some(Ok(crate::mlflow::ModelUri::Latest { name })) => Some(name),
        _ => None,
    };
    let name = match &registered {
        Some(name) => name.as_str(),
        None if model.starts_with("runs:/") => "my_model",
        None => stem.or_else(folder).unwrap_or("my_model"),
    };
    let id: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let mut out = String::new();
    let _ = writeln!(out, "[processors.{id}]");
    let _ = writeln!(out, "type = \"onnx\"");
    let _ = writeln!(out, "inputs = [\"<source id>\"]");
    let _ = writeln!(out, "model = {}", quoted(model));
    let _ = writeln!(out, "model_name = {}", quoted(&format!("{id}_model")));
    let _ = writeln!(
        out,
        "echo = []                       # event fields copied into each prediction, such as \"ride_id\""
    );
    let _ = writeln!(out, "\n[processors.{id}.features]");
    for port in loaded.inputs() {
        let _ = writeln!(out, "{} = {}", key(&port.name), feature(port));
    }
    let _ = writeln!(out, "\n[processors.{id}.outputs]        # prediction field = model output");
    for port in loaded.outputs() {
        let _ = writeln!(out, "{} = {}{}", key(&port.name), quoted(&port.name), output_hint(port));
    }
    out
}

fn feature(port: &Port) -> String {
    match &port.kind {
        PortKind::Dict { vocabulary, ty, .. } => {
            let mut keys: Vec<&str> = Vec::new();
            for feature in vocabulary.iter() {
                let key = feature.split_once('=').map_or(feature.as_str(), |(k, _)| k);
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            let entries: Vec<String> = keys
                .iter()
                .map(|k| format!("{} = {{ field = {} }}", self::key(k), quoted(&format!("<{k}>"))))
                .collect();
            format!("{{ entries = {{ {} }}, type = \"{}\" }}", entries.join(", "), ty.name())
        }
        PortKind::Tensor { ty, .. } => match port.width() {
            Some(1) => format!("{{ field = {}, type = \"{}\" }}", quoted(&format!("<{}>", port.name)), ty.name()),
            Some(width) if width <= MAX_LISTED_FIELDS => {
                let fields: Vec<String> = (0..width).map(|i| quoted(&format!("<{} {i}>", port.name))).collect();
                format!(
                    "{{ fields = [{}], type = \"{}\" }}   # or {{ field = \"<an array of {width}>\" }}",
                    fields.join(", "),
                    ty.name()
                )
            }
            Some(width) => format!(
                "{{ field = {}, type = \"{}\" }}   # an array of {width} values per record",
                quoted(&format!("<{}>", port.name)),
                ty.name()
            ),
            None => format!(
                "{{ fields = [{}], type = \"{}\" }}   # {}: one field per column",
                quoted("<column 0>"),
                ty.name(),
                port.describe()
            ),
        },
        PortKind::ClassMap { .. } | PortKind::Unsupported(_) => {
            format!("{{ field = \"<field>\", type = \"float\" }}   # {}: cannot be filled from events", port.describe())
        }
    }
}

fn output_hint(port: &Port) -> String {
    match (&port.kind, port.width()) {
        (PortKind::ClassMap { .. }, _) => "   # {class: probability}; or { output = ..., select = \"max\" }".into(),
        (PortKind::Tensor { .. }, Some(1)) => String::new(),
        (PortKind::Tensor { .. }, _) => {
            format!("   # an array per record; or {{ output = {}, index = 1 }}", quoted(&port.name))
        }
        _ => format!("   # {}", port.describe()),
    }
}

/// A TOML key: bare when it can be, else quoted.
fn key(name: &str) -> String {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        name.to_string()
    } else {
        quoted(name)
    }
}

/// A TOML basic string.
fn quoted(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_quoted_only_when_toml_needs_it() {
        assert_eq!(key("float_input"), "float_input");
        assert_eq!(key("input:0"), "\"input:0\"");
        assert_eq!(key(""), "\"\"");
    }
}
