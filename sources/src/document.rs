//! Reading records out of a byte stream (a file, stdin): JSON lines, or Lambda Kinesis event
//! documents, shared by the [`crate::file`] and [`crate::stdin`] sources.
//!
//! With `format = "auto"` (the default) the first non-empty line decides: if it is a complete
//! JSON value, the input is JSON lines (and a line that is a Kinesis event document expands
//! into its records); otherwise the whole input is read as a sequence of (pretty-printed) JSON
//! documents, as in the seeds' test events. Lines are read as bytes: a line that is not UTF-8 or
//! not JSON becomes a record that the runtime dead-letters, with its line number.
//!
//! Memory is bounded by `max_line_bytes` (default [`DEFAULT_MAX_LINE_BYTES`]): a longer line is
//! never held whole. Its first bytes are kept, the rest skipped up to the next newline, and it
//! is dead-lettered with its line number and length; the next line is read as usual. A
//! documents input (read whole, to parse pretty-printed JSON) larger than the limit stops the
//! source with an error that says to write JSON lines.

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};
use tributary_framework::{ComponentError, Offset, Position, Record, Source};

use crate::kinesis_event;

/// The default `max_line_bytes` of the `file` and `stdin` sources: 16 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// How much of an over-long line its dead letter keeps.
const KEPT_OF_A_LONG_LINE: usize = 1024;

/// How the input is laid out.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Decide from the first non-empty line (see the module docs).
    #[default]
    Auto,
    /// One JSON value per line.
    JsonLines,
    /// One or more (possibly pretty-printed) JSON documents, each a Kinesis event or a record.
    Documents,
}

enum Mode {
    Undecided,
    Lines,
    Finished,
}

/// Turns a byte stream into batches of records: the `file` and `stdin` sources.
pub struct DocumentReader<R> {
    reader: R,
    source: Arc<str>,
    partition: Arc<str>,
    format: Format,
    mode: Mode,
    line_no: u64,
    queue: VecDeque<Record>,
    line: Vec<u8>,
    max_line_bytes: usize,
    /// The length of the line just read, when it was over `max_line_bytes` (only its first
    /// bytes are in `line`).
    too_long: Option<u64>,
}

impl<R: AsyncBufRead + Unpin + Send> DocumentReader<R> {
    /// A reader for source `source`; `partition` names the input in record positions.
    pub fn new(reader: R, source: Arc<str>, partition: Arc<str>, format: Format) -> Self {
        DocumentReader {
            reader,
            source,
            partition,
            format,
            mode: Mode::Undecided,
            line_no: 0,
            queue: VecDeque::new(),
            line: Vec::new(),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            too_long: None,
        }
    }

    /// Lines (and a documents input) longer than `max` bytes are refused (see the module).
    #[must_use]
    pub fn with_max_line_bytes(mut self, max: usize) -> Self {
        self.max_line_bytes = max.max(1);
        self
    }

    /// Up to `max` records; `None` at the end of the input.
    ///
    /// # Errors
    /// Only I/O errors of the underlying stream (retryable).
    pub async fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Record>>, ComponentError> {
        while self.queue.len() < max {
            match self.mode {
                Mode::Finished => break,
                Mode::Undecided => self.decide().await?,
                Mode::Lines => {
                    if !self.read_line().await? {
                        self.mode = Mode::Finished;
                        break;
                    }
                    if self.refused_long_line() {
                        continue;
                    }
                    let line = trim(&self.line);
                    if !line.is_empty() {
                        let line = Bytes::copy_from_slice(line);
                        self.push_line(line);
                    }
                }
            }
        }
        if self.queue.is_empty() {
            return Ok(None);
        }
        let n = self.queue.len().min(max);
        Ok(Some(self.queue.drain(..n).collect()))
    }

