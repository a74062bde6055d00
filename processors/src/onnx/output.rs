//! How model outputs become prediction fields: the plan checked against the model at build
//! time ([`OutputPlan::new`]) and each record's JSON value ([`OutputPlan::value`]).

use std::sync::Arc;

use serde_json::{Map, Value};

use super::SignatureError;
use super::config::{OutputSpec, Select};
use super::model::{Port, PortKind};
use super::tensor::{ElementType, Values};

/// One prediction field.
pub struct OutputPlan {
    /// The prediction field's name.
    pub field: String,
    /// The index of the model output it reads.
    pub output: usize,
    pick: Pick,
    /// A ZipMap's classes.
    labels: Option<Arc<[String]>>,
}

enum Pick {
    Whole,
    Index(usize),
    Max,
}

impl OutputPlan {
    /// Checks the field `field = spec` against the model's outputs.
    ///
    /// # Errors
    /// The config key at fault and what is wrong.
    pub fn new(field: &str, spec: &OutputSpec, outputs: &[Port], location: &str) -> Result<Self, SignatureError> {
        let key = format!("outputs.{field}");
        let wanted = spec.output();
        let Some(index) = outputs.iter().position(|p| p.name == wanted) else {
            let names: Vec<&str> = outputs.iter().map(|p| p.name.as_str()).collect();
            return Err((key, format!("{location} has no output {wanted:?}; its outputs are {names:?}")));
        };
        let port = &outputs[index];
        let labels = match &port.kind {
            PortKind::ClassMap { labels } => Some(labels.clone()),
            PortKind::Tensor { .. } => None,
            PortKind::Dict { .. } | PortKind::Unsupported(_) => {
                return Err((
                    key,
                    format!(
                        "{location} declares output {wanted:?} as {}, which tributary cannot read",
                        port.describe()
                    ),
                ));
            }
        };
        let pick = match spec {
            OutputSpec::Name(_) => Pick::Whole,
            OutputSpec::Pick(pick) => match (pick.index, pick.select) {
                (Some(i), None) => {
                    if let Some(width) = port.width().filter(|w| i >= *w) {
                        return Err((
                            format!("{key}.index"),
                            format!(
                                "{location} declares output {wanted:?} as {}: {width} values per record, no index {i}",
                                port.describe()
                            ),
                        ));
                    }
                    Pick::Index(i)
                }
                (None, Some(Select::Max)) => {
                    if matches!(port.kind, PortKind::Tensor { ty: ElementType::String, .. }) {
                        return Err((format!("{key}.select"), format!("output {wanted:?} holds strings: no maximum")));
                    }
                    Pick::Max
                }
                _ => return Err((key, "set exactly one of `index` and `select`".into())),
            },
        };
        Ok(OutputPlan { field: field.to_string(), output: index, pick, labels })
    }

    /// Record `row`'s value as a number, when the output gives one number per record (a
    /// regression, an index, the highest score): the columnar path's prediction column.
    pub fn number(&self, values: &Values, rows: usize, row: usize) -> Option<f64> {
        let width = values.len() / rows.max(1);
        let start = row * width;
        match self.pick {
            Pick::Index(i) if i < width => values.number(start + i),
            Pick::Index(_) => None,
            Pick::Max => (start..start + width)
                .filter_map(|k| values.number(k))
                .fold(None, |best, x| Some(f64::max(best.unwrap_or(x), x))),
            Pick::Whole if width == 1 && self.labels.is_none() => values.number(start),
            Pick::Whole => None,
        }
    }

    /// Record `row`'s value, out of `values` for a batch of `rows` records.
    ///
    /// # Errors
    /// The output holds fewer values per record than the index asks for.
    pub fn value(&self, values: &Values, rows: usize, row: usize) -> Result<Value, String> {
        let width = values.len() / rows.max(1);
        let start = row * width;
        match self.pick {
            Pick::Index(i) if i < width => Ok(values.json(start + i)),
            Pick::Index(i) => Err(format!("output of {width} values per record has no index {i}")),
            Pick::Max => {
                let best = (start..start + width)
                    .filter_map(|k| values.number(k))
                    .fold(None, |best: Option<f64>, x| Some(best.map_or(x, |b| b.max(x))));
                Ok(best.map_or(Value::Null, Value::from))
            }
            Pick::Whole => Ok(match &self.labels {
                Some(labels) if labels.len() != width => {
                    return Err(format!("{} classes but {width} probabilities per record", labels.len()));
                }
                Some(labels) => {
                    let object: Map<String, Value> =
                        labels.iter().enumerate().map(|(j, label)| (label.clone(), values.json(start + j))).collect();
                    Value::Object(object)
                }
                None if width == 1 => values.json(start),
                None => Value::Array((start..start + width).map(|k| values.json(k)).collect()),
            }),
        }
    }
}
