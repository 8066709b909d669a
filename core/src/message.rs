//! Messages as Iggy holds them, and as the backends hand them over.
//!
//! [`IggyMessage`] is one message (payload, timestamps, user headers: what the mapping of
//! `docs/MAPPING.md` produces and reads); [`MessageList`] the messages of one append, held
//! without a copy of the request's bytes; [`Messages`] a read's messages with their offsets,
//! in shared [`Block`]s.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;

/// An Iggy user-header value, with the Iggy header kind it is sent as.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[non_exhaustive]
pub enum HeaderValue {
    /// Kind `raw`: bytes.
    Raw(
        #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::protocol::codec::arbitrary_bytes))]
         Bytes,
    ),
    /// Kind `string`: UTF-8.
    String(String),
    /// Kind `bool`.
    Bool(bool),
    /// Kind `uint8`.
    Uint8(u8),
    /// Kind `int64`.
    Int64(i64),
    /// Kind `uint64`.
    Uint64(u64),
    /// Kind `float64`.
    Float64(f64),
}

impl HeaderValue {
    /// The value's size as Iggy stores it.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        match self {
            Self::Raw(b) => b.len(),
            Self::String(s) => s.len(),
            Self::Bool(_) | Self::Uint8(_) => 1,
            Self::Int64(_) | Self::Uint64(_) | Self::Float64(_) => 8,
        }
    }

    /// The value as a Kafka header value: bytes as they are, numbers as decimal text.
    #[must_use]
    pub fn to_kafka(&self) -> Bytes {
        match self {
            Self::Raw(b) => b.clone(),
            Self::String(s) => Bytes::copy_from_slice(s.as_bytes()),
            Self::Bool(b) => Bytes::from(b.to_string()),
            Self::Uint8(n) => Bytes::from(n.to_string()),
            Self::Int64(n) => Bytes::from(n.to_string()),
            Self::Uint64(n) => Bytes::from(n.to_string()),
            Self::Float64(n) => Bytes::from(n.to_string()),
        }
    }
}

/// A message as Iggy holds it, as far as the mapping is concerned.
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct IggyMessage {
    /// The payload (never empty: Iggy rejects empty payloads).
    #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::protocol::codec::arbitrary_bytes))]
    pub payload: Bytes,
    /// The producer's timestamp, in microseconds (Iggy's origin timestamp).
    pub origin_timestamp_us: u64,
    /// When Iggy appended the message, in microseconds (0 before it is appended).
    pub timestamp_us: u64,
    /// User headers. Iggy keeps them in a map; this order means nothing.
    pub headers: Vec<(String, HeaderValue)>,
}

impl IggyMessage {
    pub(crate) fn header(&self, key: &str) -> Option<&HeaderValue> {
        self.headers.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// The messages of one append, in order. Most records map to a bare message: the value as
/// the payload and the timestamp, nothing else (see [`into_iggy`]). Those stay in the bytes
/// they were decoded from, as a range and a timestamp, so that a batch of them is mapped
/// without a reference count or an allocation per message; the others are held mapped.
#[derive(Clone, Default)]
pub struct MessageList {
    buffers: Vec<Bytes>,
    entries: Vec<Entry>,
    mapped: Vec<IggyMessage>,
}

#[derive(Debug, Clone, Copy)]
enum Entry {
    Bare {
        buffer: u32,
        start: u32,
        end: u32,
        origin_timestamp_us: u64,
    },
    Mapped(u32),
}

/// One message of a [`MessageList`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MessageRef<'a> {
    /// The payload.
    pub payload: &'a [u8],
    /// The producer's timestamp, in microseconds.
    pub origin_timestamp_us: u64,
    /// User headers (none for a bare message).
    pub headers: &'a [(String, HeaderValue)],
}

impl MessageRef<'_> {
    /// Its size as [`message_size`] counts it.
    #[must_use]
    pub fn size(&self) -> usize {
        size_of(self.payload, self.headers)
    }
}

impl MessageList {
    /// The number of messages.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Makes room for `additional` more messages.
    pub fn reserve(&mut self, additional: usize) {
        self.entries.reserve(additional);
    }

    /// Appends a mapped message.
    pub fn push(&mut self, message: IggyMessage) {
        match u32::try_from(self.mapped.len()) {
            Ok(index) => {
                self.mapped.push(message);
                self.entries.push(Entry::Mapped(index));
            }
            // Four billion messages in one append cannot come from one frame.
            Err(_) => tracing::error!("message list full; message not added"),
        }
    }

