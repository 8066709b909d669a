//! The transaction coordinator's state, as records of a gateway-owned Iggy topic (Kafka's
//! `__transaction_state`).
//!
//! Every [`TxnSnapshot`] the coordinator persists is one record of the topic
//! `__kafka_gateway_transactions.<generation>` (one partition); the latest record of a
//! transactional id is its state. Growth is bounded by compaction, as the committed-offsets
//! log's is: when a generation holds more than [`COMPACT_AFTER`] records and more than four
//! times what compaction would leave (named partitions and live ids), the live state is
//! written into the next generation, closed by a "snapshot complete" record, and the old
//! generation's topic is deleted. At start the newest generation with a complete snapshot
//! is replayed; the others are deleted.
//!
//! The log also names every partition a transaction has been written to (a record before
//! the first state that lists it), so that after a restart only those partitions are read
//! back to rebuild their transaction index (`crate::transactions`). A partition stays named
//! while its topic exists (its log may hold aborted transactions long after their ids
//! completed); compaction drops those of deleted topics that no live id names.
//!
//! A record's payload (little-endian): version `1`; kind (1 a transactional id's state,
//! 2 a transactional id forgotten, 3 snapshot complete, 4 a partition transactions write
//! to, 5 when a transactional id's transaction opened); the transactional id as a
//! u16-length string (empty for kinds 3 and 4). For kind 4 then: the topic (u16-length
//! string) and partition (u32). For kind 5 then: the wall-clock time it opened (i64, ms
//! since the Unix epoch), written before the state that opens it. For kind 1 then:
//! producer id (i64), previous producer id (i64), epoch (i16), last epoch (i16), timeout
//! in ms (i32), state (u8: 0 Empty, 1 Ongoing, 2 PrepareCommit, 3 PrepareAbort, 4
//! CompleteCommit, 5 CompleteAbort);
//! the partitions as a u32 count, each a topic (u16-length string) and partition (u32);
//! the groups whose offsets the transaction commits as a u32 count, each a group
//! (u16-length string) and its offsets as a u32 count, each a topic (u16-length string),
//! partition (u32), offset (i64), leader epoch (i32) and metadata (i32 length, -1 for
//! null, then UTF-8 bytes).

use std::collections::{BTreeMap, BTreeSet};

use bytes::{BufMut, Bytes, BytesMut};
use iggy_kafka_core::backend::{CommittedOffset, GroupOffset};
use iggy_kafka_core::txn::{TxnSnapshot, TxnState};

/// The prefix of the transaction-state topics' names; Kafka clients neither see nor
/// create them.
pub(crate) const TOPIC_PREFIX: &str = "__kafka_gateway_transactions.";

/// Compaction starts past this many records, when they outnumber live ids 4 to 1.
pub(crate) const COMPACT_AFTER: u64 = 10_000;

/// The name of generation `g`'s topic.
pub(crate) fn topic_name(generation: u64) -> String {
    format!("{TOPIC_PREFIX}{generation}")
}

/// The generation of a transaction-state topic's name.
pub(crate) fn generation(name: &str) -> Option<u64> {
    name.strip_prefix(TOPIC_PREFIX)?.parse().ok()
}

/// One record of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    /// A transactional id's state.
    State(TxnSnapshot),
    /// A transactional id forgotten (expired).
    Forget(String),
    /// What comes before is a whole snapshot of the state.
    SnapshotComplete,
    /// Transactions write to this partition.
    Partition(String, u32),
    /// The transactional id's transaction opened at this wall-clock time (ms since the
    /// Unix epoch), so that a restart does not give it its whole timeout again.
    Opened(String, i64),
}

const VERSION: u8 = 1;

fn state_code(s: TxnState) -> u8 {
    match s {
        TxnState::Empty => 0,
        TxnState::Ongoing => 1,
        TxnState::PrepareCommit => 2,
        TxnState::PrepareAbort => 3,
        TxnState::CompleteCommit => 4,
        TxnState::CompleteAbort => 5,
    }
}

fn state_of(code: u8) -> Option<TxnState> {
    Some(match code {
        0 => TxnState::Empty,
        1 => TxnState::Ongoing,
        2 => TxnState::PrepareCommit,
        3 => TxnState::PrepareAbort,
        4 => TxnState::CompleteCommit,
        5 => TxnState::CompleteAbort,
        _ => return None,
    })
}

/// Writes a u16-length string; `None` for a longer one, which is refused rather than cut
/// (a cut transactional id would be another id). Kafka's strings are at most 32,767 bytes
/// (the codec refuses longer ones), so none from a client is.
fn put_str(b: &mut BytesMut, s: &str) -> Option<()> {
    b.put_u16_le(u16::try_from(s.len()).ok()?);
    b.put_slice(s.as_bytes());
    Some(())
}

