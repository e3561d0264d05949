//! External sort of bounded inputs into event-time order, for replays of files that are not in
//! order within the lateness.
//!
//! Every record of the inputs is read once to find its event time (records that cannot be read
//! sort first; they are rejected whatever their place). Records are collected into runs of at
//! most `run_bytes`, each run sorted by (event time, source, line) and spilled to a temporary
//! file; the runs are then merged into one sorted file of lines `source \t line \t payload`,
//! which the ordinary chunked reader replays. The payload is the original line (JSON lines, CSV)
//! or the row rendered as JSON (Parquet), and [`SortedInput::decode`] gives each record back its
//! original source position, so the history cannot tell a sorted replay from an ordered file.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vigil_connectors::files::{plan, split_csv_line, ChunkReader, Format, Plan, Record};
use vigil_events::{Cell, RejectReason, RejectedReading, SensorReading, SourcePos};
use vigil_operators::validate::Validator;

use crate::run::{decode_record, RunError};

/// How to decode the records of a sorted copy.
#[derive(Debug, Clone)]
pub struct SortedInput {
    /// Names of the original sources.
    pub names: Vec<String>,
    columns: Vec<Arc<Vec<String>>>,
    csv_sep: Vec<Option<u8>>,
}

impl SortedInput {
    /// Decodes one line of the sorted copy as its original record.
    pub fn decode(&self, validator: &mut Validator, rec: Record<'_>) -> Result<SensorReading, RejectedReading> {
        let Record::Json(line) = rec else {
            return Err(self.broken(validator, b"", "unexpected record in sorted copy"));
        };
        let mut parts = line.splitn(3, |b| *b == b'\t');
        let (Some(src), Some(ln), Some(payload)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(self.broken(validator, line, "truncated line in sorted copy"));
        };
        let parse = |b: &[u8]| std::str::from_utf8(b).ok().and_then(|s| s.parse::<u64>().ok());
        let (Some(src), Some(ln)) = (parse(src), parse(ln)) else {
            return Err(self.broken(validator, line, "bad position in sorted copy"));
        };
        let pos = SourcePos { source: src as u32, offset: ln };
        let idx = src as usize;
        match self.csv_sep.get(idx).copied().flatten() {
            Some(sep) => {
                let text = match std::str::from_utf8(payload) {
                    Ok(t) => t,
                    Err(e) => {
                        return decode_record(
                            validator,
                            &[],
                            pos,
                            Record::Unreadable { raw: payload, detail: format!("invalid UTF-8: {e}") },
                        )
                    }
                };
                let owned: Vec<String> = if text.contains('"') {
                    split_csv_line(payload, sep)
                } else {
                    text.split(sep as char).map(str::to_string).collect()
                };
                if owned.is_empty() {
                    return decode_record(
                        validator,
                        &[],
                        pos,
                        Record::Unreadable { raw: payload, detail: "unbalanced quotes".into() },
                    );
                }
                let cells: Vec<Cell<'_>> = owned.iter().map(|s| Cell::Str(s)).collect();
                decode_record(validator, &self.columns[idx], pos, Record::Row { cells: &cells, raw: payload })
            }
            None => decode_record(validator, &[], pos, Record::Json(payload)),
        }
    }

    fn broken(&self, validator: &Validator, raw: &[u8], detail: &str) -> RejectedReading {
        RejectedReading {
            raw: raw.to_vec(),
            pos: SourcePos::default(),
            reason: RejectReason::MalformedJson,
            detail: detail.into(),
            sensor_id: None,
            ts: None,
            rejected_at: validator.now(),
        }
    }
}

struct Entry {
    ts: i64,
    src: u32,
    line: u64,
    payload: Vec<u8>,
}

fn write_run(path: &Path, entries: &mut [Entry]) -> std::io::Result<()> {
    entries.sort_by_key(|e| (e.ts, e.src, e.line));
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path)?);
    for e in entries.iter() {
        w.write_all(&e.ts.to_le_bytes())?;
        w.write_all(&e.src.to_le_bytes())?;
        w.write_all(&e.line.to_le_bytes())?;
        w.write_all(&(e.payload.len() as u32).to_le_bytes())?;
        w.write_all(&e.payload)?;
    }
    w.flush()
}

fn read_entry(r: &mut impl Read) -> std::io::Result<Option<Entry>> {
    let mut head = [0u8; 24];
    match r.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let ts = i64::from_le_bytes(head[0..8].try_into().unwrap_or_default());
    let src = u32::from_le_bytes(head[8..12].try_into().unwrap_or_default());
    let line = u64::from_le_bytes(head[12..20].try_into().unwrap_or_default());
    let len = u32::from_le_bytes(head[20..24].try_into().unwrap_or_default()) as usize;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some(Entry { ts, src, line, payload }))
}

