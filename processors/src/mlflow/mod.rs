//! Models from MLflow: registry and run URIs resolved through the tracking server's REST API,
//! for both layouts MLflow has used.
//!
//! | `model =` | resolved by | version in envelopes |
//! |---|---|---|
//! | `models:/<name>@<alias>` | `registered-models/alias` | the registered version |
//! | `models:/<name>/<version>` | `model-versions/get` | that version |
//! | `models:/<name>/latest` | `model-versions/search` (highest version) | the registered version |
//! | `runs:/<run_id>/<path>` | `runs/get` (MLflow 2: under the run), else `logged-models/search` (MLflow 3) | the run id |
//!
//! A registered version's files are found with `model-versions/get-download-uri`, which answers
//! `s3://...` (the default artifact root), `mlflow-artifacts:/...` (served by the tracking
//! server's proxy, MLflow 3's `--artifacts-destination`) or a local path. The model folder's
//! `MLmodel` file ([`mlmodel`]) then says which file is the ONNX model.

pub mod client;
pub mod mlmodel;

use serde_json::{Value, json};

pub use self::client::{Answer, TrackingClient};
pub use self::mlmodel::{MlModel, SignatureInput};

/// A model URI in one of MLflow's forms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelUri {
    /// `models:/<name>@<alias>`.
    Alias {
        /// Registered model name.
        name: String,
        /// Alias, such as `champion`.
        alias: String,
    },
    /// `models:/<name>/<version>`.
    Version {
        /// Registered model name.
        name: String,
        /// Version number.
        version: String,
    },
    /// `models:/<name>/latest`.
    Latest {
        /// Registered model name.
        name: String,
    },
    /// `runs:/<run_id>/<path>`.
    Run {
        /// The run id.
        run_id: String,
        /// The artifact path (MLflow 2) or logged model name (MLflow 3), such as `model`.
        path: String,
    },
}

impl ModelUri {
    /// `None` when `text` is not a `models:/` or `runs:/` URI; `Some(Err)` when it is one but
    /// malformed.
    pub fn parse(text: &str) -> Option<Result<Self, String>> {
        let bad = |form: &str| Err(format!("{text:?} is not a valid MLflow URI; expected {form}"));
        if let Some(rest) = text.strip_prefix("models:/") {
            let rest = rest.trim_start_matches('/').trim_end_matches('/');
            let form = "models:/<name>@<alias>, models:/<name>/<version> or models:/<name>/latest";
            return Some(if let Some((name, alias)) = rest.split_once('@') {
                if name.is_empty() || alias.is_empty() || alias.contains('/') {
                    bad(form)
                } else {
                    Ok(ModelUri::Alias { name: name.into(), alias: alias.into() })
                }
            } else {
                match rest.rsplit_once('/') {
                    Some((name, "latest")) if !name.is_empty() => Ok(ModelUri::Latest { name: name.into() }),
                    Some((name, version))
                        if !name.is_empty() && !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) =>
                    {
                        Ok(ModelUri::Version { name: name.into(), version: version.into() })
                    }
                    _ => bad(form),
                }
            });
        }
        let rest = text.strip_prefix("runs:/")?;
        let rest = rest.trim_start_matches('/').trim_end_matches('/');
        Some(match rest.split_once('/') {
            Some((run_id, path)) if !run_id.is_empty() && !path.is_empty() => {
                Ok(ModelUri::Run { run_id: run_id.into(), path: path.into() })
            }
            _ => bad("runs:/<run_id>/<artifact path>"),
        })
    }

    /// Whether the URI can point elsewhere later (an alias or `latest`), so reloading makes sense.
    pub fn moves(&self) -> bool {
        matches!(self, ModelUri::Alias { .. } | ModelUri::Latest { .. })
    }
}

/// Where a model URI points now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    /// The model folder: `s3://...`, `mlflow-artifacts:/...` or a local path.
    pub folder: String,
    /// The registered version, or the run id for `runs:/`.
    pub version: String,
    /// One line for `inspect` and logs: what the URI resolved to.
    pub description: String,
}

