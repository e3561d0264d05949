//! `CountByExec`: rows counted per value of one string column, by runs.
//!
//! `SELECT sensor_type, count(*) FROM readings GROUP BY sensor_type` spends most of its time in
//! DataFusion's general hash aggregation: every row's string key is hashed and looked up. Our
//! tables are sorted (readings by sensor, then time), so a low-cardinality column arrives in
//! long runs of one value. [`CountByRule`] replaces the first (partial or single) stage of such
//! an aggregation with [`CountByExec`], which compares each row's 16-byte string view with the
//! previous one (equal views are equal strings) and looks a key up once per run instead of once
//! per row. The second stage is untouched, so the result is the same.
//!
//! The rule applies to an `AggregateExec` in `Partial`, `Single` or `SinglePartitioned` mode
//! with exactly one group expression, a column of type `Utf8View` (how every string column of
//! the history is read), no grouping sets, no limit, and only plain `count` aggregates (of a
//! non-null literal, as `count(*)` is planned, or of a column), without FILTER, DISTINCT or
//! ORDER BY. Anything else is left to DataFusion.
//!
//! Input: the aggregation's input stream, one partition at a time. Output: one batch a
//! partition with the aggregation's own schema (the key, then each count). State: one entry a
//! distinct key a partition.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringViewArray};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream};
use futures::StreamExt;

type DfResult<T> = datafusion::common::Result<T>;

/// What one `count` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counted {
    /// Every row (`count(*)`, `count(1)`).
    Rows,
    /// Rows where this input column is not null.
    NonNull(usize),
}

/// Replaces eligible first-stage count aggregations with [`CountByExec`].
#[derive(Debug, Default)]
pub struct CountByRule;

impl PhysicalOptimizerRule for CountByRule {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> DfResult<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if let Some(agg) = node.downcast_ref::<AggregateExec>() {
                if let Some(exec) = CountByExec::replacing(agg) {
                    return Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>));
                }
            }
            Ok(Transformed::no(node))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "count_by_runs"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The first stage of `count(..) GROUP BY string_column`, by runs.
#[derive(Debug)]
pub struct CountByExec {
    input: Arc<dyn ExecutionPlan>,
    /// The key's column in the input.
    key: usize,
    key_name: String,
    counts: Vec<Counted>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl CountByExec {
    /// The replacement of `agg`, when it has the shape this operator computes.
    fn replacing(agg: &AggregateExec) -> Option<CountByExec> {
        if !matches!(agg.mode(), AggregateMode::Partial | AggregateMode::Single | AggregateMode::SinglePartitioned) {
            return None;
        }
        let group = agg.group_expr();
        if group.has_grouping_set() || group.expr().len() != 1 || agg.limit_options().is_some() {
            return None;
        }
        let input_schema = agg.input().schema();
        let key = group.expr()[0].0.downcast_ref::<Column>()?;
        if input_schema.fields().get(key.index())?.data_type() != &DataType::Utf8View {
            return None;
        }
        if agg.filter_expr().iter().any(Option::is_some) {
            return None;
        }
        let mut counts = Vec::new();
        for a in agg.aggr_expr() {
            if a.fun().name() != "count" || a.is_distinct() || !a.order_bys().is_empty() {
                return None;
            }
            let args = a.expressions();
            let [arg] = args.as_slice() else { return None };
            if let Some(lit) = arg.downcast_ref::<Literal>() {
                if lit.value().is_null() {
                    return None;
                }
                counts.push(Counted::Rows);
            } else if let Some(c) = arg.downcast_ref::<Column>() {
                counts.push(Counted::NonNull(c.index()));
            } else {
                return None;
            }
        }
        let schema = agg.schema();
        let fields = schema.fields();
        if fields.len() != 1 + counts.len()
            || fields[0].data_type() != &DataType::Utf8View
            || fields[1..].iter().any(|f| f.data_type() != &DataType::Int64)
        {
            return None;
        }
        Some(CountByExec {
            input: agg.input().clone(),
            key: key.index(),
            key_name: key.name().to_string(),
            counts,
            schema,
            properties: agg.properties().clone(),
        })
    }
}

impl DisplayAs for CountByExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountByExec: key={}, counts={}", self.key_name, self.counts.len())
    }
}

impl ExecutionPlan for CountByExec {
    fn name(&self) -> &str {
        "CountByExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    /// The key and counted columns are input positions, not expressions.
    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)]
    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal("CountByExec has one input".into()));
        }
        let input = children.swap_remove(0);
        Ok(Arc::new(CountByExec {
            input,
            key: self.key,
            key_name: self.key_name.clone(),
            counts: self.counts.clone(),
            schema: self.schema.clone(),
            properties: self.properties.clone(),
        }))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let mut input = self.input.execute(partition, context)?;
        let (schema, key, counts) = (self.schema.clone(), self.key, self.counts.clone());
        let out = async move {
            let mut table = RunCounts::new(counts);
            while let Some(batch) = input.next().await {
                table.add(&batch?, key)?;
            }
            table.finish(schema)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), futures::stream::once(out))))
    }
}

/// Counts per key, in first-seen order.
struct RunCounts {
    counted: Vec<Counted>,
    index: HashMap<Option<String>, usize>,
    keys: Vec<Option<String>>,
    counts: Vec<Vec<i64>>,
}

impl RunCounts {
    fn new(counted: Vec<Counted>) -> RunCounts {
        let n = counted.len();
        RunCounts { counted, index: HashMap::new(), keys: Vec::new(), counts: vec![Vec::new(); n] }
    }

