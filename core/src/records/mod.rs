//! Kafka record batches (magic 2): decode and encode, CRC-32C, compression.
//!
//! Three decoders share one parser and check the same things (CRC-32C, lengths, counts,
//! varints, the decompression budget) with the same [`BatchError`]s:
//!
//! - [`decode_batch_views`] leaves every record where it lies. Each [`BatchView`] borrows
//!   the `records` field it was decoded from (`&'a Bytes`, the request's bytes) when the
//!   batch is uncompressed, or owns the buffer its records were inflated into; its
//!   [`RecordView`]s borrow from the view, so their keys, values and headers are `&[u8]` and
//!   the headers are walked only when asked for. Decoding allocates one list of fixed-size
//!   entries per batch and touches no reference count. Call order: decode, read the views
//!   (`records()`), and keep what must outlive them with [`RecordView::into_record`] or
//!   [`BatchView::into_batch`].
//! - [`decode_batches`] makes owned [`Record`]s, their fields [`Bytes`] slices of the same
//!   buffers (no copy of the data).
//! - [`decode_batches_into`] hands each record to a [`RecordSink`] as a [`RecordView`] as
//!   it is decoded, for callers that map records into something else (the produce path).
//!
//! Compressed batches are inflated once, within a [`DecompressionBudget`] shared by all
//! batches of a request. Nothing is reserved from a count before the count is checked
//! against the bytes left.

mod compression;
mod legacy;

use bytes::{BufMut, Bytes, BytesMut};

pub use compression::{compress, decompress, Compression, DecompressionBudget};
pub use legacy::decode_message_set;

use crate::protocol::error_code::ErrorCode;

/// Bytes of a v2 batch before its records: base offset through record count.
pub const BATCH_HEADER_LEN: usize = 61;

/// Offset of the attributes field, where the CRC's coverage starts.
const CRC_START: usize = 21;

/// How a record's timestamp was set (attributes bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TimestampType {
    /// Set by the producer.
    #[default]
    CreateTime,
    /// Set by the broker when it appended the batch.
    LogAppendTime,
}

/// A record header. Keys are bytes: Kafka's wire allows any, and non-UTF-8 keys must survive.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Header {
    /// The key (possibly empty).
    #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::protocol::codec::arbitrary_bytes))]
    pub key: Bytes,
    /// The value; `None` is null, distinct from empty.
    #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::protocol::codec::arbitrary_opt_bytes))]
    pub value: Option<Bytes>,
}

/// One record of a batch, with its deltas from the batch's base offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Record {
    /// Record attributes (unused by Kafka so far, kept as sent).
    pub attributes: i8,
    /// Timestamp minus the batch's base timestamp, in milliseconds.
    pub timestamp_delta: i64,
    /// Offset minus the batch's base offset.
    pub offset_delta: i32,
    /// The key; `None` is null, distinct from empty.
    #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::protocol::codec::arbitrary_opt_bytes))]
    pub key: Option<Bytes>,
    /// The value; `None` is null (a tombstone), distinct from empty.
    #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::protocol::codec::arbitrary_opt_bytes))]
    pub value: Option<Bytes>,
    /// Headers, in order; keys may repeat.
    pub headers: Vec<Header>,
}

/// A v2 record batch.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct RecordBatch {
    /// Offset of the first record (the producer sends 0; the broker assigns).
    pub base_offset: i64,
    /// Leader epoch when the batch was appended (-1 from producers).
    pub partition_leader_epoch: i32,
    /// Attributes: compression (bits 0–2), timestamp type (3), transactional (4), control
    /// (5), delete horizon (6).
    pub attributes: i16,
    /// Offset delta of the last record.
    pub last_offset_delta: i32,
    /// Timestamp of the first record, in milliseconds.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent or transactional producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// The records.
    pub records: Vec<Record>,
}

impl Default for RecordBatch {
    fn default() -> Self {
        Self {
            base_offset: 0,
            partition_leader_epoch: -1,
            attributes: 0,
            last_offset_delta: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records: Vec::new(),
        }
    }
}

impl RecordBatch {
    /// The compression codec named in the attributes.
    ///
    /// # Errors
    /// For codec ids Kafka does not define.
    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_id((self.attributes & 0x7) as u8)
    }

    /// How the timestamps were set.
    #[must_use]
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & 0x8 != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Whether the batch belongs to a transaction.
    #[must_use]
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// Whether the batch holds a control record (transaction marker).
    #[must_use]
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    /// Appends the batch, with its records compressed by `codec` (which replaces the codec
    /// bits of `attributes`), its length and its CRC-32C, to `buf`.
    ///
    /// # Errors
    /// When a length does not fit its field or the codec fails.
    pub fn encode(&self, codec: Compression, buf: &mut BytesMut) -> Result<(), BatchError> {
        let start = buf.len();
        let count = i32::try_from(self.records.len())
            .map_err(|_| BatchError::corrupt("too many records"))?;
        put_header(buf, self, codec, count);
        if codec == Compression::None {
            for r in &self.records {
                encode_record(r, buf)?;
            }
        } else {
            let mut plain = BytesMut::new();
            for r in &self.records {
                encode_record(r, &mut plain)?;
            }
            // Straight into the output: no intermediate copy of the compressed bytes.
            compress(codec, &plain, (&mut *buf).writer()).map_err(BatchError::decompression)?;
        }
        seal(buf, start)
    }
}

