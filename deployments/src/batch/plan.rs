//! A batch config, checked and built: the `parquet` source's settings, the processors that take
//! columns, the `parquet` sinks and the dead-letter destination.

use std::collections::BTreeMap;
use std::sync::Arc;

use tributary_framework::columns::{ColumnField, ColumnKind};
use tributary_framework::config::PipelineConfig;
use tributary_framework::dead_letter::LogDeadLetter;
use tributary_framework::registry::Registry;
use tributary_framework::{ConfigError, Processor, Sink};
use tributary_sinks::parquet::ParquetSinkConfig;
use tributary_sources::parquet::ParquetConfig;
use tributary_sources::parquet::read::FieldColumn;

/// Whether `config` is a batch job: its source is `parquet`.
pub fn is_batch(config: &PipelineConfig) -> bool {
    config.sources.values().any(|s| s.kind == "parquet")
}

/// A processor of the job.
pub(crate) struct Model {
    pub id: String,
    pub processor: Arc<dyn Processor>,
}

/// A sink of the job: which processor it writes and how.
pub(crate) struct Output {
    pub id: String,
    /// Index in [`Plan::models`].
    pub model: usize,
    pub config: ParquetSinkConfig,
    pub codec: parquet::basic::Compression,
}

/// The job, built.
pub(crate) struct Plan {
    pub source_id: Arc<str>,
    pub source: ParquetConfig,
    /// Every field some processor reads, with its column.
    pub fields: Vec<FieldColumn>,
    /// Every column some sink copies.
    pub passthrough: Vec<String>,
    pub models: Vec<Model>,
    pub outputs: Vec<Output>,
    pub dead_letter: Arc<dyn Sink>,
}

impl Plan {
    /// Checks the shape of a batch config and builds its components.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, the component and the key.
    pub async fn build(config: &PipelineConfig, registry: &Registry) -> Result<Plan, ConfigError> {
        let Some((source_id, spec)) = config.sources.iter().find(|(_, s)| s.kind == "parquet") else {
            return Err(ConfigError::Load {
                file: config.file.clone(),
                message: "a batch job needs a parquet source".into(),
            });
        };
        if let Some((_, other)) = config.sources.iter().find(|(id, _)| *id != source_id) {
            return Err(other.error("type", "a batch job reads one parquet source; give each its own config"));
        }
        let source: ParquetConfig = spec.parse()?;
        let columns_of = source.fields().map_err(|(key, message)| spec.error(&key, message))?;
        let mut models = Vec::new();
        let mut fields: BTreeMap<String, FieldColumn> = BTreeMap::new();
        for (id, p) in &config.processors {
            if p.inputs != [source_id.clone()] {
                return Err(
                    p.error("inputs", format!("a batch job's processors read its source: inputs = [{source_id:?}]"))
                );
            }
            let processor = registry.build_processor(p.clone()).await?;
            let Some(wanted) = processor.column_fields() else {
                return Err(p.error(
                    "type",
                    format!("processor type {:?} takes events only; a parquet batch job needs one that takes columns (ride_duration, or onnx without a shadow)", p.kind),
                ));
            };
            for ColumnField { path, kind } in wanted {
                let column = columns_of.get(&path).ok_or_else(|| {
                    spec.error(
                        "event",
                        format!("processor {id:?} reads `{path}`: map a column to it (`\"{{column}}\"`)"),
                    )
                })?;
                merge_field(&mut fields, &path, column, kind).map_err(|m| spec.error("event", m))?;
            }
            models.push(Model { id: id.clone(), processor });
        }
        if models.is_empty() {
            return Err(spec.error("type", "a batch job needs at least one processor"));
        }
        let mut outputs = Vec::new();
        let mut passthrough: Vec<String> = Vec::new();
        for (id, s) in &config.sinks {
            if s.kind != "parquet" {
                return Err(s.error("type", "a parquet batch job writes parquet sinks"));
            }
            let model = match s.inputs.as_slice() {
                [one] => models.iter().position(|m| &m.id == one),
                _ => None,
            }
            .ok_or_else(|| {
                s.error("inputs", "a parquet sink writes one processor's predictions: inputs = [\"<processor>\"]")
            })?;
            let sink: ParquetSinkConfig = s.parse()?;
            let codec = sink.codec().map_err(|e| s.error("compression", e))?;
            for column in &sink.columns {
                if !passthrough.contains(column) {
                    passthrough.push(column.clone());
                }
            }
            outputs.push(Output { id: id.clone(), model, config: sink, codec });
        }
        if outputs.is_empty() {
            return Err(spec.error("type", "a batch job needs a parquet sink"));
        }
        let dead_letter = match &config.dead_letter {
            Some(dl) => registry.build_sink(dl.clone()).await?,
            None => Arc::new(LogDeadLetter),
        };
        Ok(Plan {
            source_id: Arc::from(source_id.as_str()),
            source,
            fields: fields.into_values().collect(),
            passthrough,
            models,
            outputs,
            dead_letter,
        })
    }

    /// Where the job's checkpoint lives: beside the first sink's files (`_` keeps Parquet
    /// dataset readers from taking it for data).
    /// For outputs on S3, in `.tributary/batch/` of the working folder.
    pub fn checkpoint_path(&self) -> std::path::PathBuf {
        let first = self.outputs.first().map_or(".", |o| o.config.path.as_str());
        let name = format!("_tributary_checkpoint.{}.json", self.source_id);
        if first.starts_with("s3://") {
            std::path::Path::new(".tributary/batch").join(name)
        } else {
            std::path::Path::new(first).join(name)
        }
    }
}

fn merge_field(
    fields: &mut BTreeMap<String, FieldColumn>,
    path: &str,
    column: &str,
    kind: ColumnKind,
) -> Result<(), String> {
    match fields.get_mut(path) {
        // A field one processor takes as it comes and another as a type: the type serves both.
        Some(existing) if existing.kind == ColumnKind::Any => {
            existing.kind = kind;
            Ok(())
        }
        Some(_) if kind == ColumnKind::Any => Ok(()),
        Some(existing) if existing.kind != kind => {
            Err(format!("`{path}` is read as {:?} by one processor and {kind:?} by another", existing.kind))
        }
        Some(_) => Ok(()),
        None => {
            fields.insert(path.to_string(), FieldColumn { path: path.into(), column: column.into(), kind });
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_read_as_any_value_takes_the_type_another_processor_asks_for() {
        let mut fields = BTreeMap::new();
        merge_field(&mut fields, "ride.trip_distance", "trip_distance", ColumnKind::Any).unwrap();
        merge_field(&mut fields, "ride.trip_distance", "trip_distance", ColumnKind::Float64).unwrap();
        merge_field(&mut fields, "ride.trip_distance", "trip_distance", ColumnKind::Any).unwrap();
        assert_eq!(fields["ride.trip_distance"].kind, ColumnKind::Float64);
        let error = merge_field(&mut fields, "ride.trip_distance", "trip_distance", ColumnKind::Int64).unwrap_err();
        assert!(error.contains("Float64 by one processor and Int64"), "{error}");
    }
}
