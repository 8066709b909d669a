//! Kafka framing: every request and response is a 4-byte big-endian size, then that many bytes.

use bytes::{Buf, Bytes, BytesMut};

/// Kafka's `socket.request.max.bytes` default: 100 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 100 * 1024 * 1024;

/// Kafka's limit on a frame before SASL authentication completes: 512 KiB.
pub const DEFAULT_MAX_UNAUTHENTICATED_FRAME_SIZE: usize = 512 * 1024;

/// A size prefix that cannot be honoured. The connection must close without reading on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The size prefix is negative.
    #[error("negative frame size {0}")]
    NegativeSize(i32),
    /// The size prefix exceeds the configured maximum.
    #[error("frame of {size} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The declared size.
        size: usize,
        /// The limit in force.
        max: usize,
    },
}

/// Splits the next complete frame (without its size prefix) off the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed. The size is checked as soon as its four
/// bytes are there, so a hostile size is refused before anything more is buffered.
///
/// # Errors
/// When the size prefix is negative or larger than `max`.
pub fn split_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    let Some(size) = declared_size(buf, max)? else {
        return Ok(None);
    };
    if buf.len() < 4 + size {
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(size).freeze()))
}

/// How many more bytes are needed to complete the frame at the front of `buf` (at least 1
/// when it is incomplete, 0 when it is complete), once its size is known.
///
/// # Errors
/// As [`split_frame`].
pub fn bytes_wanted(buf: &[u8], max: usize) -> Result<usize, FrameError> {
    Ok(match declared_size(buf, max)? {
        None => 4 - buf.len(),
        Some(size) => (4 + size).saturating_sub(buf.len()),
    })
}

fn declared_size(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let size = i32::from_be_bytes(*prefix);
    let size = usize::try_from(size).map_err(|_| FrameError::NegativeSize(size))?;
    if size > max {
        return Err(FrameError::TooLarge { size, max });
    }
    Ok(Some(size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_frames_fed_a_byte_at_a_time() {
        let wire = b"\x00\x00\x00\x03abc\x00\x00\x00\x00\x00\x00\x00\x01z";
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for &b in wire {
            buf.extend_from_slice(&[b]);
            while let Some(f) = split_frame(&mut buf, 10).unwrap_or_else(|e| panic!("{e}")) {
                frames.push(f);
            }
        }
        assert_eq!(frames, [&b"abc"[..], b"", b"z"]);
        assert!(buf.is_empty());
    }

    #[test]
    fn refuses_hostile_sizes_from_the_prefix_alone() {
        let mut neg = BytesMut::from(&b"\xff\xff\xff\xfe"[..]);
        assert_eq!(split_frame(&mut neg, 10), Err(FrameError::NegativeSize(-2)));
        let mut big = BytesMut::from(&b"\x00\x00\x00\x0b"[..]);
        assert_eq!(
            split_frame(&mut big, 10),
            Err(FrameError::TooLarge { size: 11, max: 10 })
        );
        assert_eq!(bytes_wanted(b"\x00\x00\x00\x0a", 10), Ok(10));
        assert_eq!(bytes_wanted(b"\x00\x00", 10), Ok(2));
    }
}
