//! The backend against [`FakeIggy`], through real lanes, sessions and frames.

mod cluster;
mod mapping;
mod merge;
mod recorded;
mod scram_gateways;
mod transactions;
mod users;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use iggy_kafka_core::backend::{
    Backend, BackendError, Command, CommittedOffset, Completion, Execution, GroupOffset,
    ProducerBatch, TopicConfig, TopicInfo, TopicRef, WatchPartition,
};
use iggy_kafka_core::mapping::{from_iggy, to_iggy, KafkaRecord};
use iggy_kafka_core::protocol::Uuid;
use iggy_kafka_core::records::Header;

use super::{offsets_log as offsets, IggyBackend, IggyConfig};
use crate::testing::BackendPool;
use iggy_kafka_iggy_client::testing::FakeIggy;
use iggy_kafka_iggy_client::testing::Pool;

fn create(h: &mut Pool, backend: &IggyBackend, name: &str, partitions: u32) {
    let c = h.exec(
        backend,
        Command::CreateTopic {
            name: name.into(),
            partitions,
            config: TopicConfig::default(),
            validate_only: false,
        },
    );
    assert!(matches!(c, Completion::CreateTopic(Ok(_))), "{c:?}");
}

fn record(i: usize) -> KafkaRecord {
    KafkaRecord {
        timestamp_ms: 1_700_000_000_000 + i as i64,
        key: (!i.is_multiple_of(3)).then(|| Bytes::from(format!("key-{i}"))),
        value: match i % 4 {
            0 => None,
            1 => Some(Bytes::new()),
            _ => Some(Bytes::from(vec![b'v'; i % 300 + 1])),
        },
        headers: (0..i % 3)
            .map(|j| Header {
                key: if i.is_multiple_of(5) {
                    Bytes::from_static(b"dup")
                } else {
                    Bytes::from(format!("h{j}"))
                },
                value: (j % 2 == 0).then(|| Bytes::from(format!("hv{j}"))),
            })
            .collect(),
        ..KafkaRecord::default()
    }
}

fn append(
    h: &mut Pool,
    backend: &IggyBackend,
    topic: &str,
    partition: u32,
    records: &[KafkaRecord],
    producer: Option<ProducerBatch>,
) -> Result<u64, BackendError> {
    match h.exec(
        backend,
        Command::Append {
            topic: topic.into(),
            partition,
            messages: records.iter().map(to_iggy).collect(),
            largest_batch: 100,
            producer,
        },
    ) {
        Completion::Append(r) => r.map(|a| a.base_offset),
        other => panic!("{other:?}"),
    }
}

fn read(
    h: &mut Pool,
    backend: &IggyBackend,
    topic: &str,
    partition: u32,
    offset: u64,
) -> Result<Vec<(u64, KafkaRecord)>, BackendError> {
    read_up_to(h, backend, topic, partition, offset, 100_000)
}

fn read_up_to(
    h: &mut Pool,
    backend: &IggyBackend,
    topic: &str,
    partition: u32,
    offset: u64,
    max_messages: usize,
) -> Result<Vec<(u64, KafkaRecord)>, BackendError> {
    read_within(h, backend, topic, partition, offset, 1 << 20, max_messages)
}

fn read_within(
    h: &mut Pool,
    backend: &IggyBackend,
    topic: &str,
    partition: u32,
    offset: u64,
    max_bytes: usize,
    max_messages: usize,
) -> Result<Vec<(u64, KafkaRecord)>, BackendError> {
    match h.exec(
        backend,
        Command::Read {
            topic: TopicRef::Name(topic.into()),
            partition,
            offset,
            max_bytes,
            max_messages,
        },
    ) {
        Completion::Read(r) => {
            r.map(|r| r.messages.iter().map(|(o, m)| (o, from_iggy(&m))).collect())
        }
        other => panic!("{other:?}"),
    }
}

/// Reads `n` records of a partition from `offset`, in as many reads as that takes: a
/// partition's first read returns few records while the gateway knows nothing of their
/// size (`crate::read`'s `FIRST_POLL_COUNT`).
fn read_all(
    h: &mut Pool,
    backend: &IggyBackend,
    (topic, partition): (&str, u32),
    offset: u64,
    n: usize,
) -> Vec<(u64, KafkaRecord)> {
    let mut got: Vec<(u64, KafkaRecord)> = Vec::new();
    while got.len() < n {
        let at = offset + got.len() as u64;
        let more = read_up_to(h, backend, topic, partition, at, n - got.len()).expect("a read");
        assert_eq!(more.first().map(|r| r.0), Some(at), "{got:?}");
        got.extend(more);
    }
    got
}

/// Has the gateway learn the size of partition 0 of `topic`'s messages from a read of its
/// first record, and forget that read's polls sent ahead and its pace: later reads are
/// sized as a partition's are once its reads have found its messages.
fn learn_sizes(h: &mut Pool, backend: &IggyBackend, topic: &str) {
    let got = read_up_to(h, backend, topic, 0, 0, 1).expect("a read");
    assert_eq!(got.len(), 1);
    for _ in 0..4 {
        h.serve();
    }
    h.clock.advance(Duration::from_secs(3));
}

#[test]
fn connect_creates_the_stream_and_the_offsets_log() {
    let mut h = Pool::new(FakeIggy::new());
    h.backend();
    assert_eq!(h.fake.stream.as_deref(), Some("kafka"));
    let log = &h.fake.topics[&offsets::topic_name(0)];
    assert_eq!(log.partitions.len(), 1);
    assert_eq!(log.partitions[0].next, 1, "the empty snapshot's marker");
    // Not a Kafka topic.
    let mut h2 = h;
    let backend = h2.backend();
    match h2.exec(&backend, Command::ListTopics { only: None }) {
        Completion::ListTopics(Ok(t)) => assert!(t.is_empty(), "{t:?}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_credentials_fail_connect_with_the_reason() {
    let mut h = Pool::with_password(FakeIggy::new(), "wrong");
    let e = h.connect().expect_err("refused");
    assert!(e.is_refused(), "{e:?}");
    let e = e.to_string();
    assert!(e.contains("login refused (iggy error 42)"), "{e}");
    assert!(!e.contains("wrong"), "{e}");
}

#[test]
fn records_round_trip_through_iggy_messages() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "orders", 3);
    let records: Vec<KafkaRecord> = (0..250).map(record).collect();
    assert_eq!(
        append(&mut h, &backend, "orders", 1, &records[..100], None),
        Ok(0)
    );
    assert_eq!(
        append(&mut h, &backend, "orders", 1, &records[100..], None),
        Ok(100)
    );
    let got = read_all(&mut h, &backend, ("orders", 1), 0, 250);
    for (i, (offset, r)) in got.iter().enumerate() {
        assert_eq!(*offset, i as u64);
        assert_eq!(*r, records[i], "record {i}");
    }
    // From the middle of a stored batch.
    let tail = read(&mut h, &backend, "orders", 1, 120).expect("a read");
    assert_eq!(tail.first().map(|(o, _)| *o), Some(120));
    assert_eq!(tail.len(), 130);
    // At the end: nothing, no error; past it: out of range.
    assert_eq!(read(&mut h, &backend, "orders", 1, 250), Ok(vec![]));
    assert!(matches!(
        read(&mut h, &backend, "orders", 1, 251),
        Err(BackendError::OffsetOutOfRange {
            high_watermark: 250,
            ..
        })
    ));
    match h.exec(
        &backend,
        Command::Offsets {
            topic: TopicRef::Name("orders".into()),
            partition: 1,
        },
    ) {
        Completion::Offsets(Ok(o)) => assert_eq!((o.log_start, o.high_watermark), (0, 250)),
        other => panic!("{other:?}"),
    }
    match h.exec(
        &backend,
        Command::Offsets {
            topic: TopicRef::Name("orders".into()),
            partition: 0,
        },
    ) {
        Completion::Offsets(Ok(o)) => assert_eq!(o.high_watermark, 0, "empty"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn sequential_reads_find_the_next_poll_sent_ahead() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let records: Vec<KafkaRecord> = (0..60).map(record).collect();
    assert_eq!(append(&mut h, &backend, "t", 0, &records, None), Ok(0));
    let before = polls(&h);
    // A read, then the lanes moved on (the polls sent ahead go out), then how many polls
    // the server has seen.
    let read_then_polls = |h: &mut Pool, offset: u64, max: usize, len: usize| {
        let got = read_up_to(h, &backend, "t", 0, offset, max).expect("a read");
        assert_eq!(got.len(), len, "read at {offset}");
        for (i, (o, r)) in got.iter().enumerate() {
            let want = offset as usize + i;
            assert_eq!((*o, r), (want as u64, &records[want]));
        }
        // A lane carries one request at a time: a few rounds let every poll sent ahead out.
        for _ in 0..4 {
            h.serve();
        }
        polls(h) - before
    };
    // The first read polls what it returns and sends the next two polls ahead; each read
    // after it takes one and sends one more.
    assert_eq!(read_then_polls(&mut h, 0, 10, 10), 3);
    assert_eq!(
        read_then_polls(&mut h, 10, 10, 10),
        4,
        "served by a poll sent ahead"
    );
    // Another reader elsewhere polls for itself and keeps the first one's polls.
    assert_eq!(read_then_polls(&mut h, 40, 10, 10), 6);
    // A read that takes part of a poll sent ahead leaves the rest for the next one.
    assert_eq!(
        read_then_polls(&mut h, 20, 5, 5),
        6,
        "the first reader's were kept"
    );
    assert_eq!(
        read_then_polls(&mut h, 25, 5, 5),
        7,
        "the rest of that poll"
    );
    // Polls sent ahead too long ago are not used, and a reader back after a pause this
    // long has one poll sent ahead of it.
    h.clock.advance(Duration::from_secs(2));
    assert_eq!(read_then_polls(&mut h, 30, 10, 10), 9);
    assert_eq!(read_then_polls(&mut h, 40, 10, 10), 10);
    // Caught up: the poll sent ahead holds the rest (no more than it asked for), nothing
    // is polled ahead past Iggy's last offset, and a read there asks Iggy itself.
    assert_eq!(read_then_polls(&mut h, 50, 100, 10), 10);
    assert_eq!(read_then_polls(&mut h, 60, 100, 0), 11);
}

/// A reader that asks for little at a time (a few records' worth of bytes, as a Kafka
/// consumer with a small `max.partition.fetch.bytes` does) gets a poll sent ahead that asks
/// for far more, and its next reads take that one reply in turn instead of a poll each.
#[test]
fn a_small_reader_is_polled_ahead_in_large_polls() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let records: Vec<KafkaRecord> = (0..2_000).map(record).collect();
    // Batches of 20 in Iggy: a read from the middle of the reply steps over those before.
    for (i, chunk) in records.chunks(20).enumerate() {
        assert_eq!(
            append(&mut h, &backend, "t", 0, chunk, None),
            Ok(i as u64 * 20)
        );
    }
    let before = polls(&h);
    let mut offset = 0;
    for n in 0..40 {
        let got = read_within(&mut h, &backend, "t", 0, offset, 2_000, 50_000).expect("a read");
        assert!(!got.is_empty(), "read {n} at {offset}");
        for (o, r) in &got {
            assert_eq!(r, &records[*o as usize]);
        }
        assert_eq!(got[0].0, offset, "read {n}");
        offset = got.last().expect("a record").0 + 1;
        for _ in 0..4 {
            h.serve();
        }
        if n == 0 {
            let aheads = crate::sync::lock(&backend.inner.catalog.partition("t", 0).read_ahead)
                .iter()
                .map(|a| a.count)
                .collect::<Vec<_>>();
            assert_eq!(aheads.len(), 1, "{aheads:?}: one poll ahead holds the rest");
            assert!(aheads[0] >= 1_990, "{aheads:?}");
        }
    }
    assert!(offset > 200, "40 reads of a few records each: {offset}");
    assert_eq!(
        polls(&h) - before,
        2,
        "the first read's own poll, and one sent ahead"
    );
}

/// With the budget for polls sent ahead nearly spent, a poll too large for what is left is
/// sent at the read's own size instead, and the reader still finds it.
#[test]
fn a_large_poll_ahead_the_budget_cannot_hold_is_sent_at_the_reads_size() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let records: Vec<KafkaRecord> = (0..200).map(record).collect();
    assert_eq!(append(&mut h, &backend, "t", 0, &records, None), Ok(0));
    // Room for a few records' worth, not for 512 KiB.
    let reads = &backend.inner.reads;
    reads.hold_read_ahead(crate::read::Reads::BUDGET - 64 * 1024);
    let got = read_within(&mut h, &backend, "t", 0, 0, 2_000, 50_000).expect("a read");
    let first = got.len();
    assert!(first > 1 && first < 200, "{first}");
    let aheads = crate::sync::lock(&backend.inner.catalog.partition("t", 0).read_ahead)
        .iter()
        .map(|a| a.count as usize)
        .collect::<Vec<_>>();
    assert!(!aheads.is_empty(), "a poll ahead was sent");
    assert!(
        aheads.iter().all(|&c| c < 200),
        "{aheads:?}: at the read's size"
    );
    for _ in 0..4 {
        h.serve();
    }
    let before = polls(&h);
    let next = read_within(&mut h, &backend, "t", 0, first as u64, 2_000, 50_000).expect("a read");
    assert_eq!(next.first().map(|r| r.0), Some(first as u64));
    assert_eq!(polls(&h), before, "served by the poll sent ahead");
}

/// Appends `records` to partition 0 of `topic`, which they start, one record an append:
/// the fake answers a poll with whole appends, so this makes it answer as Iggy does, with
/// exactly the records asked for.
fn append_singly(h: &mut Pool, backend: &IggyBackend, topic: &str, records: &[KafkaRecord]) {
    append_in(h, backend, topic, 0, records, 1);
}

/// Appends `records` to partition 0 of `topic`, whose end is at `from`, `per` records an
/// append.
fn append_in(
    h: &mut Pool,
    backend: &IggyBackend,
    topic: &str,
    from: u64,
    records: &[KafkaRecord],
    per: usize,
) {
    for (i, chunk) in records.chunks(per).enumerate() {
        let base = from + (i * per) as u64;
        assert_eq!(append(h, backend, topic, 0, chunk, None), Ok(base));
    }
}

/// What [`read_paced`] saw of a reader.
struct Paced {
    /// Where it got to.
    read: u64,
    /// The polls sent ahead of it, `(from, count)`, in the order sent.
    polls: Vec<(u64, u32)>,
    /// How many of its reads found no usable poll sent ahead covering their offset.
    misses: usize,
    /// Whether two usable polls sent ahead ever covered an offset both.
    overlapped: bool,
}

