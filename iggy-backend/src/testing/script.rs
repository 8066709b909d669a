//! The backend under a script of commands, failures of the Iggy server (among them appends a
//! dying primary left prepared, which commit later or never) and gateway restarts,
//! held to what Kafka clients were told: every acknowledged record reads back the same at
//! its offset, no record is stored twice (an idempotent producer retries each batch that
//! failed until it is acknowledged; Iggy does not deduplicate, the gateway must), and every
//! committed offset reads back as one of the values it may hold (a commit that failed may
//! still have landed). Transactions too: a transactional producer writes batches and ends
//! each partition's transaction with a commit or abort marker, and every read is held to
//! read_committed's rule: below the last stable offset, no record of an undecided
//! transaction, every record of an aborted one inside the aborted ranges the read reports,
//! no record of a committed one inside them. For the fuzzer; the script is raw bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};

use bytes::Bytes;
use iggy_kafka_core::backend::{
    Backend, BackendError, Command, CommittedOffset, Completion, Execution, GroupOffset,
    ProducerBatch, ReadResult, TopicConfig, TopicRef, TxnSnapshot,
};
use iggy_kafka_core::mapping::{from_iggy, mark_transactional, marker_of, to_iggy, KafkaRecord};
use iggy_kafka_core::txn::TxnState;

use iggy_kafka_iggy_client::testing::fake::Topic;
use iggy_kafka_iggy_client::testing::{FakeIggy, Pool};

use super::BackendPool;
use crate::{IggyBackend, IggyConfig, TopicMapping};

/// Kafka's names for the script's topics: two real ones (the second in a stream of its own,
/// through the topic mapping's naming rule), the gateway's own log, a made-up one.
const TOPICS: [&str; 4] = ["a", "m.b", "__kafka_gateway_offsets.0", "made-up"];
/// The stream whose topics Kafka clients see as `m.TOPIC`.
const MAPPED: &str = "m";
const GROUPS: [&str; 2] = ["g", "h"];
/// Iggy statuses a request can fail with: unauthorized, invalid messages, topic not found,
/// and one the gateway does not know.
const STATUSES: [u32; 4] = [41, 4022, 2010, 9999];

type Pending = Pin<Box<dyn Future<Output = Completion> + Send>>;

