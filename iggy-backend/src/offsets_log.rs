//! Kafka's committed group offsets, kept as records in a gateway-owned Iggy topic.
//!
//! Iggy's own consumer offsets cannot hold a Kafka commit (see `docs/MAPPING.md`), so every
//! change is a record appended to the topic `__kafka_gateway_offsets.<generation>` of the
//! gateway's stream (one partition) before it is acknowledged, and the records are replayed
//! when the gateway starts. Growth is bounded by compaction: when the log holds many more
//! records than live offsets, the live state is written whole into the next generation's
//! topic, closed by a snapshot marker, and the old topic is deleted. At start the newest
//! generation with a complete snapshot wins; an unfinished newer one (a crash mid-way) and
//! older ones are deleted.
//!
//! The same log keeps each partition's log start offset as DeleteRecords advanced it: Iggy
//! deletes whole segments only, so the records before it stay in Iggy until its retention
//! removes them, and the gateway answers as if they were gone. A topic deleted through the
//! gateway takes its log starts with it; one deleted and created again by other means has a
//! new topic id, which the log starts do not match.
//!
//! The log also keeps the group coordinator's state, as Kafka's `__consumer_offsets` keeps
//! group metadata beside the offsets: each group's latest state (the coordinator's own
//! versioned encoding, opaque here), replayed at start so that groups keep their generation,
//! members and assignments across a restart.
//!
//! A record's payload (little-endian): version `1`; kind (1 commit, 2 delete one offset,
//! 3 delete a group, 4 delete a topic's offsets and log starts, 5 snapshot complete, 6 a
//! log start, 7 a group's state, 8 a group's state removed); the group and the topic as
//! u16-length strings; the partition (u32); for a commit, the offset (i64), the leader epoch
//! (i32) and the metadata as an i32 length (-1 for null) and bytes; for a log start, the
//! offset (u64) and the Kafka topic id (16 bytes); for a group's state, its length (u32) and
//! bytes.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};
use iggy_kafka_core::backend::{CommittedOffset, GroupOffsets};
use iggy_kafka_core::protocol::Uuid;

/// The prefix of the offsets topics' names; Kafka clients neither see nor create them.
pub(crate) const TOPIC_PREFIX: &str = "__kafka_gateway_offsets.";

/// Compaction starts past this many records, when they outnumber live offsets 4 to 1.
pub(crate) const COMPACT_AFTER: u64 = 50_000;

/// The topic of the SCRAM credentials (the `scram` module writes it).
pub(crate) const SCRAM_TOPIC: &str = "__kafka_gateway_scram";

/// The SCRAM credentials topic of generation `g`: [`SCRAM_TOPIC`] for the first, then `SCRAM_TOPIC.g`.
pub(crate) fn scram_topic_name(generation: u64) -> String {
    if generation == 0 {
        SCRAM_TOPIC.to_owned()
    } else {
        format!("{SCRAM_TOPIC}.{generation}")
    }
}

/// The generation of a SCRAM credentials topic's name.
pub(crate) fn scram_generation(name: &str) -> Option<u64> {
    if name == SCRAM_TOPIC {
        return Some(0);
    }
    // Only the name the gateway itself would give (no sign, no leading zero).
    name.strip_prefix(SCRAM_TOPIC)?
        .strip_prefix('.')?
        .parse()
        .ok()
        .filter(|g| *g > 0 && scram_topic_name(*g) == name)
}

/// Whether `name` is one of the gateway's own topics (the offsets topics, the transaction
/// state's, and the SCRAM credentials' [`SCRAM_TOPIC`] and its generations), which no Kafka client may see,
/// write, read or delete.
pub(crate) fn is_own(name: &str) -> bool {
    name.starts_with(TOPIC_PREFIX)
        || scram_generation(name).is_some()
        || name.starts_with(crate::txn_log::TOPIC_PREFIX)
}

/// The name of generation `g`'s topic.
pub(crate) fn topic_name(generation: u64) -> String {
    format!("{TOPIC_PREFIX}{generation}")
}

