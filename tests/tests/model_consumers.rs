//! Several model consumers on one stream: fan-out to the ride-duration and tip models, content
//! moderation (three detectors merged into one decision), and a new ONNX consumer added by
//! configuration alone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use serde_json::{Value, json};
use tributary_tests::{read_repo_file, repo_path, run_pipeline};

fn rides_file(ids: std::ops::RangeInclusive<u64>) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    for id in ids {
        let ride = json!({"ride": {"PULocationID": 1 + id % 265, "DOLocationID": 205, "trip_distance": 0.5 + id as f64 / 10.0}, "ride_id": id});
        writeln!(file, "{ride}").unwrap();
    }
    file
}

#[tokio::test]
async fn one_ride_feeds_the_duration_and_the_tip_model() {
    let rides = rides_file(1..=50);
    let toml = format!(
        "[sources.rides]\ntype = \"file\"\npath = \"{}\"\n\
         [processors.ride_duration]\ntype = \"ride_duration\"\ninputs = [\"rides\"]\nmodel = \"{{model}}\"\n\
         [processors.tip]\ntype = \"tip\"\ninputs = [\"rides\"]\nmodel = \"{{root}}/processors/models/tip/model.onnx\"\n\
         [sinks.out]\ntype = \"file\"\ninputs = [\"ride_duration\", \"tip\"]\npath = \"{{out}}\"\n\
         [dead_letter]\ntype = \"file\"\npath = \"{{dead}}\"\n",
        rides.path().display()
    );
    let run = run_pipeline(&toml).await.unwrap();
    assert_eq!(run.summary.metrics.records_in, 50, "each ride is read once");
    assert_eq!(run.outputs.len(), 100, "two envelopes per ride");
    let metrics: Value = serde_json::from_str(&read_repo_file("processors/models/tip/metrics.json").unwrap()).unwrap();
    let (slope, intercept) = (metrics["coef_per_mile"].as_f64().unwrap(), metrics["intercept"].as_f64().unwrap());
    for id in 1..=50u64 {
        let of = |model: &str| {
            run.outputs.iter().filter(|o| o["model"] == model && o["prediction"]["ride_id"] == id).collect::<Vec<_>>()
        };
        let (duration, tip) = (of("ride_duration_prediction_model"), of("tip_prediction_model"));
        assert_eq!((duration.len(), tip.len()), (1, 1), "ride {id}: {duration:?} {tip:?}");
        assert!(duration[0]["prediction"]["ride_duration"].as_f64().unwrap() > 0.0);
        // The placeholder is a linear model of the distance: check it against its own metrics.
        let distance = 0.5 + id as f64 / 10.0;
        let expected = slope * distance + intercept;
        let tip_amount = tip[0]["prediction"]["tip_amount"].as_f64().unwrap();
        assert!((tip_amount - expected).abs() < 1e-4, "ride {id}: tip {tip_amount}, expected {expected}");
        assert_eq!(tip[0]["prediction"].as_object().unwrap().keys().collect::<Vec<_>>(), ["tip_amount", "ride_id"]);
        assert!(tip[0]["version"].as_str().is_some_and(|v| !v.is_empty()));
    }
    assert!(run.dead.is_empty(), "{:?}", run.dead);
}

fn moderation_pipeline(uploads: &std::path::Path, timeout_ms: u64) -> String {
    format!(
        "[sources.uploads]\ntype = \"file\"\npath = \"{}\"\n\
         [processors.copyright]\ntype = \"copyright\"\ninputs = [\"uploads\"]\n\
         [processors.nsfw]\ntype = \"nsfw\"\ninputs = [\"uploads\"]\n\
         [processors.violence]\ntype = \"violence\"\ninputs = [\"uploads\"]\n\
         [processors.decision]\ntype = \"merge\"\ninputs = [\"copyright\", \"nsfw\", \"violence\"]\n\
         detectors = [\"copyright\", \"nsfw\", \"violence\"]\ntimeout_ms = {timeout_ms}\n\
         [sinks.out]\ntype = \"file\"\ninputs = [\"decision\"]\npath = \"{{out}}\"\n\
         [dead_letter]\ntype = \"file\"\npath = \"{{dead}}\"\n",
        uploads.display()
    )
}

#[tokio::test]
async fn each_upload_gets_one_merged_decision_and_a_failing_detector_marks_it_incomplete() {
    // The example uploads: u-1004 has no `skin_ratio`, so the nsfw detector rejects it.
    let uploads = repo_path("deployments/config/video-uploads.jsonl");
    let started = std::time::Instant::now();
    let run = run_pipeline(&moderation_pipeline(std::path::Path::new(&uploads), 300)).await.unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(300), "the incomplete upload waited for its timeout");
    assert_eq!(run.outputs.len(), 4, "one decision per upload: {:#?}", run.outputs);
    let decision = |id: &str| run.outputs.iter().find(|o| o["upload_id"] == id).unwrap_or_else(|| panic!("no {id}"));

    let calm = decision("u-1001");
    assert_eq!(calm["decision"], "promote");
    assert_eq!(calm["complete"], true);
    assert_eq!(calm["scores"], json!({"copyright": 0.02, "nsfw": 0.10, "violence": 0.6 * 0.05 + 0.4 * 0.35}));
    assert_eq!(decision("u-1002")["decision"], "delete", "copyright match 0.97");
    assert_eq!(decision("u-1003")["decision"], "review", "nsfw 0.62");

    let incomplete = decision("u-1004");
    assert_eq!(incomplete["complete"], false);
    assert_eq!(incomplete["missing"], json!(["nsfw"]));
    assert_eq!(incomplete["decision"], "review", "an incomplete decision never promotes");
    assert_eq!(incomplete["scores"].as_object().unwrap().len(), 2);

    assert_eq!(run.dead.len(), 1, "{:#?}", run.dead);
    assert_eq!(run.dead[0]["component"], "nsfw");
    assert!(run.dead[0]["reason"].as_str().unwrap().contains("features.skin_ratio"), "{}", run.dead[0]);
    assert_eq!(run.summary.metrics.failed, 0);
}

