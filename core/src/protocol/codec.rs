//! Primitive Kafka wire types, the bounded [`Reader`] and the encoding helpers that the
//! generated message code is built from.
//!
//! Everything here is total: a read never panics, never reserves memory from a length it has
//! not checked against the bytes that are actually left, and reports failures as a
//! [`DecodeError`] naming the field and the byte offset.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Upper bound on the memory an array decode reserves before it has seen its elements.
///
/// A declared element count is first checked against the bytes left (every element needs at
/// least one byte on the wire); beyond that, vectors grow as elements actually decode, so the
/// memory a request costs stays proportional to what it really contains.
const MAX_PREALLOC_BYTES: usize = 64 * 1024;

/// A Kafka protocol version range, inclusive at both ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VersionRange {
    /// Lowest version, inclusive.
    pub min: i16,
    /// Highest version, inclusive.
    pub max: i16,
}

impl VersionRange {
    /// Whether `version` lies in the range.
    #[must_use]
    pub const fn contains(&self, version: i16) -> bool {
        version >= self.min && version <= self.max
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

/// A UTF-8 string that shares the memory of the frame it was decoded from.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct KStr(Bytes);

impl KStr {
    /// A string from a static literal, without allocating.
    #[must_use]
    pub const fn from_static(s: &'static str) -> Self {
        Self(Bytes::from_static(s.as_bytes()))
    }

    /// Validates `bytes` as UTF-8 and wraps it without copying.
    ///
    /// # Errors
    /// Returns the UTF-8 error when `bytes` is not valid UTF-8.
    pub fn from_utf8(bytes: Bytes) -> Result<Self, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Self(bytes))
    }

    /// The string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Invariant of the type: every constructor validated or was given a `str`. The
        // fallback is unreachable but keeps this total without `unsafe`.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The underlying bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the string is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::ops::Deref for KStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for KStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for KStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for KStr {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}

impl From<&str> for KStr {
    fn from(s: &str) -> Self {
        Self(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl PartialEq<str> for KStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for KStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A 128-bit Kafka UUID (topic ids, directory ids). All zeros is Kafka's "no id".
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// The all-zero UUID.
    pub const NIL: Self = Self([0; 16]);

    /// Whether this is the all-zero UUID.
    #[must_use]
    pub fn is_nil(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Tagged fields that this version of the schemas does not know, kept in ascending tag order
/// so that they are written back exactly as they came.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct UnknownTaggedFields(Vec<(u32, Bytes)>);

impl UnknownTaggedFields {
    /// Adds a field, keeping ascending tag order (stable for repeated tags).
    pub fn insert(&mut self, tag: u32, data: Bytes) {
        let at = self.0.partition_point(|(t, _)| *t <= tag);
        self.0.insert(at, (tag, data));
    }

    /// The fields, in ascending tag order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Bytes)> {
        self.0.iter().map(|(t, d)| (*t, d))
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Debug for UnknownTaggedFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(t, d)| (t, d)))
            .finish()
    }
}

/// What went wrong while decoding, without the location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The field needs more bytes than are left.
    #[error("needs {needed} bytes, {remaining} left")]
    Truncated {
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the frame.
        remaining: usize,
    },
    /// A length or count is negative (other than -1 for null) or otherwise impossible.
    #[error("invalid length {0}")]
    InvalidLength(i64),
    /// An array declares more elements than the bytes left could hold.
    #[error("{count} elements cannot fit in {remaining} bytes")]
    TooManyElements {
        /// The declared count.
        count: usize,
        /// Bytes left in the frame.
        remaining: usize,
    },
    /// A null where this version does not allow one.
    #[error("null is not allowed here")]
    UnexpectedNull,
    /// A string that is not UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// An unsigned varint longer than 5 bytes.
    #[error("varint is too long")]
    VarintTooLong,
    /// The message does not exist in this version.
    #[error("unsupported version")]
    UnsupportedVersion,
    /// The API key is not one the codec knows.
    #[error("unknown API key")]
    UnknownApiKey,
}

/// A message could not be decoded.
///
/// Names the API key and version of the message (-1 for headers and for errors raised before
/// they were known), the field, and the byte offset within the frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode {field} of API key {api_key} v{version} at byte {offset}: {kind}")]
pub struct DecodeError {
    /// The API key, or -1.
    pub api_key: i16,
    /// The version, or -1.
    pub version: i16,
    /// The field, as `Struct.Field`.
    pub field: &'static str,
    /// Offset from the start of the frame (after its size prefix).
    pub offset: usize,
    /// What went wrong.
    pub kind: DecodeErrorKind,
}

impl DecodeError {
    /// Adds the message context to an error raised by a primitive read.
    #[must_use]
    pub fn context(mut self, api_key: i16, version: i16) -> Self {
        self.api_key = api_key;
        self.version = version;
        self
    }
}

/// What went wrong while encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeErrorKind {
    /// A null in a field that is not nullable in this version.
    #[error("null is not allowed in this version")]
    NullNotAllowed,
    /// A non-default value in a field this version does not have.
    #[error("field does not exist in this version")]
    FieldNotInVersion,
    /// A string, bytes or array longer than its length prefix can express.
    #[error("too long: {0}")]
    TooLong(usize),
    /// The message does not exist in this version.
    #[error("unsupported version")]
    UnsupportedVersion,
}

