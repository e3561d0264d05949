//! The embedded log: a durable, partitioned record log on local disk, for a pipeline that runs
//! without a Kafka broker (`vigil serve` with the simulator or REST ingest).
//!
//! It gives the streaming run what a Kafka topic gives it — records at offsets per partition,
//! read from where the history's manifest says to resume — so the same exactly-once machinery
//! applies: an appended record is acknowledged only once it is fsynced, the reader sees only
//! fsynced records (a crash never takes back a record the history already holds), and segments
//! are deleted only once the history has committed past them.
//!
//! Layout: `DATA/_log/<topic>/p<partition>/<base offset>.seg`; a record is `len: u32 LE`,
//! `crc32: u32 LE`, then `len` bytes. A torn tail (a crash mid-append, never acknowledged) is
//! cut off at open. Input: payloads with a key (the partition is the key's hash). Output:
//! [`Polled`] records through [`LocalLogReader`]. State: per partition the segments, the durable
//! end, and the reader's position.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::kafka::{OwnedRecord, PartitionOwner, Polled};
use crate::{ConnectorError, Result};

/// Folder of the embedded logs under the data directory.
pub const LOG_DIR: &str = "_log";
/// A segment is closed once it holds this many bytes.
const SEGMENT_BYTES: u64 = 64 << 20;
/// Largest record.
const MAX_RECORD: u32 = 16 << 20;