/// The generation of an offsets topic's name.
pub(crate) fn generation(name: &str) -> Option<u64> {
    name.strip_prefix(TOPIC_PREFIX)?.parse().ok()
}

/// One change to the committed offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    Commit {
        group: String,
        topic: String,
        partition: u32,
        committed: CommittedOffset,
    },
    DeleteOne {
        group: String,
        topic: String,
        partition: u32,
    },
    DeleteGroup {
        group: String,
    },
    DeleteTopic {
        topic: String,
    },
    SnapshotComplete,
    /// A partition's log start offset, advanced by DeleteRecords.
    LogStart {
        topic: String,
        id: Uuid,
        partition: u32,
        start: u64,
    },
    /// A group's state as the group coordinator keeps it (replacing what was kept).
    GroupState {
        group: String,
        state: Bytes,
    },
    /// A group's state is gone (the group was deleted or forgotten).
    GroupGone {
        group: String,
    },
}

fn put_str(b: &mut BytesMut, s: &str) {
    // Group ids and topic names are bounded by Kafka's int16 string lengths.
    let bytes = &s.as_bytes()[..s.len().min(usize::from(u16::MAX))];
    b.put_u16_le(u16::try_from(bytes.len()).unwrap_or(u16::MAX));
    b.put_slice(bytes);
}

impl Record {
    pub(crate) fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(64);
        b.put_u8(1);
        let (kind, group, topic, partition) = match self {
            Self::Commit {
                group,
                topic,
                partition,
                ..
            } => (1, group.as_str(), topic.as_str(), *partition),
            Self::DeleteOne {
                group,
                topic,
                partition,
            } => (2, group.as_str(), topic.as_str(), *partition),
            Self::DeleteGroup { group } => (3, group.as_str(), "", 0),
            Self::DeleteTopic { topic } => (4, "", topic.as_str(), 0),
            Self::SnapshotComplete => (5, "", "", 0),
            Self::LogStart {
                topic, partition, ..
            } => (6, "", topic.as_str(), *partition),
            Self::GroupState { group, .. } => (7, group.as_str(), "", 0),
            Self::GroupGone { group } => (8, group.as_str(), "", 0),
        };
        b.put_u8(kind);
        put_str(&mut b, group);
        put_str(&mut b, topic);
        b.put_u32_le(partition);
        if let Self::Commit { committed, .. } = self {
            b.put_i64_le(committed.offset);
            b.put_i32_le(committed.leader_epoch);
            match &committed.metadata {
                Some(m) => {
                    b.put_i32_le(i32::try_from(m.len()).unwrap_or(i32::MAX));
                    b.put_slice(m.as_bytes());
                }
                None => b.put_i32_le(-1),
            }
        }
        if let Self::LogStart { id, start, .. } = self {
            b.put_u64_le(*start);
            b.put_slice(&id.0);
        }
        if let Self::GroupState { state, .. } = self {
            b.put_u32_le(u32::try_from(state.len()).unwrap_or(u32::MAX));
            b.put_slice(state);
        }
        b.freeze()
    }

    /// `None` for anything that is not a record this gateway wrote.
    pub(crate) fn decode(mut p: &[u8]) -> Option<Self> {
        fn take<'a>(p: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            if p.len() < n {
                return None;
            }
            let (a, b) = p.split_at(n);
            *p = b;
            Some(a)
        }
        fn string(p: &mut &[u8]) -> Option<String> {
            let len = u16::from_le_bytes(take(p, 2)?.try_into().ok()?);
            String::from_utf8(take(p, usize::from(len))?.to_vec()).ok()
        }
        let head = take(&mut p, 2)?;
        if head[0] != 1 {
            return None;
        }
        let kind = head[1];
        let group = string(&mut p)?;
        let topic = string(&mut p)?;
        let partition = u32::from_le_bytes(take(&mut p, 4)?.try_into().ok()?);
        Some(match kind {
            1 => {
                let offset = i64::from_le_bytes(take(&mut p, 8)?.try_into().ok()?);
                let leader_epoch = i32::from_le_bytes(take(&mut p, 4)?.try_into().ok()?);
                let len = i32::from_le_bytes(take(&mut p, 4)?.try_into().ok()?);
                let metadata = if len < 0 {
                    None
                } else {
                    let bytes = take(&mut p, usize::try_from(len).ok()?)?;
                    Some(String::from_utf8(bytes.to_vec()).ok()?)
                };
                Self::Commit {
                    group,
                    topic,
                    partition,
                    committed: CommittedOffset {
                        offset,
                        leader_epoch,
                        metadata,
                    },
                }
            }
            2 => Self::DeleteOne {
                group,
                topic,
                partition,
            },
            3 => Self::DeleteGroup { group },
            4 => Self::DeleteTopic { topic },
            5 => Self::SnapshotComplete,
            6 => {
                let start = u64::from_le_bytes(take(&mut p, 8)?.try_into().ok()?);
                let id = Uuid(take(&mut p, 16)?.try_into().ok()?);
                Self::LogStart {
                    topic,
                    id,
                    partition,
                    start,
                }
            }
            7 => {
                let len = u32::from_le_bytes(take(&mut p, 4)?.try_into().ok()?);
                let state = take(&mut p, usize::try_from(len).ok()?)?;
                Self::GroupState {
                    group,
                    state: Bytes::copy_from_slice(state),
                }
            }
            8 => Self::GroupGone { group },
            _ => return None,
        })
    }
}

