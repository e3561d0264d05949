//! Aggregates that gather values (`string_agg`, `array_agg`) under the query memory limit.
//!
//! DataFusion's aggregate operators count an accumulator's memory only *after* each batch has
//! been added to it: `string_agg(repeat('x', 20000), ',')` appends 160 MiB a batch, and the
//! string it builds doubles its buffer as it grows, so the process could hold several times the
//! limit before the pool refused anything. Each gathering aggregate is registered again,
//! wrapped: before a batch is added, the wrapper reserves in the session's memory pool room for
//! the state to hold the batch and to double once (twice what the state will hold), so a batch
//! that does not fit fails (`ResourcesExhausted`, 413 `query_too_large` over HTTP) before it is
//! copied; after the batch the reservation comes back to what the state holds.
//!
//! The aggregate operator also counts the state it holds, so a gathered state can use about a
//! third of the limit: the price of refusing before allocating.
//!
//! Input: the session's aggregate functions and memory pool. Output: the same functions, checked.
//! State: one memory reservation per accumulator, as large as the state it guards.

use std::fmt::Debug;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray};
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};
use datafusion::logical_expr::expr::{AggregateFunctionParams, WindowFunctionParams};
use datafusion::logical_expr::function::{AccumulatorArgs, AggregateFunctionSimplification, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, EmitTo, GroupsAccumulator, ReversedUDAF, SetMonotonicity,
    Signature, StatisticsArgs,
};
use datafusion::prelude::SessionContext;

/// The aggregates whose state grows with every value they see.
const GATHERING: &[&str] = &["string_agg", "array_agg"];

/// Registers the checked versions of the session's gathering aggregates.
pub(crate) fn register(ctx: &SessionContext) {
    let pool = Arc::clone(&ctx.runtime_env().memory_pool);
    let functions = ctx.state().aggregate_functions().clone();
    for name in GATHERING {
        if let Some(inner) = functions.get(*name) {
            let checked = CheckedAggregate { inner: inner.as_ref().clone(), pool: Arc::clone(&pool) };
            ctx.register_udaf(AggregateUDF::new_from_impl(checked));
        }
    }
}

/// A gathering aggregate whose state is reserved in the memory pool before it grows.
#[derive(Clone)]
struct CheckedAggregate {
    inner: AggregateUDF,
    pool: Arc<dyn MemoryPool>,
}

impl Debug for CheckedAggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedAggregate").field("inner", &self.inner.name()).finish()
    }
}

impl PartialEq for CheckedAggregate {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner
    }
}

impl Eq for CheckedAggregate {}

impl std::hash::Hash for CheckedAggregate {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
    }
}

impl CheckedAggregate {
    fn rewrap(&self, inner: AggregateUDF) -> AggregateUDF {
        AggregateUDF::new_from_impl(CheckedAggregate { inner, pool: Arc::clone(&self.pool) })
    }

    fn budget(&self) -> Budget {
        Budget { reservation: MemoryConsumer::new(format!("{}()", self.inner.name())).register(&self.pool) }
    }
}

/// The memory an accumulator's state may take, reserved before it grows.
struct Budget {
    reservation: MemoryReservation,
}

impl Budget {
    /// Before adding `values` to a state of `held` bytes: room for the state with them, twice
    /// (a growing buffer doubles and copies).
    fn before(&mut self, held: usize, values: &[ArrayRef]) -> Result<()> {
        let incoming: usize = values.iter().map(|a| a.get_array_memory_size()).sum();
        let need = held.saturating_add(incoming).saturating_mul(2);
        if need > self.reservation.size() {
            self.reservation.try_resize(need)?;
        }
        Ok(())
    }

    /// After: what the state holds.
    fn after(&mut self, held: usize) {
        self.reservation.resize(held);
    }
}

struct CheckedAccumulator {
    inner: Box<dyn Accumulator>,
    budget: Budget,
}

impl Debug for CheckedAccumulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedAccumulator").field("inner", &self.inner).finish()
    }
}

impl Accumulator for CheckedAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.budget.before(self.inner.size(), values)?;
        let r = self.inner.update_batch(values);
        self.budget.after(self.inner.size());
        r
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.inner.evaluate()
    }

    fn size(&self) -> usize {
        self.inner.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.inner.state()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.budget.before(self.inner.size(), states)?;
        let r = self.inner.merge_batch(states);
        self.budget.after(self.inner.size());
        r
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let r = self.inner.retract_batch(values);
        self.budget.after(self.inner.size());
        r
    }

    fn supports_retract_batch(&self) -> bool {
        self.inner.supports_retract_batch()
    }
}

struct CheckedGroupsAccumulator {
    inner: Box<dyn GroupsAccumulator>,
    budget: Budget,
}

impl GroupsAccumulator for CheckedGroupsAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.budget.before(self.inner.size(), values)?;
        let r = self.inner.update_batch(values, group_indices, opt_filter, total_num_groups);
        self.budget.after(self.inner.size());
        r
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let r = self.inner.evaluate(emit_to);
        self.budget.after(self.inner.size());
        r
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let r = self.inner.state(emit_to);
        self.budget.after(self.inner.size());
        r
    }

    fn merge_batch(&mut self, values: &[ArrayRef], group_indices: &[usize], total_num_groups: usize) -> Result<()> {
        self.budget.before(self.inner.size(), values)?;
        let r = self.inner.merge_batch(values, group_indices, total_num_groups);
        self.budget.after(self.inner.size());
        r
    }

    fn convert_to_state(&self, values: &[ArrayRef], opt_filter: Option<&BooleanArray>) -> Result<Vec<ArrayRef>> {
        self.inner.convert_to_state(values, opt_filter)
    }

    fn size(&self) -> usize {
        self.inner.size()
    }
}

