//! Group commit: plain appends to one partition that wait one behind another on a lane go
//! to Iggy as one `SendMessages`.
//!
//! Iggy's protocol is lockstep and a partition's appends keep to one lane, so without this
//! a partition takes one append per round trip to Iggy, and the appends of a producer that
//! pipelines (or of many producers) queue behind the one in flight. With it, when a lane is
//! about to send a plain append ([`crate::Lanes::append_after`]), the plain appends queued
//! right behind it for the same stream, topic and partition leave with it as one request:
//! one round trip, one segment write. The rules:
//!
//! - **Order.** Only calls at the front of the queue, one after another, are merged, and
//!   they keep queue order inside the request; merging stops at the first call that is not
//!   a plain append of the same partition, and at one that waits for a call on another lane
//!   ([`crate::Lanes::call_after`]) not done yet. Nothing overtakes a call queued before it.
//! - **Drop safety.** A call whose future was dropped before it was sent is never sent:
//!   it is taken out of the queue, not merged. The lane's driver, which owns the queue,
//!   merges and settles; no caller's future has to live for the others to get their
//!   answers, and a merged request whose futures were all dropped still settles.
//! - **Failure.** Every call of a merged request gets the request's outcome: a refusal
//!   ([`crate::Failure::Status`]) for all, a lost connection ([`crate::Failure::Lost`]:
//!   perhaps applied, not acknowledged) for all, "not admitted" for all. Each call's body
//!   is a whole request of its own, kept unchanged, so a call sent again elsewhere after
//!   "not admitted" carries exactly its own messages. The driver sends them again itself,
//!   in request order, where each call's [`crate::Reroute`] says (a call without one gets
//!   the refusal), so that no caller has to look for the others to be sent again, and a
//!   call dropped meanwhile is not sent again.
//! - **Replies.** Iggy confirms a `SendMessages` with the base offset its first message
//!   took; each merged call gets that reply with the base moved on by the messages of the
//!   calls before it. A reply without a confirmation reaches every call as it came.
//! - **Bounds.** A merged request holds at most [`MergeLimits::max_calls`] calls and
//!   [`MergeLimits::max_bytes`] bytes (a call larger than that alone is sent alone, as it
//!   would have been), its messages fit a `u32` count, and their timestamps fit the batch's
//!   32-bit microsecond deltas; so a merge never makes a request that Iggy would refuse
//!   where its parts would pass.
//!
//! The merged body is what Iggy's own encoder writes for all the calls' messages in one
//! batch: one batch header (origin: the earliest message's timestamp), each frame's offset
//! delta its index in the request and its timestamp delta taken from that origin, each
//! frame checksum and the batch checksum computed again.

use bytes::{BufMut, Bytes, BytesMut};
use iggy_binary_protocol::batch::{
    calculate_batch_checksum, BatchHeader, BatchMessageHeader, BATCH_HEADER_SIZE,
    BATCH_MESSAGE_HEADER_SIZE, MAX_TIMESTAMP_DELTA_MICROS,
};
use iggy_binary_protocol::consensus::HEADER_SIZE;
use iggy_binary_protocol::requests::messages::SendMessagesHeader;
use iggy_binary_protocol::responses::messages::SendMessagesResponse;
use iggy_binary_protocol::{WireDecode, WireEncode, WirePartitioning};
use twox_hash::XxHash3_64;

/// How large a merged request may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeLimits {
    /// Calls in one request at most; 1 sends every append alone.
    pub max_calls: usize,
    /// Bytes of one request's body at most.
    pub max_bytes: usize,
}

impl MergeLimits {
    /// The smallest [`Self::max_bytes`]: the body of the smallest request of one message
    /// (one byte, without headers, to a stream and topic of one-letter names); below it no
    /// request is small enough to merge.
    pub const MIN_BYTES: usize = 4 + 16 + BATCH_HEADER_SIZE + BATCH_MESSAGE_HEADER_SIZE + 1;
    /// The largest [`Self::max_bytes`]: Iggy's message bus takes frames of at most 64 MiB
    /// (`message_bus.max_message_size`, its default and its wire-level ceiling), its
    /// request header included, and refuses a larger one.
    pub const MAX_BYTES: usize = (64 << 20) - HEADER_SIZE;