/// A message could not be encoded at the requested version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode {field} of API key {api_key} v{version}: {kind}")]
pub struct EncodeError {
    /// The API key, or -1 for headers.
    pub api_key: i16,
    /// The version.
    pub version: i16,
    /// The field, as `Struct.Field`.
    pub field: &'static str,
    /// What went wrong.
    pub kind: EncodeErrorKind,
}

impl EncodeError {
    /// An error in `field`, without the message context.
    #[must_use]
    pub fn new(field: &'static str, kind: EncodeErrorKind) -> Self {
        Self {
            api_key: -1,
            version: -1,
            field,
            kind,
        }
    }

    /// Adds the message context.
    #[must_use]
    pub fn context(mut self, api_key: i16, version: i16) -> Self {
        self.api_key = api_key;
        self.version = version;
        self
    }
}

/// A bounded cursor over one frame. Reads return zero-copy slices of the frame.
#[derive(Debug, Clone)]
pub struct Reader {
    buf: Bytes,
    /// Frame offset of the first byte of `buf`, for error reports.
    consumed: usize,
}

type R<T> = Result<T, DecodeError>;

macro_rules! read_int {
    ($(#[$doc:meta] $name:ident: $t:ty, $get:ident;)*) => {$(
        #[$doc]
        ///
        /// # Errors
        /// When fewer bytes are left than the type needs.
        #[inline]
        pub fn $name(&mut self, field: &'static str) -> R<$t> {
            self.need(std::mem::size_of::<$t>(), field)?;
            self.consumed += std::mem::size_of::<$t>();
            Ok(self.buf.$get())
        }
    )*};
}

impl Reader {
    /// A reader over `buf`, whose first byte is at frame offset `offset`.
    #[must_use]
    pub fn new(buf: Bytes, offset: usize) -> Self {
        Self {
            buf,
            consumed: offset,
        }
    }

    /// Bytes left.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Frame offset of the next byte.
    #[must_use]
    pub fn offset(&self) -> usize {
        self.consumed
    }

    /// What is left, without copying.
    #[must_use]
    pub fn into_rest(self) -> Bytes {
        self.buf
    }

