//! Kafka through rdkafka (standard Kafka APIs only: any Kafka-protocol broker works).
//!
//! - [`JsonProducer`]: keyed records to a topic, idempotent, with back-pressure when the local
//!   queue is full and `flush` to wait for every acknowledgement (at-least-once outputs).
//! - [`GroupSource`]: a consumer-group member on one topic. It does not pick where partitions
//!   start: on every assignment it asks a [`PartitionOwner`] (the streaming run, which reads its
//!   manifest) for each partition's start offset, and before partitions are taken away it lets
//!   the owner make everything read from them durable. Offsets committed to the group are
//!   informational (for lag monitoring); the manifest decides where reading resumes.
//! - [`ensure_topic`], [`partition_count`], [`end_offsets`]: admin and metadata helpers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;

/// Errors talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum KafkaConnectorError {
    /// The client could not be created or configured.
    #[error("kafka client: {0}")]
    Client(String),
    /// The broker refused or did not answer.
    #[error("kafka: {0}")]
    Broker(String),
}

impl From<KafkaError> for KafkaConnectorError {
    fn from(e: KafkaError) -> Self {
        KafkaConnectorError::Broker(e.to_string())
    }
}

type Result<T> = std::result::Result<T, KafkaConnectorError>;

fn base_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers).set("client.id", "vigil").set("log_level", "4");
    c
}

/// Creates `topic` with `partitions` partitions unless it exists.
pub fn ensure_topic(brokers: &str, topic: &str, partitions: i32, timeout: Duration) -> Result<()> {
    ensure_topics(brokers, &[topic], partitions, timeout)
}

/// Creates each of `topics` with `partitions` partitions unless it exists (one request).
pub fn ensure_topics(brokers: &str, topics: &[&str], partitions: i32, timeout: Duration) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        base_config(brokers).create().map_err(|e| KafkaConnectorError::Client(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| KafkaConnectorError::Client(e.to_string()))?;
    let opts = AdminOptions::new().operation_timeout(Some(timeout)).request_timeout(Some(timeout));
    let new: Vec<NewTopic<'_>> = topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1))).collect();
    let results = rt.block_on(admin.create_topics(&new, &opts))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => return Err(KafkaConnectorError::Broker(format!("creating topic {t}: {code}"))),
        }
    }
    Ok(())
}

/// The number of partitions of `topic` (0 when it does not exist).
pub fn partition_count(brokers: &str, topic: &str, timeout: Duration) -> Result<usize> {
    let c: BaseConsumer = base_config(brokers).create().map_err(|e| KafkaConnectorError::Client(e.to_string()))?;
    count_partitions(&c, topic, timeout)
}

fn count_partitions(c: &BaseConsumer, topic: &str, timeout: Duration) -> Result<usize> {
    let md = c.fetch_metadata(Some(topic), timeout)?;
    Ok(md.topics().iter().find(|t| t.name() == topic).map_or(0, |t| t.partitions().len()))
}

/// The end (high watermark) of every partition of `topic`.
pub fn end_offsets(brokers: &str, topic: &str, timeout: Duration) -> Result<BTreeMap<i32, i64>> {
    let c: BaseConsumer = base_config(brokers).create().map_err(|e| KafkaConnectorError::Client(e.to_string()))?;
    let n = count_partitions(&c, topic, timeout)?;
    let mut out = BTreeMap::new();
    for p in 0..n as i32 {
        let (_, high) = c.fetch_watermarks(topic, p, timeout)?;
        out.insert(p, high);
    }
    Ok(out)
}

/// A producer of keyed records (idempotent: retries never duplicate within a session).
pub struct JsonProducer {
    inner: ThreadedProducer<DefaultProducerContext>,
}

impl JsonProducer {
    /// Connects (lazily: the first send or flush finds out whether the broker answers).
    pub fn new(brokers: &str) -> Result<Self> {
        let inner = base_config(brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "200000")
            .set("compression.type", "lz4")
            .set("message.timeout.ms", "300000")
            .create()
            .map_err(|e| KafkaConnectorError::Client(e.to_string()))?;
        Ok(JsonProducer { inner })
    }

