//! SASL on a connection, driven by a scripted client and a manual clock: the exchanges of
//! PLAIN and SCRAM (success, wrong proof, replayed nonce, wrong order, requests before
//! authentication), the bare tokens after a v0 handshake, the failure delay and
//! re-authentication (KIP-368).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use iggy_kafka_core::backend::{BackendError, Command, Completion};
use iggy_kafka_core::protocol::api;
use iggy_kafka_core::protocol::generated::alter_user_scram_credentials_request::{
    AlterUserScramCredentialsRequest, ScramCredentialDeletion, ScramCredentialUpsertion,
};
use iggy_kafka_core::protocol::generated::alter_user_scram_credentials_response::AlterUserScramCredentialsResponse;
use iggy_kafka_core::protocol::generated::api_versions_request::ApiVersionsRequest;
use iggy_kafka_core::protocol::generated::api_versions_response::ApiVersionsResponse;
use iggy_kafka_core::protocol::generated::describe_cluster_request::DescribeClusterRequest;
use iggy_kafka_core::protocol::generated::describe_user_scram_credentials_request::{
    DescribeUserScramCredentialsRequest, UserName,
};
use iggy_kafka_core::protocol::generated::describe_user_scram_credentials_response::DescribeUserScramCredentialsResponse;
use iggy_kafka_core::protocol::generated::response_header::ResponseHeader;
use iggy_kafka_core::protocol::generated::sasl_authenticate_request::SaslAuthenticateRequest;
use iggy_kafka_core::protocol::generated::sasl_authenticate_response::SaslAuthenticateResponse;
use iggy_kafka_core::protocol::generated::sasl_handshake_request::SaslHandshakeRequest;
use iggy_kafka_core::protocol::generated::sasl_handshake_response::SaslHandshakeResponse;
use iggy_kafka_core::protocol::{self, ApiKey, Message, Reader, Request};
use iggy_kafka_core::sasl::{
    Random, SaslConfig, ScramChange, ScramCredential, ScramMechanism, Users,
};
use iggy_kafka_core::work::{Outcome, Work, WorkId};
use iggy_kafka_core::{CloseReason, Config, Connection, SecurityProtocol};
use sha2::{Digest, Sha256, Sha512};

const LIFETIME: Duration = Duration::from_secs(10);

fn users() -> Arc<Users> {
    let users = Users::new(["admin".to_owned()]);
    for m in ScramMechanism::ALL {
        users.set(
            "alice",
            ScramCredential::from_password(m, b"alice-secret", b"alice-salt", 4096),
        );
        users.set(
            "bob",
            ScramCredential::from_password(m, b"bob-secret", b"bob-salt", 4096),
        );
    }
    users.set(
        "admin",
        ScramCredential::from_password(ScramMechanism::Sha256, b"admin-secret", b"a", 4096),
    );
    Arc::new(users)
}

fn config(lifetime: Option<Duration>) -> Arc<Config> {
    config_with_random(lifetime, 0x5a)
}

/// A SASL listener's configuration whose random bytes are all `byte`.
fn config_with_random(lifetime: Option<Duration>, byte: u8) -> Arc<Config> {
    let mut sasl = SaslConfig::new(users(), Random::new(move |b: &mut [u8]| b.fill(byte)));
    sasl.session_lifetime = lifetime;
    let mut config = Config::default();
    config.security_protocol = SecurityProtocol::SaslPlaintext;
    config.sasl = Some(Arc::new(sasl));
    Arc::new(config)
}

struct Client {
    config: Arc<Config>,
    conn: Connection,
    now: Instant,
    next_id: i32,
}

impl Client {
    fn new(config: Arc<Config>) -> Self {
        let now = Instant::now();
        Self {
            conn: Connection::new(Arc::clone(&config), now),
            config,
            now,
            next_id: 1,
        }
    }

    fn send(&mut self, version: i16, body: &Request) -> i32 {
        let id = self.next_id;
        self.next_id += 1;
        let mut buf = BytesMut::new();
        protocol::frame::encode_request(&mut buf, body, version, id, Some("sasl-test"))
            .expect("request");
        self.conn.handle_input(self.now, &mut buf);
        id
    }

    fn send_bare(&mut self, token: &[u8]) {
        let mut buf = BytesMut::new();
        buf.put_u32(token.len() as u32);
        buf.extend_from_slice(token);
        self.conn.handle_input(self.now, &mut buf);
    }

    fn output(&mut self) -> BytesMut {
        let mut out = BytesMut::new();
        while let Some(b) = self.conn.poll_transmit() {
            out.extend_from_slice(&b);
        }
        out
    }

    /// The one response now due, decoded.
    fn response<M: Message>(&mut self, key: ApiKey, version: i16) -> Option<M> {
        let mut out = self.output();
        let f = protocol::frame::split_frame(&mut out, usize::MAX).expect("frame")?;
        assert!(out.is_empty(), "one response");
        let mut r = Reader::new(f, 0);
        ResponseHeader::decode(&mut r, api::response_header_version(key, version)).expect("header");
        Some(M::decode(&mut r, version).expect("body"))
    }

    fn handshake(&mut self, version: i16, mechanism: &str) -> SaslHandshakeResponse {
        let req = SaslHandshakeRequest {
            mechanism: mechanism.into(),
        };
        self.send(version, &Request::SaslHandshake(req));
        self.response(ApiKey::SaslHandshake, version)
            .expect("handshake answered")
    }

    fn authenticate(&mut self, version: i16, token: &[u8]) -> Option<SaslAuthenticateResponse> {
        let req = SaslAuthenticateRequest {
            auth_bytes: Bytes::copy_from_slice(token),
            ..SaslAuthenticateRequest::default()
        };
        self.send(version, &Request::SaslAuthenticate(req));
        self.response(ApiKey::SaslAuthenticate, version)
    }

