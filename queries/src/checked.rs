//! String functions under the query memory limit.
//!
//! DataFusion's memory pool bounds what sorts, joins and aggregations hold, not what a scalar
//! function allocates: `repeat('x', 2147483647)` would build a 2 GiB string. Each function whose
//! output can be far larger than its input is registered again, wrapped: before the call the
//! wrapper works out the most bytes the call can produce (`repeat`: length × count; `lpad` and
//! `rpad`: 4 bytes a character of the target length; `replace`, `regexp_replace`, `overlay`:
//! from their arguments) and reserves them in the session's memory pool, so a call past the
//! limit fails (`ResourcesExhausted`, 413 `query_too_large` over HTTP) before allocating. The
//! other string functions (a bounded factor of their input) are checked after the call, so a
//! chain of them cannot grow past the limit either. The `||` operator is not a function: before
//! planning, [`guard_concat`] wraps each of its operands in `vigil_checked(…)`, an identity that
//! fails when its value holds more than a quarter of the limit, so every concatenation's input
//! is bounded and a chain of `||` (or a `||` doubling a value once per sub-query) stops there.
//! The wrapper keeps the operand's name, so result columns are named as written.
//!
//! Input: the session's functions and memory pool. Output: the same functions, checked.
//! State: none (the reservation lives for one call).

use std::hash::{Hash, Hasher};
use std::ops::ControlFlow;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::logical_expr::{TypeSignature, Volatility};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr as SqlExpr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident,
    ObjectName, VisitMut, VisitorMut,
};

/// Functions checked before the call, from a bound worked out of their arguments.
const BOUNDED_BEFORE: &[&str] = &["repeat", "lpad", "rpad", "replace", "regexp_replace", "overlay"];
/// Functions checked after the call (their output is a bounded factor of their input).
const CHECKED_AFTER: &[&str] = &[
    "concat",
    "concat_ws",
    "translate",
    "upper",
    "lower",
    "initcap",
    "encode",
    "decode",
    "to_hex",
    "reverse",
    "split_part",
    "substr_index",
];

/// Registers the checked versions of the session's string functions.
pub(crate) fn register(ctx: &SessionContext, limit_bytes: usize) {
    let pool = Arc::clone(&ctx.runtime_env().memory_pool);
    let functions = ctx.state().scalar_functions().clone();
    for name in BOUNDED_BEFORE.iter().chain(CHECKED_AFTER) {
        if let Some(inner) = functions.get(*name) {
            let checked = Checked { inner: Arc::clone(inner), pool: Arc::clone(&pool), limit_bytes };
            ctx.register_udf(ScalarUDF::new_from_impl(checked));
        }
    }
    ctx.register_udf(ScalarUDF::new_from_impl(Guard::new(limit_bytes / 4)));
}

/// The name of the identity that checks the size of its value.
const GUARD: &str = "vigil_checked";

/// Wraps each operand of `||` in the statement in `vigil_checked(…)`.
pub(crate) fn guard_concat(statement: &mut DFStatement) {
    match statement {
        DFStatement::Statement(s) => {
            let _ = s.visit(&mut ConcatGuard);
        }
        DFStatement::Explain(e) => guard_concat(&mut e.statement),
        _ => {}
    }
}

struct ConcatGuard;