/// A reader that takes 100 KB of 1 KB records a read (about a batch of a lean client's
/// Fetch), `reads` of them `every` apart on the test clock, which moves only by what the
/// test moves it (frozen).
fn read_paced(every: Duration, reads: usize) -> Paced {
    let mut h = Pool::new(FakeIggy::new());
    h.clock.freeze();
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let rec = |i: usize| KafkaRecord {
        timestamp_ms: 1_700_000_000_000 + i as i64,
        value: Some(Bytes::from(vec![b'a' + (i % 26) as u8; 1_000])),
        ..KafkaRecord::default()
    };
    let records: Vec<KafkaRecord> = (0..5_000).map(rec).collect();
    append_singly(&mut h, &backend, "t", &records);
    let state = backend.inner.catalog.partition("t", 0);
    let clock = backend.inner.catalog.calls().clock();
    let (mut offset, mut seen, mut paced) = (
        0,
        Vec::new(),
        Paced {
            read: 0,
            polls: Vec::new(),
            misses: 0,
            overlapped: false,
        },
    );
    for _ in 0..reads {
        {
            let now = clock.now();
            let aheads = crate::sync::lock(&state.read_ahead);
            let fresh: Vec<_> = aheads.iter().filter(|a| a.fresh(now)).collect();
            if !fresh.iter().any(|a| a.covers(offset)) {
                paced.misses += 1;
            }
            for (i, a) in fresh.iter().enumerate() {
                let both = fresh[i + 1..]
                    .iter()
                    .any(|b| a.covers(b.from) || b.covers(a.from));
                paced.overlapped |= both;
            }
        }
        let got = read_within(&mut h, &backend, "t", 0, offset, 100_000, 50_000).expect("a read");
        assert_eq!(got.first().map(|r| r.0), Some(offset));
        for (o, r) in &got {
            assert_eq!(r, &records[*o as usize]);
        }
        offset = got.last().expect("a record").0 + 1;
        for _ in 0..4 {
            h.serve();
        }
        for a in crate::sync::lock(&state.read_ahead).iter() {
            if !seen.contains(&(a.from, a.count, a.sent)) {
                seen.push((a.from, a.count, a.sent));
                paced.polls.push((a.from, a.count));
            }
        }
        h.clock.advance(every);
    }
    paced.read = offset;
    paced
}

/// A consumer that keeps up gets polls sent ahead of 512 KiB's worth from its first poll
/// sent ahead on, and every read after the first finds one.
#[test]
fn a_reader_that_keeps_up_is_polled_ahead_in_large_polls_throughout() {
    // A read a millisecond: 100 MB/s.
    let p = read_paced(Duration::from_millis(1), 40);
    assert!(p.read > 3_500, "{}", p.read);
    assert!(p.polls.len() >= 8, "{:?}", p.polls);
    // 512 KiB of 1 KB records (and of the records' size as Iggy reports it), where a read
    // takes about a hundred.
    assert!(p.polls.iter().all(|&(_, c)| c >= 400), "{:?}", p.polls);
    assert_eq!(p.misses, 1, "the first read only");
    assert!(!p.overlapped);
}

/// A consumer too slow to read a 512 KiB reply through within the second it stays usable
/// loses the rest of it once; from then on the polls sent ahead of it are as large as it
/// reads through in time, none asks again for what another still holds, and its reads
/// find them.
#[test]
fn a_slow_reader_gets_polls_ahead_it_reads_through_in_time() {
    // A read every 150 ms (670 KB a second) reads the first poll ahead (about 500 records)
    // through in 0.8 s and not the second, sent with it; one every 300 ms or 600 ms reads
    // neither.
    for every in [150, 300, 600] {
        let p = read_paced(Duration::from_millis(every), 5_000 / every as usize);
        assert!(p.read > 400_000 / every, "{every} ms: {}", p.read);
        // The first read, and the one that reaches what went stale of the first polls.
        // Without following the reader's pace, one a second; with polls two deep at its
        // reads' size, every read of a reader whose fetches are more than half a second
        // apart.
        assert!(
            p.misses <= 2,
            "{every} ms: {} reads without a usable poll sent ahead; {:?}",
            p.misses,
            p.polls
        );
        // After the first two, no poll asks for more than the reader gets through in time,
        // and all of them ask Iggy for little more than what was read.
        assert!(
            p.polls[2..].iter().all(|&(_, c)| c < 300),
            "{every} ms: {:?}",
            p.polls
        );
        let asked: u64 = p.polls.iter().map(|&(_, c)| u64::from(c)).sum();
        assert!(asked < p.read + 1_200, "{every} ms: {asked} for {}", p.read);
        assert!(!p.overlapped, "{every} ms: {:?}", p.polls);
    }
}

/// The usable polls sent ahead of partition 0 of `topic`, `(from, count)`.
fn polls_ahead(backend: &IggyBackend, topic: &str) -> Vec<(u64, u32)> {
    let state = backend.inner.catalog.partition(topic, 0);
    let now = backend.inner.catalog.calls().clock().now();
    let ahead = crate::sync::lock(&state.read_ahead)
        .iter()
        .filter(|a| a.fresh(now))
        .map(|a| (a.from, a.count))
        .collect();
    ahead
}

/// What a poll of `(from, count)` asks Iggy for, in the bytes a read counts, of a
/// partition holding `records`.
fn asked_bytes(records: &[KafkaRecord], (from, count): (u64, u32)) -> usize {
    records
        .iter()
        .skip(usize::try_from(from).expect("an offset"))
        .take(count as usize)
        .map(|r| iggy_kafka_core::message::message_size(&to_iggy(r)))
        .sum()
}

/// A record whose value is `len` bytes.
fn sized(i: usize, len: usize) -> KafkaRecord {
    KafkaRecord {
        timestamp_ms: 1_700_000_000_000 + i as i64,
        value: Some(Bytes::from(vec![b'a' + (i % 26) as u8; len])),
        ..KafkaRecord::default()
    }
}

/// Polls sent ahead of a partition are sized by what its own reads found: reads of a topic of
/// 100 B messages in between do not make a poll of a topic of 1 MB messages ask for
/// hundreds of them (more than a lane takes in a reply), nor do reads of the large one make
/// the small one's polls ahead ask for a message or two.
#[test]
fn the_polls_of_a_partition_are_sized_by_its_own_messages() {
    let mut h = Pool::new(FakeIggy::new());
    h.clock.freeze();
    let backend = h.backend();
    create(&mut h, &backend, "small", 1);
    create(&mut h, &backend, "large", 1);
    let small: Vec<KafkaRecord> = (0..3_000).map(|i| sized(i, 100)).collect();
    append_in(&mut h, &backend, "small", 0, &small, 100);
    // More than a lane takes in a reply (64 MiB here) from the second on.
    let large: Vec<KafkaRecord> = (0..70).map(|i| sized(i, 1_000_000)).collect();
    append_singly(&mut h, &backend, "large", &large);
    let bound = 2 << 20;
    let got = read_within(&mut h, &backend, "large", 0, 0, 1 << 20, 50_000).expect("a read");
    assert_eq!(got.len(), 1);
    for _ in 0..4 {
        h.serve();
    }
    let mut offset = 0;
    for n in 0..40 {
        let got = read_within(&mut h, &backend, "small", 0, offset, 5_000, 50_000).expect("a read");
        assert_eq!(got.first().map(|r| r.0), Some(offset), "read {n}");
        offset = got.last().expect("a record").0 + 1;
        let ahead = polls_ahead(&backend, "small");
        let asked: u64 = ahead.iter().map(|&(_, c)| u64::from(c)).sum();
        assert!(
            asked >= 2_000.min(3_000 - offset),
            "read {n} at {offset}: {ahead:?}"
        );
        for _ in 0..4 {
            h.serve();
        }
    }
    // The large topic's reader comes back after its polls ahead went stale: its own poll
    // asks for about a read's worth, which a lane takes in one reply.
    h.clock.advance(Duration::from_secs(3));
    let before = polls(&h);
    let got = read_within(&mut h, &backend, "large", 0, 1, 1 << 20, 50_000).expect("a read");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0], (1, large[1].clone()));
    assert_eq!(
        polls(&h) - before,
        1,
        "a poll of its own, not one too large and then one"
    );
    for &poll in &polls_ahead(&backend, "large") {
        assert!(asked_bytes(&large, poll) <= bound, "{poll:?}");
    }
}

/// Topic "t" of one partition holding `small` records of 100 B (appended a hundred at a
/// time) and then `large` of 1 MB (one at a time), with its sizes learnt; returns them.
fn small_then_large(
    h: &mut Pool,
    backend: &IggyBackend,
    small: usize,
    large: usize,
) -> Vec<KafkaRecord> {
    create(h, backend, "t", 1);
    let mut records: Vec<KafkaRecord> = (0..small).map(|i| sized(i, 100)).collect();
    records.extend((small..small + large).map(|i| sized(i, 1_000_000)));
    append_in(h, backend, "t", 0, &records[..small], 100);
    append_in(h, backend, "t", small as u64, &records[small..], 1);
    learn_sizes(h, backend, "t");
    records
}

/// A read that goes from small messages into far larger ones has the polls sent ahead of
/// it sized by the large ones: it does not make them ask for a thousand times what the
/// reader takes.
#[test]
fn polls_sent_ahead_of_a_read_into_larger_messages_are_sized_by_them() {
    let mut h = Pool::new(FakeIggy::new());
    h.clock.freeze();
    let backend = h.backend();
    let records = small_then_large(&mut h, &backend, 1_000, 12);
    let max_bytes = 1 << 20;
    let bound = 2 * max_bytes;
    // A hundred small records and the first large one.
    let mut offset = 900;
    while offset < 1_012 {
        let got = read_within(&mut h, &backend, "t", 0, offset, max_bytes, 50_000).expect("a read");
        assert_eq!(got.first().map(|r| r.0), Some(offset));
        for (o, r) in &got {
            assert_eq!(r, &records[*o as usize]);
        }
        offset = got.last().expect("a record").0 + 1;
        for &poll in &polls_ahead(&backend, "t") {
            let asked = asked_bytes(&records, poll);
            assert!(
                asked <= bound,
                "after a read up to {offset}: {poll:?} asks {asked}"
            );
        }
        for _ in 0..4 {
            h.serve();
        }
    }
}

/// A reader of 1 MiB a read, every millisecond on a frozen clock, of records whose values
/// are `low..=high` bytes (spread evenly, in no order), appended 500 at a time: how many
/// polls Iggy answered and how many reads it took to get to offset 10,000, and how many of
/// those reads returned less than 90 % of their limit short of the end.
fn read_varying(low: usize, high: usize) -> (usize, usize, usize) {
    let mut h = Pool::new(FakeIggy::new());
    h.clock.freeze();
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let records: Vec<KafkaRecord> = (0..12_000)
        .map(|i| sized(i, low + (i * 7_919 + i * i * 31) % (high - low + 1)))
        .collect();
    for (i, chunk) in records.chunks(500).enumerate() {
        assert_eq!(
            append(&mut h, &backend, "t", 0, chunk, None),
            Ok(i as u64 * 500)
        );
    }
    let max_bytes = 1 << 20;
    let before = polls(&h);
    let (mut offset, mut reads, mut short) = (0, 0, 0);
    while offset < 10_000 {
        let got = read_within(&mut h, &backend, "t", 0, offset, max_bytes, 50_000).expect("a read");
        assert_eq!(got.first().map(|r| r.0), Some(offset));
        let bytes: usize = got
            .iter()
            .map(|(_, r)| iggy_kafka_core::message::message_size(&to_iggy(r)))
            .sum();
        if bytes < max_bytes / 10 * 9 {
            short += 1;
        }
        offset = got.last().expect("a record").0 + 1;
        reads += 1;
        for _ in 0..4 {
            h.serve();
        }
        h.clock.advance(Duration::from_millis(1));
    }
    (polls(&h) - before, reads, short)
}

/// A reader of 1 MiB a read, as Kafka's consumers are by default, keeps taking the replies
/// sent ahead of it whole when its messages vary in size: the size of the last message a
/// read took, larger than average about half the time, does not make a poll ahead smaller
/// than the reads.
#[test]
fn a_large_reader_of_messages_of_varying_size_takes_its_replies_whole() {
    for (low, high) in [(100, 1_900), (500, 1_500)] {
        let (polls, reads, short) = read_varying(low, high);
        assert!(
            polls <= reads + 3,
            "{low}-{high} B: {polls} polls for {reads} reads"
        );
        assert!(short <= 1, "{low}-{high} B: {short} short reads of {reads}");
    }
}

/// The first read of a partition the gateway knows nothing of asks Iggy for few messages,
/// and one the gateway has Iggy's figure for is sized by it: with the estimate of all
/// partitions at its 256 B (a fresh gateway, as after a restart), a 1 MiB read of 1 MB
/// messages would ask for 4,096 of them, more than a lane takes in a reply (64 MiB here),
/// and poll again for one.
#[test]
fn the_first_read_of_a_partition_of_large_messages_is_one_poll() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 2);
    // Seventy of 1 MB in partition 0, of 1.1 MB in partition 1: sixty-four of these are
    // more than a lane takes.
    for (partition, len) in [(0, 1_000_000), (1, 1_100_000)] {
        for i in 0..70 {
            let one = [sized(i, len)];
            assert_eq!(
                append(&mut h, &backend, "t", partition, &one, None),
                Ok(i as u64)
            );
        }
    }
    // A consumer that asked where partition 1 ends first: Iggy's figure sizes the read.
    match h.exec(
        &backend,
        Command::Offsets {
            topic: TopicRef::Name("t".into()),
            partition: 1,
        },
    ) {
        Completion::Offsets(Ok(o)) => assert_eq!(o.high_watermark, 70),
        other => panic!("{other:?}"),
    }
    let before = polls(&h);
    let got = read_within(&mut h, &backend, "t", 1, 0, 1 << 20, 50_000).expect("a read");
    assert_eq!(got, [(0, sized(0, 1_100_000))]);
    assert_eq!(polls(&h) - before, 1, "one message asked for: one poll");
    // After a restart, a consumer that fetches from its committed offset: nothing known of
    // partition 0.
    let (mut h, backend) = h.restart();
    let before = polls(&h);
    let got = read_within(&mut h, &backend, "t", 0, 0, 1 << 20, 50_000).expect("a read");
    assert_eq!(got, [(0, sized(0, 1_000_000))]);
    assert_eq!(polls(&h) - before, 1, "few messages asked for: one poll");
}

/// A reader of 1 MiB a read of a partition whose size Iggy reported (an empty read at its
/// end asked Iggy where it ends) takes each reply sent ahead of it whole: Iggy's figure,
/// which counts its framing, sizes only the 512 KiB floor of the polls sent ahead, not a
/// read's worth, which would make them smaller than the reads.
#[test]
fn a_large_reader_takes_its_replies_whole_once_iggy_reported_the_partitions_size() {
    let mut h = Pool::new(FakeIggy::new());
    h.clock.freeze();
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let records: Vec<KafkaRecord> = (0..11_000).map(|i| sized(i, 1_000)).collect();
    append_singly(&mut h, &backend, "t", &records);
    let end = read_within(&mut h, &backend, "t", 0, 11_000, 1 << 20, 50_000).expect("a read");
    assert!(end.is_empty());
    let before = polls(&h);
    let (mut offset, mut lens) = (0, Vec::new());
    for _ in 0..10 {
        let got = read_within(&mut h, &backend, "t", 0, offset, 1 << 20, 50_000).expect("a read");
        assert_eq!(got.first().map(|r| r.0), Some(offset));
        offset = got.last().expect("a record").0 + 1;
        lens.push(got.len());
        for _ in 0..4 {
            h.serve();
        }
        h.clock.advance(Duration::from_millis(1));
    }
    let polls = polls(&h) - before;
    assert!(polls <= 12, "{polls} polls for 10 reads of {lens:?}");
    // 1 MiB of 1,016 B records, and the reply holds what the read takes.
    assert!(lens[1..].iter().all(|&n| n > 1_000), "{lens:?}");
}

