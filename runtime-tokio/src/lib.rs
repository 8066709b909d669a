//! Runs the gateway's sans-IO core on tokio: accepts connections, moves bytes between each
//! socket and its [`Connection`], hands the connection's work to the backend and the group coordinator, and sleeps
//! until the next input, completion or deadline. Nothing protocol-specific lives here: TLS
//! is [`iggy_kafka_tls`]'s, moved here as bytes like everything else.

use std::future::{self, Future};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::pin::{pin, Pin};
use std::task::Poll;

use bytes::BytesMut;
use iggy_kafka_admin::{Admin, AdminIo};
use iggy_kafka_core::driver::{make_room, PendingWork, Shared, Transmit};
use iggy_kafka_core::stats::{ConnectionHandle, Ended, Registry};
use iggy_kafka_core::{Config, Connection};
use iggy_kafka_iggy_client::{drive, Clock, Lanes, SessionConfig};
use iggy_kafka_tls::{ServerTls, TlsSession};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

/// Read buffer headroom: a read never has less free space than this.
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

/// Starts a multi-threaded tokio runtime; binds the admin listener first, when there is
/// one (so that `/health` answers while the backend is awaited); builds what the
/// connections share with `start` (inside the runtime, so that it may spawn, e.g.
/// [`spawn_iggy_lanes`], and wait for a backend); binds every listener, reports the bound
/// addresses to `on_bound` (which gives each listener's configuration, in the same order:
/// an advertised port may depend on its bound one), and serves until SIGINT or SIGTERM,
/// reloading TLS certificates on SIGHUP and when their files change. Every connection is
/// counted in `registry`.
///
/// # Errors
/// When the runtime cannot start, `start` fails, an address cannot be bound or signals
/// cannot be watched.
pub fn run<S>(
    listeners: Vec<Listener>,
    admin: Option<(SocketAddr, Arc<Admin>)>,
    registry: Arc<Registry>,
    start: impl FnOnce() -> S,
    on_bound: impl FnOnce(&[SocketAddr]) -> Vec<Arc<Config>>,
) -> io::Result<()>
where
    S: Future<Output = io::Result<Arc<Shared>>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let admin = match admin {
            Some((addr, admin)) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|e| io::Error::new(e.kind(), format!("--admin-listen {addr}: {e}")))?;
                tracing::info!(bound = %listener.local_addr()?, "admin listening");
                tokio::spawn(serve_admin(listener, Arc::clone(&admin)));
                Some(admin)
            }
            None => None,
        };
        let shared = start().await?;
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
            let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
            tokio::spawn(watch_certificates(certificates, hangup));
        }
        let listeners = bound
            .into_iter()
            .zip(configs)
            .map(|((socket, tls), config)| (socket, config, tls))
            .collect();
        let shutdown = shutdown_signal()?;
        serve(listeners, shared, registry, shutdown).await
    })
}

/// Reloads the TLS certificates on SIGHUP, and when their files change.
async fn watch_certificates(
    certificates: Vec<Arc<ServerTls>>,
    mut hangup: tokio::signal::unix::Signal,
) {
    loop {
        let forced = tokio::select! {
            _ = hangup.recv() => {
                tracing::info!("SIGHUP received, reloading the TLS certificates");
                true
            }
            () = tokio::time::sleep(iggy_kafka_tls::RELOAD_CHECK) => false,
        };
        for c in &certificates {
            c.refresh(forced);
        }
    }
}

/// Accepts admin connections and serves each on a task of its own, at most
/// [`iggy_kafka_admin::MAX_CONNECTIONS`] at once.
async fn serve_admin(listener: TcpListener, admin: Arc<Admin>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Some(place) = admin.enter() else {
                    tracing::debug!(%peer, "too many admin connections; closing");
                    continue;
                };
                let admin = Arc::clone(&admin);
                tokio::spawn(async move {
                    iggy_kafka_admin::serve(&TokioRuntime, stream, &admin).await;
                    drop(place);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn shutdown_signal() -> io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        }
    })
}

/// A bound listener: its socket, its connections' configuration, its TLS.
type Bound = (TcpListener, Arc<Config>, Option<Arc<ServerTls>>);