    /// An error at the current offset.
    #[must_use]
    pub fn error(&self, field: &'static str, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            api_key: -1,
            version: -1,
            field,
            offset: self.consumed,
            kind,
        }
    }

    #[inline]
    fn need(&self, needed: usize, field: &'static str) -> R<()> {
        if self.buf.len() < needed {
            return Err(self.error(
                field,
                DecodeErrorKind::Truncated {
                    needed,
                    remaining: self.buf.len(),
                },
            ));
        }
        Ok(())
    }

    read_int! {
        /// Reads an `int8`.
        i8: i8, get_i8;
        /// Reads an `int16`.
        i16: i16, get_i16;
        /// Reads a `uint16`.
        u16: u16, get_u16;
        /// Reads an `int32`.
        i32: i32, get_i32;
        /// Reads an `int64`.
        i64: i64, get_i64;
        /// Reads a `float64`.
        f64: f64, get_f64;
    }

    /// Reads a `bool` (any non-zero byte is true, as in Kafka).
    ///
    /// # Errors
    /// When no byte is left.
    #[inline]
    pub fn bool(&mut self, field: &'static str) -> R<bool> {
        Ok(self.i8(field)? != 0)
    }

    /// Reads a `uuid`.
    ///
    /// # Errors
    /// When fewer than 16 bytes are left.
    #[inline]
    pub fn uuid(&mut self, field: &'static str) -> R<Uuid> {
        self.need(16, field)?;
        let mut id = [0; 16];
        self.buf.copy_to_slice(&mut id);
        self.consumed += 16;
        Ok(Uuid(id))
    }

    /// Reads an unsigned varint of at most 5 bytes.
    ///
    /// # Errors
    /// When the bytes run out or the varint is longer than 5 bytes.
    #[inline]
    pub fn uvarint(&mut self, field: &'static str) -> R<u32> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let Some(&b) = self.buf.first() else {
                return Err(self.error(
                    field,
                    DecodeErrorKind::Truncated {
                        needed: 1,
                        remaining: 0,
                    },
                ));
            };
            self.buf.advance(1);
            self.consumed += 1;
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.error(field, DecodeErrorKind::VarintTooLong))
    }

    /// Splits off the next `len` bytes as a reader of their own.
    ///
    /// # Errors
    /// When fewer than `len` bytes are left.
    pub fn sub_reader(&mut self, len: usize, field: &'static str) -> R<Reader> {
        let offset = self.consumed;
        let bytes = self.take(len, field)?;
        Ok(Reader::new(bytes, offset))
    }

    #[inline]
    fn take(&mut self, len: usize, field: &'static str) -> R<Bytes> {
        self.need(len, field)?;
        self.consumed += len;
        Ok(self.buf.split_to(len))
    }

    /// Reads a length prefix: `Ok(None)` for null.
    fn length(&mut self, compact: bool, wide: bool, field: &'static str) -> R<Option<usize>> {
        let start = self.consumed;
        let len: i64 = if compact {
            i64::from(self.uvarint(field)?) - 1
        } else if wide {
            i64::from(self.i32(field)?)
        } else {
            i64::from(self.i16(field)?)
        };
        match len {
            -1 => Ok(None),
            n if n < 0 => Err(DecodeError {
                offset: start,
                ..self.error(field, DecodeErrorKind::InvalidLength(n))
            }),
            // Lossless on every target this builds for: n < 2^32.
            n => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
        }
    }

    /// Reads a string that may be null.
    ///
    /// # Errors
    /// On truncation, a bad length or invalid UTF-8.
    pub fn nullable_string(&mut self, compact: bool, field: &'static str) -> R<Option<KStr>> {
        let start = self.consumed;
        let Some(len) = self.length(compact, false, field)? else {
            return Ok(None);
        };
        if len > i16::MAX as usize {
            return Err(DecodeError {
                offset: start,
                ..self.error(field, DecodeErrorKind::InvalidLength(len as i64))
            });
        }
        let bytes = self.take(len, field)?;
        KStr::from_utf8(bytes).map(Some).map_err(|_| DecodeError {
            offset: start,
            ..self.error(field, DecodeErrorKind::InvalidUtf8)
        })
    }

    /// Reads a string that must not be null.
    ///
    /// # Errors
    /// On truncation, a bad length, null or invalid UTF-8.
    pub fn string(&mut self, compact: bool, field: &'static str) -> R<KStr> {
        let start = self.consumed;
        self.nullable_string(compact, field)?
            .ok_or_else(|| DecodeError {
                offset: start,
                ..self.error(field, DecodeErrorKind::UnexpectedNull)
            })
    }

    /// Reads `bytes` (or `records`) that may be null.
    ///
    /// # Errors
    /// On truncation or a bad length.
    pub fn nullable_bytes(&mut self, compact: bool, field: &'static str) -> R<Option<Bytes>> {
        match self.length(compact, true, field)? {
            None => Ok(None),
            Some(len) => self.take(len, field).map(Some),
        }
    }

    /// Reads `bytes` (or `records`) that must not be null.
    ///
    /// # Errors
    /// On truncation, a bad length or null.
    pub fn bytes(&mut self, compact: bool, field: &'static str) -> R<Bytes> {
        let start = self.consumed;
        self.nullable_bytes(compact, field)?
            .ok_or_else(|| DecodeError {
                offset: start,
                ..self.error(field, DecodeErrorKind::UnexpectedNull)
            })
    }

    /// Reads an array that may be null; `min_size` is the fewest bytes one element can take.
    ///
    /// # Errors
    /// On truncation, a bad count, a count the bytes left cannot hold, or an element error.
    pub fn nullable_array<T>(
        &mut self,
        compact: bool,
        min_size: usize,
        field: &'static str,
        mut element: impl FnMut(&mut Self) -> R<T>,
    ) -> R<Option<Vec<T>>> {
        let start = self.consumed;
        let Some(count) = self.length(compact, true, field)? else {
            return Ok(None);
        };
        if count > self.buf.len() / min_size.max(1) {
            return Err(DecodeError {
                offset: start,
                ..self.error(
                    field,
                    DecodeErrorKind::TooManyElements {
                        count,
                        remaining: self.buf.len(),
                    },
                )
            });
        }
        let prealloc = MAX_PREALLOC_BYTES / std::mem::size_of::<T>().max(1);
        let mut items = Vec::with_capacity(count.min(prealloc));
        for _ in 0..count {
            items.push(element(self)?);
        }
        Ok(Some(items))
    }

    /// Reads an array that must not be null.
    ///
    /// # Errors
    /// As [`Reader::nullable_array`], and on null.
    pub fn array<T>(
        &mut self,
        compact: bool,
        min_size: usize,
        field: &'static str,
        element: impl FnMut(&mut Self) -> R<T>,
    ) -> R<Vec<T>> {
        let start = self.consumed;
        self.nullable_array(compact, min_size, field, element)?
            .ok_or_else(|| DecodeError {
                offset: start,
                ..self.error(field, DecodeErrorKind::UnexpectedNull)
            })
    }

    /// Reads the presence marker of a nullable struct: `false` for null.
    ///
    /// # Errors
    /// When no byte is left.
    pub fn struct_marker(&mut self, field: &'static str) -> R<bool> {
        Ok(self.i8(field)? >= 0)
    }

    /// Reads a tagged-field section. `known` decodes the tags this version knows from a reader
    /// limited to the field's bytes and returns `false` for tags it does not know, which are
    /// then kept in `unknown`.
    ///
    /// # Errors
    /// On truncation, or an error from `known`.
    pub fn tagged_fields(
        &mut self,
        unknown: &mut UnknownTaggedFields,
        field: &'static str,
        mut known: impl FnMut(u32, &mut Self) -> R<bool>,
    ) -> R<()> {
        let count = self.uvarint(field)?;
        for _ in 0..count {
            let tag = self.uvarint(field)?;
            let len = self.uvarint(field)? as usize;
            let mut sub = self.sub_reader(len, field)?;
            if !known(tag, &mut sub)? {
                unknown.insert(tag, sub.into_rest());
            }
        }
        Ok(())
    }
}

