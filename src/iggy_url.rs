//! `--iggy` URLs: `iggy://USER:PASSWORD@HOST:PORT`, or `iggy://TOKEN@HOST:PORT` for a
//! personal access token (Iggy's own connection strings; `iggy+tcp://` is accepted too).

use iggy_kafka_iggy_client::Credentials;

/// Where the Iggy server is and who logs in.
pub(crate) struct IggyUrl {
    pub(crate) address: String,
    pub(crate) credentials: Credentials,
}

impl std::fmt::Debug for IggyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "iggy://{:?}@{}", self.credentials, self.address)
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
    let host = host.split(['/', '?']).next().unwrap_or_default();
    if host.is_empty() {
        return Err("--iggy needs a host".into());
    }
    let has_port = host
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.ends_with(':') && p.parse::<u16>().is_ok());
    let address = if has_port {
        host.to_owned()
    } else {
        format!("{host}:{DEFAULT_PORT}")
    };
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
        address,
        credentials,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn users_tokens_ports_and_escapes() {
        let u = parse("iggy://iggy:p%40ss@localhost:8091").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(u.address, "localhost:8091");
        match &u.credentials {
            Credentials::User { username, password } => {
                assert_eq!(username, "iggy");
                assert_eq!(password.expose_secret(), "p@ss");
            }
            Credentials::Token(_) => panic!("a user"),
        }
        assert!(!format!("{u:?}").contains("p@ss"));
        let t = parse("iggy+tcp://iggypat-123@10.0.0.1/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.address, "10.0.0.1:8090");
        assert!(
            matches!(&t.credentials, Credentials::Token(s) if s.expose_secret() == "iggypat-123")
        );
        let b64 = parse("iggy://D9Du/Rw2+Kj1BnT=@h:1?x").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b64.address, "h:1");
        assert!(
            matches!(&b64.credentials, Credentials::Token(s) if s.expose_secret() == "D9Du/Rw2+Kj1BnT=")
        );
        assert!(parse("http://a:b@h:1").is_err());
        assert!(parse("iggy://h:1").is_err());
        assert!(parse("iggy://:pw@h:1").is_err());
        let e = parse("iggy://user:secret%zz@h:1").err().unwrap_or_default();
        assert!(!e.contains("secret"), "{e}");
    }
}
