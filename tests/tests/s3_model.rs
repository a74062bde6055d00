//! Loading the model from S3 in the seeds' MLflow layout, against the moto server
//! (`cargo xtask services up`; `AWS_ENDPOINT_URL` points at it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_sdk_s3::primitives::ByteStream;
use tributary_tests::{file_source, model_path, repo_path, ride_pipeline, run_pipeline, s3_client, unique_name};

fn config(model: &str, version: Option<&str>) -> String {
    let version = version.map(|v| format!("version = \"{v}\"")).unwrap_or_default();
    let source = file_source(std::path::Path::new(&repo_path("tests/fixtures/seeds/seed002_1.json")));
    ride_pipeline(&source, &format!("model = \"{model}\"\n{version}"))
}

#[tokio::test]
async fn model_from_an_mlflow_artifact_folder_on_s3() {
    let s3 = s3_client().await;
    let bucket = unique_name("mlflow-models");
    let run_id = "008260e4b5964963ac9d0b969c887af2";
    s3.create_bucket().bucket(&bucket).send().await.expect("create bucket on moto");
    let bytes = std::fs::read(model_path()).unwrap();
    s3.put_object()
        .bucket(&bucket)
        .key(format!("1/{run_id}/artifacts/model/model.onnx"))
        .body(ByteStream::from(bytes))
        .send()
        .await
        .expect("upload model");

    let from_s3 = run_pipeline(&config(&format!("s3://{bucket}/1/{run_id}/artifacts/model"), None)).await.unwrap();
    let local = run_pipeline(&config(&model_path(), Some("x"))).await.unwrap();
    assert_eq!(from_s3.outputs.len(), 1);
    assert_eq!(from_s3.outputs[0]["version"], run_id, "the MLflow run id is the version");
    assert_eq!(from_s3.outputs[0]["prediction"], local.outputs[0]["prediction"]);
}

#[tokio::test]
async fn an_unreadable_s3_object_fails_at_start_naming_it() {
    let s3 = s3_client().await;
    let bucket = unique_name("mlflow-empty");
    s3.create_bucket().bucket(&bucket).send().await.expect("create bucket on moto");
    let err =
        run_pipeline(&config(&format!("s3://{bucket}/1/nope/artifacts/model"), None)).await.err().expect("must fail");
    let message = err.to_string();
    assert!(message.contains("[processors.ride_duration] key `model`"), "{message}");
    assert!(message.contains(&format!("s3://{bucket}/1/nope/artifacts/model/model.onnx")), "{message}");
    assert!(message.contains("NoSuchKey"), "{message}");
}
