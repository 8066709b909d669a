//! Runs the gateway's sans-IO core on smol and async-io: accepts connections, moves bytes
//! between each socket and its [`Connection`], hands the connection's work to the
//! backend and the group coordinator, and sleeps until the next input, completion or deadline. Nothing
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
use iggy_kafka_admin::{Admin, AdminIo};
use iggy_kafka_core::driver::{PendingWork, Shared, Transmit};
use iggy_kafka_core::stats::{ConnectionHandle, Ended, Registry};
use iggy_kafka_core::work::{Outcome, WorkId};
use iggy_kafka_core::{Config, Connection};
use iggy_kafka_iggy_client::{drive, Clock, Lanes, SessionConfig};
use smol::net::{TcpListener, TcpStream};
use smol::Executor;

/// Bytes read per system call at most.
const READ_CHUNK: usize = drive::READ_CHUNK;

/// How long shutdown waits for connections to flush what they answered.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Starts a smol executor with one thread per core; binds the admin listener first, when
/// there is one (so that `/health` answers while the backend is awaited); builds what the
/// connections share with `start` (given the executor, so that it may spawn, e.g.
/// [`spawn_iggy_lanes`], and wait for a backend); binds `listen`, reports the bound address
/// to `on_bound` (which gives the connections' configuration: the advertised port may
/// depend on it), and serves until SIGINT or SIGTERM. Every connection is counted in
/// `registry`.
///
/// # Errors
/// When `start` fails, an address cannot be bound or signals cannot be watched.
pub fn run<S>(
    listen: SocketAddr,
    admin: Option<(SocketAddr, Arc<Admin>)>,
    registry: Arc<Registry>,
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
        let admin = match admin {
            Some((addr, admin)) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|e| io::Error::new(e.kind(), format!("--admin-listen {addr}: {e}")))?;
                tracing::info!(bound = %listener.local_addr()?, "admin listening");
                ex.spawn(serve_admin(ex.clone(), listener, Arc::clone(&admin)))
                    .detach();
                Some(admin)
            }
            None => None,
        };
        let shared = start(ex.clone()).await?;
        if let Some(admin) = &admin {
            admin.attach(Arc::clone(&shared));
        }
        let listener = TcpListener::bind(listen).await?;
        // Ready before the bound address is announced: whoever waits for the announcement
        // (an orchestrator's probe, a test) finds /ready true.
        if let Some(admin) = &admin {
            admin.set_listening();
        }
        let config = on_bound(listener.local_addr()?);
        let mut signals =
            async_signal::Signals::new([async_signal::Signal::Int, async_signal::Signal::Term])?;
        let shutdown = async move {
            if let Some(Ok(sig)) = signals.next().await {
                tracing::info!(signal = ?sig, "signal received, shutting down");
            }
        };
        serve(&ex, listener, config, shared, registry, shutdown).await
    }));
    drop(stop_threads);
    for w in workers {
        let _ = w.join();
    }
    result
}

