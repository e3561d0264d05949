//! Helpers of the Kafka tests: a real broker (started by `scripts/kafka.sh start`, which the
//! README's test command runs), the real `vigil` binary as child processes, and a plain rdkafka
//! consumer to read output topics.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// The broker's address; the test fails (it does not skip) when nothing answers there.
pub fn broker() -> String {
    let b = std::env::var("VIGIL_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    assert!(
        TcpStream::connect_timeout(&b.parse().expect("VIGIL_TEST_BROKERS is host:port"), Duration::from_secs(2)).is_ok(),
        "no Kafka broker on {b}: start one with `scripts/kafka.sh start` (scripts/test.sh does)"
    );
    b
}

/// A name no other test run uses.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{name}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

/// A configuration file with this test's own output topics and commit interval.
pub fn config(dir: &Path, prefix: &str, commit_interval_ms: u64) -> PathBuf {
    config_with(dir, prefix, commit_interval_ms, true)
}

/// [`config`], choosing static or dynamic group membership.
pub fn config_with(dir: &Path, prefix: &str, commit_interval_ms: u64, static_membership: bool) -> PathBuf {
    let path = dir.join("vigil.toml");
    let text = format!(
        r#"
[kafka]
commit_interval_ms = {commit_interval_ms}
static_membership = {static_membership}

[kafka.outputs]
anomalies = "{prefix}.anomalies"
drift = "{prefix}.drift"
predictions = "{prefix}.predictions"
schedule = "{prefix}.schedule"
decisions = "{prefix}.decisions"
rejected = "{prefix}.dead-letters"
"#
    );
    std::fs::write(&path, text).unwrap();
    path
}

pub fn vigil() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vigil"));
    c.env("VIGIL_LOG", "warn,librdkafka=off,rdkafka=off");
    c
}

/// What `vigil simulate --labels` wrote.
#[derive(Debug, serde::Deserialize)]
pub struct Truth {
    pub records: u64,
    pub bad_records: BTreeMap<String, u64>,
}

/// Produces a simulated fleet to `topic` (created with 8 partitions); returns its ground truth.
pub fn simulate(dir: &Path, topic: &str, assets: usize, hours: f64, bad_rate: f64, rate: Option<u64>) -> Truth {
    simulate_with(dir, topic, assets, hours, bad_rate, rate, "2026-01-01T00:00:00Z")
}

/// [`simulate`] from event time `start` (RFC 3339), as fast as the broker takes them.
pub fn simulate_from(dir: &Path, topic: &str, assets: usize, hours: f64, bad_rate: f64, start: &str) -> Truth {
    simulate_with(dir, topic, assets, hours, bad_rate, None, start)
}

fn simulate_with(dir: &Path, topic: &str, assets: usize, hours: f64, bad_rate: f64, rate: Option<u64>, start: &str) -> Truth {
    let labels = dir.join(format!("{topic}-{start}-truth.json"));
    let mut c = vigil();
    c.args(["simulate", "--brokers", &broker(), "--topic", topic, "--labels"]).arg(&labels).args([
        "--assets",
        &assets.to_string(),
        "--hours",
        &hours.to_string(),
        "--bad-rate",
        &bad_rate.to_string(),
    ]);
    c.args(["--start", start]);
    if let Some(r) = rate {
        c.args(["--rate", &r.to_string()]);
    }
    let out = c.output().unwrap();
    assert!(out.status.success(), "simulate failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&std::fs::read(&labels).unwrap()).unwrap()
}

/// A child process killed when dropped (a failing test leaves no `vigil run` behind).
pub struct Running(Option<Child>);

impl Running {
    pub fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.0.as_mut().and_then(|c| c.try_wait().unwrap())
    }
    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    pub fn take(mut self) -> Child {
        self.0.take().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `vigil run` as a child process.
pub fn spawn_run(
    cfg: &Path,
    data_dir: &Path,
    topic: &str,
    group: &str,
    instance: &str,
    workers: usize,
    stop_at_end: bool,
) -> Running {
    let mut c = vigil();
    c.arg("--config").arg(cfg).args(["run", "--brokers", &broker(), "--topic", topic, "--group", group, "--instance", instance]);
    c.arg("--data-dir").arg(data_dir).args(["--workers", &workers.to_string(), "--json"]);
    if stop_at_end {
        c.arg("--stop-at-end");
    }
    Running(Some(c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()))
}

/// Runs `vigil run --stop-at-end` to completion; returns its JSON summary.
pub fn run_to_end(cfg: &Path, data_dir: &Path, topic: &str, group: &str, instance: &str, workers: usize) -> serde_json::Value {
    let child = spawn_run(cfg, data_dir, topic, group, instance, workers, true);
    let out = wait_with_timeout(child.take(), Duration::from_secs(300));
    assert!(out.status.success(), "vigil run failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("summary: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

pub fn wait_with_timeout(mut child: Child, timeout: Duration) -> std::process::Output {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("timed out after {timeout:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends SIGTERM; returns the exit status and how long the child took to exit.
pub fn terminate(child: Running) -> (std::process::Output, Duration) {
    let child = child.take();
    let start = Instant::now();
    let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill -TERM failed");
    let out = wait_with_timeout(child, Duration::from_secs(30));
    (out, start.elapsed())
}

/// Every message of `topic`: (partition, offset, payload).
pub fn consume_all(topic: &str) -> Vec<(i32, i64, Vec<u8>)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let parts: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in &parts {
        let (_, high) = c.fetch_watermarks(topic, *p, Duration::from_secs(10)).unwrap();
        ends.insert(*p, high);
        tpl.add_partition_offset(topic, *p, Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    let total: i64 = ends.values().sum();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while (out.len() as i64) < total && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            out.push((m.partition(), m.offset(), m.payload().unwrap_or_default().to_vec()));
        }
    }
    assert_eq!(out.len() as i64, total, "read {} of {total} messages of {topic}", out.len());
    out
}

/// (source, offset) of every row of an input table, checking none is stored twice.
pub fn positions(data_dir: &Path, table: &str) -> BTreeSet<(String, u64)> {
    let rows = crate::common::table_rows(data_dir, table, &[]);
    let mut set = BTreeSet::new();
    for r in &rows {
        let field = |name: &str| {
            r.split('|')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name} in {r}"))
                .to_string()
        };
        let pos = (field("source"), field("source_offset").parse::<u64>().unwrap());
        assert!(set.insert(pos.clone()), "{table}: {pos:?} stored twice");
    }
    set
}

/// Where the manifest says each partition of `topic` resumes, summed.
pub fn committed_total(data_dir: &Path, topic: &str) -> i64 {
    let commits = vigil_connectors::history::read_manifest(data_dir).unwrap();
    vigil_connectors::history::resume_offsets(&commits, topic).values().sum()
}

/// The topic's end offsets, summed (retrying while a just-restarted broker settles).
pub fn end_total(topic: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match vigil_connectors::kafka::end_offsets(&broker(), topic, Duration::from_secs(10)) {
            Ok(ends) => return ends.values().sum(),
            Err(e) if Instant::now() > deadline => panic!("end offsets of {topic}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}