fn crc32(data: &[u8]) -> u32 {
    // CRC-32 (IEEE), bitwise: records are small and the log is bound by fsync, not by this.
    let mut crc = !0u32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

struct Segment {
    base: i64,
    path: PathBuf,
}

struct PartitionState {
    dir: PathBuf,
    segments: Vec<Segment>,
    /// Next offset to assign.
    next: i64,
    /// Open file of the last segment, and its size.
    file: Option<(File, u64)>,
}

struct Part {
    state: Mutex<PartitionState>,
    /// Offsets below this are on disk (readers stop here).
    durable: AtomicI64,
}

/// An embedded log with a fixed number of partitions.
pub struct LocalLog {
    topic: String,
    parts: Vec<Part>,
    /// Woken when records become durable.
    signal: (Mutex<u64>, Condvar),
    append_lock: Mutex<()>,
    closed: AtomicBool,
}

/// Reads a segment: the records' (offset, payload) from `base`, and the length of the whole
/// records (a torn tail is not counted).
fn scan_segment(path: &Path, base: i64, mut visit: impl FnMut(i64, &[u8])) -> Result<(i64, u64)> {
    let file = File::open(path).map_err(|e| ConnectorError::io(path, e))?;
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut offset = base;
    let mut good = 0u64;
    let mut head = [0u8; 8];
    let mut buf = Vec::new();
    loop {
        if r.read_exact(&mut head).is_err() {
            break;
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > MAX_RECORD {
            break;
        }
        buf.resize(len as usize, 0);
        if r.read_exact(&mut buf).is_err() || crc32(&buf) != crc {
            break;
        }
        visit(offset, &buf);
        offset += 1;
        good += 8 + u64::from(len);
    }
    Ok((offset, good))
}

impl LocalLog {
    /// Opens (or creates) the log `topic` under `data_dir` with `partitions` partitions (an
    /// existing log keeps its own count). Torn tails are cut off.
    pub fn open(data_dir: &Path, topic: &str, partitions: usize) -> Result<Arc<LocalLog>> {
        let root = data_dir.join(LOG_DIR).join(topic);
        fs::create_dir_all(&root).map_err(|e| ConnectorError::io(&root, e))?;
        let existing = fs::read_dir(&root)
            .map_err(|e| ConnectorError::io(&root, e))?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('p'))
            .count();
        let n = if existing > 0 { existing } else { partitions.max(1) };
        let mut parts = Vec::with_capacity(n);
        for p in 0..n {
            let dir = root.join(format!("p{p}"));
            fs::create_dir_all(&dir).map_err(|e| ConnectorError::io(&dir, e))?;
            let mut segments: Vec<Segment> = fs::read_dir(&dir)
                .map_err(|e| ConnectorError::io(&dir, e))?
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().to_string();
                    let base = name.strip_suffix(".seg")?.parse::<i64>().ok()?;
                    Some(Segment { base, path: e.path() })
                })
                .collect();
            segments.sort_by_key(|s| s.base);
            let mut next = segments.first().map_or(0, |s| s.base);
            if let Some(last) = segments.last() {
                let (end, good) = scan_segment(&last.path, last.base, |_, _| {})?;
                let f = OpenOptions::new().write(true).open(&last.path).map_err(|e| ConnectorError::io(&last.path, e))?;
                if f.metadata().map_err(|e| ConnectorError::io(&last.path, e))?.len() > good {
                    tracing::warn!(path = %last.path.display(), "embedded log: cutting a torn tail (never acknowledged)");
                    f.set_len(good).map_err(|e| ConnectorError::io(&last.path, e))?;
                    f.sync_all().map_err(|e| ConnectorError::io(&last.path, e))?;
                }
                next = end;
            }
            parts.push(Part {
                state: Mutex::new(PartitionState { dir, segments, next, file: None }),
                durable: AtomicI64::new(next),
            });
        }
        Ok(Arc::new(LocalLog {
            topic: topic.to_string(),
            parts,
            signal: (Mutex::new(0), Condvar::new()),
            append_lock: Mutex::new(()),
            closed: AtomicBool::new(false),
        }))
    }

    /// The topic name (what the history's manifest records positions under).
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Number of partitions.
    pub fn partitions(&self) -> usize {
        self.parts.len()
    }

    /// The partition of a key.
    pub fn partition_of(&self, key: &[u8]) -> usize {
        (vigil_events::StableHasher::default().write(key).finish() % self.parts.len() as u64) as usize
    }

    /// Each partition's end (next offset).
    pub fn end_offsets(&self) -> BTreeMap<i32, i64> {
        self.parts.iter().enumerate().map(|(p, part)| (p as i32, part.durable.load(Ordering::Acquire))).collect()
    }

    /// Appends `(key, payload)` records and returns once they are on disk (one fsync per
    /// partition touched). Appends are serialised; concurrent callers queue.
    pub fn append(&self, records: &[(&[u8], &[u8])]) -> Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(ConnectorError::io(Path::new(LOG_DIR), std::io::Error::other("the embedded log is closed")));
        }
        let mut by_part: BTreeMap<usize, Vec<&[u8]>> = BTreeMap::new();
        for (k, v) in records {
            by_part.entry(self.partition_of(k)).or_default().push(v);
        }
        let _serial = self.append_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (p, payloads) in by_part {
            let part = &self.parts[p];
            let mut st = part.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut buf = Vec::with_capacity(payloads.iter().map(|v| v.len() + 8).sum());
            for v in &payloads {
                let len = u32::try_from(v.len()).ok().filter(|l| *l <= MAX_RECORD).ok_or_else(|| {
                    ConnectorError::io(&st.dir, std::io::Error::other(format!("record of {} bytes is over the limit", v.len())))
                })?;
                buf.extend_from_slice(&len.to_le_bytes());
                buf.extend_from_slice(&crc32(v).to_le_bytes());
                buf.extend_from_slice(v);
            }
            if st.file.as_ref().is_none_or(|(_, size)| *size >= SEGMENT_BYTES) {
                // After a restart, go on in the last segment while it has room; else start one
                // at the next offset.
                let last_size = match (&st.file, st.segments.last()) {
                    (None, Some(last)) => fs::metadata(&last.path).map(|m| m.len()).ok().filter(|s| *s < SEGMENT_BYTES),
                    _ => None,
                };
                if let (Some(size), Some(last)) = (last_size, st.segments.last()) {
                    let path = last.path.clone();
                    let f = OpenOptions::new().append(true).open(&path).map_err(|e| ConnectorError::io(&path, e))?;
                    st.file = Some((f, size));
                } else {
                    let base = st.next;
                    let path = st.dir.join(format!("{base:020}.seg"));
                    let f = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| ConnectorError::io(&path, e))?;
                    if let Ok(d) = File::open(&st.dir) {
                        let _ = d.sync_all();
                    }
                    st.segments.push(Segment { base, path });
                    st.file = Some((f, 0));
                }
            }
            let count = payloads.len() as i64;
            let dir = st.dir.clone();
            let (f, size) = st.file.as_mut().ok_or_else(|| ConnectorError::io(&dir, std::io::Error::other("no segment")))?;
            f.write_all(&buf).map_err(|e| ConnectorError::io(&dir, e))?;
            f.sync_data().map_err(|e| ConnectorError::io(&dir, e))?;
            *size += buf.len() as u64;
            st.next += count;
            part.durable.store(st.next, Ordering::Release);
        }
        let (m, cv) = &self.signal;
        *m.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
        cv.notify_all();
        Ok(())
    }

    /// Deletes the segments of partition `p` that hold only offsets below `offset` (the history
    /// has committed past them). The segment being written is kept.
    pub fn truncate_before(&self, p: i32, offset: i64) {
        let Some(part) = self.parts.get(p as usize) else { return };
        let mut st = part.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while st.segments.len() > 1 && st.segments[1].base <= offset {
            let s = st.segments.remove(0);
            if let Err(e) = fs::remove_file(&s.path) {
                tracing::warn!(path = %s.path.display(), error = %e, "embedded log: cannot delete a consumed segment");
            }
        }
    }

    /// Stops appends (readers go on to the end).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let (_, cv) = &self.signal;
        cv.notify_all();
    }

    fn wait(&self, seen: u64, timeout: Duration) -> u64 {
        let (m, cv) = &self.signal;
        let g = m.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *g != seen {
            return *g;
        }
        let (g, _) = cv.wait_timeout(g, timeout).unwrap_or_else(std::sync::PoisonError::into_inner);
        *g
    }

    fn segment_for(&self, p: usize, offset: i64) -> Option<(i64, PathBuf)> {
        let st = self.parts[p].state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        st.segments.iter().rev().find(|s| s.base <= offset).map(|s| (s.base, s.path.clone()))
    }

    fn segment_after(&self, p: usize, base: i64) -> Option<(i64, PathBuf)> {
        let st = self.parts[p].state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        st.segments.iter().find(|s| s.base > base).map(|s| (s.base, s.path.clone()))
    }
}

