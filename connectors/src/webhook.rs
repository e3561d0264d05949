//! Webhook notifications: anomalies above a severity, maintenance proposals and decisions, POSTed
//! as JSON to the configured targets, with retries; what cannot be delivered is kept as a dead
//! letter.
//!
//! Input: [`Notice`]s from the pipeline's sinks and the API ([`Notifier::notify`] never blocks: a
//! bounded queue, and a notice that finds it full is dead-lettered at once). Output: one POST per
//! notice and matching target, body `{"kind", "event_id", "severity", "event"}`, header
//! `X-Vigil-Event-Id` (delivery is at least once: a receiver deduplicates by it). A target that
//! fails (connection error, timeout, status other than 2xx) is retried with exponential backoff
//! (0.5 s, 1 s, 2 s, ...) up to `max_attempts`; then the notice goes to
//! `DATA/_dead_letters/notifications.jsonl` with the target, the attempts and the last error.
//! State: the queue and one delivery thread.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vigil_events::Severity;

/// Queued notices at most.
const QUEUE: usize = 10_000;

/// What a notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// An anomaly (filtered by `min_severity`).
    Anomaly,
    /// An incident opened, or its severity rose (filtered by `min_severity`; suppressed ones
    /// are not sent).
    Incident,
    /// A maintenance proposal or a change of its status.
    Proposal,
    /// A person's decision.
    Decision,
}

/// One webhook target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    /// Name (in logs and dead letters).
    pub name: String,
    /// URL (http or https).
    pub url: String,
    /// Kinds sent to it (default: all).
    #[serde(default = "all_kinds")]
    pub events: Vec<NoticeKind>,
    /// Least severity of the anomalies sent.
    #[serde(default = "default_severity")]
    pub min_severity: Severity,
    /// Attempts before a notice is dead-lettered.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Time an attempt may take (ms).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn all_kinds() -> Vec<NoticeKind> {
    vec![NoticeKind::Anomaly, NoticeKind::Incident, NoticeKind::Proposal, NoticeKind::Decision]
}
fn default_severity() -> Severity {
    Severity::High
}
fn default_attempts() -> u32 {
    5
}
fn default_timeout() -> u64 {
    5000
}

/// A notice.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notice {
    /// What it is about.
    pub kind: NoticeKind,
    /// The event's id.
    pub event_id: String,
    /// Severity or priority, if it has one.
    pub severity: Option<Severity>,
    /// The event.
    pub event: serde_json::Value,
}

/// A notice that could not be delivered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoticeDeadLetter {
    /// The target.
    pub target: String,
    /// Its URL.
    pub url: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub error: String,
    /// When it was given up (ms).
    pub failed_at: i64,
    /// The notice.
    pub notice: Notice,
}

/// Counts of the notifier.
#[derive(Debug, Default)]
pub struct NotifierStats {
    /// Notices delivered (per target).
    pub delivered: AtomicU64,
    /// Attempts that failed and were retried.
    pub retried: AtomicU64,
    /// Notices dead-lettered.
    pub dead_lettered: AtomicU64,
}

/// Sends notices to the targets from a thread of its own.
pub struct Notifier {
    tx: crossbeam_channel::Sender<Notice>,
    targets: Arc<Vec<WebhookTarget>>,
    dead_letters: PathBuf,
    /// Counts.
    pub stats: Arc<NotifierStats>,
}

