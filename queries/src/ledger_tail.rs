//! The ledger's live rows beside a table's Parquet files.
//!
//! The planning ledger (`vigil_connectors::ledger`) acknowledges a decision once it is in a
//! segment `DATA/_ledger/wal-<n>.jsonl` (one `{"table": "...", "row": {...}}` a line, times in
//! milliseconds) and compacts closed segments into the tables' Parquet files later. So that SQL
//! sees a decision as soon as it is acknowledged, the tables the ledger writes (`decisions`,
//! `schedule`, `maintenance`) are registered as [`LedgerTable`]: the listing table's scan,
//! unioned with the rows of the live segments (read at every scan; they are small, since a
//! segment is compacted once it reaches a few MiB).
//!
//! Each row is read once, from the segment or from Parquet, while segments are compacted: the
//! listing leaves out `ledger-<n>.parquet` while `wal-<n>.jsonl` exists
//! ([`crate::snapshot::SnapshotStore`]), and a scan during which any segment was created or
//! compacted (the ledger folder's names differ before the listing and after the segments were
//! read) is planned again.
//!
//! Input: the listing table and the data dir. Output: scans of both. State: none.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::{MemTable, TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::ExecutionPlan;

/// Tables the ledger writes.
pub(crate) const LEDGER_TABLES: &[&str] = &["decisions", "schedule", "maintenance", "incident_actions"];

/// A history table some of whose rows may still be in the ledger's live segments.
#[derive(Debug)]
pub(crate) struct LedgerTable {
    pub(crate) name: &'static str,
    pub(crate) listing: Arc<ListingTable>,
    /// The columns as written (text as Utf8), without the partition column.
    pub(crate) written: SchemaRef,
    pub(crate) data_dir: PathBuf,
}

/// Plans of a scan made before it is taken as it is, though segments keep changing.
const SCAN_ATTEMPTS: usize = 5;

/// The names of the ledger's segments (`wal-*`, live or compacted), sorted.
fn segment_names(data_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(data_dir.join("_ledger")) {
        Ok(entries) => entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| n.starts_with("wal-"))
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// The rows of `table` in the live segments among `names` (not yet compacted), as JSON objects.
fn live_rows(data_dir: &Path, names: &[String], table: &str) -> Result<Vec<serde_json::Value>> {
    let dir = data_dir.join("_ledger");
    let mut out = Vec::new();
    for path in names.iter().filter(|n| n.ends_with(".jsonl")).map(|n| dir.join(n)) {
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            // Compacted since `names` were listed: the caller sees the names change and plans again.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(DataFusionError::External(Box::new(e))),
        };
        for line in text.split(|b| *b == b'\n') {
            let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(line) else { continue };
            if v.get("table").and_then(|t| t.as_str()) == Some(table) {
                if let Some(row) = v.get_mut("row") {
                    out.push(row.take());
                }
            }
        }
    }
    Ok(out)
}

impl LedgerTable {
    /// The live rows of the segments among `names` as one batch of the table's schema (partition
    /// column included).
    fn live_batch(&self, names: &[String]) -> Result<Option<RecordBatch>> {
        let rows = live_rows(&self.data_dir, names, self.name)?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut decoder = arrow::json::ReaderBuilder::new(self.written.clone()).build_decoder()?;
        decoder.serialize(&rows)?;
        let Some(written) = decoder.flush()? else { return Ok(None) };
        let schema = self.listing.schema();
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            if field.name() == "date" {
                let ts = written
                    .column_by_name("ts")
                    .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
                    .ok_or_else(|| DataFusionError::Internal(format!("{}: no ts column", self.name)))?;
                let dates: StringArray = ts.iter().map(|t| t.map(crate::report::date_of)).collect();
                cols.push(arrow::compute::cast(&dates, field.data_type())?);
            } else {
                let c = written
                    .column_by_name(field.name())
                    .ok_or_else(|| DataFusionError::Internal(format!("{}: no column {}", self.name, field.name())))?;
                cols.push(arrow::compute::cast(c, field.data_type())?);
            }
        }
        Ok(Some(RecordBatch::try_new(schema, cols)?))
    }
}

#[async_trait]
impl TableProvider for LedgerTable {
    fn schema(&self) -> SchemaRef {
        self.listing.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        // The Parquet side prunes with them; the filter still runs above the union.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut attempt = 1;
        let (files, live) = loop {
            let before = segment_names(&self.data_dir);
            let files = self.listing.scan(state, projection, filters, limit).await?;
            let live = self.live_batch(&before)?;
            if segment_names(&self.data_dir) == before {
                break (files, live);
            }
            if attempt == SCAN_ATTEMPTS {
                tracing::warn!(
                    table = self.name,
                    "the ledger kept compacting while a scan was planned: a row may be read twice or not at all"
                );
                break (files, live);
            }
            attempt += 1;
        };
        let Some(live) = live else { return Ok(files) };
        let mem = MemTable::try_new(self.listing.schema(), vec![vec![live]])?;
        let live = mem.scan(state, projection, &[], limit).await?;
        UnionExec::try_new(vec![files, live])
    }
}
