//! The session against rustls's own client, in memory; loading and reloading files.

use std::io::{IoSlice, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::BytesMut;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use crate::{ClientAuth, ServerTls, TlsFiles, TlsSession};

/// A CA, a server certificate for localhost and a client certificate, as PEM files.
struct Pki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("kgw-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "test CA");
        let ca =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
        let pki = Self { dir, ca };
        pki.issue("server", "localhost", &["localhost"]);
        pki.issue("client", "alice", &[]);
        pki
    }

    /// Writes `NAME.pem` and `NAME.key`, a certificate for `cn` signed by the CA.
    fn issue(&self, name: &str, cn: &str, sans: &[&str]) {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("sign");
        std::fs::write(self.dir.join(format!("{name}.pem")), cert.pem()).expect("write");
        std::fs::write(self.dir.join(format!("{name}.key")), key.serialize_pem()).expect("write");
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn files(&self, client_auth: ClientAuth) -> TlsFiles {
        TlsFiles {
            certificate: self.path("server.pem"),
            key: self.path("server.key"),
            ca: Some(self.path("ca.pem")),
            client_auth,
            cipher_suites: Vec::new(),
        }
    }

    fn client(&self, with_cert: bool) -> ClientConnection {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(self.path("ca.pem")).expect("ca"))
            .expect("root");
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let config = if with_cert {
            let chain = vec![CertificateDer::from_pem_file(self.path("client.pem")).expect("c")];
            let key = PrivateKeyDer::from_pem_file(self.path("client.key")).expect("k");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client cert")
        } else {
            builder.with_no_client_auth()
        };
        let name = ServerName::try_from("localhost").expect("name");
        let mut client = ClientConnection::new(Arc::new(config), name).expect("client");
        client.set_buffer_limit(None);
        client
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Moves bytes both ways until neither side has any; the plaintext the server received.
fn pump(
    client: &mut ClientConnection,
    server: &mut TlsSession,
    received: &mut BytesMut,
) -> Result<(), crate::TlsError> {
    for _ in 0..100 {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).expect("client writes");
        }
        let mut moved = !wire.is_empty();
        server.handle_ciphertext(&wire, received)?;
        while let Some(b) = server.poll_transmit() {
            moved = true;
            let mut b = &b[..];
            while !b.is_empty() {
                client.read_tls(&mut b).expect("client reads");
                client.process_new_packets().expect("client accepts");
            }
        }
        if !moved {
            return Ok(());
        }
    }
    panic!("no quiescence");
}

#[test]
fn handshakes_and_carries_data_both_ways() {
    let pki = Pki::new("both-ways");
    let tls = ServerTls::load(pki.files(ClientAuth::None)).expect("load");
    let mut server = tls.session().expect("session");
    let mut client = pki.client(false);
    let mut received = BytesMut::new();
    pump(&mut client, &mut server, &mut received).expect("handshake");
    assert!(!server.is_handshaking());
    assert_eq!(server.take_peer_principal(), None, "no client certificate");

    // More than one TLS record each way.
    let request: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    client.writer().write_all(&request).expect("client sends");
    pump(&mut client, &mut server, &mut received).expect("data");
    assert_eq!(&received[..], &request[..]);

    let answer = [&b"hello "[..], &b"world"[..]];
    let slices: Vec<IoSlice<'_>> = answer.iter().map(|a| IoSlice::new(a)).collect();
    assert_eq!(server.write_plaintext(&slices), 11);
    pump(&mut client, &mut server, &mut received).expect("answer");
    let mut got = [0u8; 11];
    client.reader().read_exact(&mut got).expect("client reads");
    assert_eq!(&got, b"hello world");

    client.send_close_notify();
    let mut wire = Vec::new();
    client.write_tls(&mut wire).expect("close");
    let r = server
        .handle_ciphertext(&wire, &mut received)
        .expect("close");
    assert!(r.peer_closed);
}

#[test]
fn ciphertext_split_at_every_size_still_decrypts() {
    let pki = Pki::new("split");
    let tls = ServerTls::load(pki.files(ClientAuth::None)).expect("load");
    let mut server = tls.session().expect("session");
    let mut client = pki.client(false);
    let mut received = BytesMut::new();
    pump(&mut client, &mut server, &mut received).expect("handshake");
    client
        .writer()
        .write_all(b"one byte at a time")
        .expect("send");
    let mut wire = Vec::new();
    client.write_tls(&mut wire).expect("write");
    for b in wire.chunks(1) {
        server.handle_ciphertext(b, &mut received).expect("byte");
    }
    assert_eq!(&received[..], b"one byte at a time");
}