/// Resolves `uri` through the tracking server.
///
/// # Errors
/// The server is unreachable or refuses, or the model, alias, version or run does not exist.
pub async fn resolve(uri: &ModelUri, client: &TrackingClient) -> Result<Resolution, String> {
    match uri {
        ModelUri::Alias { name, alias } => {
            let answer = client.get_json("registered-models/alias", &[("name", name), ("alias", alias)]).await?;
            let version = model_version(answer, || format!("registered model {name:?} has no alias {alias:?}"))?;
            registered(client, name, &version, &format!("models:/{name}@{alias}")).await
        }
        ModelUri::Version { name, version } => {
            let answer = client.get_json("model-versions/get", &[("name", name), ("version", version)]).await?;
            let version = model_version(answer, || format!("registered model {name:?} has no version {version}"))?;
            registered(client, name, &version, &format!("models:/{name}/{version}")).await
        }
        ModelUri::Latest { name } => {
            let filter = format!("name='{}'", name.replace('\'', "\\'"));
            let mut best: Option<u64> = None;
            let mut token = String::new();
            loop {
                let mut query = vec![("filter", filter.as_str()), ("max_results", "1000")];
                if !token.is_empty() {
                    query.push(("page_token", token.as_str()));
                }
                let answer = client.get_json("model-versions/search", &query).await?.unwrap_or_default();
                for v in answer["model_versions"].as_array().into_iter().flatten() {
                    let ready = v["status"].as_str().is_none_or(|s| s == "READY");
                    if let Some(n) = v["version"].as_str().and_then(|s| s.parse::<u64>().ok()).filter(|_| ready) {
                        best = best.max(Some(n));
                    }
                }
                match answer["next_page_token"].as_str() {
                    Some(next) if !next.is_empty() => token = next.to_string(),
                    _ => break,
                }
            }
            let version = best.ok_or_else(|| format!("registered model {name:?} has no ready version"))?;
            registered(client, name, &version.to_string(), &format!("models:/{name}/latest")).await
        }
        ModelUri::Run { run_id, path } => run(client, run_id, path).await,
    }
}

fn model_version(answer: Option<Value>, missing: impl Fn() -> String) -> Result<String, String> {
    let answer = answer.ok_or_else(&missing)?;
    answer["model_version"]["version"].as_str().map(str::to_string).ok_or_else(missing)
}

async fn registered(client: &TrackingClient, name: &str, version: &str, uri: &str) -> Result<Resolution, String> {
    let answer = client
        .get_json("model-versions/get-download-uri", &[("name", name), ("version", version)])
        .await?
        .ok_or_else(|| format!("registered model {name:?} version {version} has no download URI"))?;
    let folder = answer["artifact_uri"]
        .as_str()
        .ok_or_else(|| format!("registered model {name:?} version {version}: no artifact_uri in {answer}"))?
        .to_string();
    Ok(Resolution { description: format!("{uri} -> version {version} at {folder}"), folder, version: version.into() })
}

async fn run(client: &TrackingClient, run_id: &str, path: &str) -> Result<Resolution, String> {
    let answer = client
        .get_json("runs/get", &[("run_id", run_id)])
        .await?
        .ok_or_else(|| format!("run {run_id:?} does not exist on {}", client.base()))?;
    let info = &answer["run"]["info"];
    let uri = format!("runs:/{run_id}/{path}");
    // MLflow 2: the model is an artifact of the run.
    if let Some(root) = info["artifact_uri"].as_str() {
        let folder = format!("{}/{path}", root.trim_end_matches('/'));
        if read(&format!("{folder}/MLmodel"), client).await?.is_some() {
            return Ok(Resolution { description: format!("{uri} -> {folder}"), folder, version: run_id.into() });
        }
    }
    // MLflow 3: a logged model whose source run is this one, named `path`.
    let experiment = info["experiment_id"].as_str().unwrap_or("0");
    let body = json!({
        "experiment_ids": [experiment],
        "filter": format!("source_run_id = '{run_id}' AND name = '{}'", path.replace('\'', "\\'")),
        "max_results": 10,
    });
    let answer = client.post_json("logged-models/search", &body).await?.unwrap_or_default();
    let found = answer["models"].as_array().and_then(|m| m.first()).map(|m| &m["info"]);
    let folder = found
        .and_then(|info| info["artifact_uri"].as_str())
        .ok_or_else(|| format!("{uri}: run {run_id} has no artifact {path:?} and no logged model named {path:?}"))?
        .to_string();
    let model_id = found.and_then(|info| info["model_id"].as_str()).unwrap_or("?");
    Ok(Resolution {
        description: format!("{uri} -> logged model {model_id} at {folder}"),
        folder,
        version: run_id.into(),
    })
}