/// Sorts the records of `original` into `dir`; returns the plan of the sorted copy.
pub fn sort_inputs(
    original: &Plan,
    validator: &mut Validator,
    dir: &Path,
    run_bytes: usize,
    chunk_bytes: usize,
) -> Result<(Plan, SortedInput), RunError> {
    let io = |e: std::io::Error| RunError::Input(format!("sorting: {e}"));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut runs: Vec<PathBuf> = Vec::new();
    let mut entries: Vec<Entry> = Vec::new();
    let mut bytes = 0usize;
    let mut reader = ChunkReader::default();
    for chunk in &original.chunks {
        let file = &original.files[chunk.file as usize];
        let mut failed = None;
        reader
            .for_each_record(file, chunk, |line, rec| {
                let pos = SourcePos { source: chunk.file, offset: line };
                let payload: Vec<u8> = match &rec {
                    Record::Json(b) => b.to_vec(),
                    Record::Row { raw, .. } => raw.to_vec(),
                    Record::Unreadable { raw, .. } => raw.to_vec(),
                };
                let ts = decode_record(validator, &file.columns, pos, rec).map_or(i64::MIN, |r| r.ts);
                if payload.contains(&b'\n') {
                    failed = Some(format!("{}:{line}: a record spans lines", file.path.display()));
                }
                bytes += payload.len() + 32;
                entries.push(Entry { ts, src: chunk.file, line, payload });
            })
            .map_err(|e| RunError::Input(e.to_string()))?;
        if let Some(f) = failed {
            return Err(RunError::Input(f));
        }
        if bytes >= run_bytes {
            let p = dir.join(format!("run-{:05}.bin", runs.len()));
            write_run(&p, &mut entries).map_err(io)?;
            runs.push(p);
            entries.clear();
            bytes = 0;
        }
    }
    entries.sort_by_key(|e| (e.ts, e.src, e.line));
    let out_path = dir.join("sorted.jsonl");
    let mut out = BufWriter::with_capacity(1 << 20, File::create(&out_path).map_err(io)?);
    let mut emit = |e: &Entry| -> std::io::Result<()> {
        write!(out, "{}\t{}\t", e.src, e.line)?;
        out.write_all(&e.payload)?;
        out.write_all(b"\n")
    };
    if runs.is_empty() {
        for e in &entries {
            emit(e).map_err(io)?;
        }
    } else {
        let mut readers: Vec<Box<dyn Read>> = runs
            .iter()
            .map(|p| File::open(p).map(|f| Box::new(BufReader::with_capacity(1 << 20, f)) as Box<dyn Read>))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        let mut mem = entries.into_iter();
        let mut heads: Vec<Option<Entry>> = Vec::new();
        let mut heap = BinaryHeap::new();
        for (i, r) in readers.iter_mut().enumerate() {
            let e = read_entry(r).map_err(io)?;
            if let Some(e) = &e {
                heap.push(Reverse((e.ts, e.src, e.line, i)));
            }
            heads.push(e);
        }
        let mem_idx = readers.len();
        let first = mem.next();
        if let Some(e) = &first {
            heap.push(Reverse((e.ts, e.src, e.line, mem_idx)));
        }
        heads.push(first);
        while let Some(Reverse((_, _, _, i))) = heap.pop() {
            if let Some(e) = heads[i].take() {
                emit(&e).map_err(io)?;
            }
            let next = if i == mem_idx { mem.next() } else { read_entry(&mut readers[i]).map_err(io)? };
            if let Some(e) = &next {
                heap.push(Reverse((e.ts, e.src, e.line, i)));
            }
            heads[i] = next;
        }
    }
    out.flush().map_err(io)?;
    drop(out);
    for r in runs {
        let _ = std::fs::remove_file(r);
    }
    let sorted_plan = plan(&[out_path], chunk_bytes).map_err(|e| RunError::Input(e.to_string()))?;
    let info = SortedInput {
        names: original.files.iter().map(|f| f.path.display().to_string()).collect(),
        columns: original.files.iter().map(|f| f.columns.clone()).collect(),
        csv_sep: original.files.iter().map(|f| if let Format::Csv { sep } = f.format { Some(sep) } else { None }).collect(),
    };
    Ok((sorted_plan, info))
}
