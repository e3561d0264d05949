//! `date_trunc` with a fast path for UTC timestamps.
//!
//! Every time column of the history is `Timestamp(ms, "UTC")`. DataFusion 55's `date_trunc`
//! truncates by plain arithmetic only for timestamps without a time zone; with one — even UTC —
//! it converts every value through the time-zone machinery, which made `date_trunc('hour', ts)`
//! the largest cost of an hourly rollup. In UTC a second, minute, hour or day starts at a multiple
//! of its length since the epoch, so truncation is `t - t mod length`: that is what this does for
//! millisecond timestamps in UTC; everything else goes to DataFusion's own function, whose
//! signature, return type and ordering this one keeps. Registered under the same name, it
//! replaces the built-in in the session.
//!
//! Input: the granularity and a timestamp column. Output: the truncated column. State: none.

use std::sync::Arc;

use arrow::array::{Array, AsArray, PrimitiveArray};
use arrow::datatypes::{DataType, FieldRef, TimeUnit, TimestampMillisecondType};
use datafusion::error::Result;
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature};
use datafusion::scalar::ScalarValue;

/// `date_trunc`, fast for UTC milliseconds.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct UtcDateTrunc {
    inner: Arc<ScalarUDF>,
}

impl UtcDateTrunc {
    pub(crate) fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(UtcDateTrunc { inner: datafusion::functions::datetime::date_trunc() })
    }
}

/// Length of a granularity in milliseconds, for the ones that are fixed in UTC.
fn step_ms(granularity: &str) -> Option<i64> {
    match granularity.to_ascii_lowercase().as_str() {
        "millisecond" => Some(1),
        "second" => Some(1000),
        "minute" => Some(60_000),
        "hour" => Some(3_600_000),
        "day" => Some(86_400_000),
        _ => None,
    }
}

fn is_utc(tz: &str) -> bool {
    matches!(tz, "UTC" | "utc" | "Z" | "+00:00" | "+00" | "Etc/UTC")
}

/// The fast path, when it applies.
fn truncate_utc_ms(args: &[ColumnarValue]) -> Option<ColumnarValue> {
    let [granularity, ts] = args else { return None };
    let g = match granularity {
        ColumnarValue::Scalar(ScalarValue::Utf8(Some(g)) | ScalarValue::Utf8View(Some(g)) | ScalarValue::LargeUtf8(Some(g))) => g,
        _ => return None,
    };
    let step = step_ms(g)?;
    let trunc = move |t: i64| t - t.rem_euclid(step);
    match ts {
        ColumnarValue::Array(a) => match a.data_type() {
            DataType::Timestamp(TimeUnit::Millisecond, Some(tz)) if is_utc(tz) => {
                let arr: &PrimitiveArray<TimestampMillisecondType> = a.as_primitive();
                let out: PrimitiveArray<TimestampMillisecondType> = arr.unary(trunc);
                Some(ColumnarValue::Array(Arc::new(out.with_timezone(tz.clone()))))
            }
            _ => None,
        },
        ColumnarValue::Scalar(ScalarValue::TimestampMillisecond(v, Some(tz))) if is_utc(tz) => {
            Some(ColumnarValue::Scalar(ScalarValue::TimestampMillisecond(v.map(trunc), Some(tz.clone()))))
        }
        _ => None,
    }
}

impl ScalarUDFImpl for UtcDateTrunc {
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

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let Some(out) = truncate_utc_ms(&args.args) {
            return Ok(out);
        }
        self.inner.invoke_with_args(args)
    }

    fn output_ordering(&self, input: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::TimestampMillisecondArray;
    use arrow::datatypes::Field;

    fn builtin(g: &str, a: &TimestampMillisecondArray) -> TimestampMillisecondArray {
        let f = datafusion::functions::datetime::date_trunc();
        let args = vec![ColumnarValue::Scalar(ScalarValue::Utf8(Some(g.into()))), ColumnarValue::Array(Arc::new(a.clone()))];
        let out = f
            .invoke_with_args(ScalarFunctionArgs {
                arg_fields: vec![
                    Arc::new(Field::new("g", DataType::Utf8, false)),
                    Arc::new(Field::new("t", a.data_type().clone(), true)),
                ],
                number_rows: a.len(),
                return_field: Arc::new(Field::new("r", a.data_type().clone(), true)),
                config_options: Arc::new(Default::default()),
                args,
            })
            .unwrap();
        match out {
            ColumnarValue::Array(x) => x.as_primitive::<TimestampMillisecondType>().clone(),
            ColumnarValue::Scalar(_) => panic!("scalar"),
        }
    }

    #[test]
    fn the_fast_path_agrees_with_datafusion() {
        // Before and after the epoch, on and off boundaries, with nulls.
        let values: Vec<Option<i64>> = vec![
            Some(0),
            Some(-1),
            Some(-86_400_001),
            Some(1_767_225_600_000),
            Some(1_767_229_199_999),
            None,
            Some(1_767_312_345_678),
            Some(951_782_400_123),
        ];
        let a = TimestampMillisecondArray::from(values).with_timezone("UTC");
        for g in ["millisecond", "second", "minute", "hour", "day", "HOUR"] {
            let args = vec![ColumnarValue::Scalar(ScalarValue::Utf8(Some(g.into()))), ColumnarValue::Array(Arc::new(a.clone()))];
            let Some(ColumnarValue::Array(fast)) = truncate_utc_ms(&args) else { panic!("no fast path for {g}") };
            assert_eq!(fast.as_primitive::<TimestampMillisecondType>(), &builtin(g, &a), "{g}");
            assert_eq!(fast.data_type(), a.data_type());
        }
        // Other granularities and zones go to DataFusion.
        let args =
            vec![ColumnarValue::Scalar(ScalarValue::Utf8(Some("month".into()))), ColumnarValue::Array(Arc::new(a.clone()))];
        assert!(truncate_utc_ms(&args).is_none());
        let paris = TimestampMillisecondArray::from(vec![Some(0)]).with_timezone("Europe/Paris");
        let args = vec![ColumnarValue::Scalar(ScalarValue::Utf8(Some("hour".into()))), ColumnarValue::Array(Arc::new(paris))];
        assert!(truncate_utc_ms(&args).is_none());
    }
}
