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
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{col, DataFrame, SQLOptions, SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::pool::QueryPool;
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
    /// Memory of queries (MiB): sorts, joins and aggregations (they spill or fail past it), the
    /// rows of results (at most a quarter each) and string functions that produce large values.
    pub memory_limit_mb: usize,
    /// Evaluate filters while decoding Parquet (late materialization): a selective filter
    /// decodes only the rows it keeps.
    pub pushdown_filters: bool,
    /// Deepest nesting of expressions, sub-queries, set operations (a branch of `UNION` a level)
    /// and joins a statement may have; deeper is refused before planning (`query_too_complex`).
    pub max_nesting: usize,
    /// Most operators and keywords in a statement's text, and expressions and relations in the
    /// parsed statement; more is refused before planning (`query_too_complex`).
    pub max_expressions: usize,
    /// Statements (`vigil sql`, `POST /api/v1/query`, the console's SQL page) that run at once on
    /// the query threads.
    pub max_concurrent: usize,
    /// Statements that may wait for a slot (at most `timeout_ms`); past that a statement is
    /// refused at once (503 `query_busy` with `Retry-After`).
    pub queue_length: usize,
    /// Stack of each query thread (MiB); sized for `max_nesting` (DataFusion plans by
    /// recursion). Only the pages used are committed.
    pub stack_size_mb: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            max_rows: 100_000,
            timeout_ms: 30_000,
            threads: 0,
            memory_limit_mb: 4096,
            pushdown_filters: true,
            max_nesting: 200,
            max_expressions: 10_000,
            max_concurrent: 4,
            queue_length: 8,
            stack_size_mb: 64,
        }
    }
}

impl QueryConfig {
    /// The complexity limits of one statement.
    pub fn limits(&self) -> crate::complexity::Limits {
        crate::complexity::Limits {
            max_nesting: self.max_nesting,
            max_expressions: self.max_expressions,
            // A quarter of the limit for one batch of rows (8192, DataFusion's batch size).
            max_literal_bytes: (self.memory_limit_mb.max(64) << 20) / 4 / 8192,
        }
    }

