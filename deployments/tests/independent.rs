//! `tributary run` with several `--config`: independent pipelines in one process. A slow
//! consumer does not hold back a fast one, and each pipeline has its own counters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, root, scrape};

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[test]
fn a_slow_consumer_does_not_stall_an_independent_one() {
    let dir = tempfile::tempdir().unwrap();
    let rides = dir.path().join("rides.jsonl");
    let mut file = std::fs::File::create(&rides).unwrap();
    for id in 1..=500 {
        writeln!(
            file,
            r#"{{"ride": {{"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1.5}}, "ride_id": {id}}}"#
        )
        .unwrap();
    }
    let uploads = dir.path().join("uploads.jsonl");
    let mut file = std::fs::File::create(&uploads).unwrap();
    for id in 1..=20 {
        let features = r#"{"audio_match": 0.1, "skin_ratio": 0.1, "motion": 0.1, "red_ratio": 0.1}"#;
        writeln!(file, r#"{{"upload_id": "u-{id}", "features": {features}}}"#).unwrap();
    }
    let (fast_out, slow_out) = (dir.path().join("fast.jsonl"), dir.path().join("slow.jsonl"));
    let fast = dir.path().join("fast.toml");
    std::fs::write(
        &fast,
        format!(
            "[sources.rides]\ntype = \"file\"\npath = \"{}\"\n\
             [processors.ride_duration]\ntype = \"ride_duration\"\ninputs = [\"rides\"]\n\
             model = \"processors/models/ride_duration/model.onnx\"\n\
             [sinks.out]\ntype = \"file\"\ninputs = [\"ride_duration\"]\npath = \"{}\"\n",
            rides.display(),
            fast_out.display()
        ),
    )
    .unwrap();
    // One upload per batch, each detector taking 250 ms: at least 5 s in all.
    let slow = dir.path().join("slow.toml");
    std::fs::write(
        &slow,
        format!(
            "[pipeline]\nbatch_size = 1\nmax_in_flight = 1\n\
             [sources.uploads]\ntype = \"file\"\npath = \"{}\"\n\
             [processors.copyright]\ntype = \"copyright\"\ninputs = [\"uploads\"]\nsimulated_latency_ms = 250\n\
             [processors.nsfw]\ntype = \"nsfw\"\ninputs = [\"uploads\"]\n\
             [processors.violence]\ntype = \"violence\"\ninputs = [\"uploads\"]\n\
             [processors.decision]\ntype = \"merge\"\ninputs = [\"copyright\", \"nsfw\", \"violence\"]\n\
             detectors = [\"copyright\", \"nsfw\", \"violence\"]\n\
             [sinks.out]\ntype = \"file\"\ninputs = [\"decision\"]\npath = \"{}\"\n",
            uploads.display(),
            slow_out.display()
        ),
    )
    .unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .current_dir(root())
        .args(["run", "--no-status", "--metrics-addr", &format!("127.0.0.1:{port}"), "--config"])
        .arg(&fast)
        .arg("--config")
        .arg(&slow)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    while lines(&fast_out) < 500 {
        assert!(Instant::now() < deadline, "the fast pipeline did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let slow_done = lines(&slow_out);
    assert!(slow_done < 20, "the slow pipeline should still be working, but it has {slow_done} decisions");
    assert!(child.try_wait().unwrap().is_none(), "the process runs until both pipelines finish");
    let text = scrape(port).unwrap_or_default();
    assert!(text.contains("tributary_records_in_total{pipeline=\"fast\"} 500"), "{text}");
    assert!(text.contains("tributary_records_in_total{pipeline=\"slow\"}"), "{text}");

    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    assert_eq!(lines(&slow_out), 20, "the slow pipeline finished too");
}
