//! `--iggy` URLs: `iggy://USER:PASSWORD@HOST:PORT`, or `iggy://TOKEN@HOST:PORT` for a
//! personal access token (Iggy's own connection strings; `iggy+tcp://` is accepted too).
//! A cluster's nodes may be listed, `iggy://USER:PASSWORD@HOST1:PORT1,HOST2:PORT2`; one is
//! enough, the others are learned from it.
//!
//! Options follow the host, as in Iggy's connection strings: `?tls=true` for TLS,
//! `tls_domain=NAME` for the name the server's certificate must carry (the host dialed
//! when left out), `tls_ca_file=PATH` for the CA to trust (the system's roots when left
//! out). Iggy's other TCP options (`reconnection_retries`, `reconnection_interval`,
//! `reestablish_after`, `heartbeat_interval`, `nodelay`) are accepted and have no effect:
//! the gateway reconnects by its own rules and always turns Nagle's algorithm off. Values
//! may be %-escaped (an `@` in a path must be).

use iggy_kafka_iggy_client::Credentials;

/// Where the Iggy server (or the cluster's nodes) are and who logs in.
pub(crate) struct IggyUrl {
    /// `host:port` each, at least one.
    pub(crate) addresses: Vec<String>,
    pub(crate) credentials: Credentials,
    /// TLS to every node, when `tls=true`.
    pub(crate) tls: Option<TlsOptions>,
}

/// The URL's TLS options.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct TlsOptions {
    /// `tls_domain`.
    pub(crate) domain: Option<String>,
    /// `tls_ca_file`.
    pub(crate) ca_file: Option<std::path::PathBuf>,
}

/// Iggy's TCP connection-string options the gateway takes and ignores.
const IGNORED_OPTIONS: [&str; 5] = [
    "reconnection_retries",
    "reconnection_interval",
    "reestablish_after",
    "heartbeat_interval",
    "nodelay",
];

/// The options after `?`, each `NAME=VALUE`, `&`-separated.
fn parse_options(query: &str) -> Result<Option<TlsOptions>, String> {
    let mut enabled = false;
    let mut tls = TlsOptions::default();
    for option in query.split('&').filter(|o| !o.is_empty()) {
        let (name, value) = option
            .split_once('=')
            .ok_or_else(|| format!("--iggy option {option:?} needs a value (NAME=VALUE)"))?;
        let value = percent_decode(value).map_err(|e| format!("--iggy option {name}: {e}"))?;
        match name {
            "tls" => {
                enabled = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(format!(
                            "--iggy option tls={value:?}: expected true or false"
                        ))
                    }
                };
            }
            "tls_domain" if value.is_empty() => {
                return Err("--iggy option tls_domain is empty".into())
            }
            "tls_domain" => tls.domain = Some(value),
            "tls_ca_file" if value.is_empty() => {
                return Err("--iggy option tls_ca_file is empty".into())
            }
            "tls_ca_file" => tls.ca_file = Some(value.into()),
            n if IGNORED_OPTIONS.contains(&n) => {}
            _ => {
                return Err(format!(
                    "--iggy has an unknown option {name:?}: expected tls, tls_domain, tls_ca_file or one of Iggy's {}",
                    IGNORED_OPTIONS.join(", ")
                ))
            }
        }
    }
    if !enabled && tls != TlsOptions::default() {
        return Err("--iggy options tls_domain and tls_ca_file need tls=true".into());
    }
    Ok(enabled.then_some(tls))
}

impl IggyUrl {
    /// The servers reached over the network without TLS: every address that is not a
    /// loopback one (`localhost`, `127.0.0.0/8`, `::1`) when the URL has no `tls=true`.
    pub(crate) fn in_the_clear(&self) -> Vec<&str> {
        if self.tls.is_some() {
            return Vec::new();
        }
        self.addresses
            .iter()
            .map(String::as_str)
            .filter(|a| !is_loopback(a))
            .collect()
    }
}

/// Whether `host:port` names this machine.
fn is_loopback(address: &str) -> bool {
    if let Ok(a) = address.parse::<std::net::SocketAddr>() {
        return a.ip().is_loopback();
    }
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl std::fmt::Debug for IggyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "iggy://{:?}@{}",
            self.credentials,
            self.addresses.join(",")
        )?;
        if let Some(tls) = &self.tls {
            write!(f, " with TLS {tls:?}")?;
        }
        Ok(())
    }
}

/// Iggy's default TCP port.
const DEFAULT_PORT: u16 = 8090;

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a bad %-escape in the URL")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the URL's credentials are not UTF-8".to_owned())
}