    /// Queues one record; waits while the local queue is full.
    pub fn send(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<()> {
        let mut record = BaseRecord::to(topic).key(key).payload(payload);
        loop {
            match self.inner.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }

    /// Waits until every queued record is acknowledged (or `timeout`).
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.inner.flush(timeout).map_err(Into::into)
    }
}

/// One message, copied out of the client.
#[derive(Debug, Clone)]
pub struct OwnedRecord {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Payload (empty for a tombstone).
    pub payload: Vec<u8>,
}

/// What a [`GroupSource`] reports from a poll.
#[derive(Debug)]
pub enum Polled {
    /// A message.
    Record(OwnedRecord),
    /// A partition is read to its current end.
    PartitionEnd(i32),
    /// Nothing within the timeout.
    Nothing,
    /// A client error (the client keeps retrying by itself; it is worth a log line).
    Error(String),
}

/// The streaming run's side of partition ownership.
pub trait PartitionOwner: Send + Sync {
    /// Partitions were assigned: where each starts (`None`: at the beginning — the history has
    /// nothing of that partition yet).
    fn assigned(&self, partitions: &[i32]) -> BTreeMap<i32, Option<i64>>;
    /// Partitions are about to be taken away: make everything read from them durable first.
    fn revoking(&self, partitions: &[i32]);
}

/// The consumer context: hands assignments and revocations to the owner.
pub struct GroupContext {
    topic: String,
    owner: Arc<dyn PartitionOwner>,
    /// Records behind the partitions' ends, from the client's statistics (-1: not known yet).
    lag: std::sync::atomic::AtomicI64,
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        // Per-partition consumer lag (end offset minus the next offset to fetch), every
        // `statistics.interval.ms`, without a request to the broker.
        if let Some(t) = statistics.topics.get(&self.topic) {
            let lag: i64 = t.partitions.iter().filter(|(p, _)| **p >= 0).map(|(_, p)| p.consumer_lag.max(0)).sum();
            self.lag.store(lag, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // The end of a partition is news, not an error (it also arrives through `poll`).
        if matches!(error, KafkaError::PartitionEOF(_)) || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF) {
            return;
        }
        tracing::warn!(error = %error, reason, "kafka client");
    }
}

impl ConsumerContext for GroupContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let partitions: Vec<i32> = tpl.elements().iter().filter(|e| e.topic() == self.topic).map(|e| e.partition()).collect();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let starts = self.owner.assigned(&partitions);
                let mut assignment = TopicPartitionList::new();
                for p in &partitions {
                    let offset = match starts.get(p).copied().flatten() {
                        Some(o) => Offset::Offset(o),
                        None => Offset::Beginning,
                    };
                    if let Err(e) = assignment.add_partition_offset(&self.topic, *p, offset) {
                        tracing::error!(partition = p, error = %e, "cannot set the start offset");
                    }
                }
                tracing::info!(?partitions, ?starts, "partitions assigned");
                if let Err(e) = consumer.assign(&assignment) {
                    tracing::error!(error = %e, "assign failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(?partitions, "partitions revoked: committing what was read from them");
                self.owner.revoking(&partitions);
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "unassign failed");
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance failed");
                let _ = consumer.unassign();
            }
        }
    }
}

/// A consumer-group member reading one topic.
pub struct GroupSource {
    consumer: BaseConsumer<GroupContext>,
    topic: String,
}