/// A consumer that resumes where a reader that stopped a while ago left off (a member
/// restarted, or a partition moved to another member) is not taken for that reader: the
/// polls sent ahead of it are large at once. A reader whose last read was within the
/// pace's memory, and whose polls went stale before it got to them, gets polls of its
/// reads' size.
#[test]
fn a_reader_resuming_where_another_stopped_long_ago_gets_large_polls_ahead_at_once() {
    for (pause, large) in [(1_500, false), (2_500, true)] {
        let mut h = Pool::new(FakeIggy::new());
        h.clock.freeze();
        let backend = h.backend();
        create(&mut h, &backend, "t", 1);
        let records: Vec<KafkaRecord> = (0..1_200).map(|i| sized(i, 1_000)).collect();
        append_in(&mut h, &backend, "t", 0, &records, 100);
        let got = read_within(&mut h, &backend, "t", 0, 0, 100_000, 50_000).expect("a read");
        let next = got.last().expect("a record").0 + 1;
        for _ in 0..4 {
            h.serve();
        }
        h.clock.advance(Duration::from_millis(pause));
        let got = read_within(&mut h, &backend, "t", 0, next, 100_000, 50_000).expect("a read");
        assert_eq!(got.first().map(|r| r.0), Some(next));
        let ahead = polls_ahead(&backend, "t");
        assert!(!ahead.is_empty(), "{pause} ms");
        assert_eq!(
            ahead.iter().all(|&(_, c)| c >= 400),
            large,
            "{pause} ms: {ahead:?}"
        );
        if large {
            // One deep: should it be the reader that paused, slow, it wastes one large
            // poll, not two. Two deep from the next read on, if it keeps up.
            assert_eq!(ahead.len(), 1, "{ahead:?}");
            for _ in 0..4 {
                h.serve();
            }
            h.clock.advance(Duration::from_millis(1));
            let at = got.last().expect("a record").0 + 1;
            let got = read_within(&mut h, &backend, "t", 0, at, 100_000, 50_000).expect("a read");
            assert_eq!(got.first().map(|r| r.0), Some(at));
            let ahead = polls_ahead(&backend, "t");
            assert_eq!(ahead.len(), 2, "{ahead:?}");
            assert!(ahead.iter().all(|&(_, c)| c >= 400), "{ahead:?}");
        }
    }
}

/// A poll sent ahead whose reply is too large for a lane (the messages after the read are
/// far larger than those before) teaches the partition's size estimate as a read's own poll
/// would: the read that finds it failed polls for itself at that size, in one poll.
#[test]
fn a_reply_sent_ahead_too_large_for_a_lane_raises_the_partitions_estimate() {
    let mut h = Pool::new(FakeIggy::new());
    h.clock.freeze();
    let backend = h.backend();
    // More than a lane takes in a reply (64 MiB here).
    let records = small_then_large(&mut h, &backend, 2_000, 70);
    // The small records, up to where the large ones start; the poll sent ahead, of as
    // many again, asks for all of the large ones.
    let got = read_within(&mut h, &backend, "t", 0, 0, 1 << 20, 2_000).expect("a read");
    assert_eq!(got.len(), 2_000);
    assert_eq!(polls_ahead(&backend, "t"), [(2_000, 2_000)]);
    for _ in 0..4 {
        h.serve();
    }
    let before = polls(&h);
    let got = read_within(&mut h, &backend, "t", 0, 2_000, 1 << 20, 2_000).expect("a read");
    assert_eq!(got, [(2_000, records[2_000].clone())]);
    assert_eq!(
        polls(&h) - before,
        1,
        "its own poll, sized by what the failed one taught"
    );
}

/// Reads `topic` from `offset` as [`read_within`] does, while Iggy takes `slow` of the test
/// clock to answer the first poll the read waits for (its own, or one sent ahead).
fn read_slowly(
    h: &mut Pool,
    backend: &IggyBackend,
    (topic, offset): (&str, u64),
    (max_bytes, max_messages): (usize, usize),
    slow: Duration,
) -> Vec<(u64, KafkaRecord)> {
    let Execution::Pending(mut fut) = backend.execute(Command::Read {
        topic: TopicRef::Name(topic.into()),
        partition: 0,
        offset,
        max_bytes,
        max_messages,
    }) else {
        panic!("a read waits for Iggy");
    };
    let mut cx = Context::from_waker(Waker::noop());
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    h.clock.advance(slow);
    match h.run(fut) {
        Completion::Read(Ok(r)) => r.messages.iter().map(|(o, m)| (o, from_iggy(&m))).collect(),
        other => panic!("{other:?}"),
    }
}

/// A poll sent ahead that goes stale while a read waits for Iggy is sent again when the
/// read tops its polls ahead up, so that the next read finds it.
#[test]
fn a_poll_ahead_gone_stale_during_a_slow_reply_is_sent_again() {
    let mut h = Pool::new(FakeIggy::new());
    h.clock.freeze();
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let records: Vec<KafkaRecord> = (0..60).map(record).collect();
    assert_eq!(append(&mut h, &backend, "t", 0, &records, None), Ok(0));
    read_up_to(&mut h, &backend, "t", 0, 0, 10).expect("a read");
    assert_eq!(polls_ahead(&backend, "t"), [(10, 10), (20, 10)]);
    // The read at 10 waits for the reply to the first, which comes late: by then the
    // second is stale.
    h.clock.advance(Duration::from_millis(900));
    let got = read_slowly(
        &mut h,
        &backend,
        ("t", 10),
        (1 << 20, 10),
        Duration::from_millis(200),
    );
    assert_eq!(got.first().map(|r| r.0), Some(10));
    assert_eq!(polls_ahead(&backend, "t"), [(20, 10), (30, 10)]);
    for _ in 0..4 {
        h.serve();
    }
    let before = polls(&h);
    let got = read_up_to(&mut h, &backend, "t", 0, 20, 10).expect("a read");
    assert_eq!(got.first().map(|r| r.0), Some(20));
    assert_eq!(polls(&h), before, "served by the poll sent ahead again");
}

/// A read of 300 KB of 1 KB records from `offset`, checked against what was appended;
/// returns where the next read starts.
fn read_300k(h: &mut Pool, backend: &IggyBackend, records: &[KafkaRecord], offset: u64) -> u64 {
    let got = read_within(h, backend, "t", 0, offset, 300_000, 50_000).expect("a read");
    assert_eq!(got.first().map(|r| r.0), Some(offset));
    for (o, r) in &got {
        assert_eq!(r, &records[*o as usize]);
    }
    got.last().expect("a record").0 + 1
}

/// A reader of [`read_300k`]s whose first poll sent ahead fails inside Iggy, a millisecond
/// after its first read: its second read polls for itself, and the poll sent ahead of it
/// ends where the second poll ahead begins. Returns the records and where the reader is,
/// with that cut poll ahead of it.
fn a_cut_poll_ahead(h: &mut Pool, backend: &IggyBackend) -> (Vec<KafkaRecord>, u64) {
    create(h, backend, "t", 1);
    let records: Vec<KafkaRecord> = (0..2_000).map(|i| sized(i, 1_000)).collect();
    append_singly(h, backend, "t", &records);
    learn_sizes(h, backend, "t");
    // Reads of about 295 records; polls ahead of 515 (512 KiB), two deep.
    let next = read_300k(h, backend, &records, 0);
    assert_eq!(next, 295);
    assert_eq!(polls_ahead(backend, "t"), [(295, 515), (810, 515)]);
    h.fake.fault_next_poll = Some(iggy_kafka_iggy_client::testing::fake::PollFault::AtEnd);
    for _ in 0..4 {
        h.serve();
    }
    h.clock.advance(Duration::from_millis(1));
    let next = read_300k(h, backend, &records, next);
    assert_eq!(next, 589);
    assert_eq!(polls_ahead(backend, "t"), [(810, 515), (589, 221)]);
    for _ in 0..4 {
        h.serve();
    }
    (records, next)
}

/// A poll sent ahead that was cut short where another already ahead begins tells the
/// reader's pace by the time the pace's own poll would have taken at the same speed: 221
/// messages read through in 0.3 s are 515 in 0.7 s, later than half the time a reply stays
/// usable, so the pace falls back to the reads' size (one poll deep), where by the cut
/// poll's own time it would have stayed at 515, two deep.
#[test]
fn a_poll_ahead_cut_short_tells_the_pace_by_its_speed() {
    let mut h = Pool::new(FakeIggy::new());
    h.clock.freeze();
    let backend = h.backend();
    let (records, next) = a_cut_poll_ahead(&mut h, &backend);
    h.clock.advance(Duration::from_millis(300));
    let next = read_300k(&mut h, &backend, &records, next);
    assert_eq!(next, 810);
    assert_eq!(polls_ahead(&backend, "t"), [(810, 515)]);
}

/// A poll sent ahead that was cut short where another already ahead begins, and read
/// through at once, tells the reader's pace by what the pace asked for, not by its own
/// smaller count: the poll after it is as large as before.
#[test]
fn a_poll_ahead_cut_short_does_not_make_the_next_smaller() {
    let mut h = Pool::new(FakeIggy::new());
    h.clock.freeze();
    let backend = h.backend();
    let (records, next) = a_cut_poll_ahead(&mut h, &backend);
    h.clock.advance(Duration::from_millis(1));
    // Read through at once: the next poll is as large as the pace asked for (512 KiB's
    // worth, at an estimate that moved by a byte), and so two deep again.
    let next = read_300k(&mut h, &backend, &records, next);
    assert_eq!(next, 810);
    let ahead = polls_ahead(&backend, "t");
    assert!(
        matches!(ahead[..], [(810, 515), (1_325, c)] if c >= 500),
        "{ahead:?}"
    );
}

#[test]
fn a_topic_created_again_outside_the_gateway_is_read_afresh() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let old: Vec<KafkaRecord> = (0..60).map(record).collect();
    assert_eq!(append(&mut h, &backend, "t", 0, &old, None), Ok(0));
    // A reader at 0: the polls for what follows go ahead and are answered.
    let got = read_up_to(&mut h, &backend, "t", 0, 0, 10).expect("a read");
    assert_eq!(got.len(), 10);
    for _ in 0..4 {
        h.serve();
    }
    // Deleted and created again in Iggy, and filled anew.
    h.fake.topics.remove("t");
    h.fake.create_topic("t", 1, Vec::new());
    let new: Vec<KafkaRecord> = (100..160).map(record).collect();
    assert_eq!(append(&mut h, &backend, "t", 0, &new, None), Ok(0));
    // A client refreshing its metadata makes the gateway list the topics, and notice.
    match h.exec(&backend, Command::ListTopics { only: None }) {
        Completion::ListTopics(Ok(t)) => assert_eq!(t.len(), 1),
        other => panic!("{other:?}"),
    }
    let got = read_up_to(&mut h, &backend, "t", 0, 10, 10).expect("a read");
    let want: Vec<(u64, KafkaRecord)> = (10..20).map(|i| (i, new[i as usize].clone())).collect();
    assert_eq!(
        got, want,
        "the new topic's records, not the old one's polled ahead"
    );
    // Again, noticed this time by a question about the partition's offsets.
    for _ in 0..4 {
        h.serve();
    }
    h.fake.topics.remove("t");
    h.fake.create_topic("t", 1, Vec::new());
    let newer: Vec<KafkaRecord> = (200..260).map(record).collect();
    assert_eq!(append(&mut h, &backend, "t", 0, &newer, None), Ok(0));
    match h.exec(
        &backend,
        Command::Offsets {
            topic: TopicRef::Name("t".into()),
            partition: 0,
        },
    ) {
        Completion::Offsets(Ok(o)) => assert_eq!(o.high_watermark, 60),
        other => panic!("{other:?}"),
    }
    let got = read_up_to(&mut h, &backend, "t", 0, 20, 10).expect("a read");
    let want: Vec<(u64, KafkaRecord)> = (20..30).map(|i| (i, newer[i as usize].clone())).collect();
    assert_eq!(got, want);
}

#[test]
fn polls_sent_ahead_are_accounted_and_swept_when_their_reader_stops() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    let records: Vec<KafkaRecord> = (0..60).map(record).collect();
    for topic in ["a", "b"] {
        create(&mut h, &backend, topic, 1);
        assert_eq!(append(&mut h, &backend, topic, 0, &records, None), Ok(0));
    }
    let held = |b: &IggyBackend| b.inner.reads.read_ahead_held();
    let entries = |b: &IggyBackend, topic: &str| {
        let state = b.inner.catalog.partition(topic, 0);
        let aheads = crate::sync::lock(&state.read_ahead);
        (
            aheads.len(),
            aheads.iter().map(|a| a.held.bytes).sum::<usize>(),
        )
    };
    assert_eq!(held(&backend), 0);
    read_up_to(&mut h, &backend, "a", 0, 0, 10).expect("a read");
    let (n, bytes) = entries(&backend, "a");
    assert_eq!(n, 2);
    assert!(bytes > 0);
    assert_eq!(held(&backend), bytes);
    // Reader "a" stops. Once its polls are stale, a read anywhere drops them.
    h.clock.advance(Duration::from_secs(2));
    read_up_to(&mut h, &backend, "b", 0, 0, 10).expect("a read");
    assert_eq!(entries(&backend, "a"), (0, 0));
    let (n, bytes) = entries(&backend, "b");
    assert_eq!(n, 2);
    assert_eq!(held(&backend), bytes, "what a's polls held was given back");
    // Caught up, after b's went stale too: nothing is held.
    h.clock.advance(Duration::from_secs(2));
    assert_eq!(read(&mut h, &backend, "a", 0, 60), Ok(vec![]));
    assert_eq!(entries(&backend, "b"), (0, 0));
    assert_eq!(held(&backend), 0);
}

/// Once a read took a reply sent ahead, the budget counts the reply's own length, not what
/// its poll was expected to bring: less for a poll of 512 KiB's worth answered with the few
/// messages Iggy had, more for a reply larger than the estimate foresaw; and all of it is
/// given back when the replies go.
#[test]
fn a_reply_sent_ahead_is_counted_at_its_own_length() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    let records: Vec<KafkaRecord> = (0..60).map(record).collect();
    for topic in ["a", "b"] {
        create(&mut h, &backend, topic, 1);
        append_singly(&mut h, &backend, topic, &records);
    }
    let held = |b: &IggyBackend| b.inner.reads.read_ahead_held();
    // Each kept reply's share and its length; the share of each poll still on its way.
    let kept = |b: &IggyBackend, topic: &str| {
        let state = b.inner.catalog.partition(topic, 0);
        let aheads = crate::sync::lock(&state.read_ahead);
        aheads
            .iter()
            .map(|a| match &a.reply {
                crate::partition::AheadReply::Kept(body) => (a.held.bytes, Some(body.len())),
                crate::partition::AheadReply::Sent { .. } => (a.held.bytes, None),
            })
            .collect::<Vec<_>>()
    };
    // "a": a small reader, whose poll ahead asks for 512 KiB's worth; Iggy has 50 left.
    let got = read_within(&mut h, &backend, "a", 0, 0, 2_000, 50_000).expect("a read");
    let next = got.last().expect("a record").0 + 1;
    let asked = kept(&backend, "a");
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(
        asked[0].0 > 256 << 10,
        "{asked:?}: reserved by the estimate"
    );
    for _ in 0..4 {
        h.serve();
    }
    read_within(&mut h, &backend, "a", 0, next, 2_000, 50_000).expect("a read");
    let a = kept(&backend, "a");
    assert_eq!(a.len(), 1, "{a:?}");
    let (share, len) = a[0];
    assert_eq!(Some(share), len, "counted at the reply's length");
    assert!(share < 32 << 10, "{share}");
    assert_eq!(held(&backend), share);
    // "b": polls ahead of ten records each (the reader's own limit), whose replies, in
    // Iggy's framing, are larger than ten records at the running estimate.
    read_up_to(&mut h, &backend, "b", 0, 0, 10).expect("a read");
    let estimated = kept(&backend, "b");
    assert_eq!(estimated.len(), 2, "{estimated:?}");
    for _ in 0..4 {
        h.serve();
    }
    read_up_to(&mut h, &backend, "b", 0, 10, 5).expect("a read");
    let b = kept(&backend, "b");
    let taken = b
        .iter()
        .find(|(_, len)| len.is_some())
        .expect("the reply taken");
    assert_eq!(Some(taken.0), taken.1, "{b:?}");
    assert!(taken.0 > estimated[0].0, "{b:?} against {estimated:?}");
    let shares = |v: &[(usize, Option<usize>)]| v.iter().map(|e| e.0).sum::<usize>();
    assert_eq!(held(&backend), shares(&kept(&backend, "a")) + shares(&b));
    // Both readers stop; their replies go stale and are dropped: nothing is held.
    h.clock.advance(Duration::from_secs(2));
    assert_eq!(read(&mut h, &backend, "a", 0, 60), Ok(vec![]));
    assert_eq!(kept(&backend, "a").len() + kept(&backend, "b").len(), 0);
    assert_eq!(held(&backend), 0);
}

