//! The admin listener of the real binary: health and readiness, Prometheus metrics that
//! follow real clients' traffic (requests, records, errors, consumer lag), and a scraper
//! or visitor that misbehaves stalling nothing.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::fake_iggy::FakeIggyServer;
use common::{call, create_topic, produce, record_batch, Gateway};
use iggy_kafka_core::protocol::Response;

/// A GET (or another method) over a fresh connection: status and body.
pub fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the admin listener");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status");
    (status, body.to_owned())
}

/// The value of the sample named exactly `sample` (name and labels as printed).
fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(sample)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

fn scrape(gw: &Gateway) -> String {
    let (status, body) = http(gw.admin.expect("admin"), "GET", "/metrics");
    assert_eq!(status, 200);
    body
}

/// Scrapes until `sample` has `want`, for up to 20 s (the lag is recomputed every 2 s).
fn await_metric(gw: &Gateway, sample: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = None;
    while Instant::now() < deadline {
        last = metric(&scrape(gw), sample);
        if last == Some(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{sample} is {last:?}, not {want}");
}

/// An admin connection that the gateway keeps open, with a partial request head. Places
/// of connections just closed come back a moment later: until then a new one is refused,
/// and is tried again.
fn hold(admin: SocketAddr) -> TcpStream {
    for _ in 0..50 {
        let mut s = TcpStream::connect(admin).expect("connect");
        s.write_all(b"GET /h").expect("a partial head");
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let mut b = [0u8; 1];
        match s.read(&mut b) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return s;
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    panic!("no admin connection stays open");
}

#[test]
fn health_and_readiness_answer_and_unknown_requests_are_refused() {
    let gw = Gateway::start();
    let admin = gw.admin.expect("admin");
    assert_eq!(http(admin, "GET", "/health"), (200, "ok\n".into()));
    assert_eq!(http(admin, "GET", "/ready").0, 200);
    assert_eq!(http(admin, "HEAD", "/ready"), (200, String::new()));
    assert_eq!(http(admin, "GET", "/nothing").0, 404);
    assert_eq!(http(admin, "DELETE", "/metrics").0, 405);
    let page = http(admin, "GET", "/");
    assert_eq!(page.0, 200);
    assert!(page.1.starts_with("<!DOCTYPE html>"));
    gw.stop();
}

#[test]
fn metrics_follow_real_clients_and_the_lag_falls_to_zero() {
    let gw = Gateway::start();
    let bootstrap = gw.addr.to_string();
    let topic = format!("admin-{}", common::RUNTIME);
    let group = format!("admin-group-{}", common::RUNTIME);
    assert_eq!(
        common::admin_traffic(&["produce", &bootstrap, &topic, "50"]),
        "50"
    );
    let text = scrape(&gw);
    let records = format!("iggy_kafka_gateway_produced_records_total{{topic=\"{topic}\"}}");
    assert_eq!(metric(&text, &records), Some(50.0), "{text}");
    assert!(
        metric(&text, "iggy_kafka_gateway_requests_total{api=\"Produce\"}").unwrap_or(0.0) >= 1.0
    );
    assert!(
        metric(
            &text,
            "iggy_kafka_gateway_request_duration_seconds_count{api=\"Produce\"}"
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    assert_eq!(
        metric(
            &text,
            "iggy_kafka_gateway_produced_batches_total{compression=\"none\"}"
        )
        .map(|n| n >= 1.0),
        Some(true)
    );

    // A group that committed 10 of 50 is 40 behind; once it read and committed the rest,
    // it is caught up.
    common::admin_traffic(&["commit", &bootstrap, &topic, &group, "10"]);
    let lag = format!(
        "iggy_kafka_gateway_consumer_group_lag_records{{group=\"{group}\",topic=\"{topic}\",partition=\"0\"}}"
    );
    await_metric(&gw, &lag, 40.0);
    assert_eq!(
        common::admin_traffic(&["consume", &bootstrap, &topic, &group, "40"]),
        "40"
    );
    await_metric(&gw, &lag, 0.0);
    let fetched = format!("iggy_kafka_gateway_fetched_records_total{{topic=\"{topic}\"}}");
    assert!(metric(&scrape(&gw), &fetched).unwrap_or(0.0) >= 40.0);

    // A refused request counts under its error.
    let errors = "iggy_kafka_gateway_request_errors_total{api=\"Produce\",error=\"UNKNOWN_TOPIC_OR_PARTITION\"}";
    let before = metric(&scrape(&gw), errors).unwrap_or(0.0);
    let mut s = gw.connect();
    let batch = record_batch(vec![Bytes::from_static(b"x")], None);
    let Response::Produce(r) = call(&mut s, 8, 1, &produce(&topic, 1, vec![(7, batch)])) else {
        panic!("a produce response");
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, 3);
    assert_eq!(metric(&scrape(&gw), errors), Some(before + 1.0));
    gw.stop();
}

/// Polls `/ready` until it answers `want`, for up to 30 s.
fn await_ready(admin: SocketAddr, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = 0;
    while Instant::now() < deadline {
        last = http(admin, "GET", "/ready").0;
        if last == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("/ready answers {last}, not {want}");
}

/// /ready follows the Iggy backend: false while the server is unreachable, true again once
/// it is back; /health stays true throughout.
#[test]
fn readiness_follows_the_iggy_server() {
    let mut iggy = FakeIggyServer::start();
    let url = iggy.url();
    let gw = Gateway::start_with(&["--iggy", &url, "--stream", &common::unique_stream()]);
    let admin = gw.admin.expect("admin");
    await_ready(admin, 200);
    iggy.stop();
    await_ready(admin, 503);
    assert_eq!(http(admin, "GET", "/health").0, 200);
    let text = scrape(&gw);
    assert_eq!(metric(&text, "iggy_kafka_gateway_ready"), Some(0.0));
    assert_eq!(
        metric(&text, "iggy_kafka_gateway_iggy_connections_up"),
        Some(0.0)
    );
    iggy.resume();
    await_ready(admin, 200);
    let text = scrape(&gw);
    assert_eq!(metric(&text, "iggy_kafka_gateway_ready"), Some(1.0));
    assert!(
        metric(
            &text,
            "iggy_kafka_gateway_iggy_calls_total{command=\"stream.get\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "Iggy calls are counted by command: {text}"
    );
    gw.stop();
}

/// Admin clients that hold connections open without finishing a request, and one that
/// asks for the metrics and never reads them, stall neither Kafka clients nor the admin
/// listener's other visitors; connections past the limit are closed at once.
#[test]
fn misbehaving_admin_clients_stall_nothing() {
    let gw = Gateway::start();
    let admin = gw.admin.expect("admin");
    let mut held = Vec::new();
    for _ in 0..iggy_kafka_admin::MAX_CONNECTIONS - 2 {
        let mut s = TcpStream::connect(admin).expect("connect");
        s.write_all(b"GET /metr").expect("a partial head");
        held.push(s);
    }
    let mut unread = TcpStream::connect(admin).expect("connect");
    for _ in 0..200 {
        // Pipelined scrapes it never reads: the gateway's writes to it block.
        if unread
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .is_err()
        {
            break;
        }
    }
    let mut s = gw.connect();
    call(&mut s, 4, 1, &create_topic("admin-stall", 1));
    let started = Instant::now();
    let batch = record_batch(vec![Bytes::from_static(b"still served")], None);
    let Response::Produce(r) = call(&mut s, 8, 2, &produce("admin-stall", 1, vec![(0, batch)]))
    else {
        panic!("a produce response");
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "Kafka is not held up"
    );
    drop(held);
    drop(unread);

    // Past the limit, a connection is closed without an answer.
    let held: Vec<TcpStream> = (0..iggy_kafka_admin::MAX_CONNECTIONS)
        .map(|_| hold(admin))
        .collect();
    for _ in 0..3 {
        let mut s = TcpStream::connect(admin).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let _ = s.write_all(b"GET /health HTTP/1.1\r\n\r\n");
        let mut b = [0u8; 64];
        assert!(
            matches!(s.read(&mut b), Ok(0) | Err(_)),
            "a connection past the limit is closed"
        );
    }
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = TcpStream::connect(admin).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let _ = s.write_all(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n");
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "places come back as connections end"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    gw.stop();
}
