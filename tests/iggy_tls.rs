//! TLS on the gateway's hop to Iggy (`?tls=true&tls_ca_file=...&tls_domain=...` in
//! `--iggy`, as Iggy's connection strings spell them), against the in-process fake Iggy
//! serving TLS with certificates made by `openssl` here; and, with `IGGY_KAFKA_TEST_IGGY_TLS`
//! naming a real Iggy server with TCP TLS on (see scripts/test-iggy.sh), against it.

mod common;

use std::process::Command;

use bytes::Bytes;
use common::fake_iggy::FakeIggyServer;
use common::tls::Pki;
use common::{call, create_topic, high_watermark, produce_to_0, record_batch, Gateway};
use iggy_kafka_core::protocol::Response;

/// Creates a topic, produces two records and reads the high watermark back; then a record
/// longer than the part the gateway encrypts at a time (`WRITE_CHUNK`), which must come
/// back whole.
fn round_trip(gw: &Gateway, topic: &str) {
    let mut s = gw.connect();
    let Response::CreateTopics(r) = call(&mut s, 7, 1, &create_topic(topic, 1)) else {
        panic!("CreateTopics")
    };
    assert_eq!(r.topics[0].error_code, 0);
    let batch = || record_batch(vec![Bytes::from_static(b"over TLS")], None);
    assert_eq!(produce_to_0(&mut s, 9, topic, batch()), (0, 0));
    assert_eq!(produce_to_0(&mut s, 9, topic, batch()), (0, 1));
    assert_eq!(high_watermark(&mut s, topic, 0), 2);
    let long: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let batch = record_batch(vec![Bytes::from(long.clone())], None);
    assert_eq!(produce_to_0(&mut s, 9, topic, batch), (0, 2));
    let fetched = common::fetch_0(&mut s, topic, 2);
    assert_eq!(fetched.error_code, 0);
    let records = fetched.records.unwrap_or_default();
    let at = records
        .windows(64)
        .position(|w| w == &long[..64])
        .expect("the long record comes back");
    assert_eq!(records.get(at..at + long.len()), Some(&long[..]));
}

#[test]
fn the_gateway_reaches_iggy_over_tls() {
    let pki = Pki::new("iggy-hop");
    let iggy = FakeIggyServer::start_tls(&pki.path("server.pem"), &pki.path("server.key"));
    let port = iggy.addr.port();
    // The certificate names localhost and 127.0.0.1: dialed by address, and by address
    // with the name given as tls_domain.
    for url in [
        format!(
            "iggy://iggy:iggy@127.0.0.1:{port}?tls=true&tls_ca_file={}",
            pki.path("ca.pem")
        ),
        format!(
            "iggy://iggy:iggy@127.0.0.1:{port}?tls=true&tls_domain=localhost&tls_ca_file={}",
            pki.path("ca.pem")
        ),
    ] {
        let gw = Gateway::start_with(&["--iggy", &url, "--stream", &common::unique_stream()]);
        round_trip(&gw, &format!("tls-hop-{}", common::RUNTIME));
        gw.stop();
    }
}

/// Runs the gateway expecting it to refuse to start; its stderr.
fn refused(url: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_iggy-kafka-gateway"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "off"])
        .args(["--iggy", url, "--stream", &common::unique_stream()])
        .env_remove("RUST_LOG")
        .output()
        .expect("run the gateway");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{url}: {stderr}");
    assert!(!stderr.contains("listening"), "{url}: {stderr}");
    stderr
}

#[test]
fn an_iggy_certificate_the_gateway_does_not_trust_stops_start_up() {
    let pki = Pki::new("iggy-untrusted");
    let iggy = FakeIggyServer::start_tls(&pki.path("server.pem"), &pki.path("server.key"));
    let addr = iggy.addr;
    let untrusted = refused(&format!(
        "iggy://iggy:iggy@{addr}?tls=true&tls_ca_file={}",
        pki.path("other-ca.pem")
    ));
    assert!(untrusted.contains("TLS with Iggy failed"), "{untrusted}");
    assert!(
        untrusted.contains("invalid peer certificate"),
        "{untrusted}"
    );
    let wrong_name = refused(&format!(
        "iggy://iggy:iggy@{addr}?tls=true&tls_domain=iggy.example&tls_ca_file={}",
        pki.path("ca.pem")
    ));
    assert!(
        wrong_name.contains("invalid peer certificate"),
        "{wrong_name}"
    );
}

#[test]
fn bad_tls_options_are_refused_by_name() {
    let pki = Pki::new("iggy-options");
    for (url, says) in [
        (
            "iggy://iggy:iggy@127.0.0.1:1?tls=on".to_owned(),
            "--iggy option tls=\"on\": expected true or false",
        ),
        (
            "iggy://iggy:iggy@127.0.0.1:1?tls=true&tls_ca_file=/nonexistent/ca.pem".to_owned(),
            "--iggy option tls_ca_file: cannot read /nonexistent/ca.pem",
        ),
        (
            format!(
                "iggy://iggy:iggy@127.0.0.1:1?tls=true&tls_ca_file={}",
                pki.path("server.key")
            ),
            "--iggy option tls_ca_file:",
        ),
        (
            format!(
                "iggy://iggy:iggy@127.0.0.1:1?tls=true&tls_domain=a%20b&tls_ca_file={}",
                pki.path("ca.pem")
            ),
            "--iggy option tls_domain: \"a b\" is not a DNS name",
        ),
        (
            "iggy://iggy:iggy@127.0.0.1:1?tls_ca_file=/ca.pem".to_owned(),
            "need tls=true",
        ),
        (
            "iggy://iggy:iggy@127.0.0.1:1?tls=true&tls_cafile=/ca.pem".to_owned(),
            "unknown option \"tls_cafile\"",
        ),
    ] {
        let stderr = refused(&url);
        assert!(stderr.contains(says), "{url}: {stderr}");
    }
}

/// A real Iggy server with TCP TLS on (`IGGY_TCP_TLS_ENABLED=true`, its certificate in
/// `IGGY_TCP_TLS_CERT_FILE` and `IGGY_TCP_TLS_KEY_FILE`), named by
/// `IGGY_KAFKA_TEST_IGGY_TLS` with its options, e.g.
/// `iggy://iggy:iggy@127.0.0.1:8090?tls=true&tls_ca_file=/path/ca.pem`.
#[test]
#[ignore = "needs a real Iggy server with TLS: IGGY_KAFKA_TEST_IGGY_TLS, see scripts/test-iggy.sh"]
fn a_real_iggy_over_tls() {
    let Ok(url) = std::env::var("IGGY_KAFKA_TEST_IGGY_TLS") else {
        // Run among the other real-Iggy tests without a TLS server: nothing to test.
        eprintln!("IGGY_KAFKA_TEST_IGGY_TLS is not set: skipped");
        return;
    };
    let gw = Gateway::start_with(&["--iggy", &url, "--stream", &common::unique_stream()]);
    round_trip(&gw, &format!("tls-real-{}", common::RUNTIME));
    gw.stop();
}