#[test]
fn a_reply_sent_ahead_that_ended_at_the_tail_is_not_kept() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let records: Vec<KafkaRecord> = (0..25).map(record).collect();
    assert_eq!(append(&mut h, &backend, "t", 0, &records, None), Ok(0));
    let aheads =
        |b: &IggyBackend| crate::sync::lock(&b.inner.catalog.partition("t", 0).read_ahead).len();
    let read_ten =
        |h: &mut Pool, offset| read_up_to(h, &backend, "t", 0, offset, 10).map(|r| r.len());
    assert_eq!(read_ten(&mut h, 0), Ok(10));
    assert_eq!(aheads(&backend), 2, "10..20 and 20..30");
    assert_eq!(read_ten(&mut h, 10), Ok(10));
    assert_eq!(
        aheads(&backend),
        1,
        "20..30; nothing past Iggy's last offset"
    );
    // The poll for 20..30 holds 20..24, all there was: nothing of it is kept.
    assert_eq!(read_ten(&mut h, 20), Ok(5));
    assert_eq!(aheads(&backend), 0);
}

#[test]
fn requests_for_made_up_topics_and_partitions_leave_nothing_behind() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let r = [record(2)];
    assert_eq!(append(&mut h, &backend, "t", 0, &r, None), Ok(0));
    for i in 0..50u32 {
        let made_up = format!("made-up-{i}");
        assert!(append(&mut h, &backend, &made_up, 0, &r, None).is_err());
        assert!(append(&mut h, &backend, "t", 1 + i, &r, None).is_err());
        assert!(read(&mut h, &backend, &made_up, 0, 0).is_err());
        assert!(read(&mut h, &backend, "t", 1000 + i, 0).is_err());
        for command in [
            Command::OffsetForTimestamp {
                topic: made_up.clone(),
                partition: i,
                timestamp_ms: 0,
            },
            Command::MaxTimestamp {
                topic: "t".into(),
                partition: 2000 + i,
            },
        ] {
            match h.exec(&backend, command) {
                Completion::OffsetForTimestamp(r) | Completion::MaxTimestamp(r) => {
                    assert!(r.is_err());
                }
                other => panic!("{other:?}"),
            }
        }
    }
    // The gateway's own log has a partition of its own; no made-up one is kept.
    let kept: Vec<_> = backend
        .inner
        .catalog
        .partitions_known()
        .into_iter()
        .filter(|(t, _)| !offsets::is_own(t))
        .collect();
    assert_eq!(kept, [("t".to_owned(), vec![0])]);
}

#[test]
fn unknown_topics_partitions_and_iggy_errors_map_to_kafka_errors() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let r = [record(2)];
    assert!(matches!(
        append(&mut h, &backend, "missing", 0, &r, None),
        Err(BackendError::UnknownTopic(_))
    ));
    assert!(matches!(
        append(&mut h, &backend, "t", 4, &r, None),
        Err(BackendError::UnknownPartition { partition: 4, .. })
    ));
    h.fake.fail_next = Some(41);
    assert!(matches!(
        append(&mut h, &backend, "t", 0, &r, None),
        Err(BackendError::Unauthorized(_))
    ));
    h.fake.fail_next = Some(4022);
    let e = append(&mut h, &backend, "t", 0, &r, None).expect_err("refused");
    assert_eq!(
        e.error_code(),
        iggy_kafka_core::protocol::error_code::ErrorCode::INVALID_RECORD
    );
    match h.exec(
        &backend,
        Command::CreateTopic {
            name: "t".into(),
            partitions: 1,
            config: TopicConfig::default(),
            validate_only: false,
        },
    ) {
        Completion::CreateTopic(Err(BackendError::TopicExists(_))) => {}
        other => panic!("{other:?}"),
    }
    match h.exec(
        &backend,
        Command::CreateTopic {
            name: offsets::topic_name(9),
            partitions: 1,
            config: TopicConfig::default(),
            validate_only: false,
        },
    ) {
        Completion::CreateTopic(Err(BackendError::InvalidTopic(_))) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_connection_lost_mid_append_is_a_retriable_error_and_the_lane_recovers() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let Execution::Pending(fut) = backend.execute(Command::Append {
        topic: "t".into(),
        partition: 0,
        messages: vec![to_iggy(&record(2))].into(),
        largest_batch: 10,
        producer: None,
    }) else {
        panic!("an append waits for Iggy");
    };
    let mut fut = fut;
    let mut cx = Context::from_waker(Waker::noop());
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    // Sent, then the server goes away before answering.
    h.drop_connections();
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(Completion::Append(Err(e))) => {
            assert!(matches!(e, BackendError::Unavailable(_)), "{e:?}");
            assert_eq!(
                e.error_code(),
                iggy_kafka_core::protocol::error_code::ErrorCode::REQUEST_TIMED_OUT
            );
        }
        other => panic!("{other:?}"),
    }
    // Reconnected (the runtime would wait for the backoff), the lanes work again.
    let now = h.lane_now();
    for d in &mut h.drivers {
        d.connected(now);
    }
    assert_eq!(append(&mut h, &backend, "t", 0, &[record(2)], None), Ok(0));
}

/// Plain appends of `records` to partition 0 of `topic`, one record each, all handed over
/// before any is awaited (as a producer with requests in flight sends them), then awaited
/// last first; returns where each landed, in the order they were handed over.
fn append_at_once(
    h: &mut Pool,
    backend: &IggyBackend,
    topic: &str,
    records: impl Iterator<Item = KafkaRecord>,
) -> Vec<u64> {
    let futures: Vec<_> = records
        .map(|r| {
            match backend.execute(Command::Append {
                topic: topic.into(),
                partition: 0,
                messages: vec![to_iggy(&r)].into(),
                largest_batch: 100,
                producer: None,
            }) {
                Execution::Pending(f) => f,
                Execution::Done(c) => panic!("{c:?}"),
            }
        })
        .collect();
    let mut offsets: Vec<u64> = futures
        .into_iter()
        .rev()
        .map(|f| match h.run(f) {
            Completion::Append(Ok(a)) => a.base_offset,
            other => panic!("{other:?}"),
        })
        .collect();
    offsets.reverse();
    offsets
}

/// Plain appends are queued on the partition's lane when they are handed over, so they
/// land in that order even when a later one's future is polled (or finishes) first.
#[test]
fn plain_appends_land_in_the_order_handed_over() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let offsets = append_at_once(&mut h, &backend, "t", (0..5).map(|i| record(i * 4 + 2)));
    assert_eq!(offsets, [0, 1, 2, 3, 4]);
    let got: Vec<_> = read(&mut h, &backend, "t", 0, 0)
        .expect("read")
        .into_iter()
        .map(|(o, r)| (o, r.value))
        .collect();
    let want: Vec<_> = (0..5)
        .map(|i| (i as u64, record(i * 4 + 2).value))
        .collect();
    assert_eq!(got, want);
}

/// Appends handed over at once, as a producer with requests in flight sends them, while a
/// trial spreads them over the lanes: each waits for the one before it, so all land in
/// order, and the partition then stays on the lane Iggy answered fastest.
#[test]
fn a_partition_moves_to_the_lane_answered_fastest_and_its_appends_keep_their_order() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    // Lane 1 is answered in one round, the others in three.
    h.every = vec![3, 1, 3];
    let lane_of_partition = |b: &IggyBackend| {
        let state = b.inner.catalog.partition("t", 0);
        state.route.placed()
    };
    // Appends handed over together are merged into fewer requests, each one answer of the
    // trial: it takes as many groups as it needs, and a bounded number.
    let mut all = Vec::new();
    let mut groups = 0;
    while lane_of_partition(&backend).is_none_or(|(_, in_trial)| in_trial) {
        assert!(groups < 40, "the trial never ended");
        let records = (0..20).map(|i| record(groups * 20 + i));
        all.extend(append_at_once(&mut h, &backend, "t", records));
        groups += 1;
    }
    let sent = groups * 20;
    assert_eq!(all, (0..sent as u64).collect::<Vec<u64>>());
    assert_eq!(lane_of_partition(&backend), Some((1, false)));
    let got: Vec<_> = read_all(&mut h, &backend, ("t", 0), 0, sent)
        .into_iter()
        .map(|(o, r)| (o, r.value))
        .collect();
    let want: Vec<_> = (0..sent).map(|i| (i as u64, record(i).value)).collect();
    assert_eq!(got, want);
    // The lane logs in again: perhaps on another shard now, so the partition is tried anew.
    let now = h.lane_now();
    h.drivers[1].handle_closed(now);
    h.drivers[1].connected(now);
    h.every = vec![1, 3, 3];
    for i in sent..sent + 80 {
        assert_eq!(
            append(&mut h, &backend, "t", 0, &[record(i)], None),
            Ok(i as u64)
        );
    }
    assert_eq!(lane_of_partition(&backend), Some((0, false)));
}

/// A partition whose connection goes down moves to one that is up: its appends go on
/// instead of failing until the connection is back.
#[test]
fn a_partition_moves_off_a_connection_that_is_down() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    for i in 0..60 {
        assert_eq!(
            append(&mut h, &backend, "t", 0, &[record(i)], None),
            Ok(i as u64)
        );
    }
    let chosen = {
        let state = backend.inner.catalog.partition("t", 0);
        state.route.placed().expect("routed").0
    };
    let now = h.lane_now();
    h.drivers[chosen].handle_closed(now);
    assert_eq!(h.lanes.lane(chosen).generation(), None);
    for i in 60..120 {
        assert_eq!(
            append(&mut h, &backend, "t", 0, &[record(i)], None),
            Ok(i as u64)
        );
    }
    let got = read_all(&mut h, &backend, ("t", 0), 0, 120);
    assert_eq!(got.len(), 120);
}

#[test]
fn idempotent_retries_are_appended_once() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let pb = |first| ProducerBatch {
        producer_id: 5,
        epoch: 0,
        first_sequence: first,
        count: 2,
        transactional: false,
    };
    let two = [record(2), record(3)];
    assert_eq!(append(&mut h, &backend, "t", 0, &two, Some(pb(0))), Ok(0));
    assert_eq!(append(&mut h, &backend, "t", 0, &two, Some(pb(0))), Ok(0));
    assert_eq!(append(&mut h, &backend, "t", 0, &two, Some(pb(2))), Ok(2));
    assert!(matches!(
        append(&mut h, &backend, "t", 0, &two, Some(pb(9))),
        Err(BackendError::OutOfOrderSequence { .. })
    ));
    assert_eq!(h.fake.topics["t"].partitions[0].next, 4);
}

#[test]
fn a_retry_is_not_answered_from_a_topic_created_again_behind_the_gateway() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let pb = ProducerBatch {
        producer_id: 5,
        epoch: 0,
        first_sequence: 0,
        count: 2,
        transactional: false,
    };
    let two = [record(2), record(3)];
    assert_eq!(append(&mut h, &backend, "t", 0, &two, Some(pb)), Ok(0));
    // Deleted and created again by an Iggy client; the gateway has not looked since.
    h.fake.topics.remove("t");
    h.fake.create_topic("t", 1, Vec::new());
    // The same batch again: the new topic does not hold it, so it is appended, not answered
    // from the old topic's producer state.
    assert_eq!(append(&mut h, &backend, "t", 0, &two, Some(pb)), Ok(0));
    assert_eq!(h.fake.topics["t"].partitions[0].next, 2);
    assert_eq!(read(&mut h, &backend, "t", 0, 0).map(|r| r.len()), Ok(2));
}

/// Polls `append` while the server holds the appends it takes prepared and not committed,
/// until it holds one, then drops the connections: the append is in doubt, and commits
/// before the partition's next write (or when the fake says), as an op a dead primary
/// prepared on a quorum commits in the next view.
fn prepare_then_lose(h: &mut Pool, append: &mut Pin<Box<dyn Future<Output = Completion> + Send>>) {
    let mut cx = Context::from_waker(Waker::noop());
    h.fake.prepare_appends = true;
    while h.fake.prepared() == 0 {
        assert!(append.as_mut().poll(&mut cx).is_pending());
        h.serve();
    }
    h.fake.prepare_appends = false;
    h.drop_connections();
}

/// Sends an append and loses its reply: applied by the server or not, as `applied` says.
fn append_losing_the_reply(
    h: &mut Pool,
    backend: &IggyBackend,
    records: &[KafkaRecord],
    producer: ProducerBatch,
    applied: bool,
) {
    let Execution::Pending(mut fut) = backend.execute(Command::Append {
        topic: "t".into(),
        partition: 0,
        messages: records.iter().map(to_iggy).collect(),
        largest_batch: 100,
        producer: Some(producer),
    }) else {
        panic!("an append waits for Iggy");
    };
    let mut cx = Context::from_waker(Waker::noop());
    // Sent at once: the partition's end is known from an earlier append, nothing is in doubt.
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    if applied {
        h.apply_then_drop_connections();
    } else {
        h.drop_connections();
    }
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(Completion::Append(Err(e))) => assert_eq!(
            e.error_code(),
            iggy_kafka_core::protocol::error_code::ErrorCode::REQUEST_TIMED_OUT,
            "{e:?}"
        ),
        other => panic!("{other:?}"),
    }
    h.reconnect();
}

/// Iggy does not deduplicate: when the reply to an idempotent append is lost, the gateway
/// looks for the batch's id in the partition before the retry, and answers the retry with
/// where it landed instead of appending it again.
#[test]
fn an_idempotent_batch_whose_reply_was_lost_is_appended_once() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let pb = |producer_id, first| ProducerBatch {
        producer_id,
        epoch: 3,
        first_sequence: first,
        count: 2,
        transactional: false,
    };
    let two = [record(2), record(3)];
    assert_eq!(
        append(&mut h, &backend, "t", 0, &two, Some(pb(5, 0))),
        Ok(0)
    );

    // Applied, reply lost; others append before the retry comes.
    append_losing_the_reply(&mut h, &backend, &two, pb(5, 2), true);
    let others: Vec<_> = (0..1500).map(record).collect();
    assert_eq!(append(&mut h, &backend, "t", 0, &others, None), Ok(4));
    assert_eq!(
        append(&mut h, &backend, "t", 0, &two, Some(pb(5, 2))),
        Ok(2)
    );
    assert_eq!(h.fake.topics["t"].partitions[0].next, 1504);

    // Not applied: the retry is appended.
    append_losing_the_reply(&mut h, &backend, &two, pb(5, 4), false);
    assert_eq!(
        append(&mut h, &backend, "t", 0, &two, Some(pb(5, 4))),
        Ok(1504)
    );
    assert_eq!(h.fake.topics["t"].partitions[0].next, 1506);

    // Found out at another producer's append: the retry that comes later is still known.
    append_losing_the_reply(&mut h, &backend, &two, pb(5, 6), true);
    assert_eq!(
        append(&mut h, &backend, "t", 0, &two, Some(pb(6, 0))),
        Ok(1508)
    );
    assert_eq!(
        append(&mut h, &backend, "t", 0, &two, Some(pb(5, 6))),
        Ok(1506)
    );
    assert_eq!(h.fake.topics["t"].partitions[0].next, 1510);

    // What a reader gets: each record once, in order.
    let got: Vec<_> = read_up_to(&mut h, &backend, "t", 0, 0, 1510)
        .expect("read")
        .into_iter()
        .map(|(o, r)| (o, r.value))
        .collect();
    assert_eq!(got.len(), 1510);
    assert_eq!(got[2].1, record(2).value);
    assert_eq!(got[1506].1, record(2).value);
}