    fn thread_count(&self) -> usize {
        if self.threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            self.threads
        }
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
    pool: Arc<QueryPool>,
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

/// A DataFusion error as a [`QueryError`]: the client's mistakes (syntax, planning, an unknown
/// table, a bad argument or value found while running) apart from failures of Vigil or its
/// files, which stay [`QueryError::Execution`].
pub(crate) fn df_error(e: DataFusionError) -> QueryError {
    use arrow::error::ArrowError;
    let root = e.find_root();
    match root {
        DataFusionError::SQL(p, _) => crate::guard::parser_error(p, None),
        DataFusionError::Plan(m) => match unknown_table(m) {
            Some(name) => QueryError::UnknownTable { suggestions: crate::tables::closest_tables(&name), name },
            None => QueryError::Sql(root.message().to_string()),
        },
        DataFusionError::SchemaError(..) => QueryError::Sql(root.message().to_string()),
        DataFusionError::NotImplemented(m) => QueryError::Sql(not_supported(m)),
        DataFusionError::ResourcesExhausted(m) => QueryError::Resources(m.clone()),
        // DataFusion's functions and operators report a wrong argument or value this way.
        DataFusionError::Execution(m) => QueryError::Argument(m.clone()),
        DataFusionError::ArrowError(a, _) => match a.as_ref() {
            ArrowError::DivideByZero => QueryError::Argument("division by zero".into()),
            ArrowError::CastError(m) => QueryError::Argument(format!("cannot cast: {m}")),
            ArrowError::ParseError(m) => QueryError::Argument(format!("cannot parse: {m}")),
            ArrowError::InvalidArgumentError(m) => QueryError::Argument(format!("invalid argument: {m}")),
            ArrowError::ArithmeticOverflow(m) => QueryError::Argument(format!("arithmetic overflow: {m}")),
            ArrowError::ComputeError(m) => QueryError::Argument(m.clone()),
            _ => QueryError::Execution(root.to_string()),
        },
        // The regex crate's errors reach us as external errors (a bad pattern is the client's).
        DataFusionError::External(x) if x.to_string().starts_with("regex parse error") => QueryError::Argument(format!(
            "bad regular expression: {}",
            x.to_string().replace('\n', " ").split_whitespace().collect::<Vec<_>>().join(" ")
        )),
        _ => QueryError::Execution(root.to_string()),
    }
}

/// A "not implemented" planning error as a sentence: DataFusion's message without the debug
/// dump of the expression it could not plan.
fn not_supported(m: &str) -> String {
    if m.starts_with("GetFieldAccess not supported by ExprPlanner") {
        return "not supported: indexing a value with [...] (Vigil's SQL has no array or struct functions); \
                use a function that returns the part you need, e.g. regexp_replace or split_part"
            .to_string();
    }
    // `…: SomeExpr { field: … }` — keep the words before the dump.
    let cut = match (m.find(" { "), m.find(": ")) {
        (Some(brace), Some(colon)) if colon < brace => &m[..colon],
        (Some(brace), _) => &m[..brace],
        _ => m,
    };
    format!("not supported: {}", cut.trim())
}

/// The table a "table '…' not found" planning error names (its last part).
fn unknown_table(message: &str) -> Option<String> {
    let rest = message.strip_prefix("table '")?;
    let (name, tail) = rest.split_once('\'')?;
    tail.trim().starts_with("not found").then(|| name.rsplit('.').next().unwrap_or(name).to_string())
}

impl History {
    /// Opens the history under `data_dir` (which need not exist yet).
    pub fn open(data_dir: &Path, cfg: &QueryConfig) -> Result<History, QueryError> {
        let threads = cfg.thread_count();
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
        // Functions whose output can be far larger than their input count it first.
        crate::checked::register(&ctx, cfg.memory_limit_mb.max(64) << 20);
        // Aggregates that gather values reserve their state before it grows.
        crate::checked_aggregate::register(&ctx);
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
        let pool = QueryPool::new(threads, cfg.stack_size_mb, cfg.max_concurrent, cfg.queue_length)?;
        Ok(History { ctx, data_dir: abs, cfg: cfg.clone(), pool: Arc::new(pool) })
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

    /// Runs one read-only statement under the row, time, memory and complexity limits, on the
    /// query threads (see [`crate::pool`]): parsed, checked, planned and run there, never on
    /// the caller's threads.
    pub async fn sql(&self, sql: &str) -> Result<QueryResult, QueryError> {
        let ctx = self.ctx.clone();
        let cfg = self.cfg.clone();
        let sql = sql.to_string();
        let wait = Duration::from_millis(self.cfg.timeout_ms.max(1));
        self.pool.run(wait, async move { run_sql(ctx, cfg, sql).await }).await
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

    async fn limited<F>(&self, plan: F) -> Result<QueryResult, QueryError>
    where
        F: std::future::Future<Output = Result<(DataFrame, usize), QueryError>>,
    {
        limited(&self.cfg, plan).await
    }
}

/// [`History::sql`] on a query thread.
async fn run_sql(ctx: SessionContext, cfg: QueryConfig, sql: String) -> Result<QueryResult, QueryError> {
    let mut statement = crate::guard::parse_read_only(&sql, Some(cfg.limits()))?;
    crate::checked::guard_concat(&mut statement);
    let options = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
    limited(&cfg, async {
        let plan = ctx.state().statement_to_plan(statement).await.map_err(df_error)?;
        options.verify_plan(&plan).map_err(df_error)?;
        let df = ctx.execute_logical_plan(plan).await.map_err(df_error)?;
        Ok((df, cfg.max_rows))
    })
    .await
}

/// Plans under the time limit, then runs the plan as a task of its own: at the limit the
/// caller gets [`QueryError::Timeout`] at once and the task is aborted (it stops at its next
/// yield; DataFusion's operators yield between batches).
async fn limited<F>(cfg: &QueryConfig, plan: F) -> Result<QueryResult, QueryError>
where
    F: std::future::Future<Output = Result<(DataFrame, usize), QueryError>>,
{
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(cfg.timeout_ms.max(1));
    let timeout = || QueryError::Timeout { limit_ms: cfg.timeout_ms };
    let (df, max_rows) = match tokio::time::timeout_at(deadline, plan).await {
        Ok(planned) => planned?,
        Err(_) => return Err(timeout()),
    };
    let budget = (cfg.memory_limit_mb.max(64) << 20) / 4;
    let mut task = tokio::spawn(collect(df, max_rows, budget));
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

/// Collects at most `max_rows` rows; dropping the stream cancels the rest of the plan. The rows
/// held are counted in the session's memory pool (shared with sorts, joins and aggregations)
/// and may take at most `budget` bytes (a quarter of the memory limit, so that rendering them
/// as JSON or CSV stays within it): past either, [`QueryError::Resources`].
async fn collect(df: DataFrame, max_rows: usize, budget: usize) -> Result<QueryResult, QueryError> {
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let reservation = MemoryConsumer::new("query result").register(df.task_ctx().memory_pool());
    let mut stream = df.execute_stream().await.map_err(df_error)?;
    let mut batches = Vec::new();
    let mut rows = 0usize;
    let mut truncated = false;
    while let Some(b) = stream.next().await {
        let b = b.map_err(df_error)?;
        let bytes = b.get_array_memory_size();
        if reservation.size() + bytes > budget {
            return Err(QueryError::Resources(format!(
                "the result holds more than {} MiB (a quarter of [query] memory_limit_mb); select fewer or smaller rows",
                budget >> 20
            )));
        }
        reservation.try_grow(bytes).map_err(df_error)?;
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
