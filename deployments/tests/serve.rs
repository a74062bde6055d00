//! `tributary serve` as its users call it: the running binary, real HTTP clients (the seeds'
//! `test.py` with Python `requests`, and hyper), the committed model through ONNX Runtime.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use common::{root, signal};

/// A running `tributary serve`, its address and everything it wrote on stderr so far.
struct Server {
    child: Child,
    base: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `tributary serve --config <config> --addr 127.0.0.1:0` and waits for its address.
    fn start(config: &str, env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tributary"))
            .current_dir(root())
            .args(["serve", "--addr", "127.0.0.1:0", "--config", config])
            .env_remove("RUN_ID")
            .env_remove("MODEL_LOCATION")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tributary serve");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(rest.split(' ').next().unwrap_or_default().to_string());
                }
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("tributary serve did not start: {}", log.lock().unwrap()));
        Server { child, base, log }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits until `/v2/health/ready` answers 200.
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while get(&self.url("/v2/health/ready")).await.0 != 200 {
            assert!(Instant::now() < deadline, "never ready: {}", self.log.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then the exit status within 30 s.
    fn stop(self) -> std::process::ExitStatus {
        signal(&self.child, "-TERM");
        self.stop_after_signal()
    }

    /// The exit status of a server already signalled, within 30 s.
    fn stop_after_signal(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "did not exit: {}", self.log.lock().unwrap());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Answer = (u16, Vec<(String, String)>, Value);

async fn send(method: &str, url: &str, body: Vec<u8>) -> Answer {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = client.request(request).await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, headers, value)
}

async fn post(url: &str, body: &Value) -> Answer {
    send("POST", url, serde_json::to_vec(body).unwrap()).await
}

async fn get(url: &str) -> Answer {
    send("GET", url, Vec::new()).await
}

fn header<'a>(answer: &'a Answer, name: &str) -> Option<&'a str> {
    answer.1.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The seeds' ride, as their `test.py` sends it.
fn seed_ride() -> Value {
    json!({"PULocationID": 10, "DOLocationID": 50, "trip_distance": 40})
}

