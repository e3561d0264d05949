//! The broker's own limit, for `benches/kafka.sh`: a plain rdkafka consumer-group member that
//! reads a topic from the beginning to its end (every partition at end-of-partition) and does
//! nothing with the messages but count their bytes. Prints `records=… bytes=… seconds=…`.
//!
//! Usage: `kafka_raw_consumer BROKERS TOPIC`

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(brokers), Some(topic)) = (args.next(), args.next()) else {
        return Err("usage: kafka_raw_consumer BROKERS TOPIC".into());
    };
    let start = Instant::now();
    let group = format!("raw-{}-{}", std::process::id(), start.elapsed().as_nanos());
    // The same fetch settings as `vigil run`, so both ask the broker for the same work.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "50")
        .set("queued.min.messages", "20000")
        .set("fetch.max.bytes", "1048576")
        .set("max.partition.fetch.bytes", "262144")
        .set("log_level", "3")
        .create()?;
    let partitions = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?.topics()[0].partitions().len();
    consumer.subscribe(&[&topic])?;
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut ended = BTreeSet::new();
    let mut first: Option<Instant> = None;
    while ended.len() < partitions {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                records += 1;
                bytes += m.payload().map_or(0, <[u8]>::len) as u64;
                ended.remove(&m.partition());
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                ended.insert(p);
            }
            Some(Err(e)) => eprintln!("kafka: {e}"),
            None => {}
        }
    }
    let total = start.elapsed().as_secs_f64();
    let reading = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    println!("records={records} bytes={bytes} seconds={total:.2} first_to_last_s={reading:.2}");
    Ok(())
}
