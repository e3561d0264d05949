//! Vigil's connectors: where records come from and where history goes.
//!
//! - [`files`]: JSON-lines, CSV and Parquet inputs, planned into chunks that workers read in
//!   parallel, every record with its file and line.
//! - [`simulator`]: a seeded fleet with normal behaviour, injected anomalies, drift, degradation and
//!   bad records, and the ground truth of what was injected.
//! - [`export`]: writes a simulated fleet to JSON lines, CSV or Parquet.
//! - [`history`]: the Parquet history — date-partitioned, sorted, atomic files, and a manifest of
//!   the source positions each file covers.
//! - [`inputs`]: bounded inputs identified by content (a replayed file, a simulated fleet), so
//!   the same input given again adds nothing and a grown file continues where the history ends.
//! - [`compact`]: merges each closed date partition of the history into one sorted file,
//!   atomically (a manifest line, finished by recovery after a crash).
//! - [`local_log`]: the embedded log, a durable partitioned record log on disk that stands in
//!   for a Kafka topic when the pipeline runs without a broker.
//! - [`ledger`]: human decisions, schedule changes and maintenance records, durable (group
//!   commit, fsync) before they are acknowledged, compacted into the history tables.
//!
//! - [`models`]: the model registry, versioned model artifacts with their metadata.
//! - [`webhook`]: notifications to webhook targets, retried, dead-lettered when undeliverable.
//!
//! Connectors know files and Parquet; they know nothing of the dataflow's operators.

use std::path::Path;

pub mod compact;
pub mod delta;
pub mod export;
pub mod files;
pub mod history;
pub mod inputs;
pub mod kafka;
pub mod ledger;
pub mod local_log;
pub mod models;
pub mod simulator;
pub mod webhook;

/// Errors of the connectors. `retryable` says whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A Parquet file could not be read or written.
    #[error("{path}: parquet: {message}")]
    Parquet {
        /// The file.
        path: String,
        /// The cause.
        message: String,
    },
    /// Arrow data could not be built.
    #[error("arrow: {0}")]
    Arrow(String),
    /// Kafka failed.
    #[error(transparent)]
    Kafka(#[from] kafka::KafkaConnectorError),
    /// The extension names no supported format.
    #[error("{0}: unknown format (use .jsonl, .csv, .tsv or .parquet)")]
    UnknownFormat(String),
    /// An argument or a stored record is not valid.
    #[error("{0}")]
    Invalid(String),
    /// A Delta table could not be read or committed to.
    #[error("delta: {0}")]
    Delta(String),
}

/// Opens (creating it if needed) a lock file, for `File::lock` or `File::try_lock`.
pub(crate) fn open_lock_file(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(|e| ConnectorError::io(path, e))
}

impl ConnectorError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ConnectorError::Io { path: path.display().to_string(), source }
    }
    pub(crate) fn parquet(path: &Path, e: impl std::fmt::Display) -> Self {
        ConnectorError::Parquet { path: path.display().to_string(), message: e.to_string() }
    }
    /// Whether retrying the same operation may succeed (transient I/O).
    pub fn retryable(&self) -> bool {
        matches!(self, ConnectorError::Io { source, .. } if matches!(source.kind(), std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
    }
}

/// Result of the connectors.
pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;
