//! Runs the gateway's sans-IO core on smol and async-io: accepts connections, moves bytes
//! between each socket and its [`Connection`], hands the connection's commands to the
//! backend, and sleeps until the next input, completion or deadline. Nothing
//! protocol-specific lives here, and nothing here needs tokio.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::pin::Pin;

use async_io::Timer;
use bytes::BytesMut;
use futures_lite::{future, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use iggy_kafka_core::backend::{CommandId, Completion};
use iggy_kafka_core::driver::{Commands, Shared, Transmit};
use iggy_kafka_core::iggy::{Clock, LaneDriver, Lanes, SessionConfig};
use iggy_kafka_core::{Config, Connection};
use smol::net::{TcpListener, TcpStream};
use smol::Executor;

/// Bytes read per system call at most.
const READ_CHUNK: usize = 64 * 1024;

/// How long shutdown waits for connections to flush what they answered.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Starts a smol executor with one thread per core, builds what the connections share with
/// `start` (given the executor, so that it may spawn, e.g. [`spawn_iggy_lanes`], and wait for
/// a backend), binds `listen`, reports the bound address to `on_bound` (which gives the
/// connections' configuration: the advertised port may depend on it), and serves until
/// SIGINT or SIGTERM.
///
/// # Errors
/// When `start` fails, the address cannot be bound or signals cannot be watched.
pub fn run<S>(
    listen: SocketAddr,
    start: impl FnOnce(Arc<Executor<'static>>) -> S,
    on_bound: impl FnOnce(SocketAddr) -> Arc<Config>,
) -> io::Result<()>
where
    S: Future<Output = io::Result<Arc<Shared>>>,
{
    let ex = Arc::new(Executor::new());
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let (stop_threads, threads_stopped) = smol::channel::unbounded::<()>();
    let mut workers = Vec::new();
    for i in 0..threads.saturating_sub(1) {
        let ex = ex.clone();
        let done = threads_stopped.clone();
        workers.push(
            std::thread::Builder::new()
                .name(format!("smol-{i}"))
                .spawn(move || future::block_on(ex.run(done.recv())))?,
        );
    }
    let result = future::block_on(ex.run(async {
        let shared = start(ex.clone()).await?;
        let listener = TcpListener::bind(listen).await?;
        let config = on_bound(listener.local_addr()?);
        let mut signals =
            async_signal::Signals::new([async_signal::Signal::Int, async_signal::Signal::Term])?;
        let shutdown = async move {
            if let Some(Ok(sig)) = signals.next().await {
                tracing::info!(signal = ?sig, "signal received, shutting down");
            }
        };
        serve(&ex, listener, config, shared, shutdown).await
    }));
    drop(stop_threads);
    for w in workers {
        let _ = w.join();
    }
    result
}

/// Serves connections from `listener` on `ex` until `shutdown` completes; then stops
/// accepting, lets every connection flush what it has answered, and returns.
///
/// # Errors
/// Only on a listener failure that retrying cannot cure; per-connection errors are logged.
pub async fn serve(
    ex: &Executor<'static>,
    listener: TcpListener,
    config: Arc<Config>,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    // Closing this channel tells every connection to stop taking requests.
    let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
    let mut tasks = Vec::new();
    // Dropped (and so cancelled) when serving ends.
    let _timers = ex.spawn(drive_groups(shared.clone()));
    let accept = async {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let span = tracing::info_span!("conn", %peer);
                    let stop = stop_rx.clone();
                    tasks.retain(|t: &smol::Task<()>| !t.is_finished());
                    tasks.push(ex.spawn(tracing::Instrument::instrument(
                        drive(stream, config.clone(), shared.clone(), stop),
                        span,
                    )));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    Timer::after(Duration::from_millis(100)).await;
                }
            }
        }
    };
    future::or(accept, shutdown).await;
    drop(listener);
    // Members waiting in a rebalance are told to look for the coordinator again.
    shared.groups().shutdown();
    drop(stop_tx);
    let all = async {
        for t in tasks {
            t.await;
        }
        true
    };
    let drained = future::or(all, async {
        Timer::after(SHUTDOWN_GRACE).await;
        false
    })
    .await;
    if !drained {
        tracing::warn!("connections still open after the grace period; dropping them");
    }
    Ok(())
}

enum Event {
    Read(io::Result<usize>),
    Completed(Vec<(CommandId, Completion)>),
    Timeout,
    Stop,
}

