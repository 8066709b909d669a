//! Kafka listeners and TLS with the real binary (on whichever runtime this test build has)
//! and real clients: confluent-kafka, kafka-python and kcat over SSL, mutual TLS, clients
//! that must fail (an untrusted server, no client certificate, plaintext on a TLS
//! listener), two listeners advertising their own addresses, and a certificate reloaded
//! on SIGHUP. Certificates are made with the `openssl` command at test time.

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use common::tls::{served_serial, start_listeners, tls_client, Pki};

fn topic(name: &str) -> String {
    format!("tls-{name}-{}", common::RUNTIME)
}

/// `--listeners SSL://127.0.0.1:0` with the PKI's certificate, and `extra`.
fn ssl_gateway(pki: &Pki, extra: &[&str]) -> common::tls::Listeners {
    let mut args: Vec<String> = vec!["--listeners".into(), "SSL://127.0.0.1:0".into()];
    args.extend(pki.options());
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    start_listeners(&args, 1)
}

#[test]
fn confluent_kafka_and_kafka_python_produce_and_consume_over_ssl() {
    let pki = Pki::new("clients");
    let gw = ssl_gateway(&pki, &[]);
    let bootstrap = gw.address("SSL").to_string();
    for client in ["confluent", "kafka-python"] {
        let (ok, out) = tls_client(&[client, &bootstrap, &topic(client), &pki.path("ca.pem")]);
        assert!(ok && out.contains("ok"), "{client} over SSL: {out}");
    }
    gw.gateway.stop();
}

#[test]
fn kcat_produces_and_consumes_over_ssl() {
    let pki = Pki::new("kcat");
    let gw = ssl_gateway(&pki, &[]);
    let bootstrap = gw.address("SSL").to_string();
    let topic = topic("kcat");
    let ssl = ["-X", "security.protocol=ssl", "-X"];
    let ca = format!("ssl.ca.location={}", pki.path("ca.pem"));
    let mut produce = Command::new("kcat")
        .args(["-P", "-b", &bootstrap, "-t", &topic])
        .args(ssl)
        .arg(&ca)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("kcat");
    // About 2 MiB: Fetch responses longer than the part the gateway encrypts at a time
    // (`WRITE_CHUNK`), which reach the client as several writes.
    let lines: String = (0..8000)
        .map(|i| format!("{i:06}-{}\n", "x".repeat(250)))
        .collect();
    produce
        .stdin
        .take()
        .expect("stdin")
        .write_all(lines.as_bytes())
        .expect("write");
    assert!(produce.wait().expect("kcat").success());
    let consumed = Command::new("kcat")
        .args(["-C", "-e", "-b", &bootstrap, "-t", &topic])
        .args(ssl)
        .arg(&ca)
        .output()
        .expect("kcat");
    assert!(consumed.status.success());
    assert!(
        consumed.stdout == lines.as_bytes(),
        "consumed {} bytes of the {} produced, or not in order",
        consumed.stdout.len(),
        lines.len()
    );
}

#[test]
fn mutual_tls_lets_in_a_client_certificate_and_refuses_a_client_without_one() {
    let pki = Pki::new("mtls");
    let ca = pki.path("ca.pem");
    // The adapters log the principal they hand the connection at debug.
    let log = "info,iggy_kafka_tokio=debug,iggy_kafka_smol=debug";
    let gw = ssl_gateway(
        &pki,
        &[
            "--ssl-client-auth",
            "required",
            "--ssl-ca",
            &ca,
            "--log",
            log,
        ],
    );
    let bootstrap = gw.address("SSL").to_string();
    let (ok, out) = tls_client(&[
        "confluent",
        &bootstrap,
        &topic("mtls"),
        &ca,
        &pki.path("client.pem"),
        &pki.path("client.key"),
    ]);
    assert!(ok && out.contains("ok"), "with a client certificate: {out}");
    assert!(
        gw.logs("principal=alice", Duration::from_secs(5)),
        "the certificate's CN is the connection's principal"
    );
    let (ok, _) = tls_client(&["confluent", &bootstrap, &topic("mtls-none"), &ca]);
    assert!(!ok, "without a client certificate the client must fail");
    gw.gateway.stop();
}

#[test]
fn a_client_that_does_not_trust_the_certificate_fails() {
    let pki = Pki::new("untrusted");
    let gw = ssl_gateway(&pki, &[]);
    let bootstrap = gw.address("SSL").to_string();
    let (ok, _) = tls_client(&[
        "confluent",
        &bootstrap,
        &topic("untrusted"),
        &pki.path("other-ca.pem"),
    ]);
    assert!(!ok, "a client trusting another CA must fail");
}

