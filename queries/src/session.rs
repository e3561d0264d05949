//! [`History`]: a DataFusion session over the Parquet history, with limits.
//!
//! Every table of [`crate::tables::TABLES`] is registered as a listing table over its folder:
//! the declared schema (so a table with no file yet is queryable and empty), the `date=` folders
//! as a `date` partition column (a filter on `date` skips whole folders), and the per-file sort
//! order (so row-group statistics prune, and a query ordered by the sort key merges sorted scans
//! instead of sorting). Files are listed at every query (the listing cache is off), so a query
//! sees every file a running pipeline has committed; the footers of files already read stay
//! cached (a history file is never changed, nor its name used for another file, and the cache
//! checks size and modification time besides the path). Every `file://` read goes through
//! [`crate::snapshot::SnapshotStore`], so a query reads one consistent set of complete files
//! while the ledger and `vigil compact` replace some. The tables the planning ledger writes also
//! read its live segments ([`crate::ledger_tail`]), so an acknowledged decision is queryable at
//! once.
//!
//! Input: a data dir and [`QueryConfig`]. Output: [`QueryResult`]s. State: the session (table
//! registrations, the footer cache).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::DataFusionError;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{col, DataFrame, SQLOptions, SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::tables::{TableDoc, TABLES};
use crate::QueryError;

/// Limits and resources of queries (`[query]` in the config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Rows a query returns at most; the rest is cut off and the result says so.
    pub max_rows: usize,
    /// Time a query may take, planning included (ms); past it the query is cancelled.
    pub timeout_ms: u64,
    /// Threads a query runs on (0: one per core).
    pub threads: usize,
    /// Memory for sorts, joins and aggregations (MiB); past it they spill or fail.
    pub memory_limit_mb: usize,
    /// Evaluate filters while decoding Parquet (late materialization): a selective filter
    /// decodes only the rows it keeps.
    pub pushdown_filters: bool,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig { max_rows: 100_000, timeout_ms: 30_000, threads: 0, memory_limit_mb: 4096, pushdown_filters: true }
    }
}

/// The result of a query.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// Schema of the rows.
    pub schema: SchemaRef,
    /// Rows.
    pub batches: Vec<RecordBatch>,
    /// Number of rows returned.
    pub rows: usize,
    /// Whether rows were cut off at the row limit.
    pub truncated: bool,
    /// Time taken.
    pub elapsed: Duration,
}

/// A queryable history.
#[derive(Clone)]
pub struct History {
    ctx: SessionContext,
    data_dir: PathBuf,
    cfg: QueryConfig,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").field("data_dir", &self.data_dir).field("cfg", &self.cfg).finish()
    }
}