fn put_count(b: &mut BytesMut, n: usize) {
    b.put_u32_le(u32::try_from(n).unwrap_or(u32::MAX));
}

impl Record {
    /// The record's payload; `None` when one of its strings is longer than 65,535 bytes.
    pub(crate) fn encode(&self) -> Option<Bytes> {
        let mut b = BytesMut::with_capacity(64);
        b.put_u8(VERSION);
        match self {
            Self::State(s) => {
                b.put_u8(1);
                put_str(&mut b, &s.transactional_id)?;
                b.put_i64_le(s.producer_id);
                b.put_i64_le(s.previous_producer_id);
                b.put_i16_le(s.epoch);
                b.put_i16_le(s.last_epoch);
                b.put_i32_le(s.timeout_ms);
                b.put_u8(state_code(s.state));
                put_count(&mut b, s.partitions.len());
                for (topic, partition) in &s.partitions {
                    put_str(&mut b, topic)?;
                    b.put_u32_le(*partition);
                }
                put_count(&mut b, s.offsets.len());
                for (group, offsets) in &s.offsets {
                    put_str(&mut b, group)?;
                    put_count(&mut b, offsets.len());
                    for o in offsets {
                        put_str(&mut b, &o.topic)?;
                        b.put_u32_le(o.partition);
                        b.put_i64_le(o.committed.offset);
                        b.put_i32_le(o.committed.leader_epoch);
                        match &o.committed.metadata {
                            Some(m) => {
                                let m = &m.as_bytes()[..m.len().min(i32::MAX as usize)];
                                b.put_i32_le(i32::try_from(m.len()).unwrap_or(i32::MAX));
                                b.put_slice(m);
                            }
                            None => b.put_i32_le(-1),
                        }
                    }
                }
            }
            Self::Forget(id) => {
                b.put_u8(2);
                put_str(&mut b, id)?;
            }
            Self::SnapshotComplete => {
                b.put_u8(3);
                put_str(&mut b, "")?;
            }
            Self::Partition(topic, partition) => {
                b.put_u8(4);
                put_str(&mut b, "")?;
                put_str(&mut b, topic)?;
                b.put_u32_le(*partition);
            }
            Self::Opened(id, at_ms) => {
                b.put_u8(5);
                put_str(&mut b, id)?;
                b.put_i64_le(*at_ms);
            }
        }
        Some(b.freeze())
    }

    /// The record `p` holds; `None` for anything that is not a whole record this gateway
    /// wrote (never allocates more than `p` holds, never panics).
    pub(crate) fn decode(mut p: &[u8]) -> Option<Self> {
        let p = &mut p;
        let version = u8(p)?;
        let kind = u8(p)?;
        if version != VERSION {
            return None;
        }
        let id = string(p)?;
        let record = match kind {
            1 => {
                let producer_id = i64::from_le_bytes(take(p, 8)?.try_into().ok()?);
                let previous_producer_id = i64::from_le_bytes(take(p, 8)?.try_into().ok()?);
                let epoch = i16::from_le_bytes(take(p, 2)?.try_into().ok()?);
                let last_epoch = i16::from_le_bytes(take(p, 2)?.try_into().ok()?);
                let timeout_ms = i32::from_le_bytes(take(p, 4)?.try_into().ok()?);
                let state = state_of(u8(p)?)?;
                // Each partition takes at least 6 bytes: no count can make it allocate
                // more than the record holds.
                let n = count(p, 6)?;
                let mut partitions = Vec::with_capacity(n);
                for _ in 0..n {
                    let topic = string(p)?;
                    let partition = u32::from_le_bytes(take(p, 4)?.try_into().ok()?);
                    partitions.push((topic, partition));
                }
                let groups = count(p, 6)?;
                let mut offsets = Vec::with_capacity(groups);
                for _ in 0..groups {
                    let group = string(p)?;
                    let n = count(p, 22)?;
                    let mut list = Vec::with_capacity(n);
                    for _ in 0..n {
                        let topic = string(p)?;
                        let partition = u32::from_le_bytes(take(p, 4)?.try_into().ok()?);
                        let offset = i64::from_le_bytes(take(p, 8)?.try_into().ok()?);
                        let leader_epoch = i32::from_le_bytes(take(p, 4)?.try_into().ok()?);
                        let len = i32::from_le_bytes(take(p, 4)?.try_into().ok()?);
                        let metadata = if len < 0 {
                            None
                        } else {
                            let bytes = take(p, usize::try_from(len).ok()?)?;
                            Some(String::from_utf8(bytes.to_vec()).ok()?)
                        };
                        list.push(GroupOffset {
                            topic,
                            partition,
                            committed: CommittedOffset {
                                offset,
                                leader_epoch,
                                metadata,
                            },
                        });
                    }
                    offsets.push((group, list));
                }
                if id.is_empty() {
                    return None;
                }
                Self::State(TxnSnapshot {
                    transactional_id: id,
                    producer_id,
                    previous_producer_id,
                    epoch,
                    last_epoch,
                    timeout_ms,
                    state,
                    partitions,
                    offsets,
                })
            }
            2 if !id.is_empty() => Self::Forget(id),
            3 if id.is_empty() => Self::SnapshotComplete,
            4 if id.is_empty() => {
                let topic = string(p)?;
                let partition = u32::from_le_bytes(take(p, 4)?.try_into().ok()?);
                Self::Partition(topic, partition)
            }
            5 if !id.is_empty() => {
                Self::Opened(id, i64::from_le_bytes(take(p, 8)?.try_into().ok()?))
            }
            _ => return None,
        };
        p.is_empty().then_some(record)
    }
}