    /// Every append alone.
    pub const OFF: Self = Self {
        max_calls: 1,
        max_bytes: 0,
    };

    pub(crate) fn enabled(&self) -> bool {
        self.max_calls > 1
    }
}

impl Default for MergeLimits {
    /// Up to 128 appends and 1 MiB (Kafka's default `max.message.bytes`: no stored batch
    /// larger than one Kafka batch could already make).
    fn default() -> Self {
        Self {
            max_calls: 128,
            max_bytes: 1 << 20,
        }
    }
}

/// What a merge needs to know of a plain append's body, read once when it is queued.
#[derive(Debug, Clone)]
pub(crate) struct Append {
    /// The body's bytes that name the stream, topic and partition (`4..key_end`).
    key_end: usize,
    /// Where the batch header starts.
    batch_at: usize,
    count: u32,
    /// The earliest and the latest message timestamp (µs).
    origin: u64,
    latest: u64,
}

impl Append {
    /// Reads a `SendMessages` body to one partition; `None` if it is not one whole and
    /// well-formed (it is then sent alone, as given).
    pub(crate) fn read(body: &[u8]) -> Option<Self> {
        let meta = usize::try_from(u32::from_le_bytes(body.get(..4)?.try_into().ok()?)).ok()?;
        let batch_at = meta.checked_add(4)?;
        let (header, consumed) = SendMessagesHeader::decode(body.get(4..batch_at)?).ok()?;
        if consumed != meta || !matches!(header.partitioning, WirePartitioning::PartitionId(_)) {
            return None;
        }
        let batch = body.get(batch_at..)?;
        let bh = BatchHeader::decode(batch).ok()?;
        if bh.message_count == 0
            || bh.message_count != header.messages_count
            || usize::try_from(bh.batch_length).ok()? != batch.len()
        {
            return None;
        }
        let mut at = BATCH_HEADER_SIZE;
        let (mut frames, mut latest) = (0u32, bh.origin_timestamp);
        while at < batch.len() {
            let frame = BatchMessageHeader::decode(&batch[at..]).ok()?;
            latest = latest.max(
                bh.origin_timestamp
                    .checked_add(u64::from(frame.timestamp_delta))?,
            );
            at = at.checked_add(frame.total_size())?;
            frames = frames.checked_add(1)?;
        }
        if at != batch.len() || frames != bh.message_count {
            return None;
        }
        Some(Self {
            key_end: batch_at - 4,
            batch_at,
            count: bh.message_count,
            origin: bh.origin_timestamp,
            latest,
        })
    }

    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    fn blob_len(&self, body: &[u8]) -> usize {
        body.len() - self.batch_at - BATCH_HEADER_SIZE
    }
}

/// Calls being gathered into one request, the first one given.
pub(crate) struct Group {
    key: Bytes,
    calls: usize,
    count: u32,
    bytes: usize,
    origin: u64,
    latest: u64,
}

impl Group {
    pub(crate) fn new(body: &Bytes, a: &Append) -> Self {
        Self {
            key: body.slice(4..a.key_end),
            calls: 1,
            count: a.count,
            bytes: body.len(),
            origin: a.origin,
            latest: a.latest,
        }
    }

    /// Takes the next call in if the request stays within `limits` and Iggy's format.
    pub(crate) fn admit(&mut self, body: &Bytes, a: &Append, limits: &MergeLimits) -> bool {
        let Some(count) = self.count.checked_add(a.count) else {
            return false;
        };
        let bytes = self.bytes + a.blob_len(body);
        let (origin, latest) = (self.origin.min(a.origin), self.latest.max(a.latest));
        if self.calls >= limits.max_calls
            || bytes > limits.max_bytes
            || latest - origin > MAX_TIMESTAMP_DELTA_MICROS
            || body.get(4..a.key_end) != Some(&self.key[..])
        {
            return false;
        }
        self.calls += 1;
        self.count = count;
        self.bytes = bytes;
        (self.origin, self.latest) = (origin, latest);
        true
    }
}

