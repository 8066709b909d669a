//! What a partition keeps of transactions, shared by the backends: the transactions open on
//! it (for the last stable offset) and the aborted ones (for read_committed fetches), kept
//! as they happen rather than found by scanning the log, and rebuilt from the log's
//! messages after a restart ([`TxnIndex::replay`]).

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::backend::AbortedTxn;
use crate::mapping::{marker_of, transaction_of};
use crate::message::IggyMessage;

/// Aborted transactions remembered per partition; beyond it the oldest are forgotten (a
/// read_committed consumer reading that far back would then see their records).
const MAX_ABORTED: usize = 100_000;

/// The transactions of one partition.
#[derive(Debug, Default, Clone)]
pub struct TxnIndex {
    /// Open transactions: producer id → first offset.
    ongoing: HashMap<i64, u64>,
    /// The same, ordered by first offset, for the last stable offset.
    firsts: BTreeSet<(u64, i64)>,
    /// Aborted transactions, in the order of their markers (so by last offset).
    aborted: VecDeque<AbortedTxn>,
}

impl TxnIndex {
    /// A transactional batch of `producer_id` was appended at `first_offset`: it opens the
    /// producer's transaction on the partition, unless one is open.
    pub fn appended(&mut self, producer_id: i64, first_offset: u64) {
        if let std::collections::hash_map::Entry::Vacant(e) = self.ongoing.entry(producer_id) {
            e.insert(first_offset);
            self.firsts.insert((first_offset, producer_id));
        }
    }

    /// `producer_id`'s marker was appended at `offset`: its open transaction, if any, ends.
    pub fn marker(&mut self, producer_id: i64, commit: bool, offset: u64) {
        let Some(first) = self.ongoing.remove(&producer_id) else {
            return;
        };
        self.firsts.remove(&(first, producer_id));
        if !commit {
            if self.aborted.len() >= MAX_ABORTED {
                self.aborted.pop_front();
            }
            self.aborted.push_back(AbortedTxn {
                producer_id,
                first_offset: first,
                last_offset: offset,
            });
        }
    }

    /// The first offset of `producer_id`'s transaction open here, if it has one.
    #[must_use]
    pub fn open_since(&self, producer_id: i64) -> Option<u64> {
        self.ongoing.get(&producer_id).copied()
    }

    /// The last stable offset of a partition whose high watermark is `high_watermark`.
    #[must_use]
    pub fn last_stable(&self, high_watermark: u64) -> u64 {
        self.firsts
            .first()
            .map_or(high_watermark, |&(first, _)| first.min(high_watermark))
    }

    /// The aborted transactions overlapping offsets `from..=to`, by first offset.
    #[must_use]
    pub fn aborted_between(&self, from: u64, to: u64) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        let mut out: Vec<AbortedTxn> = self
            .aborted
            .range(start..)
            .filter(|a| a.first_offset <= to)
            .copied()
            .collect();
        out.sort_by_key(|a| a.first_offset);
        out
    }

    /// Forgets aborted transactions wholly before `log_start` (dropped by retention).
    pub fn truncate_before(&mut self, log_start: u64) {
        while self
            .aborted
            .front()
            .is_some_and(|a| a.last_offset < log_start)
        {
            self.aborted.pop_front();
        }
    }

    /// Takes in the message at `offset` when the index is rebuilt from the log, oldest
    /// first.
    pub fn replay(&mut self, offset: u64, msg: &IggyMessage) {
        if let Some((producer_id, _)) = transaction_of(msg) {
            match marker_of(msg) {
                Some(commit) => self.marker(producer_id, commit, offset),
                None => self.appended(producer_id, offset),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::{mark_transactional, marker};

    #[test]
    fn last_stable_offset_follows_the_earliest_open_transaction() {
        let mut i = TxnIndex::default();
        assert_eq!(i.last_stable(10), 10);
        i.appended(1, 3);
        i.appended(2, 5);
        i.appended(1, 7);
        assert_eq!(i.last_stable(10), 3);
        i.marker(1, true, 8);
        assert_eq!(i.last_stable(10), 5);
        i.marker(2, false, 9);
        assert_eq!(i.last_stable(10), 10);
        assert_eq!(
            i.aborted_between(0, 10),
            vec![AbortedTxn {
                producer_id: 2,
                first_offset: 5,
                last_offset: 9
            }]
        );
        assert!(i.aborted_between(10, 20).is_empty());
        assert!(i.aborted_between(0, 4).is_empty());
        assert_eq!(i.aborted_between(9, 9).len(), 1);
        // A marker without an open transaction changes nothing.
        i.marker(3, false, 11);
        assert_eq!(i.aborted_between(0, 20).len(), 1);
        i.truncate_before(10);
        assert!(i.aborted_between(0, 20).is_empty());
    }

    #[test]
    fn replay_rebuilds_the_index_from_messages() {
        let mut data = IggyMessage {
            payload: bytes::Bytes::from_static(b"x"),
            ..IggyMessage::default()
        };
        mark_transactional(&mut data, 4, 0);
        let plain = IggyMessage {
            payload: bytes::Bytes::from_static(b"y"),
            ..IggyMessage::default()
        };
        let mut i = TxnIndex::default();
        i.replay(0, &plain);
        i.replay(1, &data);
        i.replay(2, &data);
        assert_eq!(i.last_stable(3), 1);
        i.replay(3, &marker(4, 0, false, 0, 0));
        assert_eq!(i.last_stable(4), 4);
        assert_eq!(i.aborted_between(0, 3)[0].first_offset, 1);
    }
}
