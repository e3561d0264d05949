//! Reading-to-event latency of a `vigil run`, for `benches/kafka.sh latency`: reads the input
//! topic and the anomalies output topic back and compares Kafka message timestamps (both set
//! when the message was produced, so "readable" on the broker's side).
//!
//! - Hard-limit alerts: alert timestamp − timestamp of the reading it names (by reading id).
//! - Window events (robust anomalies on a closed window): event timestamp − the moment the
//!   window could close: when every partition had a message with event time ≥ window end +
//!   lateness (the watermark passing the window).
//!
//! Window events are robust anomalies and predictions (both emitted when a window closes; their
//! `ts` is the window's end).
//!
//! Create the input topic with `message.timestamp.type=LogAppendTime` (`--log-append-time`
//! below does) so an input message's timestamp is when it became readable on the broker.
//!
//! Usage: `kafka_latency BROKERS INPUT_TOPIC ANOMALIES_TOPIC PREDICTIONS_TOPIC LATENESS_MS`.
//! Prints p50/p99/max.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

type Msg = (i32, i64, Vec<u8>); // partition, timestamp ms, payload

fn read_all(brokers: &str, topic: &str) -> Result<Vec<Msg>, Box<dyn std::error::Error>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("latency-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "1048576")
        .set("max.partition.fetch.bytes", "262144")
        .create()?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    let mut total = 0;
    for p in md.topics()[0].partitions() {
        let (_, high) = c.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
        total += high;
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let mut out = Vec::with_capacity(total as usize);
    while (out.len() as i64) < total {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(500)) {
            out.push((m.partition(), m.timestamp().to_millis().unwrap_or(0), m.payload().unwrap_or_default().to_vec()));
        }
    }
    Ok(out)
}

fn percentiles(name: &str, mut v: Vec<i64>) {
    if v.is_empty() {
        println!("{name}: none");
        return;
    }
    v.sort_unstable();
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    println!("{name}: n={} p50_ms={} p99_ms={} max_ms={}", v.len(), p(0.5), p(0.99), v[v.len() - 1]);
}

/// `kafka_latency create BROKERS TOPIC`: 8 partitions, timestamps set by the broker on append.
fn create(brokers: &str, topic: &str) -> Result<(), Box<dyn std::error::Error>> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let topic = NewTopic::new(topic, 8, TopicReplication::Fixed(1)).set("message.timestamp.type", "LogAppendTime");
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
    for r in rt.block_on(admin.create_topics(&[topic], &AdminOptions::new()))? {
        r.map_err(|(t, e)| format!("creating {t}: {e}"))?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if let [cmd, brokers, topic] = &a[..] {
        if cmd == "create" {
            return create(brokers, topic);
        }
    }
    let [brokers, input, anomalies, predictions, lateness] = &a[..] else {
        return Err("usage: kafka_latency BROKERS INPUT_TOPIC ANOMALIES_TOPIC PREDICTIONS_TOPIC LATENESS_MS".into());
    };
    let lateness: i64 = lateness.parse()?;
    // Input: reading id → message time; per partition, (event time, message time) in order.
    let mut by_id: HashMap<String, i64> = HashMap::new();
    let mut parts: BTreeMap<i32, Vec<(i64, i64)>> = BTreeMap::new();
    for (p, t, payload) in read_all(brokers, input)? {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&payload) else { continue };
        let (Some(sensor), Some(value), Some(ts)) = (v["sensor_id"].as_str(), v["value"].as_f64(), v["ts"].as_str()) else {
            continue;
        };
        let Ok(ts) = vigil_events::parse_timestamp_str(ts) else { continue };
        by_id.insert(format!("{:016x}", vigil_events::derived_reading_hash(sensor, ts, value)), t);
        parts.entry(p).or_default().push((ts, t));
    }
    // Running maximum of event time per partition, to find when a watermark was first reachable.
    for v in parts.values_mut() {
        let mut m = i64::MIN;
        for e in v.iter_mut() {
            m = m.max(e.0);
            e.0 = m;
        }
    }
    let ready_at = |w: i64| -> Option<i64> {
        let mut at = i64::MIN;
        for v in parts.values() {
            // A window closes once the watermark (max event time − lateness) is past its end.
            let i = v.partition_point(|(m, _)| *m <= w + lateness);
            at = at.max(v.get(i)?.1);
        }
        Some(at)
    };
    let mut seen = std::collections::HashSet::new();
    let (mut hard, mut window) = (Vec::new(), Vec::new());
    let mut events = read_all(brokers, anomalies)?;
    events.extend(read_all(brokers, predictions)?);
    for (_, t, payload) in events {
        let v: serde_json::Value = serde_json::from_slice(&payload)?;
        // The first copy of each event counts (the stage's copy of an arrival alert follows).
        if !seen.insert(v["event_id"].as_str().unwrap_or_default().to_string()) {
            continue;
        }
        match v["detector"].as_str() {
            Some("hard_limit") => {
                if let Some(sent) = v["correlation_id"].as_str().and_then(|id| by_id.get(id)) {
                    hard.push(t - sent);
                }
            }
            Some("robust_zscore") | None => {
                if let Some(ready) = v["ts"].as_i64().and_then(ready_at) {
                    window.push(t - ready);
                }
            }
            _ => {}
        }
    }
    percentiles("hard_limit_alert_latency", hard);
    percentiles("window_event_latency", window);
    Ok(())
}