/// A single server whose first batch of a partition was lost and never lands: its fence is
/// refused while the partition holds nothing, and with no view change to wait for, the
/// gateway asks a few times only (not for seconds, holding the partition's gate) before it
/// looks unfenced and appends the retry. The fence's refusals do not feed the lane trial.
#[test]
fn a_single_server_fences_an_empty_partition_a_few_times_only() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let pb = ProducerBatch {
        producer_id: 5,
        epoch: 0,
        first_sequence: 0,
        count: 1,
        transactional: false,
    };
    let Execution::Pending(mut fut) = backend.execute(Command::Append {
        topic: "t".into(),
        partition: 0,
        messages: [to_iggy(&record(0))].into_iter().collect(),
        largest_batch: 100,
        producer: Some(pb),
    }) else {
        panic!("an append waits for Iggy");
    };
    prepare_then_lose(&mut h, &mut fut);
    assert!(matches!(
        fut.as_mut().poll(&mut Context::from_waker(Waker::noop())),
        Poll::Ready(Completion::Append(Err(_)))
    ));
    h.fake.discard_prepared();
    h.reconnect();
    h.fake.seen.clear();
    let state = backend.inner.catalog.partition("t", 0);
    let appends = || state.route.trial_samples().map(|(appends, _)| appends);
    let before = appends().expect("a trial runs");
    assert_eq!(
        append(&mut h, &backend, "t", 0, &[record(0)], Some(pb)),
        Ok(0)
    );
    // The fence's answers come back at once and are no measure of the lane.
    assert_eq!(appends(), Some(before + 1), "the retry's answer alone");
    let fences = h
        .fake
        .seen
        .iter()
        .filter(|&&c| c == iggy_kafka_iggy_client::protocol::codes::STORE_CONSUMER_OFFSET_CODE)
        .count();
    assert_eq!(fences, 3);
    assert_eq!(h.fake.topics["t"].partitions[0].next, 1);
}

/// A poll whose reply would pass what a lane accepts (large messages the running size
/// estimate did not foresee) fails alone: the session goes on, and the read asks again for
/// what fits.
#[test]
fn a_read_of_larger_messages_than_estimated_is_served() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let big = |i: usize| KafkaRecord {
        value: Some(Bytes::from(vec![b'a' + (i % 26) as u8; 1_100 << 10])),
        ..record(i)
    };
    // 77 MiB in all, past the lanes' 64 MiB, and so are the 64 messages a partition's first
    // poll asks for at most.
    for i in 0..70 {
        assert_eq!(
            append(&mut h, &backend, "t", 0, &[big(i)], None),
            Ok(i as u64)
        );
    }
    let read = |h: &mut Pool, offset| {
        read_within(h, &backend, "t", 0, offset, 8 << 20, 1000).expect("read")
    };
    let first = read(&mut h, 0);
    // The reply too large for a lane, then a poll of one.
    assert_eq!(first, [(0, big(0))]);
    // The estimate is right from now on: reads get what their budget holds (about seven
    // messages, or the rest of a reply read ahead).
    let (mut at, mut reads) = (first.last().expect("a record").0 + 1, 0);
    while at < 70 {
        let got = read(&mut h, at);
        assert_eq!(got[0], (at, big(at as usize)));
        at = got.last().expect("a record").0 + 1;
        reads += 1;
    }
    assert!(reads <= 25, "{reads} reads");
    // The lane that carried the reply still works.
    assert_eq!(append(&mut h, &backend, "t", 0, &[record(1)], None), Ok(70));
}

/// Kafka restores its producers' state from its log after a restart; the gateway reads
/// their recent batches back from the partition's tail, by their message ids.
#[test]
fn idempotent_producers_are_read_back_after_a_restart() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let pb = |producer_id, epoch, first| ProducerBatch {
        producer_id,
        epoch,
        first_sequence: first,
        count: 2,
        transactional: false,
    };
    let two = [record(2), record(3)];
    assert_eq!(
        append(&mut h, &backend, "t", 0, &two, Some(pb(5, 0, 0))),
        Ok(0)
    );
    assert_eq!(
        append(&mut h, &backend, "t", 0, &two, Some(pb(5, 0, 2))),
        Ok(2)
    );
    assert_eq!(append(&mut h, &backend, "t", 0, &two, None), Ok(4));
    assert_eq!(
        append(&mut h, &backend, "t", 0, &two, Some(pb(7, 1, 10))),
        Ok(6)
    );

    let (mut h, backend) = h.restart();
    // Retries of batches appended before the restart are answered, not appended.
    assert_eq!(
        append(&mut h, &backend, "t", 0, &two, Some(pb(7, 1, 10))),
        Ok(6)
    );
    assert_eq!(
        append(&mut h, &backend, "t", 0, &two, Some(pb(5, 0, 2))),
        Ok(2)
    );
    assert_eq!(h.fake.topics["t"].partitions[0].next, 8);
    // The producers' sequences and epochs hold as before the restart.
    assert!(matches!(
        append(&mut h, &backend, "t", 0, &two, Some(pb(5, 0, 9))),
        Err(BackendError::OutOfOrderSequence { .. })
    ));
    assert!(matches!(
        append(&mut h, &backend, "t", 0, &two, Some(pb(7, 0, 12))),
        Err(BackendError::ProducerFenced { .. })
    ));
    assert_eq!(
        append(&mut h, &backend, "t", 0, &two, Some(pb(5, 0, 4))),
        Ok(8)
    );
    assert_eq!(h.fake.topics["t"].partitions[0].next, 10);
}

fn commit(
    h: &mut Pool,
    backend: &IggyBackend,
    group: &str,
    offsets: &[(&str, u32, i64)],
) -> Vec<Result<(), BackendError>> {
    match h.exec(
        backend,
        Command::CommitOffsets {
            group: group.into(),
            offsets: offsets
                .iter()
                .map(|(t, p, o)| GroupOffset {
                    topic: (*t).into(),
                    partition: *p,
                    committed: CommittedOffset {
                        offset: *o,
                        leader_epoch: 4,
                        metadata: Some(format!("m{o}")),
                    },
                })
                .collect(),
        },
    ) {
        Completion::CommitOffsets(r) => r,
        other => panic!("{other:?}"),
    }
}

fn fetch(
    h: &mut Pool,
    backend: &IggyBackend,
    group: &str,
) -> Vec<(String, u32, i64, i32, Option<String>)> {
    match h.exec(
        backend,
        Command::FetchOffsets {
            group: group.into(),
            only: None,
        },
    ) {
        Completion::FetchOffsets(Ok(o)) => o
            .into_iter()
            .map(|g| {
                (
                    g.topic,
                    g.partition,
                    g.committed.offset,
                    g.committed.leader_epoch,
                    g.committed.metadata,
                )
            })
            .collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn committed_offsets_survive_a_restart_and_are_mirrored_for_iggy() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 2);
    create(&mut h, &backend, "u", 1);
    // Iggy stores no consumer offset past a partition's end: the mirrored ones need these.
    let nine: Vec<_> = (0..9).map(record).collect();
    assert_eq!(append(&mut h, &backend, "t", 1, &nine, None), Ok(0));
    assert_eq!(append(&mut h, &backend, "u", 0, &nine, None), Ok(0));
    let results = commit(
        &mut h,
        &backend,
        "g",
        &[("t", 0, 0), ("t", 1, 7), ("t", 5, 1), ("nope", 0, 1)],
    );
    assert!(results[0].is_ok() && results[1].is_ok());
    assert!(matches!(
        results[2],
        Err(BackendError::UnknownPartition { .. })
    ));
    assert!(matches!(results[3], Err(BackendError::UnknownTopic(_))));
    commit(&mut h, &backend, "g", &[("t", 1, 9)]);
    commit(&mut h, &backend, "other", &[("u", 0, 3)]);
    // The offsets topic is made to keep its records for ever, said in its options.
    let offsets: Vec<String> = h
        .fake
        .topics
        .keys()
        .filter(|t| t.starts_with(crate::offsets_log::TOPIC_PREFIX))
        .cloned()
        .collect();
    assert!(!offsets.is_empty());
    for topic in &offsets {
        assert_eq!(option(&h, topic, "message_expiry"), Some(u64::MAX));
        assert_eq!(option(&h, topic, "max_topic_size"), Some(u64::MAX));
    }
    // Iggy's own consumer offsets show the group's progress as "last consumed".
    assert_eq!(
        h.fake.consumer_offsets.get(&("g".into(), "t".into(), 1)),
        Some(&8)
    );
    assert_eq!(
        h.fake.consumer_offsets.get(&("g".into(), "t".into(), 0)),
        None,
        "offset 0: nothing consumed"
    );

    let (mut h, backend) = h.restart();
    assert_eq!(
        fetch(&mut h, &backend, "g"),
        vec![
            ("t".into(), 0, 0, 4, Some("m0".into())),
            ("t".into(), 1, 9, 4, Some("m9".into()))
        ]
    );
    match h.exec(&backend, Command::ListGroups) {
        Completion::ListGroups(Ok(g)) => assert_eq!(g, vec!["g".to_owned(), "other".into()]),
        other => panic!("{other:?}"),
    }
    // Deleting one offset, a topic, and a group, all kept across another restart.
    match h.exec(
        &backend,
        Command::DeleteOffsets {
            group: "g".into(),
            only: Some(vec![("t".into(), 1)]),
        },
    ) {
        Completion::DeleteOffsets(Ok(1)) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        h.fake.consumer_offsets.get(&("g".into(), "t".into(), 1)),
        None
    );
    match h.exec(
        &backend,
        Command::DeleteTopic {
            topic: TopicRef::Name("u".into()),
        },
    ) {
        Completion::DeleteTopic(Ok(_)) => {}
        other => panic!("{other:?}"),
    }
    let (mut h, backend) = h.restart();
    assert_eq!(
        fetch(&mut h, &backend, "g"),
        vec![("t".into(), 0, 0, 4, Some("m0".into()))]
    );
    assert!(
        fetch(&mut h, &backend, "other").is_empty(),
        "its topic is gone"
    );
    match h.exec(
        &backend,
        Command::DeleteOffsets {
            group: "g".into(),
            only: None,
        },
    ) {
        Completion::DeleteOffsets(Ok(1)) => {}
        other => panic!("{other:?}"),
    }
    let (mut h, backend) = h.restart();
    assert!(fetch(&mut h, &backend, "g").is_empty());
}

/// A Kafka group named like the gateway's fence consumer keeps its commits, but they are not
/// mirrored into Iggy's consumer offsets, where the fence's offset lives, nor is that
/// offset deleted with the group.
#[test]
fn a_group_named_like_the_fence_consumer_is_not_mirrored() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let nine: Vec<_> = (0..9).map(record).collect();
    assert_eq!(append(&mut h, &backend, "t", 0, &nine, None), Ok(0));
    let group = crate::append::FENCE_CONSUMER;
    h.fake
        .consumer_offsets
        .insert((group.into(), "t".into(), 0), 0);
    assert_eq!(
        commit(&mut h, &backend, group, &[("t", 0, 5)]),
        vec![Ok(())]
    );
    for _ in 0..20 {
        h.serve();
    }
    assert_eq!(
        h.fake.consumer_offsets.get(&(group.into(), "t".into(), 0)),
        Some(&0)
    );
    assert_eq!(
        fetch(&mut h, &backend, group),
        vec![("t".into(), 0, 5, 4, Some("m5".into()))]
    );
    match h.exec(
        &backend,
        Command::DeleteOffsets {
            group: group.into(),
            only: None,
        },
    ) {
        Completion::DeleteOffsets(Ok(1)) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        h.fake.consumer_offsets.get(&(group.into(), "t".into(), 0)),
        Some(&0)
    );
}

#[test]
fn a_commit_iggy_does_not_take_is_not_acknowledged() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let Execution::Pending(fut) = backend.execute(Command::CommitOffsets {
        group: "g".into(),
        offsets: vec![GroupOffset {
            topic: "t".into(),
            partition: 0,
            committed: CommittedOffset {
                offset: 3,
                leader_epoch: -1,
                metadata: None,
            },
        }],
    }) else {
        panic!("a commit waits for Iggy");
    };
    // The topic is known from its creation: the next request is the commit record's append.
    h.fake.fail_next = Some(5000);
    let result = h.run(fut);
    match result {
        Completion::CommitOffsets(r) => assert!(r[0].is_err(), "{r:?}"),
        other => panic!("{other:?}"),
    }
    assert!(fetch(&mut h, &backend, "g").is_empty());
}

fn keep(
    h: &mut Pool,
    backend: &IggyBackend,
    groups: &[(&str, Option<&'static [u8]>)],
) -> Result<(), BackendError> {
    let groups = groups
        .iter()
        .map(|(g, s)| ((*g).to_owned(), s.map(bytes::Bytes::from_static)))
        .collect();
    h.run(backend.keep_groups(groups))
}

fn kept(backend: &IggyBackend) -> Vec<(String, Vec<u8>)> {
    backend
        .kept_groups()
        .into_iter()
        .map(|(g, s)| (g, s.to_vec()))
        .collect()
}

#[test]
fn group_states_are_kept_in_the_offsets_log_and_replayed() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    assert!(kept(&backend).is_empty());
    keep(&mut h, &backend, &[("a", Some(b"1")), ("b", Some(b"2"))]).expect("kept");
    keep(
        &mut h,
        &backend,
        &[("a", Some(b"3")), ("b", None), ("c", Some(b""))],
    )
    .expect("kept");
    // Deleting a group's offsets is not deleting its coordinator state.
    match h.exec(
        &backend,
        Command::DeleteOffsets {
            group: "a".into(),
            only: None,
        },
    ) {
        Completion::DeleteOffsets(Ok(0)) => {}
        other => panic!("{other:?}"),
    }
    let (mut h, backend) = h.restart();
    assert_eq!(
        kept(&backend),
        vec![
            ("a".to_owned(), b"3".to_vec()),
            ("c".to_owned(), Vec::new())
        ]
    );
    // A write Iggy refuses is not acknowledged, and changes nothing.
    h.fake.fail_next = Some(5000);
    assert!(keep(&mut h, &backend, &[("a", None)]).is_err());
    assert_eq!(kept(&backend).len(), 2);
    keep(&mut h, &backend, &[("a", None)]).expect("kept");
    let (_, backend) = h.restart();
    assert_eq!(kept(&backend), vec![("c".to_owned(), Vec::new())]);
}

#[test]
fn the_offsets_log_is_compacted_into_a_new_generation() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1000);
    // A group's state is carried into the new generation with the offsets.
    keep(&mut h, &backend, &[("g", Some(b"state"))]).expect("kept");
    let batch: Vec<(&str, u32, i64)> = (0..1000).map(|p| ("t", p, 1)).collect();
    let rounds = offsets::COMPACT_AFTER / 1000 + 1;
    for round in 0..rounds {
        let offsets: Vec<(&str, u32, i64)> = batch
            .iter()
            .map(|(t, p, _)| (*t, *p, i64::try_from(round).unwrap_or(0) + 1))
            .collect();
        assert!(commit(&mut h, &backend, "g", &offsets)
            .iter()
            .all(Result::is_ok));
    }
    assert!(
        !h.fake.topics.contains_key(&offsets::topic_name(0)),
        "the old generation is gone"
    );
    let log = &h.fake.topics[&offsets::topic_name(1)];
    assert!(
        log.partitions[0].next <= 1002 + 1000,
        "{}",
        log.partitions[0].next
    );
    let want = i64::try_from(rounds).unwrap_or(0);
    let (mut h, backend) = h.restart();
    let got = fetch(&mut h, &backend, "g");
    assert_eq!(got.len(), 1000);
    assert!(got.iter().all(|(_, _, o, _, _)| *o == want));
    assert_eq!(kept(&backend), vec![("g".to_owned(), b"state".to_vec())]);
}