#[tokio::test]
async fn web_service_answers_the_seeds_client_arrays_oip_and_errors() {
    let server = Server::start("deployments/config/web-service.toml", &[("RUN_ID", "run-123")]);
    server.wait_ready().await;

    // The seeds' own client: Python `requests` posting the bare ride.
    let python = root().join(".venv/bin/python");
    assert!(python.exists(), "{} is missing: run `cargo xtask setup`", python.display());
    let output = Command::new(&python)
        .current_dir(root())
        .arg("deployments/web/test.py")
        .env("URL", server.url("/predict"))
        .output()
        .unwrap();
    assert!(output.status.success(), "test.py failed: {}", String::from_utf8_lossy(&output.stderr));
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["model_version"], "run-123", "{answer}");
    let duration = answer["duration"].as_f64().unwrap();
    assert_eq!(answer.as_object().unwrap().len(), 2, "only the seeds' two keys: {answer}");

    // The same ride through the Open Inference Protocol gives the same number.
    let (status, _, metadata) = get(&server.url("/v2/models/ride_duration")).await;
    assert_eq!(status, 200, "{metadata}");
    assert_eq!(metadata["inputs"][0], json!({"name": "PU_DO", "datatype": "BYTES", "shape": [-1]}));
    assert_eq!(metadata["outputs"][0]["name"], "ride_duration");
    let infer = json!({"id": "q1", "inputs": [
        {"name": "PU_DO", "shape": [2], "datatype": "BYTES", "data": ["10_50", "130_205"]},
        {"name": "trip_distance", "shape": [2], "datatype": "FP32", "data": [40, 3.2]}]});
    let (status, _, inferred) = post(&server.url("/v2/models/ride_duration/infer"), &infer).await;
    assert_eq!(status, 200, "{inferred}");
    assert_eq!(inferred["id"], "q1");
    assert_eq!(inferred["model_version"], "run-123");
    let outputs = inferred["outputs"][0]["data"].as_array().unwrap();
    assert_eq!(outputs[0].as_f64().unwrap(), duration);
    let wrong = json!({"inputs": [{"name": "PU_DO", "shape": [1], "datatype": "FP32", "data": [1]}]});
    let (status, _, body) = post(&server.url("/v2/models/ride_duration/infer"), &wrong).await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (400, "input \"PU_DO\" is BYTES in the model, the request gives FP32")
    );
    assert_eq!(get(&server.url("/v2/models/nope")).await.0, 404);
    assert_eq!(get(&server.url("/v2/health/live")).await.2, json!({"live": true}));

    // An array: answers in order, per-item errors with the reason a dead letter carries.
    let batch = json!([seed_ride(), {"PULocationID": 999, "DOLocationID": 50, "trip_distance": 1}, "not a ride",
                       {"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.2}]);
    let (status, _, answers) = post(&server.url("/predict"), &batch).await;
    assert_eq!(status, 200, "{answers}");
    assert_eq!(answers[0]["duration"].as_f64().unwrap(), duration);
    assert_eq!(answers[1]["status"], 422);
    assert_eq!(answers[1]["error"], "`ride.PULocationID` must be a taxi zone id from 1 to 265, found 999");
    assert_eq!(answers[2]["error"], "`ride` must be an object, found a string");
    assert_eq!(answers[3]["duration"].as_f64().unwrap(), outputs[1].as_f64().unwrap());

    // Errors: not JSON (400), rejected (422), too large (413).
    let (status, _, body) = send("POST", &server.url("/predict"), b"{\"PULocationID\": 10".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("the request body is not JSON"), "{body}");
    let (status, _, body) = post(&server.url("/predict"), &json!({"PULocationID": 10, "DOLocationID": 50})).await;
    assert_eq!((status, &body["error"]), (422, &json!("`ride.trip_distance` is missing")), "{body}");
    assert_eq!(body["component"], "ride_duration");
    let (status, _, body) = send("POST", &server.url("/predict"), vec![b' '; 2 << 20]).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"].as_str().unwrap().contains("1048576 bytes"), "{body}");

    // The metrics saw all of it.
    let (_, _, Value::String(metrics)) = get(&server.url("/metrics")).await else { panic!("metrics are text") };
    for series in [
        "tributary_http_requests_total{route=\"/predict\",status=\"200\"} 2",
        "tributary_http_requests_total{route=\"/predict\",status=\"422\"} 1",
        "tributary_http_requests_total{route=\"/predict\",status=\"413\"} 1",
        "tributary_http_requests_total{route=\"/v2/models/{name}/infer\",status=\"200\"} 1",
        "tributary_http_request_duration_seconds_count{route=\"/predict\"} 5",
        "tributary_http_in_flight 1",
    ] {
        assert!(metrics.contains(series), "no {series:?} in\n{metrics}");
    }
    assert!(server.stop().success());
}

/// A served pipeline whose processor sleeps `latency_ms` per batch, with the given `http` keys.
fn slow_config(dir: &std::path::Path, latency_ms: u64, http: &str) -> String {
    let path = dir.join("slow.toml");
    std::fs::write(
        &path,
        format!(
            "[sources.requests]\ntype = \"http\"\n{http}\n\n\
             [processors.copyright]\ntype = \"copyright\"\ninputs = [\"requests\"]\nsimulated_latency_ms = {latency_ms}\n\n\
             [sinks.answer]\ntype = \"response\"\ninputs = [\"copyright\"]\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn upload(id: usize) -> Value {
    json!({"upload_id": id, "features": {"audio_match": 0.5}})
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after_and_a_slow_answer_504() {
    let dir = tempfile::tempdir().unwrap();
    let config = slow_config(
        dir.path(),
        400,
        "max_batch_size = 1\nmax_concurrent_batches = 1\nqueue_size = 1\ntimeout_ms = 3000",
    );
    let server = Server::start(&config, &[]);
    server.wait_ready().await;
    let url = server.url("/predict");
    let calls = (0..6).map(|i| {
        let url = url.clone();
        async move {
            // Staggered so that the first is in the model and the second queued before the rest.
            tokio::time::sleep(Duration::from_millis(50 * i as u64)).await;
            post(&url, &upload(i)).await
        }
    });
    let answers = futures::future::join_all(calls).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(statuses, [200, 200, 429, 429, 429, 429], "{answers:?}");
    assert_eq!(header(&answers[2], "retry-after"), Some("1"));
    assert_eq!(answers[0].2["predictions"][0]["upload_id"], 0, "{:?}", answers[0]);
    assert!(server.stop().success());

    let config = slow_config(dir.path(), 1500, "timeout_ms = 200");
    let server = Server::start(&config, &[]);
    server.wait_ready().await;
    let (status, _, body) = post(&server.url("/predict"), &upload(1)).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"], "no answer within 200 ms (timeout_ms)");
    assert!(server.stop().success());
}

#[tokio::test]
async fn sigterm_answers_every_request_in_flight_then_refuses_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let config = slow_config(dir.path(), 600, "max_batch_size = 2\nmax_concurrent_batches = 1");
    let server = Server::start(&config, &[]);
    server.wait_ready().await;
    let url = server.url("/predict");
    // Six requests: two in the model, four queued behind them (three batches, 1.8 s).
    let calls: Vec<_> = (0..6).map(|i| tokio::spawn(post_owned(url.clone(), upload(i)))).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&server.child, "-TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = tokio::net::TcpStream::connect(server.base.trim_start_matches("http://")).await;
    assert!(refused.is_err(), "a new connection was accepted after SIGTERM");
    for (i, call) in calls.into_iter().enumerate() {
        let (status, _, body) = call.await.unwrap();
        assert_eq!(status, 200, "request {i}: {body}");
        assert_eq!(body["predictions"][0]["upload_id"], i, "{body}");
    }
    let status = server.stop_after_signal();
    assert!(status.success(), "exit status {status}");
}

async fn post_owned(url: String, body: Value) -> Answer {
    post(&url, &body).await
}

#[tokio::test]
async fn not_ready_until_the_model_has_loaded() {
    // The model comes from S3 (moto) through a proxy that holds every connection until released.
    let endpoint = common::required("AWS_ENDPOINT_URL");
    let bucket = common::unique("serve-model").to_lowercase();
    let s3 = tributary_aws::s3_client().await;
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let model = std::fs::read(root().join("processors/models/ride_duration/model.onnx")).unwrap();
    s3.put_object().bucket(&bucket).key("model.onnx").body(model.into()).send().await.unwrap();
    let upstream = endpoint.trim_start_matches("http://").trim_end_matches('/').to_string();
    let (proxy, release) = held_proxy(upstream).await;
    let server = Server::start(
        "deployments/config/web-service.toml",
        &[("MODEL_LOCATION", &format!("s3://{bucket}/model.onnx")), ("AWS_ENDPOINT_URL_S3", &proxy)],
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get(&server.url("/v2/health/live")).await.0, 200);
    let (status, _, body) = get(&server.url("/v2/health/ready")).await;
    assert_eq!((status, &body["ready"]), (503, &json!(false)), "{body}");
    let answer = post(&server.url("/predict"), &seed_ride()).await;
    assert_eq!(answer.0, 503, "{:?}", answer.2);
    assert_eq!(header(&answer, "retry-after"), Some("1"));
    assert!(answer.2["error"].as_str().unwrap().contains("still loading"), "{:?}", answer.2);
    release.notify_one();
    server.wait_ready().await;
    let (status, _, body) = post(&server.url("/predict"), &seed_ride()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["duration"].as_f64().unwrap() > 0.0);
    assert!(server.stop().success());
}

/// A TCP proxy to `upstream` that accepts connections but holds them until `release` is
/// notified, then passes everything through.
async fn held_proxy(upstream: String) -> (String, Arc<tokio::sync::Notify>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let release = Arc::new(tokio::sync::Notify::new());
    let gate = release.clone();
    tokio::spawn(async move {
        gate.notified().await;
        loop {
            let Ok((mut client, _)) = listener.accept().await else { return };
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (addr, release)
}

#[tokio::test]
async fn the_tee_delivers_served_predictions_and_dead_letters_rejections_with_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let (out, dead) = (dir.path().join("out.jsonl"), dir.path().join("dead.jsonl"));
    let base = std::fs::read_to_string(root().join("deployments/config/web-service.toml")).unwrap();
    let config = dir.path().join("tee.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[sinks.predictions]\ntype = \"file\"\ninputs = [\"ride_duration\"]\npath = {:?}\n\n\
             [dead_letter]\ntype = \"file\"\npath = {:?}\n",
            base,
            out.display().to_string(),
            dead.display().to_string()
        ),
    )
    .unwrap();
    let server = Server::start(&config.display().to_string(), &[]);
    server.wait_ready().await;
    let (status, _, body) = post(&server.url("/predict"), &json!([seed_ride(), seed_ride()])).await;
    assert_eq!(status, 200, "{body}");
    let bad = send("POST", &server.url("/predict"), serde_json::to_vec(&json!({"PULocationID": 10})).unwrap()).await;
    assert_eq!(bad.0, 422);
    assert!(server.stop().success());
    let delivered = common::json_lines(&out);
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    assert_eq!(delivered[0]["model"], "ride_duration_prediction_model");
    assert_eq!(delivered[0]["prediction"]["ride_duration"], body[0]["duration"]);
    let dead = common::json_lines(&dead);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["reason"], "`ride.DOLocationID` is missing");
    assert_eq!(dead[0]["component"], "ride_duration");
    assert_eq!(dead[0]["position"]["source"], "requests");
    assert!(dead[0]["position"]["partition"].as_str().unwrap().starts_with("http:r"), "{}", dead[0]);
}