/// Accepts admin connections and serves each on a task of its own, at most
/// [`iggy_kafka_admin::MAX_CONNECTIONS`] at once.
async fn serve_admin(ex: Arc<Executor<'static>>, listener: TcpListener, admin: Arc<Admin>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Some(place) = admin.enter() else {
                    tracing::debug!(%peer, "too many admin connections; closing");
                    continue;
                };
                let admin = Arc::clone(&admin);
                ex.spawn(async move {
                    iggy_kafka_admin::serve(&SmolRuntime, stream, &admin).await;
                    drop(place);
                })
                .detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                Timer::after(Duration::from_millis(100)).await;
            }
        }
    }
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
    registry: Arc<Registry>,
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
                    let handle = registry.accepted(peer.to_string());
                    tasks.push(ex.spawn(tracing::Instrument::instrument(
                        drive(stream, config.clone(), shared.clone(), handle, stop),
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
    Completed(Vec<(WorkId, Outcome)>),
    Timeout,
    Stop,
}

async fn drive(
    mut stream: TcpStream,
    config: Arc<Config>,
    shared: Arc<Shared>,
    mut handle: ConnectionHandle,
    stop: smol::channel::Receiver<()>,
) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let mut conn = Connection::new(config, Instant::now());
    if let Ok(peer) = stream.peer_addr() {
        conn.set_client_host(format!("/{}", peer.ip()));
    }
    let ended = run_connection(&mut stream, &mut conn, &shared, &mut handle, stop).await;
    if ended == Ended::Closed {
        let _ = stream.close().await;
    }
    handle.finish(&conn, ended);
}

async fn run_connection(
    stream: &mut TcpStream,
    conn: &mut Connection,
    shared: &Shared,
    handle: &mut ConnectionHandle,
    stop: smol::channel::Receiver<()>,
) -> Ended {
    let mut pending = PendingWork::new();
    let mut transmit = Transmit::new();
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut stopping = false;
    loop {
        pending.pump(conn, shared, &mut buf, Instant::now());
        // Before the answers leave: a client that reads one sees it counted.
        handle.publish(conn);
        if let Err(e) = write_out(stream, conn, &mut transmit).await {
            tracing::debug!(error = %e, "write failed");
            return Ended::Io;
        }
        if conn.is_closed() {
            return Ended::Closed;
        }
        let deadline = pending.next_deadline(conn);
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
            if pending.is_empty() {
                future::pending().await
            } else {
                Event::Completed(future::poll_fn(|cx| pending.poll_ready(cx)).await)
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
                return Ended::Peer;
            }
            Event::Read(Ok(n)) => buf.truncate(filled + n),
            Event::Read(Err(e)) => {
                tracing::debug!(error = %e, "read failed");
                return Ended::Io;
            }
            Event::Completed(ready) => {
                buf.truncate(filled);
                PendingWork::complete(conn, Instant::now(), ready);
            }
            Event::Timeout => {
                buf.truncate(filled);
                let now = Instant::now();
                pending.handle_timeout(conn, now);
                conn.handle_timeout(now);
            }
            Event::Stop => {
                buf.truncate(filled);
                stopping = true;
                conn.shutdown();
            }
        }
    }
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

/// async-io's clock, timers and sockets: for backends that wait, and for the Iggy lanes.
#[derive(Debug, Clone, Copy, Default)]
pub struct SmolRuntime;

impl Clock for SmolRuntime {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            Timer::at(deadline).await;
        })
    }
}

impl AdminIo for SmolRuntime {
    type Stream = TcpStream;

    async fn read(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        stream.read(buf).await
    }

    async fn write_all(stream: &mut TcpStream, data: &[u8]) -> io::Result<()> {
        AsyncWriteExt::write_all(stream, data).await
    }

    async fn sleep_until(&self, deadline: Instant) {
        Timer::at(deadline).await;
    }
}

/// A connection to Iggy, with the buffer its reads land in first.
#[derive(Debug)]
pub struct IggyStream {
    tcp: TcpStream,
    /// Safe Rust cannot read into uninitialised memory: a read lands here, zeroed once, and
    /// is copied on. That costs one copy of what was read, where zeroing room in the
    /// session's buffer before each read would cost the whole room, and replies are often
    /// small.
    scratch: Box<[u8]>,
}

impl drive::Runtime for SmolRuntime {
    type Stream = IggyStream;
    type Outbox = Transmit;

    async fn connect(&self, address: &str) -> io::Result<IggyStream> {
        let tcp = TcpStream::connect(address).await?;
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        Ok(IggyStream {
            tcp,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
        })
    }

    async fn read(stream: &mut IggyStream, buf: &mut BytesMut) -> io::Result<usize> {
        let n = stream.tcp.read(&mut stream.scratch).await?;
        buf.extend_from_slice(&stream.scratch[..n]);
        Ok(n)
    }

    async fn write_all(stream: &mut IggyStream, out: &mut Transmit) -> io::Result<()> {
        write_all(&mut stream.tcp, out).await
    }

    async fn sleep_until(&self, deadline: Instant) {
        Timer::at(deadline).await;
    }
}

/// Connects each of `lanes` to Iggy (to the node each picks from [`Lanes::nodes`]) and keeps
/// it connected (with the lane driver's backoff), as tasks on `ex` that end with it.
pub fn spawn_iggy_lanes(ex: &Executor<'static>, lanes: &Arc<Lanes>, config: &SessionConfig) {
    for task in drive::lane_tasks(&SmolRuntime, lanes, config) {
        ex.spawn(task).detach();
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
