//! A small client for the MLflow tracking server's REST API (`/api/2.0/mlflow/...`) and its
//! artifact proxy (`/api/2.0/mlflow-artifacts/artifacts/...`), authenticated as MLflow's own
//! clients are: `MLFLOW_TRACKING_TOKEN` (a bearer token), else `MLFLOW_TRACKING_USERNAME` and
//! `MLFLOW_TRACKING_PASSWORD` (basic auth). `http://` and `https://` (system roots) servers.

use std::time::Duration;

use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// How long one request may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The tracking server at `MLFLOW_TRACKING_URI` (or a given base URL).
#[derive(Clone)]
pub struct TrackingClient {
    base: String,
    authorization: Option<String>,
    http: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// What a request got: a body, "not found", or an error worth reporting.
#[derive(Debug)]
pub enum Answer {
    /// 2xx, with the body.
    Found(Bytes),
    /// 404, or MLflow's `RESOURCE_DOES_NOT_EXIST`.
    NotFound(String),
}

impl TrackingClient {
    /// The client for `MLFLOW_TRACKING_URI`.
    ///
    /// # Errors
    /// The variable is unset, or is not an `http(s)://` URL (a local `mlruns` folder or a
    /// database URI cannot be asked over REST).
    pub fn from_env() -> Result<Self, String> {
        let uri = std::env::var("MLFLOW_TRACKING_URI").map_err(|_| {
            "MLFLOW_TRACKING_URI is not set: point it at the MLflow tracking server (for example \
             http://127.0.0.1:5050, which `cargo xtask services up` starts)"
                .to_string()
        })?;
        Self::new(&uri)
    }

