//! The files a query reads: one consistent set of complete files, whatever the writers do
//! meanwhile.
//!
//! [`SnapshotStore`] is the object store of every `file://` path a [`crate::History`] reads: the
//! local file system, with two rules on what a listing shows and one on what a read finds.
//!
//! - **A compaction's replaced files are not listed once its merged file is.** `vigil compact`
//!   (`vigil_connectors::compact`) writes its manifest line — the merged file and the files it
//!   replaces — before it moves the merged file into the partition, and moves the replaced files
//!   out after that. A listing that shows a `compacted-*.parquet` therefore leaves out the files
//!   its line names, so no row is read twice while both are there. The lines are read from the
//!   manifest when a merged file not seen before is listed (from where the last read ended).
//! - **A ledger file is not listed while its segment is live.** The planning ledger
//!   (`vigil_connectors::ledger`) compacts segment `n` into `ledger-<n>.parquet` files (one per
//!   table and date) and then renames `_ledger/wal-<n>.jsonl`; the ledger's rows are read from the
//!   live segment ([`crate::ledger_tail`]) until that rename, so a listing leaves those files out
//!   while `wal-<n>.jsonl` exists.
//! - **A replaced file is still read after it is moved.** A query that listed a partition before
//!   a compaction moved its files to `DATA/_compaction/trash/<path>` reads them from there (a
//!   file's name is never used for another file, so the path still means the same bytes); the
//!   trash is emptied once no query can still hold such a plan (`history.replaced_grace_ms`).
//!
//! Input: the data dir. Output: listings and reads of the local file system. State: the
//! compactions read from the manifest so far (merged file → files it replaces).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::object_store::local::LocalFileSystem;
use datafusion::object_store::path::Path;
use datafusion::object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions,
    PutPayload, PutResult, Result,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

/// Folder (under the data dir) where a compaction moves the files it replaced
/// (`vigil_connectors::compact::TRASH_DIR`).
const TRASH_DIR: &str = "_compaction/trash";

/// The local file system as the history's queries see it (see the module doc).
#[derive(Debug)]
pub(crate) struct SnapshotStore {
    inner: LocalFileSystem,
    rules: Arc<Rules>,
}

#[derive(Debug)]
struct Rules {
    data_dir: PathBuf,
    /// The data dir as an object-store path.
    root: Path,
    compactions: Mutex<Compactions>,
}

/// Compactions read from the manifest so far.
#[derive(Debug, Default)]
struct Compactions {
    /// Bytes of the manifest read (whole lines).
    offset: u64,
    /// Merged file → the files it replaces (paths relative to the data dir).
    replaces: HashMap<String, Vec<String>>,
}

impl SnapshotStore {
    /// The store of the history under `data_dir` (an absolute path).
    pub(crate) fn new(data_dir: PathBuf) -> Self {
        let root = Path::from_absolute_path(&data_dir).unwrap_or_else(|_| Path::from(data_dir.to_string_lossy().as_ref()));
        SnapshotStore {
            inner: LocalFileSystem::new(),
            rules: Arc::new(Rules { data_dir, root, compactions: Mutex::new(Compactions::default()) }),
        }
    }
}

impl fmt::Display for SnapshotStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SnapshotStore({})", self.rules.data_dir.display())
    }
}

impl Rules {
    /// `location` relative to the data dir (`<table>/date=D/<name>`), if it is under it.
    fn relative(&self, location: &Path) -> Option<String> {
        let parts: Vec<String> = location.prefix_match(&self.root)?.map(|p| p.as_ref().to_string()).collect();
        (!parts.is_empty()).then(|| parts.join("/"))
    }

    /// Where a compaction moved the file at `location`, if it is a history file.
    fn trashed(&self, location: &Path) -> Option<Path> {
        let rel = self.relative(location)?;
        if rel.starts_with('_') {
            return None;
        }
        Path::from_absolute_path(self.data_dir.join(TRASH_DIR).join(rel)).ok()
    }