/// Writes `b`'s v2 header with `codec` in its attributes and `count` records; the length
/// and the CRC are left for [`seal`].
fn put_header(buf: &mut BytesMut, b: &RecordBatch, codec: Compression, count: i32) {
    buf.put_i64(b.base_offset);
    buf.put_i32(0); // length, patched by seal
    buf.put_i32(b.partition_leader_epoch);
    buf.put_i8(2);
    buf.put_u32(0); // CRC, patched by seal
    buf.put_i16((b.attributes & !0x7) | i16::from(codec.id()));
    buf.put_i32(b.last_offset_delta);
    buf.put_i64(b.base_timestamp);
    buf.put_i64(b.max_timestamp);
    buf.put_i64(b.producer_id);
    buf.put_i16(b.producer_epoch);
    buf.put_i32(b.base_sequence);
    buf.put_i32(count);
}

/// Patches the length and the CRC-32C of the batch that starts at `start` and ends `buf`.
fn seal(buf: &mut BytesMut, start: usize) -> Result<(), BatchError> {
    let len = i32::try_from(buf.len() - start - 12)
        .map_err(|_| BatchError::corrupt("batch too large"))?;
    buf[start + 8..start + 12].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&buf[start + CRC_START..]);
    buf[start + 17..start + 21].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Why a batch was refused. [`BatchError::error_code`] is the per-partition code Kafka uses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// A length or field that runs past the data, or a record that is not what its length
    /// says.
    #[error("corrupt record batch: {0}")]
    Corrupt(&'static str),
    /// The CRC-32C does not match the content.
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// The CRC in the batch.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// The declared record count differs from the records present.
    #[error("batch declares {declared} records but holds {found}")]
    RecordCountMismatch {
        /// The count in the header.
        declared: i32,
        /// The records decoded.
        found: usize,
    },
    /// A magic byte this decoder does not read here.
    #[error("unsupported magic {0}")]
    UnsupportedMagic(i8),
    /// A compression codec id Kafka does not define.
    #[error("unknown compression codec {0}")]
    UnknownCompression(u8),
    /// The compressed data is invalid.
    #[error("decompression failed: {0}")]
    Decompression(String),
    /// Decompressing would exceed the request's budget (a decompression bomb, or a request
    /// larger than the configured limit).
    #[error("decompressed size exceeds the limit")]
    TooLarge,
}

impl BatchError {
    pub(crate) fn corrupt(what: &'static str) -> Self {
        Self::Corrupt(what)
    }

    pub(crate) fn decompression(e: impl std::fmt::Display) -> Self {
        Self::Decompression(e.to_string())
    }

    /// The per-partition error code Kafka answers with.
    #[must_use]
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::UnknownCompression(_) => ErrorCode::UNSUPPORTED_COMPRESSION_TYPE,
            Self::UnsupportedMagic(_) => ErrorCode::INVALID_RECORD,
            _ => ErrorCode::CORRUPT_MESSAGE,
        }
    }
}

