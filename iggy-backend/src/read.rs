//! Reads: polls of a partition, sized by a running estimate of the size of its stored
//! messages, and polls sent ahead of sequential readers.
//!
//! A consumer fetches, works, and fetches again; without help each fetch pays a round trip
//! to Iggy. After a read, polls for the offsets that follow are sent at once, up to
//! [`READ_AHEAD_DEPTH`] polls ahead, so that the consumer's next reads find the messages
//! waiting or on their way. A poll sent ahead is large while its reader reads the replies
//! through quickly, and as large as its reads while it does not ([`paced`]). What polls
//! sent ahead may hold is bounded, all partitions together ([`READ_AHEAD_BYTES`]), and a
//! poll nobody took within a second is dropped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use iggy_kafka_core::backend::{BackendError, PartitionOffsets, ReadResult};
use iggy_kafka_core::message::{message_size, Messages};
use iggy_kafka_iggy_client::protocol::codes::POLL_MESSAGES_CODE;
use iggy_kafka_iggy_client::protocol::requests::messages::PollMessagesRequest;
use iggy_kafka_iggy_client::protocol::{
    WireConsumer, WireEncode, WireIdentifier, WirePollingStrategy,
};
use iggy_kafka_iggy_client::{Answered, Failure};

use crate::calls::timed_reply;
use crate::catalog::Catalog;
use crate::partition::{AheadReply, Held, Pace, PartitionState, ReadAhead, READ_AHEAD_FOR};
use crate::placement::Kind;
use crate::sync::lock;
use crate::wire;

/// Polls kept sent ahead per partition: two per reader (so that Iggy always has the next
/// one to answer), for two readers at once (consumers of two groups).
const READ_AHEADS: usize = 4;
/// How far ahead of a reader its polls go, in polls.
const READ_AHEAD_DEPTH: u64 = 2;
/// What polls sent ahead may hold at once, all partitions together: a poll counts what it
/// is expected to bring (by the running message size) until a read takes its reply, then
/// the reply's length. Readers past it wait for Iggy as without reading ahead.
const READ_AHEAD_BYTES: usize = 64 << 20;

/// What a poll sent ahead asks for (estimated from the message size) while its reader keeps
/// up, whatever the read it follows asked for: Iggy takes about as long to answer a small
/// poll as one this large (`docs/BENCHMARKS.md`), so a consumer that fetches a little at a
/// time would wait on a poll per fetch. The reads that follow take the reply in turn. A
/// reader too slow to read such a reply through while it is usable gets polls of its
/// reads' size instead ([`paced`]).
const READ_AHEAD_POLL_BYTES: usize = 512 << 10;

/// Readers per partition whose pace ([`Pace`]) is remembered.
const READ_PACES: usize = READ_AHEADS;
/// How long a reader's pace is remembered: longer than a reply stays usable, so that a
/// reader whose replies went stale before it got to them is known by it, and no longer, so
/// that a reader resuming where another stopped a while ago is not taken for it.
const PACE_FOR: Duration = READ_AHEAD_FOR.saturating_mul(2);

/// What a read's own poll of a partition asks for at most while nothing is known of the
/// partition's messages (a consumer that fetches from its committed offset without asking
/// where the partition starts or ends): the estimate of all partitions then comes from other
/// topics, perhaps of far smaller messages, and a 1 MiB read at its 256 B would ask for
/// thousands of messages, gigabytes if they are 1 MB, all of which the partition's lane
/// reads through. Sixty-four messages of up to 4 MB fit in a lane's reply (256 MiB), and
/// the first read's polls sent ahead, already sized by what it found, keep a consumer that
/// keeps up in large polls from then on: only its first fetch is smaller.
const FIRST_POLL_COUNT: u32 = 64;

/// The bytes a poll of a scan asks for (estimated from the message size; see
/// [`Reads::scan_count`]): while looking for a batch in doubt (`crate::append`) and for the
/// largest timestamp (`crate::search`).
pub(crate) const SCAN_POLL_BYTES: usize = 4 << 20;