    /// Appends a bare message: `payload`, a slice of `buffer`, with no headers. A payload
    /// that does not lie in `buffer` is copied.
    pub fn push_bare(&mut self, buffer: &Bytes, payload: &[u8], origin_timestamp_us: u64) {
        let at = (payload.as_ptr() as usize).wrapping_sub(buffer.as_ptr() as usize);
        let reused = self
            .buffers
            .last()
            .is_some_and(|b| b.as_ptr() == buffer.as_ptr() && b.len() == buffer.len());
        let index = self.buffers.len() - usize::from(reused);
        let range = (at <= buffer.len() && payload.len() <= buffer.len() - at)
            .then(|| {
                Some((
                    u32::try_from(at).ok()?,
                    u32::try_from(at + payload.len()).ok()?,
                ))
            })
            .flatten();
        match (range, u32::try_from(index)) {
            (Some((start, end)), Ok(index)) => {
                if !reused {
                    self.buffers.push(buffer.clone());
                }
                self.entries.push(Entry::Bare {
                    buffer: index,
                    start,
                    end,
                    origin_timestamp_us,
                });
            }
            _ => self.push(IggyMessage {
                payload: Bytes::copy_from_slice(payload),
                origin_timestamp_us,
                ..IggyMessage::default()
            }),
        }
    }

    /// Whether every message is bare: a range of the bytes it arrived in, without headers.
    #[must_use]
    pub fn is_bare(&self) -> bool {
        self.mapped.is_empty()
    }

    /// The messages, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = MessageRef<'_>> + '_ {
        self.entries.iter().map(move |e| self.borrow(*e))
    }

    /// The `index`th message, borrowed.
    #[must_use]
    pub fn get(&self, index: usize) -> Option<MessageRef<'_>> {
        self.entries.get(index).map(|e| self.borrow(*e))
    }

    /// The `index`th message as an [`IggyMessage`] whose payload shares this list's bytes
    /// (not yet appended: no append time).
    #[must_use]
    pub fn to_message(&self, index: usize) -> Option<IggyMessage> {
        self.entries.get(index).map(|e| match *e {
            Entry::Bare {
                buffer,
                start,
                end,
                origin_timestamp_us,
            } => self.bare(buffer, start, end, origin_timestamp_us),
            Entry::Mapped(i) => self.mapped[i as usize].clone(),
        })
    }

    /// Gives back the room reserved beyond its messages, when that is more than a quarter
    /// of them: a list kept for long should not hold a decoder's estimate.
    pub fn shrink(&mut self) {
        if self.entries.capacity() > self.entries.len() + self.entries.len() / 4 {
            self.entries.shrink_to_fit();
        }
    }

    fn borrow(&self, e: Entry) -> MessageRef<'_> {
        match e {
            Entry::Bare {
                buffer,
                start,
                end,
                origin_timestamp_us,
            } => MessageRef {
                payload: &self.buffers[buffer as usize][start as usize..end as usize],
                origin_timestamp_us,
                headers: &[],
            },
            Entry::Mapped(i) => {
                let m = &self.mapped[i as usize];
                MessageRef {
                    payload: &m.payload,
                    origin_timestamp_us: m.origin_timestamp_us,
                    headers: &m.headers,
                }
            }
        }
    }

    fn bare(&self, buffer: u32, start: u32, end: u32, origin_timestamp_us: u64) -> IggyMessage {
        IggyMessage {
            payload: self.buffers[buffer as usize].slice(start as usize..end as usize),
            origin_timestamp_us,
            ..IggyMessage::default()
        }
    }

    /// The messages as [`IggyMessage`]s (not yet appended: no append time).
    #[must_use]
    pub fn into_messages(mut self) -> Vec<IggyMessage> {
        // Mapped entries are numbered in the order they were pushed.
        let mut mapped = std::mem::take(&mut self.mapped).into_iter();
        let mut out = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            match *e {
                Entry::Bare {
                    buffer,
                    start,
                    end,
                    origin_timestamp_us,
                } => out.push(self.bare(buffer, start, end, origin_timestamp_us)),
                Entry::Mapped(_) => out.extend(mapped.next()),
            }
        }
        out
    }
}

impl From<Vec<IggyMessage>> for MessageList {
    fn from(messages: Vec<IggyMessage>) -> Self {
        messages.into_iter().collect()
    }
}

