//! Starts the real gateway binary (built with whichever runtime feature this test build
//! has) and talks Kafka to it over TCP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const RUNTIME: &str = if cfg!(feature = "smol") {
    "smol"
} else {
    "tokio"
};

struct Gateway {
    child: Child,
    addr: SocketAddr,
    log: mpsc::Receiver<String>,
}

impl Gateway {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_iggy-kafka-gateway"))
            .args(["--listen", "127.0.0.1:0", "--log", "info"])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the gateway");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("gateway: {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = log
            .iter()
            .find(|l| l.contains("listening"))
            .expect("the gateway logs its address");
        assert!(
            line.contains(&format!("runtime=\"{RUNTIME}\""))
                || line.contains(&format!("runtime={RUNTIME}")),
            "{line}"
        );
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("bound="))
            .expect("bound=")
            .parse()
            .expect("address");
        Self { child, addr, log }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s
    }

    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(killed.success());
        let status = self.child.wait().expect("wait");
        assert!(
            status.success(),
            "the gateway exits cleanly on SIGTERM: {status}"
        );
        assert!(
            self.log.iter().any(|l| l.contains("stopped")),
            "it logs that it stopped"
        );
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut size = [0u8; 4];
    s.read_exact(&mut size).expect("size");
    let mut frame = vec![0u8; u32::from_be_bytes(size) as usize];
    s.read_exact(&mut frame).expect("frame");
    frame
}

fn be16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}

/// ApiVersions v0 and v3, then a pipelined pair, on one connection.
#[test]
fn exchanges_api_versions_v0_and_v3() {
    let gw = Gateway::start();
    let mut s = gw.connect();

    // v0: header v1 (client id "it"), empty body.
    s.write_all(b"\x00\x00\x00\x0c\x00\x12\x00\x00\x00\x00\x00\x01\x00\x02it")
        .expect("write");
    let f = read_frame(&mut s);
    assert_eq!(&f[..4], &1i32.to_be_bytes(), "correlation id");
    assert_eq!(be16(&f[4..]), 0, "error code");
    let n = i32::from_be_bytes([f[6], f[7], f[8], f[9]]);
    assert!(n >= 1);
    let entries: Vec<(i16, i16, i16)> = (0..n as usize)
        .map(|i| {
            let e = &f[10 + i * 6..];
            (be16(e), be16(&e[2..]), be16(&e[4..]))
        })
        .collect();
    assert!(entries.contains(&(18, 0, 4)), "{entries:?}");

    // v3: header v2, compact client software name and version, empty tagged fields.
    let v3 =
        b"\x00\x00\x00\x1e\x00\x12\x00\x03\x00\x00\x00\x02\x00\x02it\x00\x0aiggy-test\x061.0.0\x00";
    s.write_all(v3).expect("write");
    let f = read_frame(&mut s);
    // Response header v0 even for a flexible version: no tagged-field byte after the id.
    assert_eq!(&f[..4], &2i32.to_be_bytes());
    assert_eq!(be16(&f[4..]), 0);
    // Compact array: count + 1 as an unsigned varint.
    assert_eq!(f[6] as usize - 1, entries.len());

    // Two requests in one write come back in order.
    let mut two = Vec::new();
    two.extend_from_slice(b"\x00\x00\x00\x0c\x00\x12\x00\x00\x00\x00\x00\x03\x00\x02it");
    two.extend_from_slice(b"\x00\x00\x00\x0c\x00\x12\x00\x01\x00\x00\x00\x04\x00\x02it");
    s.write_all(&two).expect("write");
    assert_eq!(&read_frame(&mut s)[..4], &3i32.to_be_bytes());
    assert_eq!(&read_frame(&mut s)[..4], &4i32.to_be_bytes());
    drop(s);
    gw.stop();
}

/// What Kafka would do, against the running binary: each hostile input closes its own
/// connection and the gateway keeps serving everyone else.
#[test]
fn hostile_input_closes_only_that_connection() {
    let gw = Gateway::start();
    let mut healthy = gw.connect();
    let cases: [(&str, &[u8]); 4] = [
        ("negative size", b"\xff\xff\xff\xff"),
        ("oversized", b"\x7f\xff\xff\xff"),
        (
            "unknown API key",
            b"\x00\x00\x00\x0a\x03\xe7\x00\x00\x00\x00\x00\x01\xff\xff",
        ),
        (
            "truncated body",
            b"\x00\x00\x00\x0d\x00\x12\x00\x03\x00\x00\x00\x01\xff\xff\x00\x06a",
        ),
    ];
    for (what, bytes) in cases {
        let mut s = gw.connect();
        s.write_all(bytes).expect("write");
        let mut rest = Vec::new();
        let read = s.read_to_end(&mut rest);
        assert!(
            matches!(read, Ok(0)) || read.is_err(),
            "{what}: the gateway closes the connection, answering nothing ({read:?}, {rest:?})"
        );
        healthy
            .write_all(b"\x00\x00\x00\x0c\x00\x12\x00\x00\x00\x00\x00\x05\x00\x02it")
            .expect("write");
        assert_eq!(
            &read_frame(&mut healthy)[..4],
            &5i32.to_be_bytes(),
            "after {what}"
        );
    }
    drop(healthy);
    gw.stop();
}