/// A read's messages, Iggy's current offset when it answered, and the bytes they count.
type Read = (Messages, u64, usize);

pub(crate) struct Reads {
    /// A running estimate of a stored message's size, all partitions together: what polls
    /// of a partition not read yet start from (each partition's reads then keep their own,
    /// [`PartitionState::read_size`]).
    message_size: AtomicUsize,
    /// Bytes that polls sent ahead hold or will hold, all partitions together (see
    /// [`READ_AHEAD_BYTES`]).
    read_ahead_bytes: Arc<AtomicUsize>,
    /// When polls sent ahead were last swept for staleness across all partitions.
    read_ahead_swept: Mutex<Option<Instant>>,
}

impl Reads {
    pub(crate) fn new() -> Self {
        Self {
            message_size: AtomicUsize::new(256),
            read_ahead_bytes: Arc::default(),
            read_ahead_swept: Mutex::new(None),
        }
    }

    /// Bytes polls sent ahead hold now, all partitions together (for tests).
    #[cfg(test)]
    pub(crate) fn read_ahead_held(&self) -> usize {
        self.read_ahead_bytes.load(Ordering::Relaxed)
    }

    /// Counts `bytes` more as held by polls sent ahead, as if other readers held them (for
    /// tests of a budget nearly spent).
    #[cfg(test)]
    pub(crate) fn hold_read_ahead(&self, bytes: usize) {
        self.read_ahead_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The budget polls sent ahead share (for tests).
    #[cfg(test)]
    pub(crate) const BUDGET: usize = READ_AHEAD_BYTES;

    /// The running estimate of a message's size in the partition (from what reads of it
    /// found), or, before any read of it returned messages, the larger of the one of all
    /// partitions and Iggy's figure for the partition (0 when the gateway has none).
    fn estimate(&self, state: &PartitionState) -> usize {
        match state.read_size.load(Ordering::Relaxed) {
            0 => self
                .message_size
                .load(Ordering::Relaxed)
                .max(state.message_size.load(Ordering::Relaxed)),
            size => size,
        }
    }

    /// How many messages a read's own poll of the partition asks for, `count` being what
    /// its budget holds at the partition's estimate: at most [`FIRST_POLL_COUNT`] while
    /// nothing is known of the partition's messages themselves, neither from its reads nor
    /// from Iggy.
    fn read_count(state: &PartitionState, count: u32) -> u32 {
        let unknown = state.read_size.load(Ordering::Relaxed) == 0
            && state.message_size.load(Ordering::Relaxed) == 0;
        if unknown {
            count.min(FIRST_POLL_COUNT)
        } else {
            count
        }
    }

    /// How many messages a poll of the partition that is not a read's asks for to get about
    /// `bytes`: sized by the larger of the running estimate (from what reads found) and what
    /// Iggy last reported of the partition. Iggy's figure counts its own framing too, so a
    /// read, which must fill a budget in Kafka's bytes, goes by the running estimate alone
    /// once the partition's reads taught it (a reply too large for it is asked again).
    pub(crate) fn scan_count(&self, state: &PartitionState, bytes: usize) -> u32 {
        let size = self
            .estimate(state)
            .max(state.message_size.load(Ordering::Relaxed))
            .max(32);
        u32::try_from((bytes / size).clamp(1, 10_000)).unwrap_or(1)
    }

    /// Learns that a poll of `count` messages of the partition brought a reply of `size`
    /// bytes, too large for a lane: its messages are at least `size / count` large on
    /// average.
    fn too_large(&self, state: &PartitionState, size: usize, count: u32) {
        let Some(average) = size.checked_div(count as usize) else {
            return;
        };
        state.read_size.fetch_max(average, Ordering::Relaxed);
        self.message_size.fetch_max(average, Ordering::Relaxed);
    }

    /// Polls up to `count` messages of a partition from where `strategy` says.
    pub(crate) async fn poll(
        &self,
        catalog: &Catalog,
        topic: &str,
        partition: u32,
        strategy: WirePollingStrategy,
        count: u32,
    ) -> Result<Bytes, BackendError> {
        self.poll_at(catalog, (topic, partition), None, strategy, count)
            .await
    }

    /// [`Self::poll`] on the lane that gave the answer `on`, in the session that gave it
    /// (so on the node that gave it): what that answer proves of the node holds for the
    /// poll. Fails retriably should the lane have logged in again since.
    pub(crate) async fn poll_on(
        &self,
        catalog: &Catalog,
        at: (&str, u32),
        on: Answered,
        strategy: WirePollingStrategy,
        count: u32,
    ) -> Result<Bytes, BackendError> {
        self.poll_at(catalog, at, Some(on), strategy, count).await
    }

    async fn poll_at(
        &self,
        catalog: &Catalog,
        at: (&str, u32),
        on: Option<Answered>,
        strategy: WirePollingStrategy,
        count: u32,
    ) -> Result<Bytes, BackendError> {
        let (topic, partition) = at;
        let calls = catalog.calls();
        let state = catalog.partition(topic, partition);
        let lane = match on {
            Some(a) => a.lane,
            None => state.route.read_lane(calls, at),
        };
        let elsewhere = |now: Option<u64>| {
            on.filter(|a| now != Some(a.generation)).map(|_| {
                BackendError::Unavailable(format!(
                    "{topic}-{partition}: the Iggy session that fenced the partition is gone \
                     before the partition was read there"
                ))
            })
        };
        if let Some(e) = elsewhere(calls.lanes().lane(lane).generation()) {
            return Err(e);
        }
        let at_iggy = catalog.locate(topic)?;
        let request = poll_request(at_iggy.clone(), partition, strategy.clone(), count);
        let (mut result, service, answered) = calls
            .lanes()
            .call(lane, POLL_MESSAGES_CODE, request)
            .timed_on()
            .await;
        if let Some(e) = elsewhere(Some(answered.generation)) {
            return Err(e);
        }
        state.route.answered(calls, at, lane, Kind::Poll, service);
        if let (Err(Failure::TooLarge(size)), true) = (&result, count > 1) {
            // Whatever the reply held, its messages are at least this large on average.
            self.too_large(&state, *size, count);
            // More, or larger, messages than the running size estimate foresaw: one
            // message fits whatever its size (Iggy's largest is well below the lanes'
            // limit), and teaches the estimate for the next reads.
            tracing::debug!(%topic, partition, count, size, "poll reply too large: polling one");
            let request = poll_request(at_iggy, partition, strategy, 1);
            let answered;
            (result, _, answered) = calls
                .lanes()
                .call(lane, POLL_MESSAGES_CODE, request)
                .timed_on()
                .await;
            if let Some(e) = elsewhere(Some(answered.generation)) {
                return Err(e);
            }
        }
        if let Err(Failure::Status(status)) = &result {
            tracing::debug!(
                command = POLL_MESSAGES_CODE,
                status,
                "iggy refused a request"
            );
        }
        match result {
            Ok(r) => Ok(r),
            Err(f) => Err(catalog.refine(f, topic, partition).await),
        }
    }

    /// Reads a partition from `offset` on, up to `max_bytes` (the first message whatever
    /// its size) and `max_messages`.
    pub(crate) async fn read(
        &self,
        catalog: &Catalog,
        name: &str,
        partition: u32,
        offset: u64,
        max_bytes: usize,
        max_messages: usize,
    ) -> Result<ReadResult, BackendError> {
        let state = catalog.partition(name, partition);
        let at = (name, partition);
        // As many as the budget holds at `size`, which sits a little above the true size:
        // a read of a poll's own size takes its reply whole (one more each would leave one
        // over in every reply).
        let count = |size: usize| {
            let n = max_bytes / size.max(32);
            u32::try_from(n.clamp(1, max_messages.clamp(1, 10_000))).unwrap_or(u32::MAX)
        };
        let started = catalog.calls().clock().now();
        // A pace this old is forgotten: it may be another reader's, a consumer that took the
        // partition over from a member that stopped, resuming where that one left off. But
        // it may be the reader's own after a pause, so it gets its large polls one deep
        // (`resumed`): should it be as slow as before, one is sent in vain, not two.
        let pace = lock(&state.read_paces)
            .iter()
            .find(|p| p.next == offset)
            .copied();
        let resumed = pace.is_some_and(|p| started.saturating_duration_since(p.at) >= PACE_FOR);
        let pace = pace.filter(|_| !resumed);
        let mut seen = Seen::default();
        let (mut messages, mut current, mut bytes) = match self
            .read_ahead(
                catalog,
                &state,
                at,
                (offset, max_bytes, max_messages, true),
                &mut seen,
            )
            .await
        {
            Some(read) => read,
            None => {
                let body = self
                    .poll(
                        catalog,
                        name,
                        partition,
                        WirePollingStrategy::offset(offset),
                        Self::read_count(&state, count(self.estimate(&state))),
                    )
                    .await?;
                wire::polled(&body, offset, max_bytes, max_messages, true)?
            }
        };
        // Whether this read's own offset was covered, before reads into later replies.
        let covered = seen.covered;
        // What a read left of a reply sent ahead can be a message or two: rather than
        // answer with so little (and have the consumer ask again at once), the read goes on
        // into the poll sent ahead after it.
        while bytes < max_bytes / 2 && messages.len() < max_messages {
            let Some(next) = messages.last_offset().and_then(|last| last.checked_add(1)) else {
                break;
            };
            if next > current {
                break;
            }
            let more = self
                .read_ahead(
                    catalog,
                    &state,
                    at,
                    (
                        next,
                        max_bytes - bytes,
                        max_messages - messages.len(),
                        false,
                    ),
                    &mut seen,
                )
                .await;
            let Some((more, more_current, more_bytes)) = more else {
                break;
            };
            messages.append(more);
            current = current.max(more_current);
            bytes += more_bytes;
        }
        if let Some(average) = bytes.checked_div(messages.len()) {
            learn(&state.read_size, average);
            learn(&self.message_size, average);
        }
        if let Some((next, last)) = messages
            .last()
            .and_then(|(o, m)| Some((o.checked_add(1)?, message_size(&m))))
        {
            // Sized by what is known of the size of the messages that follow: the
            // partition's estimate, which this read has just taught, or the last message
            // read when it is more than twice that, for a partition whose messages grow (the
            // estimate comes down slowly from large ones, but a read of thousands of small
            // ones and one large would make it ask for thousands of large ones). Only then:
            // where sizes merely vary, the last message is larger than average every other
            // read, and a poll sized by it would be smaller than the reads, which would take
            // its reply and more. The floor goes by Iggy's figure for the partition too,
            // which counts its framing (a read's worth goes by the reads' own measure, so
            // that a read of a poll's size takes its reply whole). So what a poll sent ahead
            // asks for is at most about twice the larger of the read's `max_bytes` and
            // `READ_AHEAD_POLL_BYTES`, unless the messages after the read are larger than
            // all of these say.
            let estimate = self.estimate(&state);
            let own = if last > estimate.saturating_mul(2) {
                last
            } else {
                estimate
            };
            let size = own.max(state.message_size.load(Ordering::Relaxed));
            let read = count(own);
            let floor = read.max(ahead_count(size, max_messages));
            let count = paced((read, floor), seen.finished, covered, pace.as_ref());
            // A reader paced below the floor takes about as long to read a reply through
            // as its fetches are apart: a second poll would be two fetches old, and
            // perhaps stale, by the time it got there. One resuming after a pause is two
            // deep from its next read on, if it keeps up.
            let depth = if count < floor || resumed {
                1
            } else {
                READ_AHEAD_DEPTH
            };
            let ahead = self.send_ahead(
                catalog,
                &state,
                at,
                (next, current),
                (count, read, size),
                depth,
            )?;
            let mut paces = lock(&state.read_paces);
            paces.retain(|p| p.next != offset && p.next != next);
            if paces.len() >= READ_PACES {
                paces.remove(0);
            }
            paces.push(Pace {
                next,
                count,
                ahead,
                at: started,
            });
        }
        let Some(first) = messages.first_offset() else {
            let mut offsets = catalog.offsets(name, partition).await?;
            // In a cluster, the node that describes the topic may not have applied the
            // partition's latest appends yet: it holds at least what this gateway saw.
            offsets.high_watermark = offsets
                .high_watermark
                .max(state.seen_end.load(Ordering::Relaxed));
            if offset > offsets.high_watermark || offset < offsets.log_start {
                return Err(BackendError::OffsetOutOfRange {
                    offset,
                    log_start: offsets.log_start,
                    high_watermark: offsets.high_watermark,
                });
            }
            return Ok(ReadResult {
                topic: name.to_owned(),
                messages,
                offsets,
                aborted: Vec::new(),
            });
        };
        let high_watermark = current + 1;
        state.saw_end(high_watermark);
        if first > offset {
            // Dense offsets: what was asked for is gone (retention).
            return Err(BackendError::OffsetOutOfRange {
                offset,
                log_start: first,
                high_watermark,
            });
        }
        let log_start = catalog
            .partition(name, partition)
            .log_start
            .load(Ordering::Relaxed);
        Ok(ReadResult {
            topic: name.to_owned(),
            messages,
            offsets: PartitionOffsets {
                log_start: log_start.min(offset),
                high_watermark,
                size_bytes: None,
                last_stable: None,
            },
            aborted: Vec::new(),
        })
    }

    /// A read served by a poll sent ahead that covers `offset`, if one holds messages from
    /// there on. What the read leaves of that poll's reply is kept for the next read. A poll
    /// sent ahead that failed, or that holds nothing from `offset` on, is not this read's
    /// answer: the read asks Iggy itself. Without `at_least_one` (a read going on from one
    /// reply into the next), a first message past `max_bytes` is not taken: it and the rest
    /// stay for the next read. What it finds of the reader's pace goes into `seen`.
    async fn read_ahead(
        &self,
        catalog: &Catalog,
        state: &PartitionState,
        at: (&str, u32),
        (offset, max_bytes, max_messages, at_least_one): (u64, usize, usize, bool),
        seen: &mut Seen,
    ) -> Option<Read> {
        let now = catalog.calls().clock().now();
        self.sweep_read_aheads(catalog, now);
        let ahead = {
            let mut aheads = lock(&state.read_ahead);
            aheads.retain(|a| a.fresh(now));
            let i = aheads.iter().position(|a| a.covers(offset))?;
            seen.covered = true;
            aheads.remove(i)
        };
        let ReadAhead {
            from,
            count,
            paced,
            sent,
            reply: pending,
            mut held,
        } = ahead;
        let body = match pending {
            AheadReply::Sent { lane, call } => {
                let (result, service) = timed_reply(POLL_MESSAGES_CODE, call).await;
                if let Err(Failure::TooLarge(size)) = &result {
                    // As for a read's own poll: its messages are at least this large.
                    self.too_large(state, *size, count);
                }
                state
                    .route
                    .answered(catalog.calls(), at, lane, Kind::Poll, service);
                let body = result.ok()?;
                // What the reply holds, not what the poll was expected to bring: the
                // budget counts the memory kept.
                held.resize(body.len());
                body
            }
            AheadReply::Kept(body) => body,
        };
        let read = wire::polled(&body, offset, max_bytes, max_messages, at_least_one).ok()?;
        let rest = ReadAhead {
            from,
            count,
            paced,
            sent,
            reply: AheadReply::Kept(body),
            held,
        };
        let Some(last) = read.0.last_offset() else {
            // Nothing within the budget: the reply stays for the next read.
            if !at_least_one && read.1 >= offset {
                lock(&state.read_ahead).push(rest);
            }
            return None;
        };
        // Kept only while the reply can hold more: it holds nothing past Iggy's current
        // offset of the time, so a reply that ended there leaves the next read to poll.
        if last < read.1 && rest.covers(last + 1) {
            lock(&state.read_ahead).push(rest);
        } else {
            let now = catalog.calls().clock().now();
            // What the pace asked for: a poll cut short where another begins (or sent
            // smaller for the budget) asks for less, and says nothing of the pace by its
            // count, nor by its time: the pace's poll, read at the same speed, would have
            // been read through that much later.
            let after = now.saturating_duration_since(sent);
            seen.finished = Some(Finished {
                count: paced,
                after: after.mul_f64(f64::from(paced) / f64::from(count.max(1))),
            });
        }
        Some(read)
    }

    /// Drops stale polls sent ahead in every partition, at most once per
    /// [`READ_AHEAD_FOR`]: a reader that stopped (a consumer closed, a partition moved to
    /// another member) must not keep its polls' replies in memory.
    fn sweep_read_aheads(&self, catalog: &Catalog, now: Instant) {
        {
            let mut swept = lock(&self.read_ahead_swept);
            if swept.is_some_and(|t| now.duration_since(t) < READ_AHEAD_FOR) {
                return;
            }
            *swept = Some(now);
        }
        for state in catalog.all_partitions() {
            lock(&state.read_ahead).retain(|a| a.fresh(now));
        }
    }

    /// Sends polls ahead of a reader that will read from `next` on, up to `depth` polls
    /// (at most [`READ_AHEAD_DEPTH`]) of `count` counting those already ahead, while Iggy has
    /// messages there (its current offset is `current`). `count` is `(wanted, least, size)`:
    /// a poll of `wanted` that the budget ([`READ_AHEAD_BYTES`]) cannot hold, counting each
    /// message at `size`, is sent as one of `least` (one read's worth) if that fits. A poll
    /// ends where one already ahead begins. Says whether a poll sent ahead covers `next`.
    fn send_ahead(
        &self,
        catalog: &Catalog,
        state: &PartitionState,
        (topic, partition): (&str, u32),
        (next, current): (u64, u64),
        (paced, least, size): (u32, u32, usize),
        depth: u64,
    ) -> Result<bool, BackendError> {
        let calls = catalog.calls();
        let now = calls.clock().now();
        let mut aheads = lock(&state.read_ahead);
        // Again, since the read may have waited for Iggy after it dropped the stale ones: a
        // poll gone stale meanwhile would otherwise stand for its offsets, and none be sent
        // in its place (or cut short the one that is).
        aheads.retain(|a| a.fresh(now));
        let mut from = next;
        for _ in 0..depth {
            if from > current {
                break;
            }
            if let Some(a) = aheads.iter().find(|a| a.covers(from)) {
                from = a.from.saturating_add(u64::from(a.count));
                continue;
            }
            while aheads.len() >= READ_AHEADS {
                aheads.remove(0);
            }
            // Up to the next poll already ahead (none covers `from`), whose reply holds
            // what lies after.
            let room = aheads
                .iter()
                .filter(|a| a.from > from)
                .map(|a| a.from - from)
                .min()
                .map_or(u32::MAX, |r| u32::try_from(r).unwrap_or(u32::MAX));
            let (wanted, least) = (paced.min(room), least.min(room));
            let total = &self.read_ahead_bytes;
            let reserve = |count: u32| {
                let bytes = usize::try_from(count)
                    .unwrap_or(usize::MAX)
                    .saturating_mul(size);
                total
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                        let t = t.saturating_add(bytes);
                        (t <= READ_AHEAD_BYTES).then_some(t)
                    })
                    .ok()
                    .map(|_| (count, bytes))
            };
            let Some((count, bytes)) = reserve(wanted).or_else(|| reserve(least.min(wanted)))
            else {
                break;
            };
            let held = Held {
                bytes,
                total: Arc::clone(total),
            };
            let lane = state.route.read_lane(calls, (topic, partition));
            let call = calls.lanes().call(
                lane,
                POLL_MESSAGES_CODE,
                poll_request(
                    catalog.locate(topic)?,
                    partition,
                    WirePollingStrategy::offset(from),
                    count,
                ),
            );
            aheads.push(ReadAhead {
                from,
                count,
                paced,
                sent: now,
                reply: AheadReply::Sent { lane, call },
                held,
            });
            from = from.saturating_add(u64::from(count));
        }
        Ok(aheads.iter().any(|a| a.covers(next)))
    }
}

