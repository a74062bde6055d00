//! Processor `merge`: a keyed join of detector results into one moderation decision.
//!
//! ```toml
//! [processors.decision]
//! type = "merge"
//! inputs = ["copyright", "nsfw", "violence"]
//! detectors = ["copyright", "nsfw", "violence"]
//! key = "{upload_id}"
//! timeout_ms = 2000
//! ```
//!
//! Each input is one detector's result (`{"detector", "upload_id", "score"}`). Results are
//! joined by `key` in a table shared by every batch in flight, holding at most `max_pending`
//! keys (a new key finding it full is retried with backoff). A key is decided when every
//! detector in `detectors` has reported, or when `timeout_ms` has passed since its first
//! result: then the decision is marked `"complete": false` and names the detectors `missing`.
//!
//! ```json
//! {"upload_id": "u-1", "decision": "review", "complete": true, "missing": [],
//!  "scores": {"copyright": 0.02, "nsfw": 0.61, "violence": 0.2}}
//! ```
//!
//! `delete` when any score is at least `delete_at`; otherwise `review` when any score is at
//! least `review_at` or the decision is incomplete; otherwise `promote`.
//!
//! Acknowledgements: the decision is emitted as the output of the input that completed the
//! key (or, on timeout, of this call's last input for it); the key's other inputs emit nothing.
//! In the fan-out shape (detectors reading one source), every part of an upload derives from
//! the same source record, so that record is committed only once its decision is delivered.
//! A call waits, up to the timeout, for the keys it holds to be decided, so a batch missing a
//! detector's result (the detector rejected the upload) is held for `timeout_ms`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;
use tributary_framework::config::ComponentSpec;
use tributary_framework::registry::BuildFuture;
use tributary_framework::template::Template;
use tributary_framework::{ComponentError, Input, Outcome, Processor};

/// `[processors.<id>]` with `type = "merge"`.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeConfig {
    /// The detectors whose results make a decision complete (their `detector` field).
    pub detectors: Vec<String>,
    /// The join key, a template over each result. Default `{upload_id}`.
    #[serde(default = "default_key")]
    pub key: String,
    /// How long a key waits for its missing results after its first one. Default 2000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Keys held at most; a new key beyond this is retried with backoff. Default 10,000.
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
    /// A score at or above this deletes the upload. Default 0.9.
    #[serde(default = "default_delete_at")]
    pub delete_at: f64,
    /// A score at or above this sends the upload to review. Default 0.5.
    #[serde(default = "default_review_at")]
    pub review_at: f64,
}

fn default_key() -> String {
    "{upload_id}".into()
}
fn default_timeout_ms() -> u64 {
    2000
}
fn default_max_pending() -> usize {
    10_000
}
fn default_delete_at() -> f64 {
    0.9
}
fn default_review_at() -> f64 {
    0.5
}

/// One key's results so far.
struct Pending {
    upload_id: Value,
    scores: BTreeMap<String, f64>,
    deadline: Instant,
}

/// The join.
pub struct Merge {
    config: MergeConfig,
    key: Template,
    table: Mutex<HashMap<String, Pending>>,
    changed: Notify,
}

/// Builds the merge.
pub fn build(spec: ComponentSpec) -> BuildFuture<Arc<dyn Processor>> {
    Box::pin(async move {
        let config: MergeConfig = spec.parse()?;
        let merge = Merge::new(config).map_err(|(key, e)| spec.error(key, e))?;
        Ok(Arc::new(merge) as Arc<dyn Processor>)
    })
}

impl Merge {
    /// A merge with the given configuration.
    ///
    /// # Errors
    /// The config key at fault and why.
    pub fn new(config: MergeConfig) -> Result<Self, (&'static str, String)> {
        if config.detectors.is_empty() {
            return Err(("detectors", "list the detectors whose results make a decision".into()));
        }
        if config.max_pending == 0 {
            return Err(("max_pending", "must be at least 1".into()));
        }
        if config.review_at > config.delete_at {
            return Err(("review_at", "must not be above delete_at".into()));
        }
        let key = Template::parse(&config.key).map_err(|e| ("key", e))?;
        Ok(Merge { config, key, table: Mutex::new(HashMap::new()), changed: Notify::new() })
    }

