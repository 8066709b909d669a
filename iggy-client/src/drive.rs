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
//!
//! When the lanes use TLS ([`Lanes::with_tls`]), the same loop runs every connection
//! through one [`TlsSession`] (rustls, without I/O): the handshake is part of connecting,
//! ciphertext is read into a buffer of its own and decrypted into the session's input,
//! and the session's frames are encrypted before the write, a part at a time
//! ([`iggy_kafka_tls::WRITE_CHUNK`]). Both runtimes get TLS from this one place.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_lite::future;
use iggy_kafka_tls::TlsSession;
use tracing::Instrument;

use crate::lane::{LaneDriver, Lanes};
use crate::login::{self, LoginOutcome};
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

/// A task of the pool, for the adapter to spawn.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The futures that keep each lane of `lanes` connected to Iggy (to the node its driver
/// picks from [`Lanes::nodes`], with the driver's backoff), each in a tracing span naming
/// its lane; and those that run the pool's login checks ([`login_tasks`]). They never end
/// on their own: the adapter spawns them and drops them when it stops.
pub fn lane_tasks<R: Runtime + Clone>(
    runtime: &R,
    lanes: &Arc<Lanes>,
    config: &SessionConfig,
) -> Vec<Task> {
    let mut tasks: Vec<Task> = (0..lanes.len())
        .map(|index| {
            let driver = LaneDriver::new(Arc::clone(lanes), index, config.clone(), Instant::now());
            let span = tracing::info_span!("iggy", lane = index);
            Box::pin(run_lane(runtime.clone(), driver).instrument(span)) as Task
        })
        .collect();
    tasks.extend(login_tasks(runtime, lanes, config));
    tasks
}

/// The [`login::CONCURRENT`] futures that run the checks queued on [`Lanes::logins`]: each
/// takes the next check, connects to the node the pool would (over TLS when the pool
/// does), logs in with the check's credentials on a session of its own, and closes.
pub fn login_tasks<R: Runtime + Clone>(
    runtime: &R,
    lanes: &Arc<Lanes>,
    config: &SessionConfig,
) -> Vec<Task> {
    (0..login::CONCURRENT)
        .map(|index| {
            let (runtime, lanes) = (runtime.clone(), Arc::clone(lanes));
            // Client ids of their own, apart from the lanes' (see `lane`).
            let base = config.client_id.rotate_left(64) ^ (u128::from(index as u64 + 1) << 100);
            let span = tracing::info_span!("iggy-login", task = index);
            Box::pin(
                async move {
                    for n in 0u64.. {
                        let check = lanes.logins().next().await;
                        let run = async {
                            run_check(&runtime, &lanes, &check.credentials, base ^ u128::from(n))
                                .await
                        };
                        let timer = async {
                            runtime
                                .sleep_until(Instant::now() + login::CHECK_TIMEOUT)
                                .await;
                            LoginOutcome::Failed(format!(
                                "Iggy did not answer within {:?}",
                                login::CHECK_TIMEOUT
                            ))
                        };
                        check.finish(future::or(run, timer).await);
                    }
                }
                .instrument(span),
            ) as Task
        })
        .collect()
}

