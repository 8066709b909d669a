//! Frame splitting over arbitrary bytes arriving in arbitrary pieces: never panics, and the
//! frames it yields are exactly the size-prefixed pieces of the input.
#![no_main]

use bytes::BytesMut;
use iggy_kafka_core::protocol::frame::{bytes_wanted, split_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, u16, &[u8])| {
    let (piece, max, data) = input;
    let piece = usize::from(piece).max(1);
    let max = usize::from(max);
    let mut buf = BytesMut::new();
    let mut rebuilt = Vec::new();
    let mut failed = false;
    'feed: for chunk in data.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            match split_frame(&mut buf, max) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= max);
                    rebuilt.extend_from_slice(&(frame.len() as u32).to_be_bytes());
                    rebuilt.extend_from_slice(&frame);
                }
                Ok(None) => {
                    assert!(bytes_wanted(&buf, max).is_ok_and(|n| n > 0));
                    break;
                }
                Err(_) => {
                    failed = true;
                    break 'feed;
                }
            }
        }
    }
    // Everything split off is a prefix of the input, and what is left is the rest of it.
    assert_eq!(&data[..rebuilt.len()], &rebuilt[..]);
    if !failed {
        assert_eq!(rebuilt.len() + buf.len(), data.len());
    }
});
