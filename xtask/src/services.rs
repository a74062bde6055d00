//! `cargo xtask services up|down|status`: real local stand-ins for the cloud services, on
//! loopback, found by clients through the AWS SDK's standard endpoint variables.
//!
//! | service | stands in for | port | started as |
//! |---|---|---|---|
//! | moto | S3, DynamoDB | 5000 (`MOTO_PORT`) | `.venv/bin/moto_server -H 127.0.0.1 -p 5000` |
//! | kinesis | Kinesis Data Streams | 4568 (`KINESIS_PORT`) | kinesis-mock: `node .tools/node_modules/kinesis-local/main.js` |
//! | lambda | the Lambda runtime and invoke APIs | 9000 (`LAMBDA_PORT`) | `cargo lambda watch --only-lambda-apis` |
//! | kafka | an Apache Kafka broker | 9092 (`KAFKA_PORT`) | tansu: `tansu broker --storage-engine memory://tansu/` |
//! | mlflow | an MLflow tracking server and model registry, artifacts on moto's S3 | 5050 (`MLFLOW_PORT`) | `mlflow server --backend-store-uri sqlite:///.services/mlflow.db --artifacts-destination s3://mlflow-artifacts` |
//! | ferrokinesis | Kinesis Data Streams (the benchmarks' third loopback Kinesis) | 4570 (`FERROKINESIS_PORT`) | `ferrokinesis --port 4570 --shard-limit 1000` |
//!
//! Process ids and logs live in `.services/`.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