impl FromIterator<IggyMessage> for MessageList {
    fn from_iter<I: IntoIterator<Item = IggyMessage>>(messages: I) -> Self {
        let mut list = Self::default();
        for m in messages {
            list.push(m);
        }
        list
    }
}

impl PartialEq for MessageList {
    /// The same messages, however they are held.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl std::fmt::Debug for MessageList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Messages stored together: what one append brought, or what one poll of Iggy returned.
/// Reads share blocks rather than copy or count each message.
pub type Block = Arc<Vec<IggyMessage>>;

/// Bare messages ([`MessageList::is_bare`]) with the times they were appended: ranges of
/// the bytes they arrived in, about a third of the memory of [`IggyMessage`]s and no
/// reference count per message. What the embedded store keeps of an append, and what a
/// poll of Iggy that returned only bare messages is read as.
///
/// It holds no [`IggyMessage`]s, ever: [`Messages::iter`] makes them afresh at each call,
/// so that nothing a block is read for keeps more memory for as long as the block lives.
#[derive(Debug)]
pub struct BareBlock {
    list: MessageList,
    appended: Appended,
}

#[derive(Debug)]
enum Appended {
    /// One append: one time for all.
    All(u64),
    /// One time per message.
    Each(Vec<u64>),
}

impl BareBlock {
    /// `list`'s messages appended at `appended_us`.
    ///
    /// # Errors
    /// The list itself, when it holds a message with headers.
    pub fn new(list: MessageList, appended_us: u64) -> Result<Self, MessageList> {
        Self::made(list, Appended::All(appended_us))
    }

    /// `list`'s messages, each appended at its time in `appended_us`.
    ///
    /// # Errors
    /// The list itself, when it holds a message with headers or the times are not one per
    /// message.
    pub fn with_times(list: MessageList, appended_us: Vec<u64>) -> Result<Self, MessageList> {
        if appended_us.len() != list.len() {
            return Err(list);
        }
        Self::made(list, Appended::Each(appended_us))
    }

    fn made(list: MessageList, appended: Appended) -> Result<Self, MessageList> {
        if !list.is_bare() {
            return Err(list);
        }
        Ok(Self { list, appended })
    }

    /// How many messages.
    #[must_use]
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// When the `index`th message was appended, in microseconds.
    #[must_use]
    pub fn appended_us(&self, index: usize) -> u64 {
        match &self.appended {
            Appended::All(us) => *us,
            Appended::Each(each) => each.get(index).copied().unwrap_or(0),
        }
    }

    /// The `index`th message, borrowed.
    #[must_use]
    pub fn get(&self, index: usize) -> Option<MessageRef<'_>> {
        self.list.get(index)
    }

    /// The messages, in order, borrowed.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = MessageRef<'_>> + '_ {
        self.list.iter()
    }

    /// The `index`th message as an [`IggyMessage`] whose payload shares the block's bytes.
    fn message(&self, index: usize) -> Option<IggyMessage> {
        let mut m = self.list.to_message(index)?;
        m.timestamp_us = self.appended_us(index);
        Some(m)
    }
}

/// One message of [`Messages`], borrowed as it is held.
#[derive(Debug, Clone, Copy)]
pub enum MessageView<'a> {
    /// A message held whole.
    Message(&'a IggyMessage),
    /// A bare message: its payload, no headers.
    Bare {
        /// The payload.
        payload: &'a [u8],
        /// The producer's timestamp, in microseconds.
        origin_timestamp_us: u64,
        /// When it was appended, in microseconds.
        timestamp_us: u64,
    },
}

impl<'a> MessageView<'a> {
    /// Its size as [`message_size`] counts it.
    #[must_use]
    pub fn size(&self) -> usize {
        match self {
            Self::Message(m) => message_size(m),
            Self::Bare { payload, .. } => size_of(payload, &[]),
        }
    }

    /// The payload.
    #[must_use]
    pub fn payload(&self) -> &'a [u8] {
        match *self {
            Self::Message(m) => &m.payload,
            Self::Bare { payload, .. } => payload,
        }
    }

    /// (origin timestamp, append time, headers): the rest of what [`IggyMessage`] holds.
    fn rest(&self) -> (u64, u64, &'a [(String, HeaderValue)]) {
        match *self {
            Self::Message(m) => (m.origin_timestamp_us, m.timestamp_us, &m.headers),
            Self::Bare {
                origin_timestamp_us,
                timestamp_us,
                ..
            } => (origin_timestamp_us, timestamp_us, &[]),
        }
    }
}

