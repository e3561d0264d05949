//! Vigil's read side of the Parquet history: SQL through DataFusion, the canned queries the API
//! serves, and reports.
//!
//! - [`History`] (`session`): a DataFusion session with every table of the history registered,
//!   the read-only guard ([`guard`]) and the row, time and memory limits of [`QueryConfig`].
//! - [`tables`]: the documented tables and columns (`vigil sql --tables`).
//! - [`canned`]: readings of a sensor downsampled, sensors with their last value and status,
//!   anomalies, drift and predictions by asset and period, fleet health now.
//! - [`report`]: the per-asset or fleet report for a period, as JSON, CSV or one HTML page.
//! - [`format`]: query results as a text table, CSV or JSON.
//! - [`Catalog`]: tables, files and rows from the Parquet footers alone.
//! - [`known`]: whether an asset or sensor is in the history, and the closest ones when not.
//! - `snapshot`: the file store every query reads through — one consistent set of complete files
//!   while writers commit, the ledger compacts and `vigil compact` merges.
//!
//! Input: a data directory written by `vigil-connectors`. Output: Arrow batches and serde
//! structs. State: the DataFusion session (registrations and the footer cache).

pub mod canned;
mod catalog;
mod checked;
mod checked_aggregate;
pub mod complexity;
pub mod count_by;
pub mod format;
pub mod guard;
pub mod known;
mod ledger_tail;
mod pool;
pub mod report;
mod session;
mod snapshot;
pub mod tables;
mod utc_trunc;

pub use catalog::{Catalog, TableInfo};
pub use session::{History, QueryConfig, QueryResult};

/// Errors of queries.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A file could not be read.
    #[error("{path}: {message}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        message: String,
    },
    /// The statement is not allowed (only reads run).
    #[error("refused: {0} (only SELECT, WITH, EXPLAIN, SHOW and DESCRIBE run against the history)")]
    Refused(String),
    /// The SQL does not parse or plan (syntax, unknown table or column, type error).
    #[error("{0}")]
    Sql(String),
    /// The query took longer than the limit and was cancelled.
    #[error("the query took longer than the limit of {limit_ms} ms and was cancelled")]
    Timeout {
        /// The limit.
        limit_ms: u64,
    },
    /// The query needed more memory than the limit.
    #[error("the query needs more memory than the limit: {0}")]
    Resources(String),
    /// The query failed while running.
    #[error("query failed: {0}")]
    Execution(String),
    /// A parameter is invalid (an empty id, a period that ends before it starts, ...).
    #[error("{0}")]
    Invalid(String),
    /// An asset or sensor the history does not know ([`known`]).
    #[error("{message}")]
    Unknown {
        /// `asset` or `sensor`.
        kind: &'static str,
        /// The id asked for.
        id: String,
        /// The closest known ids, best first.
        closest: Vec<String>,
        /// The whole message, closest ids included.
        message: String,
    },
    /// The statement is too deep or too large to plan (see [`complexity`]).
    #[error("the query is too complex: {0}")]
    TooComplex(String),
    /// An argument or value is wrong for what the query does with it, found while running
    /// (division by zero, a cast that fails, a bad regular expression, a wrong argument).
    #[error("{0}")]
    Argument(String),
    /// The statement names a table the history does not have.
    #[error("table {name} not found{}; the tables: {}", did_you_mean(.suggestions), crate::tables::TABLES.iter().map(|t| t.name).collect::<Vec<_>>().join(", "))]
    UnknownTable {
        /// The name given.
        name: String,
        /// The closest table names, closest first.
        suggestions: Vec<String>,
    },
    /// Too many queries are running and waiting; try again later.
    #[error("too many queries are running; try again in {retry_after_s} s")]
    Busy {
        /// Seconds to wait.
        retry_after_s: u64,
    },
}

fn did_you_mean(s: &[String]) -> String {
    match s {
        [] => String::new(),
        [one] => format!(" (did you mean {one}?)"),
        many => format!(" (did you mean {}?)", many.join(" or ")),
    }
}