/// What reads of replies sent ahead found of their reader's pace.
#[derive(Default)]
struct Seen {
    /// A usable poll sent ahead covered the offset read.
    covered: bool,
    /// The last reply sent ahead that the read took the last of.
    finished: Option<Finished>,
}

/// A reply sent ahead that a read took the last of.
#[derive(Clone, Copy)]
struct Finished {
    /// What the reader's pace asked for of its poll.
    count: u32,
    /// How long after the poll was sent, scaled to `count` when the poll asked for fewer.
    after: Duration,
}

/// How many messages the next poll sent ahead of a reader asks for, from `read` (what its
/// own read asks for) up to `floor` ([`READ_AHEAD_POLL_BYTES`]' worth): a reply must be
/// read through within [`READ_AHEAD_FOR`] of its poll's sending, or the rest of it is lost
/// and the reader pays a poll of its own. The poll sent now is read through about as long
/// after its sending as the reply the read `finished`, while the reader keeps its pace,
/// so that one tells: read through within a quarter of the time, the next may be
/// twice as large; within half, as large; later, it falls back to `read`. (From the
/// sending, as the reply's use counts: Iggy's time to answer counts against the reader.
/// When the reply arrived, reads do not see.) Without one, the last size stays, unless a
/// poll sent ahead covered this read's offset after the last read (`pace`, remembered for
/// [`PACE_FOR`]) and none usable does now (not `covered`): it went stale before the reader
/// got to it. A reader not seen before, or not within [`PACE_FOR`], gets `floor` at once,
/// so that one keeping up asks Iggy for large polls from its first poll sent ahead on.
fn paced(
    (read, floor): (u32, u32),
    finished: Option<Finished>,
    covered: bool,
    pace: Option<&Pace>,
) -> u32 {
    let count = match (finished, pace) {
        (Some(f), _) if f.after <= READ_AHEAD_FOR / 4 => f.count.saturating_mul(2),
        (Some(f), _) if f.after <= READ_AHEAD_FOR / 2 => f.count,
        (Some(_), _) => read,
        (None, Some(p)) if p.ahead && !covered => read,
        (None, Some(p)) => p.count,
        (None, None) => floor,
    };
    count.clamp(read, floor.max(read))
}