fn take<'a>(p: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if p.len() < n {
        return None;
    }
    let (a, b) = p.split_at(n);
    *p = b;
    Some(a)
}

fn u8(p: &mut &[u8]) -> Option<u8> {
    take(p, 1).map(|b| b[0])
}

fn string(p: &mut &[u8]) -> Option<String> {
    let len = u16::from_le_bytes(take(p, 2)?.try_into().ok()?);
    String::from_utf8(take(p, usize::from(len))?.to_vec()).ok()
}

/// A u32 count of entries of at least `min` bytes each, refused when the rest of the
/// record cannot hold them.
fn count(p: &mut &[u8], min: usize) -> Option<usize> {
    let n = usize::try_from(u32::from_le_bytes(take(p, 4)?.try_into().ok()?)).ok()?;
    (n.checked_mul(min)? <= p.len()).then_some(n)
}

/// The state a generation of the log holds, replayed.
#[derive(Debug, Default)]
pub(crate) struct TxnLogState {
    /// The generation written to.
    pub(crate) generation: u64,
    /// Records in the generation (its next offset).
    pub(crate) records: u64,
    /// The latest state of each live transactional id.
    pub(crate) ids: BTreeMap<String, TxnSnapshot>,
    /// The partitions transactions write to.
    pub(crate) partitions: BTreeSet<(String, u32)>,
    /// When each open transaction opened (ms since the Unix epoch), where the log says.
    pub(crate) opened: BTreeMap<String, i64>,
}

impl TxnLogState {
    /// Applies one record.
    pub(crate) fn apply(&mut self, r: &Record) {
        match r {
            Record::State(s) => {
                if s.state != TxnState::Ongoing {
                    self.opened.remove(&s.transactional_id);
                }
                self.ids.insert(s.transactional_id.clone(), s.clone());
            }
            Record::Forget(id) => {
                self.ids.remove(id);
                self.opened.remove(id);
            }
            Record::Opened(id, at_ms) => {
                self.opened.insert(id.clone(), *at_ms);
            }
            Record::SnapshotComplete => {}
            Record::Partition(topic, partition) => {
                self.partitions.insert((topic.clone(), *partition));
            }
        }
    }

    /// Whether the generation should be rewritten: many more records than compaction
    /// would leave (the named partitions, the live ids and the snapshot's end), so that
    /// however many partitions are named, a compaction is followed by at least three
    /// times its size in writes before the next.
    pub(crate) fn wants_compaction(&self) -> bool {
        let compacted = (self.partitions.len() + self.ids.len() + self.opened.len() + 1) as u64;
        self.records > COMPACT_AFTER.max(4 * compacted)
    }

    /// The named partitions no live transactional id names (those that could be dropped
    /// when their topic is gone).
    pub(crate) fn unnamed_partitions(&self) -> BTreeSet<(String, u32)> {
        let mut out = self.partitions.clone();
        for s in self.ids.values() {
            for tp in &s.partitions {
                out.remove(tp);
            }
        }
        out
    }

    /// The live state as records of a new generation, closed by [`Record::SnapshotComplete`].
    pub(crate) fn snapshot(&self) -> Vec<Record> {
        self.partitions
            .iter()
            .map(|(t, p)| Record::Partition(t.clone(), *p))
            .chain(
                self.opened
                    .iter()
                    .map(|(id, at_ms)| Record::Opened(id.clone(), *at_ms)),
            )
            .chain(self.ids.values().cloned().map(Record::State))
            .chain(std::iter::once(Record::SnapshotComplete))
            .collect()
    }