    /// Sends a request that needs authentication and is answered without the backend;
    /// whether the connection took it.
    fn metadata(&mut self) -> bool {
        self.send(
            0,
            &Request::DescribeCluster(DescribeClusterRequest::default()),
        );
        let open = self.conn.close_reason().is_none();
        if open {
            let _ = self.output();
        }
        open
    }

    /// The configuration this client's connection was made with, for another client of
    /// the same gateway.
    fn conn_config(&self) -> Arc<Config> {
        Arc::clone(&self.config)
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.conn.handle_timeout(self.now);
    }
}

/// The client side of SCRAM, from RFC 5802's formulas and the same crates.
struct ScramClient {
    mechanism: ScramMechanism,
    password: Vec<u8>,
    client_first_bare: String,
}

fn hmac(m: ScramMechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    match m {
        ScramMechanism::Sha256 => <Hmac<Sha256> as Mac>::new_from_slice(key)
            .expect("key")
            .chain_update(data)
            .finalize()
            .into_bytes()
            .to_vec(),
        ScramMechanism::Sha512 => <Hmac<Sha512> as Mac>::new_from_slice(key)
            .expect("key")
            .chain_update(data)
            .finalize()
            .into_bytes()
            .to_vec(),
    }
}

fn hash(m: ScramMechanism, data: &[u8]) -> Vec<u8> {
    match m {
        ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
        ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
    }
}

impl ScramClient {
    fn new(mechanism: ScramMechanism, user: &str, password: &str) -> Self {
        Self {
            mechanism,
            password: password.as_bytes().to_vec(),
            client_first_bare: format!("n={user},r=clientnonce123"),
        }
    }

    fn first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// client-final for `server_first`, and the server signature it expects back.
    fn last(&self, server_first: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let server_first = std::str::from_utf8(server_first).expect("utf-8");
        let mut nonce = "";
        let mut salt = Vec::new();
        let mut iterations = 0;
        for field in server_first.split(',') {
            match field.split_at(2) {
                ("r=", v) => nonce = v,
                ("s=", v) => salt = BASE64.decode(v).expect("salt"),
                ("i=", v) => iterations = v.parse().expect("iterations"),
                _ => {}
            }
        }
        let m = self.mechanism;
        let mut salted = vec![0u8; hash(m, b"").len()];
        match m {
            ScramMechanism::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(&self.password, &salt, iterations, &mut salted)
            }
            ScramMechanism::Sha512 => {
                pbkdf2::pbkdf2_hmac::<Sha512>(&self.password, &salt, iterations, &mut salted)
            }
        }
        let client_key = hmac(m, &salted, b"Client Key");
        let stored = hash(m, &client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let sig = hmac(m, &stored, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        let server_sig = hmac(m, &hmac(m, &salted, b"Server Key"), auth.as_bytes());
        (
            format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes(),
            format!("v={}", BASE64.encode(server_sig)).into_bytes(),
        )
    }
}

fn plain(user: &str, password: &str) -> Vec<u8> {
    format!("\0{user}\0{password}").into_bytes()
}

#[test]
fn plain_authenticates_and_then_serves() {
    for version in 0..=2 {
        let mut c = Client::new(config(None));
        let hs = c.handshake(1, "PLAIN");
        assert_eq!(hs.error_code, 0);
        let names: Vec<String> = hs.mechanisms.iter().map(|m| m.to_string()).collect();
        assert_eq!(names, ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]);
        let r = c
            .authenticate(version, &plain("alice", "alice-secret"))
            .expect("answered");
        assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        assert_eq!(c.conn.principal(), Some("alice"));
        assert!(c.metadata(), "served after authentication");
    }
}

#[test]
fn scram_sha_256_and_512_authenticate_and_prove_the_server() {
    for mechanism in ScramMechanism::ALL {
        let mut c = Client::new(config(Some(LIFETIME)));
        assert_eq!(c.handshake(1, mechanism.name()).error_code, 0);
        let client = ScramClient::new(mechanism, "bob", "bob-secret");
        let first = c.authenticate(2, &client.first()).expect("server-first");
        assert_eq!(first.error_code, 0);
        let (last, expected) = client.last(&first.auth_bytes);
        let done = c.authenticate(2, &last).expect("server-final");
        assert_eq!(done.error_code, 0, "{:?}", done.error_message);
        assert_eq!(&done.auth_bytes[..], &expected[..], "{mechanism}");
        assert_eq!(done.session_lifetime_ms, 10_000);
        assert_eq!(c.conn.principal(), Some("bob"));
        assert!(c.metadata());
    }
}

#[test]
fn a_wrong_password_is_answered_after_the_delay_and_closes() {
    for (mechanism, user) in [
        ("PLAIN", "alice"),
        ("PLAIN", "nobody"),
        ("SCRAM-SHA-256", "alice"),
        ("SCRAM-SHA-512", "nobody"),
    ] {
        let mut c = Client::new(config(None));
        assert_eq!(c.handshake(1, mechanism).error_code, 0);
        let response = if mechanism == "PLAIN" {
            c.authenticate(2, &plain(user, "wrong"))
        } else {
            let m = ScramMechanism::from_name(mechanism).expect("scram");
            let client = ScramClient::new(m, user, "wrong");
            let first = c.authenticate(2, &client.first()).expect("server-first");
            assert_eq!(first.error_code, 0, "an unknown user is not told apart");
            let (last, _) = client.last(&first.auth_bytes);
            c.authenticate(2, &last)
        };
        assert!(
            response.is_none(),
            "{mechanism}/{user}: answered before the delay"
        );
        assert!(!c.conn.wants_input());
        c.advance(Duration::from_millis(99));
        assert!(c.output().is_empty());
        c.advance(Duration::from_millis(1));
        let r: SaslAuthenticateResponse = c
            .response(ApiKey::SaslAuthenticate, 2)
            .expect("answered after the delay");
        assert_eq!(r.error_code, 58, "{mechanism}/{user}");
        let message = r.error_message.map(|m| m.to_string()).unwrap_or_default();
        assert!(!message.contains("wrong"), "the password is not echoed");
        // Closing, and closed once the answer has had time to arrive.
        assert!(c.conn.close_reason().is_some() && !c.conn.is_closed());
        c.advance(Duration::from_millis(500));
        assert!(c.conn.is_closed());
        assert!(matches!(
            c.conn.close_reason(),
            Some(CloseReason::Authentication(_))
        ));
        assert_eq!(c.conn.principal(), None);
    }
}