/// The buffer messages encode into. Dereferences to the caller's [`BytesMut`]; when made
/// with [`Out::splicing`], a `records` field at least that long is not copied into it but
/// kept aside with its position, so a large fetch response goes out as the encoded frame
/// around the record batches it already holds (written as separate buffers).
#[derive(Debug, Default)]
pub struct Out {
    buf: BytesMut,
    spliced: Vec<(usize, Bytes)>,
    splice_from: Option<usize>,
}

impl Out {
    /// Encodes into `buf`, copying every field.
    #[must_use]
    pub fn new(buf: BytesMut) -> Self {
        Self {
            buf,
            spliced: Vec::new(),
            splice_from: None,
        }
    }

    /// Encodes into `buf`, keeping `records` fields of at least `min` bytes aside.
    #[must_use]
    pub fn splicing(buf: BytesMut, min: usize) -> Self {
        Self {
            buf,
            spliced: Vec::new(),
            splice_from: Some(min),
        }
    }

    /// The bytes kept aside so far, in all.
    #[must_use]
    pub fn spliced_len(&self) -> usize {
        self.spliced.iter().map(|(_, b)| b.len()).sum()
    }

    /// The buffer, and each field kept aside with the position in the buffer where it
    /// belongs, in order.
    #[must_use]
    pub fn finish(self) -> (BytesMut, Vec<(usize, Bytes)>) {
        (self.buf, self.spliced)
    }

    /// Writes a `records` field's bytes: copied, or kept aside when splicing and long enough.
    fn put_records(&mut self, b: &Bytes) {
        if self.splice_from.is_some_and(|min| b.len() >= min) {
            self.spliced.push((self.buf.len(), b.clone()));
        } else {
            self.buf.put_slice(b);
        }
    }
}

impl std::ops::Deref for Out {
    type Target = BytesMut;
    fn deref(&self) -> &BytesMut {
        &self.buf
    }
}

impl std::ops::DerefMut for Out {
    fn deref_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }
}

/// Encoding helpers. Lengths are checked; every helper appends to a caller-owned buffer.
pub mod write {
    use super::{
        BufMut, Bytes, BytesMut, EncodeError, EncodeErrorKind, KStr, Out, UnknownTaggedFields,
    };

    type W = Result<(), EncodeError>;

