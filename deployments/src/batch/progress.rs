//! The batch job's progress: a bar on a terminal (files, rows, rows/s, ETA by bytes), a line
//! per file otherwise.

use std::io::Write;
use std::time::{Duration, Instant};

/// Progress over the files to score.
pub(crate) struct Progress {
    files: usize,
    files_done: usize,
    bytes: u64,
    /// Bytes of finished files, plus the estimated share of the current one.
    bytes_done: u64,
    current_file_bytes: u64,
    rows: u64,
    rows_in_file: u64,
    started: Instant,
    drawn: Option<Instant>,
    bar: bool,
    file_started: Instant,
}

impl Progress {
    /// `files` files of `bytes` bytes in all; `bar` draws the bar (a terminal).
    pub(crate) fn new(files: usize, bytes: u64, bar: bool) -> Self {
        Progress {
            files,
            files_done: 0,
            bytes,
            bytes_done: 0,
            current_file_bytes: 0,
            rows: 0,
            rows_in_file: 0,
            started: Instant::now(),
            drawn: None,
            bar,
            file_started: Instant::now(),
        }
    }

    /// `rows` more rows of the current file (of `file_bytes` bytes and `file_rows` rows).
    pub(crate) fn advance(&mut self, rows: u64, file_bytes: u64, file_rows: u64) {
        self.rows += rows;
        self.rows_in_file += rows;
        self.current_file_bytes = file_bytes * self.rows_in_file.min(file_rows) / file_rows.max(1);
        if self.bar && self.drawn.is_none_or(|t| t.elapsed() >= Duration::from_millis(200)) {
            self.draw();
        }
    }

    /// The current file is scored.
    pub(crate) fn file_done(&mut self, file: &str, rows: u64) {
        self.finish_file();
        if !self.bar {
            eprintln!(
                "scored {file} ({rows} rows, {:.2} s) [{}/{} files]",
                self.file_started.elapsed().as_secs_f64(),
                self.files_done,
                self.files
            );
        }
        self.file_started = Instant::now();
    }

    /// The current file failed; its bytes count as done for the ETA.
    pub(crate) fn file_failed(&mut self, file_bytes: u64) {
        self.current_file_bytes = file_bytes;
        self.finish_file();
        self.file_started = Instant::now();
    }

    fn finish_file(&mut self) {
        self.files_done += 1;
        self.bytes_done += self.current_file_bytes;
        self.current_file_bytes = 0;
        self.rows_in_file = 0;
    }

    /// Erases the bar (before a message or the summary).
    pub(crate) fn clear(&mut self) {
        if self.bar && self.drawn.is_some() {
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
            self.drawn = None;
        }
    }

    fn draw(&mut self) {
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-3);
        let done = self.bytes_done + self.current_file_bytes;
        let eta = if done == 0 { f64::NAN } else { elapsed * (self.bytes.saturating_sub(done)) as f64 / done as f64 };
        let width = 30;
        let filled = (done * width as u64).checked_div(self.bytes).map_or(width, |f| f as usize);
        eprint!(
            "\r\x1b[2K[{}{}] {}/{} files | {} rows | {:.0} rows/s | ETA {}",
            "#".repeat(filled.min(width)),
            "-".repeat(width - filled.min(width)),
            self.files_done,
            self.files,
            self.rows,
            self.rows as f64 / elapsed,
            if eta.is_finite() { format!("{eta:.0} s") } else { "?".into() }
        );
        let _ = std::io::stderr().flush();
        self.drawn = Some(Instant::now());
    }
}