#[test]
fn requests_before_authentication_close_the_connection() {
    let mut c = Client::new(config(None));
    // ApiVersions is served, and lists the SASL requests on a SASL listener.
    let body = ApiVersionsRequest {
        client_software_name: "test".into(),
        client_software_version: "1".into(),
        ..ApiVersionsRequest::default()
    };
    c.send(3, &Request::ApiVersions(body));
    let r: ApiVersionsResponse = c.response(ApiKey::ApiVersions, 3).expect("answered");
    assert!(r.api_keys.iter().any(|k| k.api_key == 17));
    assert!(r.api_keys.iter().any(|k| k.api_key == 36));
    assert!(!c.metadata());
    assert_eq!(
        c.conn.close_reason(),
        Some(&CloseReason::Unauthenticated(ApiKey::DescribeCluster))
    );
    // After a handshake, but before the exchange completes, too.
    let mut c = Client::new(config(None));
    assert_eq!(c.handshake(1, "SCRAM-SHA-256").error_code, 0);
    assert!(!c.metadata());
}

#[test]
fn frames_before_authentication_are_bounded() {
    let mut c = Client::new(config(None));
    let mut buf = BytesMut::new();
    buf.put_u32(600 * 1024);
    buf.put_bytes(0, 16);
    c.conn.handle_input(c.now, &mut buf);
    assert!(
        matches!(c.conn.close_reason(), Some(CloseReason::Frame(_))),
        "{:?}",
        c.conn.close_reason()
    );
}

#[test]
fn requests_out_of_order_are_illegal_state() {
    // SaslAuthenticate without a handshake.
    let mut c = Client::new(config(None));
    let r = c
        .authenticate(1, &plain("alice", "alice-secret"))
        .expect("answered");
    assert_eq!(r.error_code, 34);
    assert!(c.conn.close_reason().is_some());
    // A second handshake in the middle of an exchange.
    let mut c = Client::new(config(None));
    assert_eq!(c.handshake(1, "PLAIN").error_code, 0);
    assert_eq!(c.handshake(1, "PLAIN").error_code, 34);
    assert!(c.conn.close_reason().is_some());
    // A mechanism that is not enabled: the enabled ones are listed.
    let mut c = Client::new(config(None));
    let hs = c.handshake(1, "GSSAPI");
    assert_eq!(hs.error_code, 33);
    assert_eq!(hs.mechanisms.len(), 3);
    assert!(c.conn.close_reason().is_some());
}

#[test]
fn a_replayed_scram_final_message_fails() {
    // A client-final recorded from one connection, played on another: the server's nonce
    // differs, so the proof is refused.
    let client = ScramClient::new(ScramMechanism::Sha256, "alice", "alice-secret");
    let mut first_conn = Client::new(config(None));
    first_conn.handshake(1, "SCRAM-SHA-256");
    let first = first_conn.authenticate(2, &client.first()).expect("first");
    let (recorded, _) = client.last(&first.auth_bytes);

    let mut c = Client::new(config_with_random(None, 0x11));
    c.handshake(1, "SCRAM-SHA-256");
    let _ = c.authenticate(2, &client.first()).expect("first");
    assert!(c.authenticate(2, &recorded).is_none());
    c.advance(Duration::from_millis(100));
    let r: SaslAuthenticateResponse = c.response(ApiKey::SaslAuthenticate, 2).expect("answer");
    assert_eq!(r.error_code, 58);
}

#[test]
fn a_v0_handshake_takes_bare_tokens() {
    // PLAIN: one bare token, answered with an empty bare token.
    let mut c = Client::new(config(None));
    assert_eq!(c.handshake(0, "PLAIN").error_code, 0);
    c.send_bare(&plain("alice", "alice-secret"));
    assert_eq!(&c.output()[..], &[0, 0, 0, 0]);
    assert_eq!(c.conn.principal(), Some("alice"));
    assert!(c.metadata());

    // SCRAM: two bare tokens each way.
    let mut c = Client::new(config(None));
    assert_eq!(c.handshake(0, "SCRAM-SHA-512").error_code, 0);
    let client = ScramClient::new(ScramMechanism::Sha512, "bob", "bob-secret");
    c.send_bare(&client.first());
    let mut out = c.output();
    let first = protocol::frame::split_frame(&mut out, usize::MAX)
        .expect("frame")
        .expect("server-first");
    let (last, expected) = client.last(&first);
    c.send_bare(&last);
    let mut out = c.output();
    let fin = protocol::frame::split_frame(&mut out, usize::MAX)
        .expect("frame")
        .expect("server-final");
    assert_eq!(&fin[..], &expected[..]);
    assert!(c.metadata());

    // A wrong bare token closes after the delay, with no answer.
    let mut c = Client::new(config(None));
    c.handshake(0, "PLAIN");
    c.send_bare(&plain("alice", "nope"));
    assert!(c.conn.close_reason().is_none());
    c.advance(Duration::from_millis(100));
    assert!(c.output().is_empty());
    assert!(c.conn.is_closed());
}