/// Equal when they are the same message, whether held whole or bare: [`IggyMessage`]'s
/// equality, without making one.
impl PartialEq for MessageView<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.payload() == other.payload() && self.rest() == other.rest()
    }
}

/// Messages of one partition with their offsets, in offset order: runs of consecutive
/// offsets, each a slice of a shared [`Block`] or [`BareBlock`]. A read of many messages
/// costs a few reference counts, not one per message.
#[derive(Debug, Clone, Default)]
pub struct Messages {
    runs: Vec<Run>,
    len: usize,
}

/// Equal when they hold the same messages at the same offsets, however they are split into
/// blocks and whether held whole or bare.
impl PartialEq for Messages {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.views().eq(other.views())
    }
}

#[derive(Debug, Clone)]
struct Run {
    first_offset: u64,
    block: Held,
    start: usize,
    end: usize,
}

impl Run {
    /// The offset of the block's `i`th message, `i` in `start..end`. Counted from the
    /// start rather than stepped, so that a run ending at `u64::MAX` is not stepped past it.
    fn offset(&self, i: usize) -> u64 {
        self.first_offset + (i - self.start) as u64
    }
}

#[derive(Debug, Clone)]
enum Held {
    Messages(Block),
    Bare(Arc<BareBlock>),
}

impl Held {
    fn len(&self) -> usize {
        match self {
            Self::Messages(b) => b.len(),
            Self::Bare(b) => b.len(),
        }
    }

    fn same(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Messages(a), Self::Messages(b)) => Arc::ptr_eq(a, b),
            (Self::Bare(a), Self::Bare(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    fn message(&self, i: usize) -> Option<Cow<'_, IggyMessage>> {
        match self {
            Self::Messages(b) => b.get(i).map(Cow::Borrowed),
            Self::Bare(b) => b.message(i).map(Cow::Owned),
        }
    }

    fn view(&self, i: usize) -> Option<MessageView<'_>> {
        match self {
            Self::Messages(b) => b.get(i).map(MessageView::Message),
            Self::Bare(b) => b.get(i).map(|m| MessageView::Bare {
                payload: m.payload,
                origin_timestamp_us: m.origin_timestamp_us,
                timestamp_us: b.appended_us(i),
            }),
        }
    }
}

impl Messages {
    /// No messages.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `block[range]`, whose messages have consecutive offsets from `first_offset`.
    /// An empty range, or one reaching past the block, adds what the block holds of it.
    pub fn push(&mut self, first_offset: u64, block: &Block, range: std::ops::Range<usize>) {
        self.push_held(first_offset, Held::Messages(Arc::clone(block)), range);
    }

    /// [`Self::push`] for bare messages.
    pub fn push_bare(
        &mut self,
        first_offset: u64,
        block: &Arc<BareBlock>,
        range: std::ops::Range<usize>,
    ) {
        self.push_held(first_offset, Held::Bare(Arc::clone(block)), range);
    }

    fn push_held(&mut self, first_offset: u64, block: Held, range: std::ops::Range<usize>) {
        let end = range.end.min(block.len());
        if range.start >= end {
            return;
        }
        if let Some(last) = self.runs.last_mut() {
            // Extends the previous run when it is the same block and continues it.
            if last.block.same(&block)
                && last.end == range.start
                && continues(last.first_offset, last.end - last.start, first_offset)
            {
                last.end = end;
                self.len += end - range.start;
                return;
            }
        }
        self.len += end - range.start;
        self.runs.push(Run {
            first_offset,
            block,
            start: range.start,
            end,
        });
    }

    /// Adds `other`'s messages after these.
    pub fn append(&mut self, other: Messages) {
        for r in other.runs {
            self.push_held(r.first_offset, r.block, r.start..r.end);
        }
    }

    /// The messages with their offsets, as one block (runs split where offsets jump).
    #[must_use]
    pub fn from_offsets(messages: impl IntoIterator<Item = (u64, IggyMessage)>) -> Self {
        let messages = messages.into_iter();
        let mut builder = MessagesBuilder::with_capacity(messages.size_hint().0);
        for (offset, message) in messages {
            builder.push(offset, message);
        }
        builder.finish()
    }

