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
//! - **A listing torn by a compaction is taken again.** A directory read while files are renamed
//!   into it and out of it may return neither the merged file (renamed in after the read passed
//!   its place) nor the files it replaces (moved out before the read reached them). After each
//!   listing the manifest is read to its end (every compaction that can have changed the listing
//!   wrote its line before it renamed anything), and a listing that misses a replaced file while
//!   showing neither its merged file nor a later merged file that replaced that one is taken
//!   again (up to [`LIST_ATTEMPTS`] times).
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

/// How many times a listing torn by a compaction is taken (the last one is used, with a warning:
/// only files deleted by hand from a compacted partition can tear every attempt).
const LIST_ATTEMPTS: usize = 8;

/// The local file system as the history's queries see it (see the module doc).
#[derive(Debug)]
pub(crate) struct SnapshotStore {
    inner: Arc<LocalFileSystem>,
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
    /// Replaced file → the merged file that replaced it.
    replaced_in: HashMap<String, String>,
}

impl Compactions {
    /// Whether the listing `listed` (paths relative to the data dir), of the files under `within`
    /// (a folder relative to the data dir, `""` for all; only its direct files when `direct`),
    /// is torn: a compaction's replaced file is missing while neither its merged file nor a
    /// merged file that replaced that one (and so on) is listed.
    fn torn(&self, listed: &HashSet<&str>, within: &str, direct: bool) -> bool {
        let inside = |rel: &str| {
            let dir = rel.rsplit_once('/').map_or("", |(d, _)| d);
            if direct {
                dir == within
            } else {
                within.is_empty() || dir == within || dir.strip_prefix(within).is_some_and(|r| r.starts_with('/'))
            }
        };
        self.replaces
            .iter()
            .filter(|(merged, _)| inside(merged))
            .any(|(merged, replaces)| replaces.iter().any(|r| !listed.contains(r.as_str())) && !self.covered(merged, listed))
    }

    /// Whether `merged` or a merged file that replaced it (and so on) is listed.
    fn covered(&self, merged: &str, listed: &HashSet<&str>) -> bool {
        let mut file = merged;
        // A chain is as long as the compactions of one partition; the bound only guards against
        // a manifest that names a file as replaced by itself.
        for _ in 0..=self.replaces.len() {
            if listed.contains(file) {
                return true;
            }
            match self.replaced_in.get(file) {
                Some(next) => file = next,
                None => return false,
            }
        }
        false
    }
}

