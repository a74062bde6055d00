//! `tributary run` on a config whose source is `parquet`: the batch job (the seeds' batch
//! mode, a month of TLC rides scored on a schedule).
//!
//! A stream runs record by record through the graph (`tributary_framework::runtime`); a file
//! job takes the columnar fast path instead ([`tributary_framework::columns`]): each batch of
//! rows is read as the few columns the processors need, the processors predict whole columns,
//! and the predictions go back into Parquet with the chosen input columns. No JSON value is
//! made per row, except for rows that are dead-lettered.
//!
//! Files are scored one after the other in name order. Each input file gives one output file
//! per sink, under the input's name, renamed into place when complete; then the checkpoint
//! records the input ([`checkpoint`]). A job killed mid-file resumes at that file: its
//! temporary output is removed and the file scored again, so every row is in the output
//! exactly once. A rerun over the same input does nothing unless `--force`.

mod checkpoint;
#[cfg(feature = "parquet-s3")]
pub mod objects;
mod plan;
mod progress;
mod storage;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value};
use tributary_framework::columns::{ColumnBatch, ColumnData, ColumnOutput};
use tributary_framework::config::PipelineConfig;
use tributary_framework::registry::Registry;
use tributary_framework::{Delivery, Input, Offset, Output, Position, Record};
use tributary_sinks::parquet::OutputFile;
use tributary_sources::parquet::OnFileError;
use tributary_sources::parquet::read::{FileBatch, FileReader};

use plan::Plan;
pub use plan::is_batch;
use progress::Progress;
use storage::{InputFile, Storage};

/// How `tributary run` runs a batch job.
#[derive(Clone, Copy, Debug, Default)]
pub struct BatchOptions {
    /// Score every file, even those the checkpoint has as done.
    pub force: bool,
    /// Draw the progress bar on a terminal.
    pub progress: bool,
}

/// Counts for one file or the whole job.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    rows: u64,
    predicted: u64,
    dead_lettered: u64,
}

/// Runs the batch job `config` describes. The exit status says whether every file was scored:
/// 0 all, 1 not all (each failure on stderr), 2 the config does not build. Meant to end the
/// process: the job's models are not freed.
pub async fn run(config: &PipelineConfig, registry: &Registry, options: BatchOptions) -> u8 {
    let plan = match Plan::build(config, registry).await {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let status = match score_all(&plan, options).await {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    };
    // The job is the process's last work (`tributary run` ends right after, see `cli::end_now`):
    // its models are left as they are rather than torn down (ONNX Runtime's session teardown was
    // about 3 ms of a 40 ms job on a small file).
    std::mem::forget(plan);
    status
}

/// Checks a batch config and builds its components (`tributary validate`).
///
/// # Errors
/// What [`Plan::build`] reports.
pub async fn validate(config: &PipelineConfig, registry: &Registry) -> Result<(), tributary_framework::ConfigError> {
    Plan::build(config, registry).await.map(|_| ())
}

/// Scores every file; `Ok(false)` when some failed.
async fn score_all(plan: &Plan, options: BatchOptions) -> Result<bool, String> {
    let mut paths = vec![plan.source.path.as_str()];
    paths.extend(plan.outputs.iter().map(|o| o.config.path.as_str()));
    let storage = Storage::new(&paths).await?;
    let files = storage.list(&plan.source.path).await.map_err(|e| format!("{}: {e}", plan.source_id))?;
    for output in &plan.outputs {
        let removed = storage.clean(&output.config.path).await;
        if removed > 0 {
            tracing::warn!(sink = %output.id, removed, "removed unfinished output files of an earlier run");
        }
    }
    let mut checkpoint = checkpoint::Checkpoint::load(&plan.checkpoint_path())?;
    let mut todo = Vec::new();
    let mut skipped = 0;
    for file in files {
        let (size, modified) = file.stamp()?;
        if !options.force && checkpoint.is_done(&file.key(), size, modified) {
            skipped += 1;
        } else {
            todo.push((file, size, modified));
        }
    }
    let started = Instant::now();
    let mut progress = Progress::new(todo.len(), todo.iter().map(|(_, size, _)| *size).sum(), options.progress);
    let (mut total, mut failed) = (Counts::default(), Vec::new());
    for (file, size, modified) in &todo {
        match score_file(plan, &storage, file, *size, &mut progress).await {
            Ok(counts) => {
                checkpoint.mark(
                    &file.key(),
                    checkpoint::Done {
                        size: *size,
                        modified_unix_ms: *modified,
                        rows: counts.rows,
                        predicted: counts.predicted,
                        dead_lettered: counts.dead_lettered,
                    },
                )?;
                total.rows += counts.rows;
                total.predicted += counts.predicted;
                total.dead_lettered += counts.dead_lettered;
                progress.file_done(&file.key(), counts.rows);
            }
            Err(e) => {
                progress.clear();
                eprintln!("error: {e}");
                failed.push(file.key());
                progress.file_failed(*size);
                if plan.source.on_file_error == OnFileError::Stop {
                    break;
                }
            }
        }
    }
    progress.clear();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "batch {}: {} file(s) scored, {skipped} already done, {} failed; rows in {}, predicted {}, dead-lettered {}; \
         {seconds:.2} s ({:.0} rows/s)",
        plan.source_id,
        todo.len() - failed.len(),
        failed.len(),
        total.rows,
        total.predicted,
        total.dead_lettered,
        total.rows as f64 / seconds.max(1e-9),
    );
    if let Err((id, e)) = close(plan).await {
        return Err(format!("{id}: {e}"));
    }
    for file in &failed {
        eprintln!("failed: {file} (rerun to retry it; the files scored are kept)");
    }
    Ok(failed.is_empty())
}

