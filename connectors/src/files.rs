//! File sources: JSON lines, CSV and Parquet, read in parallel chunks.
//!
//! [`plan`] looks at each input once: it detects the format from the extension, reads the CSV
//! header, and splits the file into chunks at line boundaries (row groups for Parquet), counting
//! lines so every record keeps its file and line number. Workers then read disjoint chunks with
//! [`ChunkReader`]; chunk `k` of the plan comes after chunk `k - 1` in input order, which is what
//! the watermark logic upstream relies on. Records are handed out as [`Record`]s: the raw bytes of
//! a line, or the typed cells of a row with the column names.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use vigil_events::Cell;

use crate::{ConnectorError, Result};

/// Input format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    JsonLines,
    /// Delimited text with a header line.
    Csv {
        /// Field separator.
        sep: u8,
    },
    /// Apache Parquet.
    Parquet,
}

impl Format {
    /// The format named by a path's extension (`.jsonl`, `.json`, `.ndjson`, `.csv`, `.tsv`, `.parquet`).
    pub fn from_path(path: &Path) -> Result<Format> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match ext.as_str() {
            "jsonl" | "json" | "ndjson" => Ok(Format::JsonLines),
            "csv" | "txt" => Ok(Format::Csv { sep: b',' }),
            "tsv" => Ok(Format::Csv { sep: b'\t' }),
            "parquet" | "pq" => Ok(Format::Parquet),
            _ => Err(ConnectorError::UnknownFormat(path.display().to_string())),
        }
    }
}

/// One input file of a run.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// Path.
    pub path: PathBuf,
    /// Format.
    pub format: Format,
    /// Column names (CSV header, Parquet schema); empty for JSON lines.
    pub columns: Arc<Vec<String>>,
}

/// A contiguous part of one input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Index of the file in the plan.
    pub file: u32,
    /// First byte (row group index for Parquet).
    pub start: u64,
    /// End byte, exclusive (row group index + 1 for Parquet).
    pub end: u64,
    /// Line number (1-based) or row number (0-based for Parquet) of the chunk's first record.
    pub first_line: u64,
}

/// The files and chunks of a run.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Files, in input order.
    pub files: Vec<InputFile>,
    /// Chunks, in input order.
    pub chunks: Vec<Chunk>,
}

/// Plans the reading of `paths` in chunks of about `chunk_bytes`.
pub fn plan(paths: &[PathBuf], chunk_bytes: usize) -> Result<Plan> {
    let from: Vec<(PathBuf, u64)> = paths.iter().map(|p| (p.clone(), 0)).collect();
    plan_from(&from, chunk_bytes)
}

/// [`plan`] of files read from a byte on (a line start: the part before it is in the history
/// already); line numbers still count from the start of the file. Parquet files are read whole.
pub fn plan_from(inputs: &[(PathBuf, u64)], chunk_bytes: usize) -> Result<Plan> {
    let mut out = Plan::default();
    for (i, (path, from)) in inputs.iter().enumerate() {
        let format = Format::from_path(path)?;
        let file = File::open(path).map_err(|e| ConnectorError::io(path, e))?;
        match format {
            Format::Parquet => {
                let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| ConnectorError::parquet(path, e))?;
                let columns = builder.schema().fields().iter().map(|f| f.name().clone()).collect();
                let mut row = 0u64;
                for (g, rg) in builder.metadata().row_groups().iter().enumerate() {
                    out.chunks.push(Chunk { file: i as u32, start: g as u64, end: g as u64 + 1, first_line: row });
                    row += rg.num_rows() as u64;
                }
                out.files.push(InputFile { path: path.clone(), format, columns: Arc::new(columns) });
            }
            Format::JsonLines | Format::Csv { .. } => {
                let (columns, data_start, header_lines) = match &format {
                    Format::Csv { sep } => {
                        let mut r = BufReader::new(File::open(path).map_err(|e| ConnectorError::io(path, e))?);
                        let mut header = String::new();
                        let n = r.read_line(&mut header).map_err(|e| ConnectorError::io(path, e))?;
                        let names = split_csv_line(header.trim_end_matches(['\r', '\n']).as_bytes(), *sep)
                            .into_iter()
                            .map(|c| c.trim().trim_start_matches('\u{feff}').to_string())
                            .collect();
                        (names, n as u64, 1u64)
                    }
                    _ => (Vec::new(), 0, 0),
                };
                let data_start = data_start.max(*from);
                split_lines(i as u32, file, path, data_start, header_lines, chunk_bytes, &mut out.chunks)?;
                out.files.push(InputFile { path: path.clone(), format, columns: Arc::new(columns) });
            }
        }
    }
    Ok(out)
}