struct Cursor {
    /// Next offset to return.
    next: i64,
    /// Open segment: its base, reader, and the offset the reader is at.
    reader: Option<(i64, BufReader<File>, i64)>,
    at_end_reported: bool,
}

/// A reader of every partition of a [`LocalLog`], for the streaming run (one reader a log).
pub struct LocalLogReader {
    log: Arc<LocalLog>,
    owner: Arc<dyn PartitionOwner>,
    cursors: Mutex<Option<BTreeMap<usize, Cursor>>>,
    paused: Mutex<Vec<i32>>,
    seen: Mutex<u64>,
    rr: Mutex<usize>,
}

impl LocalLogReader {
    /// A reader; on its first poll every partition is assigned through `owner`, which says
    /// where each starts.
    pub fn new(log: Arc<LocalLog>, owner: Arc<dyn PartitionOwner>) -> Self {
        LocalLogReader {
            log,
            owner,
            cursors: Mutex::new(None),
            paused: Mutex::new(Vec::new()),
            seen: Mutex::new(0),
            rr: Mutex::new(0),
        }
    }

    fn read_one(&self, p: usize, c: &mut Cursor) -> std::result::Result<Option<Vec<u8>>, String> {
        let durable = self.log.parts[p].durable.load(Ordering::Acquire);
        if c.next >= durable {
            return Ok(None);
        }
        loop {
            if c.reader.is_none() {
                let Some((base, path)) = self.log.segment_for(p, c.next) else {
                    return Err(format!("offset {} of partition {p} is no longer in the log", c.next));
                };
                let f = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                c.reader = Some((base, BufReader::with_capacity(1 << 18, f), base));
            }
            let Some((base, r, at)) = c.reader.as_mut() else { return Ok(None) };
            let mut head = [0u8; 8];
            match r.read_exact(&mut head) {
                Ok(()) => {}
                Err(_) => {
                    // End of this segment: records up to `durable` are whole, so the rest is in
                    // the next one (this one is full).
                    let Some((nb, path)) = self.log.segment_after(p, *base) else { return Ok(None) };
                    let f = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                    c.reader = Some((nb, BufReader::with_capacity(1 << 18, f), nb));
                    continue;
                }
            }
            let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
            let mut buf = vec![0u8; len];
            r.read_exact(&mut buf).map_err(|e| format!("partition {p}: {e}"))?;
            let this = *at;
            *at += 1;
            if this < c.next {
                continue;
            }
            c.next = this + 1;
            return Ok(Some(buf));
        }
    }

