//! The batch job as its users run it: `tributary tlc-sample` writes TLC months with both schema
//! years, `tributary run --config deployments/config/batch.toml` scores them through ONNX
//! Runtime, and the outputs are read back with the `parquet` crate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};

use common::root;

/// A job's folders: input months, predictions, dead letters.
struct Job {
    _dir: tempfile::TempDir,
    data: PathBuf,
    predictions: PathBuf,
    dead_letters: PathBuf,
}

impl Job {
    fn new() -> Job {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("tlc");
        let predictions = dir.path().join("predictions");
        let dead_letters = dir.path().join("dead_letters.jsonl");
        Job { data, predictions, dead_letters, _dir: dir }
    }

    /// `tributary tlc-sample` into the data folder.
    fn sample(&self, months: &str, rows: u64, bad_every: u64, row_group_rows: usize) {
        let out = tributary(&[
            "tlc-sample",
            "--out",
            self.data.to_str().unwrap(),
            "--month",
            months,
            "--rows",
            &rows.to_string(),
            "--bad-every",
            &bad_every.to_string(),
            "--row-group-rows",
            &row_group_rows.to_string(),
        ])
        .output()
        .unwrap();
        assert!(out.status.success(), "tlc-sample: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// `tributary run --config deployments/config/batch.toml` on the job's folders.
    fn command(&self, extra: &[&str]) -> Command {
        let mut cmd = tributary(&["run", "--config", "deployments/config/batch.toml"]);
        cmd.args(extra)
            .env("TLC_DATA", &self.data)
            .env("PREDICTIONS", &self.predictions)
            .env("DEAD_LETTERS", &self.dead_letters);
        cmd
    }

    fn run(&self, extra: &[&str]) -> Output {
        self.command(extra).output().unwrap()
    }

    fn dead_letters(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.dead_letters)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn tributary(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tributary"));
    cmd.current_dir(root()).args(args).env_remove("RUN_ID").env_remove("MODEL").stdin(Stdio::null());
    cmd
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn read(path: &Path) -> Vec<RecordBatch> {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap().map(Result::unwrap).collect()
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

fn floats(batches: &[RecordBatch], column: &str) -> Vec<f64> {
    batches
        .iter()
        .flat_map(|b| {
            let array = arrow_cast(b.column_by_name(column).unwrap_or_else(|| panic!("no column {column}")));
            array.as_primitive::<Float64Type>().values().to_vec()
        })
        .collect()
}

/// Any numeric column as float64 (zone ids are int32 in one year, int64 in another).
fn arrow_cast(array: &ArrayRef) -> ArrayRef {
    use arrow_array::types::Int32Type;
    if let Some(a) = array.as_primitive_opt::<Int32Type>() {
        return Arc::new(a.iter().map(|v| v.map(f64::from)).collect::<Float64Array>());
    }
    if let Some(a) = array.as_primitive_opt::<Int64Type>() {
        return Arc::new(a.iter().map(|v| v.map(|x| x as f64)).collect::<Float64Array>());
    }
    array.clone()
}

#[test]
fn both_schema_years_are_scored_and_bad_rows_dead_lettered_with_their_place() {
    let job = Job::new();
    // 2022's drifted types (int64 zones, double passenger counts, airport_fee) and 2024's.
    job.sample("2022-01,2024-01", 10_000, 500, 2_500);
    let out = job.run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    for month in ["2022-01", "2024-01"] {
        let name = format!("yellow_tripdata_{month}.parquet");
        let batches = read(&job.predictions.join(&name));
        assert_eq!(rows(&batches), 10_000 - 20, "{name}: every good row once, the 20 bad ones left out");
        let schema = batches[0].schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "tpep_pickup_datetime",
                "PULocationID",
                "DOLocationID",
                "trip_distance",
                "ride_duration",
                "model",
                "version"
            ]
        );
        let durations = floats(&batches, "ride_duration");
        let (low, high) = durations.iter().fold((f64::MAX, f64::MIN), |(l, h), d| (l.min(*d), h.max(*d)));
        assert!(durations.iter().all(|d| d.is_finite()) && low > -30.0 && high < 300.0, "{name}: {low}..{high}");
        let version = batches[0].column_by_name("version").unwrap().as_string::<i32>().value(0).to_string();
        assert_eq!(version, "batch");
        let distances = floats(&batches, "trip_distance");
        assert!(distances.iter().all(|d| *d >= 0.0), "{name}: no negative distance was scored");
    }
    let dead = job.dead_letters();
    assert_eq!(dead.len(), 40, "two files, one bad row in 500");
    for entry in &dead {
        let offset = entry["position"]["offset"].as_u64().unwrap();
        assert_eq!(offset % 500, 499, "the generator spoils every 500th row: {entry}");
        assert_eq!(entry["row_group"].as_u64().unwrap(), offset / 2_500, "{entry}");
        assert_eq!(entry["row_in_group"].as_u64().unwrap(), offset % 2_500, "{entry}");
        assert!(entry["position"]["partition"].as_str().unwrap().ends_with(".parquet"), "{entry}");
        assert_eq!(entry["component"], "ride_duration");
        let reason = entry["reason"].as_str().unwrap();
        assert!(
            reason.contains("PULocationID` is missing")
                || reason.contains("DOLocationID` must be a taxi zone id from 1 to 265, found 300")
                || reason.contains("must be a non-negative number of miles"),
            "{reason}"
        );
        let payload: Value = serde_json::from_str(entry["payload"].as_str().unwrap()).unwrap();
        assert!(payload["ride"].is_object(), "the row as the event the model read: {payload}");
    }
    let summary = stderr(&out);
    assert!(summary.contains("rows in 20000, predicted 19960, dead-lettered 40"), "{summary}");

    // A rerun over the same input changes nothing; --force scores it again.
    let output = job.predictions.join("yellow_tripdata_2024-01.parquet");
    let before = std::fs::metadata(&output).unwrap().modified().unwrap();
    let again = job.run(&[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stderr(&again).contains("0 file(s) scored, 2 already done"), "{}", stderr(&again));
    assert_eq!(std::fs::metadata(&output).unwrap().modified().unwrap(), before, "a done month is not rewritten");
    assert_eq!(job.dead_letters().len(), 40, "nothing dead-lettered twice");
    let forced = job.run(&["--force"]);
    assert!(stderr(&forced).contains("2 file(s) scored"), "{}", stderr(&forced));
}

#[test]
fn a_file_whose_column_cannot_serve_fails_alone_naming_the_file_and_column() {
    let job = Job::new();
    job.sample("2024-02", 2_000, 0, 1_000);
    // A month whose zone ids arrived as text: it cannot be scored, the others can.
    let zones: ArrayRef = Arc::new(StringArray::from(vec!["130", "x"]));
    let other: ArrayRef = Arc::new(arrow_array::Int32Array::from(vec![205, 1]));
    let miles: ArrayRef = Arc::new(Float64Array::from(vec![1.0, 2.0]));
    let broken =
        RecordBatch::try_from_iter([("PULocationID", zones), ("DOLocationID", other), ("trip_distance", miles)])
            .unwrap();
    let path = job.data.join("yellow_tripdata_2024-01.parquet");
    let mut writer = ArrowWriter::try_new(File::create(&path).unwrap(), broken.schema(), None).unwrap();
    writer.write(&broken).unwrap();
    writer.close().unwrap();
    let out = job.run(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(log.contains("yellow_tripdata_2024-01.parquet") && log.contains("column `PULocationID` is Utf8"), "{log}");
    assert!(log.contains("1 file(s) scored, 0 already done, 1 failed"), "{log}");
    assert_eq!(rows(&read(&job.predictions.join("yellow_tripdata_2024-02.parquet"))), 2_000);
    assert!(!job.predictions.join("yellow_tripdata_2024-01.parquet").exists());
}

#[test]
fn a_job_killed_mid_file_resumes_there_with_every_row_exactly_once() {
    let job = Job::new();
    let months = "2024-01,2024-02,2024-03,2024-04";
    job.sample(months, 60_000, 0, 15_000);
    // Small batches, so that the job is still inside a file when it is killed (a month takes
    // about 0.3 s so, in a debug build).
    let mut child =
        job.command(&[]).env("TRIBUTARY_SOURCES__TRIPS__BATCH_ROWS", "250").stderr(Stdio::null()).spawn().unwrap();
    let first = job.predictions.join("yellow_tripdata_2024-01.parquet");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !first.exists() {
        assert!(Instant::now() < deadline, "the first month was never written");
        assert!(child.try_wait().unwrap().is_none(), "the job ended before it could be killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let finished: Vec<PathBuf> = output_files(&job.predictions);
    assert!(finished.len() < 4, "killed before the end: {finished:?}");
    let first_written = std::fs::metadata(&first).unwrap().modified().unwrap();

    let out = job.run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let files = output_files(&job.predictions);
    assert_eq!(files.len(), 4, "{files:?}");
    let leftovers: Vec<_> = std::fs::read_dir(&job.predictions)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("tributary-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary file left: {leftovers:?}");
    for file in &files {
        let batches = read(file);
        assert_eq!(rows(&batches), 60_000, "{}: every row once", file.display());
        // Every input row once: the pickup times and zones of the output are the input's, row
        // for row.
        let input = read(&job.data.join(file.file_name().unwrap()));
        let key = |b: &[RecordBatch]| (floats(b, "PULocationID"), floats(b, "trip_distance"));
        assert_eq!(key(&batches), key(&input), "{}", file.display());
    }
    assert_eq!(std::fs::metadata(&first).unwrap().modified().unwrap(), first_written, "finished months are not redone");
    assert!(stderr(&out).contains("already done"), "{}", stderr(&out));
}

fn output_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "parquet") && !p.file_name().unwrap().to_string_lossy().starts_with('.')
        })
        .collect();
    files.sort();
    files
}

#[test]
fn batch_predictions_equal_the_streaming_paths_for_the_same_rides() {
    let job = Job::new();
    job.sample("2023-06", 500, 0, 500);
    let out = job.run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let batch = read(&job.predictions.join("yellow_tripdata_2023-06.parquet"));
    let (pu, dropoff, miles, durations) = (
        floats(&batch, "PULocationID"),
        floats(&batch, "DOLocationID"),
        floats(&batch, "trip_distance"),
        floats(&batch, "ride_duration"),
    );
    // The same rides as stream events, through `tributary run` with a file source.
    let events: String = (0..pu.len())
        .map(|i| {
            json!({"ride": {"PULocationID": pu[i] as i64, "DOLocationID": dropoff[i] as i64, "trip_distance": miles[i]}, "ride_id": i})
                .to_string()
                + "\n"
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (events_path, predictions_path) = (dir.path().join("rides.jsonl"), dir.path().join("predictions.jsonl"));
    std::fs::write(&events_path, events).unwrap();
    let config = dir.path().join("stream.toml");
    std::fs::write(
        &config,
        format!(
            "[sources.rides]\ntype = \"file\"\npath = {:?}\n\n[processors.ride_duration]\ntype = \"ride_duration\"\n\
             inputs = [\"rides\"]\nmodel = \"processors/models/ride_duration/model.onnx\"\n\n[sinks.out]\ntype = \"file\"\n\
             inputs = [\"ride_duration\"]\npath = {:?}\n",
            events_path.display().to_string(),
            predictions_path.display().to_string()
        ),
    )
    .unwrap();
    let stream = tributary(&["run", "--no-status", "--config", config.to_str().unwrap()]).output().unwrap();
    assert!(stream.status.success(), "{}", stderr(&stream));
    let streamed: BTreeMap<u64, f64> = std::fs::read_to_string(&predictions_path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["prediction"]["ride_id"].as_u64().unwrap(), v["prediction"]["ride_duration"].as_f64().unwrap())
        })
        .collect();
    assert_eq!(streamed.len(), durations.len());
    for (i, duration) in durations.iter().enumerate() {
        // The same float32 model output; only the kernel's rounding may differ with the batch
        // size (measured: at most a few units in the last place).
        let streamed = streamed[&(i as u64)];
        assert!((streamed - duration).abs() <= 1e-9 * duration.abs().max(1.0), "ride {i}: {streamed} vs {duration}");
    }
}

/// Objects under `prefix` in `bucket`: key -> bytes.
async fn objects(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let listed = s3.list_objects_v2().bucket(bucket).prefix(prefix).send().await.unwrap();
    let mut out = BTreeMap::new();
    for object in listed.contents() {
        let key = object.key().unwrap().to_string();
        let body = s3.get_object().bucket(bucket).key(&key).send().await.unwrap().body.collect().await.unwrap();
        out.insert(key, body.into_bytes().to_vec());
    }
    out
}

#[tokio::test]
async fn months_on_s3_are_scored_into_an_s3_prefix_the_large_one_by_multipart_upload() {
    common::required("AWS_ENDPOINT_URL");
    let job = Job::new();
    job.sample("2022-01", 5_000, 1_000, 2_000);
    // 600,000 rows written without compression make an output over one 8 MiB part (about 16
    // bytes a row: the constant model and version columns are a dictionary of one value).
    job.sample("2024-01", 600_000, 0, 100_000);
    let s3 = tributary_aws::s3_client().await;
    let (input, output) = (common::unique("tlc-in").to_lowercase(), common::unique("tlc-out").to_lowercase());
    for bucket in [&input, &output] {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
    }
    for month in ["2022-01", "2024-01"] {
        let name = format!("yellow_tripdata_{month}.parquet");
        let body = std::fs::read(job.data.join(&name)).unwrap();
        s3.put_object().bucket(&input).key(format!("tlc/{name}")).body(body.into()).send().await.unwrap();
    }
    s3.put_object().bucket(&input).key("tlc/README.txt").body(b"not a month".to_vec().into()).send().await.unwrap();
    // Run from a scratch folder: the checkpoint of a job writing to S3 is local
    // (.tributary/batch/), and the repository's own must not collect test runs.
    let cwd = tempfile::tempdir().unwrap();
    let run = || {
        tributary(&["run", "--config", root().join("deployments/config/batch.toml").to_str().unwrap()])
            .current_dir(cwd.path())
            .env("MODEL", root().join("processors/models/ride_duration/model.onnx"))
            .env("ORT_DYLIB_PATH", root().join(".venv/lib/libonnxruntime.so"))
            .env("TLC_DATA", format!("s3://{input}/tlc/"))
            .env("PREDICTIONS", format!("s3://{output}/predictions/"))
            .env("DEAD_LETTERS", &job.dead_letters)
            .env("TRIBUTARY_SINKS__PREDICTIONS__COMPRESSION", "none")
            .output()
            .unwrap()
    };
    // (The job runs to its end; this test's runtime has nothing else to do meanwhile.)
    let out = run();
    assert!(out.status.success(), "{}", stderr(&out));
    let written = objects(&s3, &output, "").await;
    let keys: Vec<&str> = written.keys().map(String::as_str).collect();
    assert_eq!(keys, ["predictions/yellow_tripdata_2022-01.parquet", "predictions/yellow_tripdata_2024-01.parquet"]);
    let big = &written["predictions/yellow_tripdata_2024-01.parquet"];
    assert!(big.len() > 8 * 1024 * 1024, "the large month went up in parts: {} bytes", big.len());
    let rows_of = |bytes: &Vec<u8>| -> usize {
        ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes.clone()))
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap().num_rows())
            .sum()
    };
    assert_eq!(rows_of(&written["predictions/yellow_tripdata_2022-01.parquet"]), 4_995);
    assert_eq!(rows_of(big), 600_000);
    let dead = job.dead_letters();
    assert_eq!(dead.len(), 5);
    assert!(
        dead[0]["position"]["partition"].as_str().unwrap().starts_with(&format!("s3://{input}/tlc/")),
        "{}",
        dead[0]
    );
    let unfinished = s3.list_multipart_uploads().bucket(&output).send().await.unwrap();
    assert!(unfinished.uploads().is_empty(), "no upload left open");
    // Done months are skipped on a rerun.
    let again = run();
    assert!(stderr(&again).contains("0 file(s) scored, 2 already done"), "{}", stderr(&again));
}
