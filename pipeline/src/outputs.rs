//! The outputs of a streaming run besides the history: the Kafka output topics, and the
//! webhook notifications (anomalies above a severity and proposals; see
//! `vigil_connectors::webhook`, which never blocks the pipeline).
//!
//! Inputs: the events the history sinks receive (anomalies, incidents, drift, predictions,
//! proposals, decision requests, dead letters). Output: one JSON record per event on its topic, keyed by
//! asset (predictions, proposals, decision requests, anomalies) or sensor (drift, dead letters).
//! Delivery is at least once: a cut waits for every record to be acknowledged before it commits,
//! and a restart from the last commit re-emits what followed it with the same `event_id`s, so
//! consumers deduplicate by `event_id`. State: the producer's queue, and a count of failures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vigil_connectors::kafka::{JsonProducer, KafkaConnectorError};
use vigil_connectors::webhook::{NoticeKind, Notifier};
use vigil_events::{
    event_id, AnomalyDetected, DriftDetected, HumanDecisionRequested, Incident, IncidentStatus, MaintenancePredicted,
    MaintenanceScheduled, RejectedReading,
};

/// Output topic names (an empty name turns that output off).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputTopics {
    /// Anomalies.
    pub anomalies: String,
    /// Drift.
    pub drift: String,
    /// Predictions.
    pub predictions: String,
    /// Maintenance proposals (schedule changes).
    pub schedule: String,
    /// Human decision requests.
    pub decisions: String,
    /// Incident revisions (opened, updated, closed).
    pub incidents: String,
    /// Dead letters: rejected records with their original bytes, partition, offset and reason.
    pub rejected: String,
}

impl Default for OutputTopics {
    fn default() -> Self {
        OutputTopics {
            anomalies: "vigil.anomalies".into(),
            drift: "vigil.drift".into(),
            predictions: "vigil.predictions".into(),
            schedule: "vigil.schedule".into(),
            decisions: "vigil.decisions".into(),
            incidents: "vigil.incidents".into(),
            rejected: "vigil.dead-letters".into(),
        }
    }
}

impl OutputTopics {
    /// Every configured topic.
    pub fn all(&self) -> Vec<&str> {
        [&self.anomalies, &self.drift, &self.predictions, &self.schedule, &self.decisions, &self.incidents, &self.rejected]
            .into_iter()
            .map(String::as_str)
            .filter(|t| !t.is_empty())
            .collect()
    }
}

/// A dead letter as published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Stable id: the same record rejected again gets the same id.
    pub event_id: String,
    /// Input topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: u64,
    /// Reason code.
    pub reason: String,
    /// Human-readable detail.
    pub detail: String,
    /// The original bytes (UTF-8; invalid sequences replaced).
    pub raw: String,
    /// Sensor, when it could be read.
    pub sensor_id: Option<String>,
    /// When it was rejected (RFC 3339).
    pub rejected_at: String,
}

/// Where the pipeline's events go besides the history: the Kafka output topics and the webhooks.
pub struct Outputs {
    kafka: Option<KafkaOutputs>,
    notifier: Option<Arc<Notifier>>,
}

struct KafkaOutputs {
    producer: JsonProducer,
    topics: OutputTopics,
    input_topic: String,
    failures: AtomicU64,
}

impl Outputs {
    /// Connects to `brokers` (and sends to `notifier` too, when given).
    pub fn new(
        brokers: &str,
        topics: OutputTopics,
        input_topic: &str,
        notifier: Option<Arc<Notifier>>,
    ) -> Result<Self, KafkaConnectorError> {
        Ok(Outputs {
            kafka: Some(KafkaOutputs {
                producer: JsonProducer::new(brokers)?,
                topics,
                input_topic: input_topic.to_string(),
                failures: AtomicU64::new(0),
            }),
            notifier,
        })
    }

