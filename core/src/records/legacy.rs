//! Legacy message sets (magic 0 and 1), as Produce v0–v2 carry them, decoded into the same
//! [`RecordBatch`] shape as v2 batches so that the rest of the gateway sees one kind of data.
//!
//! A message set is a sequence of `[offset i64][size i32][message]`; a message is
//! `[crc u32][magic i8][attributes i8]([timestamp i64] in magic 1)[key][value]`, with the
//! CRC-32 (IEEE) over everything after it. A compressed message's value is itself a message
//! set of uncompressed messages.

use bytes::Bytes;

use super::{decompress, BatchError, Compression, DecompressionBudget, Record, RecordBatch};

/// Kafka's "no timestamp", which magic-0 messages have.
const NO_TIMESTAMP: i64 = -1;

/// The smallest message: CRC, magic, attributes, two null lengths.
const MIN_MESSAGE: usize = 4 + 1 + 1 + 4 + 4;

/// Decodes a legacy message set into one batch whose records keep the set's order.
///
/// # Errors
/// On a bad CRC, bad lengths, nested compression, an unknown codec or magic, or when
/// decompression exceeds the budget.
pub fn decode_message_set(
    data: &Bytes,
    budget: &mut DecompressionBudget,
) -> Result<RecordBatch, BatchError> {
    let mut records = Vec::new();
    let mut log_append_time = false;
    walk(data, budget, &mut records, &mut log_append_time, false)?;
    let base_timestamp = records
        .first()
        .map_or(NO_TIMESTAMP, |r: &(i64, Record)| r.0);
    let max_timestamp = records.iter().map(|r| r.0).max().unwrap_or(NO_TIMESTAMP);
    let count = records.len();
    Ok(RecordBatch {
        attributes: if log_append_time { 0x8 } else { 0 },
        last_offset_delta: i32::try_from(count.saturating_sub(1)).unwrap_or(i32::MAX),
        base_timestamp,
        max_timestamp,
        records: records
            .into_iter()
            .enumerate()
            .map(|(i, (ts, mut r))| {
                r.offset_delta = i32::try_from(i).unwrap_or(i32::MAX);
                r.timestamp_delta = ts.wrapping_sub(base_timestamp);
                r
            })
            .collect(),
        ..RecordBatch::default()
    })
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_i64(b: &[u8]) -> i64 {
    let mut x = [0; 8];
    x.copy_from_slice(&b[..8]);
    i64::from_be_bytes(x)
}

fn nullable(data: &Bytes, pos: &mut usize, end: usize) -> Result<Option<Bytes>, BatchError> {
    if end - *pos < 4 {
        return Err(BatchError::corrupt("truncated message field length"));
    }
    let len = be_i32(&data[*pos..]);
    *pos += 4;
    match len {
        -1 => Ok(None),
        n if n < 0 => Err(BatchError::corrupt("negative message field length")),
        n if n as usize > end - *pos => {
            Err(BatchError::corrupt("message field runs past the message"))
        }
        n => {
            let s = data.slice(*pos..*pos + n as usize);
            *pos += n as usize;
            Ok(Some(s))
        }
    }
}

fn walk(
    data: &Bytes,
    budget: &mut DecompressionBudget,
    out: &mut Vec<(i64, Record)>,
    log_append_time: &mut bool,
    inner: bool,
) -> Result<(), BatchError> {
    let mut pos = 0;
    while pos < data.len() {
        if data.len() - pos < 12 {
            return Err(BatchError::corrupt("truncated message set entry"));
        }
        let size = be_i32(&data[pos + 8..]);
        pos += 12;
        let size =
            usize::try_from(size).map_err(|_| BatchError::corrupt("negative message size"))?;
        if size < MIN_MESSAGE || size > data.len() - pos {
            return Err(BatchError::corrupt("message size out of bounds"));
        }
        let end = pos + size;
        let stored = u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]);
        let computed = crc32fast::hash(&data[pos + 4..end]);
        if stored != computed {
            return Err(BatchError::CrcMismatch { stored, computed });
        }
        let magic = data[pos + 4] as i8;
        let attributes = data[pos + 5];
        let mut at = pos + 6;
        let timestamp = match magic {
            0 => NO_TIMESTAMP,
            1 => {
                if end - at < 8 {
                    return Err(BatchError::corrupt("truncated message timestamp"));
                }
                at += 8;
                be_i64(&data[at - 8..])
            }
            other => return Err(BatchError::UnsupportedMagic(other)),
        };
        if magic == 1 && attributes & 0x8 != 0 {
            *log_append_time = true;
        }
        let key = nullable(data, &mut at, end)?;
        let value = nullable(data, &mut at, end)?;
        if at != end {
            return Err(BatchError::corrupt(
                "message size does not match its fields",
            ));
        }
        let codec = Compression::from_id(attributes & 0x7)?;
        if codec == Compression::None {
            out.push((
                timestamp,
                Record {
                    key,
                    value,
                    ..Record::default()
                },
            ));
        } else {
            if inner {
                return Err(BatchError::corrupt("nested compression"));
            }
            let value =
                value.ok_or_else(|| BatchError::corrupt("compressed message without a value"))?;
            let inflated = if codec == Compression::Lz4 && magic == 0 {
                decompress(codec, &fix_lz4_header_checksum(&value)?, budget)?
            } else {
                decompress(codec, &value, budget)?
            };
            let first = out.len();
            walk(&inflated, budget, out, log_append_time, true)?;
            // Magic 1 wrappers carry the timestamp for LogAppendTime sets.
            if magic == 1 && attributes & 0x8 != 0 {
                for r in &mut out[first..] {
                    r.0 = timestamp;
                }
            }
        }
        pos = end;
    }
    Ok(())
}