/// The committed offsets of every group, and how long the log behind them is.
#[derive(Debug, Default)]
pub(crate) struct OffsetsState {
    pub(crate) groups: HashMap<String, GroupOffsets>,
    /// Each partition's log start offset as DeleteRecords left it, with its topic's id.
    pub(crate) log_starts: HashMap<(String, u32), (Uuid, u64)>,
    /// Each group's state as the group coordinator last asked to keep it.
    pub(crate) group_states: HashMap<String, Bytes>,
    /// Records in the current generation's topic.
    pub(crate) records: u64,
    pub(crate) generation: u64,
    /// The current generation lost records (deleted and created again by other means): only
    /// memory holds the whole state until it is written into a new generation.
    pub(crate) wiped: bool,
}

impl OffsetsState {
    pub(crate) fn apply(&mut self, r: &Record) {
        self.records += 1;
        match r {
            Record::Commit {
                group,
                topic,
                partition,
                committed,
            } => {
                self.groups
                    .entry(group.clone())
                    .or_default()
                    .insert((topic.clone(), *partition), committed.clone());
            }
            Record::DeleteOne {
                group,
                topic,
                partition,
            } => {
                if let Some(g) = self.groups.get_mut(group) {
                    g.remove(&(topic.clone(), *partition));
                    if g.is_empty() {
                        self.groups.remove(group);
                    }
                }
            }
            Record::DeleteGroup { group } => {
                self.groups.remove(group);
            }
            Record::DeleteTopic { topic } => {
                for g in self.groups.values_mut() {
                    g.retain(|(t, _), _| t != topic);
                }
                self.groups.retain(|_, g| !g.is_empty());
                self.log_starts.retain(|(t, _), _| t != topic);
            }
            Record::SnapshotComplete => {}
            Record::GroupState { group, state } => {
                self.group_states.insert(group.clone(), state.clone());
            }
            Record::GroupGone { group } => {
                self.group_states.remove(group);
            }
            Record::LogStart {
                topic,
                id,
                partition,
                start,
            } => {
                let entry = self
                    .log_starts
                    .entry((topic.clone(), *partition))
                    .or_insert((*id, 0));
                // A topic of the same name created again starts afresh.
                *entry = if entry.0 == *id {
                    (*id, entry.1.max(*start))
                } else {
                    (*id, *start)
                };
            }
        }
    }

    /// Partition `partition` of `topic`'s log start as DeleteRecords left it, if the topic
    /// is the one it was left for (`id`, when known).
    pub(crate) fn log_start(&self, topic: &str, partition: u32, id: Option<Uuid>) -> Option<u64> {
        self.log_starts
            .get(&(topic.to_owned(), partition))
            .filter(|(at, _)| id.is_none_or(|id| id == *at))
            .map(|&(_, start)| start)
    }

