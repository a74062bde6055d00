//! `tributary run --metrics-addr 127.0.0.1:9898`: the pipelines' counters in the Prometheus
//! text format, on any path, over plain HTTP/1.1. With several pipelines in one process, every
//! series carries a `pipeline` label (the config file's stem).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tributary_framework::metrics::{Metrics, prometheus};

/// Serves the `pipelines`' metrics on `addr` until `stop` is cancelled. Names label the series
/// when there is more than one pipeline.
///
/// # Errors
/// The address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    pipelines: Vec<(String, Arc<Metrics>)>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let pipelines = Arc::new(pipelines);
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics endpoint listening");
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((mut stream, _)) = accepted else { continue };
            let pipelines = pipelines.clone();
            tokio::spawn(async move {
                // Read the request head (any path answers); ignore the body.
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let labelled: Vec<(&str, &Metrics)> = pipelines
                    .iter()
                    .map(|(name, m)| (if pipelines.len() > 1 { name.as_str() } else { "" }, &**m))
                    .collect();
                let body = prometheus(&labelled);
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(())
}