/// A cursor over a slice that ends where its reads must stop (a batch's records, one
/// record): every read is checked against the slice's length alone, and the cursor is small
/// enough to live in registers while a record is parsed.
#[derive(Clone)]
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    #[inline(always)]
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    #[inline(always)]
    fn byte(&mut self) -> Result<u8, BatchError> {
        let Some(&b) = self.data.get(self.pos) else {
            return Err(BatchError::corrupt("record truncated"));
        };
        self.pos += 1;
        Ok(b)
    }

    /// One-byte varlongs (the timestamp deltas of records produced together) inline.
    #[inline(always)]
    fn varlong(&mut self) -> Result<i64, BatchError> {
        if let Some(&b0) = self.data.get(self.pos) {
            if b0 & 0x80 == 0 {
                self.pos += 1;
                return Ok(i64::from(b0 >> 1) ^ -i64::from(b0 & 1));
            }
        }
        self.varlong_long()
    }

    #[inline(never)]
    fn varlong_long(&mut self) -> Result<i64, BatchError> {
        let mut raw: u64 = 0;
        for i in 0..10 {
            let b = self.byte()?;
            raw |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err(BatchError::corrupt("varlong too long"))
    }

    /// One- and two-byte varints (most lengths and deltas of small records) inline; longer
    /// ones apart, so that the common case costs no call.
    #[inline(always)]
    fn varint(&mut self) -> Result<i32, BatchError> {
        if let Some(&b0) = self.data.get(self.pos) {
            if b0 & 0x80 == 0 {
                self.pos += 1;
                return Ok(i32::from(b0 >> 1) ^ -i32::from(b0 & 1));
            }
            if let Some(&b1) = self.data.get(self.pos + 1) {
                if b1 & 0x80 == 0 {
                    self.pos += 2;
                    let raw = u32::from(b0 & 0x7f) | (u32::from(b1) << 7);
                    return Ok((raw >> 1) as i32 ^ -((raw & 1) as i32));
                }
            }
        }
        self.varint_long()
    }

    #[inline(never)]
    fn varint_long(&mut self) -> Result<i32, BatchError> {
        let mut raw: u32 = 0;
        for i in 0..5 {
            let b = self.byte()?;
            raw |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok((raw >> 1) as i32 ^ -((raw & 1) as i32));
            }
        }
        Err(BatchError::corrupt("varint too long"))
    }

    /// Skips the next `len` bytes, returning where they start.
    #[inline(always)]
    fn take(&mut self, len: usize) -> Result<usize, BatchError> {
        if len > self.remaining() {
            return Err(BatchError::corrupt("record field runs past the record"));
        }
        let start = self.pos;
        self.pos += len;
        Ok(start)
    }

    /// A varint length, then that many bytes, skipped: the length, or [`NULL`] for -1.
    #[inline(always)]
    fn nullable_len(&mut self) -> Result<u32, BatchError> {
        match self.varint()? {
            -1 => Ok(NULL),
            n if n < 0 => Err(BatchError::corrupt("negative length")),
            n => self.take(n as usize).map(|_| n as u32),
        }
    }
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(x)
}

/// Decodes every batch in a `records` field (a produce request's, or a fetch response's when
/// `allow_partial_tail`: brokers may cut the last batch short there). A legacy message set
/// (magic 0 or 1, as Produce v0–v2 send) comes back as one batch.
///
/// # Errors
/// On the first batch that is corrupt, has a bad CRC, a count mismatch, an unsupported magic
/// or codec, or exceeds the decompression budget.
pub fn decode_batches(
    data: &Bytes,
    budget: &mut DecompressionBudget,
    allow_partial_tail: bool,
) -> Result<Vec<RecordBatch>, BatchError> {
    // Legacy entries and v2 batches both put the magic at byte 16.
    if is_legacy(data) {
        return Ok(vec![decode_message_set(data, budget)?]);
    }
    let mut each = PerBatch(Vec::new());
    let mut batches = Vec::new();
    decode_batches_with(data, budget, allow_partial_tail, &mut each, |_, b, _| {
        batches.push(b);
    })?;
    for (b, records) in batches.iter_mut().zip(each.0) {
        b.records = records;
    }
    Ok(batches)
}

/// Legacy message-set entries and v2 batches both put the magic at byte 16.
fn is_legacy(data: &[u8]) -> bool {
    matches!(data.get(16).copied(), Some(0 | 1))
}

/// Collects each batch's records apart.
struct PerBatch(Vec<Vec<Record>>);

impl RecordSink for PerBatch {
    fn begin(&mut self, records: usize) {
        self.0.push(Vec::with_capacity(records));
    }

    fn push(&mut self, _: &RecordBatch, record: Record) {
        if let Some(last) = self.0.last_mut() {
            last.push(record);
        }
    }
}

/// Where [`decode_batches_into`] puts each record as it is decoded.
pub trait RecordSink {
    /// A batch of `records` records starts (a count already checked against the bytes
    /// they take); its records follow.
    fn begin(&mut self, records: usize);
    /// One record of `batch` (whose `records` is empty).
    fn push(&mut self, batch: &RecordBatch, record: Record);
    /// One record of a v2 batch, still in the batch's bytes. The default makes it a
    /// [`Record`] for [`push`](Self::push); a sink that can use the bytes where they lie
    /// saves building the record (a reference count each for key, value and header, and
    /// the list of headers).
    fn push_view(&mut self, batch: &RecordBatch, record: RecordView<'_>) {
        self.push(batch, record.into_record());
    }
}

/// A field's length that stands for null.
const NULL: u32 = u32::MAX;

/// The bytes a field of length `len` (or [`NULL`]) takes after its length.
#[inline(always)]
fn field_len(len: u32) -> usize {
    if len == NULL {
        0
    } else {
        len as usize
    }
}