/// An accepted connection, and the listener it came in on.
type Accepted = (TcpStream, SocketAddr, Arc<Config>, Option<Arc<ServerTls>>);

/// Serves connections from every listener until `shutdown` completes; then stops accepting,
/// lets every connection flush what it has answered, and returns.
async fn serve(
    listeners: Vec<Bound>,
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let (groups_stop, groups_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut groups = tokio::spawn(iggy_kafka_core::driver::drive_groups(
        shared.clone(),
        Instant::now,
        sleep_until,
        async move {
            let _ = groups_stopped.await;
        },
    ));
    let transactions = tokio::spawn(iggy_kafka_core::driver::drive_transactions(
        shared.clone(),
        Instant::now,
        sleep_until,
    ));
    let scram = tokio::spawn(iggy_kafka_core::driver::drive_scram_credentials(
        shared.clone(),
        Instant::now,
        sleep_until,
    ));
    // One accepting task per listener; the connections are spawned here, in one set.
    let (accepted_tx, mut accepted_rx) = tokio::sync::mpsc::channel::<Accepted>(64);
    let mut acceptors = JoinSet::new();
    for (listener, config, tls) in listeners {
        acceptors.spawn(accept(listener, config, tls, accepted_tx.clone()));
    }
    drop(accepted_tx);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some((stream, peer, config, tls)) = accepted_rx.recv() => {
                let span = tracing::info_span!("conn", %peer, listener = %config.listener_name);
                let handle = registry.accepted(peer.to_string());
                connections.spawn(drive(stream, config, tls, shared.clone(), handle, stop_rx.clone()).instrument(span));
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Closes the listeners.
    acceptors.shutdown().await;
    let _ = stop_tx.send(true);
    transactions.abort();
    scram.abort();
    // Group deadlines stop mattering (members will rejoin another gateway, or this one);
    // the group driver goes on writing while the connections finish.
    shared.groups().shutdown();
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = connections.len(),
            "connections still open after the grace period; dropping them"
        );
        connections.shutdown().await;
    }
    // Then what is still queued to keep is written, within the grace period too.
    let _ = groups_stop.send(());
    if tokio::time::timeout(SHUTDOWN_GRACE, &mut groups)
        .await
        .is_err()
    {
        tracing::warn!("group states still unwritten after the grace period; dropping them");
        groups.abort();
    }
    Ok(())
}

/// Accepts connections on `listener` and hands each on, with the listener's configuration.
async fn accept(
    listener: TcpListener,
    config: Arc<Config>,
    tls: Option<Arc<ServerTls>>,
    accepted: tokio::sync::mpsc::Sender<Accepted>,
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
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, listener = %config.listener_name, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A connection's TLS: the session (which holds the ciphertext read), the ciphertext to
/// write.
struct Tls {
    session: TlsSession,
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
    stop: watch::Receiver<bool>,
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
        let _ = stream.shutdown().await;
    }
    handle.finish(&conn, ended);
}

/// Why a read ended the connection.
enum ReadError {
    Io(io::Error),
    Tls(iggy_kafka_tls::TlsError),
}

/// Reads once, into `buf` (making `room` in it first) or through TLS into it; `false` when
/// the peer closed.
async fn read_in(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    room: usize,
    mut tls: Option<&mut Tls>,
) -> Result<bool, ReadError> {
    {
        let mut readable = pin!(stream.readable());
        let idle = future::poll_fn(|cx| Poll::Ready(readable.as_mut().poll(cx).is_pending())).await;
        if idle {
            // What a read touches stays resident: an idle connection gives its read buffers
            // back until the socket has something for them.
            if buf.is_empty() {
                *buf = BytesMut::new();
            }
            if let Some(tls) = tls.as_mut() {
                let read = tls.session.read_buffer();
                if read.is_empty() {
                    *read = BytesMut::new();
                }
            }
            readable.await.map_err(ReadError::Io)?;
        }
    }
    let Some(tls) = tls else {
        make_room(buf, room / 4, room);
        return Ok(stream.read_buf(buf).await.map_err(ReadError::Io)? > 0);
    };
    // Straight into the session's buffer, where records are decrypted in place.
    let read = tls.session.read_buffer();
    if read.capacity() - read.len() < READ_CHUNK / 4 {
        read.reserve(READ_CHUNK);
    }
    if stream.read_buf(read).await.map_err(ReadError::Io)? == 0 {
        return Ok(false);
    }
    // Room for all the plaintext (never longer than its ciphertext) before it comes, so
    // that a large frame grows the buffer as a plaintext read does, not once per record.
    make_room(buf, read.len(), room);
    let received = tls.session.handle_read(buf).map_err(ReadError::Tls)?;
    Ok(!received.peer_closed)
}

