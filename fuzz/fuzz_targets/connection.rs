//! The connection state machine under arbitrary input, pieces, timing and shutdown: it never
//! panics, every byte it emits is a well-formed response frame, and once it is closed it
//! stays closed.
#![no_main]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::BytesMut;
use iggy_kafka_core::frame::split_frame;
use iggy_kafka_core::{Config, Connection};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Step {
    Input(Vec<u8>),
    Advance(u16),
    Transmit,
    Shutdown,
}

fuzz_target!(|steps: Vec<Step>| {
    let start = Instant::now();
    let mut now = start;
    let mut config = Config::default();
    config.max_frame_size = 1 << 20;
    config.idle_timeout = Duration::from_secs(60);
    let mut conn = Connection::new(config, now);
    let mut input = BytesMut::new();
    let mut output = BytesMut::new();
    let mut was_closed = false;
    for step in steps {
        match step {
            Step::Input(bytes) => {
                input.extend_from_slice(&bytes);
                conn.handle_input(now, &mut input);
            }
            Step::Advance(ms) => {
                now += Duration::from_millis(u64::from(ms) * 10);
                if conn.poll_timeout().is_some_and(|t| t <= now) {
                    conn.handle_timeout(now);
                }
            }
            Step::Transmit => {
                while let Some(b) = conn.poll_transmit() {
                    output.extend_from_slice(&b);
                }
            }
            Step::Shutdown => conn.shutdown(),
        }
        if was_closed {
            assert!(conn.is_closed() && conn.poll_transmit().is_none());
        }
        was_closed = conn.is_closed();
    }
    while let Some(b) = conn.poll_transmit() {
        output.extend_from_slice(&b);
    }
    while let Some(frame) = split_frame(&mut output, usize::MAX).expect("response frames are well formed") {
        assert!(frame.len() >= 4, "a response has at least its correlation id");
    }
    assert!(output.is_empty(), "no partial response frame");
});
