//! The `tributary` command line: `run`, `validate`, `plugins`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tributary_framework::config;
use tributary_framework::graph;
use tributary_framework::runtime::Pipeline;

/// Run machine-learning models on event streams.
#[derive(Debug, Parser)]
#[command(name = "tributary", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// More log output (-v: info, -vv: debug). `RUST_LOG` overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// Log output formats.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (CloudWatch, log shippers).
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline until its sources finish or SIGINT/SIGTERM arrives. With several
    /// `--config`, runs independent pipelines in one process: each reads its own source, keeps
    /// its own checkpoints and dead letters, and progresses at its own pace.
    Run {
        /// The pipeline configuration (TOML); repeat for independent pipelines.
        #[arg(short, long, env = "TRIBUTARY_CONFIG", required = true)]
        config: Vec<PathBuf>,
        /// Never draw the live status line, even on a terminal.
        #[arg(long)]
        no_status: bool,
        /// Serve the counters in the Prometheus text format on this address (e.g. 127.0.0.1:9898).
        #[arg(long)]
        metrics_addr: Option<std::net::SocketAddr>,
        /// Batch jobs (a `parquet` source): score every file again, even those the checkpoint
        /// has as done.
        #[arg(long)]
        force: bool,
    },
    /// Answer prediction requests over HTTP with the pipeline: the seeds' `POST /predict`, the
    /// Open Inference Protocol v2 and `/metrics`, with dynamic batching.
    #[cfg(feature = "serve")]
    Serve(crate::serve::ServeArgs),
    /// Check a configuration and build every component (models load, files open) without
    /// reading any record.
    Validate {
        /// The pipeline configuration (TOML); repeat to check several.
        #[arg(short, long, env = "TRIBUTARY_CONFIG", required = true)]
        config: Vec<PathBuf>,
    },
    /// List the plugin types this build knows.
    Plugins,
    /// Print the JSON Schema (draft 7) of a pipeline config with this build's plugins, for
    /// editors with TOML schema support (taplo, Even Better TOML): `#:schema ./tributary.schema.json`
    /// at the top of a config, or the editor's schema association setting.
    Schema,
    /// Write NYC TLC yellow-taxi trip records with the real files' schema and realistic values
    /// (the real ones cannot be downloaded everywhere), one file per month.
    #[cfg(feature = "parquet")]
    TlcSample(TlcSampleArgs),
    /// Show an ONNX model's inputs, outputs and metadata, and print a `[processors.<name>]`
    /// table mapping each of them, ready to edit.
    #[cfg(feature = "onnx")]
    Inspect {
        /// The model: a local path or an `s3://` URI (what `model =` accepts).
        model: String,
    },
    /// Put JSON values onto a Kinesis stream, or a Kafka topic with `--brokers` (key from `ride_id`).
    #[cfg(any(feature = "kinesis", feature = "kafka"))]
    Put(crate::tools::PutArgs),
    /// Print a Kinesis stream's records (or a Kafka topic's, with `--brokers`), decoded, as JSON lines.
    #[cfg(any(feature = "kinesis", feature = "kafka"))]
    Tail(crate::tools::TailArgs),
    /// Create a Kafka topic with a number of partitions (nothing happens if it exists).
    #[cfg(feature = "kafka")]
    CreateTopic {
        /// The Kafka cluster (`host:port,...`).
        #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
        brokers: String,
        /// The topic's name.
        #[arg(long)]
        topic: String,
        /// Partitions.
        #[arg(long, default_value_t = 1)]
        partitions: i32,
    },
    /// Feed a Kinesis stream to a function on a local Lambda runtime emulator, as the AWS event
    /// source mapping does.
    #[cfg(feature = "kinesis")]
    Esm(crate::tools::esm::EsmArgs),
}