    /// How many messages.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Each message with its offset, in order, as an [`IggyMessage`]: borrowed when held
    /// whole, made anew at each call when bare (a reference count per message, kept by
    /// nothing once dropped). For tests and slow paths; [`Self::views`] makes nothing.
    pub fn iter(&self) -> impl Iterator<Item = (u64, Cow<'_, IggyMessage>)> + '_ {
        self.runs
            .iter()
            .flat_map(|r| (r.start..r.end).filter_map(|i| Some((r.offset(i), r.block.message(i)?))))
    }

    /// Each message with its offset, in order, as it is held.
    pub fn views(&self) -> impl Iterator<Item = (u64, MessageView<'_>)> + '_ {
        self.runs
            .iter()
            .flat_map(|r| (r.start..r.end).filter_map(|i| Some((r.offset(i), r.block.view(i)?))))
    }

    /// The first message and its offset, as [`Self::iter`] gives it: one message made, not
    /// the block's.
    #[must_use]
    pub fn first(&self) -> Option<(u64, Cow<'_, IggyMessage>)> {
        self.iter().next()
    }

    /// The last message and its offset, as [`Self::iter`] gives it.
    #[must_use]
    pub fn last(&self) -> Option<(u64, Cow<'_, IggyMessage>)> {
        let r = self.runs.last()?;
        let i = r.end.checked_sub(1)?;
        Some((r.offset(i), r.block.message(i)?))
    }

    /// The offset of the first message.
    #[must_use]
    pub fn first_offset(&self) -> Option<u64> {
        self.runs.first().map(|r| r.first_offset)
    }

    /// The offset of the last message.
    #[must_use]
    pub fn last_offset(&self) -> Option<u64> {
        let r = self.runs.last()?;
        Some(r.first_offset + (r.end - r.start).checked_sub(1)? as u64)
    }

    /// Keeps the first `n` messages.
    pub fn truncate(&mut self, n: usize) {
        let mut left = n;
        self.runs.retain_mut(|r| {
            let len = r.end - r.start;
            if left == 0 {
                return false;
            }
            if len > left {
                r.end = r.start + left;
            }
            left -= len.min(left);
            true
        });
        self.len = self.len.min(n);
    }
}

/// Whether `offset` comes right after a run of `len` offsets from `first`.
fn continues(first: u64, len: usize, offset: u64) -> bool {
    first.checked_add(len as u64) == Some(offset)
}

/// Builds [`Messages`] held in one block from messages given in offset order, each moved
/// once into the block.
#[derive(Debug, Default)]
pub struct MessagesBuilder {
    block: Vec<IggyMessage>,
    /// (first offset, first index, end index) of each run of consecutive offsets.
    runs: Vec<(u64, usize, usize)>,
}

impl MessagesBuilder {
    /// A builder with room for `capacity` messages.
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            block: Vec::with_capacity(capacity),
            runs: Vec::new(),
        }
    }

    /// Adds a message at `offset`; a run ends where offsets jump.
    pub fn push(&mut self, offset: u64, message: IggyMessage) {
        let i = self.block.len();
        match self.runs.last_mut() {
            Some((first, start, end)) if continues(*first, *end - *start, offset) => {
                *end += 1;
            }
            _ => self.runs.push((offset, i, i + 1)),
        }
        self.block.push(message);
    }

    /// How many messages so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.block.len()
    }

    /// Whether there are none yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.block.is_empty()
    }

    /// The messages.
    #[must_use]
    pub fn finish(self) -> Messages {
        let block = Arc::new(self.block);
        let mut out = Messages::new();
        for (first, start, end) in self.runs {
            out.push(first, &block, start..end);
        }
        out
    }
}

/// How many bytes a message counts for in read limits and retention: about what it takes
/// as a Kafka record, so that a fetch's `max_bytes` means what the client meant.
#[must_use]
pub fn message_size(m: &IggyMessage) -> usize {
    size_of(&m.payload, &m.headers)
}

