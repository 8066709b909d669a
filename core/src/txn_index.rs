//! What a partition keeps of transactions, shared by the backends: the transactions open on
//! it (for the last stable offset) and the aborted ones (for read_committed fetches), kept
//! as they happen rather than found by scanning the log, and rebuilt from the log's
//! messages after a restart ([`TxnIndex::replay`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::backend::AbortedTxn;
use crate::mapping::{marker_of, transaction_of};
use crate::message::IggyMessage;

/// Markers remembered per producer; beyond it the oldest are forgotten.
const MAX_MARKERS: usize = 64;

/// The transactions of one partition.
///
/// Appends may be learnt in another order than the log holds them (a backend whose append
/// and marker replies are handled by different tasks, or a replay of what was already
/// seen), as long as each producer's markers are learnt in log order, which the
/// coordinator guarantees (a transaction's markers are written before the next transaction
/// of its producer can begin). A batch belongs to the transaction its producer's first
/// marker after it ends; a batch after the producer's last marker is open.
#[derive(Debug, Default, Clone)]
pub struct TxnIndex {
    /// Batches not closed by a marker yet: producer id → their first offsets.
    open: HashMap<i64, BTreeSet<u64>>,
    /// The first open offset of each producer with open batches, for the last stable offset.
    firsts: BTreeSet<(u64, i64)>,
    /// Aborted transactions, in the order of their markers (so by last offset). Each is
    /// kept as long as its marker is in the log ([`TxnIndex::truncate_before`]): forgetting
    /// one would show its records to read_committed consumers.
    aborted: VecDeque<AbortedTxn>,
    /// Each producer's markers seen here, by offset: whether each committed.
    markers: HashMap<i64, BTreeMap<u64, bool>>,
    /// The offset of each producer's latest marker forgotten (beyond [`MAX_MARKERS`]): a
    /// batch or marker at or before it belongs to a transaction
    /// that ended there, which the index took in when it was learnt and cannot tell again
    /// (its marker, commit or abort, is gone). Learnt again, it is left as it is, rather than
    /// closed by a later marker of the producer that did not end it.
    forgotten: HashMap<i64, u64>,
    /// The log start the index was last truncated to: nothing before it is taken in.
    start: u64,
}

impl TxnIndex {
    /// A transactional batch of `producer_id` was appended at `first_offset`.
    pub fn appended(&mut self, producer_id: i64, first_offset: u64) {
        if self.is_forgotten(producer_id, first_offset) {
            return;
        }
        let closing = self
            .markers
            .get(&producer_id)
            .and_then(|m| m.range(first_offset..).next())
            .map(|(&offset, &commit)| (offset, commit));
        if let Some((marker, commit)) = closing {
            // Learnt after the marker that ended its transaction.
            if !commit {
                self.abort_from(producer_id, first_offset, marker);
            }
            return;
        }
        let batches = self.open.entry(producer_id).or_default();
        let before = batches.first().copied();
        if batches.insert(first_offset) && before.is_none_or(|b| first_offset < b) {
            if let Some(b) = before {
                self.firsts.remove(&(b, producer_id));
            }
            self.firsts.insert((first_offset, producer_id));
        }
    }