    /// Writes an unsigned varint.
    #[inline]
    pub fn uvarint(buf: &mut BytesMut, mut v: u32) {
        while v >= 0x80 {
            // Truncation is the point: the low seven bits with the continuation bit.
            buf.put_u8((v as u8) | 0x80);
            v >>= 7;
        }
        buf.put_u8(v as u8);
    }

    /// Bytes an unsigned varint takes.
    #[must_use]
    pub fn uvarint_len(v: u32) -> usize {
        match v {
            0..=0x7f => 1,
            0x80..=0x3fff => 2,
            0x4000..=0x1f_ffff => 3,
            0x20_0000..=0xfff_ffff => 4,
            _ => 5,
        }
    }

    fn length(
        buf: &mut BytesMut,
        compact: bool,
        wide: bool,
        len: Option<usize>,
        field: &'static str,
    ) -> W {
        let max = if wide {
            i32::MAX as usize
        } else {
            i16::MAX as usize
        };
        match len {
            Some(n) if n > max => Err(EncodeError::new(field, EncodeErrorKind::TooLong(n))),
            // n <= i32::MAX, so the casts below are lossless.
            Some(n) if compact => {
                uvarint(buf, n as u32 + 1);
                Ok(())
            }
            Some(n) if wide => {
                buf.put_i32(n as i32);
                Ok(())
            }
            Some(n) => {
                buf.put_i16(n as i16);
                Ok(())
            }
            None if compact => {
                uvarint(buf, 0);
                Ok(())
            }
            None if wide => {
                buf.put_i32(-1);
                Ok(())
            }
            None => {
                buf.put_i16(-1);
                Ok(())
            }
        }
    }

    fn null_check(nullable: bool, field: &'static str) -> W {
        if nullable {
            Ok(())
        } else {
            Err(EncodeError::new(field, EncodeErrorKind::NullNotAllowed))
        }
    }

    /// Writes a string.
    ///
    /// # Errors
    /// When it is longer than 32767 bytes.
    pub fn string(buf: &mut BytesMut, compact: bool, s: &KStr, field: &'static str) -> W {
        length(buf, compact, false, Some(s.len()), field)?;
        buf.put_slice(s.as_bytes());
        Ok(())
    }

    /// Writes a string that may be null.
    ///
    /// # Errors
    /// When it is too long, or null where `nullable` is false.
    pub fn nullable_string(
        buf: &mut BytesMut,
        compact: bool,
        nullable: bool,
        s: Option<&KStr>,
        field: &'static str,
    ) -> W {
        match s {
            Some(s) => string(buf, compact, s, field),
            None => {
                null_check(nullable, field)?;
                length(buf, compact, false, None, field)
            }
        }
    }

    /// Writes `bytes` or `records`.
    ///
    /// # Errors
    /// When longer than `i32::MAX`.
    pub fn bytes(buf: &mut BytesMut, compact: bool, b: &Bytes, field: &'static str) -> W {
        length(buf, compact, true, Some(b.len()), field)?;
        buf.put_slice(b);
        Ok(())
    }

    /// Writes a `records` field that may be null; a long one may be kept aside (see
    /// [`Out::splicing`]).
    ///
    /// # Errors
    /// When too long, or null where `nullable` is false.
    pub fn records(
        buf: &mut Out,
        compact: bool,
        nullable: bool,
        b: Option<&Bytes>,
        field: &'static str,
    ) -> W {
        match b {
            Some(b) => {
                length(buf, compact, true, Some(b.len()), field)?;
                buf.put_records(b);
                Ok(())
            }
            None => nullable_bytes(buf, compact, nullable, None, field),
        }
    }

    /// Writes `bytes` or `records` that may be null.
    ///
    /// # Errors
    /// When too long, or null where `nullable` is false.
    pub fn nullable_bytes(
        buf: &mut BytesMut,
        compact: bool,
        nullable: bool,
        b: Option<&Bytes>,
        field: &'static str,
    ) -> W {
        match b {
            Some(b) => bytes(buf, compact, b, field),
            None => {
                null_check(nullable, field)?;
                length(buf, compact, true, None, field)
            }
        }
    }

    /// Writes an array's length prefix (`None` for null).
    ///
    /// # Errors
    /// When too long, or null where `nullable` is false.
    pub fn array_len(
        buf: &mut BytesMut,
        compact: bool,
        nullable: bool,
        len: Option<usize>,
        field: &'static str,
    ) -> W {
        if len.is_none() {
            null_check(nullable, field)?;
        }
        length(buf, compact, true, len, field)
    }