fn append_dead_letter(path: &PathBuf, letter: &NoticeDeadLetter) {
    let result = (|| -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let mut line = serde_json::to_vec(letter).map_err(std::io::Error::other)?;
        line.push(b'\n');
        f.write_all(&line)?;
        f.sync_data()
    })();
    if let Err(e) = result {
        tracing::error!(path = %path.display(), error = %e, "cannot write a notification dead letter");
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl WebhookTarget {
    fn wants(&self, n: &Notice) -> bool {
        let graded = matches!(n.kind, NoticeKind::Anomaly | NoticeKind::Incident);
        self.events.contains(&n.kind) && (!graded || n.severity.is_none_or(|s| s >= self.min_severity))
    }
}

fn deliver(agent: &ureq::Agent, target: &WebhookTarget, body: &[u8], event_id: &str) -> Result<(), String> {
    let resp = agent
        .post(&target.url)
        .header("content-type", "application/json")
        .header("x-vigil-event-id", event_id)
        .send(body)
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}

impl Notifier {
    /// Starts the delivery thread; dead letters go under `data_dir/_dead_letters/`. `None`
    /// without targets.
    pub fn start(targets: Vec<WebhookTarget>, data_dir: &std::path::Path) -> Option<Arc<Notifier>> {
        if targets.is_empty() {
            return None;
        }
        let (tx, rx) = crossbeam_channel::bounded::<Notice>(QUEUE);
        let targets = Arc::new(targets);
        let dead_letters = data_dir.join("_dead_letters").join("notifications.jsonl");
        let stats = Arc::new(NotifierStats::default());
        let (t, dl, st) = (targets.clone(), dead_letters.clone(), stats.clone());
        let spawned = std::thread::Builder::new().name("vigil-webhooks".into()).spawn(move || {
            let agents: Vec<ureq::Agent> = t
                .iter()
                .map(|target| {
                    ureq::Agent::config_builder()
                        .timeout_global(Some(Duration::from_millis(target.timeout_ms.max(1))))
                        .http_status_as_error(false)
                        .build()
                        .into()
                })
                .collect();
            for notice in rx {
                let body = match serde_json::to_vec(&notice) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot encode a notice");
                        continue;
                    }
                };
                for (target, agent) in t.iter().zip(&agents) {
                    if !target.wants(&notice) {
                        continue;
                    }
                    let mut backoff = Duration::from_millis(500);
                    let mut last_error = String::new();
                    let mut delivered = false;
                    let attempts = target.max_attempts.max(1);
                    for attempt in 1..=attempts {
                        match deliver(agent, target, &body, &notice.event_id) {
                            Ok(()) => {
                                delivered = true;
                                break;
                            }
                            Err(e) => {
                                last_error = e;
                                if attempt < attempts {
                                    st.retried.fetch_add(1, Ordering::Relaxed);
                                    std::thread::sleep(backoff);
                                    backoff = (backoff * 2).min(Duration::from_secs(30));
                                }
                            }
                        }
                    }
                    if delivered {
                        st.delivered.fetch_add(1, Ordering::Relaxed);
                    } else {
                        tracing::warn!(target = %target.name, event = %notice.event_id, error = %last_error, "notification dead-lettered");
                        st.dead_lettered.fetch_add(1, Ordering::Relaxed);
                        append_dead_letter(
                            &dl,
                            &NoticeDeadLetter {
                                target: target.name.clone(),
                                url: target.url.clone(),
                                attempts,
                                error: last_error,
                                failed_at: now_ms(),
                                notice: notice.clone(),
                            },
                        );
                    }
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the webhook thread: notifications are off");
            return None;
        }
        Some(Arc::new(Notifier { tx, targets, dead_letters, stats }))
    }

    /// Queues a notice for every target that wants it; never blocks (a full queue dead-letters it).
    pub fn notify(&self, notice: Notice) {
        if !self.targets.iter().any(|t| t.wants(&notice)) {
            return;
        }
        if let Err(e) = self.tx.try_send(notice) {
            let notice = e.into_inner();
            self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
            append_dead_letter(
                &self.dead_letters,
                &NoticeDeadLetter {
                    target: "*".into(),
                    url: String::new(),
                    attempts: 0,
                    error: "the notification queue is full".into(),
                    failed_at: now_ms(),
                    notice,
                },
            );
        }
    }

    /// Builds and queues a notice from an event.
    pub fn event<T: Serialize>(&self, kind: NoticeKind, event_id: &str, severity: Option<Severity>, event: &T) {
        match serde_json::to_value(event) {
            Ok(v) => self.notify(Notice { kind, event_id: event_id.to_string(), severity, event: v }),
            Err(e) => tracing::error!(error = %e, "cannot encode an event for notification"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read};
    use std::net::TcpListener;

    /// A webhook receiver answering the given statuses in turn; returns the bodies it got.
    fn receiver(statuses: Vec<u16>) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let mut bodies = Vec::new();
            for status in statuses {
                let (s, _) = l.accept().unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                bodies.push(String::from_utf8(body).unwrap());
                let mut s = s;
                write!(s, "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").unwrap();
            }
            bodies
        });
        (url, h)
    }

    fn target(url: &str, attempts: u32) -> WebhookTarget {
        WebhookTarget {
            name: "t".into(),
            url: url.into(),
            events: all_kinds(),
            min_severity: Severity::High,
            max_attempts: attempts,
            timeout_ms: 2000,
        }
    }

    fn wait(f: impl Fn() -> bool) {
        for _ in 0..200 {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("timed out");
    }

    #[test]
    fn a_failing_target_is_retried_then_gets_the_notice() {
        let dir = tempfile::tempdir().unwrap();
        let (url, h) = receiver(vec![500, 200]);
        let n = Notifier::start(vec![target(&url, 3)], dir.path()).unwrap();
        // Below the severity: not sent at all.
        n.event(NoticeKind::Anomaly, "low-1", Some(Severity::Low), &serde_json::json!({"x": 0}));
        n.event(NoticeKind::Anomaly, "an-1", Some(Severity::Critical), &serde_json::json!({"x": 1}));
        let bodies = h.join().unwrap();
        assert_eq!(bodies.len(), 2, "one failed attempt, one delivery");
        let v: serde_json::Value = serde_json::from_str(&bodies[1]).unwrap();
        assert_eq!(
            (v["kind"].as_str(), v["event_id"].as_str(), v["event"]["x"].as_i64()),
            (Some("anomaly"), Some("an-1"), Some(1))
        );
        wait(|| n.stats.delivered.load(Ordering::Relaxed) == 1);
        assert_eq!(n.stats.retried.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn an_unreachable_target_dead_letters_the_notice() {
        let dir = tempfile::tempdir().unwrap();
        // A port nothing listens on.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", l.local_addr().unwrap());
        drop(l);
        let n = Notifier::start(vec![target(&url, 2)], dir.path()).unwrap();
        n.event(NoticeKind::Decision, "dec-1", None, &serde_json::json!({"decision": "approve"}));
        let path = dir.path().join("_dead_letters/notifications.jsonl");
        wait(|| path.exists() && n.stats.dead_lettered.load(Ordering::Relaxed) == 1);
        let letter: NoticeDeadLetter = serde_json::from_str(std::fs::read_to_string(&path).unwrap().trim()).unwrap();
        assert_eq!((letter.attempts, letter.notice.event_id.as_str()), (2, "dec-1"));
        assert!(!letter.error.is_empty());
    }
}
