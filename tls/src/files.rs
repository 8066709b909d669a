//! A listener's TLS configuration, from PEM files, reloadable while it serves.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite};

use crate::{TlsError, TlsSession};

/// Whether clients must present a certificate (Kafka's `ssl.client.auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    #[default]
    None,
    /// One is asked for; a client without one is let in without a principal, one with a
    /// certificate the CA did not sign is refused.
    Requested,
    /// One is required, signed by the CA.
    Required,
}

impl ClientAuth {
    /// Kafka's name: `none`, `requested` or `required`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Requested => "requested",
            Self::Required => "required",
        }
    }

    /// The policy of Kafka's name `name` (case-insensitive).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::None, Self::Requested, Self::Required]
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name.trim()))
    }
}

/// Where a listener's certificate, key and client CAs are, and whom it asks for a
/// certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, PEM, the listener's own first.
    pub certificate: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CAs that sign client certificates, PEM; needed unless `client_auth` is `None`.
    pub ca: Option<PathBuf>,
    /// Whether clients must present a certificate.
    pub client_auth: ClientAuth,
    /// The cipher suites offered, in the order the listener prefers them (Kafka's
    /// `ssl.cipher.suites`), by IANA name (`TLS_AES_128_GCM_SHA256`,
    /// `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`, ...); empty for
    /// [`default_cipher_suites`]. The listener's order decides, not the client's.
    pub cipher_suites: Vec<String>,
}

/// The provider whose cipher suites a listener may offer: *ring*'s, with its default suites
/// (those rustls considers safe).
fn base_provider() -> CryptoProvider {
    // ring is deprecated in rustls for lacking post-quantum key exchange; aws-lc-rs has
    // it but costs a C toolchain (cmake, nasm) and minutes of build. Clients get X25519.
    #[allow(deprecated)]
    rustls::crypto::ring::default_provider()
}

/// Where a suite comes in a listener's order of preference unless told otherwise: TLS
/// 1.3's before TLS 1.2's, and in each, AES-128-GCM, then AES-256-GCM, then the others
/// (ChaCha20-Poly1305), in the provider's order within each of those. Both AES-GCM key
/// sizes are suites rustls considers safe; AES-128 takes 10 rounds per block where
/// AES-256 takes 14, less CPU for the cipher on both ends, and clients (OpenSSL's among
/// them) would otherwise choose AES-256-GCM.
fn preference(suite: &SupportedCipherSuite) -> (u8, u8) {
    let name = iana_name(suite);
    let version = u8::from(!matches!(suite, SupportedCipherSuite::Tls13(_)));
    let cipher = if name.contains("_AES_128_GCM_") {
        0
    } else if name.contains("_AES_256_GCM_") {
        1
    } else {
        2
    };
    (version, cipher)
}

/// The IANA names of the cipher suites a listener offers unless told otherwise (every suite
/// the provider offers by default), in its order of preference (see `preference`): derived
/// from the provider, so that a provider with other suites needs no list edited here.
#[must_use]
pub fn default_cipher_suites() -> Vec<String> {
    let mut suites = base_provider().cipher_suites;
    suites.sort_by_key(preference);
    suites.iter().map(iana_name).collect()
}

/// The IANA name of a suite (rustls calls TLS 1.3's `TLS13_...`).
fn iana_name(suite: &SupportedCipherSuite) -> String {
    let name = suite.suite().as_str().unwrap_or_default();
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name.to_owned(),
    }
}

/// The *ring* provider with the suites `names` names, in that order (the defaults when
/// empty).
///
/// # Errors
/// [`TlsError::Config`] naming a suite rustls does not offer, or a suite named twice.
pub fn cipher_suites_provider(names: &[String]) -> Result<CryptoProvider, TlsError> {
    let mut provider = base_provider();
    if names.is_empty() {
        provider.cipher_suites.sort_by_key(preference);
        return Ok(provider);
    }
    let wanted: Vec<&str> = names.iter().map(|n| n.trim()).collect();
    let offered = std::mem::take(&mut provider.cipher_suites);
    for name in wanted {
        let Some(suite) = offered
            .iter()
            .find(|s| iana_name(s).eq_ignore_ascii_case(name))
        else {
            let known: Vec<String> = offered.iter().map(iana_name).collect();
            return Err(TlsError::Config(format!(
                "cipher suite {name:?} is not one rustls offers ({})",
                known.join(", ")
            )));
        };
        if provider.cipher_suites.contains(suite) {
            return Err(TlsError::Config(format!("cipher suite {name} named twice")));
        }
        provider.cipher_suites.push(*suite);
    }
    Ok(provider)
}