#[test]
fn a_session_must_be_renewed_before_its_lifetime_ends() {
    let mut c = Client::new(config(Some(LIFETIME)));
    c.handshake(1, "PLAIN");
    let r = c
        .authenticate(2, &plain("alice", "alice-secret"))
        .expect("answered");
    assert_eq!(r.session_lifetime_ms, 10_000);
    assert_eq!(c.conn.poll_timeout(), Some(c.now + LIFETIME));

    // Re-authenticating in time, between other requests, renews the session.
    c.advance(Duration::from_secs(9));
    assert!(c.metadata());
    let _ = c.output();
    assert_eq!(c.handshake(1, "PLAIN").error_code, 0);
    let r = c
        .authenticate(2, &plain("alice", "alice-secret"))
        .expect("answered");
    assert_eq!(r.error_code, 0);
    c.advance(Duration::from_secs(9));
    assert!(c.metadata(), "renewed at 9 s, so alive at 18 s");
    let _ = c.output();

    // Not renewed: the deadline closes it.
    c.advance(Duration::from_secs(1));
    assert_eq!(c.conn.close_reason(), Some(&CloseReason::SessionExpired));

    // Re-authentication cannot change the principal or the mechanism.
    let mut c = Client::new(config(Some(LIFETIME)));
    c.handshake(1, "PLAIN");
    c.authenticate(2, &plain("alice", "alice-secret"));
    assert_eq!(c.handshake(1, "SCRAM-SHA-256").error_code, 33);
    let mut c = Client::new(config(Some(LIFETIME)));
    c.handshake(1, "PLAIN");
    c.authenticate(2, &plain("alice", "alice-secret"));
    c.handshake(1, "PLAIN");
    assert!(c.authenticate(2, &plain("bob", "bob-secret")).is_none());
    c.advance(Duration::from_millis(100));
    let r: SaslAuthenticateResponse = c.response(ApiKey::SaslAuthenticate, 2).expect("answer");
    assert_eq!(r.error_code, 58);
    assert!(r
        .error_message
        .map(|m| m.to_string())
        .unwrap_or_default()
        .contains("Cannot change principals"));
}

#[test]
fn a_listener_without_sasl_refuses_its_requests_but_stays_open() {
    let mut c = Client::new(Arc::new(Config::default()));
    assert_eq!(c.handshake(1, "PLAIN").error_code, 34);
    let r = c
        .authenticate(2, &plain("alice", "alice-secret"))
        .expect("answered");
    assert_eq!(r.error_code, 34);
    assert!(c.metadata());
    let body = ApiVersionsRequest {
        client_software_name: "test".into(),
        client_software_version: "1".into(),
        ..ApiVersionsRequest::default()
    };
    c.send(3, &Request::ApiVersions(body));
    let r: ApiVersionsResponse = c.response(ApiKey::ApiVersions, 3).expect("answered");
    assert!(!r
        .api_keys
        .iter()
        .any(|k| k.api_key == 17 || k.api_key == 36));
}

fn logged_in(user: &str, password: &str) -> Client {
    let mut c = Client::new(config(None));
    c.handshake(1, "PLAIN");
    let r = c.authenticate(2, &plain(user, password)).expect("answered");
    assert_eq!(r.error_code, 0);
    c
}

fn salted(m: ScramMechanism, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut out = vec![0u8; hash(m, b"").len()];
    match m {
        ScramMechanism::Sha256 => {
            pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out)
        }
        ScramMechanism::Sha512 => {
            pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out)
        }
    }
    out
}

fn upsert(
    name: &str,
    m: ScramMechanism,
    password: &[u8],
    iterations: i32,
) -> ScramCredentialUpsertion {
    ScramCredentialUpsertion {
        name: name.into(),
        mechanism: m.kafka_type(),
        iterations,
        salt: Bytes::from_static(b"fresh-salt"),
        salted_password: Bytes::from(salted(m, password, b"fresh-salt", iterations.max(1) as u32)),
        ..ScramCredentialUpsertion::default()
    }
}

