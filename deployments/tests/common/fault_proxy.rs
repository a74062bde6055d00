//! A loopback HTTP/1.1 proxy in front of kinesis-mock that injects Kinesis errors into chosen
//! GetRecords and GetShardIterator calls (kinesis-mock itself never throttles and its iterators
//! live 5 minutes). An
//! iterator that got `ExpiredIteratorException` stays expired: every later call with it gets
//! the same error, as from Kinesis.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A call the proxy can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    GetRecords,
    GetShardIterator,
}

/// Which error, if any, the n-th call (1-based, counted per kind) of a kind gets.
pub type Plan = fn(Call, usize) -> Option<&'static str>;

/// What [`by_phase`] does to GetRecords calls: 0 nothing, 1 throttle ([`throttled_while`]), 2
/// expire the next iterator ([`expire_next`]; then 3: nothing again). One per test binary: one
/// test of a binary may use it.
static PHASE: AtomicUsize = AtomicUsize::new(0);

/// GetRecords calls go as [`PHASE`] says; GetShardIterator calls pass.
pub fn by_phase(call: Call, _: usize) -> Option<&'static str> {
    match (call, PHASE.load(Ordering::SeqCst)) {
        (Call::GetRecords, 1) => Some("ProvisionedThroughputExceededException"),
        (Call::GetRecords, 2) if PHASE.compare_exchange(2, 3, Ordering::SeqCst, Ordering::SeqCst).is_ok() => {
            Some("ExpiredIteratorException")
        }
        _ => None,
    }
}

/// Throttles GetRecords calls (`PHASE` 1) while `put` runs, after those already past the proxy
/// have finished, and for two seconds after.
pub async fn throttled_while(put: impl FnOnce()) {
    PHASE.store(1, Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    put();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
}

/// The next GetRecords call gets ExpiredIteratorException, and later ones go through (`PHASE` 2).
pub fn expire_next() {
    PHASE.store(2, Ordering::SeqCst);
}

/// Whether [`expire_next`]'s expiry has happened.
pub fn expired() -> bool {
    PHASE.load(Ordering::SeqCst) == 3
}

/// Counts of what went through.
#[derive(Default)]
pub struct Counts {
    /// GetRecords calls seen.
    pub get_records: AtomicUsize,
    /// GetShardIterator calls seen.
    pub get_shard_iterator: AtomicUsize,
    /// Errors injected.
    pub injected: AtomicUsize,
    /// The GetRecords request bodies (their iterators) answered with ExpiredIteratorException.
    expired: Mutex<HashSet<Vec<u8>>>,
}

impl Counts {
    /// Waits (20 s at most) until `n` GetRecords calls went through; `who` names the poller.
    pub async fn wait_for_get_records(&self, n: usize, who: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while self.get_records.load(Ordering::SeqCst) < n {
            assert!(std::time::Instant::now() < deadline, "{who} never polled");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// Starts the proxy in front of kinesis-mock (`AWS_ENDPOINT_URL_KINESIS`).
pub async fn in_front_of_kinesis(plan: Plan) -> (String, Arc<Counts>) {
    let upstream = super::required("AWS_ENDPOINT_URL_KINESIS");
    start(upstream.trim_start_matches("http://").trim_end_matches('/').to_string(), plan).await
}

/// Starts the proxy; returns its address (`http://127.0.0.1:PORT`) and its counters.
pub async fn start(upstream: String, plan: Plan) -> (String, Arc<Counts>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(serve(conn, upstream.clone(), plan, c.clone()));
        }
    });
    (addr, counts)
}

/// Reads one HTTP/1.1 message (head and a content-length body); `None` at end of stream.
pub async fn read_message<R: AsyncBufReadExt + Unpin>(r: &mut R) -> Option<(String, Vec<u8>)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let length = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    r.read_exact(&mut body).await.ok()?;
    Some((head, body))
}

async fn serve(conn: TcpStream, upstream: String, plan: Plan, counts: Arc<Counts>) {
    let (client_read, mut client_write) = conn.into_split();
    let mut client = BufReader::new(client_read);
    let mut up: Option<(BufReader<tokio::net::tcp::OwnedReadHalf>, tokio::net::tcp::OwnedWriteHalf)> = None;
    while let Some((head, body)) = read_message(&mut client).await {
        let target = head.to_ascii_lowercase();
        let call = if target.contains("x-amz-target: kinesis_20131202.getrecords") {
            Some((Call::GetRecords, &counts.get_records))
        } else if target.contains("x-amz-target: kinesis_20131202.getsharditerator") {
            Some((Call::GetShardIterator, &counts.get_shard_iterator))
        } else {
            None
        };
        if let Some((call, seen)) = call {
            let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
            let expired = call == Call::GetRecords && counts.expired.lock().unwrap().contains(&body);
            if let Some(error) = plan(call, n).or(expired.then_some("ExpiredIteratorException")) {
                counts.injected.fetch_add(1, Ordering::SeqCst);
                if error == "ExpiredIteratorException" {
                    counts.expired.lock().unwrap().insert(body.clone());
                }
                let payload = format!("{{\"__type\":\"{error}\",\"message\":\"injected by the test proxy\"}}");
                let response = format!(
                    "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.1\r\nx-amzn-requestid: injected-{n}\r\ncontent-length: {}\r\n\r\n{payload}",
                    payload.len()
                );
                if client_write.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
                continue;
            }
        }
        if up.is_none() {
            let Ok(stream) = TcpStream::connect(&upstream).await else { return };
            let (r, w) = stream.into_split();
            up = Some((BufReader::new(r), w));
        }
        let Some((up_read, up_write)) = up.as_mut() else { return };
        if up_write.write_all(head.as_bytes()).await.is_err() || up_write.write_all(&body).await.is_err() {
            return;
        }
        let Some((response_head, response_body)) = read_message(up_read).await else { return };
        if client_write.write_all(response_head.as_bytes()).await.is_err()
            || client_write.write_all(&response_body).await.is_err()
        {
            return;
        }
    }
}