fn guarded(e: SqlExpr) -> SqlExpr {
    SqlExpr::Function(Function {
        name: ObjectName::from(vec![Ident::new(GUARD)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(e))],
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

impl VisitorMut for ConcatGuard {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut SqlExpr) -> ControlFlow<()> {
        if let SqlExpr::BinaryOp { left, op: BinaryOperator::StringConcat, right } = expr {
            for side in [left, right] {
                let inner = std::mem::replace(side.as_mut(), SqlExpr::value(datafusion::sql::sqlparser::ast::Value::Null));
                **side = guarded(inner);
            }
        }
        ControlFlow::Continue(())
    }
}

/// `vigil_checked(x)`: `x`, or an error when `x` holds more than `limit_bytes`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Guard {
    signature: Signature,
    limit_bytes: usize,
}

impl Guard {
    fn new(limit_bytes: usize) -> Guard {
        Guard { signature: Signature::new(TypeSignature::Any(1), Volatility::Immutable), limit_bytes }
    }
}

impl ScalarUDFImpl for Guard {
    fn name(&self) -> &str {
        GUARD
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Null))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        match args.arg_fields.first() {
            Some(f) => Ok(Arc::clone(f)),
            None => Err(DataFusionError::Plan(format!("{GUARD}() takes one argument"))),
        }
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        match args.first() {
            Some(e) => Ok(e.schema_name().to_string()),
            None => Ok(GUARD.to_string()),
        }
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let batch_rows = usize::from(args.config_options.execution.batch_size);
        let Some(value) = args.args.pop() else { return Err(DataFusionError::Plan(format!("{GUARD}() takes one argument"))) };
        let size = output_size(&value, batch_rows);
        if size > self.limit_bytes {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "a value of {} MiB to concatenate with ||, more than a quarter of the query memory limit ({} MiB, [query] memory_limit_mb)",
                size >> 20,
                (self.limit_bytes * 4) >> 20
            )));
        }
        Ok(value)
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        Ok(inputs.first().map_or(SortProperties::Unordered, |p| p.sort_properties))
    }

    fn preserves_lex_ordering(&self, _inputs: &[ExprProperties]) -> Result<bool> {
        Ok(true)
    }
}

/// A function with its output counted against the memory limit.
struct Checked {
    inner: Arc<ScalarUDF>,
    pool: Arc<dyn MemoryPool>,
    limit_bytes: usize,
}

impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checked").field("inner", &self.inner.name()).field("limit_bytes", &self.limit_bytes).finish()
    }
}

impl PartialEq for Checked {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner && self.limit_bytes == other.limit_bytes
    }
}

impl Eq for Checked {}

impl Hash for Checked {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
        self.limit_bytes.hash(state);
    }
}

fn too_large(name: &str, bytes: usize, limit: usize) -> DataFusionError {
    DataFusionError::ResourcesExhausted(format!(
        "{name}() would produce {} MiB, more than the query memory limit of {} MiB ([query] memory_limit_mb)",
        bytes >> 20,
        limit >> 20
    ))
}

/// The argument as an array (a scalar as one row).
fn as_array(v: &ColumnarValue) -> Result<ArrayRef> {
    match v {
        ColumnarValue::Array(a) => Ok(Arc::clone(a)),
        ColumnarValue::Scalar(s) => s.to_array_of_size(1),
    }
}

/// Byte length of a string or binary value at `i` (0 for NULL or another type).
fn byte_len(a: &dyn Array, i: usize) -> usize {
    if a.is_null(i) {
        return 0;
    }
    match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().value(i).len(),
        DataType::LargeUtf8 => a.as_string::<i64>().value(i).len(),
        DataType::Utf8View => a.as_string_view().value(i).len(),
        DataType::Binary => a.as_binary::<i32>().value(i).len(),
        DataType::LargeBinary => a.as_binary::<i64>().value(i).len(),
        DataType::BinaryView => a.as_binary_view().value(i).len(),
        _ => 0,
    }
}