    /// The records that keep `changes`, made at `now_ms` (wall clock): each state after
    /// when its transaction opened if it opens with it, and after the partitions it names
    /// that the log does not name yet.
    pub(crate) fn records_of(
        &self,
        changes: Vec<(String, Option<TxnSnapshot>)>,
        now_ms: i64,
    ) -> Vec<Record> {
        let mut named = BTreeSet::new();
        let mut open: BTreeMap<String, bool> = BTreeMap::new();
        let mut records = Vec::with_capacity(changes.len());
        for (id, snapshot) in changes {
            let Some(s) = snapshot else {
                open.insert(id.clone(), false);
                records.push(Record::Forget(id));
                continue;
            };
            let was_open = open.get(&id).copied().unwrap_or_else(|| {
                self.ids
                    .get(&id)
                    .is_some_and(|before| before.state == TxnState::Ongoing)
            });
            let is_open = s.state == TxnState::Ongoing;
            if is_open && !was_open {
                records.push(Record::Opened(id.clone(), now_ms));
            }
            open.insert(id, is_open);
            for tp in &s.partitions {
                if !self.partitions.contains(tp) && named.insert(tp.clone()) {
                    records.push(Record::Partition(tp.0.clone(), tp.1));
                }
            }
            records.push(Record::State(s));
        }
        records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TxnSnapshot {
        TxnSnapshot {
            transactional_id: "tx".into(),
            producer_id: 5,
            previous_producer_id: -1,
            epoch: 2,
            last_epoch: 1,
            timeout_ms: 60_000,
            state: TxnState::PrepareCommit,
            partitions: vec![("t".into(), 0), ("t".into(), 1)],
            offsets: vec![(
                "g".into(),
                vec![GroupOffset {
                    topic: "in".into(),
                    partition: 3,
                    committed: CommittedOffset {
                        offset: 42,
                        leader_epoch: -1,
                        metadata: Some("m".into()),
                    },
                }],
            )],
        }
    }

    /// The format on the wire, byte for byte: a change to it breaks every stored log.
    #[test]
    fn golden_bytes() {
        let bytes = Record::State(sample()).encode().expect("encoded");
        let expected: &[u8] = &[
            1, 1, // version, kind
            2, 0, b't', b'x', // transactional id
            5, 0, 0, 0, 0, 0, 0, 0, // producer id
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // previous producer id
            2, 0, // epoch
            1, 0, // last epoch
            0x60, 0xea, 0, 0, // timeout 60,000 ms
            2, // PrepareCommit
            2, 0, 0, 0, // two partitions
            1, 0, b't', 0, 0, 0, 0, // t-0
            1, 0, b't', 1, 0, 0, 0, // t-1
            1, 0, 0, 0, // one group
            1, 0, b'g', // g
            1, 0, 0, 0, // one offset
            2, 0, b'i', b'n', 3, 0, 0, 0, // in-3
            42, 0, 0, 0, 0, 0, 0, 0, // offset
            0xff, 0xff, 0xff, 0xff, // leader epoch
            1, 0, 0, 0, b'm', // metadata
        ];
        assert_eq!(&bytes[..], expected);
        assert_eq!(Record::decode(expected), Some(Record::State(sample())));
        assert_eq!(
            &Record::Forget("tx".into()).encode().expect("encoded")[..],
            &[1, 2, 2, 0, b't', b'x']
        );
        assert_eq!(
            &Record::SnapshotComplete.encode().expect("encoded")[..],
            &[1, 3, 0, 0]
        );
        assert_eq!(
            &Record::Partition("t".into(), 2).encode().expect("encoded")[..],
            &[1, 4, 0, 0, 1, 0, b't', 2, 0, 0, 0]
        );
        assert_eq!(
            &Record::Opened("tx".into(), 1000).encode().expect("encoded")[..],
            &[1, 5, 2, 0, b't', b'x', 0xe8, 3, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn records_round_trip() {
        let mut s = sample();
        for r in [
            Record::State(s.clone()),
            Record::Forget("x".into()),
            Record::SnapshotComplete,
            Record::Partition("t".into(), 7),
        ] {
            assert_eq!(Record::decode(&r.encode().expect("encoded")), Some(r));
        }
        s.offsets[0].1[0].committed.metadata = None;
        s.state = TxnState::Ongoing;
        let r = Record::State(s);
        assert_eq!(Record::decode(&r.encode().expect("encoded")), Some(r));
    }

    /// Every prefix, every byte changed, and trailing bytes: never a panic, and a cut or
    /// extended record is refused.
    #[test]
    fn damaged_records_are_refused_without_panicking() {
        let bytes = Record::State(sample()).encode().expect("encoded");
        for n in 0..bytes.len() {
            assert_eq!(Record::decode(&bytes[..n]), None, "prefix of {n}");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert_eq!(Record::decode(&longer), None);
        for i in 0..bytes.len() {
            for v in [0u8, 0x7f, 0xff] {
                let mut b = bytes.to_vec();
                b[i] = v;
                let _ = Record::decode(&b);
            }
        }
        // A count far beyond what the record holds allocates nothing.
        let mut huge = bytes[..31].to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Record::decode(&huge), None);
    }

    #[test]
    fn the_latest_record_of_an_id_wins() {
        let mut state = TxnLogState::default();
        let mut s = sample();
        state.apply(&Record::State(s.clone()));
        s.state = TxnState::CompleteCommit;
        state.apply(&Record::State(s.clone()));
        assert_eq!(state.ids["tx"].state, TxnState::CompleteCommit);
        state.apply(&Record::Forget("tx".into()));
        assert!(state.ids.is_empty());
        assert_eq!(state.snapshot(), [Record::SnapshotComplete]);
    }

    /// A partition is named once, before the first state that lists it, and kept by
    /// compaction.
    #[test]
    fn partitions_are_named_before_the_states_that_list_them() {
        let mut state = TxnLogState::default();
        let s = sample();
        let records = state.records_of(
            vec![
                ("tx".into(), Some(s.clone())),
                ("tx".into(), Some(s.clone())),
            ],
            0,
        );
        assert_eq!(
            records,
            [
                Record::Partition("t".into(), 0),
                Record::Partition("t".into(), 1),
                Record::State(s.clone()),
                Record::State(s.clone()),
            ]
        );
        for r in &records {
            state.apply(r);
        }
        assert_eq!(
            state.records_of(vec![("tx".into(), Some(s.clone()))], 0),
            [Record::State(s.clone())]
        );
        assert_eq!(state.snapshot().len(), 4);
    }

    /// A string longer than its u16 length can say is refused, not cut: a cut
    /// transactional id would be another id.
    #[test]
    fn long_strings_are_refused_not_cut() {
        let longest = "x".repeat(usize::from(u16::MAX));
        let r = Record::Forget(longest);
        assert_eq!(Record::decode(&r.encode().expect("encoded")), Some(r));
        let mut s = sample();
        s.transactional_id = "x".repeat(usize::from(u16::MAX) + 1);
        assert_eq!(Record::State(s).encode(), None);
        assert_eq!(
            Record::Partition("é".repeat(40_000), 0).encode(),
            None,
            "a topic name too"
        );
    }

    /// When a transaction opened is written before the state that opens it, kept while it
    /// is open (compaction included) and forgotten once it is not.
    #[test]
    fn when_a_transaction_opened_is_kept_while_it_is_open() {
        let mut state = TxnLogState::default();
        let mut s = sample();
        s.state = TxnState::Ongoing;
        let records = state.records_of(
            vec![
                ("tx".into(), Some(s.clone())),
                ("tx".into(), Some(s.clone())),
            ],
            7,
        );
        assert_eq!(records[0], Record::Opened("tx".into(), 7));
        assert_eq!(
            records[3..],
            [Record::State(s.clone()), Record::State(s.clone())]
        );
        for r in &records {
            state.apply(r);
        }
        assert_eq!(state.opened["tx"], 7);
        assert!(!state
            .records_of(vec![("tx".into(), Some(s.clone()))], 9)
            .iter()
            .any(|r| matches!(r, Record::Opened(..))));
        let mut replayed = TxnLogState::default();
        for r in state.snapshot() {
            replayed.apply(&r);
        }
        assert_eq!(replayed.opened["tx"], 7);
        s.state = TxnState::PrepareCommit;
        state.apply(&Record::State(s.clone()));
        assert!(state.opened.is_empty());
        // Committed and opened again in one batch: opened again.
        let mut done = s.clone();
        done.state = TxnState::CompleteCommit;
        let mut again = s.clone();
        again.state = TxnState::Ongoing;
        let records = state.records_of(
            vec![("tx".into(), Some(done)), ("tx".into(), Some(again))],
            11,
        );
        assert!(records.contains(&Record::Opened("tx".into(), 11)));
        assert!(
            Record::decode(&Record::Opened(String::new(), 1).encode().expect("encoded")).is_none()
        );
    }
}