/// Where a decoded record's fields lie in its buffer: what a [`RecordView`] reads, and what a
/// [`BatchView`] keeps per record. Positions past `anchor` are relative to it, so they fit
/// 32 bits (a record's length is an `i32`).
#[derive(Debug, Clone, Copy)]
struct Entry {
    timestamp_delta: i64,
    /// Where the key starts (or would, when it is null).
    anchor: usize,
    key_len: u32,
    /// Where the value starts, from `anchor`.
    value_at: u32,
    value_len: u32,
    /// Where the first header starts and the record ends, from `anchor`.
    headers_at: u32,
    end: u32,
    header_count: u32,
    offset_delta: i32,
    attributes: i8,
}

/// A decoded record that is still where it was decoded from (the request's bytes, or the
/// batch's inflated buffer): its key, value and headers borrow from that buffer and its
/// headers are walked only when asked for. What [`RecordSink::push_view`] is given and what
/// [`BatchView::records`] yields; [`into_record`](Self::into_record) makes a [`Record`].
#[derive(Clone, Copy)]
pub struct RecordView<'a> {
    buf: &'a Bytes,
    entry: Entry,
}

impl<'a> RecordView<'a> {
    /// The bytes the record lies in.
    #[must_use]
    pub fn buffer(&self) -> &'a Bytes {
        self.buf
    }

    /// Record attributes (unused by Kafka so far, kept as sent).
    #[must_use]
    pub fn attributes(&self) -> i8 {
        self.entry.attributes
    }

    /// Timestamp minus the batch's base timestamp, in milliseconds.
    #[must_use]
    pub fn timestamp_delta(&self) -> i64 {
        self.entry.timestamp_delta
    }

    /// Offset minus the batch's base offset.
    #[must_use]
    pub fn offset_delta(&self) -> i32 {
        self.entry.offset_delta
    }

    /// The key; `None` is null, distinct from empty.
    #[must_use]
    pub fn key(&self) -> Option<&'a [u8]> {
        self.field(self.entry.anchor, self.entry.key_len)
    }

    /// The value; `None` is null (a tombstone), distinct from empty.
    #[must_use]
    pub fn value(&self) -> Option<&'a [u8]> {
        self.field(
            self.entry.anchor + self.entry.value_at as usize,
            self.entry.value_len,
        )
    }

    /// The headers, in order; keys may repeat.
    #[must_use]
    pub fn headers(&self) -> Headers<'a> {
        let e = &self.entry;
        Headers {
            cur: Cursor {
                data: &self.buf[..e.anchor + e.end as usize],
                pos: e.anchor + e.headers_at as usize,
            },
            left: e.header_count,
        }
    }

    /// The record as an owned [`Record`], its key, value and header fields sliced from the
    /// buffer (no copy).
    #[must_use]
    pub fn into_record(self) -> Record {
        let buf = self.buf;
        let e = self.entry;
        let slice =
            |start: usize, len: u32| (len != NULL).then(|| buf.slice(start..start + len as usize));
        Record {
            attributes: e.attributes,
            timestamp_delta: e.timestamp_delta,
            offset_delta: e.offset_delta,
            key: slice(e.anchor, e.key_len),
            value: slice(e.anchor + e.value_at as usize, e.value_len),
            // Most records have no headers: no walk and no allocation for them.
            headers: if e.header_count == 0 {
                Vec::new()
            } else {
                self.headers()
                    .map(|h| Header {
                        key: buf.slice_ref(h.key),
                        value: h.value.map(|v| buf.slice_ref(v)),
                    })
                    .collect()
            },
        }
    }

    fn field(&self, start: usize, len: u32) -> Option<&'a [u8]> {
        // Positions were checked against this very buffer when the record was decoded.
        (len != NULL).then(|| &self.buf[start..start + len as usize])
    }
}

impl std::fmt::Debug for RecordView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordView")
            .field("attributes", &self.attributes())
            .field("timestamp_delta", &self.timestamp_delta())
            .field("offset_delta", &self.offset_delta())
            .field("key", &self.key())
            .field("value", &self.value())
            .field("headers", &self.headers().collect::<Vec<_>>())
            .finish()
    }
}

/// A header of a [`RecordView`], borrowed from the record's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderView<'a> {
    /// The key (possibly empty).
    pub key: &'a [u8],
    /// The value; `None` is null, distinct from empty.
    pub value: Option<&'a [u8]>,
}

/// The headers of a [`RecordView`], read from its bytes one by one.
#[derive(Clone)]
pub struct Headers<'a> {
    cur: Cursor<'a>,
    left: u32,
}

impl std::fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

impl<'a> Iterator for Headers<'a> {
    type Item = HeaderView<'a>;