#[test]
fn super_users_manage_scram_credentials_and_others_may_not() {
    // Not a super user: refused, and nothing changes.
    let mut c = logged_in("alice", "alice-secret");
    c.send(
        0,
        &Request::AlterUserScramCredentials(AlterUserScramCredentialsRequest {
            upsertions: vec![upsert("alice", ScramMechanism::Sha256, b"mine", 4096)],
            ..AlterUserScramCredentialsRequest::default()
        }),
    );
    let r: AlterUserScramCredentialsResponse = c
        .response(ApiKey::AlterUserScramCredentials, 0)
        .expect("answered");
    assert_eq!(r.results[0].error_code, 31);
    c.send(
        0,
        &Request::DescribeUserScramCredentials(DescribeUserScramCredentialsRequest::default()),
    );
    let r: DescribeUserScramCredentialsResponse = c
        .response(ApiKey::DescribeUserScramCredentials, 0)
        .expect("answered");
    assert_eq!(r.error_code, 31);

    // A super user adds carol, who then authenticates with SCRAM; the password itself was
    // never sent.
    let mut admin = logged_in("admin", "admin-secret");
    admin.send(
        0,
        &Request::AlterUserScramCredentials(AlterUserScramCredentialsRequest {
            upsertions: vec![
                upsert("carol", ScramMechanism::Sha512, b"carol-pw", 8192),
                upsert("dave", ScramMechanism::Sha256, b"x", 1000),
            ],
            deletions: vec![
                ScramCredentialDeletion {
                    name: "nobody".into(),
                    mechanism: 1,
                    ..ScramCredentialDeletion::default()
                },
                ScramCredentialDeletion {
                    name: "erin".into(),
                    mechanism: 9,
                    ..ScramCredentialDeletion::default()
                },
            ],
            ..AlterUserScramCredentialsRequest::default()
        }),
    );
    // Kept by the backend first: only the keys of the one good change go there.
    let work: Vec<_> = std::iter::from_fn(|| admin.conn.poll_work()).collect();
    let [(id, Work::Store(Command::StoreScramCredentials { changes }))] = &work[..] else {
        panic!("one StoreScramCredentials, got {work:?}")
    };
    assert!(
        matches!(&changes[..], [ScramChange::Set { user, credential }] if user == "carol" && credential.iterations == 8192),
        "{changes:?}"
    );
    assert!(!format!("{work:?}").contains("carol-pw"));
    assert!(
        admin
            .response::<AlterUserScramCredentialsResponse>(ApiKey::AlterUserScramCredentials, 0)
            .is_none(),
        "not answered before the backend kept it"
    );
    admin.conn.handle_outcome(
        admin.now,
        *id,
        Outcome::Store(Completion::StoreScramCredentials(Ok(1))),
    );
    let r: AlterUserScramCredentialsResponse = admin
        .response(ApiKey::AlterUserScramCredentials, 0)
        .expect("answered");
    let codes: Vec<(String, i16)> = r
        .results
        .iter()
        .map(|x| (x.user.to_string(), x.error_code))
        .collect();
    assert!(codes.contains(&("carol".into(), 0)), "{codes:?}");
    assert!(codes.contains(&("dave".into(), 93)), "{codes:?}");
    assert!(codes.contains(&("nobody".into(), 91)), "{codes:?}");
    assert!(codes.contains(&("erin".into(), 33)), "{codes:?}");

    let mut carol = Client::new(admin.conn_config());
    carol.handshake(1, "SCRAM-SHA-512");
    let client = ScramClient::new(ScramMechanism::Sha512, "carol", "carol-pw");
    let first = carol.authenticate(2, &client.first()).expect("first");
    let (last, expected) = client.last(&first.auth_bytes);
    let done = carol.authenticate(2, &last).expect("final");
    assert_eq!(done.error_code, 0, "{:?}", done.error_message);
    assert_eq!(&done.auth_bytes[..], &expected[..]);

    // Described by mechanism and iterations; twice in one request is refused.
    admin.send(
        0,
        &Request::DescribeUserScramCredentials(DescribeUserScramCredentialsRequest {
            users: Some(vec![
                UserName {
                    name: "carol".into(),
                    ..UserName::default()
                },
                UserName {
                    name: "zed".into(),
                    ..UserName::default()
                },
                UserName {
                    name: "zed".into(),
                    ..UserName::default()
                },
            ]),
            ..DescribeUserScramCredentialsRequest::default()
        }),
    );
    let r: DescribeUserScramCredentialsResponse = admin
        .response(ApiKey::DescribeUserScramCredentials, 0)
        .expect("answered");
    assert_eq!(r.error_code, 0);
    assert_eq!(r.results.len(), 2);
    assert_eq!(r.results[0].credential_infos.len(), 1);
    assert_eq!(r.results[0].credential_infos[0].mechanism, 2);
    assert_eq!(r.results[0].credential_infos[0].iterations, 8192);
    assert_eq!(r.results[1].error_code, 92);

    // When the backend cannot keep a change, it is not made.
    admin.send(
        0,
        &Request::AlterUserScramCredentials(AlterUserScramCredentialsRequest {
            upsertions: vec![upsert("frank", ScramMechanism::Sha256, b"frank-pw", 4096)],
            ..AlterUserScramCredentialsRequest::default()
        }),
    );
    let work: Vec<_> = std::iter::from_fn(|| admin.conn.poll_work()).collect();
    let [(id, Work::Store(Command::StoreScramCredentials { .. }))] = &work[..] else {
        panic!("one StoreScramCredentials, got {work:?}")
    };
    admin.conn.handle_outcome(
        admin.now,
        *id,
        Outcome::Store(Completion::StoreScramCredentials(Err(
            BackendError::Unavailable("Iggy is down".into()),
        ))),
    );
    let r: AlterUserScramCredentialsResponse = admin
        .response(ApiKey::AlterUserScramCredentials, 0)
        .expect("answered");
    assert_eq!(r.results[0].user.to_string(), "frank");
    assert_eq!(r.results[0].error_code, 7, "REQUEST_TIMED_OUT");
    assert!(admin
        .conn_config()
        .sasl
        .as_ref()
        .is_some_and(|s| s.users.describe("frank").is_empty()));
}

/// A re-authentication started and never finished does not keep the session: nothing but
/// the SASL requests is served meanwhile, and the connection closes when the session and
/// the re-authentication's own time have both run out.
#[test]
fn an_unfinished_reauthentication_ends_the_session() {
    let mut c = Client::new(config(Some(LIFETIME)));
    c.handshake(1, "PLAIN");
    c.authenticate(2, &plain("alice", "alice-secret"));
    c.advance(Duration::from_secs(9));
    assert_eq!(c.handshake(1, "PLAIN").error_code, 0);
    // Served nothing else while authenticating again.
    assert!(!c.metadata(), "a request during re-authentication closes");
    assert_eq!(
        c.conn.close_reason(),
        Some(&CloseReason::Unauthenticated(ApiKey::DescribeCluster))
    );

    let mut c = Client::new(config(Some(LIFETIME)));
    c.handshake(1, "PLAIN");
    c.authenticate(2, &plain("alice", "alice-secret"));
    c.advance(Duration::from_secs(9));
    assert_eq!(c.handshake(1, "PLAIN").error_code, 0);
    // Not finished: closed 30 s after it started, later than the session's end.
    c.advance(Duration::from_secs(29));
    assert!(c.conn.close_reason().is_none());
    c.advance(Duration::from_secs(1));
    assert_eq!(c.conn.close_reason(), Some(&CloseReason::SessionExpired));

    // A handshake after the session's end is too late.
    let mut c = Client::new(config(Some(LIFETIME)));
    c.handshake(1, "PLAIN");
    c.authenticate(2, &plain("alice", "alice-secret"));
    c.now += Duration::from_secs(11);
    let req = SaslHandshakeRequest {
        mechanism: "PLAIN".into(),
    };
    c.send(1, &Request::SaslHandshake(req));
    assert_eq!(c.conn.close_reason(), Some(&CloseReason::SessionExpired));
}