/// `tributary tlc-sample`.
#[cfg(feature = "parquet")]
#[derive(Debug, clap::Args)]
pub struct TlcSampleArgs {
    /// The folder to write `yellow_tripdata_<YYYY-MM>.parquet` files into.
    #[arg(long)]
    pub out: PathBuf,
    /// Months as YYYY-MM; the year picks the schema (2022's types, 2023-2024's, 2025's extra
    /// column). Repeat or separate with commas.
    #[arg(long, value_delimiter = ',', default_value = "2024-01")]
    pub month: Vec<String>,
    /// Rows per month (a real month has about 3 million).
    #[arg(long, default_value_t = 100_000)]
    pub rows: u64,
    /// Every Nth row is bad (a null or out-of-range zone id, a negative distance); 0 for none.
    #[arg(long, default_value_t = 0)]
    pub bad_every: u64,
    /// Rows per row group.
    #[arg(long, default_value_t = 1 << 20)]
    pub row_group_rows: usize,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[cfg(feature = "parquet")]
fn tlc_sample(args: TlcSampleArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    use tributary_sources::parquet::tlc;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    for month in &args.month {
        let (year, m) = month
            .split_once('-')
            .and_then(|(y, m)| Some((y.parse::<i32>().ok()?, m.parse::<u32>().ok()?)))
            .with_context(|| format!("--month {month:?}: expected YYYY-MM"))?;
        let path = args.out.join(tlc::file_name(year, m));
        let spec = tlc::MonthSpec {
            year,
            month: m,
            rows: args.rows,
            seed: args.seed,
            bad_every: args.bad_every,
            row_group_rows: args.row_group_rows,
        };
        tlc::write_month(&path, &spec).map_err(anyhow::Error::msg)?;
        eprintln!("wrote {} ({} rows)", path.display(), args.rows);
    }
    Ok(())
}

/// Sets up `tracing` on stderr. Quiet by default (warnings and errors only).
pub fn init_logging(verbose: u8, format: LogFormat) {
    let default = match verbose {
        // What a dry run would have sent is the point of a dry run: shown at every verbosity.
        0 => format!("warn,{}=info", tributary_framework::DRY_RUN_LOG_TARGET),
        1 => "info".into(),
        _ => "debug".into(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs the parsed command line.
pub async fn main(cli: Cli) -> ExitCode {
    init_logging(cli.verbose, cli.log_format);
    let registry = crate::registry();
    match cli.command {
        Command::Schema => match serde_json::to_string_pretty(&registry.config_schema()) {
            Ok(schema) => {
                println!("{schema}");
                ExitCode::SUCCESS
            }
            Err(e) => report(Err(e.into())),
        },
        Command::Plugins => {
            let (sources, processors, sinks) = registry.names();
            println!("sources:    {}", sources.join(", "));
            println!("processors: {}", processors.join(", "));
            println!("sinks:      {}", sinks.join(", "));
            ExitCode::SUCCESS
        }
        #[cfg(feature = "onnx")]
        Command::Inspect { model } => match tributary_processors::onnx::inspect::inspect(&model).await {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Validate { config: paths } => {
            for path in paths {
                let result = async {
                    let config = config::load(&path)?;
                    let topology = graph::topology(&config)?;
                    #[cfg(feature = "parquet")]
                    if crate::batch::is_batch(&config) {
                        crate::batch::validate(&config, &registry).await?;
                        return Ok((config, topology));
                    }
                    Pipeline::build(&config, &registry).await?;
                    Ok::<_, tributary_framework::ConfigError>((config, topology))
                }
                .await;
                match result {
                    Ok((config, topology)) => println!(
                        "{}: ok ({} source(s), {} processor(s), {} sink(s))",
                        config.file,
                        topology.sources.len(),
                        topology.levels.iter().map(Vec::len).sum::<usize>(),
                        topology.sinks.len()
                    ),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Command::Run { config, no_status, metrics_addr, force } => {
            #[cfg(feature = "parquet")]
            if let Some(code) = batch(&config, no_status, force, &registry).await {
                return code;
            }
            let _ = force;
            run(&config, no_status, metrics_addr, &registry).await
        }
        #[cfg(feature = "parquet")]
        Command::TlcSample(args) => report(tlc_sample(args)),
        #[cfg(feature = "serve")]
        Command::Serve(args) => crate::serve::main(args, &registry).await,
        #[cfg(any(feature = "kinesis", feature = "kafka"))]
        Command::Put(args) => report(crate::tools::put(args).await),
        #[cfg(any(feature = "kinesis", feature = "kafka"))]
        Command::Tail(args) => report(crate::tools::tail(args).await),
        #[cfg(feature = "kafka")]
        Command::CreateTopic { brokers, topic, partitions } => {
            report(crate::tools::kafka::create_topic(&brokers, &topic, partitions).await)
        }
        #[cfg(feature = "kinesis")]
        Command::Esm(args) => report(crate::tools::esm::run(args).await),
    }
}

/// Exit status of a helper command: its error, if any, on stderr.
#[allow(dead_code, reason = "used only by feature-gated commands")]
fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ends the process with `status` at once, after flushing stdout and stderr, without running
/// destructors or exit handlers. For a finished batch job (outputs committed and synced,
/// checkpoint written, dead letters delivered) they are only teardown, and ONNX Runtime's is
/// costly: its static destructors were about 30% of a job's CPU time on a 1,000-row file.
#[cfg(feature = "parquet")]
fn end_now(status: u8) -> ! {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    #[cfg(unix)]
    signal_hook::low_level::exit(i32::from(status));
    #[cfg(not(unix))]
    std::process::exit(i32::from(status));
}

/// Runs the config as a batch job when its source is `parquet`; `None` for a stream.
#[cfg(feature = "parquet")]
async fn batch(
    paths: &[PathBuf],
    no_status: bool,
    force: bool,
    registry: &tributary_framework::registry::Registry,
) -> Option<ExitCode> {
    let mut loaded = Vec::new();
    for path in paths {
        match config::load(path) {
            Ok(config) => loaded.push(config),
            Err(_) => return None, // the stream path reports it
        }
    }
    let batch: Vec<&config::PipelineConfig> = loaded.iter().filter(|c| crate::batch::is_batch(c)).collect();
    match (batch.as_slice(), loaded.len()) {
        ([], _) => None,
        ([one], 1) => {
            let progress = !no_status && std::io::stderr().is_terminal();
            let status = crate::batch::run(one, registry, crate::batch::BatchOptions { force, progress }).await;
            end_now(status)
        }
        ([first, ..], _) => {
            eprintln!("error: {}: a batch job (parquet source) runs alone: one --config per run", first.file);
            Some(ExitCode::from(2))
        }
    }
}

async fn run(
    paths: &[PathBuf],
    no_status: bool,
    metrics_addr: Option<std::net::SocketAddr>,
    registry: &tributary_framework::registry::Registry,
) -> ExitCode {
    let mut pipelines = Vec::new();
    let mut shared =
        tributary_framework::shared::SharedSources::new(tributary_framework::shared::DEFAULT_BUFFER_BATCHES);
    for path in paths {
        let name = pipeline_name(path);
        match async { Pipeline::build_shared(&config::load(path)?, registry, &mut shared, &name).await }.await {
            Ok(p) => pipelines.push((name, p)),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(on_signals(shutdown.clone()));
    let readers = shared.start(shutdown.clone());
    let status_stop = CancellationToken::new();
    let metrics: Vec<(String, std::sync::Arc<tributary_framework::metrics::Metrics>)> =
        pipelines.iter().map(|(name, p)| (name.clone(), p.metrics())).collect();
    if let Some(addr) = metrics_addr
        && let Err(e) = crate::metrics_endpoint::serve(addr, metrics.clone(), status_stop.clone()).await
    {
        eprintln!("error: --metrics-addr {addr}: {e}");
        return ExitCode::from(2);
    }
    let status = (!no_status && std::io::stderr().is_terminal())
        .then(|| tokio::spawn(crate::status::show(metrics.into_iter().map(|(_, m)| m).collect(), status_stop.clone())));
    // Independent pipelines: each runs to its own end; a failing one does not stop the others.
    let runs = pipelines.into_iter().map(|(name, pipeline)| {
        let shutdown = shutdown.clone();
        async move { (name, pipeline.run(shutdown).await) }
    });
    let results = futures::future::join_all(runs).await;
    // Shared readers end once every consumer has closed; they make the final shared commit.
    for reader in readers {
        let _ = reader.await;
    }
    status_stop.cancel();
    if let Some(status) = status {
        let _ = status.await;
    }
    let mut code = ExitCode::SUCCESS;
    for (name, result) in results {
        match result {
            Ok(summary) => tracing::info!(pipeline = %name, ?summary.metrics, "pipeline finished"),
            Err(e) => {
                eprintln!("error: {name}: {e}");
                code = ExitCode::FAILURE;
            }
        }
    }
    code
}

/// A pipeline's name in logs and metrics labels: its config file's stem.
fn pipeline_name(path: &std::path::Path) -> String {
    path.file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned())
}

/// First SIGINT/SIGTERM: graceful shutdown. Second: exit at once.
async fn on_signals(shutdown: CancellationToken) {
    on_signals_saying(shutdown, "finishing records in flight, then committing").await;
}

/// [`on_signals`], saying what the graceful shutdown does.
pub(crate) async fn on_signals_saying(shutdown: CancellationToken, doing: &str) {
    for round in 0..2 {
        wait_for_signal().await;
        if round == 0 {
            eprintln!("\nshutting down: {doing} (signal again to abort)");
            shutdown.cancel();
        } else {
            eprintln!("aborting");
            std::process::exit(130);
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