    /// Waits up to `timeout` for the next record or event.
    pub fn poll(&self, timeout: Duration) -> Polled {
        let mut guard = self.cursors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.is_none() {
            let parts: Vec<i32> = (0..self.log.partitions() as i32).collect();
            let starts = self.owner.assigned(&parts);
            let mut cursors = BTreeMap::new();
            for p in 0..self.log.partitions() {
                let first = {
                    let st = self.log.parts[p].state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    st.segments.first().map_or(st.next, |s| s.base)
                };
                let start = starts.get(&(p as i32)).copied().flatten().unwrap_or(first).max(first);
                cursors.insert(p, Cursor { next: start, reader: None, at_end_reported: false });
            }
            *guard = Some(cursors);
        }
        let Some(cursors) = guard.as_mut() else { return Polled::Nothing };
        let paused = self.paused.lock().map(|p| p.clone()).unwrap_or_default();
        let n = self.log.partitions();
        for _attempt in 0..2 {
            let start = {
                let mut rr = self.rr.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                *rr = (*rr + 1) % n;
                *rr
            };
            for i in 0..n {
                let p = (start + i) % n;
                if paused.contains(&(p as i32)) {
                    continue;
                }
                let Some(c) = cursors.get_mut(&p) else { continue };
                match self.read_one(p, c) {
                    Ok(Some(payload)) => {
                        c.at_end_reported = false;
                        return Polled::Record(OwnedRecord { partition: p as i32, offset: c.next - 1, payload });
                    }
                    Ok(None) => {
                        if !c.at_end_reported {
                            c.at_end_reported = true;
                            return Polled::PartitionEnd(p as i32);
                        }
                    }
                    Err(e) => return Polled::Error(e),
                }
            }
            // Nothing anywhere: wait for an append.
            let seen = *self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = self.log.wait(seen, timeout);
            *self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = now;
            if now == seen {
                return Polled::Nothing;
            }
        }
        Polled::Nothing
    }

    /// Stops returning `pause` and returns `resume` again.
    pub fn pause_resume(&self, pause: &[i32], resume: &[i32]) {
        if let Ok(mut p) = self.paused.lock() {
            p.retain(|x| !resume.contains(x));
            p.extend_from_slice(pause);
        }
    }

    /// The history committed up to `next_offsets`: the log may drop what is before.
    pub fn commit(&self, next_offsets: &BTreeMap<i32, i64>) {
        for (p, o) in next_offsets {
            self.log.truncate_before(*p, *o);
        }
    }