/// What a command in flight was, for the model to learn from its completion.
#[derive(Debug)]
enum Asked {
    Append {
        topic: usize,
        partition: u32,
        records: Vec<KafkaRecord>,
        /// An idempotent producer's batch: its first sequence number.
        sequence: Option<i32>,
    },
    Commit {
        group: usize,
        topic: usize,
        partition: u32,
        offset: i64,
    },
    DeleteTopic(usize),
    /// A transactional batch of the partition's current transaction.
    TxnAppend {
        topic: usize,
        partition: u32,
        first: i32,
        records: Vec<KafkaRecord>,
    },
    /// The marker ending the partition's current transaction.
    Marker {
        topic: usize,
        partition: u32,
        commit: bool,
    },
    Read {
        topic: usize,
        partition: u32,
    },
    /// What it was, printed when commands never finish.
    Other(#[allow(dead_code)] &'static str),
}

/// A committed offset's possible values: `None` for none.
type Possible = BTreeSet<Option<i64>>;

#[derive(Default)]
struct Model {
    /// Acknowledged records by (topic, partition, offset).
    records: BTreeMap<(usize, u32, u64), KafkaRecord>,
    /// By (group, topic, partition); absent means none was ever committed.
    commits: BTreeMap<(usize, usize, u32), Possible>,
    /// The idempotent producer's state per (topic, partition).
    producer: BTreeMap<(usize, u32), Sequence>,
    /// The transactional producer's state per (topic, partition).
    txns: BTreeMap<(usize, u32), TxnTrack>,
    /// Which transaction (topic, partition, number) each transactional record (by serial)
    /// was sent in, whether or not its append was acknowledged.
    txn_of: BTreeMap<usize, (usize, u32, u32)>,
    /// How each transaction ended; absent: still open.
    ended: BTreeMap<(usize, u32, u32), Ended>,
}

/// The transactional producer on one partition: one transaction after another, each ended
/// by a marker (written again until acknowledged), the next in a new epoch.
#[derive(Default)]
struct TxnTrack {
    /// The current transaction's number, and the producer's epoch in it.
    no: u32,
    epoch: i16,
    next: i32,
    retry: Option<(i32, Vec<KafkaRecord>)>,
    in_flight: bool,
    /// Its marker was asked for (and is in flight, or failed: `commit` says which).
    marker: Option<bool>,
    marker_in_flight: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Committed,
    Aborted,
    /// A marker was asked for and not yet acknowledged: either may be in the log.
    Unsure,
}

/// Where the idempotent producer is on a partition.
#[derive(Default)]
struct Sequence {
    /// The sequence number of its next new batch.
    next: i32,
    /// A batch that failed: sent again, as it was, before any new one.
    retry: Option<(i32, Vec<KafkaRecord>)>,
    in_flight: bool,
}

impl Model {
    fn learn(&mut self, asked: Asked, done: &Completion) {
        match (asked, done) {
            (
                Asked::Append {
                    topic,
                    partition,
                    records,
                    sequence,
                },
                Completion::Append(result),
            ) => {
                if let Some(first) = sequence {
                    let p = self.producer.entry((topic, partition)).or_default();
                    p.in_flight = false;
                    match result {
                        Ok(_) => {
                            p.next = first + i32::try_from(records.len()).unwrap_or(0);
                            p.retry = None;
                        }
                        Err(_) => p.retry = Some((first, records.clone())),
                    }
                }
                if let Ok(a) = result {
                    for (offset, r) in (a.base_offset..).zip(records) {
                        self.records.insert((topic, partition, offset), r);
                    }
                }
            }
            (
                Asked::Commit {
                    group,
                    topic,
                    partition,
                    offset,
                },
                Completion::CommitOffsets(results),
            ) => {
                let possible = self
                    .commits
                    .entry((group, topic, partition))
                    .or_insert_with(|| BTreeSet::from([None]));
                match results.first() {
                    Some(Ok(())) => *possible = BTreeSet::from([Some(offset)]),
                    // Refused before it was written: the topic or partition does not exist.
                    Some(Err(
                        BackendError::UnknownTopic(_) | BackendError::UnknownPartition { .. },
                    )) => {}
                    _ => {
                        possible.insert(Some(offset));
                    }
                }
            }
            (
                Asked::TxnAppend {
                    topic,
                    partition,
                    first,
                    records,
                },
                Completion::Append(result),
            ) => {
                let t = self.txns.entry((topic, partition)).or_default();
                t.in_flight = false;
                match result {
                    Ok(_) => {
                        t.next = first + i32::try_from(records.len()).unwrap_or(0);
                        t.retry = None;
                    }
                    Err(_) => t.retry = Some((first, records)),
                }
            }
            (
                Asked::Marker {
                    topic,
                    partition,
                    commit,
                },
                Completion::WriteMarker(result),
            ) => {
                let t = self.txns.entry((topic, partition)).or_default();
                t.marker_in_flight = false;
                if result.is_ok() {
                    let ended = if commit {
                        Ended::Committed
                    } else {
                        Ended::Aborted
                    };
                    self.ended.insert((topic, partition, t.no), ended);
                    t.no += 1;
                    t.epoch += 1;
                    t.next = 0;
                    t.retry = None;
                    t.marker = None;
                }
            }
            (Asked::Read { topic, partition }, Completion::Read(Ok(r))) => {
                self.check_committed(topic, partition, r);
            }
            // The topic's records go, and so do its committed offsets, unless writing that to
            // the log failed (logged: a topic of the same name would inherit them).
            (Asked::DeleteTopic(topic), Completion::DeleteTopic(_)) => {
                self.forget(topic);
                for ((_, t, _), possible) in &mut self.commits {
                    if *t == topic {
                        possible.insert(None);
                    }
                }
            }
            _ => {}
        }
    }
}

impl Model {
    /// The topic is gone: its records, and the producers' place in it.
    fn forget(&mut self, topic: usize) {
        self.records.retain(|(t, ..), _| *t != topic);
        self.producer.retain(|(t, _), _| *t != topic);
        // The transactional producer goes on in a new epoch and transaction there; what it
        // wrote before is gone with the topic.
        for ((t, _), track) in &mut self.txns {
            if *t == topic {
                track.no += 1;
                track.epoch += 1;
                track.next = 0;
                track.retry = None;
                track.marker = None;
            }
        }
    }

