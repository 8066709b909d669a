//! The admin listener seen by real tools: a Prometheus server (Debian's `prometheus`,
//! started here) scrapes the gateway while clients produce, consume and commit, and is
//! queried; and headless Chromium renders the status page with a running group and its lag.
//! `scripts/install-test-deps.sh` installs both.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::fake_iggy::FakeIggyServer;
use common::{call, create_topic, produce, record_batch, Gateway};
use iggy_kafka_core::protocol::Response;

fn clients() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// `text` percent-encoded for a URL's query string.
fn query_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A GET over a fresh connection: the body.
fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    // Prometheus answers its API in chunks; the body is JSON either way.
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Some(unchunk(body));
    }
    Some(body.to_owned())
}

fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Prometheus {
    /// A Prometheus server scraping `target` every second.
    fn start(target: SocketAddr) -> Self {
        let dir = std::env::temp_dir().join(format!("kgw-prometheus-{}", common::unique_stream()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: gateway\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("the configuration");
        let addr = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus: run scripts/install-test-deps.sh");
        Self {
            child,
            addr,
            _dir: TempDir(dir),
        }
    }

    /// The value of an instant query with one result, if it has one.
    fn value(&self, query: &str) -> Option<f64> {
        let body = get(
            self.addr,
            &format!("/api/v1/query?query={}", query_encoded(query)),
        )?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        let result = json["data"]["result"].as_array()?;
        result.first()?["value"][1].as_str()?.parse().ok()
    }

    /// Waits, up to 40 s, until `query` gives `want`.
    fn await_value(&self, query: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(40);
        let mut last = None;
        while Instant::now() < deadline {
            last = self.value(query);
            if last == Some(want) {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("Prometheus answers {last:?} to {query}, not {want}");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_what_clients_did() {
    let gw = Gateway::start();
    let prometheus = Prometheus::start(gw.admin.expect("admin"));
    prometheus.await_value("up{job=\"gateway\"}", 1.0);

    // Requests sent on a client of our own are counted exactly.
    let topic = format!("prom-{}", common::RUNTIME);
    let mut s = gw.connect();
    call(&mut s, 4, 1, &create_topic(&topic, 1));
    for i in 0..5 {
        let batch = record_batch(vec![Bytes::from_static(b"r"); 6], None);
        let Response::Produce(r) = call(&mut s, 8, 2 + i, &produce(&topic, 1, vec![(0, batch)]))
        else {
            panic!("a produce response");
        };
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    prometheus.await_value("iggy_kafka_gateway_requests_total{api=\"Produce\"}", 5.0);
    prometheus.await_value(
        &format!("iggy_kafka_gateway_produced_records_total{{topic=\"{topic}\"}}"),
        30.0,
    );

    // A refused request raises its error's counter.
    let batch = record_batch(vec![Bytes::from_static(b"r")], None);
    call(&mut s, 8, 9, &produce(&topic, 1, vec![(3, batch)]));
    prometheus.await_value(
        "iggy_kafka_gateway_request_errors_total{api=\"Produce\",error=\"UNKNOWN_TOPIC_OR_PARTITION\"}",
        1.0,
    );

    // A group's lag, as Prometheus stores it, falls to 0 once the consumer caught up.
    let bootstrap = gw.addr.to_string();
    let group = format!("prom-group-{}", common::RUNTIME);
    common::admin_traffic(&["commit", &bootstrap, &topic, &group, "12"]);
    let lag = format!(
        "iggy_kafka_gateway_consumer_group_lag_records{{group=\"{group}\",topic=\"{topic}\"}}"
    );
    prometheus.await_value(&lag, 18.0);
    assert_eq!(
        common::admin_traffic(&["consume", &bootstrap, &topic, &group, "18"]),
        "18"
    );
    prometheus.await_value(&lag, 0.0);
    drop(prometheus);
    gw.stop();
}

/// The Grafana dashboard in `deploy/` queries only metrics a real scrape has (of a gateway
/// on the Iggy backend, here the fake Iggy server), and Prometheus accepts every query.
#[test]
fn the_dashboard_queries_what_the_gateway_exports() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana-dashboard.json"),
        )
        .expect("deploy/grafana-dashboard.json"),
    )
    .expect("JSON");
    let queries: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    assert!(queries.len() > 20, "the dashboard has its panels");

    let iggy = FakeIggyServer::start();
    let url = iggy.url();
    let gw = Gateway::start_with(&["--iggy", &url, "--stream", &common::unique_stream()]);
    let admin = gw.admin.expect("admin");
    let bootstrap = gw.addr.to_string();
    let topic = format!("dash-{}", common::RUNTIME);
    assert_eq!(
        common::admin_traffic(&["produce", &bootstrap, &topic, "10"]),
        "10"
    );
    common::admin_traffic(&["commit", &bootstrap, &topic, "dash-group", "4"]);
    // And a refused request, so that the error counters have samples.
    let mut s = gw.connect();
    let batch = record_batch(vec![Bytes::from_static(b"r")], None);
    call(&mut s, 8, 1, &produce(&topic, 1, vec![(5, batch)]));
    let deadline = Instant::now() + Duration::from_secs(20);
    let scraped = loop {
        let text = get(admin, "/metrics").expect("a scrape");
        if text.contains("consumer_group_lag_records{") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let exported: std::collections::BTreeSet<&str> = scraped
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    for q in &queries {
        for name in q
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .filter(|w| w.starts_with("iggy_kafka_gateway_") || w.starts_with("process_"))
        {
            assert!(
                exported.contains(name),
                "the dashboard queries {name}, which the gateway does not export ({q})"
            );
        }
    }

    let prometheus = Prometheus::start(admin);
    prometheus.await_value("up{job=\"gateway\"}", 1.0);
    for q in &queries {
        let q = q
            .replace("$__rate_interval", "1m")
            .replace("$instance", ".*");
        let body = get(
            prometheus.addr,
            &format!("/api/v1/query?query={}", query_encoded(&q)),
        )
        .unwrap_or_else(|| panic!("Prometheus refused {q}"));
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(json["status"], "success", "{q}: {body}");
    }
    drop(prometheus);
    gw.stop();
}

#[test]
fn headless_chromium_shows_a_running_group_and_its_lag() {
    let gw = Gateway::start();
    let admin = gw.admin.expect("admin");
    let bootstrap = gw.addr.to_string();
    let topic = format!("page-{}", common::RUNTIME);
    let group = format!("page-group-{}", common::RUNTIME);
    assert_eq!(
        common::admin_traffic(&["produce", &bootstrap, &topic, "25"]),
        "25"
    );
    let mut member = Command::new(common::python())
        .current_dir(clients())
        .args([
            "admin_traffic.py",
            "member",
            &bootstrap,
            &topic,
            &group,
            "40",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("a group member");
    // Until the member has joined and read everything.
    let deadline = Instant::now() + Duration::from_secs(40);
    let lag_zero = format!(
        "iggy_kafka_gateway_consumer_group_lag_records{{group=\"{group}\",topic=\"{topic}\",partition=\"0\"}} 0"
    );
    while !get(admin, "/metrics").is_some_and(|m| m.contains(&lag_zero)) {
        assert!(Instant::now() < deadline, "the member never caught up");
        std::thread::sleep(Duration::from_millis(300));
    }
    let profile = std::env::temp_dir().join(format!("kgw-chromium-{}", common::unique_stream()));
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.display()),
            "--dump-dom",
            &format!("http://{admin}/"),
        ])
        .stderr(Stdio::null())
        .output()
        .expect("run chromium: run scripts/install-test-deps.sh");
    let _ = std::fs::remove_dir_all(&profile);
    let _ = member.kill();
    let _ = member.wait();
    assert!(out.status.success(), "chromium failed: {}", out.status);
    let dom = String::from_utf8_lossy(&out.stdout);
    let row = dom
        .split("<tr")
        .find(|r| r.contains(&format!("data-group=\"{group}\"")))
        .unwrap_or_else(|| panic!("no row for the group in\n{dom}"));
    assert!(row.contains("Stable"), "the group is running: {row}");
    assert!(row.contains("rdkafka"), "its member is listed: {row}");
    assert!(
        row.contains(&format!("{topic}-0")) && row.contains("class=\"n lag\">0<"),
        "its lag on the partition is shown: {row}"
    );
    assert!(dom.contains("id=\"ready\">ready<"));
    gw.stop();
}
