//! TLS for the integration tests: a CA, server and client certificates made with the
//! `openssl` command in a temporary directory (nothing secret is committed), and gateways
//! started with named listeners.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::Gateway;

/// A throwaway PKI: `ca.pem`, `server.pem`/`server.key` (for localhost and 127.0.0.1),
/// `client.pem`/`client.key` (CN `alice`), and `other-ca.pem`, a CA that signed nothing here.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "kgw-pki-{}-{}-{name}",
            std::process::id(),
            super::RUNTIME
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let pki = Self { dir };
        pki.ca("ca", "test CA");
        pki.ca("other-ca", "other CA");
        pki.issue("server", "localhost", 1, "serverAuth");
        pki.issue("client", "alice", 2, "clientAuth");
        pki
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .current_dir(&self.dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("the openssl command");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn ca(&self, name: &str, cn: &str) {
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ]);
    }

    /// Issues `NAME.pem` and `NAME.key` for `cn`, signed by `ca.pem`, with serial `serial`.
    pub fn issue(&self, name: &str, cn: &str, serial: u32, usage: &str) {
        let ext = format!("{name}.ext");
        std::fs::write(
            self.dir.join(&ext),
            format!(
                "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                 extendedKeyUsage={usage}\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
            ),
        )
        .expect("ext");
        // Written beside the final files and renamed over them: a gateway watching them
        // never sees half a file.
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &format!("{name}.key.new"),
            "-out",
            &format!("{name}.csr"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            &serial.to_string(),
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &format!("{name}.pem.new"),
        ]);
        for f in ["key", "pem"] {
            std::fs::rename(
                self.dir.join(format!("{name}.{f}.new")),
                self.dir.join(format!("{name}.{f}")),
            )
            .expect("rename");
        }
    }

    /// The gateway options of a TLS listener with these files.
    pub fn options(&self) -> Vec<String> {
        vec![
            "--ssl-certificate".into(),
            self.path("server.pem"),
            "--ssl-key".into(),
            self.path("server.key"),
        ]
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A gateway with the listeners `--listeners` names (no `--listen`), and where each bound.
pub struct Listeners {
    pub gateway: Gateway,
    /// Each listener's name and bound address, as logged.
    pub bound: Vec<(String, SocketAddr)>,
}

impl Listeners {
    /// Whether the gateway logs a line containing `needle` within `wait`.
    pub fn logs(&self, needle: &str, wait: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + wait;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.gateway.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    pub fn address(&self, name: &str) -> SocketAddr {
        self.bound
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no listener {name}: {:?}", self.bound))
    }
}

/// Starts the gateway with `args` (which name `--listeners`) and waits until each of its
/// `listeners` logged its address.
pub fn start_listeners(args: &[String], listeners: usize) -> Listeners {
    let log_level = if args.iter().any(|a| a == "--log") {
        Vec::new()
    } else {
        vec![
            "--log".to_owned(),
            std::env::var("IGGY_KAFKA_TEST_LOG").unwrap_or_else(|_| "info".into()),
        ]
    };
    let (child, log) = super::spawn_logged(
        Command::new(env!("CARGO_BIN_EXE_iggy-kafka-gateway"))
            .args(["--admin-listen", "off"])
            .args(log_level)
            .args(args),
    );
    let field = |l: &str, name: &str| {
        l.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .map(|v| v.trim_matches('"').to_owned())
    };
    let mut bound = Vec::new();
    let mut first = None;
    for line in log.iter() {
        if line.contains("listening") && line.contains("runtime=") {
            let name = field(&line, "listener=").expect("listener=");
            let addr = field(&line, "bound=")
                .and_then(|a| a.parse().ok())
                .expect("bound=");
            first.get_or_insert(addr);
            bound.push((name, addr));
            if bound.len() == listeners {
                break;
            }
        }
    }
    assert_eq!(bound.len(), listeners, "every listener logs its address");
    Listeners {
        gateway: Gateway {
            addr: first.expect("an address"),
            admin: None,
            child,
            log,
        },
        bound,
    }
}

/// Runs `tests/clients/tls_client.py` with `args`; its success and output.
pub fn tls_client(args: &[&str]) -> (bool, String) {
    let out = Command::new(super::python())
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients"))
        .arg("tls_client.py")
        .args(args)
        .output()
        .expect("run the client");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "tls_client {args:?}: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), stdout)
}

/// The serial number of the certificate the TLS listener at `addr` serves, as `openssl
/// s_client` sees it (hexadecimal, e.g. `01`).
pub fn served_serial(addr: SocketAddr) -> String {
    let connect = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "localhost",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client");
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl x509");
    {
        use std::io::Write;
        let mut stdin = x509.stdin.take().expect("stdin");
        stdin.write_all(&connect.stdout).expect("write");
    }
    let out = x509.wait_with_output().expect("x509");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_owned()
}
