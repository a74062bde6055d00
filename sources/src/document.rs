//! Reading records out of a byte stream (a file, stdin): JSON lines, or Lambda Kinesis event
//! documents, shared by the [`crate::file`] and [`crate::stdin`] sources.
//!
//! With `format = "auto"` (the default) the first non-empty line decides: if it is a complete
//! JSON value, the input is JSON lines (and a line that is a Kinesis event document expands
//! into its records); otherwise the whole input is read as a sequence of (pretty-printed) JSON
//! documents, as in the seeds' test events. Lines are read as bytes: a line that is not UTF-8 or
//! not JSON becomes a record that the runtime dead-letters, with its line number.

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};
use tributary_framework::{ComponentError, Offset, Position, Record, Source};

use crate::kinesis_event;

/// How the input is laid out.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
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
        }
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

    async fn read_line(&mut self) -> Result<bool, ComponentError> {
        self.line.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.line)
            .await
            .map_err(|e| ComponentError::Retryable(format!("reading {}: {e}", self.partition)))?;
        if n > 0 {
            self.line_no += 1;
        }
        Ok(n > 0)
    }

    async fn decide(&mut self) -> Result<(), ComponentError> {
        loop {
            if !self.read_line().await? {
                self.mode = Mode::Finished;
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
        self.reader
            .read_to_end(&mut all)
            .await
            .map_err(|e| ComponentError::Retryable(format!("reading {}: {e}", self.partition)))?;
        self.mode = Mode::Finished;
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
    async fn a_broken_document_falls_back_to_lines() {
        let recs = read_all(b"{\n\"a\": 1\n", Format::Auto).await;
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].position.offset, Offset::Index(2));
    }
}