    fn next(&mut self) -> Option<HeaderView<'a>> {
        if self.left == 0 {
            return None;
        }
        // The record's decode checked these very fields; a failure here cannot happen and
        // would end the walk rather than panic.
        let cur = &mut self.cur;
        let key_len = usize::try_from(cur.varint().ok()?).ok()?;
        let key_at = cur.take(key_len).ok()?;
        let value_len = cur.nullable_len().ok()?;
        let data: &'a [u8] = cur.data;
        let value = (value_len != NULL).then(|| &data[cur.pos - value_len as usize..cur.pos]);
        self.left -= 1;
        Some(HeaderView {
            key: &data[key_at..key_at + key_len],
            value,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

impl ExactSizeIterator for Headers<'_> {}

/// Decodes like [`decode_batches`] but hands every record to `sink` as it is decoded
/// instead of collecting them, so a caller that maps records to something else builds no
/// list of records on the way; the batches come back with empty `records`. A legacy message
/// set is decoded whole first, then handed over.
///
/// # Errors
/// As [`decode_batches`]; records handed over before an error belong to a refused input.
pub fn decode_batches_into(
    data: &Bytes,
    budget: &mut DecompressionBudget,
    sink: &mut impl RecordSink,
) -> Result<Vec<RecordBatch>, BatchError> {
    if is_legacy(data) {
        let mut batch = decode_message_set(data, budget)?;
        let records = std::mem::take(&mut batch.records);
        sink.begin(records.len());
        for r in records {
            sink.push(&batch, r);
        }
        return Ok(vec![batch]);
    }
    let mut batches = Vec::new();
    decode_batches_with(data, budget, false, sink, |_, b, _| batches.push(b))?;
    Ok(batches)
}

/// A decoded batch whose records stay in the bytes they were decoded from: the request's
/// for an uncompressed batch, or a buffer the batch owns for a compressed one (inflated
/// once). [`records`](Self::records) yields [`RecordView`]s that borrow from the batch.
///
/// Decoding one builds a list of fixed-size record entries (positions, deltas, attributes)
/// and nothing else: no reference count is touched and nothing is allocated per record.
/// The checks are [`decode_batches`]'s, to the byte.
pub struct BatchView<'a> {
    header: RecordBatch,
    buf: Source<'a>,
    records: Vec<Entry>,
}

/// The bytes a [`BatchView`]'s records lie in.
enum Source<'a> {
    Frame(&'a Bytes),
    Inflated(Bytes),
}

impl<'a> BatchView<'a> {
    /// The batch's header fields; its `records` is empty.
    #[must_use]
    pub fn header(&self) -> &RecordBatch {
        &self.header
    }

    /// The number of records.
    #[must_use]
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch holds no record.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The bytes the records lie in: the request's, or the inflated records.
    #[must_use]
    pub fn buffer(&self) -> &Bytes {
        match &self.buf {
            Source::Frame(b) => b,
            Source::Inflated(b) => b,
        }
    }

    /// The `i`th record, if there are that many.
    #[must_use]
    pub fn record(&self, i: usize) -> Option<RecordView<'_>> {
        let buf = self.buffer();
        self.records.get(i).map(|&entry| RecordView { buf, entry })
    }

    /// The records, in order.
    pub fn records(&self) -> impl ExactSizeIterator<Item = RecordView<'_>> + '_ {
        let buf = self.buffer();
        self.records
            .iter()
            .map(move |&entry| RecordView { buf, entry })
    }

    /// The batch with its records owned, as [`decode_batches`] makes it.
    #[must_use]
    pub fn into_batch(self) -> RecordBatch {
        let records = self.records().map(RecordView::into_record).collect();
        RecordBatch {
            records,
            ..self.header
        }
    }
}

impl std::fmt::Debug for BatchView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchView")
            .field("header", &self.header)
            .field("records", &self.records().collect::<Vec<_>>())
            .finish()
    }
}

/// Decodes every batch in `data` like [`decode_batches`], with the same checks and errors,
/// but leaves each record where it lies: see [`BatchView`]. A legacy message set comes back
/// as one batch, rewritten as a v2 batch that the view owns.
///
/// # Errors
/// As [`decode_batches`].
pub fn decode_batch_views<'a>(
    data: &'a Bytes,
    budget: &mut DecompressionBudget,
    allow_partial_tail: bool,
) -> Result<Vec<BatchView<'a>>, BatchError> {
    if is_legacy(data) {
        let batch = decode_message_set(data, budget)?;
        let mut v2 = BytesMut::new();
        batch.encode(Compression::None, &mut v2)?;
        let v2 = v2.freeze();
        let mut entries = Entries(Vec::new());
        let mut views = Vec::with_capacity(1);
        decode_batches_with(&v2, budget, false, &mut entries, |e, _, _| {
            views.push(std::mem::take(&mut e.0));
        })?;
        let records = views.pop().unwrap_or_default();
        return Ok(vec![BatchView {
            header: RecordBatch {
                records: Vec::new(),
                ..batch
            },
            buf: Source::Inflated(v2),
            records,
        }]);
    }
    let mut entries = Entries(Vec::new());
    let mut views = Vec::new();
    decode_batches_with(
        data,
        budget,
        allow_partial_tail,
        &mut entries,
        |e, header, inflated| {
            views.push(BatchView {
                header,
                buf: inflated.map_or(Source::Frame(data), Source::Inflated),
                records: std::mem::take(&mut e.0),
            });
        },
    )?;
    Ok(views)
}

