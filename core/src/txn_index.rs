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
    /// Each producer's last marker seen here: its offset and whether it committed.
    last_marker: HashMap<i64, (u64, bool)>,
}

impl TxnIndex {
    /// A transactional batch of `producer_id` was appended at `first_offset`: it opens the
    /// producer's transaction on the partition, unless one is open.
    ///
    /// The index may learn of appends and markers in another order than the log holds them
    /// (their replies handled by different tasks, or a replay of what was already seen): a
    /// batch before the producer's last marker belongs to the transaction that marker ended,
    /// and an earlier batch of an open transaction moves its start back.
    pub fn appended(&mut self, producer_id: i64, first_offset: u64) {
        if let Some(&(marker, commit)) = self.last_marker.get(&producer_id) {
            if first_offset < marker {
                if !commit {
                    self.abort_from(producer_id, first_offset, marker);
                }
                return;
            }
        }
        match self.ongoing.get_mut(&producer_id) {
            Some(first) if *first <= first_offset => {}
            Some(first) => {
                self.firsts.remove(&(*first, producer_id));
                *first = first_offset;
                self.firsts.insert((first_offset, producer_id));
            }
            None => {
                self.ongoing.insert(producer_id, first_offset);
                self.firsts.insert((first_offset, producer_id));
            }
        }
    }

    /// Records that `producer_id`'s transaction ended by the abort marker at `last` started at
    /// `first` at the latest.
    fn abort_from(&mut self, producer_id: i64, first: u64, last: u64) {
        if let Some(a) = self
            .aborted
            .iter_mut()
            .rev()
            .find(|a| a.producer_id == producer_id && a.last_offset == last)
        {
            a.first_offset = a.first_offset.min(first);
            return;
        }
        if self.aborted.len() >= MAX_ABORTED {
            self.aborted.pop_front();
        }
        let at = self.aborted.partition_point(|a| a.last_offset <= last);
        self.aborted.insert(
            at,
            AbortedTxn {
                producer_id,
                first_offset: first,
                last_offset: last,
            },
        );
    }

    /// `producer_id`'s marker was appended at `offset`: its open transaction, if any, ends.
    /// A marker at or before the producer's last one is a replay and changes nothing.
    pub fn marker(&mut self, producer_id: i64, commit: bool, offset: u64) {
        if self
            .last_marker
            .get(&producer_id)
            .is_some_and(|&(m, _)| offset <= m)
        {
            // Seen already, or older than one seen: a replay.
            return;
        }
        self.last_marker.insert(producer_id, (offset, commit));
        let Some(first) = self.ongoing.remove(&producer_id) else {
            return;
        };
        self.firsts.remove(&(first, producer_id));
        if first > offset {
            // Records after this marker: a later transaction, still open.
            self.ongoing.insert(producer_id, first);
            self.firsts.insert((first, producer_id));
            return;
        }
        if !commit {
            self.abort_from(producer_id, first, offset);
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

    /// Appends and markers learnt in another order than the log's, or twice, give the
    /// index the log's order would.
    #[test]
    fn order_of_learning_does_not_matter() {
        let mut i = TxnIndex::default();
        // Producer 1: records at 1 and 2, abort marker at 3; learnt marker first.
        i.appended(1, 2);
        i.marker(1, false, 3);
        i.appended(1, 1);
        assert_eq!(i.last_stable(10), 10);
        assert_eq!(
            i.aborted_between(0, 10),
            vec![AbortedTxn {
                producer_id: 1,
                first_offset: 1,
                last_offset: 3
            }]
        );
        // Replayed: nothing changes.
        i.appended(1, 1);
        i.appended(1, 2);
        i.marker(1, false, 3);
        assert_eq!(i.last_stable(10), 10);
        assert_eq!(i.aborted_between(0, 10).len(), 1);
        // Producer 2: a commit learnt before its only record: nothing aborted, nothing open.
        i.marker(2, true, 6);
        i.appended(2, 5);
        assert_eq!(i.last_stable(10), 10);
        assert_eq!(i.aborted_between(0, 10).len(), 1);
        // Producer 1's next transaction, its later record learnt first.
        i.appended(1, 8);
        i.appended(1, 7);
        assert_eq!(i.last_stable(10), 7);
        // An aborted transaction whose marker came before the others' stays in order.
        i.marker(3, false, 4);
        i.appended(3, 0);
        let firsts: Vec<u64> = i
            .aborted_between(0, 10)
            .iter()
            .map(|a| a.first_offset)
            .collect();
        assert_eq!(firsts, [0, 1]);
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