    /// Records that `producer_id`'s transaction ended by the abort marker at `last` started at
    /// `first` at the latest.
    fn abort_from(&mut self, producer_id: i64, first: u64, last: u64) {
        // One marker per offset: the one ending at `last`, if any, is found by its offset.
        let at = self.aborted.partition_point(|a| a.last_offset < last);
        if let Some(a) = self
            .aborted
            .get_mut(at)
            .filter(|a| a.producer_id == producer_id && a.last_offset == last)
        {
            a.first_offset = a.first_offset.min(first);
            return;
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

    /// `producer_id`'s marker was appended at `offset`: its open batches before it belong to
    /// the transaction it ends. A marker seen already changes nothing.
    pub fn marker(&mut self, producer_id: i64, commit: bool, offset: u64) {
        if self.is_forgotten(producer_id, offset) {
            return;
        }
        let markers = self.markers.entry(producer_id).or_default();
        if markers.insert(offset, commit).is_some() {
            return;
        }
        if markers.len() > MAX_MARKERS {
            if let Some((oldest, _)) = markers.pop_first() {
                let forgotten = self.forgotten.entry(producer_id).or_default();
                *forgotten = (*forgotten).max(oldest);
            }
        }
        let Some(batches) = self.open.get_mut(&producer_id) else {
            return;
        };
        let Some(&first) = batches.first() else {
            return;
        };
        if first > offset {
            return;
        }
        self.firsts.remove(&(first, producer_id));
        let later = batches.split_off(&offset);
        if let Some(&next) = later.first() {
            self.firsts.insert((next, producer_id));
            *batches = later;
        } else {
            self.open.remove(&producer_id);
        }
        if !commit {
            self.abort_from(producer_id, first, offset);
        }
    }

    fn is_forgotten(&self, producer_id: i64, offset: u64) -> bool {
        offset < self.start
            || self
                .forgotten
                .get(&producer_id)
                .is_some_and(|&through| offset <= through)
    }

    /// The first offset of `producer_id`'s transaction open here, if it has one.
    #[must_use]
    pub fn open_since(&self, producer_id: i64) -> Option<u64> {
        self.open.get(&producer_id).and_then(|b| b.first().copied())
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

    /// Forgets aborted transactions wholly before `log_start`, and markers before it
    /// (dropped by retention), and takes in nothing before it from then on.
    pub fn truncate_before(&mut self, log_start: u64) {
        self.start = self.start.max(log_start);
        while self
            .aborted
            .front()
            .is_some_and(|a| a.last_offset < log_start)
        {
            self.aborted.pop_front();
        }
        self.markers.retain(|_, m| {
            m.retain(|&offset, _| offset >= log_start);
            !m.is_empty()
        });
        // Nothing before the log start is learnt again: reads and rebuilds start there.
        self.forgotten
            .retain(|_, &mut through| through >= log_start);
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
        // A record learnt after two later markers of its producer still finds its own.
        i.marker(1, false, 9);
        i.appended(1, 10);
        i.marker(1, true, 11);
        i.appended(1, 6);
        assert_eq!(i.last_stable(12), 12);
        let mine: Vec<(u64, u64)> = i
            .aborted_between(0, 12)
            .iter()
            .filter(|a| a.producer_id == 1)
            .map(|a| (a.first_offset, a.last_offset))
            .collect();
        assert_eq!(mine, [(1, 3), (6, 9)]);
        // An aborted transaction whose marker came before the others' stays in order.
        i.marker(3, false, 4);
        i.appended(3, 0);
        let firsts: Vec<u64> = i
            .aborted_between(0, 12)
            .iter()
            .map(|a| a.first_offset)
            .collect();
        assert_eq!(firsts, [0, 1, 6]);
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

    /// A batch learnt again once its producer's marker that ended it is forgotten is left
    /// alone: the producer's first remembered marker ended a later transaction, and taking
    /// the batch into that one would hide the committed transactions between.
    #[test]
    fn a_batch_learnt_again_after_its_marker_is_forgotten_changes_nothing() {
        let mut i = TxnIndex::default();
        // Transaction t: a batch at 2t, its marker at 2t + 1; the seventh (t = 6) aborts.
        let n = MAX_MARKERS as u64 + 6;
        for t in 0..n {
            i.appended(7, 2 * t);
            i.marker(7, t != 6, 2 * t + 1);
        }
        let aborted = [AbortedTxn {
            producer_id: 7,
            first_offset: 12,
            last_offset: 13,
        }];
        assert_eq!(i.aborted_between(0, 2 * n), aborted);
        // Every batch and marker learnt again, as a read or a retry would bring them.
        for t in 0..n {
            i.appended(7, 2 * t);
            i.marker(7, t != 6, 2 * t + 1);
        }
        assert_eq!(i.aborted_between(0, 2 * n), aborted);
        assert_eq!(i.last_stable(2 * n), 2 * n);
        // The producer's next transaction is open as usual.
        i.appended(7, 2 * n);
        assert_eq!(i.last_stable(2 * n + 1), 2 * n);
    }

    /// However many transactions aborted, none is forgotten while its marker is in the log.
    #[test]
    fn aborted_transactions_are_kept_until_truncated() {
        let mut i = TxnIndex::default();
        let n = 150_000;
        for t in 0..n {
            i.appended(7, 2 * t);
            i.marker(7, false, 2 * t + 1);
        }
        assert_eq!(
            i.aborted_between(0, 0),
            [AbortedTxn {
                producer_id: 7,
                first_offset: 0,
                last_offset: 1,
            }]
        );
        assert_eq!(i.aborted_between(0, 2 * n).len(), n as usize);
        i.truncate_before(2 * n - 2);
        assert_eq!(i.aborted_between(0, 2 * n).len(), 1);
        // What lies before the log start is not taken in again.
        i.appended(8, 0);
        assert_eq!(i.last_stable(2 * n), 2 * n);
    }
}