/// Asking twice does not tell an unknown user from a known one: the salt an unknown name
/// gets is the same every time, and so is its iteration count, the one the users have.
#[test]
fn an_unknown_users_challenge_looks_like_a_known_ones() {
    let first = |user: &str| {
        let mut c = Client::new(config(None));
        c.handshake(1, "SCRAM-SHA-256");
        let r = c
            .authenticate(2, format!("n,,n={user},r=abc").as_bytes())
            .expect("server-first");
        let text = String::from_utf8(r.auth_bytes.to_vec()).expect("utf-8");
        let mut fields = text.split(',').skip(1);
        (
            fields.next().unwrap_or_default().to_owned(),
            fields.next().unwrap_or_default().to_owned(),
        )
    };
    let (alice_salt, alice_iterations) = first("alice");
    assert_eq!(first("alice").0, alice_salt);
    let (salt, iterations) = first("mallory");
    assert_eq!(first("mallory").0, salt, "the same salt each time");
    assert_ne!(salt, alice_salt);
    assert_eq!(iterations, alice_iterations);
}

/// A SASL listener whose PLAIN passwords the backend checks.
fn backend_checked() -> Arc<Config> {
    let mut sasl = SaslConfig::new(
        Arc::new(Users::new(Vec::new())),
        Random::new(|b: &mut [u8]| b.fill(7)),
    );
    sasl.plain_by_backend = true;
    let mut config = Config::default();
    config.security_protocol = SecurityProtocol::SaslPlaintext;
    config.sasl = Some(Arc::new(sasl));
    Arc::new(config)
}

/// The one VerifyPassword the connection asks for: its id, user and password.
fn verify_asked(c: &mut Client) -> (WorkId, String, Vec<u8>) {
    let work: Vec<_> = std::iter::from_fn(|| c.conn.poll_work()).collect();
    let [(id, Work::Store(Command::VerifyPassword { user, password }))] = &work[..] else {
        panic!("one VerifyPassword, got {work:?}")
    };
    let shown = format!("{:?}", work[0].1);
    assert!(
        !shown.contains("secret"),
        "the password is not shown: {shown}"
    );
    (*id, user.clone(), password.expose().to_vec())
}

#[test]
fn plain_checked_by_the_backend_is_asked_once_and_then_remembered() {
    let config = backend_checked();
    let mut c = Client::new(Arc::clone(&config));
    assert_eq!(c.handshake(1, "PLAIN").error_code, 0);
    assert!(c.authenticate(2, &plain("carol", "carol-secret")).is_none());
    let (id, user, password) = verify_asked(&mut c);
    assert_eq!(
        (user.as_str(), &password[..]),
        ("carol", &b"carol-secret"[..])
    );
    assert_eq!(c.conn.principal(), None, "not before the backend says so");
    c.conn.handle_outcome(
        c.now,
        id,
        Outcome::Store(Completion::VerifyPassword(Ok(true))),
    );
    let r: SaslAuthenticateResponse = c.response(ApiKey::SaslAuthenticate, 2).expect("answered");
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert_eq!(c.conn.principal(), Some("carol"));
    assert!(c.metadata());

    // Another connection with the same password: not asked again, for five minutes.
    let mut again = Client::new(Arc::clone(&config));
    again.now = c.now + Duration::from_secs(299);
    again.handshake(1, "PLAIN");
    let r = again
        .authenticate(2, &plain("carol", "carol-secret"))
        .expect("answered at once");
    assert_eq!(r.error_code, 0);
    assert!(again.conn.poll_work().is_none());
    // Another password is asked about, and so is the same one later.
    let mut other = Client::new(Arc::clone(&config));
    other.handshake(1, "PLAIN");
    assert!(other.authenticate(2, &plain("carol", "guess")).is_none());
    let _ = verify_asked(&mut other);
    let mut later = Client::new(Arc::clone(&config));
    later.now = c.now + Duration::from_secs(300);
    later.handshake(1, "PLAIN");
    assert!(later
        .authenticate(2, &plain("carol", "carol-secret"))
        .is_none());
    let _ = verify_asked(&mut later);

    // A bare token after a v0 handshake waits the same way.
    let mut bare = Client::new(Arc::clone(&config));
    bare.handshake(0, "PLAIN");
    bare.send_bare(&plain("dave", "dave-secret"));
    assert!(bare.output().is_empty());
    let (id, _, _) = verify_asked(&mut bare);
    bare.conn.handle_outcome(
        bare.now,
        id,
        Outcome::Store(Completion::VerifyPassword(Ok(true))),
    );
    assert_eq!(&bare.output()[..], &[0, 0, 0, 0]);
    assert_eq!(bare.conn.principal(), Some("dave"));
}

#[test]
fn plain_refused_by_the_backend_fails_after_the_delay() {
    {
        let (outcome, says) = (Ok(false), "Invalid username or password");
        let mut c = Client::new(backend_checked());
        c.handshake(1, "PLAIN");
        assert!(c.authenticate(2, &plain("carol", "wrong-secret")).is_none());
        let (id, _, _) = verify_asked(&mut c);
        c.advance(Duration::from_millis(30));
        c.conn.handle_outcome(
            c.now,
            id,
            Outcome::Store(Completion::VerifyPassword(outcome)),
        );
        assert!(c.output().is_empty(), "not before the delay");
        c.advance(Duration::from_millis(99));
        assert!(c.output().is_empty());
        c.advance(Duration::from_millis(1));
        let r: SaslAuthenticateResponse =
            c.response(ApiKey::SaslAuthenticate, 2).expect("answered");
        assert_eq!(r.error_code, 58);
        let message = r.error_message.map(|m| m.to_string()).unwrap_or_default();
        assert!(message.contains(says), "{message}");
        assert!(!message.contains("wrong-secret"));
        c.advance(Duration::from_millis(500));
        assert!(c.conn.is_closed());
        assert_eq!(c.conn.principal(), None);
        // Nothing remembered: the same password is asked about again.
        let config = c.conn_config();
        let mut again = Client::new(config);
        again.handshake(1, "PLAIN");
        assert!(again
            .authenticate(2, &plain("carol", "wrong-secret"))
            .is_none());
        let _ = verify_asked(&mut again);
    }
}

