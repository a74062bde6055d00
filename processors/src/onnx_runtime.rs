//! ONNX Runtime for tributary: finding `libonnxruntime.so` (loaded at run time, so that one
//! binary works with the library from the PyPI `onnxruntime` wheel, a Lambda layer or a system
//! package), one process-wide environment, and a small pool of sessions so that inference runs
//! on whole batches, one session per blocking thread.
//!
//! The library is looked up, in order: `ORT_DYLIB_PATH`; `libonnxruntime.so` beside the
//! executable or in a `lib/` folder beside it (how the Lambda package ships it); and
//! `.venv/lib/libonnxruntime.so` in the working directory or its parents (where
//! `cargo xtask setup` links it).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

/// The library's file name on this platform.
const LIBRARY: &str = if cfg!(target_os = "macos") { "libonnxruntime.dylib" } else { "libonnxruntime.so" };

/// Why ONNX Runtime could not be used.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The shared library was not found or did not load.
    #[error("ONNX Runtime: {0}")]
    Library(String),
    /// The model was refused by ONNX Runtime.
    #[error("ONNX model: {0}")]
    Model(String),
    /// Inference failed.
    #[error("ONNX inference: {0}")]
    Inference(String),
}

/// The candidate locations of the library, in search order.
pub fn library_candidates() -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        candidates.push(PathBuf::from(path));
    }
    if let Some(dir) = std::env::current_exe().ok().as_deref().and_then(Path::parent) {
        candidates.push(dir.join(LIBRARY));
        candidates.push(dir.join("lib").join(LIBRARY));
    }
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            candidates.push(dir.join(".venv").join("lib").join(LIBRARY));
        }
    }
    candidates
}

/// The process-wide ONNX Runtime environment, loading the library on first use.
///
/// # Errors
/// The library was not found in any candidate location, or failed to load.
pub fn environment() -> Result<Environment, OnnxError> {
    static ENV: OnceLock<Result<Environment, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let candidates = library_candidates();
        let Some(path) = candidates.iter().find(|p| p.is_file()) else {
            let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            return Err(format!(
                "{LIBRARY} not found (tried: {}). Run `cargo xtask setup`, or set ORT_DYLIB_PATH to the \
                 library from the `onnxruntime` 1.31 Python wheel",
                tried.join(", ")
            ));
        };
        tracing::debug!(library = %path.display(), "loading ONNX Runtime");
        ort::init_from(path)
            .map_err(|e| format!("cannot load {}: {e}", path.display()))?
            .with_name("tributary")
            // Microsoft's builds (the PyPI wheel's library among them) enable usage telemetry by
            // default; a pipeline should not report on its users' models.
            .with_telemetry(false)
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime from {}: {e}", path.display()))
    })
    .clone()
    .map_err(OnnxError::Library)
}

/// Sessions of one model; each call takes a free one (or waits for one).
pub struct SessionPool {
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
}

impl SessionPool {
    /// Creates `size` sessions of the model in `bytes`, each with `threads` intra-op threads.
    ///
    /// # Errors
    /// The library is missing or the model is not a valid ONNX graph for this runtime.
    pub fn new(bytes: &[u8], size: usize, threads: usize) -> Result<Self, OnnxError> {
        let env = environment()?;
        let sessions = (0..size.max(1))
            .map(|_| {
                Session::builder(&env)
                    .and_then(|b| Ok(b.with_optimization_level(GraphOptimizationLevel::Level3)?))
                    .and_then(|b| Ok(b.with_intra_threads(threads.max(1))?))
                    .and_then(|b| Ok(b.with_inter_threads(1)?))
                    .and_then(|mut b| b.commit_from_memory(bytes))
                    .map(Mutex::new)
                    .map_err(|e| OnnxError::Model(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SessionPool { sessions, next: AtomicUsize::new(0) })
    }

    /// A free session, if there is one; never waits.
    pub fn try_acquire(&self) -> Option<MutexGuard<'_, Session>> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.sessions.len();
        (0..n).find_map(|i| match self.sessions[(start + i) % n].try_lock() {
            Ok(guard) => Some(guard),
            // A panic while holding a session poisons only that mutex; the session itself is fine.
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        })
    }

    /// A session to run on: a free one if there is one, else waits for the next in turn.
    /// Call from a blocking thread.
    pub fn acquire(&self) -> MutexGuard<'_, Session> {
        if let Some(guard) = self.try_acquire() {
            return guard;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        self.sessions[start % self.sessions.len()].lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
