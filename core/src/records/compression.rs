//! The four compression codecs of Kafka record batches, each through a maintained crate, with
//! every decompression bounded by a budget shared by all batches of a request.

use std::io::{self, Read, Write};

use bytes::Bytes;

use super::BatchError;

/// The codec in a batch's attributes (bits 0–2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[non_exhaustive]
pub enum Compression {
    /// Uncompressed.
    #[default]
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// Snappy: raw, or in the xerial framing that Java clients write.
    Snappy,
    /// The LZ4 frame format.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// The codec with attribute bits `id`.
    ///
    /// # Errors
    /// For ids 5–7, which Kafka does not define.
    pub fn from_id(id: u8) -> Result<Self, BatchError> {
        Ok(match id {
            0 => Self::None,
            1 => Self::Gzip,
            2 => Self::Snappy,
            3 => Self::Lz4,
            4 => Self::Zstd,
            other => return Err(BatchError::UnknownCompression(other)),
        })
    }

    /// The attribute bits.
    #[must_use]
    pub fn id(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Gzip => 1,
            Self::Snappy => 2,
            Self::Lz4 => 3,
            Self::Zstd => 4,
        }
    }

    /// Every codec, for tests and benchmarks.
    pub const ALL: [Compression; 5] = [Self::None, Self::Gzip, Self::Snappy, Self::Lz4, Self::Zstd];
}

/// How many decompressed bytes the batches of one request may still produce.
///
/// A decompression bomb exhausts the budget and fails with [`BatchError::TooLarge`] instead of
/// exhausting memory: no codec is ever asked for more than what is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecompressionBudget {
    remaining: usize,
}

impl DecompressionBudget {
    /// A budget of `bytes`.
    #[must_use]
    pub fn new(bytes: usize) -> Self {
        Self { remaining: bytes }
    }

    /// What is left.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    fn spend(&mut self, bytes: usize) -> Result<(), BatchError> {
        self.remaining = self
            .remaining
            .checked_sub(bytes)
            .ok_or(BatchError::TooLarge)?;
        Ok(())
    }
}

/// xerial snappy-java framing: magic, then version and compatible version (both 1).
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";

/// Zstandard window limit (log2): 2^25 = 32 MiB, well above what Kafka clients use, so that a
/// hostile frame header cannot make the decoder reserve more.
const ZSTD_WINDOW_LOG_MAX: u32 = 25;

/// Decompresses `data`, producing at most what `budget` has left.
///
/// # Errors
/// [`BatchError::TooLarge`] when the output would exceed the budget, [`BatchError::Decompression`]
/// when the input is not valid for the codec.
pub fn decompress(
    codec: Compression,
    data: &[u8],
    budget: &mut DecompressionBudget,
) -> Result<Bytes, BatchError> {
    let out = match codec {
        Compression::None => return Ok(Bytes::copy_from_slice(data)),
        Compression::Gzip => read_bounded(flate2::read::GzDecoder::new(data), budget.remaining)?,
        Compression::Snappy => snappy_decompress(data, budget.remaining)?,
        Compression::Lz4 => {
            read_bounded(lz4_flex::frame::FrameDecoder::new(data), budget.remaining)?
        }
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(data)
                .map_err(BatchError::decompression)?;
            decoder
                .window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(BatchError::decompression)?;
            read_bounded(decoder, budget.remaining)?
        }
    };
    budget.spend(out.len())?;
    Ok(Bytes::from(out))
}

/// Reads everything `r` produces, failing as soon as it produces more than `limit` bytes.
fn read_bounded(r: impl Read, limit: usize) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    // One byte past the limit tells "exactly the limit" from "more"; saturating, as the
    // limit may be usize::MAX.
    let mut limited = r.take((limit as u64).saturating_add(1));
    limited
        .read_to_end(&mut out)
        .map_err(BatchError::decompression)?;
    if out.len() > limit {
        return Err(BatchError::TooLarge);
    }
    Ok(out)
}