#[test]
fn plain_outside_the_backends_lengths_fails_without_asking_it() {
    let long_password = "p".repeat(101);
    let longest_password = "p".repeat(100);
    let long_user = "u".repeat(51);
    let longest_user = "u".repeat(50);
    let huge_password = "p".repeat(300);
    for (user, password, asked) in [
        ("carol", longest_password.as_str(), true),
        (longest_user.as_str(), "abc", true),
        ("carol", "ab", false),
        ("carol", long_password.as_str(), false),
        // Past 255 bytes: Iggy's login could not even carry it.
        ("carol", huge_password.as_str(), false),
        ("cr", "carol-secret", false),
        (long_user.as_str(), "carol-secret", false),
    ] {
        let mut c = Client::new(backend_checked());
        c.handshake(1, "PLAIN");
        let answer = c.authenticate(2, &plain(user, password));
        if asked {
            assert!(answer.is_none(), "{user}/{}", password.len());
            let _ = verify_asked(&mut c);
            continue;
        }
        assert!(c.conn.poll_work().is_none(), "{user}/{}", password.len());
        let r = answer.unwrap_or_else(|| {
            c.advance(Duration::from_millis(100));
            c.response::<SaslAuthenticateResponse>(ApiKey::SaslAuthenticate, 2)
                .expect("answered")
        });
        assert_eq!(r.error_code, 58);
        let message = r.error_message.map(|m| m.to_string()).unwrap_or_default();
        assert!(
            message.contains("Invalid username or password"),
            "{message}"
        );
    }
}

#[test]
fn logins_the_backend_checks_are_charged_to_the_budget() {
    let mut sasl = SaslConfig::new(
        Arc::new(Users::new(Vec::new())),
        Random::new(|b: &mut [u8]| b.fill(7)),
    );
    sasl.plain_by_backend = true;
    sasl.password_checks_per_second = 1;
    let mut config = Config::default();
    config.security_protocol = SecurityProtocol::SaslPlaintext;
    config.sasl = Some(Arc::new(sasl));
    let config = Arc::new(config);
    let start = Instant::now();
    let mut first = Client::new(Arc::clone(&config));
    first.now = start;
    first.handshake(1, "PLAIN");
    assert!(first.authenticate(2, &plain("carol", "guess-1")).is_none());
    let _ = verify_asked(&mut first);
    // The budget is spent: the second login waits its turn, a second later, unanswered.
    let mut second = Client::new(Arc::clone(&config));
    second.now = start;
    second.handshake(1, "PLAIN");
    assert!(second.authenticate(2, &plain("carol", "guess-2")).is_none());
    assert!(second.conn.poll_work().is_none(), "Iggy is not asked yet");
    assert_eq!(
        second.conn.poll_timeout(),
        Some(start + Duration::from_secs(1))
    );
    second.advance(Duration::from_millis(999));
    assert!(second.conn.poll_work().is_none(), "not before its turn");
    assert!(second.output().is_empty(), "and not answered");
    second.advance(Duration::from_millis(1));
    let (id, user, _) = verify_asked(&mut second);
    assert_eq!(user, "carol");
    second.conn.handle_outcome(
        second.now,
        id,
        Outcome::Store(Completion::VerifyPassword(Ok(true))),
    );
    let r: SaslAuthenticateResponse = second
        .response(ApiKey::SaslAuthenticate, 2)
        .expect("answered");
    assert_eq!(r.error_code, 0);
    assert_eq!(second.conn.principal(), Some("carol"));
}

/// Checks past the budget are booked one after another; with five seconds of them waiting,
/// the next connection is closed without an answer (not an authentication failure, which
/// Kafka's clients do not retry), and a later one is booked again once the budget refills.
#[test]
fn password_checks_past_the_budget_wait_and_then_close_unanswered() {
    let mut sasl = SaslConfig::new(users(), Random::new(|b: &mut [u8]| b.fill(3)));
    sasl.password_checks_per_second = 2;
    let mut config = Config::default();
    config.security_protocol = SecurityProtocol::SaslPlaintext;
    config.sasl = Some(Arc::new(sasl));
    let config = Arc::new(config);
    let start = Instant::now();
    let client = |at: Instant| {
        let mut c = Client::new(Arc::clone(&config));
        c.now = at;
        c.handshake(1, "PLAIN");
        c
    };
    // alice logs in at once (one check of a burst of two), bob's wrong password takes the
    // other and fails after the failure delay.
    assert_eq!(
        client(start)
            .authenticate(2, &plain("alice", "alice-secret"))
            .map(|r| r.error_code),
        Some(0)
    );
    let mut bob = client(start);
    assert!(bob.authenticate(2, &plain("bob", "wrong")).is_none());
    bob.advance(Duration::from_millis(100));
    let r: SaslAuthenticateResponse = bob.response(ApiKey::SaslAuthenticate, 2).expect("answered");
    assert_eq!(r.error_code, 58);
    // Ten more are booked, half a second apart, up to five seconds ahead.
    let mut waiting: Vec<Client> = (0..10)
        .map(|_| {
            let mut c = client(start);
            assert!(c.authenticate(2, &plain("bob", "bob-secret")).is_none());
            c
        })
        .collect();
    for (k, c) in waiting.iter().enumerate() {
        let turn = start + Duration::from_millis(500) * (k as u32 + 1);
        assert_eq!(c.conn.poll_timeout(), Some(turn), "{k}");
    }
    // A login remembered from before costs no check, so it passes at once.
    assert_eq!(
        client(start)
            .authenticate(2, &plain("alice", "alice-secret"))
            .map(|r| r.error_code),
        Some(0)
    );
    // The eleventh would wait longer: closed, unanswered, after the failure delay.
    let mut refused = client(start);
    assert!(refused
        .authenticate(2, &plain("bob", "bob-secret"))
        .is_none());
    assert!(!refused.conn.is_closed(), "not before the delay");
    refused.advance(Duration::from_millis(100));
    assert!(refused.output().is_empty(), "no answer");
    assert!(refused.conn.is_closed());
    assert!(!matches!(
        refused.conn.close_reason(),
        Some(CloseReason::Authentication(_))
    ));
    // Each booked login is checked at its turn and answered as it deserves.
    let first = &mut waiting[0];
    first.advance(Duration::from_millis(500));
    let r: SaslAuthenticateResponse = first
        .response(ApiKey::SaslAuthenticate, 2)
        .expect("answered at its turn");
    assert_eq!(r.error_code, 0);
    assert_eq!(first.conn.principal(), Some("bob"));
    // Half a second on, the budget has room for one more booking.
    let mut later = client(start + Duration::from_millis(500));
    assert!(later.authenticate(2, &plain("nobody", "wrong")).is_none());
    assert!(!later.conn.is_closed());
    later.advance(Duration::from_secs(5));
    later.advance(Duration::from_millis(100));
    let r: SaslAuthenticateResponse = later
        .response(ApiKey::SaslAuthenticate, 2)
        .expect("answered");
    assert_eq!(r.error_code, 58);
}