/// Logs in with `credentials` on a connection of its own, and says how Iggy answered.
async fn run_check<R: Runtime>(
    runtime: &R,
    lanes: &Lanes,
    credentials: &crate::Credentials,
    client_id: u128,
) -> LoginOutcome {
    let address = lanes.nodes().next_address();
    let mut stream = match runtime.connect(&address).await {
        Ok(s) => s,
        Err(e) => return LoginOutcome::Failed(format!("{address}: {e}")),
    };
    let mut wire = BytesMut::new();
    let mut input = BytesMut::new();
    let mut tls = match lanes.tls().map(|t| t.session(&address)).transpose() {
        Ok(t) => t,
        Err(e) => return LoginOutcome::Failed(e.to_string()),
    };
    if let Some(t) = tls.as_mut() {
        if let Err(Handshake::Refused(e) | Handshake::Failed(e)) =
            handshake(runtime, &mut stream, t, &mut wire, &mut input).await
        {
            return LoginOutcome::Failed(format!("{address}: {e}"));
        }
    }
    let mut session = login::session(credentials.clone(), client_id, Instant::now());
    if !input.is_empty() {
        session.handle_input(&input, Instant::now());
    }
    let mut out = R::Outbox::default();
    loop {
        while let Some(event) = session.poll_event() {
            if let Some(outcome) = login::outcome_of(event) {
                return outcome;
            }
        }
        let written = match tls.as_mut() {
            None => {
                out.extend(std::iter::from_fn(|| session.poll_transmit()));
                R::write_all(&mut stream, &mut out).await
            }
            Some(t) => {
                let frames: Vec<Bytes> = std::iter::from_fn(|| session.poll_transmit()).collect();
                write_sealed::<R>(&mut stream, &mut out, t, &frames).await
            }
        };
        if let Err(e) = written {
            return LoginOutcome::Failed(format!("{address}: {e}"));
        }
        wire.clear();
        if wire.capacity() < READ_CHUNK / 4 {
            wire.reserve(READ_CHUNK);
        }
        match R::read(&mut stream, &mut wire).await {
            Ok(0) => session.handle_closed(),
            Err(e) => return LoginOutcome::Failed(format!("{address}: {e}")),
            Ok(_) => match tls.as_mut() {
                None => session.handle_input(&wire, Instant::now()),
                Some(t) => {
                    input.clear();
                    if let Err(e) = t.handle_ciphertext(&wire, &mut input) {
                        return LoginOutcome::Failed(format!("{address}: {e}"));
                    }
                    session.handle_input(&input, Instant::now());
                }
            },
        }
    }
}

enum Woken {
    Read(io::Result<usize>),
    Changed,
    Timeout,
}

/// How long a TLS handshake with Iggy may take before the attempt counts as failed.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn run_lane<R: Runtime>(runtime: R, mut d: LaneDriver) {
    // Ciphertext read from a TLS connection, before it is decrypted into the session's
    // input buffer.
    let mut wire = BytesMut::new();
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
        // TLS is part of connecting: a handshake that fails (an untrusted certificate, a
        // server without TLS) is a failed attempt, retried with the lane's backoff.
        let mut tls = match d.tls().map(|t| t.session(&address)).transpose() {
            Ok(t) => t,
            Err(e) => {
                d.connect_failed(&e.to_string(), Instant::now());
                continue;
            }
        };
        let mut early = BytesMut::new();
        if let Some(t) = tls.as_mut() {
            wire.clear();
            match handshake(&runtime, &mut stream, t, &mut wire, &mut early).await {
                Ok(()) => {}
                Err(Handshake::Refused(e)) => {
                    d.tls_refused(&e, Instant::now());
                    continue;
                }
                Err(Handshake::Failed(e)) => {
                    d.connect_failed(&e, Instant::now());
                    continue;
                }
            }
        }
        tracing::debug!(%address, tls = tls.is_some(), "connected to Iggy");
        d.connected(Instant::now());
        if !early.is_empty() {
            if let Some(input) = d.input_buffer() {
                input.extend_from_slice(&early);
                d.handle_received(Instant::now());
            }
        }
        let mut out = R::Outbox::default();
        while d.has_session() {
            // Listening before pumping: calls queued meanwhile still wake the loop.
            let changed = d.changed();
            d.pump(Instant::now());
            let written = match tls.as_mut() {
                None => {
                    out.extend(std::iter::from_fn(|| d.poll_transmit()));
                    R::write_all(&mut stream, &mut out).await
                }
                Some(t) => {
                    let frames: Vec<Bytes> = std::iter::from_fn(|| d.poll_transmit()).collect();
                    write_sealed::<R>(&mut stream, &mut out, t, &frames).await
                }
            };
            if let Err(e) = written {
                tracing::debug!(error = %e, "write to Iggy failed");
                d.handle_closed(Instant::now());
                continue;
            }
            let timeout = d.poll_timeout();
            let buf = if tls.is_some() {
                &mut wire
            } else {
                match d.input_buffer() {
                    Some(input) => input,
                    None => continue,
                }
            };
            if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                buf.reserve(READ_CHUNK);
            }
            let read = async { Woken::Read(R::read(&mut stream, buf).await) };
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
                Woken::Read(Ok(_)) => match tls.as_mut() {
                    None => d.handle_received(Instant::now()),
                    Some(t) => decrypt(&mut d, t, &mut wire),
                },
                Woken::Changed => {}
                Woken::Timeout => d.handle_timeout(Instant::now()),
            }
        }
    }
}

