//! Kafka's idempotent-producer rules for one partition, shared by the backends.
//!
//! Per producer: the current epoch, the last sequence and the last five batches (first and
//! last sequence, first offset). A retry of one of those five is answered with its first
//! append; a batch that does not follow the last sequence is out of order; an older epoch is
//! fenced; a newer epoch starts at sequence 0; a producer new to the partition may start
//! anywhere (its earlier batches may have been dropped by retention).

use std::collections::{HashMap, VecDeque};

use crate::backend::{ActiveProducer, BackendError, ProducerBatch};

/// What a partition remembers of an idempotent producer (Kafka's producer state).
#[derive(Debug)]
struct ProducerState {
    epoch: i16,
    last_sequence: i32,
    /// The last batches appended, oldest first: a retry of one is not appended again.
    recent: VecDeque<RecentBatch>,
}

/// A batch remembered for answering its retries.
#[derive(Debug, Clone, Copy)]
pub struct RecentBatch {
    first: i32,
    last: i32,
    /// The batch's first offset.
    pub base: u64,
    /// Its log append time, when the topic uses one.
    pub log_append_time_ms: Option<i64>,
}

/// Batches remembered per producer, as in Kafka.
const RECENT_BATCHES: usize = 5;
/// Producers remembered per partition; beyond it the one idle longest is forgotten.
const MAX_PRODUCERS: usize = 10_000;

/// The idempotent producers of one partition.
#[derive(Debug, Default)]
pub struct Producers {
    map: HashMap<i64, ProducerState>,
}

impl Producers {
    /// The producers remembered, by id.
    #[must_use]
    pub fn active(&self) -> Vec<ActiveProducer> {
        let mut all: Vec<ActiveProducer> = self
            .map
            .iter()
            .map(|(&producer_id, s)| ActiveProducer {
                producer_id,
                epoch: s.epoch,
                last_sequence: s.last_sequence,
                current_txn_start_offset: None,
            })
            .collect();
        all.sort_by_key(|p| p.producer_id);
        all
    }

    /// Kafka's sequence rules for an idempotent batch: `Some` for a retry of a recent
    /// batch (with its first append), an error for a stale epoch or a gap.
    ///
    /// # Errors
    /// [`BackendError::ProducerFenced`] or [`BackendError::OutOfOrderSequence`].
    pub fn check(&self, pb: &ProducerBatch) -> Result<Option<RecentBatch>, BackendError> {
        let Some(state) = self.map.get(&pb.producer_id) else {
            // A producer new to this partition may start anywhere (its earlier batches may
            // have been dropped by retention).
            return Ok(None);
        };
        let (first, last) = (pb.first_sequence, pb.last_sequence());
        if pb.epoch < state.epoch {
            return Err(BackendError::ProducerFenced {
                producer_id: pb.producer_id,
                got: pb.epoch,
                current: state.epoch,
            });
        }
        if pb.epoch > state.epoch {
            // A bumped epoch starts its sequences again.
            return if first == 0 {
                Ok(None)
            } else {
                Err(BackendError::OutOfOrderSequence {
                    producer_id: pb.producer_id,
                    got: first,
                    last: -1,
                })
            };
        }
        if let Some(b) = state
            .recent
            .iter()
            .find(|b| b.first == first && b.last == last)
        {
            return Ok(Some(*b));
        }
        let expected = ProducerBatch::next_sequence(state.last_sequence);
        if first != expected {
            return Err(BackendError::OutOfOrderSequence {
                producer_id: pb.producer_id,
                got: first,
                last: state.last_sequence,
            });
        }
        Ok(None)
    }

    /// A transaction marker of `producer_id` at `epoch` was written: a newer epoch fences
    /// the producer's older ones (a zombie's late write is refused), and starts its
    /// sequences again.
    pub fn fence(&mut self, producer_id: i64, epoch: i16) {
        if let Some(state) = self.map.get_mut(&producer_id) {
            if epoch > state.epoch {
                state.epoch = epoch;
                state.last_sequence = -1;
                state.recent.clear();
            }
        }
    }

    /// Remembers a batch appended at `base`.
    pub fn record(&mut self, pb: &ProducerBatch, base: u64, log_append_time_ms: Option<i64>) {
        if !self.map.contains_key(&pb.producer_id) && self.map.len() >= MAX_PRODUCERS {
            let idle = self
                .map
                .iter()
                .min_by_key(|(_, s)| s.recent.back().map_or(0, |b| b.base))
                .map(|(id, _)| *id);
            if let Some(id) = idle {
                self.map.remove(&id);
            }
        }
        let state = self.map.entry(pb.producer_id).or_insert(ProducerState {
            epoch: pb.epoch,
            last_sequence: -1,
            recent: VecDeque::new(),
        });
        if pb.epoch != state.epoch {
            state.epoch = pb.epoch;
            state.recent.clear();
        }
        state.last_sequence = pb.last_sequence();
        if state.recent.len() == RECENT_BATCHES {
            state.recent.pop_front();
        }
        state.recent.push_back(RecentBatch {
            first: pb.first_sequence,
            last: pb.last_sequence(),
            base,
            log_append_time_ms,
        });
    }
}
