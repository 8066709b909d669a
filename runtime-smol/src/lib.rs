//! Runs the gateway's sans-IO core on smol and async-io: accepts connections, moves bytes
//! between each socket and its [`Connection`], hands the connection's work to the
//! backend and the group coordinator, and sleeps until the next input, completion or deadline. Nothing
//! protocol-specific lives here (TLS is [`iggy_kafka_tls`]'s, moved here as bytes like
//! everything else), and nothing here needs tokio.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::pin::Pin;

use async_io::{Async, Timer};
use bytes::BytesMut;
use futures_lite::{future, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use iggy_kafka_admin::{Admin, AdminIo};
use iggy_kafka_core::driver::{make_room, PendingWork, Shared, Transmit};
use iggy_kafka_core::stats::{ConnectionHandle, Ended, Registry};
use iggy_kafka_core::work::{Outcome, WorkId};
use iggy_kafka_core::{Config, Connection};
use iggy_kafka_iggy_client::{drive, Clock, Lanes, SessionConfig};
use iggy_kafka_tls::{ServerTls, TlsSession};
use smol::net::{TcpListener, TcpStream};
use smol::Executor;

/// Bytes read per system call at most.
const READ_CHUNK: usize = drive::READ_CHUNK;

/// How long shutdown waits for connections to flush what they answered.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A Kafka listener to bind.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Where.
    pub address: SocketAddr,
    /// Its TLS, for SSL and SASL_SSL listeners.
    pub tls: Option<Arc<ServerTls>>,
}