#[test]
fn a_plaintext_client_on_a_tls_listener_is_closed_and_the_gateway_serves_on() {
    let pki = Pki::new("plaintext");
    let gw = ssl_gateway(&pki, &[]);
    let address = gw.address("SSL");
    let mut s = std::net::TcpStream::connect(address).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // ApiVersions v3, as a Kafka client opens.
    s.write_all(&[
        0, 0, 0, 14, 0, 18, 0, 3, 0, 0, 0, 1, 0, 4, b't', b'e', b's', b't',
    ])
    .expect("write");
    let mut answer = Vec::new();
    let read = s.read_to_end(&mut answer);
    assert!(read.is_ok(), "closed, not left hanging: {read:?}");
    // At most a TLS alert (content type 21), never a Kafka response.
    assert!(answer.is_empty() || answer[0] == 21, "{answer:?}");
    let (ok, out) = tls_client(&[
        "confluent",
        &address.to_string(),
        &topic("after-plaintext"),
        &pki.path("ca.pem"),
    ]);
    assert!(
        ok && out.contains("ok"),
        "a TLS client still gets in: {out}"
    );
    gw.gateway.stop();
}

#[test]
fn each_listener_advertises_its_own_address() {
    let pki = Pki::new("two");
    let mut args: Vec<String> = [
        "--listeners",
        "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0",
        "--advertised-listeners",
        "PLAINTEXT://localhost:19092,SSL://localhost:19093",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(pki.options());
    let gw = start_listeners(&args, 2);
    let plain = gw.address("PLAINTEXT").to_string();
    let ssl = gw.address("SSL").to_string();
    let (ok, out) = tls_client(&["metadata", "PLAINTEXT", &plain]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "localhost:19092");
    let (ok, out) = tls_client(&["metadata", "SSL", &ssl, &pki.path("ca.pem")]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "localhost:19093");
    gw.gateway.stop();
}

#[test]
fn a_new_certificate_is_served_after_sighup_and_a_bad_one_is_not() {
    let pki = Pki::new("reload");
    let gw = ssl_gateway(&pki, &[]);
    let address = gw.address("SSL");
    assert_eq!(served_serial(address), "01");
    pki.issue("server", "localhost", 3, "serverAuth");
    let pid = gw.gateway.pid().to_string();
    let hup = || {
        assert!(Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill")
            .success());
    };
    hup();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while served_serial(address) != "03" {
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate is served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::write(pki.dir.join("server.pem"), "not a certificate").expect("write");
    hup();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        served_serial(address),
        "03",
        "a bad file leaves the old one in place"
    );
    gw.gateway.stop();
}

/// Listener options that cannot work stop start-up, naming the option, before binding.
#[test]
fn bad_listener_and_tls_options_are_refused() {
    let pki = Pki::new("refused");
    let cert = pki.path("server.pem");
    let key = pki.path("server.key");
    for (args, says) in [
        (
            vec!["--listeners", "SSL://127.0.0.1:0"],
            "--ssl-certificate: listener SSL is SSL",
        ),
        (
            vec![
                "--listen",
                "127.0.0.1:0",
                "--listeners",
                "PLAINTEXT://127.0.0.1:0",
            ],
            "give either --listen",
        ),
        (
            vec![
                "--listeners",
                "PLAINTEXT://127.0.0.1:0",
                "--advertised-listeners",
                "SSL://h:1",
            ],
            "--advertised-listeners: SSL names no listener",
        ),
        (
            vec![
                "--listeners",
                "SSL://127.0.0.1:0",
                "--ssl-certificate",
                &cert,
                "--ssl-key",
                &key,
                "--ssl-client-auth",
                "required",
            ],
            "--ssl-ca",
        ),
        (
            vec![
                "--listeners",
                "SSL://127.0.0.1:0",
                "--ssl-certificate",
                &key,
                "--ssl-key",
                &key,
            ],
            "server.key",
        ),
        (
            vec![
                "--listeners",
                "SSL://127.0.0.1:0",
                "--ssl-certificate",
                &cert,
                "--ssl-key",
                &key,
                "--ssl-cipher-suites",
                "TLS_AES_128_GCM_SHA256,TLS_RSA_WITH_RC4_128_MD5",
            ],
            "--ssl-cipher-suites: cipher suite \"TLS_RSA_WITH_RC4_128_MD5\" is not one rustls offers",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_iggy-kafka-gateway"))
            .args(["--admin-listen", "off"])
            .args(&args)
            .env_remove("RUST_LOG")
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must be refused: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("listening"),
            "{args:?} bound first: {stderr}"
        );
    }
}
