//! The catalog of the history: which tables exist, their files, rows and date partitions, read
//! from the Parquet footers only (no data pages).
//! Input: a data directory. Output: a [`Catalog`]. State: none.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::QueryError;

/// One table of the history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableInfo {
    /// Files.
    pub files: Vec<PathBuf>,
    /// Rows, from the footers.
    pub rows: u64,
    /// Date partitions.
    pub partitions: Vec<String>,
    /// Column names of the newest file.
    pub columns: Vec<String>,
}

/// The tables of a history directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// By table name.
    pub tables: BTreeMap<String, TableInfo>,
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "parquet") {
                out.push(p);
            }
        }
    }
}

impl Catalog {
    /// Reads the catalog of `data_dir` (staging and manifest folders, starting with `_`, are not tables).
    pub fn read(data_dir: &Path) -> Result<Catalog, QueryError> {
        let mut cat = Catalog::default();
        let Ok(rd) = std::fs::read_dir(data_dir) else { return Ok(cat) };
        let mut dirs: Vec<PathBuf> = rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
        dirs.sort();
        for d in dirs {
            let name = d.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            if name.starts_with('_') || name.starts_with('.') {
                continue;
            }
            let mut files = Vec::new();
            walk(&d, &mut files);
            let mut info = TableInfo::default();
            for f in &files {
                let err = |e: &dyn std::fmt::Display| QueryError::Read { path: f.display().to_string(), message: e.to_string() };
                let reader = SerializedFileReader::new(File::open(f).map_err(|e| err(&e))?).map_err(|e| err(&e))?;
                let meta = reader.metadata().file_metadata();
                info.rows += meta.num_rows() as u64;
                info.columns = meta.schema_descr().columns().iter().map(|c| c.name().to_string()).collect();
                if let Some(p) =
                    f.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("date="))
                {
                    if !info.partitions.iter().any(|x| x == p) {
                        info.partitions.push(p.to_string());
                    }
                }
            }
            info.files = files;
            cat.tables.insert(name, info);
        }
        Ok(cat)
    }

    /// Rows of a table (0 when absent).
    pub fn rows(&self, table: &str) -> u64 {
        self.tables.get(table).map_or(0, |t| t.rows)
    }
}