struct Service {
    name: &'static str,
    port: u16,
    command: Vec<String>,
    /// Working directory of the process.
    cwd: PathBuf,
    /// Environment of the process.
    process_env: Vec<(&'static str, String)>,
    /// Environment variables clients need, as (name, value).
    env: Vec<(&'static str, String)>,
    /// Commands run once the service listens (creating the example topics).
    init: Vec<Vec<String>>,
}

/// The moto bucket the MLflow server keeps artifacts in (made before the server starts).
const MLFLOW_BUCKET: &str = "mlflow-artifacts";

fn port(var: &str, default: u16) -> u16 {
    std::env::var(var).ok().and_then(|p| p.parse().ok()).unwrap_or(default)
}

fn services(root: &Path) -> Vec<Service> {
    let moto = port("MOTO_PORT", 5000);
    let kinesis = port("KINESIS_PORT", 4568);
    let lambda = port("LAMBDA_PORT", 9000);
    let kafka = port("KAFKA_PORT", 9092);
    let ferrokinesis = port("FERROKINESIS_PORT", 4570);
    let mlflow = port("MLFLOW_PORT", 5050);
    let kinesis_dir = root.join(".tools/node_modules").join(crate::setup::KINESIS_MOCK.0);
    vec![
        Service {
            name: "moto",
            port: moto,
            command: vec![
                root.join(".venv/bin/moto_server").display().to_string(),
                "-H".into(),
                "127.0.0.1".into(),
                "-p".into(),
                moto.to_string(),
            ],
            cwd: state_dir(root),
            process_env: vec![],
            env: vec![("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{moto}"))],
            init: vec![],
        },
        Service {
            name: "kinesis",
            port: kinesis,
            command: vec!["node".into(), kinesis_dir.join("main.js").display().to_string()],
            cwd: kinesis_dir,
            process_env: vec![
                ("KINESIS_MOCK_PLAIN_PORT", kinesis.to_string()),
                ("KINESIS_MOCK_TLS_PORT", (kinesis - 1).to_string()),
                ("LOG_LEVEL", "WARN".into()),
                ("CREATE_STREAM_DURATION", "100ms".into()),
                // Tests make their own streams; the default limit (50 shards) fills up.
                ("SHARD_LIMIT", "5000".into()),
                ("DELETE_STREAM_DURATION", "100ms".into()),
                // The example configs' streams, for trying things by hand; tests make their own.
                (
                    "INITIALIZE_STREAMS",
                    "ride_events:1,ride_predictions:1,video_uploads:1,moderation_decisions:1".into(),
                ),
            ],
            env: vec![("AWS_ENDPOINT_URL_KINESIS", format!("http://127.0.0.1:{kinesis}"))],
            init: vec![],
        },
        Service {
            name: "lambda",
            port: lambda,
            command: vec![
                root.join(".venv/bin/cargo-lambda").display().to_string(),
                "lambda".into(),
                "watch".into(),
                "--only-lambda-apis".into(),
                "--invoke-address".into(),
                "127.0.0.1".into(),
                "--invoke-port".into(),
                lambda.to_string(),
            ],
            cwd: root.to_path_buf(),
            process_env: vec![],
            env: vec![("TRIBUTARY_LAMBDA_EMULATOR", format!("http://127.0.0.1:{lambda}"))],
            init: vec![],
        },
        Service {
            name: "kafka",
            port: kafka,
            command: vec![
                crate::setup::TANSU.binary().display().to_string(),
                "broker".into(),
                "--listener-url".into(),
                format!("tcp://127.0.0.1:{kafka}"),
                "--advertised-listener-url".into(),
                format!("tcp://127.0.0.1:{kafka}"),
                "--storage-engine".into(),
                "memory://tansu/".into(),
            ],
            cwd: state_dir(root),
            process_env: vec![("RUST_LOG", "warn".into())],
            env: vec![
                ("KAFKA_BROKERS", format!("127.0.0.1:{kafka}")),
                // For tests that start a broker of their own (one that is down at first).
                ("TRIBUTARY_TANSU", crate::setup::TANSU.binary().display().to_string()),
            ],
            // kafka-local.toml's topics, for trying things by hand; tests make their own.
            init: [("ride_events", "3"), ("ride_predictions", "1"), ("ride_events_dead_letter", "1")]
                .into_iter()
                .map(|(topic, partitions)| {
                    let broker = format!("tcp://127.0.0.1:{kafka}");
                    [&crate::setup::TANSU.binary().display().to_string(), "topic", "create", topic, "--broker", &broker]
                        .into_iter()
                        .chain(["--partitions", partitions])
                        .map(str::to_string)
                        .collect()
                })
                .collect(),
        },
        Service {
            name: "mlflow",
            port: mlflow,
            command: vec![
                root.join(".venv/bin/mlflow").display().to_string(),
                "server".into(),
                "--host".into(),
                "127.0.0.1".into(),
                "--port".into(),
                mlflow.to_string(),
                "--workers".into(),
                "1".into(),
                "--backend-store-uri".into(),
                format!("sqlite:///{}", state_dir(root).join("mlflow.db").display()),
                "--artifacts-destination".into(),
                format!("s3://{MLFLOW_BUCKET}"),
            ],
            cwd: state_dir(root),
            process_env: common_env()
                .into_iter()
                .chain([("MLFLOW_S3_ENDPOINT_URL", format!("http://127.0.0.1:{moto}"))])
                .collect(),
            env: vec![
                ("MLFLOW_TRACKING_URI", format!("http://127.0.0.1:{mlflow}")),
                ("MLFLOW_S3_ENDPOINT_URL", format!("http://127.0.0.1:{moto}")),
            ],
            // Its artifact bucket on moto (which keeps state in memory; the server needs the
            // bucket only when a model is logged).
            init: vec![vec![
                root.join(".venv/bin/python").display().to_string(),
                "-c".into(),
                format!(
                    "import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:{moto}').create_bucket(Bucket='{MLFLOW_BUCKET}')"
                ),
            ]],
        },
        Service {
            name: "ferrokinesis",
            port: ferrokinesis,
            command: vec![
                crate::setup::FERROKINESIS.binary().display().to_string(),
                "--port".into(),
                ferrokinesis.to_string(),
                "--create-stream-ms".into(),
                "100".into(),
                "--delete-stream-ms".into(),
                "100".into(),
                // Its default account limit is 10 shards; the Lambda benchmark makes a fresh
                // one-shard stream for every measured process (33 in a full run).
                "--shard-limit".into(),
                "1000".into(),
            ],
            cwd: state_dir(root),
            process_env: vec![("RUST_LOG", "warn".into())],
            // Not the SDK's variable: kinesis-mock answers there. The Lambda benchmark reads this.
            env: vec![("TRIBUTARY_FERROKINESIS", format!("http://127.0.0.1:{ferrokinesis}"))],
            init: vec![],
        },
    ]
}

/// Variables every client of the local services needs (credentials are dummies: the stand-ins
/// accept any).
fn common_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

/// Points a command at the local services.
pub fn apply_env(root: &Path, cmd: &mut Command) {
    for (name, value) in common_env().into_iter().chain(services(root).into_iter().flat_map(|s| s.env)) {
        cmd.env(name, value);
    }
}

fn state_dir(root: &Path) -> PathBuf {
    root.join(".services")
}

fn listening(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Starts every service that is not already listening; returns the names of those it started.
pub fn up(root: &Path) -> Result<Vec<String>> {
    crate::setup::all(root)?;
    let dir = state_dir(root);
    fs::create_dir_all(&dir).context("creating .services")?;
    let mut started = Vec::new();
    for service in services(root) {
        if listening(service.port) {
            eprintln!("xtask: {} already listening on 127.0.0.1:{}", service.name, service.port);
            continue;
        }
        let log_path = dir.join(format!("{}.log", service.name));
        let log = fs::File::create(&log_path).context("creating the service log")?;
        let child = Command::new(&service.command[0])
            .args(&service.command[1..])
            .envs(service.process_env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(&service.cwd)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group, so that stopping it stops the workers it forks (MLflow's
            // uvicorn and job consumers) too.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {} ({})", service.name, service.command.join(" ")))?;
        fs::write(dir.join(format!("{}.pid", service.name)), child.id().to_string())?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !listening(service.port) {
            if Instant::now() > deadline {
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                bail!("{} did not start listening on port {} within 60 s; its log:\n{log}", service.name, service.port);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for init in &service.init {
            let status = Command::new(&init[0])
                .args(&init[1..])
                .envs(common_env())
                .envs(service.process_env.iter().map(|(k, v)| (*k, v.as_str())))
                .stdout(Stdio::null())
                .status()?;
            if !status.success() {
                bail!("{} failed ({status})", init.join(" "));
            }
        }
        eprintln!("xtask: started {} on 127.0.0.1:{} (log: {})", service.name, service.port, log_path.display());
        started.push(service.name.to_string());
    }
    print_env(root);
    Ok(started)
}

fn print_env(root: &Path) {
    eprintln!("xtask: clients reach the services with:");
    for (name, value) in common_env().into_iter().chain(services(root).into_iter().flat_map(|s| s.env)) {
        eprintln!("  export {name}={value}");
    }
}

/// Stops the named services (those this process started).
pub fn stop(root: &Path, names: &[String]) -> Result<()> {
    for name in names {
        let pid_file = state_dir(root).join(format!("{name}.pid"));
        let Ok(pid) = fs::read_to_string(&pid_file) else { continue };
        let pid = pid.trim();
        let alive = || Path::new(&format!("/proc/{pid}")).exists();
        // The service's process group (see `up`); a service started before groups were used
        // has none, so the process itself too.
        let group = format!("-{pid}");
        let _ = Command::new("kill").args(["--", &group]).stderr(Stdio::null()).status();
        let _ = Command::new("kill").arg(pid).stderr(Stdio::null()).status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill").args(["-9", "--", &group]).stderr(Stdio::null()).status();
        if alive() {
            let _ = Command::new("kill").args(["-9", pid]).stderr(Stdio::null()).status();
        }
        let _ = fs::remove_file(&pid_file);
        eprintln!("xtask: stopped {name}");
    }
    Ok(())
}

/// Stops every service started by `up`.
pub fn down(root: &Path) -> Result<()> {
    let names: Vec<String> = services(root).iter().map(|s| s.name.to_string()).collect();
    stop(root, &names)
}

/// Prints which services are listening.
pub fn status(root: &Path) -> Result<()> {
    println!("process ids and logs: {}", state_dir(root).display());
    for service in services(root) {
        let state = if listening(service.port) { "listening" } else { "down" };
        println!("{:<8} 127.0.0.1:{:<6} {state}", service.name, service.port);
    }
    print_env(root);
    Ok(())
}
