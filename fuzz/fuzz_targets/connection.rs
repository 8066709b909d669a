//! The connection state machine under arbitrary input, pieces, timing, completions (from a
//! real embedded store and group coordinator, in arbitrary order) and shutdown: it never panics, every byte it
//! emits is a well-formed response frame, and once it is closed it stays closed.
#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::BytesMut;
use std::future::Future;
use std::task::{Context, Poll, Waker};

use iggy_kafka_core::backend::Completion;
use iggy_kafka_core::driver::{Later, Shared, Started};
use iggy_kafka_core::group::{Coordinator, GroupConfig};
use iggy_kafka_core::protocol::frame::split_frame;
use iggy_kafka_core::work::{Outcome, Work};
use iggy_kafka_core::{Config, Connection};
use iggy_kafka_embedded::{EmbeddedStore, StoreConfig};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Step {
    Input(Vec<u8>),
    Advance(u16),
    Transmit,
    /// Run the command at this position among those handed out, if any.
    Complete(u8),
    /// Hand out every command the connection has.
    Poll,
    Shutdown,
}

fuzz_target!(|steps: Vec<Step>| {
    let start = Instant::now();
    let mut now = start;
    let mut config = Config::default();
    config.max_frame_size = 1 << 20;
    config.idle_timeout = Duration::from_secs(60);
    config.request_timeout = Duration::from_secs(5);
    let mut conn = Connection::new(Arc::new(config), now);
    let store = EmbeddedStore::new(StoreConfig::default());
    let shared = Shared::new(Arc::new(store), Coordinator::new(GroupConfig::default(), 1));
    let mut handed_out = Vec::new();
    // Group calls still waiting for the coordinator (joins, syncs).
    let mut waiting = Vec::new();
    let mut cx = Context::from_waker(Waker::noop());
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
                shared.groups().handle_timeout(now);
                let mut i = 0;
                while i < waiting.len() {
                    let (id, f): &mut (_, Later) = &mut waiting[i];
                    if let Poll::Ready(c) = std::pin::Pin::new(f).poll(&mut cx) {
                        let id = *id;
                        drop(waiting.remove(i));
                        conn.handle_outcome(now, id, c);
                    } else {
                        i += 1;
                    }
                }
            }
            Step::Transmit => {
                while let Some(b) = conn.poll_transmit() {
                    output.extend_from_slice(&b);
                }
            }
            Step::Poll => handed_out.extend(std::iter::from_fn(|| conn.poll_work())),
            Step::Complete(i) => {
                if !handed_out.is_empty() {
                    let (id, command) = handed_out.remove(usize::from(i) % handed_out.len());
                    let is_group = matches!(command, Work::Group(_));
                    match shared.execute(now, command) {
                        Started::Done(c) => conn.handle_outcome(now, id, c),
                        Started::Later(f) if is_group => waiting.push((id, f)),
                        // Watches complete as if something arrived.
                        Started::Later(_) => {
                            conn.handle_outcome(now, id, Outcome::Store(Completion::Watch))
                        }
                    }
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
    while let Some(frame) =
        split_frame(&mut output, usize::MAX).expect("response frames are well formed")
    {
        assert!(
            frame.len() >= 4,
            "a response has at least its correlation id"
        );
    }
    assert!(output.is_empty(), "no partial response frame");
});