#[test]
fn a_second_gateway_on_the_stream_is_noticed_and_its_commits_followed() {
    let mut h = Pool::new(FakeIggy::new());
    let a = h.backend();
    create(&mut h, &a, "t", 2);
    commit(&mut h, &a, "g", &[("t", 0, 1)]);
    // Another gateway on the same stream, committing for another group.
    let b = h.backend();
    commit(&mut h, &b, "h", &[("t", 1, 7)]);
    commit(&mut h, &b, "g", &[("t", 1, 3)]);
    assert_eq!(
        fetch(&mut h, &a, "h"),
        vec![],
        "not seen before a's next commit"
    );
    // A's next commit lands after b's: a reads them back, in the log's order.
    commit(&mut h, &a, "g", &[("t", 0, 2)]);
    assert_eq!(
        fetch(&mut h, &a, "h"),
        vec![("t".into(), 1, 7, 4, Some("m7".into()))]
    );
    assert_eq!(
        fetch(&mut h, &a, "g"),
        vec![
            ("t".into(), 0, 2, 4, Some("m2".into())),
            ("t".into(), 1, 3, 4, Some("m3".into()))
        ]
    );
    // B compacts the log into a new generation and drops a's; a's next commit follows it.
    let batch: Vec<(&str, u32, i64)> = (0..1000).map(|i| ("t", i % 2, 5)).collect();
    for _ in 0..=offsets::COMPACT_AFTER / 1000 {
        commit(&mut h, &b, "h", &batch);
    }
    assert!(!h.fake.topics.contains_key(&offsets::topic_name(0)));
    assert!(commit(&mut h, &a, "g", &[("t", 0, 9)])[0].is_ok());
    assert!(h.fake.topics.contains_key(&offsets::topic_name(1)));
    let (mut h, restarted) = h.restart();
    assert_eq!(
        fetch(&mut h, &restarted, "g"),
        vec![
            ("t".into(), 0, 9, 4, Some("m9".into())),
            ("t".into(), 1, 3, 4, Some("m3".into()))
        ]
    );
    assert_eq!(fetch(&mut h, &restarted, "h").len(), 2);
}

#[test]
fn a_deleted_offsets_log_is_written_again_from_memory() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 2);
    commit(&mut h, &backend, "g", &[("t", 0, 1), ("t", 1, 2)]);
    h.fake.topics.retain(|name, _| !offsets::is_own(name));
    assert!(commit(&mut h, &backend, "g", &[("t", 0, 3)])[0].is_ok());
    let (mut h, backend) = h.restart();
    assert_eq!(
        fetch(&mut h, &backend, "g"),
        vec![
            ("t".into(), 0, 3, 4, Some("m3".into())),
            ("t".into(), 1, 2, 4, Some("m2".into()))
        ]
    );
}

#[test]
fn an_offsets_log_wiped_by_other_means_is_written_again_from_memory() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 2);
    commit(&mut h, &backend, "g", &[("t", 0, 1), ("t", 1, 2)]);
    // Deleted and created again, empty, by an Iggy client.
    let log = offsets::topic_name(0);
    h.fake.topics.remove(&log);
    h.fake.create_topic(&log, 1, Vec::new());
    assert!(commit(&mut h, &backend, "g", &[("t", 0, 3)])[0].is_ok());
    let want = vec![
        ("t".into(), 0, 3, 4, Some("m3".into())),
        ("t".into(), 1, 2, 4, Some("m2".into())),
    ];
    assert_eq!(fetch(&mut h, &backend, "g"), want);
    let (mut h, backend) = h.restart();
    assert_eq!(fetch(&mut h, &backend, "g"), want);
}

#[test]
fn an_unfinished_newer_generation_is_ignored_at_start() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    commit(&mut h, &backend, "g", &[("t", 0, 5)]);
    // A crash after creating generation 1, before its snapshot was complete.
    h.fake.create_topic(&offsets::topic_name(1), 1, Vec::new());
    let (mut h, backend) = h.restart();
    assert_eq!(fetch(&mut h, &backend, "g").len(), 1);
    assert!(!h.fake.topics.contains_key(&offsets::topic_name(1)));
}

#[test]
fn the_offsets_log_is_out_of_every_clients_reach() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    commit(&mut h, &backend, "g", &[("t", 0, 5)]);
    let log = h
        .fake
        .topics
        .keys()
        .find(|n| offsets::is_own(n))
        .expect("the offsets log")
        .clone();
    let kept = h.fake.topics[&log].partitions[0].next;
    let unknown = |c: Completion| {
        let e = match c {
            Completion::Append(r) => r.err(),
            Completion::Read(r) => r.err(),
            Completion::Offsets(r) => r.err(),
            Completion::OffsetForTimestamp(r) | Completion::MaxTimestamp(r) => r.err(),
            Completion::DeleteTopic(r) => r.err(),
            Completion::CreatePartitions(r) | Completion::AlterTopicConfig(r) => r.err(),
            other => panic!("{other:?}"),
        };
        assert!(matches!(e, Some(BackendError::UnknownTopic(_))), "{e:?}");
    };
    let by_name = TopicRef::Name(log.clone());
    let commands = [
        Command::Append {
            topic: log.clone(),
            partition: 0,
            messages: [record(1)].iter().map(to_iggy).collect(),
            largest_batch: 100,
            producer: None,
        },
        Command::Read {
            topic: by_name.clone(),
            partition: 0,
            offset: 0,
            max_bytes: 1000,
            max_messages: 10,
        },
        Command::Offsets {
            topic: by_name.clone(),
            partition: 0,
        },
        Command::OffsetForTimestamp {
            topic: log.clone(),
            partition: 0,
            timestamp_ms: 0,
        },
        Command::MaxTimestamp {
            topic: log.clone(),
            partition: 0,
        },
        Command::CreatePartitions {
            topic: log.clone(),
            total: 2,
            validate_only: false,
        },
        Command::AlterTopicConfig {
            topic: log.clone(),
            config: TopicConfig::default(),
            validate_only: false,
        },
        Command::DeleteTopic { topic: by_name },
    ];
    for command in commands {
        unknown(h.exec(&backend, command));
    }
    // Its id, as the gateway would derive it, resolves to nothing either.
    let header = &h.fake.topics[&log];
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&header.created_at.to_be_bytes());
    id[8..12].copy_from_slice(&header.id.to_be_bytes());
    id[12..].copy_from_slice(b"KGW1");
    unknown(h.exec(
        &backend,
        Command::DeleteTopic {
            topic: TopicRef::Id(Uuid(id)),
        },
    ));
    assert!(matches!(
        commit(&mut h, &backend, "g", &[(&log, 0, 1)])[0],
        Err(BackendError::UnknownTopic(_))
    ));
    match h.exec(&backend, Command::ListTopics { only: None }) {
        Completion::ListTopics(Ok(t)) => {
            assert_eq!(t.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["t"]);
        }
        other => panic!("{other:?}"),
    }
    // Nothing got in, and the group's commit is still there after a restart.
    assert_eq!(h.fake.topics[&log].partitions.len(), 1);
    assert_eq!(h.fake.topics[&log].partitions[0].next, kept);
    let (mut h, backend) = h.restart();
    assert_eq!(fetch(&mut h, &backend, "g").len(), 1);
}

#[test]
fn topic_ids_are_stable_until_the_topic_is_created_again() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 2);
    let id = |h: &mut Pool, b: &IggyBackend| match h.exec(b, Command::ListTopics { only: None }) {
        Completion::ListTopics(Ok(t)) => t[0].id,
        other => panic!("{other:?}"),
    };
    let first = id(&mut h, &backend);
    assert_ne!(first, Uuid::NIL);
    let (mut h, backend) = h.restart();
    assert_eq!(id(&mut h, &backend), first);
    // By id: reads resolve it.
    append(&mut h, &backend, "t", 0, &[record(2)], None).expect("appended");
    match h.exec(
        &backend,
        Command::Read {
            topic: TopicRef::Id(first),
            partition: 0,
            offset: 0,
            max_bytes: 1000,
            max_messages: 10,
        },
    ) {
        Completion::Read(Ok(r)) => assert_eq!(r.messages.len(), 1),
        other => panic!("{other:?}"),
    }
    match h.exec(
        &backend,
        Command::DeleteTopic {
            topic: TopicRef::Id(first),
        },
    ) {
        Completion::DeleteTopic(Ok(t)) => assert_eq!(t.id, first),
        other => panic!("{other:?}"),
    }
    create(&mut h, &backend, "t", 2);
    assert_ne!(id(&mut h, &backend), first);
    match h.exec(
        &backend,
        Command::Read {
            topic: TopicRef::Id(first),
            partition: 0,
            offset: 0,
            max_bytes: 1000,
            max_messages: 10,
        },
    ) {
        Completion::Read(Err(e)) => assert_eq!(
            e.error_code(),
            iggy_kafka_core::protocol::error_code::ErrorCode::UNKNOWN_TOPIC_ID
        ),
        other => panic!("{other:?}"),
    }
}

fn create_with(
    h: &mut Pool,
    backend: &IggyBackend,
    name: &str,
    partitions: u32,
    config: TopicConfig,
) -> Result<TopicInfo, BackendError> {
    match h.exec(
        backend,
        Command::CreateTopic {
            name: name.into(),
            partitions,
            config,
            validate_only: false,
        },
    ) {
        Completion::CreateTopic(r) => r,
        other => panic!("{other:?}"),
    }
}

fn alter(
    h: &mut Pool,
    backend: &IggyBackend,
    name: &str,
    config: TopicConfig,
) -> Result<(), BackendError> {
    match h.exec(
        backend,
        Command::AlterTopicConfig {
            topic: name.into(),
            config,
            validate_only: false,
        },
    ) {
        Completion::AlterTopicConfig(r) => r,
        other => panic!("{other:?}"),
    }
}

fn list(h: &mut Pool, backend: &IggyBackend, name: &str) -> TopicInfo {
    match h.exec(
        backend,
        Command::ListTopics {
            only: Some(vec![TopicRef::Name(name.into())]),
        },
    ) {
        Completion::ListTopics(Ok(mut t)) if t.len() == 1 => t.remove(0),
        other => panic!("{other:?}"),
    }
}

fn option(h: &Pool, topic: &str, key: &str) -> Option<u64> {
    let options = &h.fake.topics[topic].options;
    options.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

#[test]
fn topic_configuration_maps_to_iggy_options() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    let mut config = TopicConfig::default();
    config.retention_ms = Some(60_000);
    config.retention_bytes = Some(1 << 20);
    let info = create_with(&mut h, &backend, "t", 4, config).expect("created");
    assert_eq!(info.config.retention_ms, Some(60_000));
    assert_eq!(info.config.retention_bytes, Some(1 << 20));
    // Segments no larger than a partition's retention, so that retention can act.
    assert_eq!(info.config.segment_bytes, Some(1 << 20));
    assert_eq!(info.config.flush_messages, None);
    assert_eq!(option(&h, "t", "message_expiry"), Some(60_000_000));
    assert_eq!(option(&h, "t", "max_topic_size"), Some(4 << 20));
    assert_eq!(option(&h, "t", "segment_size"), Some(1 << 20));
    // Written through: nothing acknowledged waits in Iggy's memory.
    assert_eq!(option(&h, "t", "messages_required_to_save"), Some(1));
    assert_eq!(option(&h, "t", "enforce_fsync"), None);

    // An alter carries the whole new configuration; Iggy's update patches, so "no limit"
    // must be sent, not left out.
    let mut change = info.config.clone();
    change.retention_ms = None;
    alter(&mut h, &backend, "t", change.clone()).expect("altered");
    assert_eq!(option(&h, "t", "message_expiry"), Some(u64::MAX));
    assert_eq!(option(&h, "t", "max_topic_size"), Some(4 << 20));
    let listed = list(&mut h, &backend, "t");
    assert_eq!(listed.config, change);

    // Set when the topic is created, never after.
    let mut resized = change.clone();
    resized.segment_bytes = Some(2 << 20);
    let mut fsynced = change.clone();
    fsynced.flush_messages = Some(1);
    let mut shrunk = change.clone();
    shrunk.retention_bytes = Some(100_000);
    let mut stamped = change.clone();
    stamped.log_append_time = Some(true);
    for bad in [resized, fsynced, shrunk, stamped] {
        assert!(
            matches!(
                alter(&mut h, &backend, "t", bad.clone()),
                Err(BackendError::InvalidConfig(_))
            ),
            "{bad:?}"
        );
    }
    assert_eq!(option(&h, "t", "segment_size"), Some(1 << 20));

    // flush.messages=1 forces every write to disk; segment.bytes is Iggy's segment size.
    let mut durable = TopicConfig::default();
    durable.flush_messages = Some(1);
    durable.segment_bytes = Some(8 << 20);
    let info = create_with(&mut h, &backend, "f", 1, durable).expect("created");
    assert_eq!(info.config.flush_messages, Some(1));
    assert_eq!(info.config.segment_bytes, Some(8 << 20));
    assert_eq!(option(&h, "f", "enforce_fsync"), Some(1));
    assert_eq!(option(&h, "f", "segment_size"), Some(8 << 20));

    // What Iggy cannot hold is refused before it is asked.
    let refused = [
        (Some(100_000), None, None),          // below Iggy's smallest segment
        (Some(4 << 20), Some(8 << 20), None), // segment larger than the retention
        (None, Some(1000), None),             // below Iggy's smallest segment
        (None, Some((2 << 20) + 1), None),    // not a multiple of 512
        (None, None, Some(5)),                // between "every write" and "never"
    ];
    for (retention, segment, flush) in refused {
        let mut c = TopicConfig::default();
        c.retention_bytes = retention;
        c.segment_bytes = segment;
        c.flush_messages = flush;
        let before = h.fake.seen.len();
        assert!(
            matches!(
                create_with(&mut h, &backend, "x", 1, c.clone()),
                Err(BackendError::InvalidConfig(_))
            ),
            "{c:?}"
        );
        assert_eq!(
            h.fake.seen.len(),
            before,
            "refused without asking Iggy: {c:?}"
        );
    }

    // Kafka's retention.bytes is per partition: the topic's limit grows with it.
    match h.exec(
        &backend,
        Command::CreatePartitions {
            topic: "t".into(),
            total: 6,
            validate_only: false,
        },
    ) {
        Completion::CreatePartitions(Ok(())) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(h.fake.topics["t"].partitions.len(), 6);
    assert_eq!(option(&h, "t", "max_topic_size"), Some(6 << 20));
    assert_eq!(
        list(&mut h, &backend, "t").config.retention_bytes,
        Some(1 << 20)
    );
    assert!(matches!(
        h.exec(
            &backend,
            Command::CreatePartitions {
                topic: "t".into(),
                total: 6,
                validate_only: false
            }
        ),
        Completion::CreatePartitions(Err(BackendError::InvalidPartitions(_)))
    ));
}

#[test]
fn without_write_through_topics_keep_iggys_default() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h
        .connect_with(IggyConfig {
            write_through: false,
            ..IggyConfig::default()
        })
        .unwrap_or_else(|e| panic!("connect: {e}"));
    create(&mut h, &backend, "t", 1);
    assert_eq!(option(&h, "t", "messages_required_to_save"), None);
    let offsets = offsets::topic_name(0);
    assert_eq!(option(&h, &offsets, "messages_required_to_save"), None);
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    assert_eq!(option(&h, &offsets, "messages_required_to_save"), Some(1));
}

