//! The client side: TLS on the gateway's connections to Iggy.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};

use crate::{TlsError, TlsSession};

/// How the gateway's connections to Iggy use TLS, with the options of Iggy's connection
/// strings: the CA to trust (`tls_ca_file`; without one, the operating system's trusted
/// roots) and the name the server's certificate must carry (`tls_domain`; without one, the
/// host each connection dials).
#[derive(Debug, Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    domain: Option<ServerName<'static>>,
}

impl ClientTls {
    /// Trusts the CAs of `ca_file`, or the system's roots without one; servers are expected
    /// to name the host dialed ([`ClientTls::with_domain`] says otherwise).
    ///
    /// # Errors
    /// When the CA file cannot be read or holds no usable certificate, or the system has no
    /// trusted roots.
    pub fn new(ca_file: Option<&Path>) -> Result<Self, TlsError> {
        let roots = match ca_file {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in crate::files::certificates(path)? {
                    roots.add(cert).map_err(|e| TlsError::Pem {
                        path: path.display().to_string(),
                        reason: format!("not a CA certificate rustls can use: {e}"),
                    })?;
                }
                roots
            }
            None => system_roots()?,
        };
        // ring, as on the listeners (see `TlsFiles::load`).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
            domain: None,
        })
    }

    /// The same, expecting every server's certificate to name `domain`.
    ///
    /// # Errors
    /// When `domain` is not a DNS name or IP address.
    pub fn with_domain(mut self, domain: &str) -> Result<Self, TlsError> {
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|_| TlsError::Config(format!("{domain:?} is not a DNS name or IP address")))?;
        self.domain = Some(name);
        Ok(self)
    }

    /// A session for a connection to `address` (`host:port`, or `[v6]:port`): the server's
    /// certificate must name the domain, or else that host.
    ///
    /// # Errors
    /// When no domain was given and the host is not a DNS name or IP address.
    pub fn session(&self, address: &str) -> Result<TlsSession, TlsError> {
        let name = match &self.domain {
            Some(d) => d.clone(),
            None => {
                let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                ServerName::try_from(host.to_owned()).map_err(|_| {
                    TlsError::Config(format!("{host:?} is not a DNS name or IP address"))
                })?
            }
        };
        TlsSession::client(Arc::clone(&self.config), name)
    }
}

fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_owned(), ToString::to_string);
        return Err(TlsError::Config(format!(
            "no trusted root certificates in the system's store ({why}): name a CA file"
        )));
    }
    Ok(roots)
}