fn snappy_raw(block: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    // The declared length is checked before anything is reserved (CVE-2023-34455).
    let len = snap::raw::decompress_len(block).map_err(BatchError::decompression)?;
    if len > limit.saturating_sub(out.len()) {
        return Err(BatchError::TooLarge);
    }
    let start = out.len();
    out.resize(start + len, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(BatchError::decompression)?;
    out.truncate(start + written);
    Ok(())
}

fn snappy_decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    let Some(mut rest) = data.strip_prefix(XERIAL_MAGIC.as_slice()) else {
        snappy_raw(data, limit, &mut out)?;
        return Ok(out);
    };
    // Version and minimum compatible version, then length-prefixed raw blocks.
    rest = rest
        .get(8..)
        .ok_or_else(|| BatchError::corrupt("truncated xerial snappy header"))?;
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| BatchError::corrupt("truncated xerial snappy block length"))?;
        let len = u32::from_be_bytes(*len) as usize;
        let block = tail
            .get(..len)
            .ok_or_else(|| BatchError::corrupt("truncated xerial snappy block"))?;
        snappy_raw(block, limit, &mut out)?;
        rest = &tail[len..];
    }
    Ok(out)
}

/// Compresses `data` with `codec` into `out`. Snappy is written in the xerial framing, which
/// every Kafka client reads (Java clients need it).
///
/// # Errors
/// Only what `out` or the codec report; writing to memory does not fail.
pub fn compress(codec: Compression, data: &[u8], mut out: impl Write) -> io::Result<()> {
    match codec {
        Compression::None => out.write_all(data)?,
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            e.write_all(data)?;
            e.finish()?;
        }
        Compression::Snappy => {
            out.write_all(XERIAL_MAGIC)?;
            out.write_all(&1u32.to_be_bytes())?;
            out.write_all(&1u32.to_be_bytes())?;
            // snappy-java's block size.
            let mut encoder = snap::raw::Encoder::new();
            for chunk in data.chunks(32 * 1024) {
                let block = encoder.compress_vec(chunk).map_err(io::Error::other)?;
                let len = u32::try_from(block.len()).map_err(io::Error::other)?;
                out.write_all(&len.to_be_bytes())?;
                out.write_all(&block)?;
            }
        }
        Compression::Lz4 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(out);
            e.write_all(data)?;
            e.finish().map_err(io::Error::other)?;
        }
        Compression::Zstd => {
            let mut e = zstd::stream::write::Encoder::new(out, 3)?;
            e.write_all(data)?;
            e.finish()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for codec in Compression::ALL {
            let mut packed = Vec::new();
            compress(codec, &data, &mut packed).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
            let mut budget = DecompressionBudget::new(data.len());
            let back = decompress(codec, &packed, &mut budget)
                .unwrap_or_else(|e| panic!("{codec:?}: {e}"));
            assert_eq!(&back[..], &data[..], "{codec:?}");
            if codec != Compression::None {
                assert_eq!(budget.remaining(), 0, "{codec:?} spends what it inflates");
            }
        }
    }

    #[test]
    fn a_bomb_exhausts_the_budget_not_the_memory() {
        // 64 MiB of zeros compresses to a few KiB with every codec.
        let zeros = vec![0u8; 64 << 20];
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut packed = Vec::new();
            compress(codec, &zeros, &mut packed).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                packed.len() < 4 << 20,
                "{codec:?} packed to {}",
                packed.len()
            );
            let mut budget = DecompressionBudget::new(1 << 20);
            assert_eq!(
                decompress(codec, &packed, &mut budget),
                Err(BatchError::TooLarge),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn an_unlimited_budget_still_inflates() {
        let mut packed = Vec::new();
        compress(Compression::Lz4, b"hello", &mut packed).unwrap_or_else(|e| panic!("{e}"));
        let mut budget = DecompressionBudget::new(usize::MAX);
        assert_eq!(
            &decompress(Compression::Lz4, &packed, &mut budget).unwrap_or_else(|e| panic!("{e}"))[..],
            b"hello"
        );
    }

    #[test]
    fn raw_snappy_declaring_a_huge_length_is_refused_before_allocating() {
        // A raw snappy block whose varint header claims 2^32-1 bytes.
        let block = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        let mut budget = DecompressionBudget::new(1 << 20);
        assert!(decompress(Compression::Snappy, &block, &mut budget).is_err());
    }
}
