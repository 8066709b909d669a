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
//! delta its index in the request and its timestamp delta taken from that origin, the
//! checksum of each frame whose index or timestamp delta changed computed again (the others
//! keep theirs, so a call's frames must come with right checksums, as Iggy checks them),
//! and the batch checksum computed from the frames' checksums.
//!
//! **Merged ahead.** While a request is in flight, the lane's driver merges the plain
//! appends queued at the front of the lane into a [`Prepared`] request, so that what the
//! merge costs (a copy and a checksum of every message) is spent while Iggy works, not
//! between its reply and the next request. Before it sends one, the driver checks that the
//! queue still starts with exactly the calls it holds, none dropped and none waiting; if
//! not, it merges what the queue holds then, as above. A call with an earlier timestamp than
//! the prepared request's origin ends it (its frames would all have to be timed again), and
//! goes in the next request.

use std::hash::Hasher;
use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};
use iggy_binary_protocol::batch::{
    BatchHeader, BATCH_HEADER_SIZE, BATCH_MESSAGE_HEADER_SIZE, MAX_TIMESTAMP_DELTA_MICROS,
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

/// What a merge needs to know of a plain append's body: its headers, read when it is
/// queued, and its frames, read once a merge may take it (most appends of a busy lane that
/// serves many partitions never meet another to the same partition).
#[derive(Debug, Clone)]
pub(crate) struct Append {
    /// The body's bytes that name the stream, topic and partition (`4..key_end`).
    key_end: usize,
    /// Where the batch header starts.
    batch_at: usize,
    count: u32,
    /// The earliest message timestamp (µs).
    origin: u64,
    /// The latest message timestamp (µs) if the frames are whole and well-formed.
    latest: OnceLock<Option<u64>>,
}

impl Append {
    /// Reads the headers of a `SendMessages` body to one partition; `None` if they do not
    /// describe one whole batch (it is then sent alone, as given).
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
        Some(Self {
            key_end: batch_at - 4,
            batch_at,
            count: bh.message_count,
            origin: bh.origin_timestamp,
            latest: OnceLock::new(),
        })
    }

    /// The latest message timestamp of `body` (the body this was read from), once its
    /// frames are found to tile the batch exactly, [`Self::count`] of them; `None` if
    /// they do not (the body is then sent alone, as given).
    fn latest(&self, body: &[u8]) -> Option<u64> {
        *self.latest.get_or_init(|| {
            let batch = body.get(self.batch_at..)?;
            let mut at = BATCH_HEADER_SIZE;
            let (mut frames, mut latest) = (0u32, self.origin);
            while at < batch.len() {
                let (delta, size) = frame_fields(batch.get(at..)?)?;
                latest = latest.max(self.origin.checked_add(u64::from(delta))?);
                at = at.checked_add(size)?;
                frames = frames.checked_add(1)?;
            }
            (at == batch.len() && frames == self.count).then_some(latest)
        })
    }

    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    fn blob_len(&self, body: &[u8]) -> usize {
        body.len() - self.batch_at - BATCH_HEADER_SIZE
    }
}

/// A message frame's timestamp delta and size (header, payload and user headers), as
/// Iggy's `BatchMessageHeader::decode` reads them, reserved bytes zero; `None` if `frame`
/// does not start with a whole frame header.
#[inline]
fn frame_fields(frame: &[u8]) -> Option<(u32, usize)> {
    let header = frame.get(..BATCH_MESSAGE_HEADER_SIZE)?;
    let field = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    if header[40..48] != [0; 8] {
        return None;
    }
    let size = BATCH_MESSAGE_HEADER_SIZE
        .checked_add(field(32) as usize)?
        .checked_add(field(36) as usize)?;
    Some((field(28), size))
}