/// Parses an `--iggy` URL. Errors never repeat the credentials.
pub(crate) fn parse(url: &str) -> Result<IggyUrl, String> {
    let rest = url
        .strip_prefix("iggy://")
        .or_else(|| url.strip_prefix("iggy+tcp://"))
        .ok_or("--iggy must start with iggy:// (iggy://USER:PASSWORD@HOST:PORT)")?;
    // Credentials may hold '/' or '?' (Iggy's tokens are base64): split at the last '@'
    // first, and drop a path or query from the host part only.
    let (userinfo, host) = rest.rsplit_once('@').ok_or(
        "--iggy needs credentials: iggy://USER:PASSWORD@HOST:PORT or iggy://TOKEN@HOST:PORT",
    )?;
    let (host, query) = host.split_once('?').unwrap_or((host, ""));
    let tls = parse_options(query)?;
    let hosts = host.split('/').next().unwrap_or_default();
    let mut addresses = Vec::new();
    for host in hosts.split(',') {
        if host.is_empty() {
            return Err("--iggy needs a host (HOST:PORT, or several separated by commas)".into());
        }
        let port = host.rsplit_once(':').filter(|(h, _)| !h.ends_with(':'));
        addresses.push(match port {
            Some((_, p)) if p.parse::<u16>().is_ok_and(|p| p > 0) => host.to_owned(),
            Some((_, p)) if !p.contains(']') => {
                return Err(format!("--iggy has a bad port {p:?}: expected 1 to 65535"))
            }
            _ => format!("{host}:{DEFAULT_PORT}"),
        });
    }
    let credentials = match userinfo.split_once(':') {
        Some((user, password)) => {
            let username = percent_decode(user)?;
            if username.is_empty() {
                return Err("--iggy has an empty username".into());
            }
            Credentials::User {
                username,
                password: percent_decode(password)?.into(),
            }
        }
        None if !userinfo.is_empty() => Credentials::Token(percent_decode(userinfo)?.into()),
        None => return Err("--iggy has empty credentials".into()),
    };
    Ok(IggyUrl {
        addresses,
        credentials,
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn servers_in_the_clear_are_the_remote_ones_without_tls() {
        let u = parse("iggy://u:p@localhost:8090,127.0.0.2:1,[::1]:2,iggy.example:3,10.0.0.1:4")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(u.in_the_clear(), ["iggy.example:3", "10.0.0.1:4"]);
        let tls = parse("iggy://u:p@iggy.example:3?tls=true").unwrap_or_else(|e| panic!("{e}"));
        assert!(tls.in_the_clear().is_empty());
    }

    #[test]
    fn users_tokens_ports_and_escapes() {
        let u = parse("iggy://iggy:p%40ss@localhost:8091").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(u.addresses, ["localhost:8091"]);
        match &u.credentials {
            Credentials::User { username, password } => {
                assert_eq!(username, "iggy");
                assert_eq!(password.expose_secret(), "p@ss");
            }
            Credentials::Token(_) => panic!("a user"),
        }
        assert!(!format!("{u:?}").contains("p@ss"));
        let t = parse("iggy+tcp://iggypat-123@10.0.0.1/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.addresses, ["10.0.0.1:8090"]);
        assert!(
            matches!(&t.credentials, Credentials::Token(s) if s.expose_secret() == "iggypat-123")
        );
        let b64 =
            parse("iggy://D9Du/Rw2+Kj1BnT=@h:1?nodelay=true").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b64.addresses, ["h:1"]);
        assert!(
            matches!(&b64.credentials, Credentials::Token(s) if s.expose_secret() == "D9Du/Rw2+Kj1BnT=")
        );
        assert!(parse("http://a:b@h:1").is_err());
        assert!(parse("iggy://h:1").is_err());
        assert!(parse("iggy://:pw@h:1").is_err());
        let e = parse("iggy://user:secret%zz@h:1").err().unwrap_or_default();
        assert!(!e.contains("secret"), "{e}");
        // A cluster's nodes, the port defaulted where it is left out.
        let c = parse("iggy://iggy:iggy@127.0.0.1:8090,127.0.0.2,[::1]:9000")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.addresses,
            ["127.0.0.1:8090", "127.0.0.2:8090", "[::1]:9000"]
        );
        assert!(parse("iggy://iggy:iggy@a:1,,b:2").is_err());
        let bad = parse("iggy://iggy:iggy@h:99999").err().unwrap_or_default();
        assert!(bad.contains("bad port"), "{bad}");
        assert!(parse("iggy://iggy:iggy@h:0").is_err());
        assert!(u.tls.is_none());
    }

    #[test]
    fn tls_options_as_iggy_names_them() {
        let u = parse("iggy://iggy:iggy@h:1?tls=true").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(u.tls, Some(TlsOptions::default()));
        let u = parse(
            "iggy://iggy:iggy@h:1/?tls=true&tls_domain=iggy.example&tls_ca_file=/etc/a%40b/ca.pem&heartbeat_interval=5s",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(u.addresses, ["h:1"]);
        assert_eq!(
            u.tls,
            Some(TlsOptions {
                domain: Some("iggy.example".into()),
                ca_file: Some("/etc/a@b/ca.pem".into()),
            })
        );
        assert!(format!("{u:?}").contains("TLS"));
        let off = parse("iggy://iggy:iggy@h:1?tls=false").unwrap_or_else(|e| panic!("{e}"));
        assert!(off.tls.is_none());
        for (url, says) in [
            (
                "iggy://i:i@h:1?tls=yes",
                "tls=\"yes\": expected true or false",
            ),
            ("iggy://i:i@h:1?tls", "\"tls\" needs a value"),
            ("iggy://i:i@h:1?tls=true&tls_domain=", "tls_domain is empty"),
            (
                "iggy://i:i@h:1?tls=true&tls_ca_file=",
                "tls_ca_file is empty",
            ),
            ("iggy://i:i@h:1?tls_ca_file=/ca.pem", "need tls=true"),
            (
                "iggy://i:i@h:1?tls=true&tsl_domain=x",
                "unknown option \"tsl_domain\"",
            ),
        ] {
            let e = parse(url).err().unwrap_or_default();
            assert!(e.contains(says), "{url}: {e}");
        }
    }
}