    /// Reads the next line into `line`, holding at most `max_line_bytes` of it (a longer one
    /// keeps its first bytes and sets `too_long`); false at the end of the input.
    async fn read_line(&mut self) -> Result<bool, ComponentError> {
        self.line.clear();
        self.too_long = None;
        let mut length: u64 = 0;
        loop {
            let available = self
                .reader
                .fill_buf()
                .await
                .map_err(|e| ComponentError::Retryable(format!("reading {}: {e}", self.partition)))?;
            if available.is_empty() {
                break;
            }
            let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
                Some(i) => (&available[..=i], true),
                None => (available, false),
            };
            let n = chunk.len();
            length += n as u64;
            if self.too_long.is_none() && self.line.len() + n > self.max_line_bytes.saturating_add(1) {
                self.too_long = Some(0);
            }
            if self.too_long.is_none() {
                self.line.extend_from_slice(chunk);
            } else {
                let keep = KEPT_OF_A_LONG_LINE.saturating_sub(self.line.len()).min(n);
                self.line.truncate(KEPT_OF_A_LONG_LINE);
                self.line.extend_from_slice(&chunk[..keep]);
            }
            self.reader.consume(n);
            if done {
                break;
            }
        }
        if let Some(total) = self.too_long.as_mut() {
            *total = length;
        }
        if length > 0 {
            self.line_no += 1;
        }
        Ok(length > 0)
    }

    /// When the line just read was over the limit, queues its dead letter; true if it was.
    fn refused_long_line(&mut self) -> bool {
        let Some(length) = self.too_long else { return false };
        let reason = format!(
            "line {} is {length} bytes, over max_line_bytes ({}); only its first {} bytes are kept here",
            self.line_no,
            self.max_line_bytes,
            self.line.len()
        );
        let position = self.position(Offset::Index(self.line_no));
        self.queue.push_back(Record::invalid(Bytes::copy_from_slice(&self.line), reason, position));
        true
    }

    async fn decide(&mut self) -> Result<(), ComponentError> {
        loop {
            if !self.read_line().await? {
                self.mode = Mode::Finished;
                return Ok(());
            }
            if self.refused_long_line() {
                // Too long to be one document of a documents input: lines.
                self.mode = Mode::Lines;
                return Ok(());
            }
            if !trim(&self.line).is_empty() {
                break;
            }
        }
        let first = Bytes::copy_from_slice(trim(&self.line));
        let whole_line_is_json = serde_json::from_slice::<serde::de::IgnoredAny>(&first).is_ok();
        let documents = match self.format {
            Format::Documents => true,
            Format::JsonLines => false,
            Format::Auto => !whole_line_is_json,
        };
        if !documents {
            self.mode = Mode::Lines;
            self.push_line(first);
            return Ok(());
        }
        // Whole input as a sequence of JSON documents.
        let first_line_no = self.line_no;
        let mut all = self.line.clone();
        let limit = self.max_line_bytes as u64;
        (&mut self.reader)
            .take((limit + 1).saturating_sub(all.len() as u64))
            .read_to_end(&mut all)
            .await
            .map_err(|e| ComponentError::Retryable(format!("reading {}: {e}", self.partition)))?;
        self.mode = Mode::Finished;
        if all.len() as u64 > limit {
            return Err(ComponentError::Fatal(format!(
                "{}: a JSON documents input is read whole, and this one is over max_line_bytes ({limit} bytes); \
                 write it as JSON lines (one event per line, format = \"json_lines\") or raise max_line_bytes",
                self.partition
            )));
        }
        let mut stream = serde_json::Deserializer::from_slice(&all).into_iter::<Value>();
        let mut start = 0;
        let mut parsed = Vec::new();
        while let Some(next) = stream.next() {
            match next {
                Ok(value) => {
                    let end = stream.byte_offset();
                    parsed.push((start, end, value));
                    start = end;
                }
                Err(e) => {
                    // Not a clean sequence of documents: fall back to lines, so that every
                    // line is accounted for (bad ones dead-lettered with their line number).
                    tracing::debug!(input = %self.partition, error = %e, "not a JSON document sequence; reading as lines");
                    self.line_no = first_line_no - 1;
                    for line in all.split(|b| *b == b'\n') {
                        self.line_no += 1;
                        let line = trim(line);
                        if !line.is_empty() {
                            self.push_line(Bytes::copy_from_slice(line));
                        }
                    }
                    return Ok(());
                }
            }
        }
        for (index, (start, end, value)) in parsed.into_iter().enumerate() {
            let fallback = format!("{}#{}", self.partition, index + 1);
            if kinesis_event::is_event_document(&value) {
                self.queue.extend(kinesis_event::records(&self.source, &value, &fallback));
            } else {
                let position = self.position(Offset::Index(index as u64 + 1));
                self.queue.push_back(Record::new(Bytes::copy_from_slice(trim(&all[start..end])), position));
            }
        }
        Ok(())
    }

    fn push_line(&mut self, line: Bytes) {
        if contains(&line, b"\"Records\"")
            && let Ok(value) = serde_json::from_slice::<Value>(&line)
            && kinesis_event::is_event_document(&value)
        {
            let fallback = format!("{}#{}", self.partition, self.line_no);
            self.queue.extend(kinesis_event::records(&self.source, &value, &fallback));
            return;
        }
        let position = self.position(Offset::Index(self.line_no));
        self.queue.push_back(Record::new(line, position));
    }

    fn position(&self, offset: Offset) -> Position {
        Position { source: self.source.clone(), partition: self.partition.clone(), offset }
    }
}