/// Keeps the entries of the batch being decoded.
struct Entries(Vec<Entry>);

impl RecordSink for Entries {
    fn begin(&mut self, records: usize) {
        self.0 = Vec::with_capacity(records);
    }

    fn push(&mut self, _: &RecordBatch, _: Record) {}

    #[inline(always)]
    fn push_view(&mut self, _: &RecordBatch, record: RecordView<'_>) {
        self.0.push(record.entry);
    }
}

/// Decodes the v2 batches of `data`, each record into `sink`, then each batch's header and
/// inflated buffer (for a compressed batch) into `done`.
fn decode_batches_with<S: RecordSink>(
    data: &Bytes,
    budget: &mut DecompressionBudget,
    allow_partial_tail: bool,
    sink: &mut S,
    mut done: impl FnMut(&mut S, RecordBatch, Option<Bytes>),
) -> Result<(), BatchError> {
    let mut pos = 0;
    while pos < data.len() {
        let rest = &data[pos..];
        if rest.len() < 17 {
            if allow_partial_tail {
                break;
            }
            return Err(BatchError::corrupt("truncated batch header"));
        }
        let len = be_i32(rest, 8);
        let magic = rest[16] as i8;
        if magic != 2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        let Ok(len) = usize::try_from(len) else {
            return Err(BatchError::corrupt("negative batch length"));
        };
        if len < BATCH_HEADER_LEN - 12 {
            return Err(BatchError::corrupt("batch length below the header size"));
        }
        let total = 12 + len;
        if total > rest.len() {
            if allow_partial_tail {
                break;
            }
            return Err(BatchError::corrupt("batch runs past the records field"));
        }
        let (batch, inflated) = decode_batch(data, pos, total, budget, sink)?;
        done(sink, batch, inflated);
        pos += total;
    }
    Ok(())
}

fn decode_batch(
    data: &Bytes,
    start: usize,
    total: usize,
    budget: &mut DecompressionBudget,
    sink: &mut impl RecordSink,
) -> Result<(RecordBatch, Option<Bytes>), BatchError> {
    let b = &data[start..start + total];
    let stored = be_i32(b, 17) as u32;
    let computed = crc32c::crc32c(&b[CRC_START..]);
    if stored != computed {
        return Err(BatchError::CrcMismatch { stored, computed });
    }
    let attributes = be_i16(b, 21);
    let count = be_i32(b, 57);
    let batch = RecordBatch {
        base_offset: be_i64(b, 0),
        partition_leader_epoch: be_i32(b, 12),
        attributes,
        last_offset_delta: be_i32(b, 23),
        base_timestamp: be_i64(b, 27),
        max_timestamp: be_i64(b, 35),
        producer_id: be_i64(b, 43),
        producer_epoch: be_i16(b, 51),
        base_sequence: be_i32(b, 53),
        records: Vec::new(),
    };
    let count_usize =
        usize::try_from(count).map_err(|_| BatchError::corrupt("negative record count"))?;
    let codec = batch.compression()?;
    let body_start = start + BATCH_HEADER_LEN;
    let body_end = start + total;
    let inflated = if codec == Compression::None {
        None
    } else {
        Some(decompress(codec, &data[body_start..body_end], budget)?)
    };
    let (buf, body) = match &inflated {
        None => (data, &data[..body_end]),
        Some(inflated) => (inflated, &inflated[..]),
    };
    let mut pos = if inflated.is_none() { body_start } else { 0 };
    // Every record takes at least 7 bytes; more than the bytes allow is a lie, caught before
    // anything is reserved.
    let room = (body.len() - pos) / 7;
    if count_usize > room {
        return Err(BatchError::RecordCountMismatch {
            declared: count,
            found: room,
        });
    }
    sink.begin(count_usize);
    let mut found = 0;
    while pos < body.len() {
        if found == count_usize {
            return Err(BatchError::RecordCountMismatch {
                declared: count,
                found: count_usize + 1,
            });
        }
        let entry = decode_record(body, &mut pos)?;
        sink.push_view(&batch, RecordView { buf, entry });
        found += 1;
    }
    if found != count_usize {
        return Err(BatchError::RecordCountMismatch {
            declared: count,
            found,
        });
    }
    Ok((batch, inflated))
}