    /// Holds a read of `topic`/`partition` to read_committed's rule (see the module doc).
    fn check_committed(&self, topic: usize, partition: u32, r: &ReadResult) {
        let lso = r.offsets.last_stable.unwrap_or(r.offsets.high_watermark);
        for (offset, m) in r.messages.iter() {
            if offset >= lso || marker_of(&m).is_some() {
                continue;
            }
            let serial = from_iggy(&m).timestamp_ms - BASE_MS;
            let Some(&(t, p, no)) = usize::try_from(serial)
                .ok()
                .and_then(|s| self.txn_of.get(&s))
            else {
                continue;
            };
            if (t, p) != (topic, partition) {
                // A record of an earlier incarnation of a topic deleted meanwhile.
                continue;
            }
            let covered = r
                .aborted
                .iter()
                .any(|a| a.first_offset <= offset && offset <= a.last_offset);
            let at = format!("{}/{partition}@{offset} (transaction {no})", TOPICS[topic]);
            match self.ended.get(&(t, p, no)) {
                None => panic!("{at}: open, yet below the last stable offset {lso}"),
                Some(Ended::Committed) => assert!(!covered, "{at}: committed, reported aborted"),
                Some(Ended::Aborted) => assert!(covered, "{at}: aborted, not reported aborted"),
                Some(Ended::Unsure) => {}
            }
        }
    }
}

/// The timestamp of record 0: each record's timestamp is this plus its serial number.
const BASE_MS: i64 = 1_700_000_000_000;

fn record(n: usize) -> KafkaRecord {
    KafkaRecord {
        timestamp_ms: BASE_MS + n as i64,
        key: (n % 3 == 1).then(|| Bytes::from(format!("k{n}"))),
        value: (!n.is_multiple_of(5)).then(|| Bytes::from(vec![b'v'; n % 200])),
        ..KafkaRecord::default()
    }
}

/// The gateway's configuration: the default stream, and [`MAPPED`] by the naming rule.
fn config() -> IggyConfig {
    IggyConfig {
        seed: 42,
        mapping: TopicMapping::parse("kafka", "", MAPPED).expect("the mapping"),
        ..IggyConfig::default()
    }
}

/// The coordinator's state of the script's transactional id, naming `partitions`.
fn txn_snapshot(producer_id: i64, partitions: Vec<(String, u32)>) -> TxnSnapshot {
    TxnSnapshot {
        transactional_id: "t".into(),
        producer_id,
        previous_producer_id: -1,
        epoch: 0,
        last_epoch: -1,
        timeout_ms: 60_000,
        state: TxnState::Ongoing,
        partitions,
        offsets: Vec::new(),
    }
}

/// A gateway over `h`'s server.
fn connect(h: &mut Pool) -> IggyBackend {
    h.connect_with(config())
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

/// Where Kafka topic `name` lives on the fake server: its stream's topics, and its name there.
fn iggy_topic<'a>(
    fake: &'a mut FakeIggy,
    name: &'a str,
) -> (&'a mut BTreeMap<String, Topic>, &'a str) {
    match name.strip_prefix("m.") {
        Some(topic) => (fake.other_streams.entry(MAPPED.into()).or_default(), topic),
        None => (&mut fake.topics, name),
    }
}

/// Runs `script`; panics when the backend breaks what it acknowledged.
pub(crate) fn run(script: &[u8]) {
    run_with(script, 18);
}

/// [`run`] with the first `ops` operations only: 15 leaves transactions out, as scripts
/// written before they were part of it expect.
pub(crate) fn run_with(script: &[u8], ops: u8) {
    let mut h = Pool::new(FakeIggy::new());
    let mut backend = connect(&mut h);
    let Completion::AllocateProducerId(Ok(producer_id)) =
        h.exec(&backend, Command::AllocateProducerId)
    else {
        panic!("no producer id");
    };
    // The transactional producer is another producer: an id of its own.
    let Completion::AllocateProducerId(Ok(txn_producer)) =
        h.exec(&backend, Command::AllocateProducerId)
    else {
        panic!("no producer id");
    };
    // The coordinator's state names the partitions the transactional producer writes, so
    // that their transaction indexes are read back after a restart.
    let named = TOPICS
        .iter()
        .flat_map(|t| (0..4).map(move |p| ((*t).to_owned(), p)))
        .collect();
    let persisted = h.exec(
        &backend,
        Command::PersistTxns {
            changes: vec![("t".into(), Some(txn_snapshot(txn_producer, named)))],
        },
    );
    assert!(
        matches!(persisted, Completion::PersistTxns(Ok(()))),
        "{persisted:?}"
    );
    let mut model = Model::default();
    let mut pending: Vec<(Asked, Pending)> = Vec::new();
    let mut bytes = script.iter().copied();
    let mut serial = 0usize;
    while let Some(op) = bytes.next() {
        let mut arg = || usize::from(bytes.next().unwrap_or(0));
        let (topic, partition) = (arg() % TOPICS.len(), u32::try_from(arg() % 4).unwrap_or(0));
        let name = TOPICS[topic].to_owned();
        let (asked, command) = match op % ops {
            0 => (
                Asked::Other("create topic"),
                Command::CreateTopic {
                    name,
                    partitions: partition.max(1),
                    config: TopicConfig::default(),
                    validate_only: false,
                },
            ),
            1 => {
                // Alone, so that no append in flight lands on either side of it unseen.
                drain(&mut h, &mut pending, &mut model);
                let done = h.exec(
                    &backend,
                    Command::DeleteTopic {
                        topic: TopicRef::Name(name),
                    },
                );
                model.learn(Asked::DeleteTopic(topic), &done);
                continue;
            }
            2 => {
                let records: Vec<KafkaRecord> = (0..=arg() % 8)
                    .map(|_| {
                        serial += 1;
                        record(serial)
                    })
                    .collect();
                let command = Command::Append {
                    topic: name,
                    partition,
                    messages: records.iter().map(to_iggy).collect(),
                    largest_batch: 100,
                    producer: None,
                };
                (
                    Asked::Append {
                        topic,
                        partition,
                        records,
                        sequence: None,
                    },
                    command,
                )
            }
            13 => {
                // The idempotent producer: its failed batch again, or a new one; one at a time.
                let p = model.producer.entry((topic, partition)).or_default();
                if p.in_flight {
                    continue;
                }
                let (first, records) = p.retry.clone().unwrap_or_else(|| {
                    let records = (0..=arg() % 8)
                        .map(|_| {
                            serial += 1;
                            record(serial)
                        })
                        .collect();
                    (p.next, records)
                });
                p.in_flight = true;
                let command = Command::Append {
                    topic: name,
                    partition,
                    messages: records.iter().map(to_iggy).collect(),
                    largest_batch: 100,
                    producer: Some(ProducerBatch {
                        producer_id,
                        epoch: 0,
                        first_sequence: first,
                        count: i32::try_from(records.len()).unwrap_or(0),
                        transactional: false,
                    }),
                };
                (
                    Asked::Append {
                        topic,
                        partition,
                        records,
                        sequence: Some(first),
                    },
                    command,
                )
            }
            3 => (
                Asked::Read { topic, partition },
                Command::Read {
                    topic: TopicRef::Name(name),
                    partition,
                    offset: arg() as u64 % 40,
                    max_bytes: 1 + arg() * 64,
                    max_messages: 1 + arg() % 16,
                },
            ),
            4 => {
                let (group, offset) = (arg() % GROUPS.len(), i64::try_from(arg()).unwrap_or(0));
                let command = Command::CommitOffsets {
                    group: GROUPS[group].into(),
                    offsets: vec![GroupOffset {
                        topic: name,
                        partition,
                        committed: CommittedOffset {
                            offset,
                            leader_epoch: -1,
                            metadata: None,
                        },
                    }],
                };
                (
                    Asked::Commit {
                        group,
                        topic,
                        partition,
                        offset,
                    },
                    command,
                )
            }
            5 => (
                Asked::Other("offsets"),
                Command::Offsets {
                    topic: TopicRef::Name(name),
                    partition,
                },
            ),
            6 => (
                Asked::Other("max timestamp"),
                Command::MaxTimestamp {
                    topic: name,
                    partition,
                },
            ),
            7 => (
                Asked::Other("list topics"),
                Command::ListTopics { only: None },
            ),
            8 => {
                h.fake.fail_next = Some(STATUSES[arg() % STATUSES.len()]);
                continue;
            }
            9 => {
                h.drop_connections();
                h.reconnect();
                continue;
            }
            10 => {
                h.apply_then_drop_connections();
                h.reconnect();
                continue;
            }
            11 => {
                // Deleted and created again by an Iggy client, not through the gateway.
                drain(&mut h, &mut pending, &mut model);
                let (topics, iggy) = iggy_topic(&mut h.fake, &name);
                if topics.remove(iggy).is_some() {
                    match name.strip_prefix("m.") {
                        Some(t) => h.fake.create_topic_in(MAPPED, t, partition.max(1)),
                        None => h.fake.create_topic(&name, partition.max(1), Vec::new()),
                    }
                    model.forget(topic);
                    if crate::offsets_log::is_own(&name) {
                        // The log wiped: the gateway writes it again from memory at its next
                        // commit, and not before.
                        for possible in model.commits.values_mut() {
                            possible.insert(None);
                        }
                    }
                }
                continue;
            }
            12 => {
                for _ in 0..arg() {
                    poll_all(&mut h, &mut pending, &mut model);
                }
                continue;
            }
            15 => {
                // A transactional batch: the failed one again, or a new one; one at a time,
                // and none once the transaction's marker was asked for.
                let t = model.txns.entry((topic, partition)).or_default();
                if t.in_flight || t.marker.is_some() {
                    continue;
                }
                let (first, records) = t.retry.clone().unwrap_or_else(|| {
                    let records: Vec<KafkaRecord> = (0..=arg() % 8)
                        .map(|_| {
                            serial += 1;
                            record(serial)
                        })
                        .collect();
                    (t.next, records)
                });
                t.in_flight = true;
                let (no, epoch) = (t.no, t.epoch);
                for r in &records {
                    if let Ok(s) = usize::try_from(r.timestamp_ms - BASE_MS) {
                        model.txn_of.insert(s, (topic, partition, no));
                    }
                }
                let command = Command::Append {
                    topic: name,
                    partition,
                    messages: records
                        .iter()
                        .map(|r| {
                            let mut m = to_iggy(r);
                            mark_transactional(&mut m, txn_producer, epoch);
                            m
                        })
                        .collect(),
                    largest_batch: 100,
                    producer: Some(ProducerBatch {
                        producer_id: txn_producer,
                        epoch,
                        first_sequence: first,
                        count: i32::try_from(records.len()).unwrap_or(0),
                        transactional: true,
                    }),
                };
                (
                    Asked::TxnAppend {
                        topic,
                        partition,
                        first,
                        records,
                    },
                    command,
                )
            }
            16 => {
                // The transaction's marker, once its batches are answered: asked again, the
                // same, until acknowledged (as the coordinator does).
                let t = model.txns.entry((topic, partition)).or_default();
                if t.in_flight || t.marker_in_flight {
                    continue;
                }
                let commit = *t.marker.get_or_insert(arg() % 2 == 0);
                t.marker_in_flight = true;
                t.retry = None;
                let epoch = t.epoch;
                model.ended.insert((topic, partition, t.no), Ended::Unsure);
                (
                    Asked::Marker {
                        topic,
                        partition,
                        commit,
                    },
                    Command::WriteMarker {
                        topic: name,
                        partition,
                        producer_id: txn_producer,
                        epoch,
                        commit,
                        coordinator_epoch: 0,
                    },
                )
            }
            17 => {
                // Appends prepared (a quorum holds them) and not committed when the server
                // goes away before it answers, as a dying primary leaves them: the next
                // view commits them before the partition's next write, or never had them.
                h.fake.prepare_appends = true;
                for _ in 0..arg() % 8 {
                    poll_all(&mut h, &mut pending, &mut model);
                }
                h.fake.prepare_appends = false;
                h.drop_connections();
                if arg() % 2 == 0 {
                    h.fake.discard_prepared();
                }
                h.reconnect();
                continue;
            }
            _ => {
                (h, backend) = restart(h, backend, &mut pending, &mut model);
                continue;
            }
        };
        match backend.execute(command) {
            Execution::Done(done) => model.learn(asked, &done),
            Execution::Pending(f) => pending.push((asked, f)),
        }
        poll_all(&mut h, &mut pending, &mut model);
    }
    restart(h, backend, &mut pending, &mut model);
}

/// Polls every command in flight once and moves the lanes' frames once.
fn poll_all(h: &mut Pool, pending: &mut Vec<(Asked, Pending)>, model: &mut Model) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut i = 0;
    while i < pending.len() {
        if let std::task::Poll::Ready(done) = pending[i].1.as_mut().poll(&mut cx) {
            let (asked, _) = pending.swap_remove(i);
            model.learn(asked, &done);
        } else {
            i += 1;
        }
    }
    h.serve();
}

