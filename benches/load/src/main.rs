//! Produces N records of S bytes to one partition with librdkafka (acks=1), then consumes
//! them all back from the beginning, and prints records/s and MB/s for both phases. The
//! same run against the gateway and a peer broker gives comparable figures
//! (`docs/BENCHMARKS.md`).
//!
//! usage: iggy-kafka-load BOOTSTRAP TOPIC RECORDS SIZE [PRODUCERS]
//!
//! PRODUCERS (default 1) producer clients, each on its own thread and connection, share the
//! records, so that one client thread's cost does not cap what the broker is shown to take.
//!
//! PARTITIONS (environment, default 1) gives the topic that many partitions; each producer
//! spreads its records over them in turn. CONSUMERS (environment, default 1) above 1
//! consumes with that many consumers of one group (`subscribe`, the broker's group
//! coordinator assigns the partitions), each on its own thread; the rate counts from the
//! first record any of them reads.

use std::time::{Duration, Instant};

use iggy_kafka_load::rate;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (bootstrap, topic, records, size, producers) = match &args[..] {
        [_, b, t, r, s] => (b, t, r, s, 1),
        [_, b, t, r, s, p] => (b, t, r, s, p.parse().expect("PRODUCERS")),
        _ => {
            eprintln!("usage: iggy-kafka-load BOOTSTRAP TOPIC RECORDS SIZE [PRODUCERS]");
            std::process::exit(2);
        }
    };
    let records: usize = records.parse().expect("RECORDS");
    let size: usize = size.parse().expect("SIZE");
    let producers: usize = std::cmp::max(producers, 1);
    let env = |name: &str| -> usize {
        std::env::var(name)
            .ok()
            .map_or(1, |v| v.parse().unwrap_or_else(|_| panic!("{name}: {v}")))
            .max(1)
    };
    let partitions = env("PARTITIONS");
    let consumers = env("CONSUMERS");

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    // LOAD_PHASE=produce or consume runs one phase alone (to measure or profile it), create
    // only creates the topic (for other load tools), recreate deletes it first; both phases
    // by default.
    let phase = std::env::var("LOAD_PHASE").unwrap_or_default();
    if phase == "recreate" {
        let deleted = futures_executor(admin.delete_topics(
            &[topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ));
        for r in deleted.expect("delete topics") {
            if let Err((t, e)) = r {
                if e != RDKafkaErrorCode::UnknownTopicOrPartition {
                    panic!("delete {t}: {e}");
                }
            }
        }
    }
    let created = futures_executor(admin.create_topics(
        &[NewTopic::new(
            topic,
            i32::try_from(partitions).expect("PARTITIONS"),
            TopicReplication::Fixed(1),
        )],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ));
    for r in created.expect("create topics") {
        if let Err((t, e)) = r {
            if e != RDKafkaErrorCode::TopicAlreadyExists {
                panic!("create {t}: {e}");
            }
        }
    }

    if phase == "create" || phase == "recreate" {
        return;
    }
    if phase != "consume" {
        produce_all(bootstrap, topic, records, size, producers, partitions);
    }
    if phase != "produce" {
        if consumers > 1 {
            consume_group(bootstrap, topic, records, size, consumers);
        } else {
            consume(bootstrap, topic, records, size, partitions);
        }
    }
}

fn produce_all(
    bootstrap: &str,
    topic: &str,
    records: usize,
    size: usize,
    producers: usize,
    partitions: usize,
) {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for i in 0..producers {
            let share = records / producers + usize::from(i < records % producers);
            scope.spawn(move || produce(bootstrap, topic, share, size, (i, partitions)));
        }
    });
    rate("produce", records, size, start.elapsed());
}

/// Consumes `records` records with `consumers` members of one group, each on its own
/// thread, until together they have read them all.
fn consume_group(bootstrap: &str, topic: &str, records: usize, size: usize, consumers: usize) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::OnceLock;
    let got = AtomicUsize::new(0);
    let first: OnceLock<Instant> = OnceLock::new();
    let group = format!("iggy-kafka-load-{topic}");
    std::thread::scope(|scope| {
        for _ in 0..consumers {
            scope.spawn(|| {
                let consumer: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", bootstrap)
                    .set("group.id", &group)
                    .set("enable.auto.commit", "false")
                    .set("auto.offset.reset", "earliest")
                    .set("fetch.max.bytes", "52428800")
                    .set("max.partition.fetch.bytes", "10485760")
                    .set("queued.min.messages", "1000000")
                    .create()
                    .expect("consumer");
                consumer.subscribe(&[topic]).expect("subscribe");
                let mut idle = Instant::now();
                while got.load(Ordering::Relaxed) < records {
                    match consumer.poll(Duration::from_millis(100)) {
                        Some(Ok(m)) => {
                            first.get_or_init(Instant::now);
                            assert_eq!(m.payload().map_or(0, <[u8]>::len), size);
                            got.fetch_add(1, Ordering::Relaxed);
                            idle = Instant::now();
                        }
                        Some(Err(e)) => panic!("consume: {e}"),
                        None => assert!(
                            idle.elapsed() < Duration::from_secs(30),
                            "no record for 30 s after {} of {records}",
                            got.load(Ordering::Relaxed)
                        ),
                    }
                }
            });
        }
    });
    let start = first.get().copied().unwrap_or_else(Instant::now);
    rate("consume", records, size, start.elapsed());
}

fn consume(bootstrap: &str, topic: &str, records: usize, size: usize, partitions: usize) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "iggy-kafka-load")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .set("queued.min.messages", "1000000")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(
            topic,
            i32::try_from(p).expect("partition"),
            Offset::Beginning,
        )
        .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let start = Instant::now();
    let mut got = 0;
    while got < records {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => {
                assert_eq!(m.payload().map_or(0, <[u8]>::len), size);
                got += 1;
            }
            Some(Err(e)) => panic!("consume: {e}"),
            None => panic!("no record for 10 s after {got}"),
        }
    }
    rate("consume", records, size, start.elapsed());
}

/// Produces `records` records of `size` bytes with one client, acks=1: producer `i` of
/// several writes its records to each of `partitions` partitions in turn, starting at its
/// own, as iggy-bench's balanced producers do.
fn produce(
    bootstrap: &str,
    topic: &str,
    records: usize,
    size: usize,
    (i, partitions): (usize, usize),
) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "1")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("compression.codec", "none")
        .create()
        .expect("producer");
    let payload = vec![b'x'; size];
    for n in 0..records {
        let partition = i32::try_from((i + n) % partitions).expect("partition");
        let mut record = BaseRecord::<(), [u8]>::to(topic)
            .payload(&payload[..])
            .partition(partition);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => panic!("produce: {e}"),
            }
        }
        // Delivery reports are served now and then, not per record: polling takes locks.
        if n % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
}

/// Runs one future to completion on this thread (the admin client's futures need no
/// runtime).
fn futures_executor<F: std::future::Future>(f: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Thread(std::thread::Thread);
    impl Wake for Thread {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Thread(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}
