//! The principal a client certificate names.

/// The principal of the client certificate `der`: its subject's common name (CN), or, when
/// the subject has none, the whole subject as x509-parser writes it (`O=Example, C=DE`).
/// `None` when the certificate cannot be parsed (rustls has verified it by then, so that
/// does not happen with a certificate it accepted).
#[must_use]
pub fn principal_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    if let Some(cn) = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
    {
        return Some(cn.to_owned());
    }
    let whole = subject.to_string();
    (!whole.is_empty()).then_some(whole)
}
