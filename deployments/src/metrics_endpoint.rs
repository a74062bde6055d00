//! `tributary run --metrics-addr 127.0.0.1:9898`: the pipeline's counters in the Prometheus text
//! format, on any path, over plain HTTP/1.1.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tributary_framework::metrics::Metrics;

/// Serves `metrics` on `addr` until `stop` is cancelled.
///
/// # Errors
/// The address cannot be bound.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>, stop: CancellationToken) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics endpoint listening");
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((mut stream, _)) = accepted else { continue };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                // Read the request head (any path answers); ignore the body.
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let body = metrics.prometheus();
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