/// Splits a line file into chunks ending at newlines, counting lines on the way.
fn split_lines(
    file_idx: u32,
    mut file: File,
    path: &Path,
    data_start: u64,
    header_lines: u64,
    chunk_bytes: usize,
    out: &mut Vec<Chunk>,
) -> Result<()> {
    let len = file.metadata().map_err(|e| ConnectorError::io(path, e))?.len();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    let mut line = 1u64;
    let mut chunk_start = data_start;
    let mut chunk_first_line = header_lines + 1;
    loop {
        let n = file.read(&mut buf).map_err(|e| ConnectorError::io(path, e))?;
        if n == 0 {
            break;
        }
        for nl in memchr::memchr_iter(b'\n', &buf[..n]) {
            let abs = pos + nl as u64;
            line += 1;
            if abs < data_start {
                chunk_first_line = line;
                continue;
            }
            if abs + 1 - chunk_start >= chunk_bytes as u64 {
                out.push(Chunk { file: file_idx, start: chunk_start, end: abs + 1, first_line: chunk_first_line });
                chunk_start = abs + 1;
                chunk_first_line = line;
            }
        }
        pos += n as u64;
    }
    if chunk_start < len {
        out.push(Chunk { file: file_idx, start: chunk_start, end: len, first_line: chunk_first_line });
    }
    Ok(())
}

/// Splits one CSV line into fields, honouring double quotes.
pub fn split_csv_line(line: &[u8], sep: u8) -> Vec<String> {
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).delimiter(sep).flexible(true).from_reader(line);
    let mut rec = csv::StringRecord::new();
    match rdr.read_record(&mut rec) {
        Ok(true) => rec.iter().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// One record of an input file.
#[derive(Debug)]
pub enum Record<'a> {
    /// A line of a JSON-lines file.
    Json(&'a [u8]),
    /// A CSV or Parquet row: cells in column order, and the row's raw form for dead letters.
    Row {
        /// Cells.
        cells: &'a [Cell<'a>],
        /// The line as read (CSV), or the row rendered as JSON (Parquet).
        raw: &'a [u8],
    },
    /// A CSV line whose fields could not be split (unbalanced quotes, invalid UTF-8).
    Unreadable {
        /// The line.
        raw: &'a [u8],
        /// Why.
        detail: String,
    },
}

/// Reads chunks; one per worker, reusing its buffers.
#[derive(Default)]
pub struct ChunkReader {
    buf: Vec<u8>,
}

