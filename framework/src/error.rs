//! Errors of the framework: component failures (with a retry hint) and configuration errors
//! that name the file, the component and the key.

use std::fmt;

/// A failure a component reports for a whole call. Per-record problems are outcomes
/// ([`crate::Outcome`], [`crate::Delivery`]), not errors.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    /// Worth trying again later: throttling, a timeout, a connection reset.
    #[error("{0}")]
    Retryable(String),
    /// Trying again will not help: a missing stream, a permission, a broken model.
    #[error("{0}")]
    Fatal(String),
}

impl ComponentError {
    /// Whether the runtime should retry the call with backoff.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ComponentError::Retryable(_))
    }
}

/// Where in a configuration a problem is: file, section, component id and key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigPath {
    /// The configuration file (or "<inline>", "<env>").
    pub file: String,
    /// `sources`, `processors`, `sinks`, `dead_letter`, `pipeline`, `retry`.
    pub section: String,
    /// The component id (empty for top-level tables).
    pub component: String,
    /// The key within the component, dotted for nested keys (may be empty).
    pub key: String,
}

impl fmt::Display for ConfigPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: [{}", self.file, self.section)?;
        if !self.component.is_empty() {
            write!(f, ".{}", self.component)?;
        }
        f.write_str("]")?;
        if !self.key.is_empty() {
            write!(f, " key `{}`", self.key)?;
        }
        Ok(())
    }
}

/// A configuration that cannot run, reported before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed as TOML, or an environment override is malformed.
    #[error("{file}: {message}")]
    Load {
        /// The configuration file.
        file: String,
        /// What went wrong.
        message: String,
    },
    /// A value is missing, unknown, of the wrong type or impossible.
    #[error("{path}: {message}")]
    Invalid {
        /// Where the value is.
        path: ConfigPath,
        /// What is wrong with it.
        message: String,
    },
}

impl ConfigError {
    /// An invalid value at `path`.
    pub fn invalid(path: ConfigPath, message: impl Into<String>) -> Self {
        ConfigError::Invalid { path, message: message.into() }
    }
}