    /// Adds one result to the table; returns its key, or the outcome for a bad input.
    fn add(&self, table: &mut HashMap<String, Pending>, value: &Value) -> Result<String, Outcome> {
        let key = self.key.render(value).ok_or_else(|| {
            Outcome::Reject(format!("result has no `{}` to join on", self.key.missing_field(value).unwrap_or_default()))
        })?;
        let detector = value
            .get("detector")
            .and_then(Value::as_str)
            .ok_or(Outcome::Reject("result has no `detector` name".into()))?;
        if !self.config.detectors.iter().any(|d| d == detector) {
            return Err(Outcome::Reject(format!(
                "unknown detector {detector:?}; this merge joins {:?}",
                self.config.detectors
            )));
        }
        let score = value
            .get("score")
            .and_then(Value::as_f64)
            .ok_or(Outcome::Reject("result has no numeric `score`".into()))?;
        if !table.contains_key(&key) {
            if table.len() >= self.config.max_pending {
                return Err(Outcome::Retry(format!("merge holds {} pending keys (max_pending)", table.len())));
            }
            let deadline = Instant::now() + Duration::from_millis(self.config.timeout_ms);
            let upload_id = value.get("upload_id").cloned().unwrap_or_else(|| Value::String(key.clone()));
            table.insert(key.clone(), Pending { upload_id, scores: BTreeMap::new(), deadline });
        }
        if let Some(pending) = table.get_mut(&key) {
            pending.scores.insert(detector.to_string(), score);
        }
        Ok(key)
    }

    fn complete(&self, pending: &Pending) -> bool {
        self.config.detectors.iter().all(|d| pending.scores.contains_key(d))
    }

    /// The decision document for a finished key.
    pub fn decide(&self, upload_id: &Value, scores: &BTreeMap<String, f64>) -> Value {
        let missing: Vec<&String> = self.config.detectors.iter().filter(|d| !scores.contains_key(*d)).collect();
        let top = scores.values().copied().fold(f64::NEG_INFINITY, f64::max);
        let decision = if top >= self.config.delete_at {
            "delete"
        } else if top >= self.config.review_at || !missing.is_empty() {
            "review"
        } else {
            "promote"
        };
        json!({
            "upload_id": upload_id,
            "decision": decision,
            "complete": missing.is_empty(),
            "missing": missing,
            "scores": scores,
        })
    }
}

