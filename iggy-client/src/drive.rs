//! The one loop that keeps a lane connected to Iggy and moves its bytes, for any runtime.
//!
//! A runtime adapter implements [`Runtime`]: connect, read into a buffer it is given, write
//! gathered frames, sleep. [`lane_tasks`] gives one future per lane; the adapter spawns them
//! and drops them at shutdown. The loop follows the call order of [`crate::lane`]: it reads
//! straight into the session's input buffer on every runtime (replies carry whole message
//! batches, which are then sliced, never copied), writes everything the session has in one
//! vectored write (a large request's header and payload leave together, not as a lone
//! header segment the server must wait past), and sleeps until the socket has bytes, the
//! lane has new calls, or the session's deadline passes.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_lite::future;
use tracing::Instrument;

use crate::lane::{LaneDriver, Lanes};
use crate::session::SessionConfig;

/// A read never has less free space than a quarter of this, and grows the buffer by this.
pub const READ_CHUNK: usize = 64 * 1024;

/// What the lane loop needs of an async runtime.
pub trait Runtime: Send + Sync + 'static {
    /// A connected byte stream.
    type Stream: Send;
    /// Frames gathered for vectored writes.
    type Outbox: Default + Extend<Bytes> + Send;

    /// Connects to `address` (`host:port`), with Nagle's algorithm off: requests are
    /// written whole, and each waits for its reply.
    fn connect(&self, address: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send;

    /// Reads what `stream` has into `buf`'s spare capacity, after what `buf` holds; `Ok(0)`
    /// at the end of the stream. Dropped before it completes, it leaves `buf` as it was.
    fn read(
        stream: &mut Self::Stream,
        buf: &mut BytesMut,
    ) -> impl Future<Output = io::Result<usize>> + Send;

    /// Writes everything in `out`, emptying it.
    fn write_all(
        stream: &mut Self::Stream,
        out: &mut Self::Outbox,
    ) -> impl Future<Output = io::Result<()>> + Send;

    /// Resolves at `deadline`.
    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send;
}

/// The futures that keep each lane of `lanes` connected to Iggy (to the node its driver
/// picks from [`Lanes::nodes`], with the driver's backoff), each in a tracing span naming
/// its lane. They never end on their own: the adapter spawns them and drops them when it
/// stops.
pub fn lane_tasks<R: Runtime + Clone>(
    runtime: &R,
    lanes: &Arc<Lanes>,
    config: &SessionConfig,
) -> Vec<impl Future<Output = ()> + Send + 'static> {
    (0..lanes.len())
        .map(|index| {
            let driver = LaneDriver::new(Arc::clone(lanes), index, config.clone(), Instant::now());
            let span = tracing::info_span!("iggy", lane = index);
            run_lane(runtime.clone(), driver).instrument(span)
        })
        .collect()
}

enum Woken {
    Read(io::Result<usize>),
    Changed,
    Timeout,
}

async fn run_lane<R: Runtime>(runtime: R, mut d: LaneDriver) {
    loop {
        runtime.sleep_until(d.connect_at()).await;
        let address = d.next_address().to_owned();
        let mut stream = match runtime.connect(&address).await {
            Ok(s) => s,
            Err(e) => {
                d.connect_failed(&e.to_string(), Instant::now());
                continue;
            }
        };
        tracing::debug!(%address, "connected to Iggy");
        d.connected(Instant::now());
        let mut out = R::Outbox::default();
        while d.has_session() {
            // Listening before pumping: calls queued meanwhile still wake the loop.
            let changed = d.changed();
            d.pump(Instant::now());
            out.extend(std::iter::from_fn(|| d.poll_transmit()));
            if let Err(e) = R::write_all(&mut stream, &mut out).await {
                tracing::debug!(error = %e, "write to Iggy failed");
                d.handle_closed(Instant::now());
                continue;
            }
            let timeout = d.poll_timeout();
            let Some(input) = d.input_buffer() else {
                continue;
            };
            if input.capacity() - input.len() < READ_CHUNK / 4 {
                input.reserve(READ_CHUNK);
            }
            let read = async { Woken::Read(R::read(&mut stream, input).await) };
            let woken = async {
                changed.await;
                Woken::Changed
            };
            let timer = async {
                match timeout {
                    Some(t) => runtime.sleep_until(t).await,
                    None => future::pending().await,
                }
                Woken::Timeout
            };
            match future::or(read, future::or(woken, timer)).await {
                Woken::Read(Ok(0)) => d.handle_closed(Instant::now()),
                Woken::Read(Err(e)) => {
                    tracing::debug!(error = %e, "read from Iggy failed");
                    d.handle_closed(Instant::now());
                }
                Woken::Read(Ok(_)) => d.handle_received(Instant::now()),
                Woken::Changed => {}
                Woken::Timeout => d.handle_timeout(Instant::now()),
            }
        }
    }
}