/// Starts a smol executor with one thread per core; binds the admin listener first, when
/// there is one (so that `/health` answers while the backend is awaited); builds what the
/// connections share with `start` (given the executor, so that it may spawn, e.g.
/// [`spawn_iggy_lanes`], and wait for a backend); binds every listener, reports the bound
/// addresses to `on_bound` (which gives each listener's configuration, in the same order:
/// an advertised port may depend on its bound one), and serves until SIGINT or SIGTERM,
/// reloading TLS certificates on SIGHUP and when their files change. Every connection is
/// counted in `registry`.
///
/// # Errors
/// When `start` fails, an address cannot be bound or signals cannot be watched.
pub fn run<S>(
    listeners: Vec<Listener>,
    admin: Option<(SocketAddr, Arc<Admin>)>,
    registry: Arc<Registry>,
    start: impl FnOnce(Arc<Executor<'static>>) -> S,
    on_bound: impl FnOnce(&[SocketAddr]) -> Vec<Arc<Config>>,
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
        let mut bound = Vec::with_capacity(listeners.len());
        let mut addresses = Vec::with_capacity(listeners.len());
        for l in listeners {
            let socket = TcpListener::bind(l.address)
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", l.address)))?;
            addresses.push(socket.local_addr()?);
            bound.push((socket, l.tls));
        }
        // Ready before the bound addresses are announced: whoever waits for the announcement
        // (an orchestrator's probe, a test) finds /ready true.
        if let Some(admin) = &admin {
            admin.set_listening();
        }
        let configs = on_bound(&addresses);
        let mut certificates: Vec<Arc<ServerTls>> = Vec::new();
        for tls in bound.iter().filter_map(|(_, t)| t.as_ref()) {
            if !certificates.iter().any(|c| Arc::ptr_eq(c, tls)) {
                certificates.push(Arc::clone(tls));
            }
        }
        if !certificates.is_empty() {
            let hangup = async_signal::Signals::new([async_signal::Signal::Hup])?;
            ex.spawn(watch_certificates(certificates, hangup)).detach();
        }
        let listeners = bound
            .into_iter()
            .zip(configs)
            .map(|((socket, tls), config)| (socket, config, tls))
            .collect();
        let mut signals =
            async_signal::Signals::new([async_signal::Signal::Int, async_signal::Signal::Term])?;
        let shutdown = async move {
            if let Some(Ok(sig)) = signals.next().await {
                tracing::info!(signal = ?sig, "signal received, shutting down");
            }
        };
        serve(&ex, listeners, shared, registry, shutdown).await
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

/// Reloads the TLS certificates on SIGHUP, and when their files change.
async fn watch_certificates(certificates: Vec<Arc<ServerTls>>, mut hangup: async_signal::Signals) {
    loop {
        let signal = async {
            let _ = hangup.next().await;
            tracing::info!("SIGHUP received, reloading the TLS certificates");
            true
        };
        let tick = async {
            Timer::after(iggy_kafka_tls::RELOAD_CHECK).await;
            false
        };
        let forced = future::or(signal, tick).await;
        for c in &certificates {
            c.refresh(forced);
        }
    }
}

/// A bound listener: its socket, its connections' configuration, its TLS.
type Bound = (TcpListener, Arc<Config>, Option<Arc<ServerTls>>);

/// An accepted connection, and the listener it came in on.
type Accepted = (TcpStream, SocketAddr, Arc<Config>, Option<Arc<ServerTls>>);

/// Accepts connections on `listener` and hands each on, with the listener's configuration.
async fn accept(
    listener: TcpListener,
    config: Arc<Config>,
    tls: Option<Arc<ServerTls>>,
    accepted: smol::channel::Sender<Accepted>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let next = (stream, peer, Arc::clone(&config), tls.clone());
                if accepted.send(next).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, listener = %config.listener_name, "accept failed");
                Timer::after(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves connections from every listener on `ex` until `shutdown` completes; then stops
/// accepting, lets every connection flush what it has answered, and returns.
async fn serve(
    ex: &Executor<'static>,
    listeners: Vec<Bound>,
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    // Closing this channel tells every connection to stop taking requests.
    let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
    let mut tasks = Vec::new();
    // Finishes writing what is queued once told to stop (after the connections).
    let (groups_stop, groups_stopped) = smol::channel::bounded::<()>(1);
    let groups = ex.spawn(iggy_kafka_core::driver::drive_groups(
        shared.clone(),
        Instant::now,
        sleep_until,
        async move {
            let _ = groups_stopped.recv().await;
        },
    ));
    // Dropped (and so cancelled) when serving ends.
    let _transactions = ex.spawn(iggy_kafka_core::driver::drive_transactions(
        shared.clone(),
        Instant::now,
        sleep_until,
    ));
    let _scram = ex.spawn(iggy_kafka_core::driver::drive_scram_credentials(
        shared.clone(),
        Instant::now,
        sleep_until,
    ));
    // One accepting task per listener, dropped (closing the listeners) when serving ends.
    let (accepted_tx, accepted_rx) = smol::channel::bounded::<Accepted>(64);
    let acceptors: Vec<smol::Task<()>> = listeners
        .into_iter()
        .map(|(listener, config, tls)| ex.spawn(accept(listener, config, tls, accepted_tx.clone())))
        .collect();
    drop(accepted_tx);
    let spawn = async {
        while let Ok((stream, peer, config, tls)) = accepted_rx.recv().await {
            let span = tracing::info_span!("conn", %peer, listener = %config.listener_name);
            let stop = stop_rx.clone();
            tasks.retain(|t: &smol::Task<()>| !t.is_finished());
            let handle = registry.accepted(peer.to_string());
            tasks.push(ex.spawn(tracing::Instrument::instrument(
                drive(stream, config, tls, shared.clone(), handle, stop),
                span,
            )));
        }
    };
    future::or(spawn, shutdown).await;
    drop(acceptors);
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
    // Then what is still queued to keep is written, within the grace period too.
    drop(groups_stop);
    let written = future::or(
        async {
            groups.await;
            true
        },
        async {
            Timer::after(SHUTDOWN_GRACE).await;
            false
        },
    )
    .await;
    if !written {
        tracing::warn!("group states still unwritten after the grace period; dropping them");
    }
    Ok(())
}

enum Event {
    Read(io::Result<usize>),
    Completed(Vec<(WorkId, Outcome)>),
    Timeout,
    Stop,
}

/// A connection's TLS: the session, the ciphertext last read, the ciphertext to write.
struct Tls {
    session: TlsSession,
    /// Safe Rust cannot read into uninitialised memory: ciphertext lands here, zeroed once
    /// each time the connection wakes from idle (empty while it waits).
    read: Box<[u8]>,
    wire: Transmit,
}

impl Tls {
    /// Encrypts the next part of what `plaintext` holds, and queues whatever the session
    /// has to send.
    fn seal(&mut self, plaintext: &mut Transmit) {
        if !plaintext.is_empty() {
            let n = self.session.write_part(&plaintext.slices());
            plaintext.advance(n);
        }
        while let Some(b) = self.session.poll_transmit() {
            self.wire.push(b);
        }
    }

    /// Writes what the session has to send (an alert, close_notify), best effort.
    async fn flush(&mut self, stream: &mut TcpStream) {
        self.seal(&mut Transmit::new());
        let _ = write_all(stream, &mut self.wire).await;
    }
}

async fn drive(
    mut stream: TcpStream,
    config: Arc<Config>,
    tls: Option<Arc<ServerTls>>,
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
    let mut tls = match tls.map(|t| t.session()).transpose() {
        Ok(session) => session.map(|session| Tls {
            session,
            read: Box::default(),
            wire: Transmit::new(),
        }),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start TLS");
            handle.finish(&conn, Ended::Io);
            return;
        }
    };
    let ended = run_connection(&mut stream, &mut conn, &mut tls, &shared, &mut handle, stop).await;
    if ended == Ended::Closed {
        if let Some(tls) = &mut tls {
            tls.session.close();
            tls.flush(&mut stream).await;
        }
        let _ = stream.close().await;
    }
    handle.finish(&conn, ended);
}

async fn run_connection(
    stream: &mut TcpStream,
    conn: &mut Connection,
    tls: &mut Option<Tls>,
    shared: &Shared,
    handle: &mut ConnectionHandle,
    stop: smol::channel::Receiver<()>,
) -> Ended {
    let mut pending = PendingWork::new();
    let mut transmit = Transmit::new();
    let mut buf = BytesMut::new();
    let socket: Arc<Async<std::net::TcpStream>> = stream.clone().into();
    let mut stopping = false;
    loop {
        pending.pump(conn, shared, &mut buf, Instant::now());
        // Before the answers leave: a client that reads one sees it counted.
        handle.publish(conn);
        if let Err(e) = write_out(stream, conn, &mut transmit, tls.as_mut()).await {
            tracing::debug!(error = %e, "write failed");
            return Ended::Io;
        }
        if conn.is_closed() {
            return Ended::Closed;
        }
        let deadline = pending.next_deadline(conn);
        let wants_input = conn.wants_input();
        let filled = buf.len();
        let room = conn.read_capacity(&buf, READ_CHUNK);
        let read = async {
            if !wants_input {
                return future::pending().await;
            }
            if (buf.is_empty() || tls.is_some()) && nothing_to_read(&socket) {
                // Safe Rust reads only into zeroed memory, and zeroed memory is resident,
                // so an idle connection gives its read buffers back until the socket has
                // something for them.
                if buf.is_empty() {
                    buf = BytesMut::new();
                }
                if let Some(tls) = tls.as_mut() {
                    tls.read = Box::default();
                }
                if let Err(e) = socket.readable().await {
                    return Event::Read(Err(e));
                }
            }
            match tls.as_mut() {
                None => {
                    make_room(&mut buf, room, room);
                    // Zeroing costs as much as reading: zero what one read is likely to fill.
                    buf.resize(filled + room.min(4 * READ_CHUNK), 0);
                    Event::Read(stream.read(&mut buf[filled..]).await)
                }
                Some(tls) => {
                    if tls.read.is_empty() {
                        tls.read = vec![0; READ_CHUNK].into_boxed_slice();
                    }
                    Event::Read(stream.read(&mut tls.read).await)
                }
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
            Event::Read(Ok(n)) => match tls.as_mut() {
                None => buf.truncate(filled + n),
                Some(tls) => {
                    // Room for all the plaintext (never longer than its ciphertext) before
                    // it comes, so that a large frame grows the buffer as a plaintext read
                    // does, not once per record.
                    make_room(&mut buf, n, room);
                    match tls.session.handle_ciphertext(&tls.read[..n], &mut buf) {
                        Ok(received) if received.peer_closed => {
                            tracing::debug!("peer closed");
                            return Ended::Peer;
                        }
                        Ok(_) => {
                            // The handshake is done by the time a certificate's principal
                            // shows, and before any plaintext reaches the connection.
                            if let Some(p) = tls.session.take_peer_principal() {
                                tracing::debug!(principal = %p, "client certificate");
                                conn.set_peer_principal(p);
                            }
                        }
                        Err(e) => {
                            tracing::info!(error = %e, "TLS failed; closing");
                            tls.flush(stream).await;
                            return Ended::Io;
                        }
                    }
                }
            },
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

/// Whether `socket` has no byte (nor end of stream) waiting. async-io's `readable` waits for
/// the reactor's next event even when bytes wait, so a peek tells an idle socket from a busy
/// one without a wake-up.
fn nothing_to_read(socket: &Async<std::net::TcpStream>) -> bool {
    matches!(socket.get_ref().peek(&mut [0]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Sleeps until `deadline`, for ever for `None`: the coordinators' drivers' timer.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => {
            Timer::at(d).await;
        }
        None => future::pending::<()>().await,
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

/// Writes everything the connection has, with vectored writes, through TLS when there is.
async fn write_out(
    stream: &mut TcpStream,
    conn: &mut Connection,
    out: &mut Transmit,
    tls: Option<&mut Tls>,
) -> io::Result<()> {
    out.fill(conn);
    match tls {
        None => write_all(stream, out).await,
        // A part at a time (`TlsSession::write_part`), each written before the next is
        // encrypted.
        Some(tls) => loop {
            tls.seal(out);
            write_all(stream, &mut tls.wire).await?;
            if out.is_empty() {
                return Ok(());
            }
        },
    }
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