#[test]
fn topics_created_elsewhere_show_their_storage_options() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "seed", 1);
    // Created with Iggy's tools: no options of the gateway's, Iggy's derived defaults.
    h.fake.create_topic("plain", 2, Vec::new());
    let plain = list(&mut h, &backend, "plain");
    assert_eq!(plain.config, TopicConfig::default());
    h.fake.create_topic(
        "tuned",
        1,
        vec![
            ("segment_size".into(), 16 << 20),
            ("enforce_fsync".into(), 1),
            ("max_topic_size".into(), 64 << 20),
        ],
    );
    let tuned = list(&mut h, &backend, "tuned");
    assert_eq!(tuned.config.segment_bytes, Some(16 << 20));
    assert_eq!(tuned.config.flush_messages, Some(1));
    assert_eq!(tuned.config.retention_bytes, Some(64 << 20));
    // Its settings carry through an alter that does not touch them.
    let mut change = tuned.config.clone();
    change.retention_ms = Some(1000);
    alter(&mut h, &backend, "tuned", change).expect("altered");
    assert_eq!(option(&h, "tuned", "message_expiry"), Some(1_000_000));
    assert_eq!(option(&h, "tuned", "segment_size"), Some(16 << 20));
}

/// A long poll's watch of partition 0 of `topic` for what follows `offset`.
fn watch(
    backend: &IggyBackend,
    topic: &str,
    offset: u64,
) -> Pin<Box<dyn Future<Output = Completion> + Send>> {
    match backend.execute(Command::Watch {
        partitions: vec![WatchPartition {
            topic: TopicRef::Name(topic.into()),
            partition: 0,
            offset,
        }],
        deadline: Instant::now() + Duration::from_secs(60),
    }) {
        Execution::Pending(w) => w,
        Execution::Done(c) => panic!("a watch waits: {c:?}"),
    }
}

#[test]
fn a_watch_ends_when_data_arrives() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let mut watch = watch(&backend, "t", 0);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..20 {
        assert!(watch.as_mut().poll(&mut cx).is_pending());
        h.serve();
    }
    append(&mut h, &backend, "t", 0, &[record(2)], None).expect("appended");
    let done = h.run(watch);
    assert_eq!(done, Completion::Watch);
}

#[test]
fn fetches_waiting_on_a_topic_share_its_looks() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    // As a fetch does, a read before watching: there is nothing yet.
    assert_eq!(read(&mut h, &backend, "t", 0, 0), Ok(Vec::new()));
    h.clock.sleeps_wait();
    let mut watches: Vec<_> = (0..10).map(|_| watch(&backend, "t", 0)).collect();
    let looks = |h: &Pool| {
        h.fake
            .seen
            .iter()
            .filter(|&&c| c == iggy_kafka_iggy_client::protocol::codes::GET_TOPIC_CODE)
            .count()
    };
    let before = looks(&h);
    let mut cx = Context::from_waker(Waker::noop());
    // Two seconds, in steps of 10 ms: twenty poll intervals.
    for _ in 0..200 {
        for w in &mut watches {
            assert!(w.as_mut().poll(&mut cx).is_pending());
        }
        h.serve();
        h.clock.advance(Duration::from_millis(10));
    }
    let asked = looks(&h) - before;
    // Each watch's first look is its own; after that, about one per interval for them all
    // (ten each, two hundred in all, when every watch asked for itself).
    assert!((20..=40).contains(&asked), "{asked} looks");
    // An append here wakes every watch, and its reply said where the partition ends now: no
    // watch needs to ask Iggy.
    append(&mut h, &backend, "t", 0, &[record(1)], None).expect("appended");
    for w in watches {
        assert_eq!(h.run(w), Completion::Watch);
    }
    assert_eq!(looks(&h) - before, asked);
}

#[test]
fn a_watch_dropped_while_it_asks_leaves_no_other_waiting() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    assert_eq!(append(&mut h, &backend, "t", 0, &[record(0)], None), Ok(0));
    assert_eq!(read(&mut h, &backend, "t", 0, 0).map(|r| r.len()), Ok(1));
    h.clock.sleeps_wait();
    let (mut asker, mut waiter) = (watch(&backend, "t", 1), watch(&backend, "t", 1));
    let mut cx = Context::from_waker(Waker::noop());
    // Their first looks, each its own; then both sleep until the next beat.
    for _ in 0..4 {
        assert!(asker.as_mut().poll(&mut cx).is_pending());
        assert!(waiter.as_mut().poll(&mut cx).is_pending());
        h.serve();
    }
    let seen = h.fake.seen.len();
    h.clock.advance(Duration::from_millis(150));
    assert!(asker.as_mut().poll(&mut cx).is_pending());
    assert!(waiter.as_mut().poll(&mut cx).is_pending());
    assert_eq!(h.fake.seen.len(), seen, "nothing served yet");
    // The asker's fetch ends (its deadline passed) before Iggy answered it.
    drop(asker);
    append(&mut h, &backend, "t", 0, &[record(1)], None).expect("appended");
    // The waiter, told, asks for itself, and sees the new record.
    assert_eq!(h.run(waiter), Completion::Watch);
}

#[test]
fn the_gate_admits_one_at_a_time_and_survives_a_dropped_waiter() {
    let gate = crate::sync::Gate::default();
    let mut cx = Context::from_waker(Waker::noop());
    let mut first = Box::pin(gate.enter());
    let Poll::Ready(held) = first.as_mut().poll(&mut cx) else {
        panic!("a free gate admits at once");
    };
    let mut second = Box::pin(gate.enter());
    let mut third = Box::pin(gate.enter());
    assert!(second.as_mut().poll(&mut cx).is_pending());
    assert!(third.as_mut().poll(&mut cx).is_pending());
    drop(held);
    // The waiter that was told first goes away without entering: the next one gets in.
    drop(second);
    assert!(matches!(third.as_mut().poll(&mut cx), Poll::Ready(_)));
}

/// A poll read ahead is sized by the running estimate of a message's size, so where sizes
/// vary, a read can leave a message or two of its reply over; a read that finds so little
/// goes on into the next reply read ahead rather than answer with one message and have the
/// consumer ask again at once.
#[test]
fn reads_go_on_from_what_a_reply_read_ahead_left() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let rec = |i: usize| KafkaRecord {
        // Sizes that vary, as a running estimate cannot foresee.
        value: Some(Bytes::from(vec![
            b'a' + (i % 26) as u8;
            (1 + i % 3 * 9) << 10
        ])),
        key: None,
        headers: vec![],
        ..record(i)
    };
    // One message per append: the fake answers a poll with whole appends, so this makes
    // it answer as Iggy does, with exactly the messages asked for.
    for i in 0..1500 {
        assert_eq!(
            append(&mut h, &backend, "t", 0, &[rec(i)], None),
            Ok(i as u64)
        );
    }
    let (mut at, mut sizes) = (0u64, Vec::new());
    while at < 1500 {
        let got = read_within(&mut h, &backend, "t", 0, at, 100 << 10, usize::MAX).expect("read");
        for (o, r) in &got {
            assert_eq!(*r, rec(*o as usize));
        }
        assert_eq!(got.first().map(|(o, _)| *o), Some(at));
        at = got.last().expect("a message").0 + 1;
        sizes.push(got.len());
    }
    // About nine messages fit a read; each but the last takes at least half of that
    // (without going on, reads of one message came between reads of nine).
    let short = sizes[..sizes.len() - 1].iter().filter(|n| **n < 5).count();
    assert_eq!(short, 0, "{sizes:?}");
}

fn max_timestamp(
    h: &mut Pool,
    backend: &IggyBackend,
    topic: &str,
    partition: u32,
) -> Result<Option<(u64, i64)>, BackendError> {
    match h.exec(
        backend,
        Command::MaxTimestamp {
            topic: topic.into(),
            partition,
        },
    ) {
        Completion::MaxTimestamp(r) => r,
        other => panic!("{other:?}"),
    }
}

fn polls(h: &Pool) -> usize {
    h.fake
        .seen
        .iter()
        .filter(|c| **c == iggy_kafka_iggy_client::protocol::codes::POLL_MESSAGES_CODE)
        .count()
}

/// Kafka's MAX_TIMESTAMP on Iggy, which keeps no such figure: the first message with the
/// largest timestamp, found by reading each message once, and followed through retention
/// and a topic created again by other means.
#[test]
fn the_largest_timestamp_is_found_reading_each_message_once() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 2);
    let at = |timestamp_ms: i64| KafkaRecord {
        timestamp_ms,
        value: Some(Bytes::from_static(b"v")),
        ..KafkaRecord::default()
    };
    assert_eq!(max_timestamp(&mut h, &backend, "t", 0), Ok(None));
    for (batch, base) in [(vec![at(5), at(90), at(7)], 0), (vec![at(90), at(-1)], 3)] {
        assert_eq!(append(&mut h, &backend, "t", 0, &batch, None), Ok(base));
    }
    let before = polls(&h);
    assert_eq!(max_timestamp(&mut h, &backend, "t", 0), Ok(Some((1, 90))));
    assert_eq!(polls(&h), before + 1);
    // Asked again: nothing new, nothing read.
    assert_eq!(max_timestamp(&mut h, &backend, "t", 0), Ok(Some((1, 90))));
    assert_eq!(polls(&h), before + 1);
    // Only what was appended since is read.
    assert_eq!(append(&mut h, &backend, "t", 0, &[at(40)], None), Ok(5));
    assert_eq!(max_timestamp(&mut h, &backend, "t", 0), Ok(Some((1, 90))));
    assert_eq!(polls(&h), before + 2);
    // Retention took the first message with the largest timestamp: the next one.
    h.fake.topics.get_mut("t").expect("t").partitions[0]
        .batches
        .remove(0);
    assert_eq!(max_timestamp(&mut h, &backend, "t", 0), Ok(Some((3, 90))));
    assert_eq!(max_timestamp(&mut h, &backend, "t", 1), Ok(None));
    // The topic created again elsewhere: its own messages only.
    h.fake.create_topic("t", 2, Vec::new());
    assert_eq!(max_timestamp(&mut h, &backend, "t", 0), Ok(None));
    assert_eq!(append(&mut h, &backend, "t", 0, &[at(3)], None), Ok(0));
    assert_eq!(max_timestamp(&mut h, &backend, "t", 0), Ok(Some((0, 3))));
    assert!(matches!(
        max_timestamp(&mut h, &backend, "t", 2),
        Err(BackendError::UnknownPartition { .. })
    ));
}

/// A Kafka batch whose timestamps span more than one Iggy append can hold (days apart, and
/// records without a timestamp beside others) goes to Iggy as one append and reads back
/// exactly.
#[test]
fn records_days_apart_in_one_batch_are_appended_whole() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let records: Vec<KafkaRecord> = (0..50)
        .map(|i| KafkaRecord {
            timestamp_ms: if i % 7 == 3 {
                -1
            } else {
                1_700_000_000_000 - i as i64 * 86_400_000
            },
            ..record(i)
        })
        .collect();
    let sends = |h: &Pool| {
        h.fake
            .seen
            .iter()
            .filter(|c| **c == iggy_kafka_iggy_client::protocol::codes::SEND_MESSAGES_CODE)
            .count()
    };
    let before = sends(&h);
    assert_eq!(append(&mut h, &backend, "t", 0, &records, None), Ok(0));
    assert_eq!(sends(&h), before + 1, "one append");
    let got = read(&mut h, &backend, "t", 0, 0).expect("a read");
    assert_eq!(got.into_iter().map(|(_, r)| r).collect::<Vec<_>>(), records);
    assert_eq!(
        max_timestamp(&mut h, &backend, "t", 0),
        Ok(Some((0, 1_700_000_000_000)))
    );
}

/// ListOffsets by timestamp answers, as Kafka does, the first record whose own timestamp is
/// at least the one asked for: Iggy's search by append time only says where to start.
#[test]
fn a_search_by_timestamp_answers_by_the_records_timestamps() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    // The fake appends at 1_800_000_000_000 ms (plus the offset in µs).
    let t = 1_800_000_000_000i64;
    let at = |timestamp_ms: i64| KafkaRecord {
        timestamp_ms,
        value: Some(Bytes::from_static(b"v")),
        ..KafkaRecord::default()
    };
    for (batch, base) in [
        (vec![at(100), at(200)], 0),
        (vec![at(t - 5), at(t - 1), at(t - 3)], 2),
    ] {
        assert_eq!(append(&mut h, &backend, "t", 0, &batch, None), Ok(base));
    }
    let search = |h: &mut Pool, timestamp_ms| match h.exec(
        &backend,
        Command::OffsetForTimestamp {
            topic: "t".into(),
            partition: 0,
            timestamp_ms,
        },
    ) {
        Completion::OffsetForTimestamp(r) => r,
        other => panic!("{other:?}"),
    };
    // All appended after `t - 3`, the first three timestamped before it.
    assert_eq!(search(&mut h, t - 3), Ok(Some((3, t - 1))));
    assert_eq!(search(&mut h, 150), Ok(Some((1, 200))));
    // Later than any record, though not than every append: none, after reading on to
    // the end.
    assert_eq!(search(&mut h, t), Ok(None));
    // What searches read is kept: asked again, only Iggy's own search is sent, and the
    // largest timestamp needs no read at all.
    let before = polls(&h);
    assert_eq!(search(&mut h, t), Ok(None));
    assert_eq!(polls(&h), before + 1);
    assert_eq!(
        max_timestamp(&mut h, &backend, "t", 0),
        Ok(Some((3, t - 1)))
    );
    assert_eq!(polls(&h), before + 1);
}

/// While Iggy cannot be reached, the topics are listed as they last were: a broker that
/// cannot reach its storage still knows its topics, and clients told that every topic is
/// gone drop them from their assignments.
#[test]
fn topics_are_listed_as_last_seen_while_iggy_is_unreachable() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 2);
    create(&mut h, &backend, "u", 1);
    let listed = |c: Completion| match c {
        Completion::ListTopics(r) => r,
        other => panic!("{other:?}"),
    };
    let before = listed(h.exec(&backend, Command::ListTopics { only: None })).expect("listed");
    assert_eq!(before.len(), 2);
    // Gone: a request on a lane without a connection fails at once.
    h.drop_connections();
    assert_eq!(
        listed(h.exec(&backend, Command::ListTopics { only: None })),
        Ok(before.clone())
    );
    let only_u = Some(vec![TopicRef::Name("u".into())]);
    let u = listed(h.exec(&backend, Command::ListTopics { only: only_u })).expect("u");
    assert_eq!((u.len(), u[0].partitions), (1, 1));
    h.reconnect();
    assert_eq!(
        listed(h.exec(&backend, Command::ListTopics { only: None })),
        Ok(before)
    );
}