/// Calls being gathered into one request, the first one given.
pub(crate) struct Group {
    key: Bytes,
    /// The first call, until another may join it: only then are its frames read.
    first: Option<(Bytes, Append)>,
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
            first: Some((body.clone(), a.clone())),
            calls: 1,
            count: a.count,
            bytes: body.len(),
            origin: a.origin,
            latest: a.origin,
        }
    }

    /// Takes the next call in if the request stays within `limits` and Iggy's format, and
    /// both its frames and the first call's are whole.
    pub(crate) fn admit(&mut self, body: &Bytes, a: &Append, limits: &MergeLimits) -> bool {
        let Some(count) = self.count.checked_add(a.count) else {
            return false;
        };
        let bytes = self.bytes + a.blob_len(body);
        if self.calls >= limits.max_calls
            || bytes > limits.max_bytes
            || body.get(4..a.key_end) != Some(&self.key[..])
        {
            return false;
        }
        if let Some((first, fa)) = &self.first {
            let Some(latest) = fa.latest(first) else {
                return false;
            };
            self.latest = latest;
            self.first = None;
        }
        let Some(latest) = a.latest(body) else {
            return false;
        };
        let (origin, latest) = (self.origin.min(a.origin), self.latest.max(latest));
        if latest - origin > MAX_TIMESTAMP_DELTA_MICROS {
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
/// [`Append::read`], to the same partition, and admitted by a [`Group`], which read their
/// frames).
pub(crate) fn merge(parts: &[(&Bytes, &Append)]) -> Bytes {
    debug_assert!(parts.iter().all(|(b, a)| a.latest(b).is_some()));
    let origin = parts.iter().map(|(_, a)| a.origin).min().unwrap_or(0);
    let blob: usize = parts.iter().map(|(b, a)| a.blob_len(b)).sum();
    let (first, fa) = parts[0];
    let mut builder = Builder::new(first, fa, origin, blob);
    for (body, a) in parts {
        builder.push(body, a);
    }
    builder.finish()
}

/// A merged request's body, written one call's messages at a time: each frame's offset
/// delta becomes its index in the request and its timestamp delta is taken from the
/// request's origin, and only a frame whose fields change is checksummed again (the first
/// call's frames, timed from the origin already, are copied as they are).
pub(crate) struct Builder {
    buf: BytesMut,
    /// Where the batch header goes, once the frames are all in.
    header_at: usize,
    origin: u64,
    count: u32,
    /// The frames' checksums in order, as the batch checksum takes them.
    checksums: Vec<u8>,
}

impl Builder {
    /// A request to the partition `first` (read as `fa`) is to, its messages timed from
    /// `origin`, with room for `blob` bytes of frames.
    pub(crate) fn new(first: &[u8], fa: &Append, origin: u64, blob: usize) -> Self {
        let mut buf = BytesMut::with_capacity(fa.batch_at + BATCH_HEADER_SIZE + blob);
        buf.put_slice(&first[..fa.key_end]);
        // The message count, known at the end.
        buf.put_u32_le(0);
        let header_at = buf.len();
        buf.put_bytes(0, BATCH_HEADER_SIZE);
        Self {
            buf,
            header_at,
            origin,
            count: 0,
            checksums: Vec::new(),
        }
    }

    /// Adds the messages of `body` (read as `a`, none earlier than the request's origin, and
    /// admitted by the request's [`Group`]).
    pub(crate) fn push(&mut self, body: &[u8], a: &Append) {
        debug_assert!(a.origin >= self.origin, "a message before the origin");
        let shift = a.origin - self.origin;
        let mut at = self.buf.len();
        self.buf.put_slice(&body[a.batch_at + BATCH_HEADER_SIZE..]);
        self.checksums.reserve(a.count as usize * 8);
        let mut index = self.count;
        while at < self.buf.len() {
            // Whole frames: the group's admission walked them.
            let Some((given, size)) = frame_fields(&self.buf[at..]) else {
                break;
            };
            let frame = &mut self.buf[at..at + size];
            let numbered = u32::from_le_bytes([frame[24], frame[25], frame[26], frame[27]]);
            // Within a u32: the group's span was checked.
            #[allow(clippy::cast_possible_truncation)]
            let delta = (u64::from(given) + shift) as u32;
            if numbered != index || given != delta {
                frame[24..28].copy_from_slice(&index.to_le_bytes());
                frame[28..32].copy_from_slice(&delta.to_le_bytes());
                let checksum = XxHash3_64::oneshot(&frame[8..size]);
                frame[..8].copy_from_slice(&checksum.to_le_bytes());
            }
            self.checksums.extend_from_slice(&frame[..8]);
            at += size;
            index += 1;
        }
        self.count = index;
    }

    /// The request's body.
    pub(crate) fn finish(mut self) -> Bytes {
        let blob_at = self.header_at + BATCH_HEADER_SIZE;
        let length = (self.buf.len() - self.header_at) as u64;
        self.buf[self.header_at - 4..self.header_at].copy_from_slice(&self.count.to_le_bytes());
        let mut header = BatchHeader::new(0, self.origin, length, self.count);
        header.batch_checksum = batch_checksum(&header, &self.checksums);
        header.encode_into(&mut self.buf[self.header_at..blob_at]);
        self.buf.freeze()
    }
}

/// Plain appends at the front of a lane's queue, merged while the request ahead of them is
/// in flight (see the module's docs).
pub(crate) struct Prepared {
    /// The calls it holds, by the lane's call order, in queue order.
    orders: Vec<u64>,
    group: Group,
    builder: Builder,
    /// No call may join any more: one did not fit.
    closed: bool,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("calls", &self.orders.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// The calls `parts` (body, reading, call order: two or more, admitted one after
    /// another by `group`) merged.
    pub(crate) fn new(group: Group, parts: &[(Bytes, Append, u64)], limits: &MergeLimits) -> Self {
        let (first, fa, _) = &parts[0];
        // Room for twice what is here, or more: more calls are likely to join.
        let room = (group.bytes * 2).max(64 << 10).min(limits.max_bytes);
        let mut builder = Builder::new(first, fa, group.origin, room);
        for (body, a, _) in parts {
            builder.push(body, a);
        }
        Self {
            orders: parts.iter().map(|(_, _, order)| *order).collect(),
            group,
            builder,
            closed: false,
        }
    }

    /// How many calls it holds.
    pub(crate) fn len(&self) -> usize {
        self.orders.len()
    }

    /// The call order of the calls it holds, in queue order.
    pub(crate) fn orders(&self) -> &[u64] {
        &self.orders
    }

    /// Whether the next call queued may join, as [`Group::admit`] says and no earlier
    /// than the request's origin; the first that may not closes it.
    pub(crate) fn admit(&mut self, body: &Bytes, a: &Append, limits: &MergeLimits) -> bool {
        self.closed =
            self.closed || a.origin < self.builder.origin || !self.group.admit(body, a, limits);
        !self.closed
    }

    /// Adds a call [`Self::admit`] took.
    pub(crate) fn push(&mut self, body: &[u8], a: &Append, order: u64) {
        self.builder.push(body, a);
        self.orders.push(order);
    }

    /// The request's body.
    pub(crate) fn finish(self) -> Bytes {
        self.builder.finish()
    }
}

/// The checksum of a batch with `header` and frames whose checksums, in order and
/// little-endian, are `frame_checksums`: what Iggy's `calculate_batch_checksum` gives,
/// without walking the frames again to find them.
#[must_use]
pub fn batch_checksum(header: &BatchHeader, frame_checksums: &[u8]) -> u64 {
    let mut hasher = XxHash3_64::new();
    for field in [
        header.partition_id,
        header.base_offset,
        header.base_timestamp,
        header.origin_timestamp,
        header.batch_length,
    ] {
        hasher.write(&field.to_le_bytes());
    }
    hasher.write(&header.message_count.to_le_bytes());
    hasher.write(frame_checksums);
    hasher.finish()
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
        .map(|b| Append::read(b).filter(|a| a.latest(b).is_some()))
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