async fn drive(
    mut stream: TcpStream,
    config: Arc<Config>,
    shared: Arc<Shared>,
    stop: smol::channel::Receiver<()>,
) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    tracing::debug!("accepted");
    let mut conn = Connection::new(config, Instant::now());
    if let Ok(peer) = stream.peer_addr() {
        conn.set_client_host(format!("/{}", peer.ip()));
    }
    let mut commands = Commands::new();
    let mut transmit = Transmit::new();
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut stopping = false;
    loop {
        commands.pump(&mut conn, &shared, &mut buf, Instant::now());
        if let Err(e) = write_out(&mut stream, &mut conn, &mut transmit).await {
            tracing::debug!(error = %e, "write failed");
            return;
        }
        if conn.is_closed() {
            break;
        }
        let deadline = commands.next_deadline(&conn);
        let wants_input = conn.wants_input();
        let filled = buf.len();
        if wants_input {
            // Safe Rust cannot read into uninitialised memory, so the headroom is zeroed.
            let room = conn.read_capacity(&buf, READ_CHUNK);
            buf.reserve(room);
            // Zeroing costs as much as reading: zero what one read is likely to fill.
            buf.resize(filled + room.min(4 * READ_CHUNK), 0);
        }
        let read = async {
            if wants_input {
                Event::Read(stream.read(&mut buf[filled..]).await)
            } else {
                future::pending().await
            }
        };
        let completed = async {
            if commands.is_empty() {
                future::pending().await
            } else {
                Event::Completed(future::poll_fn(|cx| commands.poll_ready(cx)).await)
            }
        };
        let timer = async {
            match deadline {
                Some(d) => {
                    Timer::at(d).await;
                    Event::Timeout
                }
                None => future::pending().await,
            }
        };
        let stopped = async {
            if stopping {
                future::pending().await
            } else {
                let _ = stop.recv().await;
                Event::Stop
            }
        };
        let event = future::or(read, future::or(completed, future::or(timer, stopped))).await;
        match event {
            Event::Read(Ok(0)) => {
                tracing::debug!("peer closed");
                return;
            }
            Event::Read(Ok(n)) => buf.truncate(filled + n),
            Event::Read(Err(e)) => {
                tracing::debug!(error = %e, "read failed");
                return;
            }
            Event::Completed(ready) => {
                buf.truncate(filled);
                Commands::complete(&mut conn, Instant::now(), ready);
            }
            Event::Timeout => {
                buf.truncate(filled);
                let now = Instant::now();
                commands.handle_timeout(&mut conn, now);
                conn.handle_timeout(now);
            }
            Event::Stop => {
                buf.truncate(filled);
                stopping = true;
                conn.shutdown();
            }
        }
    }
    let _ = stream.close().await;
    tracing::debug!(reason = ?conn.close_reason(), "closed");
}

/// Drives the group coordinator's timers: sleeps until its next deadline or until a call
/// moves it, then lets it act.
async fn drive_groups(shared: Arc<Shared>) {
    let groups = shared.groups();
    loop {
        let changed = groups.changed();
        let deadline = groups.poll_timeout();
        let sleep = async {
            match deadline {
                Some(d) => {
                    Timer::at(d).await;
                }
                None => future::pending::<()>().await,
            }
        };
        future::or(changed, sleep).await;
        groups.handle_timeout(Instant::now());
    }
}

/// async-io's clock, for backends that wait.
#[derive(Debug, Clone, Copy, Default)]
pub struct SmolClock;

impl Clock for SmolClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            Timer::at(deadline).await;
        })
    }
}

/// Connects each of `lanes` to the Iggy server at `address` and keeps it connected (with the
/// lane driver's backoff), as tasks on `ex` that end with it.
pub fn spawn_iggy_lanes(
    ex: &Executor<'static>,
    lanes: &Arc<Lanes>,
    address: &str,
    config: &SessionConfig,
) {
    for index in 0..lanes.len() {
        let driver = LaneDriver::new(Arc::clone(lanes), index, config.clone(), Instant::now());
        let span = tracing::info_span!("iggy", lane = index);
        ex.spawn(tracing::Instrument::instrument(
            drive_lane(driver, Arc::clone(lanes), index, address.to_owned()),
            span,
        ))
        .detach();
    }
}

enum LaneEvent {
    Read(io::Result<usize>),
    Changed,
    Timeout,
}

async fn drive_lane(mut d: LaneDriver, lanes: Arc<Lanes>, index: usize, address: String) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        Timer::at(d.connect_at()).await;
        let mut stream = match TcpStream::connect(address.as_str()).await {
            Ok(s) => s,
            Err(e) => {
                d.connect_failed(&e.to_string(), Instant::now());
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tracing::debug!(%address, "connected to Iggy");
        d.connected(Instant::now());
        let mut out = Transmit::new();
        loop {
            let changed = lanes.lane(index).changed();
            d.pump(Instant::now());
            // A large request's header and payload leave in one call, not as a lone
            // header segment the server must wait past.
            while let Some(frame) = d.poll_transmit() {
                out.push(frame);
            }
            if let Err(e) = write_all(&mut stream, &mut out).await {
                tracing::debug!(error = %e, "write to Iggy failed");
                d.handle_closed(Instant::now());
            }
            if !d.has_session() {
                break;
            }
            let timeout = d.poll_timeout();
            let read = async { LaneEvent::Read(stream.read(&mut buf).await) };
            let woken = async {
                changed.await;
                LaneEvent::Changed
            };
            let timer = async {
                match timeout {
                    Some(t) => {
                        Timer::at(t).await;
                        LaneEvent::Timeout
                    }
                    None => future::pending().await,
                }
            };
            match future::or(read, future::or(woken, timer)).await {
                LaneEvent::Read(Ok(0) | Err(_)) => d.handle_closed(Instant::now()),
                LaneEvent::Read(Ok(n)) => d.handle_input(&buf[..n], Instant::now()),
                LaneEvent::Changed => {}
                LaneEvent::Timeout => d.handle_timeout(Instant::now()),
            }
        }
    }
}

/// Writes everything the connection has, with vectored writes.
async fn write_out(
    stream: &mut TcpStream,
    conn: &mut Connection,
    out: &mut Transmit,
) -> io::Result<()> {
    out.fill(conn);
    write_all(stream, out).await
}

/// Writes all of `out`, in as few calls as the socket takes.
async fn write_all(stream: &mut (impl AsyncWrite + Unpin), out: &mut Transmit) -> io::Result<()> {
    while !out.is_empty() {
        let n = stream.write_vectored(&out.slices()).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        out.advance(n);
    }
    Ok(())
}