#[async_trait]
impl Processor for Merge {
    async fn process(&self, batch: &[Input<'_>]) -> Result<Vec<Outcome>, ComponentError> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
        // The keys this call holds, with the indices of its inputs for each, in arrival order.
        let mut held: HashMap<String, Vec<usize>> = HashMap::new();
        {
            let mut table = self.table.lock().map_err(|_| ComponentError::Fatal("merge state poisoned".into()))?;
            for (i, input) in batch.iter().enumerate() {
                match self.add(&mut table, input.value) {
                    Ok(key) => held.entry(key).or_default().push(i),
                    Err(outcome) => outcomes[i] = Some(outcome),
                }
            }
        }
        self.changed.notify_waiters();
        while !held.is_empty() {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut next_deadline: Option<Instant> = None;
            let mut decided_any = false;
            {
                let mut table = self.table.lock().map_err(|_| ComponentError::Fatal("merge state poisoned".into()))?;
                let now = Instant::now();
                held.retain(|key, indices| {
                    let Some(pending) = table.get(key) else {
                        // Decided by the call that completed it: these inputs emit nothing.
                        for &i in indices.iter() {
                            outcomes[i] = Some(Outcome::Emit(Vec::new()));
                        }
                        return false;
                    };
                    if !self.complete(pending) && now < pending.deadline {
                        next_deadline = Some(next_deadline.map_or(pending.deadline, |d| d.min(pending.deadline)));
                        return true;
                    }
                    let decision = self.decide(&pending.upload_id, &pending.scores);
                    table.remove(key);
                    decided_any = true;
                    if let Some((last, rest)) = indices.split_last() {
                        for &i in rest {
                            outcomes[i] = Some(Outcome::Emit(Vec::new()));
                        }
                        outcomes[*last] = Some(Outcome::one(decision));
                    }
                    false
                });
            }
            if decided_any {
                self.changed.notify_waiters();
            }
            let Some(deadline) = next_deadline else { break };
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
        Ok(outcomes.into_iter().map(|o| o.unwrap_or_else(|| Outcome::Emit(Vec::new()))).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tributary_framework::{Offset, Output, Position, Record};

    use super::*;

    fn merge(timeout_ms: u64, max_pending: usize) -> Merge {
        let config: MergeConfig = serde_json::from_value(json!({
            "detectors": ["copyright", "nsfw", "violence"], "timeout_ms": timeout_ms, "max_pending": max_pending
        }))
        .unwrap();
        Merge::new(config).unwrap()
    }

    fn record() -> Record {
        Record::new(
            &b"{}"[..],
            Position { source: Arc::from("s"), partition: Arc::from("p"), offset: Offset::Index(0) },
        )
    }

    fn part(detector: &str, upload: &str, score: f64) -> Value {
        json!({"detector": detector, "upload_id": upload, "score": score})
    }

    async fn call(merge: &Merge, values: &[Value]) -> Vec<Outcome> {
        let record = record();
        let values: Vec<Output> = values.iter().cloned().map(Output::from).collect();
        let inputs: Vec<Input<'_>> = values.iter().map(|value| Input { value, record: &record }).collect();
        merge.process(&inputs).await.unwrap()
    }

    fn decisions(outcomes: &[Outcome]) -> Vec<Value> {
        outcomes
            .iter()
            .flat_map(|o| match o {
                Outcome::Emit(values) => values.iter().map(|v| v.value().clone()).collect::<Vec<_>>(),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn parts_arriving_in_different_calls_are_joined_once() {
        let m = merge(5_000, 100);
        let first = vec![part("copyright", "u1", 0.1), part("nsfw", "u1", 0.2)];
        let second = vec![part("violence", "u1", 0.95)];
        let (a, b) = tokio::join!(call(&m, &first), call(&m, &second));
        let all: Vec<Value> = decisions(&a).into_iter().chain(decisions(&b)).collect();
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0]["decision"], "delete");
        assert_eq!(all[0]["complete"], true);
        assert!(m.table.lock().unwrap().is_empty(), "decided keys leave the table");
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_detector_yields_an_incomplete_decision_after_the_timeout() {
        let m = merge(1_000, 100);
        let started = Instant::now();
        let out = decisions(&call(&m, &[part("copyright", "u2", 0.1), part("violence", "u2", 0.1)]).await);
        assert!(started.elapsed() >= Duration::from_millis(1_000));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["complete"], false);
        assert_eq!(out[0]["missing"], json!(["nsfw"]));
        assert_eq!(out[0]["decision"], "review");
    }

    #[tokio::test(start_paused = true)]
    async fn state_is_bounded_and_bad_results_are_rejected() {
        let m = merge(1_000, 1);
        let outcomes = call(
            &m,
            &[part("nsfw", "a", 0.1), part("nsfw", "b", 0.1), json!({"detector": "nsfw"}), part("x", "c", 0.1)],
        )
        .await;
        assert!(matches!(&outcomes[1], Outcome::Retry(r) if r.contains("max_pending")), "{outcomes:?}");
        assert!(matches!(&outcomes[2], Outcome::Reject(r) if r.contains("upload_id")), "{outcomes:?}");
        assert!(matches!(&outcomes[3], Outcome::Reject(r) if r.contains("unknown detector")), "{outcomes:?}");
        assert_eq!(decisions(&outcomes[..1]).len(), 1, "the held key still times out into a decision");
    }
}