impl GroupSource {
    /// Joins `group` on `topic`; as static member `member` when given (a restarted process with
    /// the same name takes its place at once instead of waiting for the old session to time out).
    /// `extra` overrides client settings (`key`, `value`).
    pub fn new(
        brokers: &str,
        group: &str,
        member: Option<&str>,
        topic: &str,
        owner: Arc<dyn PartitionOwner>,
        extra: &BTreeMap<String, String>,
    ) -> Result<Self> {
        let mut c = base_config(brokers);
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "true")
            .set("statistics.interval.ms", "1000")
            // New partitions and topics show up within seconds rather than minutes.
            .set("topic.metadata.refresh.interval.ms", "10000")
            // Eager rebalancing: every revocation passes through `PartitionOwner::revoking`.
            .set("partition.assignment.strategy", "range,roundrobin")
            .set("session.timeout.ms", "30000")
            // A caught-up consumer's fetch returns within 5 ms of new data (hard-limit alerts are
            // measured at p99 37 ms from readable to published); a backlog fetch returns at once.
            .set("fetch.wait.max.ms", "5")
            .set("queued.min.messages", "20000")
            // Modest fetches (standard settings; `[kafka.consumer]` overrides them): a slow broker
            // assembling a 50 MB fetch response can outlast the client's patience, and the fetch
            // is then retried forever. 1 MiB a fetch still keeps a consumer far ahead of the graph.
            .set("fetch.max.bytes", "1048576")
            .set("max.partition.fetch.bytes", "262144");
        if let Some(m) = member {
            c.set("group.instance.id", m);
        }
        for (k, v) in extra {
            c.set(k, v);
        }
        let consumer: BaseConsumer<GroupContext> = c
            .create_with_context(GroupContext { topic: topic.to_string(), owner, lag: std::sync::atomic::AtomicI64::new(-1) })
            .map_err(|e| KafkaConnectorError::Client(e.to_string()))?;
        consumer.subscribe(&[topic])?;
        Ok(GroupSource { consumer, topic: topic.to_string() })
    }

    /// Waits up to `timeout` for the next message or event (rebalances run inside this call).
    pub fn poll(&self, timeout: Duration) -> Polled {
        match self.consumer.poll(timeout) {
            None => Polled::Nothing,
            Some(Ok(m)) => Polled::Record(OwnedRecord {
                partition: m.partition(),
                offset: m.offset(),
                payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            }),
            Some(Err(KafkaError::PartitionEOF(p))) => Polled::PartitionEnd(p),
            Some(Err(e)) => Polled::Error(e.to_string()),
        }
    }

    /// The partitions currently assigned.
    pub fn assigned(&self) -> Vec<i32> {
        self.consumer
            .assignment()
            .map(|t| t.elements().iter().filter(|e| e.topic() == self.topic).map(|e| e.partition()).collect())
            .unwrap_or_default()
    }

    /// Stops fetching `pause` and fetches `resume` again (records already fetched still arrive).
    pub fn pause_resume(&self, pause: &[i32], resume: &[i32]) -> Result<()> {
        let tpl = |ps: &[i32]| {
            let mut t = TopicPartitionList::new();
            for p in ps {
                t.add_partition(&self.topic, *p);
            }
            t
        };
        if !pause.is_empty() {
            self.consumer.pause(&tpl(pause))?;
        }
        if !resume.is_empty() {
            self.consumer.resume(&tpl(resume))?;
        }
        Ok(())
    }

    /// Commits `next_offsets` to the group (asynchronously unless `sync`).
    pub fn commit(&self, next_offsets: &BTreeMap<i32, i64>, sync: bool) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in next_offsets {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o))?;
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        self.consumer.commit(&tpl, if sync { CommitMode::Sync } else { CommitMode::Async })?;
        Ok(())
    }

    /// Records behind the end of the assigned partitions, as of the client's last statistics
    /// (at most a second old; `None` before the first). Never waits for the broker.
    pub fn lag(&self) -> Option<i64> {
        let l = self.consumer.context().lag.load(std::sync::atomic::Ordering::Relaxed);
        (l >= 0).then_some(l)
    }

    /// Leaves the group (revocations run first) and closes the client.
    pub fn close(self, timeout: Duration) {
        self.consumer.unsubscribe();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline && !self.assigned().is_empty() {
            let _ = self.consumer.poll(Duration::from_millis(50));
        }
    }
}