/// Reads one artifact file: `mlflow-artifacts:/...` through `client`'s proxy, `s3://...`
/// (`MLFLOW_S3_ENDPOINT_URL` honoured as MLflow does), `file://...` or a local path. `None` when
/// there is no such file.
///
/// # Errors
/// The store refused or failed.
pub async fn read(uri: &str, client: &TrackingClient) -> Result<Option<Vec<u8>>, String> {
    if let Some(rest) = uri.strip_prefix("mlflow-artifacts:") {
        // `mlflow-artifacts:/path` or `mlflow-artifacts://host:port/path`: this server's proxy.
        let path = match rest.strip_prefix("//") {
            Some(with_host) => with_host.split_once('/').map_or("", |(_, p)| p),
            None => rest,
        };
        return match client.artifact(path).await? {
            Answer::Found(bytes) => Ok(Some(bytes.to_vec())),
            Answer::NotFound(_) => Ok(None),
        };
    }
    read_plain(uri).await
}

/// Reads `s3://`, `file://` or a local path; `None` when there is no such file.
///
/// # Errors
/// The store refused or failed.
pub async fn read_plain(uri: &str) -> Result<Option<Vec<u8>>, String> {
    if let Some(rest) = uri.strip_prefix("s3://") {
        let (bucket, key) = rest.split_once('/').ok_or_else(|| format!("{uri:?} is not an s3://bucket/key URI"))?;
        let endpoint = std::env::var("MLFLOW_S3_ENDPOINT_URL").ok();
        return crate::model_store::s3_get_optional(bucket, key, endpoint).await.map_err(|e| format!("{uri}: {e}"));
    }
    let path = uri.strip_prefix("file://").unwrap_or(uri);
    match tokio::fs::read(path).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {path}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Option<Result<ModelUri, String>> {
        ModelUri::parse(text)
    }

    #[test]
    fn uri_forms() {
        let s = String::from;
        assert_eq!(
            parse("models:/rides@champion"),
            Some(Ok(ModelUri::Alias { name: s("rides"), alias: s("champion") }))
        );
        assert_eq!(parse("models:/rides/3"), Some(Ok(ModelUri::Version { name: s("rides"), version: s("3") })));
        assert_eq!(parse("models:/rides/latest"), Some(Ok(ModelUri::Latest { name: s("rides") })));
        assert_eq!(parse("runs:/abc/model"), Some(Ok(ModelUri::Run { run_id: s("abc"), path: s("model") })));
        assert_eq!(
            parse("runs:/abc/nested/model"),
            Some(Ok(ModelUri::Run { run_id: s("abc"), path: s("nested/model") }))
        );
        assert_eq!(parse("s3://bucket/model.onnx"), None);
        assert_eq!(parse("models/model.onnx"), None);
    }

    #[test]
    fn malformed_uris_say_which_forms_exist() {
        for bad in ["models:/rides", "models:/rides@", "models:/@champion", "models:/rides/three", "runs:/abc"] {
            let err = parse(bad).and_then(Result::err).unwrap_or_default();
            assert!(err.contains("expected"), "{bad}: {err}");
        }
    }

    #[test]
    fn only_aliases_and_latest_move() {
        assert!(parse("models:/r@a").and_then(Result::ok).is_some_and(|u| u.moves()));
        assert!(parse("models:/r/latest").and_then(Result::ok).is_some_and(|u| u.moves()));
        assert!(!parse("models:/r/2").and_then(Result::ok).is_some_and(|u| u.moves()));
    }
}