/// Kafka's magic-0 LZ4 writer computed the frame descriptor checksum over the frame magic
/// too. This recomputes it the standard way so that a standard decoder accepts the frame.
fn fix_lz4_header_checksum(frame: &[u8]) -> Result<Vec<u8>, BatchError> {
    let flg = *frame
        .get(4)
        .ok_or_else(|| BatchError::corrupt("truncated LZ4 frame"))?;
    // FLG, BD, then the content size when FLG bit 3 says so; the checksum follows.
    let hc_at = 6 + if flg & 0x08 != 0 { 8 } else { 0 };
    if frame.len() <= hc_at {
        return Err(BatchError::corrupt("truncated LZ4 frame descriptor"));
    }
    let mut fixed = frame.to_vec();
    fixed[hc_at] = lz4_header_checksum(&frame[4..hc_at]);
    Ok(fixed)
}

/// The LZ4 frame descriptor checksum: the second byte of the xxHash32 of the descriptor.
pub(crate) fn lz4_header_checksum(descriptor: &[u8]) -> u8 {
    (twox_hash::XxHash32::oneshot(0, descriptor) >> 8) as u8
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};

    use super::*;
    use crate::records::compress;

    fn message(
        magic: i8,
        attributes: u8,
        ts: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut m = BytesMut::new();
        m.put_i8(magic);
        m.put_u8(attributes);
        if magic == 1 {
            m.put_i64(ts);
        }
        for f in [key, value] {
            match f {
                None => m.put_i32(-1),
                Some(b) => {
                    m.put_i32(b.len() as i32);
                    m.put_slice(b);
                }
            }
        }
        let mut out = crc32fast::hash(&m).to_be_bytes().to_vec();
        out.extend_from_slice(&m);
        out
    }

    fn entry(offset: i64, msg: &[u8]) -> Vec<u8> {
        let mut e = offset.to_be_bytes().to_vec();
        e.extend_from_slice(&(msg.len() as i32).to_be_bytes());
        e.extend_from_slice(msg);
        e
    }

    fn plain_set(magic: i8) -> Vec<u8> {
        let mut set = entry(0, &message(magic, 0, 1000, Some(b"k1"), Some(b"v1")));
        set.extend(entry(1, &message(magic, 0, 1005, None, None)));
        set.extend(entry(2, &message(magic, 0, 1002, Some(b""), Some(b""))));
        set
    }

    fn check(batch: &RecordBatch, magic: i8) {
        let r = &batch.records;
        assert_eq!(r.len(), 3);
        assert_eq!(
            (r[0].key.as_deref(), r[0].value.as_deref()),
            (Some(&b"k1"[..]), Some(&b"v1"[..]))
        );
        assert_eq!((r[1].key.as_deref(), r[1].value.as_deref()), (None, None));
        assert_eq!(
            (r[2].key.as_deref(), r[2].value.as_deref()),
            (Some(&b""[..]), Some(&b""[..]))
        );
        assert_eq!(
            r.iter().map(|r| r.offset_delta).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        if magic == 1 {
            assert_eq!(batch.base_timestamp, 1000);
            assert_eq!(batch.max_timestamp, 1005);
            assert_eq!(r[2].timestamp_delta, 2);
        } else {
            assert_eq!(batch.base_timestamp, NO_TIMESTAMP);
        }
    }

    #[test]
    fn uncompressed_and_compressed_sets_of_both_magics_decode() {
        for magic in [0i8, 1] {
            let set = plain_set(magic);
            let mut budget = DecompressionBudget::new(1 << 20);
            check(
                &decode_message_set(&Bytes::from(set.clone()), &mut budget)
                    .unwrap_or_else(|e| panic!("{e}")),
                magic,
            );
            for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4] {
                let mut packed = Vec::new();
                compress(codec, &set, &mut packed).unwrap_or_else(|e| panic!("{e}"));
                if codec == Compression::Lz4 && magic == 0 {
                    // What Kafka's magic-0 writer produced: the checksum taken over the magic too.
                    let hc_at = 6 + if packed[4] & 0x08 != 0 { 8 } else { 0 };
                    packed[hc_at] = lz4_header_checksum(&packed[..hc_at]);
                }
                let wrapper = entry(2, &message(magic, codec.id(), 1005, None, Some(&packed)));
                let batch = decode_message_set(&Bytes::from(wrapper), &mut budget)
                    .unwrap_or_else(|e| panic!("{codec:?} magic {magic}: {e}"));
                check(&batch, magic);
            }
        }
    }

    #[test]
    fn bad_crc_and_nested_compression_are_refused() {
        let mut set = plain_set(1);
        let last = set.len() - 1;
        set[last] ^= 1;
        let err = decode_message_set(&Bytes::from(set), &mut DecompressionBudget::new(1 << 20))
            .expect_err("crc");
        assert!(matches!(err, BatchError::CrcMismatch { .. }));

        let mut inner = Vec::new();
        compress(Compression::Gzip, &plain_set(1), &mut inner).unwrap_or_else(|e| panic!("{e}"));
        let once = entry(0, &message(1, 1, 0, None, Some(&inner)));
        let mut twice = Vec::new();
        compress(Compression::Gzip, &once, &mut twice).unwrap_or_else(|e| panic!("{e}"));
        let outer = entry(0, &message(1, 1, 0, None, Some(&twice)));
        let err = decode_message_set(&Bytes::from(outer), &mut DecompressionBudget::new(1 << 20))
            .expect_err("nested");
        assert_eq!(err, BatchError::Corrupt("nested compression"));
    }
}
