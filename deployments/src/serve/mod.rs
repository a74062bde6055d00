//! `tributary serve --config FILE [--addr 0.0.0.0:9696]`: the pipeline answers HTTP requests
//! (the seeds' Flask web service, done properly).
//!
//! - The config's one source has `type = "http"` ([`tributary_sources::http`]): its route takes
//!   `POST` requests (a JSON value is one event, an array a batch), its `request` shape builds
//!   the event the processors expect. What reaches the `type = "response"` sink
//!   ([`tributary_sinks::response`]) is the answer, shaped by its `body`.
//! - Concurrent requests are gathered into one inference call ([`batcher`]).
//! - The pipeline's other sinks, and its `[dead_letter]` destination when one is configured,
//!   also get every served record (the tee), after the answer, through a bounded buffer.
//! - The Open Inference Protocol v2 endpoints ([`oip`]) and `GET /metrics` ([`http_metrics`]).
//! - The listener answers from the start: `/v2/health/live` at once, readiness and predictions
//!   once every model is loaded. SIGTERM/SIGINT: no new connections, requests in flight are
//!   answered, the tee is delivered, then the process exits.

mod batcher;
mod http_metrics;
mod oip;
mod predict;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;
use tributary_framework::ConfigError;
use tributary_framework::config;
use tributary_framework::graph::Graph;
use tributary_framework::runtime::Pipeline;

use crate::http_api::HttpPlan;

/// `tributary serve` arguments.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The pipeline configuration (TOML), with one `type = "http"` source and a
    /// `type = "response"` sink (see `deployments/config/web-service.toml`).
    #[arg(short, long, env = "TRIBUTARY_CONFIG")]
    pub config: PathBuf,
    /// Where to listen. Port 0 picks a free port; the address is printed on stderr.
    #[arg(long, env = "TRIBUTARY_ADDR", default_value = "0.0.0.0:9696")]
    pub addr: SocketAddr,
}

/// The built pipeline, once every model has loaded.
pub(crate) struct Served {
    pub graph: Arc<Graph>,
    pub batcher: batcher::Batcher,
}

/// Everything the handlers share.
pub(crate) struct App {
    pub plan: HttpPlan,
    /// Set once the pipeline is built.
    pub served: OnceLock<Served>,
    pub metrics: Arc<http_metrics::HttpMetrics>,
}

impl App {
    /// The pipeline, once every model has loaded. Requests are served from then on, also while
    /// [`App::ready`] says no because a new version failed to load (the old one serves).
    pub fn built(&self) -> Result<&Served, String> {
        self.served.get().ok_or_else(|| "the models are still loading".to_string())
    }

    /// Ready (for `/v2/health/ready`): built, and every processor ready (a model following the
    /// registry whose new version failed to load is not, so that a load balancer can prefer
    /// replicas serving the version the registry names).
    pub fn ready(&self) -> Result<&Served, String> {
        let served = self.built()?;
        for id in served.graph.processor_ids() {
            if let Some(Err(reason)) = served.graph.processor(id).map(|p| p.ready()) {
                return Err(format!("processor {id}: {reason}"));
            }
        }
        Ok(served)
    }
}

/// Runs `tributary serve`.
pub async fn main(args: ServeArgs, registry: &tributary_framework::registry::Registry) -> ExitCode {
    match serve(&args.config, args.addr, registry).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Config(ConfigError),
    Other(anyhow::Error),
}

async fn serve(
    path: &Path,
    addr: SocketAddr,
    registry: &tributary_framework::registry::Registry,
) -> Result<(), Failure> {
    let config = config::load(path).map_err(Failure::Config)?;
    let plan = HttpPlan::of(&config).map_err(Failure::Config)?;
    tributary_framework::graph::topology(&config).map_err(Failure::Config)?;
    registry.check_types(&config).map_err(Failure::Config)?;
    let shutdown = CancellationToken::new();
    let app = Arc::new(App { plan: plan.clone(), served: OnceLock::new(), metrics: Arc::default() });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::Other(anyhow::anyhow!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr().map_err(|e| Failure::Other(e.into()))?;
    eprintln!(
        "tributary serve: listening on http://{local} (POST {}; /v2 Open Inference Protocol; /metrics)",
        plan.http.route
    );
    tokio::spawn(crate::cli::on_signals_saying(
        shutdown.clone(),
        "no new connections; answering the requests in flight, then delivering the tee",
    ));
    let server = {
        let router = router(app.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move { axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await })
    };
    // Build (load the models) while the listener already answers liveness.
    let built = tokio::select! {
        built = Pipeline::build(&config, registry) => Some(built),
        () = shutdown.cancelled() => None,
    };
    let tee = match built {
        Some(Ok(pipeline)) => {
            let graph = pipeline.graph();
            let (batcher, tee) = batcher::start(graph.clone(), &plan, app.metrics.clone());
            let _ = app.served.set(Served { graph, batcher });
            tracing::info!("models loaded; ready");
            Some(tee)
        }
        Some(Err(e)) => {
            shutdown.cancel();
            let _ = server.await;
            return Err(Failure::Config(e));
        }
        None => None,
    };
    let served = server.await;
    // Every handler has answered: close the queue so that the batcher and the tee finish.
    drop(app);
    if let Some(tee) = tee {
        match tokio::time::timeout(Duration::from_secs(30), tee).await {
            Ok(Ok(Err(e))) => return Err(Failure::Other(e)),
            Ok(Ok(Ok(()))) => {}
            Ok(Err(join)) => return Err(Failure::Other(anyhow::anyhow!("the tee task failed: {join}"))),
            Err(_) => return Err(Failure::Other(anyhow::anyhow!("the tee did not finish delivering within 30 s"))),
        }
    }
    match served {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Failure::Other(e.into())),
        Err(join) => Err(Failure::Other(anyhow::anyhow!("the HTTP server task failed: {join}"))),
    }
}

/// Every route.
fn router(app: Arc<App>) -> Router {
    let limit = app.plan.http.max_body_bytes;
    Router::new()
        .route(&app.plan.http.route, post(predict::predict))
        .route("/v2", get(oip::server_metadata))
        .route("/v2/health/live", get(oip::live))
        .route("/v2/health/ready", get(oip::ready))
        .route("/v2/models/{name}", get(oip::model_metadata))
        .route("/v2/models/{name}/ready", get(oip::model_ready))
        .route("/v2/models/{name}/infer", post(oip::infer))
        .route("/metrics", get(http_metrics::metrics))
        .layer(axum::middleware::from_fn_with_state(app.clone(), http_metrics::track))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app)
}