#[tokio::test]
async fn a_new_onnx_consumer_by_configuration_alone_matches_the_built_in_processor() {
    let rides = rides_file(1..=200);
    // The ride-duration model, mapped field by field with the generic `onnx` processor.
    let toml = format!(
        "[sources.rides]\ntype = \"file\"\npath = \"{}\"\n\
         [processors.builtin]\ntype = \"ride_duration\"\ninputs = [\"rides\"]\nmodel = \"{{model}}\"\n\
         [processors.by_config]\ntype = \"onnx\"\ninputs = [\"rides\"]\nmodel = \"{{model}}\"\n\
         model_name = \"duration_by_config\"\nversion = \"v1\"\necho = [\"ride_id\"]\n\
         outputs = {{ minutes = \"ride_duration\" }}\n\
         [processors.by_config.features]\n\
         PU_DO = {{ template = \"{{ride.PULocationID}}_{{ride.DOLocationID}}\", type = \"string\" }}\n\
         trip_distance = {{ field = \"ride.trip_distance\", type = \"float\" }}\n\
         [sinks.out]\ntype = \"file\"\ninputs = [\"builtin\", \"by_config\"]\npath = \"{{out}}\"\n\
         [dead_letter]\ntype = \"file\"\npath = \"{{dead}}\"\n",
        rides.path().display()
    );
    let run = run_pipeline(&toml).await.unwrap();
    assert_eq!(run.outputs.len(), 400);
    for id in 1..=200u64 {
        let find = |model: &str| {
            run.outputs.iter().find(|o| o["model"] == model && o["prediction"]["ride_id"] == id).unwrap().clone()
        };
        let (builtin, by_config) = (find("ride_duration_prediction_model"), find("duration_by_config"));
        assert_eq!(by_config["version"], "v1");
        assert_eq!(builtin["prediction"]["ride_duration"], by_config["prediction"]["minutes"], "ride {id}");
    }
}

#[tokio::test]
async fn the_onnx_mapping_is_checked_against_the_model_and_bad_events_are_rejected() {
    let base = |features: &str| {
        format!(
            "[sources.rides]\ntype = \"generator\"\ncount = 1\n\
             [processors.m]\ntype = \"onnx\"\ninputs = [\"rides\"]\nmodel = \"{{model}}\"\nmodel_name = \"m\"\n\
             outputs = {{ minutes = \"ride_duration\" }}\n[processors.m.features]\n{features}\n\
             [sinks.out]\ntype = \"file\"\ninputs = [\"m\"]\npath = \"{{out}}\"\n"
        )
    };
    let cases = [
        (
            "PU_DO = { template = \"{ride.PULocationID}\", type = \"string\" }\ntrip_distance = { field = \"ride.trip_distance\", type = \"double\" }",
            "features.trip_distance.type",
        ),
        ("PU_DO = { template = \"{ride.PULocationID}\", type = \"string\" }", "trip_distance"),
        (
            "PU_DO = { template = \"x\", type = \"string\" }\ntrip_distance = { field = \"d\", type = \"float\" }\nextra = { field = \"e\", type = \"float\" }",
            "features.extra",
        ),
        ("PU_DO = { type = \"string\" }\ntrip_distance = { field = \"d\", type = \"float\" }", "exactly one of"),
    ];
    for (features, expected) in cases {
        let err = run_pipeline(&base(features)).await.err().unwrap_or_else(|| panic!("accepted: {features}"));
        let message = format!("{err:#}");
        assert!(message.contains(expected), "{features}: {message}");
        assert!(message.contains("[processors.m]"), "names the component: {message}");
    }

    let mut events = tempfile::NamedTempFile::new().unwrap();
    writeln!(events, r#"{{"ride": {{"PULocationID": 1, "DOLocationID": 2, "trip_distance": 2.0}}, "ride_id": 1}}"#)
        .unwrap();
    writeln!(events, r#"{{"ride": {{"PULocationID": 1, "DOLocationID": 2, "trip_distance": "far"}}, "ride_id": 2}}"#)
        .unwrap();
    writeln!(events, r#"{{"ride": {{"DOLocationID": 2, "trip_distance": 1.0}}, "ride_id": 3}}"#).unwrap();
    let toml = format!(
        "[sources.rides]\ntype = \"file\"\npath = \"{}\"\n\
         [processors.m]\ntype = \"onnx\"\ninputs = [\"rides\"]\nmodel = \"{{model}}\"\nmodel_name = \"m\"\n\
         outputs = {{ minutes = \"ride_duration\" }}\n[processors.m.features]\n\
         PU_DO = {{ template = \"{{ride.PULocationID}}_{{ride.DOLocationID}}\", type = \"string\" }}\n\
         trip_distance = {{ field = \"ride.trip_distance\", type = \"float\" }}\n\
         [sinks.out]\ntype = \"file\"\ninputs = [\"m\"]\npath = \"{{out}}\"\n\
         [dead_letter]\ntype = \"file\"\npath = \"{{dead}}\"\n",
        events.path().display()
    );
    let run = run_pipeline(&toml).await.unwrap();
    assert_eq!(run.outputs.len(), 1);
    let reasons: Vec<&str> = run.dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("`ride.trip_distance` must be a number")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("`ride.PULocationID` is missing")), "{reasons:?}");
}