#[async_trait]
impl<R: AsyncBufRead + Unpin + Send> Source for DocumentReader<R> {
    async fn next_batch(&mut self, max_records: usize) -> Result<Option<Vec<Record>>, ComponentError> {
        DocumentReader::next_batch(self, max_records).await
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &bytes[start..end]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_framework::Payload;

    async fn read_all(text: &[u8], format: Format) -> Vec<Record> {
        let mut reader = DocumentReader::new(text, "s".into(), "in".into(), format);
        let mut out = Vec::new();
        while let Some(batch) = reader.next_batch(2).await.unwrap() {
            assert!(batch.len() <= 2);
            out.extend(batch);
        }
        out
    }

    fn payload(r: &Record) -> &[u8] {
        match &r.payload {
            Payload::Bytes(b) => b,
            Payload::Invalid { raw, .. } => raw,
        }
    }

    #[tokio::test]
    async fn json_lines_keep_line_numbers_and_bad_lines() {
        let recs = read_all(b"{\"a\":1}\n\nnot json\n\xff\xfe\n{\"b\":2}", Format::Auto).await;
        assert_eq!(recs.len(), 4);
        let offsets: Vec<_> = recs.iter().map(|r| r.position.offset.clone()).collect();
        assert_eq!(offsets, [1, 3, 4, 5].map(Offset::Index));
        assert_eq!(payload(&recs[1]), b"not json");
    }

    #[tokio::test]
    async fn pretty_documents_and_kinesis_events() {
        let text = b"{\n \"ride\": {\"PULocationID\": 1},\n \"ride_id\": 1\n}\n{\"Records\": [\n {\"kinesis\": {\"data\": \"e30=\"}},\n {\"kinesis\": {\"data\": \"e30=\"}}\n]}\n";
        let recs = read_all(text, Format::Auto).await;
        assert_eq!(recs.len(), 3);
        assert!(payload(&recs[0]).starts_with(b"{\n \"ride\""));
        assert_eq!(payload(&recs[1]), b"{}");
    }

    #[tokio::test]
    async fn a_line_longer_than_max_line_bytes_is_dead_lettered_without_being_held_whole() {
        let mut text = b"{\"a\":1}\n{\"long\":\"".to_vec();
        text.extend(std::iter::repeat_n(b'x', 100_000));
        text.extend(b"\"}\n{\"b\":2}\n");
        // A small buffer, so the long line arrives in many pieces.
        let reader = tokio::io::BufReader::with_capacity(64, &text[..]);
        let mut reader = DocumentReader::new(reader, "s".into(), "in".into(), Format::Auto).with_max_line_bytes(1000);
        let mut recs = Vec::new();
        while let Some(batch) = reader.next_batch(10).await.unwrap() {
            recs.extend(batch);
        }
        assert_eq!(recs.len(), 3);
        assert_eq!(payload(&recs[0]), b"{\"a\":1}");
        let Payload::Invalid { raw, reason } = &recs[1].payload else { panic!("{:?}", recs[1].payload) };
        assert_eq!(raw.len(), KEPT_OF_A_LONG_LINE);
        assert!(reason.contains("line 2 is 100012 bytes, over max_line_bytes (1000)"), "{reason}");
        assert_eq!(recs[1].position.offset, Offset::Index(2));
        assert_eq!(payload(&recs[2]), b"{\"b\":2}");
        assert_eq!(recs[2].position.offset, Offset::Index(3));
    }

    #[tokio::test]
    async fn an_over_long_first_line_and_a_documents_input_over_the_limit() {
        let long = [b"{\"x\":\"".as_slice(), &[b'y'; 5000], b"\"}\n{}\n"].concat();
        let mut reader = DocumentReader::new(&long[..], "s".into(), "in".into(), Format::Auto).with_max_line_bytes(100);
        let batch = reader.next_batch(10).await.unwrap().unwrap();
        assert!(matches!(batch[0].payload, Payload::Invalid { .. }) && payload(&batch[1]) == b"{}", "{batch:?}");

        let pretty = [b"{\n\"x\": \"".as_slice(), &[b'y'; 5000], b"\"\n}\n"].concat();
        let mut reader =
            DocumentReader::new(&pretty[..], "s".into(), "in".into(), Format::Auto).with_max_line_bytes(1000);
        let error = reader.next_batch(10).await.unwrap_err().to_string();
        assert!(error.contains("over max_line_bytes (1000 bytes)") && error.contains("json_lines"), "{error}");
    }

    #[tokio::test]
    async fn a_broken_document_falls_back_to_lines() {
        let recs = read_all(b"{\n\"a\": 1\n", Format::Auto).await;
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].position.offset, Offset::Index(2));
    }
}
