//! SASL on a connection under arbitrary requests, bare tokens, bytes and timing: it never
//! panics, everything it writes is a length-prefixed frame, and it authenticates nobody who
//! did not send a right password (SCRAM proofs cannot be forged by chance, so only PLAIN's
//! right password, offered as a step, may authenticate).
#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::{BufMut, Bytes, BytesMut};
use iggy_kafka_core::protocol::frame::{encode_request, split_frame};
use iggy_kafka_core::protocol::generated::sasl_authenticate_request::SaslAuthenticateRequest;
use iggy_kafka_core::protocol::generated::sasl_handshake_request::SaslHandshakeRequest;
use iggy_kafka_core::protocol::Request;
use iggy_kafka_core::sasl::{Random, SaslConfig, ScramCredential, ScramMechanism, Users};
use iggy_kafka_core::{Config, Connection, SecurityProtocol};
use libfuzzer_sys::fuzz_target;

const MECHANISMS: [&str; 5] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", ""];

#[derive(Debug, Arbitrary)]
enum Step {
    Handshake {
        version: u8,
        mechanism: u8,
    },
    Authenticate {
        version: u8,
        token: Vec<u8>,
    },
    /// PLAIN with alice's right password.
    RightPlain {
        version: u8,
    },
    /// A SCRAM client-first for alice, so that client-finals reach the proof check.
    ScramFirst {
        version: u8,
    },
    Bare(Vec<u8>),
    Raw(Vec<u8>),
    Advance(u16),
}

fn frame(version: u8, request: &Request, max: i16) -> BytesMut {
    let mut buf = BytesMut::new();
    let version = i16::from(version) % (max + 1);
    let _ = encode_request(&mut buf, request, version, 1, Some("fuzz"));
    buf
}

fuzz_target!(|steps: Vec<Step>| {
    let users = Users::new(["alice".to_owned()]);
    for m in ScramMechanism::ALL {
        // One iteration: the fuzzer's time goes to the state machine, not to PBKDF2.
        users.set(
            "alice",
            ScramCredential::from_password(m, b"right", b"salt", 1),
        );
    }
    let mut sasl = SaslConfig::new(Arc::new(users), Random::new(|b: &mut [u8]| b.fill(3)));
    sasl.session_lifetime = Some(Duration::from_secs(5));
    let mut config = Config::default();
    config.security_protocol = SecurityProtocol::SaslSsl;
    config.sasl = Some(Arc::new(sasl));
    let mut now = Instant::now();
    let mut conn = Connection::new(Arc::new(config), now);
    let mut input = BytesMut::new();
    let mut output = BytesMut::new();
    let mut right_password_sent = false;
    for step in steps {
        let bytes = match step {
            Step::Handshake { version, mechanism } => {
                let req = SaslHandshakeRequest {
                    mechanism: MECHANISMS[usize::from(mechanism) % MECHANISMS.len()].into(),
                };
                frame(version, &Request::SaslHandshake(req), 1)
            }
            Step::Authenticate { version, token } => frame(
                version,
                &Request::SaslAuthenticate(SaslAuthenticateRequest {
                    auth_bytes: Bytes::from(token),
                    ..SaslAuthenticateRequest::default()
                }),
                2,
            ),
            Step::RightPlain { version } => {
                right_password_sent = true;
                frame(
                    version,
                    &Request::SaslAuthenticate(SaslAuthenticateRequest {
                        auth_bytes: Bytes::from_static(b"\0alice\0right"),
                        ..SaslAuthenticateRequest::default()
                    }),
                    2,
                )
            }
            Step::ScramFirst { version } => frame(
                version,
                &Request::SaslAuthenticate(SaslAuthenticateRequest {
                    auth_bytes: Bytes::from_static(b"n,,n=alice,r=fuzznonce"),
                    ..SaslAuthenticateRequest::default()
                }),
                2,
            ),
            Step::Bare(token) => {
                let mut b = BytesMut::new();
                b.put_u32(token.len() as u32);
                b.extend_from_slice(&token);
                b
            }
            Step::Raw(raw) => BytesMut::from(&raw[..]),
            Step::Advance(ms) => {
                now += Duration::from_millis(u64::from(ms));
                if conn.poll_timeout().is_some_and(|t| t <= now) {
                    conn.handle_timeout(now);
                }
                BytesMut::new()
            }
        };
        input.extend_from_slice(&bytes);
        conn.handle_input(now, &mut input);
        while let Some(b) = conn.poll_transmit() {
            output.extend_from_slice(&b);
        }
        while let Ok(Some(_)) = split_frame(&mut output, usize::MAX) {}
        if conn.principal().is_some() {
            assert!(right_password_sent, "authenticated without the password");
        }
    }
});
