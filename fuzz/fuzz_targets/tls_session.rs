//! The TLS layer fed whatever a hostile peer might send as ciphertext, in chunks of any
//! size, on both sides (a Kafka listener's server side, and the client side of the
//! gateway's connections to Iggy, which a hostile Iggy address could answer with
//! anything): it must never panic, and once it fails it must keep failing. The seeds are
//! ClientHellos (TLS 1.3, TLS 1.2) and a plaintext Kafka request.
#![no_main]

use std::io::IoSlice;
use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use iggy_kafka_tls::TlsSession;
use libfuzzer_sys::fuzz_target;
use rustls::pki_types::ServerName;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// A self-signed certificate for localhost, made once per process.
fn config() -> Arc<ServerConfig> {
    static CONFIG: OnceLock<Arc<ServerConfig>> = OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("a certificate");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
        let cert: CertificateDer<'static> = made.cert.der().clone();
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_no_client_auth()
                .with_single_cert(vec![cert], key)
                .expect("config"),
        )
    }))
}

/// A client configuration that trusts nothing: the handshake can fail, not succeed.
fn client_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| {
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth(),
        )
    }))
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, ciphertext)) = data.split_first() else {
        return;
    };
    // The top bit picks the side; the rest, the chunk size.
    let client = chunk & 0x80 != 0;
    let chunk = chunk & 0x7f;
    let chunk = if chunk == 0 {
        usize::MAX
    } else {
        usize::from(chunk)
    };
    let mut session = if client {
        let name = ServerName::try_from("localhost").expect("a name");
        let mut s = TlsSession::client(client_config(), name).expect("session");
        while s.poll_transmit().is_some() {}
        s
    } else {
        TlsSession::new(config()).expect("session")
    };
    let mut plaintext = BytesMut::new();
    for piece in ciphertext.chunks(chunk.min(ciphertext.len().max(1))) {
        let result = session.handle_ciphertext(piece, &mut plaintext);
        while session.poll_transmit().is_some() {}
        let _ = session.take_peer_principal();
        match result {
            Err(_) => {
                assert!(
                    session
                        .handle_ciphertext(b"\x16\x03\x01", &mut plaintext)
                        .is_err(),
                    "failures are sticky"
                );
                return;
            }
            Ok(r) if r.peer_closed => return,
            Ok(_) => {
                if !session.is_handshaking() {
                    let n = session.write_plaintext(&[IoSlice::new(piece)]);
                    assert_eq!(n, piece.len());
                }
            }
        }
    }
    session.close();
    while session.poll_transmit().is_some() {}
});