/// Lets every command in flight finish, with the server answering.
fn drain(h: &mut Pool, pending: &mut Vec<(Asked, Pending)>, model: &mut Model) {
    h.fake.fail_next = None;
    h.reconnect();
    for _ in 0..100_000 {
        if pending.is_empty() {
            return;
        }
        poll_all(h, pending, model);
    }
    let stuck: Vec<&Asked> = pending.iter().map(|(a, _)| a).collect();
    panic!("commands in flight never finished: {stuck:?}");
}

/// Lets every command in flight finish, restarts the gateway over the same server, and
/// checks what it reads back against the model.
fn restart(
    mut h: Pool,
    backend: IggyBackend,
    pending: &mut Vec<(Asked, Pending)>,
    model: &mut Model,
) -> (Pool, IggyBackend) {
    drain(&mut h, pending, model);
    drop(backend);
    let mut h = Pool::new(h.fake);
    let backend = connect(&mut h);
    for ((topic, partition, offset), want) in &model.records {
        let got = h.exec(
            &backend,
            Command::Read {
                topic: TopicRef::Name(TOPICS[*topic].into()),
                partition: *partition,
                offset: *offset,
                max_bytes: 1 << 20,
                max_messages: 1,
            },
        );
        let Completion::Read(Ok(read)) = got else {
            panic!("acknowledged {topic}/{partition}@{offset} unreadable: {got:?}");
        };
        let first = read.messages.iter().next().map(|(o, m)| (o, from_iggy(&m)));
        assert_eq!(
            first.as_ref().map(|(o, r)| (*o, r)),
            Some((*offset, want)),
            "acknowledged {topic}/{partition}@{offset} changed"
        );
    }
    // Nothing stored twice: every record the script sent has a timestamp of its own.
    for (t, name) in TOPICS[..2].iter().enumerate() {
        let (topics, iggy) = iggy_topic(&mut h.fake, name);
        let partitions = topics.get(iggy).map_or(0, |t| t.partitions.len());
        for partition in 0..u32::try_from(partitions).unwrap_or(0) {
            let mut seen = BTreeSet::new();
            let mut next = 0;
            loop {
                let got = h.exec(
                    &backend,
                    Command::Read {
                        topic: TopicRef::Name((*name).into()),
                        partition,
                        offset: next,
                        max_bytes: 1 << 20,
                        max_messages: 1000,
                    },
                );
                let Completion::Read(Ok(read)) = got else {
                    panic!("{name}/{partition}@{next} unreadable: {got:?}");
                };
                let Some(last) = read.messages.last_offset() else {
                    break;
                };
                model.check_committed(t, partition, &read);
                for (offset, m) in read.messages.iter() {
                    // Markers carry the wall clock, and one may be written twice (its
                    // reply lost, asked again).
                    if marker_of(&m).is_some() {
                        continue;
                    }
                    let at = from_iggy(&m).timestamp_ms;
                    assert!(
                        seen.insert(at),
                        "{name}/{partition}@{offset}: stored twice ({at})"
                    );
                }
                next = last + 1;
            }
        }
    }
    for (g, group) in GROUPS.iter().enumerate() {
        let Completion::FetchOffsets(Ok(held)) = h.exec(
            &backend,
            Command::FetchOffsets {
                group: (*group).into(),
                only: None,
            },
        ) else {
            panic!("committed offsets unreadable");
        };
        for ((mg, t, p), possible) in &model.commits {
            if *mg != g {
                continue;
            }
            let got = held
                .iter()
                .find(|o| o.topic == TOPICS[*t] && o.partition == *p)
                .map(|o| o.committed.offset);
            assert!(
                possible.contains(&got),
                "{group} {}/{p}: {got:?}, expected one of {possible:?}",
                TOPICS[*t]
            );
        }
        for o in &held {
            assert!(
                !crate::offsets_log::is_own(&o.topic),
                "a commit into the gateway's own log"
            );
        }
    }
    (h, backend)
}