/// Parses the record at `*pos` in `body` (which ends where the batch's records end) and
/// moves `*pos` past it.
#[inline(always)]
fn decode_record(body: &[u8], pos: &mut usize) -> Result<Entry, BatchError> {
    let mut outer = Cursor {
        data: body,
        pos: *pos,
    };
    let len = outer.varint()?;
    let len = usize::try_from(len).map_err(|_| BatchError::corrupt("negative record length"))?;
    if len > outer.remaining() {
        return Err(BatchError::corrupt("record runs past the batch"));
    }
    let start = outer.pos;
    let mut cur = Cursor {
        data: &body[start..start + len],
        pos: 0,
    };
    let attributes = cur.byte()? as i8;
    let timestamp_delta = cur.varlong()?;
    let offset_delta = cur.varint()?;
    let key_len = cur.nullable_len()?;
    let key_at = cur.pos - field_len(key_len);
    let value_len = cur.nullable_len()?;
    let value_at = cur.pos - field_len(value_len) - key_at;
    let header_count = cur.varint()?;
    let header_count =
        u32::try_from(header_count).map_err(|_| BatchError::corrupt("negative header count"))?;
    // A header takes at least two bytes (two varint lengths).
    if header_count as usize > cur.remaining() / 2 {
        return Err(BatchError::corrupt("header count exceeds the record"));
    }
    let headers_at = cur.pos - key_at;
    for _ in 0..header_count {
        let key_len = cur.varint()?;
        let key_len = usize::try_from(key_len)
            .map_err(|_| BatchError::corrupt("negative header key length"))?;
        cur.take(key_len)?;
        cur.nullable_len()?;
    }
    if cur.pos != len {
        return Err(BatchError::corrupt(
            "record length does not match its fields",
        ));
    }
    *pos = start + len;
    // Within one record, whose length is an i32: every position past the key fits.
    Ok(Entry {
        timestamp_delta,
        anchor: start + key_at,
        key_len,
        value_at: value_at as u32,
        value_len,
        headers_at: headers_at as u32,
        end: (len - key_at) as u32,
        header_count,
        offset_delta,
        attributes,
    })
}

#[inline]
fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

#[inline]
fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
fn uvarint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn nullable_len(b: Option<&[u8]>) -> Result<(i32, usize), BatchError> {
    match b {
        None => Ok((-1, 0)),
        Some(b) => Ok((
            i32::try_from(b.len()).map_err(|_| BatchError::corrupt("field too long"))?,
            b.len(),
        )),
    }
}

/// Writes one uncompressed v2 batch straight into a buffer, record by record, for fetch
/// responses: no list of records is built and no record is kept once written. The bytes
/// are those [`RecordBatch::encode`] writes for the same batch.
#[derive(Debug)]
pub struct BatchWriter {
    start: usize,
    base_offset: i64,
    base_timestamp: i64,
    max_timestamp: i64,
    last_offset_delta: i32,
    count: i32,
}

impl BatchWriter {
    /// Starts a batch at the end of `buf`: producer fields unset, partition leader epoch 0,
    /// uncompressed, the log-append-time bit as given.
    pub fn begin(
        buf: &mut BytesMut,
        base_offset: i64,
        base_timestamp: i64,
        log_append: bool,
    ) -> Self {
        Self::begin_as(buf, base_offset, base_timestamp, log_append, None)
    }

    /// [`BatchWriter::begin`] for a batch of a transaction: `(producer id, epoch,
    /// control)` sets the producer fields and the transactional bit, and the control bit
    /// for a batch of markers.
    pub fn begin_as(
        buf: &mut BytesMut,
        base_offset: i64,
        base_timestamp: i64,
        log_append: bool,
        transaction: Option<(i64, i16, bool)>,
    ) -> Self {
        let start = buf.len();
        let mut header = RecordBatch {
            base_offset,
            partition_leader_epoch: 0,
            attributes: if log_append { 0x8 } else { 0 },
            base_timestamp,
            max_timestamp: base_timestamp,
            ..RecordBatch::default()
        };
        if let Some((producer_id, epoch, control)) = transaction {
            header.producer_id = producer_id;
            header.producer_epoch = epoch;
            header.attributes |= 0x10 | if control { 0x20 } else { 0 };
        }
        // The last offset delta, the largest timestamp and the count are patched by finish.
        put_header(buf, &header, Compression::None, 0);
        Self {
            start,
            base_offset,
            base_timestamp,
            max_timestamp: base_timestamp,
            last_offset_delta: 0,
            count: 0,
        }
    }