fn size_of(payload: &[u8], headers: &[(String, HeaderValue)]) -> usize {
    let headers: usize = headers
        .iter()
        .map(|(k, v)| k.len() + v.encoded_len() + 2)
        .sum();
    payload.len() + headers + 16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(m: &Messages) -> Vec<(u64, Vec<u8>)> {
        m.iter().map(|(o, m)| (o, m.payload.to_vec())).collect()
    }

    fn block(payloads: &[&[u8]]) -> Block {
        Arc::new(
            payloads
                .iter()
                .map(|p| IggyMessage {
                    payload: bytes::Bytes::copy_from_slice(p),
                    ..IggyMessage::default()
                })
                .collect(),
        )
    }

    /// Slices of one block that continue each other become one run; a jump in offsets or
    /// another block starts a new one, and offsets stay with their messages throughout.
    #[test]
    fn messages_keep_offsets_across_runs() {
        let a = block(&[b"a", b"b", b"c"]);
        let b = block(&[b"d", b"e"]);
        let mut m = Messages::new();
        m.push(10, &a, 0..1);
        m.push(11, &a, 1..3);
        assert_eq!(m.runs.len(), 1);
        m.push(13, &b, 0..2);
        m.push(20, &a, 2..3);
        m.push(21, &a, 3..9);
        m.push(21, &a, 1..1);
        assert_eq!(m.runs.len(), 3);
        assert_eq!(m.len(), 6);
        let want = vec![
            (10, b"a".to_vec()),
            (11, b"b".to_vec()),
            (12, b"c".to_vec()),
            (13, b"d".to_vec()),
            (14, b"e".to_vec()),
            (20, b"c".to_vec()),
        ];
        assert_eq!(payloads(&m), want);
        assert_eq!(m.first().map(|(o, _)| o), Some(10));
        assert_eq!(
            m.last().map(|(o, m)| (o, m.payload.to_vec())),
            Some((20, b"c".to_vec()))
        );
        let mut t = m.clone();
        t.truncate(4);
        assert_eq!(payloads(&t), want[..4]);
        assert_eq!(t.len(), 4);
        assert_eq!(t.last().map(|(o, _)| o), Some(13));
        t.truncate(0);
        assert!(t.is_empty() && t.first().is_none() && t.last().is_none());

        let from = Messages::from_offsets(want.iter().map(|(o, p)| {
            (
                *o,
                IggyMessage {
                    payload: bytes::Bytes::copy_from_slice(p),
                    ..IggyMessage::default()
                },
            )
        }));
        assert_eq!(payloads(&from), want);
        assert_eq!(from.runs.len(), 2);
        assert_eq!(from, m, "equal contents, different blocks");
        assert_ne!(from, t);
        assert!(Messages::from_offsets(std::iter::empty()).is_empty());
    }

    /// A bare block reads as the same messages held whole, each with its own append time,
    /// through `views`, `iter`, `first`, `last` and equality alike, up to the last offset
    /// there is; a message appended at another time is another message.
    #[test]
    fn bare_blocks_read_as_their_messages_held_whole() {
        let request = Bytes::from_static(b"abcdef");
        let ranges = [(0, 1, 7), (1, 3, 0), (3, 6, 9)];
        let bare = |times: Vec<u64>| {
            let mut list = MessageList::default();
            for (start, end, origin) in ranges {
                list.push_bare(&request, &request[start..end], origin);
            }
            Arc::new(BareBlock::with_times(list, times).expect("bare"))
        };
        let times = vec![100, 200, 300];
        let whole: Block = Arc::new(
            ranges
                .iter()
                .zip(&times)
                .map(|(&(start, end, origin), &t)| IggyMessage {
                    payload: request.slice(start..end),
                    origin_timestamp_us: origin,
                    timestamp_us: t,
                    ..IggyMessage::default()
                })
                .collect(),
        );
        let first = u64::MAX - 2;
        let (mut b, mut w) = (Messages::new(), Messages::new());
        b.push_bare(first, &bare(times.clone()), 0..3);
        w.push(first, &whole, 0..3);
        assert_eq!(b, w);
        let owned = |m: &Messages| -> Vec<(u64, IggyMessage)> {
            m.iter().map(|(o, m)| (o, m.into_owned())).collect()
        };
        let want = owned(&w);
        assert_eq!(
            want.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
            [first, first + 1, u64::MAX]
        );
        assert_eq!(owned(&b), want);
        for ((o, v), (wo, wm)) in b.views().zip(&want) {
            assert_eq!((o, v), (*wo, MessageView::Message(wm)));
            assert!(matches!(v, MessageView::Bare { .. }));
        }
        let one = |m: Option<(u64, Cow<'_, IggyMessage>)>| m.map(|(o, m)| (o, m.into_owned()));
        assert_eq!(one(b.first()), want.first().cloned());
        assert_eq!(one(b.last()), want.last().cloned());
        assert_eq!(b.last_offset(), Some(u64::MAX));
        let mut later = Messages::new();
        later.push_bare(first, &bare(vec![100, 200, 301]), 0..3);
        assert_ne!(later, b);
        assert_ne!(later, w);
    }
}
