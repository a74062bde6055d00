//! The `s3` sink as the dead-letter destination (the Lambda function's "S3 prefix" option),
//! against the moto server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use tributary_tests::{file_source, repo_path, run_pipeline, s3_client, unique_name};

#[tokio::test]
async fn poison_records_land_under_the_prefix() {
    let s3 = s3_client().await;
    let bucket = unique_name("dead-letters");
    s3.create_bucket().bucket(&bucket).send().await.expect("create bucket on moto");
    let source = file_source(std::path::Path::new(&repo_path("deployments/config/seed-events.json")));
    let config = format!(
        "[sources.rides]\n{source}\n[processors.ride_duration]\ntype = \"ride_duration\"\ninputs = [\"rides\"]\n\
         model = \"{{model}}\"\n[sinks.out]\ntype = \"file\"\ninputs = [\"ride_duration\"]\npath = \"{{out}}\"\n\
         [dead_letter]\ntype = \"s3\"\nbucket = \"{bucket}\"\nprefix = \"tributary/dead/\"\n"
    );
    let run = run_pipeline(&config).await.unwrap();
    assert_eq!(run.outputs.len(), 9);
    let listing = s3.list_objects_v2().bucket(&bucket).prefix("tributary/dead/").send().await.unwrap();
    let mut entries: Vec<Value> = Vec::new();
    for object in listing.contents() {
        let key = object.key().unwrap();
        assert!(key.ends_with(".jsonl"), "{key}");
        let body = s3.get_object().bucket(&bucket).key(key).send().await.unwrap().body.collect().await.unwrap();
        for line in String::from_utf8(body.to_vec()).unwrap().lines() {
            entries.push(serde_json::from_str(line).unwrap());
        }
    }
    assert_eq!(entries.len(), 4, "{entries:?}");
    assert!(entries.iter().any(|e| e["reason"].as_str().unwrap().contains("found 13000")));
    assert_eq!(run.summary.metrics.dead_lettered, 4);
}

#[tokio::test]
async fn a_missing_bucket_fails_at_start() {
    s3_client().await;
    let config = "[sources.rides]\ntype = \"generator\"\ncount = 1\n[processors.ride_duration]\ntype = \"ride_duration\"\n\
                  inputs = [\"rides\"]\nmodel = \"{model}\"\n[sinks.out]\ntype = \"blackhole\"\ninputs = [\"ride_duration\"]\n\
                  [dead_letter]\ntype = \"s3\"\nbucket = \"no-such-bucket-tributary\"\n";
    let message = run_pipeline(config).await.err().unwrap().to_string();
    assert!(
        message.contains("[dead_letter] key `bucket`: cannot use bucket \"no-such-bucket-tributary\""),
        "{message}"
    );
}