/// Teaches a running estimate of a message's size a read's `average`: up at once, down
/// slowly (and a byte above), since a poll sized by too small an estimate may not fit a
/// lane's reply limit, nor its read. In one step, so that reads at once do not undo
/// each other's.
fn learn(estimate: &AtomicUsize, average: usize) {
    let _ = estimate.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
        Some(if average > old {
            average
        } else {
            (old.saturating_mul(7) + average) / 8 + 1
        })
    });
}

/// How many messages of `size` bytes a poll sent ahead of a reader that keeps up asks for:
/// [`READ_AHEAD_POLL_BYTES`]' worth, within the reader's own limit on messages per read.
fn ahead_count(size: usize, max_messages: usize) -> u32 {
    let n = (READ_AHEAD_POLL_BYTES / size.max(32)).clamp(1, max_messages.clamp(1, 10_000));
    u32::try_from(n).unwrap_or(1)
}

/// A `PollMessages` of up to `count` messages.
fn poll_request(
    (stream, topic): (&WireIdentifier, WireIdentifier),
    partition: u32,
    strategy: WirePollingStrategy,
    count: u32,
) -> Bytes {
    PollMessagesRequest {
        consumer: WireConsumer::consumer(WireIdentifier::numeric(1)),
        stream_id: stream.clone(),
        topic_id: topic,
        partition_id: Some(partition),
        strategy,
        count,
        auto_commit: false,
    }
    .to_bytes()
}
