//! Source `generator`: synthetic ride events in the seeds' shape, for demos, load tests and
//! benchmarks. Seeded, so the same config yields the same rides.
//!
//! ```toml
//! [sources.synthetic]
//! type = "generator"
//! count = 1000      # omit for an endless stream
//! rate = 200.0      # records per second; omit for as fast as possible
//! seed = 7
//! ```
//!
//! Zones are NYC TLC location ids 1-265, with most pickups and drop-offs in a busy core of 60
//! zones (as in real yellow-taxi data); distances follow a log-normal distribution with a
//! median near 2 miles, capped at 60.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use tributary_framework::config::ComponentSpec;
use tributary_framework::registry::BuildFuture;
use tributary_framework::{ComponentError, Offset, Position, Record, Source};

/// `[sources.<id>]` with `type = "generator"`.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// How many rides to emit; unset means endless.
    pub count: Option<u64>,
    /// Rides per second; unset means as fast as the pipeline takes them.
    pub rate: Option<f64>,
    /// Random seed.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// `ride_id` of the first ride; later rides count up from it.
    #[serde(default = "default_first_id")]
    pub first_ride_id: u64,
}

fn default_seed() -> u64 {
    42
}

fn default_first_id() -> u64 {
    1
}

/// Emits synthetic rides.
pub struct GeneratorSource {
    config: GeneratorConfig,
    rng: StdRng,
    emitted: u64,
    started: Option<Instant>,
    source: Arc<str>,
    partition: Arc<str>,
}

/// Builds the source.
pub fn build(spec: ComponentSpec) -> BuildFuture<Box<dyn Source>> {
    Box::pin(async move {
        let config: GeneratorConfig = spec.parse()?;
        if let Some(rate) = config.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(spec.error("rate", format!("{rate} is not a positive number of records per second")));
        }
        Ok(Box::new(GeneratorSource::new(Arc::from(spec.path.component.as_str()), config)) as Box<dyn Source>)
    })
}

impl GeneratorSource {
    /// A generator for source id `source`.
    pub fn new(source: Arc<str>, config: GeneratorConfig) -> Self {
        GeneratorSource {
            rng: StdRng::seed_from_u64(config.seed),
            config,
            emitted: 0,
            started: None,
            source,
            partition: Arc::from("generator"),
        }
    }

    /// One ride event as JSON bytes.
    pub fn ride(&mut self, ride_id: u64) -> Vec<u8> {
        let pu = zone(&mut self.rng);
        let doz = zone(&mut self.rng);
        // Log-normal: exp(N(0.75, 0.75)), median ~2.1 miles.
        let normal = gaussian(&mut self.rng);
        let distance = (0.75 + 0.75 * normal).exp().clamp(0.1, 60.0);
        let distance = (distance * 100.0).round() / 100.0;
        format!(r#"{{"ride": {{"PULocationID": {pu}, "DOLocationID": {doz}, "trip_distance": {distance}}}, "ride_id": {ride_id}}}"#)
            .into_bytes()
    }
}

fn zone(rng: &mut StdRng) -> u32 {
    if rng.random_bool(0.75) {
        // A busy core of 60 zones, spread over the id range the way Manhattan's are.
        const CORE: [u32; 60] = [
            4, 12, 13, 24, 41, 42, 43, 45, 48, 50, 68, 74, 75, 79, 87, 88, 90, 100, 107, 113, 114, 116, 120, 125, 127,
            128, 137, 140, 141, 142, 143, 144, 148, 151, 152, 153, 158, 161, 162, 163, 164, 166, 170, 186, 194, 202,
            209, 211, 224, 229, 230, 231, 232, 233, 234, 236, 237, 238, 239, 246,
        ];
        CORE[rng.random_range(0..CORE.len())]
    } else {
        rng.random_range(1..=265)
    }
}

/// A standard normal sample (Box-Muller).
fn gaussian(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[async_trait]
impl Source for GeneratorSource {
    async fn next_batch(&mut self, max_records: usize) -> Result<Option<Vec<Record>>, ComponentError> {
        let remaining = self.config.count.map_or(u64::MAX, |c| c - self.emitted.min(c));
        if remaining == 0 {
            return Ok(None);
        }
        let mut n = remaining.min(max_records as u64);
        if let Some(rate) = self.config.rate {
            let started = *self.started.get_or_insert_with(Instant::now);
            let mut due = (started.elapsed().as_secs_f64() * rate) as u64 + 1;
            if due <= self.emitted {
                let wait = (self.emitted as f64 + 1.0) / rate - started.elapsed().as_secs_f64();
                tokio::time::sleep(Duration::from_secs_f64(wait.max(0.0))).await;
                due = self.emitted + 1;
            }
            n = n.min(due - self.emitted);
        }
        let mut records = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let index = self.emitted;
            let payload = self.ride(self.config.first_ride_id + index);
            let position = Position {
                source: self.source.clone(),
                partition: self.partition.clone(),
                offset: Offset::Index(index),
            };
            records.push(Record::new(payload, position));
            self.emitted += 1;
        }
        Ok(Some(records))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn config(count: Option<u64>, rate: Option<f64>) -> GeneratorConfig {
        GeneratorConfig { count, rate, seed: 7, first_ride_id: 100 }
    }

    #[tokio::test]
    async fn emits_count_valid_rides_deterministically() {
        let mut a = GeneratorSource::new("g".into(), config(Some(250), None));
        let mut b = GeneratorSource::new("g".into(), config(Some(250), None));
        let mut all = Vec::new();
        while let Some(batch) = a.next_batch(100).await.unwrap() {
            all.extend(batch);
        }
        assert_eq!(all.len(), 250);
        let first_b = b.next_batch(1).await.unwrap().unwrap();
        assert_eq!(all[0].raw_bytes(), first_b[0].raw_bytes());
        for (i, r) in all.iter().enumerate() {
            let v: Value = serde_json::from_slice(r.raw_bytes()).unwrap();
            assert_eq!(v["ride_id"], 100 + i as u64);
            for key in ["PULocationID", "DOLocationID"] {
                let z = v["ride"][key].as_u64().unwrap();
                assert!((1..=265).contains(&z));
            }
            let d = v["ride"]["trip_distance"].as_f64().unwrap();
            assert!((0.1..=60.0).contains(&d));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limits_emission() {
        let mut g = GeneratorSource::new("g".into(), config(Some(30), Some(10.0)));
        let start = tokio::time::Instant::now();
        let mut n = 0;
        while let Some(batch) = g.next_batch(100).await.unwrap() {
            n += batch.len();
        }
        assert_eq!(n, 30);
        // 30 records at 10/s: about 2.9 s of (virtual) time.
        let elapsed = start.elapsed().as_secs_f64();
        assert!(elapsed > 2.5, "elapsed {elapsed}");
    }
}