impl SnapshotStore {
    /// The store of the history under `data_dir` (an absolute path).
    pub(crate) fn new(data_dir: PathBuf) -> Self {
        let root = Path::from_absolute_path(&data_dir).unwrap_or_else(|_| Path::from(data_dir.to_string_lossy().as_ref()));
        SnapshotStore {
            inner: Arc::new(LocalFileSystem::new()),
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

    /// Whether the listing `metas` of `prefix` is torn by a compaction (see [`Compactions::torn`]);
    /// `direct` when it lists only the files directly in `prefix`.
    fn torn(&self, prefix: Option<&Path>, metas: &[ObjectMeta], direct: bool) -> bool {
        let within = match prefix {
            None => String::new(),
            Some(p) if p.as_ref().trim_end_matches('/') == self.root.as_ref().trim_end_matches('/') => String::new(),
            Some(p) => match self.relative(p) {
                Some(rel) => rel,
                None => return false,
            },
        };
        let rels: Vec<String> = metas.iter().filter_map(|m| self.relative(&m.location)).collect();
        let listed: HashSet<&str> = rels.iter().map(String::as_str).collect();
        let mut c = self.compactions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // To the manifest's end: every compaction that renamed files during the listing is there.
        if let Err(e) = self.read_manifest(&mut c) {
            tracing::warn!(error = %e, "cannot read the manifest's compactions");
            return false;
        }
        c.torn(&listed, &within, direct)
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
            let replaces: Vec<String> = replaces.iter().filter_map(|r| r.as_str().map(str::to_string)).collect();
            for r in &replaces {
                c.replaced_in.insert(r.clone(), file.to_string());
            }
            c.replaces.insert(file.to_string(), replaces);
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
        // The rules need the whole listing (a merged file hides its neighbours): collect, check
        // that no compaction tore it, filter.
        let inner = self.inner.clone();
        let prefix = prefix.cloned();
        let rules = self.rules.clone();
        futures::stream::once(async move {
            let mut attempt = 1;
            let metas = loop {
                let metas: Vec<ObjectMeta> = inner.list(prefix.as_ref()).try_collect().await?;
                if !rules.torn(prefix.as_ref(), &metas, false) {
                    break metas;
                }
                if attempt == LIST_ATTEMPTS {
                    tracing::warn!(prefix = ?prefix, attempts = attempt, "every listing misses files a compaction replaced");
                    break metas;
                }
                attempt += 1;
            };
            Ok::<_, datafusion::object_store::Error>(futures::stream::iter(
                rules.visible(metas).into_iter().map(Ok::<ObjectMeta, datafusion::object_store::Error>),
            ))
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut attempt = 1;
        let mut r = loop {
            let r = self.inner.list_with_delimiter(prefix).await?;
            if attempt == LIST_ATTEMPTS || !self.rules.torn(prefix, &r.objects, true) {
                break r;
            }
            attempt += 1;
        };
        r.objects = self.rules.visible(r.objects);
        Ok(r)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first `n` of two compactions of one partition as the manifest records them: `c1`
    /// replaced `a` and `b`, then `c2` replaced `c1` and `d`.
    fn compactions(n: usize) -> Compactions {
        let mut c = Compactions::default();
        let lines = [("t/date=D/c1", vec!["t/date=D/a", "t/date=D/b"]), ("t/date=D/c2", vec!["t/date=D/c1", "t/date=D/d"])];
        for (merged, replaces) in lines.into_iter().take(n) {
            for r in &replaces {
                c.replaced_in.insert(r.to_string(), merged.to_string());
            }
            c.replaces.insert(merged.to_string(), replaces.into_iter().map(str::to_string).collect());
        }
        c
    }

    fn torn_with(recorded: usize, listed: &[&str], within: &str, direct: bool) -> bool {
        compactions(recorded).torn(&listed.iter().copied().collect(), within, direct)
    }

    fn torn(listed: &[&str], within: &str, direct: bool) -> bool {
        torn_with(2, listed, within, direct)
    }

    #[test]
    fn every_state_a_compaction_passes_through_is_whole() {
        // (compactions recorded when the listing ends, what it lists)
        for (recorded, listed) in [
            // Before c1; c1 recorded, not yet renamed in; renamed in, nothing moved out yet.
            (0, vec!["t/date=D/a", "t/date=D/b", "t/date=D/d", "t/date=D/e"]),
            (1, vec!["t/date=D/a", "t/date=D/b", "t/date=D/d", "t/date=D/e"]),
            (1, vec!["t/date=D/a", "t/date=D/b", "t/date=D/c1", "t/date=D/d"]),
            // c1 done; c2 recorded; c2 renamed in while c1 and d are still there; c2 done.
            (1, vec!["t/date=D/c1", "t/date=D/d"]),
            (2, vec!["t/date=D/c1", "t/date=D/d"]),
            (2, vec!["t/date=D/c1", "t/date=D/c2", "t/date=D/d"]),
            (2, vec!["t/date=D/c2", "t/date=D/e"]),
        ] {
            assert!(!torn_with(recorded, &listed, "", false), "{listed:?}");
            assert!(!torn_with(recorded, &listed, "t", false), "{listed:?}");
            assert!(!torn_with(recorded, &listed, "t/date=D", true), "{listed:?}");
        }
    }

    #[test]
    fn a_listing_taken_before_compactions_recorded_after_it_is_taken_again() {
        // Not torn, but c2 replaced c1, which it does not show: one more listing, no wrong read.
        assert!(torn_with(2, &["t/date=D/a", "t/date=D/b", "t/date=D/d"], "", false));
    }

    #[test]
    fn a_listing_that_missed_both_the_merged_file_and_what_it_replaced_is_torn() {
        // c2 renamed in behind the read, c1 and d moved out ahead of it: only e is left.
        assert!(torn(&["t/date=D/e"], "", false));
        assert!(torn(&["t/date=D/e"], "t", false));
        assert!(torn(&["t/date=D/e"], "t/date=D", true));
        // Part of what c1 replaced, and neither c1 nor c2.
        assert!(torn(&["t/date=D/a", "t/date=D/d"], "", false));
        // Nothing at all of a compacted partition.
        assert!(torn(&[], "t/date=D", true));
        // Listings of other folders are not concerned.
        assert!(!torn(&[], "u", false));
        assert!(!torn(&[], "t/date=E", true));
        assert!(!torn(&[], "t", true));
    }

    /// A directory compacted over and over the way `vigil compact` does it (manifest line, merged
    /// file renamed in, replaced files moved out) while new files arrive, listed in a loop
    /// through the store: every listing's visible files hold every unit committed before it
    /// exactly once. Files are empty: a unit is a file as it was written, a merged file holds the
    /// units of the files it replaced.
    #[test]
    fn listings_stay_whole_while_a_directory_is_compacted_under_them() {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().canonicalize().unwrap();
        let part = data.join("t/date=D");
        let trash = data.join(TRASH_DIR).join("t/date=D");
        let staging = data.join("_compaction/staging");
        for d in [&part, &trash, &staging, &data.join("_manifest")] {
            std::fs::create_dir_all(d).unwrap();
        }
        let units: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let (done, started, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        fn add(part: &std::path::Path, units: &Mutex<HashMap<String, u64>>, name: &str, n: u64) {
            units.lock().unwrap().insert(name.to_string(), n);
            std::fs::write(part.join(name), b"").unwrap();
        }
        for i in 0..40 {
            add(&part, &units, &format!("f-0-{i}.parquet"), 1);
        }
        done.store(40, Ordering::SeqCst);
        started.store(40, Ordering::SeqCst);
        let writer = {
            let (units, done, started, stop) = (units.clone(), done.clone(), started.clone(), stop.clone());
            let (part, trash, staging, data) = (part.clone(), trash.clone(), staging.clone(), data.clone());
            std::thread::spawn(move || {
                use std::io::Write;
                let mut manifest =
                    std::fs::OpenOptions::new().create(true).append(true).open(data.join("_manifest/manifest.jsonl")).unwrap();
                for k in 1..=150u64 {
                    let mut names: Vec<String> =
                        std::fs::read_dir(&part).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
                    names.sort();
                    let merged = format!("compacted-{k:08}.parquet");
                    let total: u64 = names.iter().map(|n| units.lock().unwrap()[n]).sum();
                    units.lock().unwrap().insert(merged.clone(), total);
                    let replaces: Vec<String> = names.iter().map(|n| format!("t/date=D/{n}")).collect();
                    let line =
                        serde_json::json!({"compaction": {"file": {"path": format!("t/date=D/{merged}")}, "replaces": replaces}});
                    writeln!(manifest, "{line}").unwrap();
                    std::fs::write(staging.join(&merged), b"").unwrap();
                    std::fs::rename(staging.join(&merged), part.join(&merged)).unwrap();
                    for n in &names {
                        std::fs::rename(part.join(n), trash.join(n)).unwrap();
                    }
                    // New files arrive.
                    started.fetch_add(40, Ordering::SeqCst);
                    for i in 0..40 {
                        add(&part, &units, &format!("f-{k}-{i}.parquet"), 1);
                    }
                    done.fetch_add(40, Ordering::SeqCst);
                }
                stop.store(true, Ordering::SeqCst);
            })
        };
        let store = SnapshotStore::new(data.clone());
        let prefix = Path::from_absolute_path(data.join("t")).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (mut listings, mut wrong) = (0, Vec::new());
        while !stop.load(Ordering::SeqCst) {
            let before = done.load(Ordering::SeqCst);
            let metas: Vec<ObjectMeta> = rt.block_on(store.list(Some(&prefix)).try_collect()).unwrap();
            let after = started.load(Ordering::SeqCst);
            let units = units.lock().unwrap();
            let seen: u64 = metas.iter().map(|m| units[m.location.filename().unwrap()]).sum();
            if seen < before || seen > after {
                wrong.push(format!("{seen} units listed, {before} committed before, at most {after} written"));
            }
            listings += 1;
        }
        writer.join().unwrap();
        assert!(listings > 20, "{listings} listings");
        assert!(wrong.is_empty(), "{} of {listings} listings wrong: {:?}", wrong.len(), &wrong[..wrong.len().min(5)]);
    }
}