    /// Writes the presence marker of a nullable struct.
    ///
    /// # Errors
    /// When null where `nullable` is false.
    pub fn struct_marker(
        buf: &mut BytesMut,
        nullable: bool,
        present: bool,
        field: &'static str,
    ) -> W {
        if present {
            buf.put_i8(1);
        } else {
            null_check(nullable, field)?;
            buf.put_i8(-1);
        }
        Ok(())
    }

    /// Fails when a field that this version lacks holds a non-default value.
    ///
    /// # Errors
    /// When `is_default` is false.
    pub fn absent(is_default: bool, field: &'static str) -> W {
        if is_default {
            Ok(())
        } else {
            Err(EncodeError::new(field, EncodeErrorKind::FieldNotInVersion))
        }
    }

    /// Collects the tagged fields of one struct and writes them in ascending tag order,
    /// merged with the unknown ones that were decoded.
    #[derive(Debug, Default)]
    pub struct TaggedWriter {
        known: Vec<(u32, Out)>,
    }

    impl TaggedWriter {
        /// A writer with no fields.
        #[must_use]
        pub fn new() -> Self {
            Self::default()
        }

        /// Starts a known field and returns the buffer to encode its value into.
        pub fn field(&mut self, tag: u32) -> &mut Out {
            self.known.push((tag, Out::default()));
            let last = self.known.len() - 1;
            &mut self.known[last].1
        }

        /// Writes the section.
        ///
        /// # Errors
        /// When a field is longer than a varint can express.
        pub fn finish(
            mut self,
            buf: &mut BytesMut,
            unknown: &UnknownTaggedFields,
            field: &'static str,
        ) -> W {
            if self.known.is_empty() && unknown.is_empty() {
                buf.put_u8(0);
                return Ok(());
            }
            self.known.sort_by_key(|(tag, _)| *tag);
            let total = self.known.len() + unknown.len();
            uvarint(
                buf,
                u32::try_from(total)
                    .map_err(|_| EncodeError::new(field, EncodeErrorKind::TooLong(total)))?,
            );
            let mut known = self.known.iter().peekable();
            let mut unknown = unknown.iter().peekable();
            loop {
                let (tag, data): (u32, &[u8]) = match (known.peek(), unknown.peek()) {
                    (Some((kt, _)), Some((ut, _))) if *ut < *kt => {
                        unknown.next().map(|(t, d)| (t, &d[..]))
                    }
                    (Some(_), _) => known.next().map(|(t, d)| (*t, &d[..])),
                    (None, Some(_)) => unknown.next().map(|(t, d)| (t, &d[..])),
                    (None, None) => break,
                }
                .unwrap_or((0, &[]));
                let len = u32::try_from(data.len())
                    .map_err(|_| EncodeError::new(field, EncodeErrorKind::TooLong(data.len())))?;
                uvarint(buf, tag);
                uvarint(buf, len);
                buf.put_slice(data);
            }
            Ok(())
        }
    }
}

#[cfg(feature = "arbitrary")]
mod arbitrary_impls {
    use super::{Bytes, KStr, UnknownTaggedFields};
    use arbitrary::{Arbitrary, Result, Unstructured};

    impl<'a> Arbitrary<'a> for KStr {
        fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
            Ok(KStr::from(<&str>::arbitrary(u)?))
        }
    }

    impl<'a> Arbitrary<'a> for UnknownTaggedFields {
        fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
            let mut fields = UnknownTaggedFields::default();
            for _ in 0..u.int_in_range(0..=2)? {
                // Tags far above any the schemas use, so they stay unknown.
                let tag = u.int_in_range(10_000..=10_010)?;
                fields.insert(tag, Bytes::copy_from_slice(<&[u8]>::arbitrary(u)?));
            }
            Ok(fields)
        }
    }

    /// `arbitrary` for `Bytes` fields.
    pub(crate) fn bytes(u: &mut Unstructured<'_>) -> Result<Bytes> {
        Ok(Bytes::copy_from_slice(<&[u8]>::arbitrary(u)?))
    }

    /// `arbitrary` for nullable `Bytes` fields.
    pub(crate) fn opt_bytes(u: &mut Unstructured<'_>) -> Result<Option<Bytes>> {
        Ok(if u.arbitrary()? {
            Some(bytes(u)?)
        } else {
            None
        })
    }
}

#[cfg(feature = "arbitrary")]
pub(crate) use arbitrary_impls::{bytes as arbitrary_bytes, opt_bytes as arbitrary_opt_bytes};