    /// Adds the rows of one batch, a run of equal keys at a time.
    fn add(&mut self, batch: &RecordBatch, key: usize) -> DfResult<()> {
        let col = batch
            .column(key)
            .as_string_view_opt()
            .ok_or_else(|| DataFusionError::Internal("CountByExec: the key is not Utf8View".into()))?;
        let views = col.views();
        let nulls = col.logical_nulls();
        let is_null = |i: usize| nulls.as_ref().is_some_and(|n| n.is_null(i));
        let others: Vec<Option<arrow::buffer::NullBuffer>> = self
            .counted
            .iter()
            .map(|c| match c {
                Counted::Rows => None,
                Counted::NonNull(i) => batch.column(*i).logical_nulls(),
            })
            .collect();
        let n = col.len();
        let mut start = 0;
        while start < n {
            let (view, null) = (views[start], is_null(start));
            let mut end = start + 1;
            while end < n && views[end] == view && is_null(end) == null {
                end += 1;
            }
            self.run(col, start, end, null, &others);
            start = end;
        }
        Ok(())
    }

    fn run(&mut self, col: &StringViewArray, start: usize, end: usize, null: bool, others: &[Option<arrow::buffer::NullBuffer>]) {
        let key = (!null).then(|| col.value(start));
        let slot = match self.index.get(&key.map(str::to_string)) {
            Some(s) => *s,
            None => {
                let s = self.keys.len();
                self.keys.push(key.map(str::to_string));
                self.index.insert(key.map(str::to_string), s);
                for c in &mut self.counts {
                    c.push(0);
                }
                s
            }
        };
        let len = (end - start) as i64;
        for (i, nulls) in others.iter().enumerate() {
            let missing = nulls.as_ref().map_or(0, |n| n.slice(start, end - start).null_count()) as i64;
            self.counts[i][slot] += len - missing;
        }
    }

    fn finish(self, schema: SchemaRef) -> DfResult<RecordBatch> {
        let mut columns: Vec<ArrayRef> = vec![Arc::new(StringViewArray::from_iter(self.keys.iter().map(Option::as_deref)))];
        columns.extend(self.counts.into_iter().map(|c| Arc::new(Int64Array::from(c)) as ArrayRef));
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::prelude::{SessionConfig, SessionContext};

    fn ctx(rule: bool, partitions: usize) -> SessionContext {
        let mut b = SessionStateBuilder::new()
            .with_config(SessionConfig::new().with_target_partitions(partitions).with_batch_size(7))
            .with_default_features();
        if rule {
            b = b.with_physical_optimizer_rule(Arc::new(CountByRule));
        }
        SessionContext::new_with_state(b.build())
    }

    /// A table with runs, nulls, long strings (views that point into buffers) and an optional
    /// column with nulls, in several batches and partitions.
    fn table(ctx: &SessionContext) {
        let schema =
            Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8View, true), Field::new("v", DataType::Int64, true)]));
        let mut parts = Vec::new();
        for p in 0..3 {
            let mut batches = Vec::new();
            for b in 0..4 {
                let keys: Vec<Option<String>> = (0..50)
                    .map(|i| match (i / 7 + b + p) % 5 {
                        0 => None,
                        1 => Some("vibration".to_string()),
                        2 => Some("a much longer sensor type name".to_string()),
                        3 => Some(format!("a much longer sensor type name{}", "")),
                        _ => Some("rpm".to_string()),
                    })
                    .collect();
                let vals: Vec<Option<i64>> = (0..50).map(|i| (i % 3 != 0).then_some(i)).collect();
                batches.push(
                    RecordBatch::try_new(
                        schema.clone(),
                        vec![
                            Arc::new(StringViewArray::from_iter(keys.iter().map(Option::as_deref))),
                            Arc::new(Int64Array::from(vals)),
                        ],
                    )
                    .unwrap(),
                );
            }
            parts.push(batches);
        }
        ctx.register_table("t", Arc::new(MemTable::try_new(schema, parts).unwrap())).unwrap();
    }

    fn run(rule: bool, partitions: usize, sql: &str) -> (Vec<String>, String) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let ctx = ctx(rule, partitions);
            table(&ctx);
            let df = ctx.sql(sql).await.unwrap();
            let plan = format!(
                "{}",
                datafusion::physical_plan::displayable(df.clone().create_physical_plan().await.unwrap().as_ref()).indent(true)
            );
            let batches = df.collect().await.unwrap();
            let text = arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            lines.sort();
            (lines, plan)
        })
    }

    #[test]
    fn counts_match_datafusion_and_the_rule_applies_only_where_it_may() {
        let queries = [
            ("SELECT k, count(*) AS n FROM t GROUP BY k", true),
            ("SELECT k, count(v) AS n, count(*) AS m, count(k) AS o FROM t GROUP BY k", true),
            ("SELECT k, count(*) FROM t WHERE v > 10 GROUP BY k", true),
            ("SELECT count(*) AS n, k FROM t GROUP BY k ORDER BY n", true),
            ("SELECT k, count(DISTINCT v) FROM t GROUP BY k", true), // rewritten: count(alias) over a distinct stage
            ("SELECT k, sum(v) FROM t GROUP BY k", false),
            ("SELECT k, v, count(*) FROM t GROUP BY k, v", false),
            ("SELECT k, count(*) FILTER (WHERE v > 3) FROM t GROUP BY k", false),
        ];
        for partitions in [1, 2, 3] {
            for (sql, applies) in queries {
                let (plain, _) = run(false, partitions, sql);
                let (fast, plan) = run(true, partitions, sql);
                assert_eq!(plain, fast, "{sql} with {partitions} partitions");
                assert_eq!(plan.contains("CountByExec"), applies, "{sql}:\n{plan}");
            }
        }
    }
}
