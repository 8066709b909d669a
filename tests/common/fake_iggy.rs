//! The in-process fake Iggy server (`iggy_kafka_iggy_client::testing::fake`) on a real TCP
//! port, so that the real binary can use it as its Iggy backend; it can be taken down
//! (its port closed, its connections dropped) and brought back on the same port, or hung
//! (plaintext connections kept open, requests read and left unanswered until it is
//! released). It may serve TLS, as an Iggy server with `tcp.tls` enabled does.

use std::io::{ErrorKind, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::BytesMut;
use iggy_kafka_iggy_client::testing::fake::FakeIggy;
use iggy_kafka_tls::{ClientAuth, ServerTls, TlsFiles, TlsSession};

pub struct FakeIggyServer {
    pub addr: SocketAddr,
    fake: Arc<Mutex<FakeIggy>>,
    up: Arc<AtomicBool>,
    hung: Arc<AtomicBool>,
    ended: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: Option<JoinHandle<()>>,
    tls: Option<Arc<ServerTls>>,
}

impl FakeIggyServer {
    /// A fake Iggy with user iggy/iggy on a free port.
    pub fn start() -> Self {
        Self::start_serving(None)
    }

    /// A fake Iggy that speaks TLS only, with `certificate` and `key` (PEM files).
    pub fn start_tls(certificate: &str, key: &str) -> Self {
        let tls = ServerTls::load(TlsFiles {
            certificate: certificate.into(),
            key: key.into(),
            ca: None,
            client_auth: ClientAuth::None,
            cipher_suites: Vec::new(),
        })
        .expect("the fake Iggy's certificate");
        Self::start_serving(Some(Arc::new(tls)))
    }

    fn start_serving(tls: Option<Arc<ServerTls>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake Iggy");
        let addr = listener.local_addr().expect("address");
        let mut s = Self {
            addr,
            fake: Arc::new(Mutex::new(FakeIggy::new())),
            up: Arc::new(AtomicBool::new(true)),
            hung: Arc::default(),
            ended: Arc::new(AtomicBool::new(false)),
            connections: Arc::default(),
            acceptor: None,
            tls,
        };
        s.acceptor = Some(s.accept(listener));
        s
    }

    /// The server's state, to look at or change between requests.
    pub fn fake(&self) -> std::sync::MutexGuard<'_, FakeIggy> {
        self.fake.lock().expect("the fake")
    }

    /// `iggy://iggy:iggy@ADDR`.
    pub fn url(&self) -> String {
        format!("iggy://iggy:iggy@{}", self.addr)
    }

    /// Closes the port and drops every connection.
    pub fn stop(&mut self) {
        self.up.store(false, Ordering::SeqCst);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        for c in self.connections.lock().expect("connections").drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Listens again on the same port, with the same data.
    pub fn resume(&mut self) {
        let listener = TcpListener::bind(self.addr).expect("bind the fake Iggy again");
        self.up.store(true, Ordering::SeqCst);
        self.acceptor = Some(self.accept(listener));
    }

    /// Keeps every connection (and accepts new ones) but answers nothing: requests are read
    /// and held, as a server stuck on its disk or in a pause would hold them.
    pub fn hang(&self) {
        self.hung.store(true, Ordering::SeqCst);
    }

    /// Answers what it held, in order, and goes on answering.
    pub fn release(&self) {
        self.hung.store(false, Ordering::SeqCst);
    }

    fn accept(&self, listener: TcpListener) -> JoinHandle<()> {
        listener.set_nonblocking(true).expect("nonblocking");
        let tls = self.tls.clone();
        let (fake, up, hung, ended, connections) = (
            Arc::clone(&self.fake),
            Arc::clone(&self.up),
            Arc::clone(&self.hung),
            Arc::clone(&self.ended),
            Arc::clone(&self.connections),
        );
        std::thread::spawn(move || {
            while up.load(Ordering::SeqCst) && !ended.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).expect("blocking");
                        if let Ok(c) = stream.try_clone() {
                            connections.lock().expect("connections").push(c);
                        }
                        let (fake, hung) = (Arc::clone(&fake), Arc::clone(&hung));
                        match &tls {
                            None => drop(std::thread::spawn(move || serve(stream, &fake, &hung))),
                            Some(tls) => {
                                let session = tls.session().expect("a TLS session");
                                drop(std::thread::spawn(move || {
                                    serve_tls(stream, session, &fake);
                                }));
                            }
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => return,
                }
            }
        })
    }
}

fn serve(mut stream: TcpStream, fake: &Mutex<FakeIggy>, hung: &AtomicBool) {
    // Short reads, so that a release is noticed while the client waits.
    let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
    let mut wire = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => wire.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
        if hung.load(Ordering::SeqCst) || wire.is_empty() {
            continue;
        }
        let reply = fake.lock().expect("the fake").serve(&mut wire);
        if !reply.is_empty() && stream.write_all(&reply).is_err() {
            return;
        }
    }
}

/// As [`serve`], through TLS; a handshake that fails (a client that does not trust the
/// certificate, or speaks plaintext) ends the connection after the alert.
fn serve_tls(mut stream: TcpStream, mut tls: TlsSession, fake: &Mutex<FakeIggy>) {
    let mut wire = BytesMut::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let failed = tls.handle_ciphertext(&buf[..n], &mut wire).is_err();
        if !failed {
            let mut pending = wire.to_vec();
            let reply = fake.lock().expect("the fake").serve(&mut pending);
            wire.clear();
            wire.extend_from_slice(&pending);
            if !reply.is_empty() {
                tls.write_plaintext(&[IoSlice::new(&reply)]);
            }
        }
        while let Some(out) = tls.poll_transmit() {
            if stream.write_all(&out).is_err() {
                return;
            }
        }
        if failed {
            return;
        }
    }
}

impl Drop for FakeIggyServer {
    fn drop(&mut self) {
        self.ended.store(true, Ordering::SeqCst);
        self.stop();
    }
}
