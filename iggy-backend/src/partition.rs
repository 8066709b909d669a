//! What the gateway knows of one Iggy partition, field by field for the layer that uses it:
//! idempotent producers (`crate::append`), where the partition ends (`crate::catalog`),
//! polls sent ahead of readers (`crate::read`), where its largest timestamps are
//! (`crate::search`), and its lane ([`PartitionRoute`]). It is forgotten when Iggy says the
//! partition does not exist or its topic was created again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use event_listener::Event;
use iggy_kafka_core::backend::ProducerBatch;
use iggy_kafka_core::producers::Producers;
use iggy_kafka_core::txn_index::TxnIndex;
use iggy_kafka_iggy_client::PendingCall;

use crate::calls::PartitionRoute;
use crate::sync::Gate;
use crate::timestamps::MaxTimestamps;

#[derive(Default)]
pub(crate) struct PartitionState {
    /// Serializes idempotent appends (check, append, record).
    pub(crate) gate: Gate,
    pub(crate) producers: Mutex<Producers>,
    /// Whether the producers' recent batches were read back from the partition's tail
    /// (once per gateway run, before its first idempotent append).
    pub(crate) recovered: AtomicBool,
    /// An idempotent batch sent whose reply was lost: whether Iggy applied it is found out
    /// before the partition's next idempotent append.
    pub(crate) doubt: Mutex<Option<Doubt>>,
    /// One past the highest offset this gateway has seen taken here (by its appends, reads
    /// and offset queries), 0 before it has seen any: where an append sent now lands at the
    /// earliest.
    pub(crate) seen_end: AtomicU64,
    /// Fences refused in a row by a node that has not applied what the gateway saw here
    /// (`crate::append`): past a bound, what it saw is taken as gone from Iggy.
    pub(crate) fence_refusals: AtomicU32,
    /// The partition's bytes per message as Iggy last reported them, 0 before.
    pub(crate) message_size: AtomicUsize,
    /// A running estimate of a message's size here as reads count it (`crate::read`), 0
    /// before a read returned any: the partition's own, so that reads of other topics,
    /// whose messages may be far smaller, do not size the polls of this one.
    pub(crate) read_size: AtomicUsize,
    pub(crate) log_start: AtomicU64,
    /// Notified when this gateway appended here: wakes the fetches waiting on it.
    pub(crate) appended: Event,
    /// Polls sent ahead of sequential readers, newest last.
    pub(crate) read_ahead: Mutex<Vec<ReadAhead>>,
    /// How large the polls sent ahead of the readers seen last here are, newest last.
    pub(crate) read_paces: Mutex<Vec<Pace>>,
    /// Where the largest Kafka timestamps are, as far as they were read; `timestamps_gate`
    /// lets one read at a time fill it in.
    pub(crate) timestamps: Mutex<MaxTimestamps>,
    pub(crate) timestamps_gate: Gate,
    /// Which lane serves the partition's appends and reads.
    pub(crate) route: PartitionRoute,
    /// The transactions open and aborted here, kept up by this gateway's transactional
    /// appends and markers (under `gate`), and read back from the log once per gateway run
    /// (`txns_rebuilt`) before the partition's first read, last stable offset, marker or
    /// transactional append.
    pub(crate) txns: Mutex<TxnIndex>,
    pub(crate) txns_rebuilt: AtomicBool,
    /// One rebuild at a time. Not `gate`: the partition's other idempotent appends go on
    /// while its log is read (its transactional writes and markers wait for the rebuild).
    pub(crate) txns_gate: Gate,
    /// The log start the index last forgot what lies before.
    pub(crate) txns_start: AtomicU64,
    /// Each producer's latest marker written here, by its hand-over stamp
    /// (`crate::append::Appends::stamp`): a transactional batch handed over before it was
    /// verified in the transaction the marker ended, and is refused should it come later.
    pub(crate) closed: Mutex<HashMap<i64, u64>>,
    /// The highest stamp of a marker forgotten from `closed` (it keeps a bounded number of
    /// producers): a transactional batch of a producer `closed` has no entry for, stamped
    /// before it, may have been handed over before its own forgotten marker, and is refused.
    pub(crate) closed_floor: AtomicU64,
    /// Where the transactional batch sent here and not yet taken into `txns` lands at the
    /// earliest. Iggy may hold it, and a read return it, before its reply comes back; until
    /// then it holds the last stable offset back, as `doubt` does once its reply is lost.
    pub(crate) txn_in_flight: Mutex<Option<u64>>,
    /// Transactional batches whose reply was lost and that were not found where they can
    /// have landed: Iggy may apply one yet. Each holds the last stable offset back until its
    /// producer's next marker here, which looks for it once more first.
    pub(crate) txn_unfound: Mutex<Vec<Doubt>>,
}