    /// A client for the server at `base` (`http://host:port[/prefix]`).
    ///
    /// # Errors
    /// `base` is not an `http(s)://` URL.
    pub fn new(base: &str) -> Result<Self, String> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!(
                "MLFLOW_TRACKING_URI {base:?} is not an http(s):// tracking server; tributary reads the \
                 registry over MLflow's REST API"
            ));
        }
        let var = |name: &str| std::env::var(name).ok();
        let authorization = authorization(
            var("MLFLOW_TRACKING_TOKEN"),
            var("MLFLOW_TRACKING_USERNAME"),
            var("MLFLOW_TRACKING_PASSWORD"),
        );
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| format!("TLS setup for {base}: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let http = Client::builder(TokioExecutor::new()).build(connector);
        Ok(TrackingClient { base: base.trim_end_matches('/').to_string(), authorization, http })
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET {base}/api/2.0/mlflow/{endpoint}?{query}` as JSON.
    ///
    /// # Errors
    /// The server is unreachable, refuses the request, or does not answer JSON.
    pub async fn get_json(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<Option<Value>, String> {
        let url = format!("{}/api/2.0/mlflow/{endpoint}{}", self.base, encode_query(query));
        json(self.request("GET", &url, None).await?, &url)
    }

    /// `POST {base}/api/2.0/mlflow/{endpoint}` with a JSON body, as JSON.
    ///
    /// # Errors
    /// As [`TrackingClient::get_json`].
    pub async fn post_json(&self, endpoint: &str, body: &Value) -> Result<Option<Value>, String> {
        let url = format!("{}/api/2.0/mlflow/{endpoint}", self.base);
        json(self.request("POST", &url, Some(body.to_string())).await?, &url)
    }

    /// An artifact through the server's proxy (`mlflow-artifacts:/<path>`).
    ///
    /// # Errors
    /// As [`TrackingClient::get_json`].
    pub async fn artifact(&self, path: &str) -> Result<Answer, String> {
        let path: String = path.trim_start_matches('/').split('/').map(percent_encode).collect::<Vec<_>>().join("/");
        match self.request("GET", &format!("{}/api/2.0/mlflow-artifacts/artifacts/{path}", self.base), None).await {
            // The proxy reports its store's "no such key" as a 500 naming the store's 404.
            Err(e) if e.contains(" 500 ") && (e.contains("(404)") || e.contains("NoSuchKey")) => {
                Ok(Answer::NotFound(e))
            }
            other => other,
        }
    }

    async fn request(&self, method: &str, url: &str, body: Option<String>) -> Result<Answer, String> {
        let mut request = hyper::Request::builder().method(method).uri(url);
        if let Some(auth) = &self.authorization {
            request = request.header("authorization", auth);
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request =
            request.body(Full::new(Bytes::from(body.unwrap_or_default()))).map_err(|e| format!("{url}: {e}"))?;
        let send = async {
            let response = self.http.request(request).await.map_err(|e| format!("{url}: {}", error_chain(&e)))?;
            let status = response.status();
            let body = response.into_body().collect().await.map_err(|e| format!("{url}: {e}"))?.to_bytes();
            Ok::<_, String>((status, body))
        };
        let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, send)
            .await
            .map_err(|_| format!("{url}: no answer within {} s", REQUEST_TIMEOUT.as_secs()))??;
        let text = || String::from_utf8_lossy(&body[..body.len().min(500)]).trim().to_string();
        if status.is_success() {
            Ok(Answer::Found(body))
        } else if status == hyper::StatusCode::NOT_FOUND || text().contains("RESOURCE_DOES_NOT_EXIST") {
            Ok(Answer::NotFound(format!("{url}: {status} {}", text())))
        } else if status == hyper::StatusCode::UNAUTHORIZED || status == hyper::StatusCode::FORBIDDEN {
            Err(format!(
                "{url}: {status}: set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD ({})",
                text()
            ))
        } else {
            Err(format!("{url}: {status} {}", text()))
        }
    }
}

/// The `Authorization` header MLflow's clients send: a bearer token, else basic auth.
fn authorization(token: Option<String>, user: Option<String>, password: Option<String>) -> Option<String> {
    match (token.filter(|t| !t.is_empty()), user, password) {
        (Some(token), _, _) => Some(format!("Bearer {token}")),
        (None, Some(user), Some(password)) => {
            Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))))
        }
        _ => None,
    }
}

fn json(answer: Answer, url: &str) -> Result<Option<Value>, String> {
    match answer {
        Answer::Found(body) => {
            serde_json::from_slice(&body).map(Some).map_err(|e| format!("{url}: the answer is not JSON: {e}"))
        }
        Answer::NotFound(_) => Ok(None),
    }
}

/// The error and its sources on one line ("connection refused" sits a few levels down).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn encode_query(query: &[(&str, &str)]) -> String {
    if query.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> =
        query.iter().map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v))).collect();
    format!("?{}", pairs.join("&"))
}

/// RFC 3986 percent-encoding of everything but unreserved characters.
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_percent_encoded() {
        assert_eq!(
            encode_query(&[("name", "ride duration"), ("alias", "a@b/c")]),
            "?name=ride%20duration&alias=a%40b%2Fc"
        );
        assert_eq!(encode_query(&[]), "");
    }

    #[test]
    fn auth_as_mlflow_clients_send_it() {
        let s = |v: &str| Some(v.to_string());
        assert_eq!(authorization(s("tok"), s("u"), s("p")), s("Bearer tok"));
        assert_eq!(authorization(None, s("u"), s("p")), s("Basic dTpw"));
        assert_eq!(authorization(s(""), None, None), None);
    }

    /// The header reaches the server (a loopback listener reading the request head).
    #[tokio::test]
    async fn the_authorization_header_is_sent() {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap_or_else(|e| panic!("{e}"));
            let mut head = Vec::new();
            for line in BufReader::new(stream.try_clone().unwrap_or_else(|e| panic!("{e}"))).lines() {
                let line = line.unwrap_or_default();
                if line.is_empty() {
                    break;
                }
                head.push(line.to_ascii_lowercase());
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}");
            head
        });
        let mut client = TrackingClient::new(&format!("http://127.0.0.1:{port}")).unwrap_or_else(|e| panic!("{e}"));
        client.authorization = Some("Bearer s3cret".into());
        let answer = client.get_json("registered-models/alias", &[("name", "m"), ("alias", "a")]).await;
        assert_eq!(answer, Ok(Some(serde_json::json!({}))));
        let head = server.join().unwrap_or_default();
        assert!(head.iter().any(|l| l == "authorization: bearer s3cret"), "{head:?}");
        assert!(head[0].starts_with("get /api/2.0/mlflow/registered-models/alias?name=m&alias=a "), "{head:?}");
    }

    #[test]
    fn only_http_servers() {
        let err = TrackingClient::new("sqlite:///mlflow.db").err().unwrap_or_default();
        assert!(err.contains("not an http(s):// tracking server"), "{err}");
    }
}