#[test]
fn mutual_tls_names_the_principal_and_requires_the_certificate() {
    let pki = Pki::new("mtls");
    let tls = ServerTls::load(pki.files(ClientAuth::Required)).expect("load");
    let mut server = tls.session().expect("session");
    let mut client = pki.client(true);
    let mut received = BytesMut::new();
    pump(&mut client, &mut server, &mut received).expect("handshake");
    assert_eq!(server.take_peer_principal().as_deref(), Some("alice"));
    assert_eq!(server.take_peer_principal(), None, "once");

    let mut server = tls.session().expect("session");
    let mut client = pki.client(false);
    let e = pump(&mut client, &mut server, &mut BytesMut::new());
    assert!(e.is_err(), "no certificate, no entry");
    assert!(
        server
            .handle_ciphertext(b"x", &mut BytesMut::new())
            .is_err(),
        "sticky"
    );

    let requested = ServerTls::load(pki.files(ClientAuth::Requested)).expect("load");
    let mut server = requested.session().expect("session");
    let mut client = pki.client(false);
    pump(&mut client, &mut server, &mut BytesMut::new()).expect("requested lets it in");
    assert_eq!(server.take_peer_principal(), None);
}

#[test]
fn a_plaintext_kafka_client_fails_the_handshake() {
    let pki = Pki::new("plaintext");
    let tls = ServerTls::load(pki.files(ClientAuth::None)).expect("load");
    let mut server = tls.session().expect("session");
    // An ApiVersions request, as a Kafka client sends first.
    let frame = [
        0, 0, 0, 14, 0, 18, 0, 3, 0, 0, 0, 1, 0, 4, b't', b'e', b's', b't',
    ];
    let mut plaintext = BytesMut::new();
    assert!(server.handle_ciphertext(&frame, &mut plaintext).is_err());
    assert!(plaintext.is_empty());
}

#[test]
fn bad_files_are_refused_and_a_reload_keeps_the_old_configuration() {
    let pki = Pki::new("reload");
    let mut files = pki.files(ClientAuth::None);
    files.key = pki.path("client.key");
    let e = ServerTls::load(files).expect_err("key of another certificate");
    assert!(e.to_string().contains("server.pem"), "{e}");
    let mut files = pki.files(ClientAuth::Required);
    files.ca = None;
    assert!(ServerTls::load(files).is_err(), "client auth without a CA");
    let mut files = pki.files(ClientAuth::None);
    files.certificate = pki.path("missing.pem");
    let e = ServerTls::load(files).expect_err("missing");
    assert!(e.to_string().contains("missing.pem"), "{e}");

    let tls = ServerTls::load(pki.files(ClientAuth::None)).expect("load");
    assert!(tls.reload_if_changed().is_none(), "nothing changed");
    std::fs::write(pki.path("server.pem"), "not a certificate").expect("write");
    assert!(tls.reload().is_err());
    let mut server = tls.session().expect("the old configuration still serves");
    pump(&mut pki.client(false), &mut server, &mut BytesMut::new()).expect("handshake");

    pki.issue("server", "localhost", &["localhost"]);
    assert!(
        matches!(tls.reload_if_changed(), Some(Ok(()))),
        "a changed file is noticed and loads"
    );
    assert!(tls.reload_if_changed().is_none(), "and is loaded once");
    tls.reload().expect("a good file loads");
    let mut server = tls.session().expect("session");
    pump(&mut pki.client(false), &mut server, &mut BytesMut::new()).expect("handshake");
}

#[test]
fn client_auth_names_are_kafkas() {
    assert_eq!(
        ClientAuth::from_name("Required"),
        Some(ClientAuth::Required)
    );
    assert_eq!(
        ClientAuth::from_name("requested"),
        Some(ClientAuth::Requested)
    );
    assert_eq!(ClientAuth::from_name("none"), Some(ClientAuth::None));
    assert_eq!(ClientAuth::from_name("optional"), None);
}

#[test]
fn the_principal_is_the_cn_or_else_the_whole_subject() {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, "bob");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Example");
    let cert = params.self_signed(&key).expect("cert");
    assert_eq!(crate::principal_of(cert.der()).as_deref(), Some("bob"));

    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Example");
    params.distinguished_name.push(DnType::CountryName, "DE");
    let cert = params.self_signed(&key).expect("cert");
    let principal = crate::principal_of(cert.der()).expect("a principal");
    assert!(principal.contains("O=Example"), "{principal}");
    assert!(principal.contains("C=DE"), "{principal}");

    assert_eq!(crate::principal_of(b"not a certificate"), None);
}