#[test]
fn scripts_of_commands_failures_and_restarts_lose_nothing_acknowledged() {
    // Found by the fuzzer: the offsets log wiped behind the gateway's back, a commit, and the
    // rewrite of the log that the commit set off refused by Iggy. The commit was
    // acknowledged, and lost at the restart (it sat in a generation without a snapshot).
    // Found before transactions joined the scripts: run with the operations it knew.
    crate::testing::script::run_with(
        &[
            0xcf, 0x02, 0x58, 0x00, 0x00, 0xf5, 0x90, 0x90, 0x70, 0xd3, 0xfd, 0xf6, 0x4c, 0xa4,
            0xa4, 0xa4, 0xa4, 0xa4, 0xff, 0x13, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4,
            0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xff, 0xff,
            0xc3,
        ],
        15,
    );
    // The fuzzer's property (fuzz/fuzz_targets/iggy_backend.rs) over a few hundred scripts.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..300 {
        let script: Vec<u8> = (0..120)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect();
        crate::testing::script::run(&script);
    }
}

/// DescribeProducers: the partition's idempotent producers, read back from Iggy after a
/// restart as for a retry; a partition that does not exist is unknown and leaves nothing.
#[test]
fn producers_are_described_after_a_restart() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let pb = ProducerBatch {
        producer_id: 77,
        epoch: 2,
        first_sequence: 0,
        count: 3,
        transactional: false,
    };
    let three = [record(1), record(2), record(3)];
    assert_eq!(append(&mut h, &backend, "t", 0, &three, Some(pb)), Ok(0));
    drop(backend);
    let (mut h, backend) = h.restart();
    let describe = |h: &mut Pool, partition| match h.exec(
        &backend,
        Command::DescribeProducers {
            topic: "t".into(),
            partition,
        },
    ) {
        Completion::DescribeProducers(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        describe(&mut h, 0),
        Ok(vec![iggy_kafka_core::backend::ActiveProducer {
            producer_id: 77,
            epoch: 2,
            last_sequence: 2,
            current_txn_start_offset: None,
        }])
    );
    assert!(matches!(
        describe(&mut h, 5),
        Err(BackendError::UnknownPartition { .. })
    ));
    assert!(!backend
        .inner
        .catalog
        .partitions_known()
        .iter()
        .any(|(t, p)| t == "t" && p.contains(&5)));
}

/// The SCRAM credentials topic holds sealed records: a gateway replays those sealed under
/// its own Iggy credential secret and skips the others (another secret's, as an Iggy user
/// that may write the topic would plant).
#[test]
fn scram_records_sealed_under_another_secret_are_skipped_at_replay() {
    use iggy_kafka_core::sasl::{ScramChange, ScramCredential, ScramMechanism};
    let set = |user: &str, password: &[u8]| ScramChange::Set {
        user: user.into(),
        credential: ScramCredential::from_password(ScramMechanism::Sha256, password, b"salt", 4096),
    };
    let store = |h: &mut Pool, backend: &IggyBackend, change: ScramChange| {
        let c = h.exec(
            backend,
            Command::StoreScramCredentials {
                changes: vec![change],
            },
        );
        assert!(
            matches!(c, Completion::StoreScramCredentials(Ok(_))),
            "{c:?}"
        );
    };
    let gateway = || IggyConfig {
        credential_secret: secrecy::SecretString::from("gateway-password".to_owned()),
        ..IggyConfig::default()
    };
    let mut h = Pool::new(FakeIggy::new());
    let backend = h
        .connect_with(gateway())
        .unwrap_or_else(|e| panic!("connect: {e}"));
    store(&mut h, &backend, set("alice", b"alice-secret"));
    // Made to keep its records for ever, said explicitly in the topic's options.
    let topic = "__kafka_gateway_scram";
    assert_eq!(option(&h, topic, "message_expiry"), Some(u64::MAX));
    assert_eq!(option(&h, topic, "max_topic_size"), Some(u64::MAX));
    // Someone else's key: alice's record does not open for it, and what it writes does
    // not open for the gateway.
    let (mut h, intruder) = h.restart();
    assert_eq!(intruder.scram_credentials(), Vec::new());
    store(&mut h, &intruder, set("root", b"chosen-by-intruder"));
    let (mut h, _) = h.restart();
    let backend = h
        .connect_with(gateway())
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let replayed = backend.scram_credentials();
    assert_eq!(replayed, vec![set("alice", b"alice-secret")]);
    let ScramChange::Set { credential, .. } = &replayed[0] else {
        panic!("{replayed:?}")
    };
    assert!(credential.verify_password(b"alice-secret"));
}

mod scram_follow {
    use iggy_kafka_core::backend::{Command, Completion};
    use iggy_kafka_core::sasl::{ScramChange, ScramCredential, ScramMechanism};
    use iggy_kafka_iggy_client::testing::{FakeIggy, Pool};

    use crate::scram;
    use crate::testing::BackendPool;
    use crate::IggyBackend;

    fn set(user: &str, password: &[u8]) -> ScramChange {
        ScramChange::Set {
            user: user.into(),
            credential: ScramCredential::from_password(
                ScramMechanism::Sha256,
                password,
                b"salt",
                4096,
            ),
        }
    }

    /// A credential without the cost of deriving one: version `n` of the user's.
    pub(super) fn version(user: &str, n: u64) -> ScramChange {
        ScramChange::Set {
            user: user.into(),
            credential: ScramCredential {
                mechanism: ScramMechanism::Sha256,
                salt: n.to_le_bytes().to_vec(),
                iterations: 4096,
                stored_key: vec![1; 32],
                server_key: vec![2; 32],
            },
        }
    }

    pub(super) fn delete(user: &str) -> ScramChange {
        ScramChange::Delete {
            user: user.into(),
            mechanism: ScramMechanism::Sha256,
        }
    }

    fn set_bob() -> ScramChange {
        version("bob", 1)
    }

    fn store(h: &mut Pool, backend: &IggyBackend, changes: Vec<ScramChange>) -> u64 {
        match h.exec(backend, Command::StoreScramCredentials { changes }) {
            Completion::StoreScramCredentials(Ok(place)) => place,
            other => panic!("{other:?}"),
        }
    }

    fn follow(h: &mut Pool, backend: &IggyBackend, since: u64) -> Vec<(ScramChange, u64)> {
        match h.exec(backend, Command::FollowScramCredentials { since }) {
            Completion::FollowScramCredentials(Ok(changes)) => changes,
            other => panic!("{other:?}"),
        }
    }

    fn changes(followed: &[(ScramChange, u64)]) -> Vec<ScramChange> {
        followed.iter().map(|(c, _)| c.clone()).collect()
    }

    #[test]
    fn a_gateway_follows_the_changes_another_keeps_deletions_included() {
        let mut h = Pool::new(FakeIggy::new());
        let a = h.backend();
        let b = h.backend();
        assert_eq!(follow(&mut h, &b, 0), vec![]);
        let at = store(&mut h, &a, vec![set("alice", b"one")]);
        // Read back in the topic's order: its place is the record's.
        assert_eq!(follow(&mut h, &a, 0), vec![(set("alice", b"one"), at)]);
        let seen = follow(&mut h, &b, 0);
        assert_eq!(changes(&seen), vec![set("alice", b"one")]);
        let since_b = seen[0].1;
        // B changes and deletes; A sees each, in order, and nothing it has seen again.
        let changed = store(&mut h, &b, vec![set("alice", b"two"), set("bob", b"b")]);
        assert!(changed > since_b);
        let seen = follow(&mut h, &a, at);
        assert_eq!(changes(&seen), vec![set("alice", b"two"), set("bob", b"b")]);
        let since_a = seen.iter().map(|(_, p)| *p).max().unwrap_or(0);
        assert_eq!(follow(&mut h, &a, since_a), vec![]);
        store(&mut h, &b, vec![delete("alice")]);
        assert_eq!(changes(&follow(&mut h, &a, since_a)), vec![delete("alice")]);
        // Two stores of one credential at once through two gateways: both end with the one
        // the topic holds last, whatever their answers said.
        let pa = store(&mut h, &a, vec![set("carol", b"from-a")]);
        let pb = store(&mut h, &b, vec![set("carol", b"from-b")]);
        let on_a = follow(&mut h, &a, 0);
        let carol = |f: &[(ScramChange, u64)]| {
            f.iter()
                .find(|(c, _)| matches!(c, ScramChange::Set { user, .. } if user == "carol"))
                .cloned()
        };
        assert_eq!(carol(&on_a).map(|(c, _)| c), Some(set("carol", b"from-b")));
        assert!(carol(&on_a).is_some_and(|(_, p)| p > pa));
        assert_eq!(
            carol(&follow(&mut h, &b, 0)),
            Some((set("carol", b"from-b"), pb))
        );
    }

    #[test]
    fn without_the_option_the_topic_keeps_every_change() {
        let mut h = Pool::new(FakeIggy::new());
        let a = h.backend();
        for i in 0..=scram::COMPACT_AFTER {
            store(&mut h, &a, vec![version("alice", i), set_bob()]);
        }
        let generations: Vec<u64> = h
            .fake
            .topics
            .keys()
            .filter_map(|t| scram::generation(t))
            .collect();
        assert_eq!(generations, [0]);
        let held = h.fake.topics[&scram::topic_name(0)].partitions[0].next;
        assert_eq!(held, 2 * (scram::COMPACT_AFTER + 1));
    }

    #[test]
    fn the_topic_is_compacted_and_followers_switch_generation() {
        let mut h = Pool::new(FakeIggy::new());
        // A compacts; B and C only follow and store (--iggy-scram-compaction false).
        let a = h
            .connect_with(crate::IggyConfig {
                seed: 42,
                scram_compaction: true,
                ..crate::IggyConfig::default()
            })
            .expect("connect");
        let b = h.backend();
        let c = h.backend();
        // The users file every gateway starts with gives file-user a credential.
        for g in [&a, &b, &c] {
            g.pin_scram_deletions([("file-user".to_owned(), ScramMechanism::Sha256)]);
        }
        store(&mut h, &b, vec![delete("file-user"), set("gone", b"g")]);
        store(&mut h, &b, vec![delete("gone")]);
        let since_b = follow(&mut h, &b, 0)
            .iter()
            .map(|(_, p)| *p)
            .max()
            .unwrap_or(0);
        // Many changes of few credentials, through A.
        for i in 0..=scram::COMPACT_AFTER {
            store(&mut h, &a, vec![version("alice", i), set_bob()]);
        }
        let last = version("alice", scram::COMPACT_AFTER);
        assert!(!h.fake.topics.contains_key(&scram::topic_name(0)));
        let generations: Vec<u64> = h
            .fake
            .topics
            .keys()
            .filter_map(|t| scram::generation(t))
            .collect();
        assert_eq!(generations.len(), 1, "{generations:?}");
        let new = scram::topic_name(generations[0]);
        // The credentials, the pinned deletion, the marker, and the changes since: bounded
        // by the credentials, not by the changes.
        let held = h.fake.topics[&new].partitions[0].next;
        assert!(held <= scram::COMPACT_AFTER + 2, "{held} records");
        // A crash in a later compaction: its generation has no marker yet.
        let compacted = &h.fake.topics[&new];
        // Its first batch: the snapshot (alice's, bob's, the pinned deletion), before the
        // marker.
        let batches = compacted.partitions[0].batches[..1].to_vec();
        let unfinished = iggy_kafka_iggy_client::testing::fake::Topic {
            id: 9_999,
            created_at: compacted.created_at,
            partitions: vec![iggy_kafka_iggy_client::testing::fake::Partition { batches, next: 3 }],
            options: compacted.options.clone(),
        };
        let unfinished_name = scram::topic_name(generations[0] + 1);
        h.fake.topics.insert(unfinished_name.clone(), unfinished);
        // B follows into the new generation: only what differs is new to it.
        let seen = changes(&follow(&mut h, &b, since_b));
        assert_eq!(seen, vec![last.clone(), set_bob()]);
        // C, which last read the old generation, stores into the new one, and A sees it.
        store(&mut h, &c, vec![version("carol", 7)]);
        assert!(h.fake.topics[&new].partitions[0].next > held);
        let on_a = changes(&follow(&mut h, &a, 0));
        assert!(on_a.contains(&version("carol", 7)), "{on_a:?}");
        // A restart takes the complete generation and has every credential, the pinned
        // deletion, and no other deletion. The unfinished one may be a compaction under way
        // through another gateway: no gateway deletes it.
        let (mut h, restarted) = h.restart();
        assert_eq!(
            restarted.scram_credentials(),
            vec![last, set_bob(), version("carol", 7), delete("file-user")]
        );
        assert!(h.fake.topics.contains_key(&unfinished_name));
        h.clock.advance(std::time::Duration::from_secs(3600));
        follow(&mut h, &restarted, 0);
        assert!(h.fake.topics.contains_key(&unfinished_name));
    }
}

/// Gateway-owned topics made with a retention limit (before they were created
/// never-expiring, or limited since with Iggy's tools) are made to keep everything again
/// at the next start.
#[test]
fn own_topics_with_a_retention_limit_keep_everything_after_a_restart() {
    use iggy_kafka_core::sasl::{ScramChange, ScramCredential, ScramMechanism};
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    let set = ScramChange::Set {
        user: "alice".into(),
        credential: ScramCredential {
            mechanism: ScramMechanism::Sha256,
            salt: b"salt".to_vec(),
            iterations: 4096,
            stored_key: vec![1; 32],
            server_key: vec![2; 32],
        },
    };
    assert!(matches!(
        h.exec(
            &backend,
            Command::StoreScramCredentials {
                changes: vec![set.clone()]
            }
        ),
        Completion::StoreScramCredentials(Ok(_))
    ));
    create(&mut h, &backend, "t", 1);
    let own = [offsets::topic_name(0), crate::scram::topic_name(0)];
    let limit = |h: &mut Pool, topic: &str, expiry: u64, size: u64| {
        let options = &mut h.fake.topics.get_mut(topic).expect("made").options;
        options.retain(|(k, _)| k != "message_expiry" && k != "max_topic_size");
        options.push(("message_expiry".into(), expiry));
        options.push(("max_topic_size".into(), size));
    };
    limit(&mut h, &own[0], 600_000_000, u64::MAX);
    limit(&mut h, &own[1], u64::MAX, 1 << 30);
    // A Kafka topic's retention is its own business.
    limit(&mut h, "t", 600_000_000, 1 << 30);
    let (h, restarted) = h.restart();
    for topic in &own {
        assert_eq!(
            option(&h, topic, "message_expiry"),
            Some(u64::MAX),
            "{topic}"
        );
        assert_eq!(
            option(&h, topic, "max_topic_size"),
            Some(u64::MAX),
            "{topic}"
        );
    }
    assert_eq!(option(&h, "t", "message_expiry"), Some(600_000_000));
    assert_eq!(option(&h, "t", "max_topic_size"), Some(1 << 30));
    assert_eq!(restarted.scram_credentials(), vec![set]);
}
