//! TLS files, read at load time the way `run` will use them — so `check` says OK only to what
//! the listener and the upstream connectors can load: a listener's certificate chain and key
//! go into a rustls server config (the same that Pingora builds), a CA file into a root store.

use std::io::BufReader;
use std::time::{SystemTime, UNIX_EPOCH};

use pingora::tls::{CertificateDer, PrivateKeyDer, RootCertStore, ServerConfig};
use rustls_pemfile::Item;

/// The PEM items of `path`, or why there are none.
fn pem_items(path: &str) -> Result<Vec<Item>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let items = rustls_pemfile::read_all(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{path} is not valid PEM: {e}"))?;
    if items.is_empty() {
        return Err(format!("{path} holds no PEM block"));
    }
    Ok(items)
}

fn kind(item: &Item) -> &'static str {
    match item {
        Item::X509Certificate(_) => "a certificate",
        Item::Pkcs1Key(_) | Item::Pkcs8Key(_) | Item::Sec1Key(_) => "a private key",
        Item::Crl(_) => "a CRL",
        Item::Csr(_) => "a certificate request",
        _ => "an unsupported PEM block",
    }
}

/// A CA file's certificates (DER), loaded and checked at load time: the roots one upstream's
/// requests and health checks trust.
#[derive(Clone, PartialEq, Eq)]
pub struct CaCertificates {
    pub path: String,
    pub der: Vec<Vec<u8>>,
}

impl std::fmt::Debug for CaCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CaCertificates({}: {} certificates)",
            self.path,
            self.der.len()
        )
    }
}

/// The certificates of a CA file, each one a usable trust anchor; at least one, nothing else
/// in the file.
pub(super) fn ca_certificates(path: &str) -> Result<CaCertificates, String> {
    let mut store = RootCertStore::empty();
    let mut ders = Vec::new();
    for item in pem_items(path)? {
        let Item::X509Certificate(der) = item else {
            return Err(format!(
                "{path} holds {}: a CA file holds certificates only",
                kind(&item)
            ));
        };
        store
            .add(der.clone())
            .map_err(|e| format!("{path}: a certificate cannot be a trust anchor: {e}"))?;
        x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| format!("{path}: a certificate does not parse: {e}"))?;
        ders.push(der.to_vec());
    }
    Ok(CaCertificates {
        path: path.to_string(),
        der: ders,
    })
}

/// Which of a listener's two files a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ListenerFile {
    Cert,
    Key,
}

/// Checks a listener's certificate chain and key: both parse, the key is the certificate's,
/// rustls accepts them, and the leaf certificate is valid today.
pub(super) fn check_listener_files(
    cert_file: &str,
    key_file: &str,
) -> Result<(), (ListenerFile, String)> {
    use ListenerFile::{Cert, Key};
    let mut chain: Vec<CertificateDer<'static>> = Vec::new();
    for item in pem_items(cert_file).map_err(|e| (Cert, e))? {
        match item {
            Item::X509Certificate(der) => chain.push(der),
            other => {
                return Err((
                    Cert,
                    format!(
                        "{cert_file} holds {}: cert_file holds the certificate chain, leaf first",
                        kind(&other)
                    ),
                ))
            }
        }
    }
    let key: PrivateKeyDer<'static> = match pem_items(key_file)
        .map_err(|e| (Key, e))?
        .into_iter()
        .next()
    {
        Some(Item::Pkcs1Key(k)) => k.into(),
        Some(Item::Pkcs8Key(k)) => k.into(),
        Some(Item::Sec1Key(k)) => k.into(),
        Some(other) => {
            return Err((
                Key,
                format!("{key_file} holds {}, not a private key", kind(&other)),
            ))
        }
        None => return Err((Key, format!("{key_file} holds no private key"))),
    };
    let leaf = chain
        .first()
        .ok_or_else(|| (Cert, format!("{cert_file} holds no certificate")))?;
    valid_today(cert_file, leaf).map_err(|e| (Cert, e))?;
    pingora::tls::install_default_crypto_provider();
    ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map(|_| ())
        .map_err(|e| match e {
            pingora::tls::RusTlsError::InconsistentKeys(_) => (
                Key,
                format!("{key_file} is not the key of the certificate in {cert_file}"),
            ),
            other => (
                Cert,
                format!("{cert_file} and {key_file} cannot serve TLS: {other}"),
            ),
        })
}

/// The leaf certificate's validity covers now.
fn valid_today(path: &str, der: &CertificateDer<'_>) -> Result<(), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("{path}: the certificate does not parse: {e}"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let validity = cert.validity();
    if now > validity.not_after.timestamp() {
        return Err(format!(
            "{path}: the certificate expired on {}",
            validity.not_after
        ));
    }
    if now < validity.not_before.timestamp() {
        return Err(format!(
            "{path}: the certificate is not valid before {}",
            validity.not_before
        ));
    }
    Ok(())
}