    /// Records not read yet.
    pub fn lag(&self) -> Option<i64> {
        let guard = self.cursors.lock().ok()?;
        let cursors = guard.as_ref()?;
        Some(cursors.iter().map(|(p, c)| (self.log.parts[*p].durable.load(Ordering::Acquire) - c.next).max(0)).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FromStart(BTreeMap<i32, Option<i64>>);
    impl PartitionOwner for FromStart {
        fn assigned(&self, partitions: &[i32]) -> BTreeMap<i32, Option<i64>> {
            partitions.iter().map(|p| (*p, self.0.get(p).copied().flatten())).collect()
        }
        fn revoking(&self, _: &[i32]) {}
    }

    fn drain(r: &LocalLogReader) -> Vec<(i32, i64, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            match r.poll(Duration::from_millis(20)) {
                Polled::Record(rec) => out.push((rec.partition, rec.offset, rec.payload)),
                Polled::PartitionEnd(_) => {}
                Polled::Nothing => return out,
                Polled::Error(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn records_are_read_back_in_order_per_partition_and_resume_where_told() {
        let dir = tempfile::tempdir().unwrap();
        let log = LocalLog::open(dir.path(), "t", 3).unwrap();
        let recs: Vec<(Vec<u8>, Vec<u8>)> =
            (0..100).map(|i| (format!("s{}", i % 7).into_bytes(), format!("v{i}").into_bytes())).collect();
        let refs: Vec<(&[u8], &[u8])> = recs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
        log.append(&refs[..60]).unwrap();
        log.append(&refs[60..]).unwrap();
        let r = LocalLogReader::new(log.clone(), Arc::new(FromStart(BTreeMap::new())));
        let got = drain(&r);
        assert_eq!(got.len(), 100);
        for p in 0..3 {
            let offsets: Vec<i64> = got.iter().filter(|g| g.0 == p).map(|g| g.1).collect();
            assert_eq!(offsets, (0..offsets.len() as i64).collect::<Vec<_>>(), "partition {p}");
        }
        // Same key, same partition, in append order.
        let s0: Vec<&Vec<u8>> = got.iter().filter(|g| g.0 == log.partition_of(b"s0") as i32).map(|g| &g.2).collect();
        assert!(s0.windows(2).all(|w| w[0] != w[1]));
        assert_eq!(r.lag(), Some(0));
        drop(r);
        // Reopen and resume partition 0 at offset 5: 5 fewer records.
        let log = LocalLog::open(dir.path(), "t", 9).unwrap();
        assert_eq!(log.partitions(), 3, "an existing log keeps its partition count");
        let r = LocalLogReader::new(log.clone(), Arc::new(FromStart([(0, Some(5))].into_iter().collect())));
        assert_eq!(drain(&r).len(), 95);
    }

    #[test]
    fn a_torn_tail_is_cut_and_appends_go_on_from_the_last_whole_record() {
        let dir = tempfile::tempdir().unwrap();
        let log = LocalLog::open(dir.path(), "t", 1).unwrap();
        log.append(&[(b"k".as_slice(), b"one".as_slice()), (b"k", b"two")]).unwrap();
        drop(log);
        let seg = dir.path().join(LOG_DIR).join("t/p0").join(format!("{:020}.seg", 0));
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let log = LocalLog::open(dir.path(), "t", 1).unwrap();
        assert_eq!(log.end_offsets()[&0], 2);
        log.append(&[(b"k".as_slice(), b"three".as_slice())]).unwrap();
        let r = LocalLogReader::new(log, Arc::new(FromStart(BTreeMap::new())));
        let got: Vec<Vec<u8>> = drain(&r).into_iter().map(|g| g.2).collect();
        assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
    }

    #[test]
    fn a_reader_waits_for_appends_from_another_thread() {
        let dir = tempfile::tempdir().unwrap();
        let log = LocalLog::open(dir.path(), "t", 2).unwrap();
        let r = LocalLogReader::new(log.clone(), Arc::new(FromStart(BTreeMap::new())));
        assert!(drain(&r).is_empty());
        let w = log.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            w.append(&[(b"a".as_slice(), b"x".as_slice())]).unwrap();
        });
        let mut got = None;
        for _ in 0..100 {
            if let Polled::Record(rec) = r.poll(Duration::from_millis(50)) {
                got = Some(rec.payload);
                break;
            }
        }
        t.join().unwrap();
        assert_eq!(got, Some(b"x".to_vec()));
    }
}