    /// The batch's largest timestamp so far.
    #[must_use]
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// Appends a record at `offset` (not before the base offset) with its absolute
    /// timestamp.
    ///
    /// # Errors
    /// When an offset or length does not fit its field.
    pub fn push(
        &mut self,
        buf: &mut BytesMut,
        offset: i64,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> Result<(), BatchError> {
        let delta = i32::try_from(offset.wrapping_sub(self.base_offset))
            .map_err(|_| BatchError::corrupt("offset delta out of range"))?;
        encode_record_parts(
            buf,
            0,
            timestamp_ms.wrapping_sub(self.base_timestamp),
            delta,
            key,
            value,
            headers,
        )?;
        self.last_offset_delta = delta;
        self.max_timestamp = self.max_timestamp.max(timestamp_ms);
        self.count = self.count.saturating_add(1);
        Ok(())
    }

    /// Patches the last offset delta, the largest timestamp and the record count, then
    /// seals the batch (length and CRC).
    ///
    /// # Errors
    /// When the batch is longer than a batch may be.
    pub fn finish(self, buf: &mut BytesMut) -> Result<(), BatchError> {
        let start = self.start;
        buf[start + 23..start + 27].copy_from_slice(&self.last_offset_delta.to_be_bytes());
        buf[start + 35..start + 43].copy_from_slice(&self.max_timestamp.to_be_bytes());
        buf[start + 57..start + 61].copy_from_slice(&self.count.to_be_bytes());
        seal(buf, start)
    }
}

fn encode_record(r: &Record, buf: &mut BytesMut) -> Result<(), BatchError> {
    encode_record_parts(
        buf,
        r.attributes,
        r.timestamp_delta,
        r.offset_delta,
        r.key.as_deref(),
        r.value.as_deref(),
        &r.headers,
    )
}

fn encode_record_parts(
    buf: &mut BytesMut,
    attributes: i8,
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header],
) -> Result<(), BatchError> {
    let (key_len, key_bytes) = nullable_len(key)?;
    let (value_len, value_bytes) = nullable_len(value)?;
    let header_count =
        i32::try_from(headers.len()).map_err(|_| BatchError::corrupt("too many headers"))?;
    let mut body = 1
        + uvarint_len(zigzag64(timestamp_delta))
        + uvarint_len(u64::from(zigzag32(offset_delta)))
        + uvarint_len(u64::from(zigzag32(key_len)))
        + key_bytes
        + uvarint_len(u64::from(zigzag32(value_len)))
        + value_bytes
        + uvarint_len(u64::from(zigzag32(header_count)));
    for h in headers {
        let k =
            i32::try_from(h.key.len()).map_err(|_| BatchError::corrupt("header key too long"))?;
        let (v, vb) = nullable_len(h.value.as_deref())?;
        body += uvarint_len(u64::from(zigzag32(k)))
            + h.key.len()
            + uvarint_len(u64::from(zigzag32(v)))
            + vb;
    }
    let body = i32::try_from(body).map_err(|_| BatchError::corrupt("record too long"))?;
    let length = u64::from(zigzag32(body));
    // Sized once and filled through a slice: `BytesMut`'s one-byte writes are calls of
    // their own, which made varints most of the cost of a small record.
    let at = buf.len();
    buf.resize(at + uvarint_len(length) + body as usize, 0);
    let mut w = SliceWriter(&mut buf[at..]);
    w.uvarint(length);
    w.put(&attributes.to_be_bytes());
    w.uvarint(zigzag64(timestamp_delta));
    w.uvarint(u64::from(zigzag32(offset_delta)));
    w.uvarint(u64::from(zigzag32(key_len)));
    if let Some(k) = key {
        w.put(k);
    }
    w.uvarint(u64::from(zigzag32(value_len)));
    if let Some(v) = value {
        w.put(v);
    }
    w.uvarint(u64::from(zigzag32(header_count)));
    for h in headers {
        w.uvarint(u64::from(zigzag32(h.key.len() as i32)));
        w.put(&h.key);
        let (v, _) = nullable_len(h.value.as_deref())?;
        w.uvarint(u64::from(zigzag32(v)));
        if let Some(v) = &h.value {
            w.put(v);
        }
    }
    debug_assert!(w.0.is_empty(), "a record's size was miscounted");
    Ok(())
}

/// Writes into a slice sized beforehand, front to back.
struct SliceWriter<'a>(&'a mut [u8]);

impl SliceWriter<'_> {
    #[inline]
    fn put(&mut self, src: &[u8]) {
        let (head, rest) = std::mem::take(&mut self.0).split_at_mut(src.len());
        head.copy_from_slice(src);
        self.0 = rest;
    }

    #[inline]
    fn uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.put(&[(v as u8) | 0x80]);
            v >>= 7;
        }
        self.put(&[v as u8]);
    }
}

#[cfg(test)]
mod tests;