    /// Webhooks only (no Kafka output topics).
    pub fn notifications(notifier: Arc<Notifier>) -> Self {
        Outputs { kafka: None, notifier: Some(notifier) }
    }

    fn send<T: Serialize>(&self, topic: impl Fn(&OutputTopics) -> &str, key: &str, event: &T) {
        let Some(k) = &self.kafka else { return };
        let topic = topic(&k.topics);
        if topic.is_empty() {
            return;
        }
        let result = serde_json::to_vec(event)
            .map_err(|e| KafkaConnectorError::Client(e.to_string()))
            .and_then(|payload| k.producer.send(topic, key.as_bytes(), &payload));
        if let Err(e) = result {
            if k.failures.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::error!(topic, error = %e, "cannot publish to an output topic");
            }
        }
    }

    pub(crate) fn anomaly(&self, a: &AnomalyDetected) {
        self.send(|t| &t.anomalies, &a.asset_id, a);
        if let Some(n) = &self.notifier {
            n.event(NoticeKind::Anomaly, &a.event_id, Some(a.severity), a);
        }
    }
    pub(crate) fn drift(&self, d: &DriftDetected) {
        self.send(|t| &t.drift, &d.sensor_id, d);
    }
    pub(crate) fn prediction(&self, p: &MaintenancePredicted) {
        self.send(|t| &t.predictions, &p.asset_id, p);
    }
    pub(crate) fn schedule(&self, s: &MaintenanceScheduled) {
        self.send(|t| &t.schedule, &s.asset_id, s);
        if let Some(n) = &self.notifier {
            n.event(NoticeKind::Proposal, &s.event_id, Some(s.priority), s);
        }
    }
    /// A status change people recorded (the API has notified the webhooks already).
    pub(crate) fn schedule_change(&self, s: &MaintenanceScheduled) {
        self.send(|t| &t.schedule, &s.asset_id, s);
    }
    pub(crate) fn incident(&self, i: &Incident) {
        self.send(|t| &t.incidents, &i.asset_id, i);
        // People hear of an incident when it opens and when it grows, not of each revision,
        // and not while its asset is in maintenance.
        if let Some(n) = &self.notifier {
            if !i.suppressed && i.status != IncidentStatus::Closed {
                n.event(NoticeKind::Incident, &i.event_id, Some(i.severity), i);
            }
        }
    }
    pub(crate) fn decision(&self, d: &HumanDecisionRequested) {
        self.send(|t| &t.decisions, &d.asset_id, d);
    }
    pub(crate) fn rejected(&self, r: &RejectedReading) {
        let Some(k) = &self.kafka else { return };
        let partition = r.pos.source as i32;
        let letter = DeadLetter {
            event_id: event_id("dead_letter", &[&k.input_topic, &partition.to_string(), &r.pos.offset.to_string()], 0),
            topic: k.input_topic.clone(),
            partition,
            offset: r.pos.offset,
            reason: r.reason.as_str().to_string(),
            detail: r.detail.clone(),
            raw: String::from_utf8_lossy(&r.raw).into_owned(),
            sensor_id: r.sensor_id.as_deref().map(str::to_string),
            rejected_at: vigil_events::format_rfc3339_ms(r.rejected_at),
        };
        let key = r.sensor_id.as_deref().map_or_else(|| format!("partition-{partition}"), str::to_string);
        self.send(|t| &t.rejected, &key, &letter);
    }

    /// Waits until everything sent is acknowledged. Fails if a send failed since the last flush
    /// (the cut must not commit: the restart re-emits).
    pub(crate) fn flush(&self, timeout: Duration) -> Result<(), KafkaConnectorError> {
        let Some(k) = &self.kafka else { return Ok(()) };
        k.producer.flush(timeout)?;
        let failed = k.failures.swap(0, Ordering::Relaxed);
        if failed > 0 {
            return Err(KafkaConnectorError::Broker(format!("{failed} output records could not be queued")));
        }
        Ok(())
    }
}