async fn close(plan: &Plan) -> Result<(), (String, tributary_framework::ComponentError)> {
    plan.dead_letter.close().await.map_err(|e| ("dead_letter".to_string(), e))
}

/// Scores one file into a new output file per sink.
async fn score_file(
    plan: &Plan,
    storage: &Storage,
    file: &InputFile,
    size: u64,
    progress: &mut Progress,
) -> Result<Counts, String> {
    let key = file.key();
    let local = storage.fetch(file).await?;
    let mut reader =
        FileReader::open_as(&local.path, Path::new(&key), &plan.fields, &plan.passthrough, plan.source.batch_rows)?;
    let name = file.name();
    let mut outputs = plan
        .outputs
        .iter()
        .map(|o| OutputFile::start(&storage.output_dir(&o.config.path, &o.id), &name, o.codec))
        .collect::<Result<Vec<_>, _>>()?;
    let partition: Arc<str> = Arc::from(key.as_str());
    let mut counts = Counts::default();
    while let Some(batch) = reader.next_batch() {
        let batch = batch?;
        let rows = batch.columns.rows;
        let mut results: Vec<ColumnOutput> = Vec::with_capacity(plan.models.len());
        for model in &plan.models {
            let out = model
                .processor
                .process_columns(&batch.columns)
                .await
                .map_err(|e| format!("{key}: processor {}: {e}", model.id))?;
            check_lengths(&out, rows).map_err(|e| format!("{key}: processor {}: {e}", model.id))?;
            results.push(out);
        }
        counts.dead_lettered += dead_letter(plan, &reader, &partition, &batch, &results).await?;
        for (spec, output) in plan.outputs.iter().zip(outputs.iter_mut()) {
            let result = &results[spec.model];
            let mut keep = vec![true; rows];
            for &(row, _) in &result.rejected {
                keep[row] = false;
            }
            output.write(&batch.passthrough, &result.columns, &keep).map_err(|e| format!("{}: {e}", spec.id))?;
        }
        counts.rows += rows as u64;
        counts.predicted += results.iter().map(|r| (rows - r.rejected.len()) as u64).min().unwrap_or(0);
        progress.advance(rows as u64, size, reader.rows);
    }
    for (spec, output) in plan.outputs.iter().zip(outputs) {
        let path = output.path().to_path_buf();
        if output.commit()? > 0 {
            storage.publish(&spec.config.path, &path).await.map_err(|e| format!("{}: {e}", spec.id))?;
        }
    }
    Ok(counts)
}

fn check_lengths(out: &ColumnOutput, rows: usize) -> Result<(), String> {
    for (name, column) in &out.columns {
        if column.data.len() != rows {
            return Err(format!("column {name} has {} values for {rows} rows", column.data.len()));
        }
    }
    Ok(())
}

/// Sends every rejected row to the dead-letter destination with its file, row group and row;
/// returns how many. A destination that does not take them fails the file (nothing is lost:
/// the file is scored again on the next run).
async fn dead_letter(
    plan: &Plan,
    reader: &FileReader,
    partition: &Arc<str>,
    batch: &FileBatch,
    results: &[ColumnOutput],
) -> Result<u64, String> {
    let mut records = Vec::new();
    let mut docs = Vec::new();
    for (model, result) in plan.models.iter().zip(results) {
        for (row, reason) in &result.rejected {
            let row_in_file = batch.first_row + *row as u64;
            let payload = serde_json::to_vec(&row_event(&batch.columns, *row)).unwrap_or_default();
            let position = Position {
                source: plan.source_id.clone(),
                partition: partition.clone(),
                offset: Offset::Index(row_in_file),
            };
            let record = Record::new(payload, position);
            let mut doc = tributary_framework::dead_letter::entry(&record, &model.id, reason, None);
            let (group, in_group) = reader.locate(row_in_file);
            doc["row_group"] = Value::from(group);
            doc["row_in_group"] = Value::from(in_group);
            records.push(record);
            docs.push(doc);
        }
    }
    if docs.is_empty() {
        return Ok(0);
    }
    let docs: Vec<Output> = docs.into_iter().map(Output::from).collect();
    let inputs: Vec<Input<'_>> = docs.iter().zip(&records).map(|(value, record)| Input { value, record }).collect();
    let deliveries =
        plan.dead_letter.deliver(&inputs).await.map_err(|e| format!("the dead-letter destination failed: {e}"))?;
    if let Some(refused) = deliveries.iter().find(|d| **d != Delivery::Delivered) {
        return Err(format!("the dead-letter destination did not take a rejected row: {refused:?}"));
    }
    Ok(docs.len() as u64)
}

/// Row `row` as the event the processors would have read on a stream.
fn row_event(batch: &ColumnBatch, row: usize) -> Value {
    let mut event = Map::new();
    for (path, column) in &batch.fields {
        let value = if column.is_null(row) {
            Value::Null
        } else {
            match &column.data {
                ColumnData::Int64(v) => Value::from(v[row]),
                ColumnData::Float64(v) => Value::from(v[row]),
                ColumnData::Utf8(v) => Value::from(v[row].clone()),
                ColumnData::Same(text, _) => Value::from(text.clone()),
            }
        };
        insert(&mut event, path, value);
    }
    Value::Object(event)
}

/// Sets `path` (dotted) in `object`, making the tables on the way.
fn insert(object: &mut Map<String, Value>, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            object.insert(path.to_string(), value);
        }
        Some((head, rest)) => {
            let entry = object.entry(head.to_string()).or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            if let Value::Object(inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}