impl ChunkReader {
    /// Reads `chunk` of `file` and calls `f(line_or_row_number, record)` for each record in order.
    pub fn for_each_record(&mut self, file: &InputFile, chunk: &Chunk, mut f: impl FnMut(u64, Record<'_>)) -> Result<()> {
        match &file.format {
            Format::Parquet => read_parquet_chunk(file, chunk, f),
            format => {
                let fh = File::open(&file.path).map_err(|e| ConnectorError::io(&file.path, e))?;
                let len = (chunk.end - chunk.start) as usize;
                self.buf.resize(len, 0);
                fh.read_exact_at(&mut self.buf, chunk.start).map_err(|e| ConnectorError::io(&file.path, e))?;
                let mut line_no = chunk.first_line;
                let mut start = 0usize;
                let buf = &self.buf[..];
                let mut cells: Vec<Cell<'_>> = Vec::new();
                let mut owned: Vec<String> = Vec::new();
                while start < buf.len() {
                    let end = memchr::memchr(b'\n', &buf[start..]).map_or(buf.len(), |i| start + i);
                    let mut line = &buf[start..end];
                    if line.last() == Some(&b'\r') {
                        line = &line[..line.len() - 1];
                    }
                    if !line.iter().all(u8::is_ascii_whitespace) {
                        match format {
                            Format::Csv { sep } => {
                                cells.clear();
                                match std::str::from_utf8(line) {
                                    Ok(text) if !text.contains('"') => {
                                        cells.extend(text.split(*sep as char).map(Cell::Str));
                                        f(line_no, Record::Row { cells: &cells, raw: line });
                                    }
                                    Ok(_) => {
                                        owned = split_csv_line(line, *sep);
                                        if owned.is_empty() {
                                            f(line_no, Record::Unreadable { raw: line, detail: "unbalanced quotes".into() });
                                        } else {
                                            let cells: Vec<Cell<'_>> = owned.iter().map(|s| Cell::Str(s)).collect();
                                            f(line_no, Record::Row { cells: &cells, raw: line });
                                        }
                                    }
                                    Err(e) => f(line_no, Record::Unreadable { raw: line, detail: format!("invalid UTF-8: {e}") }),
                                }
                            }
                            _ => f(line_no, Record::Json(line)),
                        }
                    }
                    line_no += 1;
                    start = end + 1;
                }
                drop(owned);
                Ok(())
            }
        }
    }
}

fn read_parquet_chunk(file: &InputFile, chunk: &Chunk, mut f: impl FnMut(u64, Record<'_>)) -> Result<()> {
    let fh = File::open(&file.path).map_err(|e| ConnectorError::io(&file.path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(fh)
        .map_err(|e| ConnectorError::parquet(&file.path, e))?
        .with_row_groups(vec![chunk.start as usize])
        .with_batch_size(8192)
        .build()
        .map_err(|e| ConnectorError::parquet(&file.path, e))?;
    let mut row_no = chunk.first_line;
    let mut raw = Vec::new();
    for batch in reader {
        let batch: RecordBatch =
            batch.map_err(|e| ConnectorError::Parquet { path: file.path.display().to_string(), message: e.to_string() })?;
        let cols = batch.columns();
        let mut cells: Vec<Cell<'_>> = Vec::with_capacity(cols.len());
        for row in 0..batch.num_rows() {
            cells.clear();
            for c in cols {
                cells.push(cell_at(c.as_ref(), row));
            }
            raw.clear();
            render_row_json(&file.columns, &cells, &mut raw);
            f(row_no, Record::Row { cells: &cells, raw: &raw });
            row_no += 1;
        }
    }
    Ok(())
}

fn cell_at(a: &dyn Array, i: usize) -> Cell<'_> {
    use arrow::datatypes::*;
    if a.is_null(i) {
        return Cell::Null;
    }
    match a.data_type() {
        DataType::Float64 => Cell::Num(a.as_primitive::<Float64Type>().value(i)),
        DataType::Float32 => Cell::Num(f64::from(a.as_primitive::<Float32Type>().value(i))),
        DataType::Int64 => Cell::Num(a.as_primitive::<Int64Type>().value(i) as f64),
        DataType::Int32 => Cell::Num(f64::from(a.as_primitive::<Int32Type>().value(i))),
        DataType::UInt64 => Cell::Num(a.as_primitive::<UInt64Type>().value(i) as f64),
        DataType::UInt32 => Cell::Num(f64::from(a.as_primitive::<UInt32Type>().value(i))),
        DataType::Boolean => Cell::Bool(a.as_boolean().value(i)),
        DataType::Utf8 => Cell::Str(a.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => Cell::Str(a.as_string::<i64>().value(i)),
        DataType::Utf8View => Cell::Str(a.as_string_view().value(i)),
        DataType::Timestamp(unit, _) => {
            let v = match unit {
                TimeUnit::Second => a.as_primitive::<TimestampSecondType>().value(i) * 1000,
                TimeUnit::Millisecond => a.as_primitive::<TimestampMillisecondType>().value(i),
                TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().value(i) / 1000,
                TimeUnit::Nanosecond => a.as_primitive::<TimestampNanosecondType>().value(i) / 1_000_000,
            };
            Cell::Num(v as f64)
        }
        DataType::Dictionary(_, _) => {
            let d = a.as_any_dictionary();
            let key = d.normalized_keys()[i];
            cell_at(d.values().as_ref(), key)
        }
        _ => Cell::Null,
    }
}

fn render_row_json(names: &[String], cells: &[Cell<'_>], out: &mut Vec<u8>) {
    let mut m = serde_json::Map::new();
    for (n, c) in names.iter().zip(cells) {
        let v = match c {
            Cell::Null => serde_json::Value::Null,
            Cell::Num(x) => serde_json::Number::from_f64(*x).map_or(serde_json::Value::Null, serde_json::Value::Number),
            Cell::Str(s) => serde_json::Value::String((*s).to_string()),
            Cell::Bool(b) => serde_json::Value::Bool(*b),
        };
        m.insert(n.clone(), v);
    }
    // Writing JSON into a Vec cannot fail.
    let _ = serde_json::to_writer(out, &m);
}

/// Reads one Parquet file fully into record batches (small files and tests).
pub fn read_parquet(path: &Path) -> Result<Vec<RecordBatch>> {
    let fh = File::open(path).map_err(|e| ConnectorError::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(fh)
        .map_err(|e| ConnectorError::parquet(path, e))?
        .build()
        .map_err(|e| ConnectorError::parquet(path, e))?;
    reader.map(|b| b.map_err(|e| ConnectorError::Parquet { path: path.display().to_string(), message: e.to_string() })).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn chunks_cover_every_line_once_with_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.jsonl");
        let mut f = File::create(&p).unwrap();
        for i in 0..1000 {
            writeln!(f, "{{\"i\":{i}}}").unwrap();
        }
        drop(f);
        let plan = plan(std::slice::from_ref(&p), 100).unwrap();
        assert!(plan.chunks.len() > 10);
        let mut reader = ChunkReader::default();
        let mut seen = Vec::new();
        for c in &plan.chunks {
            reader
                .for_each_record(&plan.files[0], c, |line, r| {
                    if let Record::Json(b) = r {
                        let v: serde_json::Value = serde_json::from_slice(b).unwrap();
                        assert_eq!(v["i"].as_u64().unwrap() + 1, line);
                        seen.push(line);
                    }
                })
                .unwrap();
        }
        assert_eq!(seen, (1..=1000).collect::<Vec<_>>());
    }

    #[test]
    fn csv_header_and_quotes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(&p, "ts,sensor_id,value\n1,\"a,b\",2\n2,c,3\n").unwrap();
        let plan = plan(std::slice::from_ref(&p), 1 << 20).unwrap();
        assert_eq!(*plan.files[0].columns, vec!["ts", "sensor_id", "value"]);
        let mut rows = Vec::new();
        ChunkReader::default()
            .for_each_record(&plan.files[0], &plan.chunks[0], |line, r| {
                if let Record::Row { cells, .. } = r {
                    rows.push((line, format!("{:?}", cells[1])));
                }
            })
            .unwrap();
        assert_eq!(rows, vec![(2, "Str(\"a,b\")".to_string()), (3, "Str(\"c\")".to_string())]);
    }
}
