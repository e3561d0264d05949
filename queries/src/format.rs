//! Query results as text: an aligned table, CSV (with a header) or JSON (an array of objects).
//!
//! Input: a [`QueryResult`]. Output: bytes on a writer. State: none.

use std::io::Write;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::{QueryError, QueryResult};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// An aligned text table.
    #[default]
    Table,
    /// CSV with a header line.
    Csv,
    /// A JSON array of objects.
    Json,
}

impl std::str::FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "table" => Ok(OutputFormat::Table),
            "csv" => Ok(OutputFormat::Csv),
            "json" => Ok(OutputFormat::Json),
            other => Err(format!("unknown format {other:?} (table, csv or json)")),
        }
    }
}

fn io(e: impl std::fmt::Display) -> QueryError {
    QueryError::Execution(format!("writing the result: {e}"))
}

/// View types as their plain equivalents, which every writer supports.
fn plain(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<(SchemaRef, Vec<RecordBatch>), QueryError> {
    let target = |t: &DataType| match t {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        other => other.clone(),
    };
    let fields: Vec<Field> =
        schema.fields().iter().map(|f| Field::new(f.name(), target(f.data_type()), f.is_nullable())).collect();
    let out_schema = std::sync::Arc::new(Schema::new(fields));
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let cols = b
            .columns()
            .iter()
            .zip(out_schema.fields())
            .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(io)?;
        out.push(RecordBatch::try_new(out_schema.clone(), cols).map_err(io)?);
    }
    Ok((out_schema, out))
}

/// Writes `result` in `format`.
pub fn write_result(result: &QueryResult, format: OutputFormat, out: &mut dyn Write) -> Result<(), QueryError> {
    let (schema, batches) = plain(&result.schema, &result.batches)?;
    match format {
        OutputFormat::Table => {
            let table = arrow::util::pretty::pretty_format_batches_with_schema(schema, &batches).map_err(io)?;
            writeln!(out, "{table}").map_err(io)?;
        }
        OutputFormat::Csv => {
            if batches.is_empty() {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                writeln!(out, "{}", names.join(",")).map_err(io)?;
            } else {
                let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(&mut *out);
                for b in &batches {
                    w.write(b).map_err(io)?;
                }
            }
        }
        OutputFormat::Json => {
            let mut w = arrow::json::ArrayWriter::new(&mut *out);
            for b in &batches {
                w.write(b).map_err(io)?;
            }
            w.finish().map_err(io)?;
            if batches.is_empty() {
                write!(out, "[]").map_err(io)?;
            }
            writeln!(out).map_err(io)?;
        }
    }
    Ok(())
}

/// The rows of `result` as JSON objects (for the API).
pub fn to_json_rows(result: &QueryResult) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, QueryError> {
    let (_, batches) = plain(&result.schema, &result.batches)?;
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::ArrayWriter::new(&mut buf);
        for b in &batches {
            w.write(b).map_err(io)?;
        }
        w.finish().map_err(io)?;
    }
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&buf).map_err(io)
}