    /// The files of a listing a query may read (see the module doc).
    fn visible(&self, metas: Vec<ObjectMeta>) -> Vec<ObjectMeta> {
        let rels: Vec<Option<String>> = metas.iter().map(|m| self.relative(&m.location)).collect();
        let merged: Vec<&str> = rels
            .iter()
            .flatten()
            .filter(|r| file_name(r).starts_with("compacted-") && r.ends_with(".parquet"))
            .map(String::as_str)
            .collect();
        let hidden = if merged.is_empty() { HashSet::new() } else { self.replaced_by(&merged) };
        metas
            .into_iter()
            .zip(rels)
            .filter(|(_, rel)| match rel {
                None => true,
                Some(rel) => !hidden.contains(rel.as_str()) && !self.live_ledger_file(rel),
            })
            .map(|(m, _)| m)
            .collect()
    }

    /// Whether `rel` is a ledger file `ledger-<n>.parquet` whose segment `n` is still live.
    fn live_ledger_file(&self, rel: &str) -> bool {
        let Some(n) = file_name(rel).strip_prefix("ledger-").and_then(|r| r.strip_suffix(".parquet")) else { return false };
        let Ok(n) = n.parse::<u64>() else { return false };
        self.data_dir.join("_ledger").join(format!("wal-{n:08}.jsonl")).exists()
    }

    /// The files the merged files `merged` replace.
    fn replaced_by(&self, merged: &[&str]) -> HashSet<String> {
        let mut c = self.compactions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if merged.iter().any(|m| !c.replaces.contains_key(*m)) {
            if let Err(e) = self.read_manifest(&mut c) {
                tracing::warn!(error = %e, "cannot read the manifest's compactions");
            }
        }
        merged.iter().filter_map(|m| c.replaces.get(*m)).flatten().cloned().collect()
    }

    /// Reads the manifest's compaction lines written since the last read.
    fn read_manifest(&self, c: &mut Compactions) -> std::io::Result<()> {
        let path = self.data_dir.join("_manifest").join("manifest.jsonl");
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let len = f.metadata()?.len();
        if len < c.offset {
            // Not the file read before: start again.
            *c = Compactions::default();
        }
        f.seek(SeekFrom::Start(c.offset))?;
        let mut text = Vec::new();
        f.read_to_end(&mut text)?;
        // Whole lines only: a line being appended is read next time.
        let Some(end) = text.iter().rposition(|b| *b == b'\n') else { return Ok(()) };
        for line in text[..end].split(|b| *b == b'\n') {
            if !line.starts_with(b"{\"compaction\":") {
                continue;
            }
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else { continue };
            let comp = &v["compaction"];
            let (Some(file), Some(replaces)) = (comp["file"]["path"].as_str(), comp["replaces"].as_array()) else { continue };
            c.replaces.insert(file.to_string(), replaces.iter().filter_map(|r| r.as_str().map(str::to_string)).collect());
        }
        c.offset += end as u64 + 1;
        Ok(())
    }
}

fn file_name(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap_or(rel)
}

fn is_not_found(e: &datafusion::object_store::Error) -> bool {
    matches!(e, datafusion::object_store::Error::NotFound { .. })
}

#[async_trait]
impl ObjectStore for SnapshotStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        match self.inner.get_opts(location, options.clone()).await {
            Err(e) if is_not_found(&e) => {
                let Some(moved) = self.rules.trashed(location) else { return Err(e) };
                let mut r = self.inner.get_opts(&moved, options).await.map_err(|_| e)?;
                r.meta.location = location.clone();
                Ok(r)
            }
            r => r,
        }
    }

    // `get_ranges` (how the Parquet reader reads) is the trait's: ranges through `get_opts`.

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        // The rules need the whole listing (a merged file hides its neighbours): collect, filter.
        let listing = self.inner.list(prefix);
        let rules = self.rules.clone();
        futures::stream::once(async move {
            let metas: Vec<ObjectMeta> = listing.try_collect().await?;
            Ok::<_, datafusion::object_store::Error>(futures::stream::iter(
                rules.visible(metas).into_iter().map(Ok::<ObjectMeta, datafusion::object_store::Error>),
            ))
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut r = self.inner.list_with_delimiter(prefix).await?;
        r.objects = self.rules.visible(r.objects);
        Ok(r)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
