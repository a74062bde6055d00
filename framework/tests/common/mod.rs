//! The source double the framework's integration tests share.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::json;
use tributary_framework::metrics::Gauge;
use tributary_framework::{ComponentError, Offset, Position, Record, Source};

/// `{"id": n}` records from `next` on, record `n` in partition `p{n % partitions}` at offset
/// `n`; endless when `total` is `None`. Counts its reads (also reported as the gauge
/// `source_reads`) and records its commits.
pub struct TestSource {
    pub next: u64,
    pub total: Option<u64>,
    pub partitions: u64,
    pub reads: Arc<AtomicU64>,
    pub commits: Arc<Mutex<Vec<Position>>>,
}

#[async_trait]
impl Source for TestSource {
    async fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Record>>, ComponentError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let end = self.total.map_or(self.next + max as u64, |t| t.min(self.next + max as u64));
        if self.next >= end {
            return Ok(None);
        }
        if self.total.is_none() {
            tokio::task::yield_now().await;
        }
        let records = (self.next..end)
            .map(|id| {
                let partition = format!("p{}", id % self.partitions);
                let position =
                    Position { source: "src".into(), partition: partition.into(), offset: Offset::Index(id) };
                Record::new(serde_json::to_vec(&json!({"id": id})).unwrap(), position)
            })
            .collect();
        self.next = end;
        Ok(Some(records))
    }

    async fn commit(&mut self, positions: &[Position]) -> Result<(), ComponentError> {
        self.commits.lock().unwrap().extend_from_slice(positions);
        Ok(())
    }

    fn gauges(&self) -> Vec<Gauge> {
        vec![Gauge { name: "source_reads", labels: Vec::new(), value: self.reads.load(Ordering::SeqCst) as f64 }]
    }
}