impl AggregateUDFImpl for CheckedAggregate {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn schema_name(&self, params: &AggregateFunctionParams) -> Result<String> {
        self.inner.schema_name(params)
    }

    fn human_display(&self, params: &AggregateFunctionParams) -> Result<String> {
        self.inner.human_display(params)
    }

    fn window_function_schema_name(&self, params: &WindowFunctionParams) -> Result<String> {
        self.inner.window_function_schema_name(params)
    }

    fn display_name(&self, params: &AggregateFunctionParams) -> Result<String> {
        self.inner.display_name(params)
    }

    fn window_function_display_name(&self, params: &WindowFunctionParams) -> Result<String> {
        self.inner.window_function_display_name(params)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field(&self, arg_fields: &[FieldRef]) -> Result<FieldRef> {
        self.inner.return_field(arg_fields)
    }

    fn is_nullable(&self) -> bool {
        self.inner.is_nullable()
    }

    fn accumulator(&self, acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(CheckedAccumulator { inner: self.inner.accumulator(acc_args)?, budget: self.budget() }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.inner.groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(CheckedGroupsAccumulator { inner: self.inner.create_groups_accumulator(args)?, budget: self.budget() }))
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(CheckedAccumulator { inner: self.inner.create_sliding_accumulator(args)?, budget: self.budget() }))
    }

    fn with_beneficial_ordering(self: Arc<Self>, beneficial_ordering: bool) -> Result<Option<Arc<dyn AggregateUDFImpl>>> {
        Ok(self.inner.clone().with_beneficial_ordering(beneficial_ordering)?.map(|udf| Arc::clone(self.rewrap(udf).inner())))
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        self.inner.order_sensitivity()
    }

    fn simplify(&self) -> Option<AggregateFunctionSimplification> {
        self.inner.simplify()
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        match self.inner.reverse_udf() {
            ReversedUDAF::Reversed(udf) => ReversedUDAF::Reversed(Arc::new(self.rewrap(udf.as_ref().clone()))),
            other => other,
        }
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn is_descending(&self) -> Option<bool> {
        self.inner.is_descending()
    }

    fn value_from_stats(&self, statistics_args: &StatisticsArgs) -> Option<ScalarValue> {
        self.inner.value_from_stats(statistics_args)
    }

    fn default_value(&self, data_type: &DataType) -> Result<ScalarValue> {
        self.inner.default_value(data_type)
    }

    fn supports_null_handling_clause(&self) -> bool {
        self.inner.supports_null_handling_clause()
    }

    fn supports_within_group_clause(&self) -> bool {
        self.inner.supports_within_group_clause()
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn set_monotonicity(&self, data_type: &DataType) -> SetMonotonicity {
        self.inner.inner().set_monotonicity(data_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::prelude::SessionConfig;

    fn session(limit_mb: usize) -> SessionContext {
        let runtime = RuntimeEnvBuilder::new().with_memory_limit(limit_mb << 20, 1.0).build_arc().unwrap();
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new().with_target_partitions(2), runtime);
        register(&ctx);
        ctx
    }

    async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<arrow::array::RecordBatch>> {
        ctx.sql(sql).await?.collect().await
    }

    #[tokio::test]
    async fn a_gathered_state_past_the_limit_fails_before_it_is_copied() {
        let ctx = session(64);
        // 8 MiB a batch of 8,192 values: the first batch needs 16 MiB of room, the state grows
        // past the limit within a few batches.
        let err =
            run(&ctx, "SELECT length(string_agg(repeat('x', 1000), ',')) FROM generate_series(1, 200000)").await.unwrap_err();
        assert!(err.to_string().contains("string_agg()"), "{err}");
        let err = run(&ctx, "SELECT array_agg(repeat('x', 1000)) FROM generate_series(1, 200000) GROUP BY value % 2")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("array_agg()"), "{err}");
        // Nothing stays reserved after a failed query.
        assert_eq!(ctx.runtime_env().memory_pool.reserved(), 0);
    }

    #[tokio::test]
    async fn gathered_states_within_the_limit_answer_as_before() {
        let ctx = session(64);
        let batches = run(
            &ctx,
            "SELECT length(string_agg(CAST(value AS VARCHAR), ',' ORDER BY value)) AS n, \
             count(*) AS c FROM generate_series(1, 1000)",
        )
        .await
        .unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
        // 1..9: 9 digits, 10..99: 180, 100..999: 2,700, 1000: 4, and 999 commas.
        assert!(text.contains("| 3892 | 1000 |"), "{text}");
        let batches = run(&ctx, "SELECT value % 3 AS k, array_agg(value ORDER BY value) AS a FROM generate_series(1, 9) GROUP BY value % 3 ORDER BY k").await.unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
        assert!(text.contains("| 0 | [3, 6, 9] |"), "{text}");
    }
}