/// One `SendMessages` body holding the messages of `parts`, in order (all read by
/// [`Append::read`], to the same partition, and admitted by a [`Group`]).
pub(crate) fn merge(parts: &[(&Bytes, &Append)]) -> Bytes {
    let (first, fa) = parts[0];
    let origin = parts.iter().map(|(_, a)| a.origin).min().unwrap_or(0);
    let count: u32 = parts.iter().map(|(_, a)| a.count).sum();
    let blob: usize = parts.iter().map(|(b, a)| a.blob_len(b)).sum();
    let mut buf = BytesMut::with_capacity(fa.batch_at + BATCH_HEADER_SIZE + blob);
    buf.put_slice(&first[..fa.key_end]);
    buf.put_u32_le(count);
    let header_at = buf.len();
    buf.put_bytes(0, BATCH_HEADER_SIZE);
    let blob_at = buf.len();
    let mut index = 0u32;
    for (body, a) in parts {
        let shift = a.origin - origin;
        let mut at = buf.len();
        buf.put_slice(&body[a.batch_at + BATCH_HEADER_SIZE..]);
        while at < buf.len() {
            let frame = &mut buf[at..];
            let delta = u32::from_le_bytes([frame[28], frame[29], frame[30], frame[31]]);
            let size = BATCH_MESSAGE_HEADER_SIZE
                + u32::from_le_bytes([frame[32], frame[33], frame[34], frame[35]]) as usize
                + u32::from_le_bytes([frame[36], frame[37], frame[38], frame[39]]) as usize;
            // Within a u32: the group's span was checked.
            #[allow(clippy::cast_possible_truncation)]
            let delta = (u64::from(delta) + shift) as u32;
            frame[24..28].copy_from_slice(&index.to_le_bytes());
            frame[28..32].copy_from_slice(&delta.to_le_bytes());
            let checksum = XxHash3_64::oneshot(&frame[8..size]);
            frame[..8].copy_from_slice(&checksum.to_le_bytes());
            at += size;
            index += 1;
        }
    }
    let mut header = BatchHeader::new(0, origin, (BATCH_HEADER_SIZE + blob) as u64, count);
    header.batch_checksum = calculate_batch_checksum(&header, &buf[blob_at..]);
    header.encode_into(&mut buf[header_at..blob_at]);
    buf.freeze()
}

/// Each merged call's share of the reply to their request: the confirmation's base offset
/// moved on by the messages of the calls before it (`counts`, in request order).
pub(crate) fn split(reply: &Bytes, counts: &[u32]) -> Vec<Bytes> {
    let decoded = SendMessagesResponse::decode(reply)
        .ok()
        .filter(|(r, _)| !r.confirmations.is_empty());
    let Some((response, _)) = decoded else {
        return counts.iter().map(|_| reply.clone()).collect();
    };
    let mut before = 0u64;
    counts
        .iter()
        .map(|&n| {
            let mut own = response.clone();
            for c in &mut own.confirmations {
                c.base_offset = c.base_offset.wrapping_add(before);
            }
            before += u64::from(n);
            own.to_bytes()
        })
        .collect()
}

/// `bodies` merged as a lane merges them queued one behind another, without bounds;
/// `None` where a lane would not merge them all (for tests and fuzzers).
#[cfg(any(test, feature = "testing"))]
#[must_use]
pub fn merged(bodies: &[Bytes]) -> Option<Bytes> {
    let reads: Vec<Append> = bodies
        .iter()
        .map(|b| Append::read(b))
        .collect::<Option<_>>()?;
    let unbounded = MergeLimits {
        max_calls: usize::MAX,
        max_bytes: usize::MAX,
    };
    let mut group = Group::new(bodies.first()?, reads.first()?);
    for (b, a) in bodies.iter().zip(&reads).skip(1) {
        if !group.admit(b, a, &unbounded) {
            return None;
        }
    }
    let parts: Vec<(&Bytes, &Append)> = bodies.iter().zip(&reads).collect();
    Some(merge(&parts))
}

#[cfg(test)]
mod tests;