/// The schema a table is read with: text as string views (what DataFusion's Parquet reader
/// decodes fastest), the rest as written.
fn read_schema(doc: &TableDoc) -> SchemaRef {
    let fields: Vec<Field> = doc
        .schema()
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => Field::new(f.name(), DataType::Utf8View, f.is_nullable()),
            DataType::Binary => Field::new(f.name(), DataType::BinaryView, f.is_nullable()),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

pub(crate) fn df_error(e: DataFusionError) -> QueryError {
    let root = e.find_root();
    match root {
        DataFusionError::SQL(..) | DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => {
            QueryError::Sql(root.message().to_string())
        }
        DataFusionError::ResourcesExhausted(m) => QueryError::Resources(m.clone()),
        _ => QueryError::Execution(root.to_string()),
    }
}

impl History {
    /// Opens the history under `data_dir` (which need not exist yet).
    pub fn open(data_dir: &Path, cfg: &QueryConfig) -> Result<History, QueryError> {
        let threads = if cfg.threads == 0 { std::thread::available_parallelism().map_or(2, |n| n.get()) } else { cfg.threads };
        let abs = std::path::absolute(data_dir)
            .map_err(|e| QueryError::Read { path: data_dir.display().to_string(), message: e.to_string() })?;
        let runtime = RuntimeEnvBuilder::new()
            // Listing is not cached: a running pipeline adds files between queries.
            .with_object_list_cache_limit(0)
            .with_memory_limit(cfg.memory_limit_mb.max(64) << 20, 1.0)
            .build_arc()
            .map_err(df_error)?;
        let files = ObjectStoreUrl::local_filesystem();
        runtime.register_object_store(files.as_ref(), Arc::new(crate::snapshot::SnapshotStore::new(abs.clone())));
        let mut config =
            SessionConfig::new().with_information_schema(true).with_target_partitions(threads).with_collect_statistics(true);
        // Filters run while decoding, so a selective filter (one sensor) decodes only the rows
        // it keeps; with the files sorted by sensor, the page index skips the rest.
        config.options_mut().execution.parquet.pushdown_filters = cfg.pushdown_filters;
        config.options_mut().execution.parquet.reorder_filters = cfg.pushdown_filters;
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(crate::count_by::CountByRule))
            .build();
        let ctx = SessionContext::new_with_state(state);
        // Every time column is UTC: truncation by arithmetic (see `utc_trunc`).
        ctx.register_udf(crate::utc_trunc::UtcDateTrunc::udf());
        for doc in TABLES {
            let dir = abs.join(doc.name);
            let url = ListingTableUrl::parse(format!("{}/", dir.display())).map_err(df_error)?;
            let sort = doc.sort.iter().map(|c| col(*c).sort(true, false)).collect::<Vec<_>>();
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet")
                .with_table_partition_cols(vec![("date".to_string(), DataType::Utf8)])
                .with_file_sort_order(if sort.is_empty() { vec![] } else { vec![sort] });
            let config = ListingTableConfig::new(url).with_listing_options(options).with_schema(read_schema(doc));
            let table = Arc::new(ListingTable::try_new(config).map_err(df_error)?);
            if crate::ledger_tail::LEDGER_TABLES.contains(&doc.name) {
                let table = crate::ledger_tail::LedgerTable {
                    name: doc.name,
                    listing: table,
                    written: doc.schema(),
                    data_dir: abs.clone(),
                };
                ctx.register_table(doc.name, Arc::new(table)).map_err(df_error)?;
            } else {
                ctx.register_table(doc.name, table).map_err(df_error)?;
            }
        }
        Ok(History { ctx, data_dir: abs, cfg: cfg.clone() })
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The limits in force.
    pub fn config(&self) -> &QueryConfig {
        &self.cfg
    }

    /// The DataFusion session (for callers that build plans themselves).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Runs one read-only statement under the row and time limits.
    pub async fn sql(&self, sql: &str) -> Result<QueryResult, QueryError> {
        crate::guard::check_read_only(sql)?;
        let options = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
        self.limited(async {
            let df = self.ctx.sql_with_options(sql, options).await.map_err(df_error)?;
            Ok((df, self.cfg.max_rows))
        })
        .await
    }

    /// Runs a fixed query of this crate with parameters `$1, $2, ...`, under the time limit and
    /// with its own row cap.
    pub(crate) async fn query(&self, sql: &str, params: Vec<ScalarValue>, max_rows: usize) -> Result<QueryResult, QueryError> {
        self.limited(async {
            let mut df = self.ctx.sql(sql).await.map_err(df_error)?;
            if !params.is_empty() {
                df = df.with_param_values(params).map_err(df_error)?;
            }
            Ok((df, max_rows))
        })
        .await
    }

    /// Plans under the time limit, then runs the plan as a task of its own: at the limit the
    /// caller gets [`QueryError::Timeout`] at once and the task is aborted (it stops at its next
    /// yield; DataFusion's operators yield between batches).
    async fn limited<F>(&self, plan: F) -> Result<QueryResult, QueryError>
    where
        F: std::future::Future<Output = Result<(DataFrame, usize), QueryError>>,
    {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.cfg.timeout_ms.max(1));
        let timeout = || QueryError::Timeout { limit_ms: self.cfg.timeout_ms };
        let (df, max_rows) = match tokio::time::timeout_at(deadline, plan).await {
            Ok(planned) => planned?,
            Err(_) => return Err(timeout()),
        };
        let mut task = tokio::spawn(collect(df, max_rows));
        match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(Ok(result)) => {
                let mut r = result?;
                r.elapsed = started.elapsed();
                Ok(r)
            }
            Ok(Err(e)) => Err(QueryError::Execution(format!("the query task failed: {e}"))),
            Err(_) => {
                task.abort();
                Err(timeout())
            }
        }
    }
}

/// Collects at most `max_rows` rows; dropping the stream cancels the rest of the plan.
async fn collect(df: DataFrame, max_rows: usize) -> Result<QueryResult, QueryError> {
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let mut stream = df.execute_stream().await.map_err(df_error)?;
    let mut batches = Vec::new();
    let mut rows = 0usize;
    let mut truncated = false;
    while let Some(b) = stream.next().await {
        let b = b.map_err(df_error)?;
        if rows + b.num_rows() > max_rows {
            let keep = max_rows - rows;
            if keep > 0 {
                batches.push(b.slice(0, keep));
            }
            rows += keep;
            truncated = true;
            break;
        }
        rows += b.num_rows();
        if b.num_rows() > 0 {
            batches.push(b);
        }
    }
    Ok(QueryResult { schema, batches, rows, truncated, elapsed: Duration::ZERO })
}