impl TlsFiles {
    /// Reads the files and builds rustls's configuration from them.
    ///
    /// # Errors
    /// When a file cannot be read or holds nothing usable, the key does not match the
    /// certificate, or client authentication lacks a CA.
    pub fn load(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(cipher_suites_provider(&self.cipher_suites)?);
        let chain = certificates(&self.certificate)?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| pem_error(&self.key, e))?;
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match (self.client_auth, &self.ca) {
            (ClientAuth::None, _) => builder.with_no_client_auth(),
            (_, None) => {
                return Err(TlsError::Config(format!(
                    "client authentication {} needs a CA to check client certificates against",
                    self.client_auth.name()
                )))
            }
            (auth, Some(ca)) => builder.with_client_cert_verifier(verifier(ca, auth, provider)?),
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| {
            TlsError::Config(format!(
                "{} and {}: {e}",
                self.certificate.display(),
                self.key.display()
            ))
        })?;
        // The listener's order of suites decides (see `preference`).
        config.ignore_client_order = true;
        Ok(Arc::new(config))
    }

    /// The files' modification times and sizes, to notice a change (the size too, for
    /// file systems whose times are coarse).
    fn stamps(&self) -> Vec<Option<(SystemTime, u64)>> {
        [Some(&self.certificate), Some(&self.key), self.ca.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| {
                std::fs::metadata(p)
                    .and_then(|m| Ok((m.modified()?, m.len())))
                    .ok()
            })
            .collect()
    }
}

fn verifier(
    ca: &Path,
    auth: ClientAuth,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca)? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            path: ca.display().to_string(),
            reason: format!("not a CA certificate rustls can use: {e}"),
        })?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = if auth == ClientAuth::Requested {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    builder
        .build()
        .map_err(|e| TlsError::Config(format!("{}: {e}", ca.display())))
}

/// Every certificate of the PEM file at `path`; at least one.
pub(crate) fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.display().to_string(),
            reason: "no PEM certificate in it".into(),
        });
    }
    Ok(certs)
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error) -> TlsError {
    let shown = path.display().to_string();
    match e {
        rustls::pki_types::pem::Error::Io(source) => TlsError::Read {
            path: shown,
            source,
        },
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Pem {
            path: shown,
            reason: "no PEM item of the expected kind in it".into(),
        },
        other => TlsError::Pem {
            path: shown,
            reason: format!("not usable PEM: {other}"),
        },
    }
}

/// A listener's TLS configuration: the one new connections get, replaced by
/// [`ServerTls::reload`] only when the new files load, so that a bad file never takes a
/// listener down.
#[derive(Debug)]
pub struct ServerTls {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
    /// The files' modification times and sizes when last loaded.
    stamps: Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl ServerTls {
    /// Loads `files`.
    ///
    /// # Errors
    /// As [`TlsFiles::load`].
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let stamps = files.stamps();
        let config = files.load()?;
        Ok(Self {
            files,
            current: RwLock::new(config),
            stamps: Mutex::new(stamps),
        })
    }

    /// The files it loads.
    #[must_use]
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// A session for a new connection, with the configuration in effect.
    ///
    /// # Errors
    /// When rustls cannot start one (out of memory for its buffers, not much else).
    pub fn session(&self) -> Result<TlsSession, TlsError> {
        let config = Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner));
        TlsSession::new(config)
    }

    /// Loads the files again and, when they load, serves new connections with them.
    ///
    /// # Errors
    /// When they do not load; the configuration in effect stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamps = self.files.stamps();
        let loaded = self.files.load();
        // Remembered even on failure: a bad file is reported once, not on every check.
        *self.stamps.lock().unwrap_or_else(PoisonError::into_inner) = stamps;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = loaded?;
        Ok(())
    }

    /// Reloads when a file's modification time or size changed since the last load; `None`
    /// when none did.
    pub fn reload_if_changed(&self) -> Option<Result<(), TlsError>> {
        let now = self.files.stamps();
        let changed = *self.stamps.lock().unwrap_or_else(PoisonError::into_inner) != now;
        changed.then(|| self.reload())
    }
}

impl ServerTls {
    /// Reloads when `forced` (a SIGHUP) or when the files changed, and logs the outcome:
    /// what the adapters call on a signal and every [`RELOAD_CHECK`].
    pub fn refresh(&self, forced: bool) {
        let outcome = if forced {
            Some(self.reload())
        } else {
            self.reload_if_changed()
        };
        match outcome {
            None => {}
            Some(Ok(())) => tracing::info!(
                certificate = %self.files.certificate.display(),
                "TLS certificate reloaded; new connections use it"
            ),
            Some(Err(e)) => tracing::warn!(
                error = %e,
                "TLS certificate not reloaded; connections keep the one loaded before"
            ),
        }
    }
}

/// How often the adapters look at the certificate files' modification times.
pub const RELOAD_CHECK: std::time::Duration = std::time::Duration::from_secs(2);