/// The string value at `i`, if it is one.
fn text(a: &dyn Array, i: usize) -> Option<&str> {
    if a.is_null(i) {
        return None;
    }
    match a.data_type() {
        DataType::Utf8 => Some(a.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => Some(a.as_string::<i64>().value(i)),
        DataType::Utf8View => Some(a.as_string_view().value(i)),
        _ => None,
    }
}

/// An integer argument as i64 values (NULL as 0).
fn ints(a: &ArrayRef) -> Result<Vec<i64>> {
    let c = arrow::compute::cast(a, &DataType::Int64)?;
    let p = c.as_primitive::<Int64Type>();
    Ok((0..p.len()).map(|i| if p.is_null(i) { 0 } else { p.value(i) }).collect())
}

fn count(n: i64) -> usize {
    usize::try_from(n.max(0)).unwrap_or(usize::MAX)
}

impl Checked {
    /// The most bytes a call can produce, for the functions bounded before the call.
    fn bound(&self, args: &[ColumnarValue], rows: usize, batch_rows: usize) -> Result<Option<usize>> {
        let name = self.inner.name();
        if !BOUNDED_BEFORE.contains(&name) || args.is_empty() {
            return Ok(None);
        }
        let arrays = args.iter().map(as_array).collect::<Result<Vec<_>>>()?;
        let scalar: Vec<bool> = args.iter().map(|a| matches!(a, ColumnarValue::Scalar(_))).collect();
        let all_scalar = scalar.iter().all(|s| *s);
        let rows = if all_scalar { 1 } else { rows };
        let at = |k: usize, i: usize| if scalar[k] { 0 } else { i };
        let numbers = match name {
            "repeat" | "lpad" | "rpad" if arrays.len() >= 2 => Some(ints(&arrays[1])?),
            _ => None,
        };
        let mut total = 0usize;
        for i in 0..rows {
            let s = byte_len(arrays[0].as_ref(), at(0, i));
            let arg_len = |k: usize| arrays.get(k).map_or(0, |a| byte_len(a.as_ref(), at(k, i)));
            let n = numbers.as_ref().map_or(0, |v| count(v[at(1, i)]));
            let row = match name {
                "repeat" => s.saturating_mul(n),
                // At most 4 bytes a character of the target length.
                "lpad" | "rpad" => n.saturating_mul(4),
                "replace" => {
                    let from = arg_len(1).max(1);
                    s.saturating_add((s / from + 1).saturating_mul(arg_len(2)))
                }
                "regexp_replace" => {
                    // Each match (at most one a position) becomes the replacement, whose group
                    // references may each bring back the whole input.
                    let refs =
                        arrays.get(2).and_then(|a| text(a.as_ref(), at(2, i))).map_or(0, |r| r.matches(['$', '\\']).count());
                    let each = arg_len(2).saturating_add(refs.saturating_mul(s));
                    s.saturating_add((s + 1).saturating_mul(each))
                }
                "overlay" => s.saturating_add(arg_len(1)),
                _ => 0,
            };
            total = total.saturating_add(row);
        }
        // A constant is repeated on every row of the batch it meets.
        Ok(Some(if all_scalar { total.saturating_mul(batch_rows) } else { total }))
    }
}

/// Bytes a value takes once it meets a batch (a constant is repeated on each of its rows).
fn output_size(v: &ColumnarValue, batch_rows: usize) -> usize {
    match v {
        ColumnarValue::Array(a) => a.get_array_memory_size(),
        ColumnarValue::Scalar(s) => s.size().saturating_mul(batch_rows),
    }
}

impl ScalarUDFImpl for Checked {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn is_strict(&self) -> bool {
        self.inner.is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = self.inner.name().to_string();
        let batch_rows = usize::from(args.config_options.execution.batch_size);
        let mut reservation = None;
        if let Some(bound) = self.bound(&args.args, args.number_rows, batch_rows)? {
            if bound > self.limit_bytes {
                return Err(too_large(&name, bound, self.limit_bytes));
            }
            let r = MemoryConsumer::new(format!("{name}()")).register(&self.pool);
            r.try_grow(bound)?;
            reservation = Some(r);
        }
        let out = self.inner.invoke_with_args(args)?;
        drop(reservation);
        let size = output_size(&out, batch_rows);
        if size > self.limit_bytes {
            return Err(too_large(&name, size, self.limit_bytes));
        }
        Ok(out)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(inputs)
    }

    fn preserves_lex_ordering(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.preserves_lex_ordering(inputs)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}