    /// How many offsets, log starts and group states are live.
    pub(crate) fn live(&self) -> u64 {
        self.groups.values().map(|g| g.len() as u64).sum::<u64>()
            + self.log_starts.len() as u64
            + self.group_states.len() as u64
    }

    /// Whether the log has grown enough past the live state to be rewritten.
    pub(crate) fn wants_compaction(&self) -> bool {
        self.records > COMPACT_AFTER && self.records > 4 * self.live()
    }

    /// The live state as records, for a new generation.
    pub(crate) fn snapshot(&self) -> Vec<Record> {
        let mut out = Vec::new();
        for (group, offsets) in &self.groups {
            for ((topic, partition), committed) in offsets {
                out.push(Record::Commit {
                    group: group.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    committed: committed.clone(),
                });
            }
        }
        for ((topic, partition), &(id, start)) in &self.log_starts {
            out.push(Record::LogStart {
                topic: topic.clone(),
                id,
                partition: *partition,
                start,
            });
        }
        for (group, state) in &self.group_states {
            out.push(Record::GroupState {
                group: group.clone(),
                state: state.clone(),
            });
        }
        out.push(Record::SnapshotComplete);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(group: &str, topic: &str, partition: u32, offset: i64) -> Record {
        Record::Commit {
            group: group.into(),
            topic: topic.into(),
            partition,
            committed: CommittedOffset {
                offset,
                leader_epoch: 3,
                metadata: Some("m".into()),
            },
        }
    }

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let records = vec![
            commit("g", "t", 7, 0),
            Record::Commit {
                group: "g".into(),
                topic: "t".into(),
                partition: 1,
                committed: CommittedOffset {
                    offset: i64::MAX,
                    leader_epoch: -1,
                    metadata: None,
                },
            },
            Record::DeleteOne {
                group: "g".into(),
                topic: "t".into(),
                partition: 7,
            },
            Record::DeleteGroup { group: "g".into() },
            Record::DeleteTopic { topic: "t".into() },
            Record::SnapshotComplete,
            Record::LogStart {
                topic: "t".into(),
                id: Uuid([9; 16]),
                partition: 3,
                start: u64::MAX,
            },
            Record::GroupState {
                group: "g".into(),
                state: Bytes::from_static(b"\x01\x02state"),
            },
            Record::GroupState {
                group: "g".into(),
                state: Bytes::new(),
            },
            Record::GroupGone { group: "g".into() },
        ];
        for r in &records {
            let bytes = r.encode();
            assert_eq!(Record::decode(&bytes).as_ref(), Some(r));
            for cut in 0..bytes.len() {
                let _ = Record::decode(&bytes[..cut]);
            }
        }
        assert_eq!(Record::decode(b""), None);
        assert_eq!(Record::decode(&[2, 1, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(Record::decode(&[1, 9, 0, 0, 0, 0, 0, 0, 0, 0]), None);
    }

    #[test]
    fn replay_rebuilds_the_state_and_a_snapshot_reproduces_it() {
        let mut s = OffsetsState::default();
        for r in [
            commit("a", "t", 0, 5),
            commit("a", "t", 1, 6),
            commit("b", "t", 0, 1),
            commit("b", "u", 0, 2),
            commit("a", "t", 0, 9),
            Record::DeleteOne {
                group: "a".into(),
                topic: "t".into(),
                partition: 1,
            },
            Record::DeleteTopic { topic: "u".into() },
            commit("c", "t", 0, 1),
            Record::DeleteGroup { group: "c".into() },
        ] {
            s.apply(&r);
        }
        assert_eq!(s.records, 9);
        assert_eq!(s.live(), 2);
        assert_eq!(s.groups["a"][&("t".into(), 0)].offset, 9);
        assert_eq!(s.groups["b"].len(), 1);
        let mut again = OffsetsState::default();
        for r in s.snapshot() {
            again.apply(&r);
        }
        assert_eq!(again.groups, s.groups);
        assert!(!s.wants_compaction());
        s.records = COMPACT_AFTER + 1;
        assert!(s.wants_compaction());
    }

    #[test]
    fn log_starts_only_rise_follow_their_topic_and_survive_a_snapshot() {
        let start = |topic: &str, id: u8, partition, start| Record::LogStart {
            topic: topic.into(),
            id: Uuid([id; 16]),
            partition,
            start,
        };
        let mut s = OffsetsState::default();
        for r in [
            start("t", 1, 0, 10),
            start("t", 1, 0, 4),
            start("t", 1, 1, 7),
            start("u", 1, 0, 3),
        ] {
            s.apply(&r);
        }
        assert_eq!(
            s.log_start("t", 0, Some(Uuid([1; 16]))),
            Some(10),
            "never back"
        );
        assert_eq!(s.log_start("t", 0, None), Some(10));
        assert_eq!(
            s.log_start("t", 0, Some(Uuid([2; 16]))),
            None,
            "another topic"
        );
        let mut again = OffsetsState::default();
        for r in s.snapshot() {
            again.apply(&r);
        }
        assert_eq!(again.log_starts, s.log_starts);
        s.apply(&start("t", 2, 0, 1));
        assert_eq!(
            s.log_start("t", 0, Some(Uuid([2; 16]))),
            Some(1),
            "created again"
        );
        s.apply(&Record::DeleteTopic { topic: "t".into() });
        assert_eq!(
            (s.log_start("t", 1, None), s.log_start("u", 0, None)),
            (None, Some(3))
        );
    }

    /// The bytes of the group records are fixed: a log written by this version must replay
    /// the same after any change of the code.
    #[test]
    fn group_records_have_fixed_bytes_and_bounded_lengths() {
        let state = Record::GroupState {
            group: "g".into(),
            state: Bytes::from_static(b"ab"),
        };
        let golden: &[u8] = &[
            1, 7, // version, kind
            1, 0, b'g', // group
            0, 0, // no topic
            0, 0, 0, 0, // no partition
            2, 0, 0, 0, b'a', b'b', // the state
        ];
        assert_eq!(&state.encode()[..], golden);
        assert_eq!(Record::decode(golden), Some(state));
        let gone = Record::GroupGone { group: "g".into() };
        let golden_gone: &[u8] = &[1, 8, 1, 0, b'g', 0, 0, 0, 0, 0, 0];
        assert_eq!(&gone.encode()[..], golden_gone);
        assert_eq!(Record::decode(golden_gone), Some(gone));
        // A length past the end is refused, not allocated.
        let mut long = golden.to_vec();
        long[11..15].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Record::decode(&long), None);
    }

    #[test]
    fn group_states_replay_follow_removals_and_survive_a_snapshot() {
        let state = |group: &str, s: &'static [u8]| Record::GroupState {
            group: group.into(),
            state: Bytes::from_static(s),
        };
        let mut s = OffsetsState::default();
        for r in [
            state("a", b"1"),
            state("b", b"1"),
            state("a", b"2"),
            state("c", b"1"),
            Record::GroupGone { group: "c".into() },
            // Deleting a group's offsets leaves its coordinator state alone.
            Record::DeleteGroup { group: "b".into() },
        ] {
            s.apply(&r);
        }
        assert_eq!(s.group_states.len(), 2);
        assert_eq!(s.group_states["a"], Bytes::from_static(b"2"));
        assert_eq!(s.live(), 2);
        let mut again = OffsetsState::default();
        for r in s.snapshot() {
            again.apply(&r);
        }
        assert_eq!(again.group_states, s.group_states);
    }

    #[test]
    fn generations_are_named_and_parsed() {
        assert_eq!(generation(&topic_name(42)), Some(42));
        assert_eq!(generation("__kafka_gateway_offsets.x"), None);
        assert_eq!(generation("orders"), None);
        // The SCRAM credentials' topic is the gateway's own too, and no generation.
        assert!(is_own(SCRAM_TOPIC) && is_own(&topic_name(1)) && !is_own("orders"));
        assert_eq!(generation(SCRAM_TOPIC), None);
    }
}