async fn run_connection(
    stream: &mut TcpStream,
    conn: &mut Connection,
    tls: &mut Option<Tls>,
    shared: &Shared,
    handle: &mut ConnectionHandle,
    mut stop: watch::Receiver<bool>,
) -> Ended {
    let mut pending = PendingWork::new();
    let mut transmit = Transmit::new();
    let mut buf = BytesMut::new();
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
        let room = conn.read_capacity(&buf, READ_CHUNK);
        tokio::select! {
            read = read_in(stream, &mut buf, room, tls.as_mut()), if conn.wants_input() => match read {
                Ok(false) => {
                    tracing::debug!("peer closed");
                    return Ended::Peer;
                }
                Ok(true) => {
                    // The handshake is done by the time a certificate's principal shows,
                    // and before any plaintext reaches the connection.
                    if let Some(p) = tls.as_mut().and_then(|t| t.session.take_peer_principal()) {
                        tracing::debug!(principal = %p, "client certificate");
                        conn.set_peer_principal(p);
                    }
                }
                Err(ReadError::Tls(e)) => {
                    tracing::info!(error = %e, "TLS failed; closing");
                    if let Some(tls) = tls.as_mut() {
                        tls.flush(stream).await;
                    }
                    return Ended::Io;
                }
                Err(ReadError::Io(e)) => {
                    tracing::debug!(error = %e, "read failed");
                    return Ended::Io;
                }
            },
            ready = std::future::poll_fn(|cx| pending.poll_ready(cx)), if !pending.is_empty() => {
                PendingWork::complete(conn, Instant::now(), ready);
            }
            () = sleep_until(deadline) => {
                let now = Instant::now();
                pending.handle_timeout(conn, now);
                conn.handle_timeout(now);
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.shutdown();
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// Tokio's clock, timers and sockets: for backends that wait, and for the Iggy lanes.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioRuntime;

impl Clock for TokioRuntime {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(sleep_until(Some(deadline)))
    }
}

impl AdminIo for TokioRuntime {
    type Stream = TcpStream;

    async fn read(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        stream.read(buf).await
    }

    async fn write_all(stream: &mut TcpStream, data: &[u8]) -> io::Result<()> {
        AsyncWriteExt::write_all(stream, data).await
    }

    async fn sleep_until(&self, deadline: Instant) {
        sleep_until(Some(deadline)).await;
    }
}

impl drive::Runtime for TokioRuntime {
    type Stream = TcpStream;
    type Outbox = Transmit;

    async fn connect(&self, address: &str) -> io::Result<TcpStream> {
        let stream = TcpStream::connect(address).await?;
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        Ok(stream)
    }

    async fn read(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
        stream.read_buf(buf).await
    }

    async fn write_all(stream: &mut TcpStream, out: &mut Transmit) -> io::Result<()> {
        write_all(stream, out).await
    }

    async fn sleep_until(&self, deadline: Instant) {
        sleep_until(Some(deadline)).await;
    }
}

/// Connects each of `lanes` to Iggy (to the node each picks from [`Lanes::nodes`]) and keeps
/// it connected (with the lane driver's backoff) for as long as the runtime runs. Call it
/// inside the runtime.
pub fn spawn_iggy_lanes(lanes: &Arc<Lanes>, config: &SessionConfig) {
    for task in drive::lane_tasks(&TokioRuntime, lanes, config) {
        tokio::spawn(task);
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