/// Encrypts `frames` with `tls` and writes the ciphertext, a part at a time
/// ([`TlsSession::write_part`]), each part written before the next is encrypted: Iggy
/// decrypts the start of a large append while the rest is encrypted.
async fn write_sealed<R: Runtime>(
    stream: &mut R::Stream,
    out: &mut R::Outbox,
    tls: &mut TlsSession,
    frames: &[Bytes],
) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = frames.iter().map(|f| IoSlice::new(f)).collect();
    let mut rest = &mut slices[..];
    loop {
        let n = tls.write_part(rest);
        IoSlice::advance_slices(&mut rest, n);
        out.extend(std::iter::from_fn(|| tls.poll_transmit()));
        R::write_all(stream, out).await?;
        if rest.is_empty() {
            return Ok(());
        }
    }
}

/// Hands the ciphertext in `wire` to `tls` and the plaintext it gives to the session.
fn decrypt(d: &mut LaneDriver, tls: &mut TlsSession, wire: &mut BytesMut) {
    let Some(input) = d.input_buffer() else {
        return;
    };
    let received = tls.handle_ciphertext(wire, input);
    wire.clear();
    match received {
        Ok(r) => {
            d.handle_received(Instant::now());
            if r.peer_closed {
                d.handle_closed(Instant::now());
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, node = %d.address(), "TLS with Iggy failed; reconnecting");
            d.handle_closed(Instant::now());
        }
    }
}

/// Why a handshake did not complete, for the lane's log.
enum Handshake {
    /// The node's answer broke it: trying again cannot help.
    Refused(String),
    /// The connection failed or went quiet.
    Failed(String),
}

/// Runs `tls`'s handshake on `stream`; plaintext that arrives with its end goes to
/// `early`.
async fn handshake<R: Runtime>(
    runtime: &R,
    stream: &mut R::Stream,
    tls: &mut TlsSession,
    wire: &mut BytesMut,
    early: &mut BytesMut,
) -> Result<(), Handshake> {
    let deadline = Instant::now() + TLS_HANDSHAKE_TIMEOUT;
    let mut out = R::Outbox::default();
    loop {
        out.extend(std::iter::from_fn(|| tls.poll_transmit()));
        R::write_all(stream, &mut out)
            .await
            .map_err(|e| Handshake::Failed(format!("TLS handshake: {e}")))?;
        if !tls.is_handshaking() {
            return Ok(());
        }
        if wire.capacity() - wire.len() < READ_CHUNK / 4 {
            wire.reserve(READ_CHUNK);
        }
        let read = async { Some(R::read(stream, wire).await) };
        let timer = async {
            runtime.sleep_until(deadline).await;
            None
        };
        match future::or(read, timer).await {
            None => {
                return Err(Handshake::Failed(
                    "TLS handshake: no answer in time (does the node serve TLS?)".into(),
                ))
            }
            Some(Ok(0)) => {
                return Err(Handshake::Failed(
                    "TLS handshake: the node closed the connection (does it serve TLS?)".into(),
                ))
            }
            Some(Err(e)) => return Err(Handshake::Failed(format!("TLS handshake: {e}"))),
            Some(Ok(_)) => {}
        }
        let received = tls.handle_ciphertext(wire, early);
        wire.clear();
        if let Err(e) = received {
            // The alert that tells the node why, if it can still be written.
            out.extend(std::iter::from_fn(|| tls.poll_transmit()));
            let _ = R::write_all(stream, &mut out).await;
            return Err(Handshake::Refused(e.to_string()));
        }
    }
}