/// Moves bytes between two of our sessions until neither has any to send.
fn pump_sessions(
    client: &mut TlsSession,
    server: &mut TlsSession,
    at_client: &mut BytesMut,
    at_server: &mut BytesMut,
) -> Result<(), crate::TlsError> {
    for _ in 0..100 {
        let mut moved = false;
        while let Some(b) = client.poll_transmit() {
            moved = true;
            server.handle_ciphertext(&b, at_server)?;
        }
        while let Some(b) = server.poll_transmit() {
            moved = true;
            client.handle_ciphertext(&b, at_client)?;
        }
        if !moved {
            return Ok(());
        }
    }
    panic!("no quiescence");
}

#[test]
fn the_client_side_trusts_its_ca_and_checks_the_name() {
    let pki = Pki::new("client-side");
    let tls = ServerTls::load(pki.files(ClientAuth::None)).expect("load");
    let ca = pki.path("ca.pem");

    // Plaintext written before the handshake waits for it, then arrives.
    let trusted = crate::ClientTls::new(Some(&ca)).expect("client config");
    let mut client = trusted.session("localhost:8090").expect("session");
    assert!(client.is_handshaking());
    let hello = [IoSlice::new(b"login")];
    assert_eq!(client.write_plaintext(&hello), 5);
    let mut server = tls.session().expect("session");
    let (mut at_client, mut at_server) = (BytesMut::new(), BytesMut::new());
    pump_sessions(&mut client, &mut server, &mut at_client, &mut at_server).expect("handshake");
    assert!(!client.is_handshaking());
    assert_eq!(&at_server[..], b"login");
    assert_eq!(server.write_plaintext(&[IoSlice::new(b"ok")]), 2);
    pump_sessions(&mut client, &mut server, &mut at_client, &mut at_server).expect("reply");
    assert_eq!(&at_client[..], b"ok");

    // A domain overrides the host dialed.
    let named = crate::ClientTls::new(Some(&ca))
        .and_then(|t| t.with_domain("localhost"))
        .expect("client config");
    let mut client = named.session("127.0.0.1:8090").expect("session");
    let mut server = tls.session().expect("session");
    pump_sessions(&mut client, &mut server, &mut at_client, &mut at_server).expect("by domain");

    // The certificate does not name 127.0.0.1.
    let mut client = trusted.session("127.0.0.1:8090").expect("session");
    let mut server = tls.session().expect("session");
    let e = pump_sessions(&mut client, &mut server, &mut at_client, &mut at_server)
        .expect_err("wrong name");
    assert!(e.to_string().contains("certificate"), "{e}");

    // A CA that signed nothing here.
    let other = Pki::new("client-side-other");
    let untrusting = crate::ClientTls::new(Some(&other.path("ca.pem"))).expect("client config");
    let mut client = untrusting.session("localhost:1").expect("session");
    let mut server = tls.session().expect("session");
    let e = pump_sessions(&mut client, &mut server, &mut at_client, &mut at_server)
        .expect_err("untrusted");
    assert!(e.to_string().contains("invalid peer certificate"), "{e}");
    // Sticky.
    assert!(client.handle_ciphertext(b"x", &mut at_client).is_err());

    // Options refused with their reason.
    let missing = crate::ClientTls::new(Some(&pki.path("nope.pem")))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(missing.contains("nope.pem"), "{missing}");
    let key = crate::ClientTls::new(Some(&pki.path("server.key")))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(key.contains("server.key"), "{key}");
    let bad = crate::ClientTls::new(Some(&ca))
        .and_then(|t| t.with_domain("not a name!"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(bad.contains("not a DNS name"), "{bad}");
    let v6 = trusted.session("[::1]:8090");
    assert!(v6.is_ok());
}

/// The listener's order of cipher suites decides over the client's: AES-128-GCM by
/// default, though rustls's client (like OpenSSL's) lists AES-256-GCM first; a configured
/// list is followed; a name rustls does not offer, or one named twice, is refused.
#[test]
fn the_listeners_order_of_suites_decides() {
    let pki = Pki::new("suites");
    let negotiated = |files: TlsFiles| {
        let tls = ServerTls::load(files).expect("load");
        let mut server = tls.session().expect("session");
        let mut client = pki.client(false);
        pump(&mut client, &mut server, &mut BytesMut::new()).expect("handshake");
        client
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .expect("a suite")
    };
    assert_eq!(
        negotiated(pki.files(ClientAuth::None)),
        "TLS13_AES_128_GCM_SHA256"
    );
    let mut files = pki.files(ClientAuth::None);
    files.cipher_suites = vec!["TLS_AES_256_GCM_SHA384".into()];
    assert_eq!(negotiated(files), "TLS13_AES_256_GCM_SHA384");

    assert!(crate::cipher_suites_provider(&["TLS_RSA_WITH_RC4_128_MD5".into()]).is_err());
    let twice = [
        "TLS_AES_128_GCM_SHA256".into(),
        "tls_aes_128_gcm_sha256".into(),
    ];
    assert!(crate::cipher_suites_provider(&twice).is_err());
    let every = crate::cipher_suites_provider(&[]).expect("defaults");
    let defaults = crate::default_cipher_suites();
    assert_eq!(every.cipher_suites.len(), defaults.len());
    // Derived from the provider: with *ring*'s suites, AES-128-GCM first in each version.
    assert_eq!(
        defaults,
        [
            "TLS_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384",
            "TLS_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        ]
    );
    // Every name the provider offers is taken, alone, and the defaults named in full are
    // the defaults.
    for name in &defaults {
        let one = crate::cipher_suites_provider(std::slice::from_ref(name)).expect(name);
        assert_eq!(one.cipher_suites.len(), 1, "{name}");
    }
    let named = crate::cipher_suites_provider(&defaults).expect("all named");
    assert_eq!(named.cipher_suites, every.cipher_suites);
    let refused = crate::cipher_suites_provider(&["TLS_NULL_WITH_NULL_NULL".into()])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        defaults.iter().all(|n| refused.contains(n.as_str())),
        "the refusal lists what is offered: {refused}"
    );
}

/// Small and long buffers written together arrive whole and in order (small ones are
/// gathered into records, long ones encrypted where they are).
#[test]
fn buffers_of_every_size_arrive_in_order() {
    let pki = Pki::new("gather");
    let tls = ServerTls::load(pki.files(ClientAuth::None)).expect("load");
    let mut server = tls.session().expect("session");
    let mut client = pki.client(false);
    pump(&mut client, &mut server, &mut BytesMut::new()).expect("handshake");
    let piece = |n: usize, seed: u8| -> Vec<u8> {
        (0..n)
            .map(|i| u8::try_from(i % 251).unwrap_or(0) ^ seed)
            .collect()
    };
    let pieces = [
        piece(10, 1),
        piece(40_000, 2),
        piece(5, 3),
        piece(16 * 1024, 4),
        piece(20_000, 5),
        piece(1, 6),
    ];
    let slices: Vec<IoSlice<'_>> = pieces.iter().map(|p| IoSlice::new(p)).collect();
    let total: usize = pieces.iter().map(Vec::len).sum();
    assert_eq!(server.write_plaintext(&slices), total);
    assert_eq!(server.write_plaintext(&slices[1..2]), 40_000);
    let mut got = Vec::new();
    while let Some(b) = server.poll_transmit() {
        let mut b = &b[..];
        while !b.is_empty() {
            client.read_tls(&mut b).expect("client reads");
            client.process_new_packets().expect("client accepts");
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = client.reader().read(&mut chunk) {
                got.extend_from_slice(&chunk[..n]);
            }
        }
    }
    let mut expected: Vec<u8> = pieces.concat();
    expected.extend(&pieces[1]);
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "in order");
}

/// A part stops inside a buffer once it holds `WRITE_CHUNK` bytes, and takes what is left
/// when that is less; the parts arrive whole and in order.
#[test]
fn a_part_is_at_most_write_chunk_bytes() {
    use crate::WRITE_CHUNK;
    let pki = Pki::new("parts");
    let tls = ServerTls::load(pki.files(ClientAuth::None)).expect("load");
    let mut server = tls.session().expect("session");
    let mut client = pki.client(false);
    pump(&mut client, &mut server, &mut BytesMut::new()).expect("handshake");
    let pieces: Vec<Vec<u8>> = [10, WRITE_CHUNK, 5]
        .iter()
        .enumerate()
        .map(|(seed, &n)| (0..n).map(|i| (i % 251) as u8 ^ seed as u8).collect())
        .collect();
    let mut slices: Vec<IoSlice<'_>> = pieces.iter().map(|p| IoSlice::new(p)).collect();
    let mut rest = &mut slices[..];
    assert_eq!(server.write_part(&[]), 0);
    assert_eq!(server.write_part(rest), WRITE_CHUNK);
    IoSlice::advance_slices(&mut rest, WRITE_CHUNK);
    assert_eq!(rest.iter().map(|s| s.len()).collect::<Vec<_>>(), [10, 5]);
    assert_eq!(server.write_part(rest), 15);
    let mut got = Vec::new();
    while let Some(b) = server.poll_transmit() {
        let mut b = &b[..];
        while !b.is_empty() {
            client.read_tls(&mut b).expect("client reads");
            client.process_new_packets().expect("client accepts");
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = client.reader().read(&mut chunk) {
                got.extend_from_slice(&chunk[..n]);
            }
        }
    }
    assert!(got == pieces.concat(), "in order");
}