impl PartitionState {
    /// The last stable offset, from the transaction index, held back by a transactional
    /// batch in flight or in doubt here: Iggy may hold such a batch (and a read return it)
    /// before the index knows it.
    pub(crate) fn last_stable(&self, log_start: u64, high_watermark: u64) -> u64 {
        // In this order: a batch leaves the index's blind spot by being taken into the index
        // (or put in doubt) before it stops being in flight.
        let in_flight = *crate::sync::lock(&self.txn_in_flight);
        let in_doubt = crate::sync::lock(&self.doubt)
            .filter(|d| d.batch.transactional)
            .map(|d| d.from);
        let unfound = crate::sync::lock(&self.txn_unfound)
            .iter()
            .map(|d| d.from)
            .min();
        let stable = self.txn_index(log_start).last_stable(high_watermark);
        // Nothing before the log start is read: a transaction open there holds nothing back.
        [in_flight, in_doubt, unfound]
            .into_iter()
            .flatten()
            .fold(stable, u64::min)
            .max(log_start)
            .min(high_watermark.max(log_start))
    }

    /// The transaction index, having forgotten what lies before `log_start` (retention or
    /// DeleteRecords) when that moved since it last did.
    pub(crate) fn txn_index(&self, log_start: u64) -> std::sync::MutexGuard<'_, TxnIndex> {
        let mut index = crate::sync::lock(&self.txns);
        if self.txns_start.fetch_max(log_start, Ordering::Relaxed) < log_start {
            index.truncate_before(log_start);
        }
        index
    }
}

impl PartitionState {
    pub(crate) fn saw_end(&self, end: u64) {
        self.seen_end.fetch_max(end, Ordering::Relaxed);
    }
}

/// An idempotent batch whose fate is unknown: sent, and the connection lost before Iggy's
/// reply. Iggy does not deduplicate, so without finding out, the producer's retry would be
/// appended a second time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Doubt {
    pub(crate) batch: ProducerBatch,
    /// Where it landed at the earliest.
    pub(crate) from: u64,
}

/// A poll sent for the offsets right after what a read returned, while the reader (a
/// consumer, one fetch at a time) is still busy with that: its next reads find the messages
/// waiting or on their way instead of paying a round trip to Iggy each.
pub(crate) struct ReadAhead {
    /// The offsets asked for: `from` and the `count` after it.
    pub(crate) from: u64,
    pub(crate) count: u32,
    /// What the reader's pace asked for: more than `count` when the poll was cut short
    /// where another already ahead begins, or sent smaller for the budget.
    pub(crate) paced: u32,
    pub(crate) sent: Instant,
    pub(crate) reply: AheadReply,
    pub(crate) held: Held,
}

/// A share of the bytes polls sent ahead may hold at once, given back when the poll sent
/// ahead is dropped (taken, stale, evicted, or its partition forgotten).
pub(crate) struct Held {
    pub(crate) bytes: usize,
    pub(crate) total: Arc<AtomicUsize>,
}

impl Held {
    /// Holds `bytes` from now on instead (the reply's own length once it came, in place of
    /// what the poll was expected to bring): the total follows, whether that is more or
    /// less, so that it still drops by exactly what is held when this is dropped.
    pub(crate) fn resize(&mut self, bytes: usize) {
        if bytes > self.bytes {
            self.total.fetch_add(bytes - self.bytes, Ordering::Relaxed);
        } else {
            self.total.fetch_sub(self.bytes - bytes, Ordering::Relaxed);
        }
        self.bytes = bytes;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.total.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

pub(crate) enum AheadReply {
    /// On the partition's `lane`.
    Sent { lane: usize, call: PendingCall },
    /// Answered, and part of it read already.
    Kept(Bytes),
}

/// What the polls sent ahead of one reader ask for, learnt from how soon it read through
/// the replies before; a reader is known by where its next read starts.
#[derive(Clone, Copy)]
pub(crate) struct Pace {
    /// Where the reader's next read starts.
    pub(crate) next: u64,
    /// How many messages the next poll sent ahead of it asks for.
    pub(crate) count: u32,
    /// Whether a poll sent ahead covered `next` after its last read: a read there that
    /// finds none usable means the reader did not get to it in time.
    pub(crate) ahead: bool,
    /// When the read that set it started.
    pub(crate) at: Instant,
}

/// How long a poll sent ahead stays usable: a reader that stopped (a consumer closed, a
/// partition moved to another member) must not keep its polls' replies in memory.
pub(crate) const READ_AHEAD_FOR: Duration = Duration::from_secs(1);

impl ReadAhead {
    pub(crate) fn covers(&self, offset: u64) -> bool {
        offset >= self.from && offset - self.from < u64::from(self.count)
    }

    /// Still usable at `now` (see [`READ_AHEAD_FOR`]).
    pub(crate) fn fresh(&self, now: Instant) -> bool {
        now.duration_since(self.sent) < READ_AHEAD_FOR
    }
}