/// Two alterations of one user's credential, on two connections at once: the credential
/// in memory is the one the backend kept last, though its answer arrived first.
#[test]
fn concurrent_alterations_of_one_user_end_as_the_backend_kept_them() {
    let mut first = logged_in("admin", "admin-secret");
    let mut second = Client::new(first.conn_config());
    second.handshake(1, "PLAIN");
    let r = second
        .authenticate(2, &plain("admin", "admin-secret"))
        .expect("answered");
    assert_eq!(r.error_code, 0);
    let alter = |c: &mut Client, password: &[u8]| {
        c.send(
            0,
            &Request::AlterUserScramCredentials(AlterUserScramCredentialsRequest {
                upsertions: vec![upsert("carol", ScramMechanism::Sha512, password, 4096)],
                ..AlterUserScramCredentialsRequest::default()
            }),
        );
        let work: Vec<_> = std::iter::from_fn(|| c.conn.poll_work()).collect();
        let [(id, Work::Store(Command::StoreScramCredentials { .. }))] = &work[..] else {
            panic!("one StoreScramCredentials, got {work:?}")
        };
        *id
    };
    let older = alter(&mut first, b"older-pw");
    let newer = alter(&mut second, b"newer-pw");
    // The backend kept the first at place 1 and the second at 2; the second's answer
    // reaches its connection first.
    for (c, id, place) in [(&mut second, newer, 2), (&mut first, older, 1)] {
        c.conn.handle_outcome(
            c.now,
            id,
            Outcome::Store(Completion::StoreScramCredentials(Ok(place))),
        );
        let r: AlterUserScramCredentialsResponse = c
            .response(ApiKey::AlterUserScramCredentials, 0)
            .expect("answered");
        assert_eq!(r.results[0].error_code, 0, "both were kept");
    }
    let authenticates = |password: &str| {
        let mut carol = Client::new(first.conn_config());
        carol.handshake(1, "SCRAM-SHA-512");
        let client = ScramClient::new(ScramMechanism::Sha512, "carol", password);
        let r = carol.authenticate(2, &client.first()).expect("first");
        let (last, _) = client.last(&r.auth_bytes);
        match carol.authenticate(2, &last) {
            Some(r) => r.error_code == 0,
            None => false,
        }
    };
    assert!(
        authenticates("newer-pw"),
        "the change kept last is in memory"
    );
    assert!(!authenticates("older-pw"));
}

/// A bare v0 PLAIN token past the budget waits its turn too, and is answered with the
/// empty bare token then.
#[test]
fn a_bare_plain_token_past_the_budget_waits_its_turn() {
    let mut sasl = SaslConfig::new(users(), Random::new(|b: &mut [u8]| b.fill(5)));
    sasl.password_checks_per_second = 1;
    let mut config = Config::default();
    config.security_protocol = SecurityProtocol::SaslPlaintext;
    config.sasl = Some(Arc::new(sasl));
    let config = Arc::new(config);
    let start = Instant::now();
    let mut first = Client::new(Arc::clone(&config));
    first.now = start;
    first.handshake(0, "PLAIN");
    first.send_bare(&plain("alice", "alice-secret"));
    assert_eq!(&first.output()[..], &[0, 0, 0, 0]);
    let mut second = Client::new(Arc::clone(&config));
    second.now = start;
    second.handshake(0, "PLAIN");
    second.send_bare(&plain("bob", "bob-secret"));
    assert!(second.output().is_empty(), "waiting");
    assert_eq!(second.conn.principal(), None);
    second.advance(Duration::from_secs(1));
    assert_eq!(&second.output()[..], &[0, 0, 0, 0]);
    assert_eq!(second.conn.principal(), Some("bob"));
}

/// A password Iggy could not check (unreachable, or too many logins waiting for it) is
/// not a wrong password: the connection closes unanswered after the failure delay, which
/// Kafka's clients retry, rather than fail with an authentication error they do not.
#[test]
fn a_password_the_backend_could_not_check_closes_unanswered() {
    let mut c = Client::new(backend_checked());
    c.handshake(1, "PLAIN");
    assert!(c.authenticate(2, &plain("carol", "carol-secret")).is_none());
    let (id, _, _) = verify_asked(&mut c);
    c.conn.handle_outcome(
        c.now,
        id,
        Outcome::Store(Completion::VerifyPassword(Err(BackendError::Unavailable(
            "Iggy is down".into(),
        )))),
    );
    assert!(!c.conn.is_closed(), "not before the delay");
    c.advance(Duration::from_millis(100));
    assert!(c.output().is_empty(), "no answer");
    assert!(c.conn.is_closed());
    assert!(matches!(
        c.conn.close_reason(),
        Some(CloseReason::Overloaded(_))
    ));
    assert_eq!(c.conn.principal(), None);
}
