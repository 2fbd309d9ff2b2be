//! TLS for the TCP and QUIC listeners: certificates from PEM files, chosen
//! by SNI (the first pair is the default, for clients that connect by IP
//! address), reloadable without a restart: open connections keep the
//! certificate they were made with, new handshakes get the new one.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use rustls::crypto::ring::sign::any_supported_type;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// One certificate chain and its key, as files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why certificates could not be loaded; names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("no certificate configured")]
    NoCertificate,
    #[error("TLS configuration: {0}")]
    Config(String),
}

struct Loaded {
    /// (DNS names from the certificate's SAN, key), in configured order.
    by_name: Vec<(Vec<String>, Arc<CertifiedKey>)>,
    default: Arc<CertifiedKey>,
}

/// Picks the certificate by SNI; reloadable.
pub struct CertResolver {
    files: Vec<CertFiles>,
    loaded: RwLock<Arc<Loaded>>,
}

impl std::fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertResolver").field("files", &self.files).finish()
    }
}

fn file_error(path: &std::path::Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File { path: path.display().to_string(), reason: reason.to_string() }
}

fn load(files: &[CertFiles]) -> Result<Loaded, TlsError> {
    let mut by_name = Vec::new();
    for pair in files {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pair.cert)
            .map_err(|e| file_error(&pair.cert, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| file_error(&pair.cert, e))?;
        if chain.is_empty() {
            return Err(file_error(&pair.cert, "no certificate in the file"));
        }
        let key = PrivateKeyDer::from_pem_file(&pair.key).map_err(|e| file_error(&pair.key, e))?;
        let signing = any_supported_type(&key).map_err(|e| file_error(&pair.key, e))?;
        let names = san_dns_names(&chain[0]);
        by_name.push((names, Arc::new(CertifiedKey::new(chain, signing))));
    }
    let default = by_name.first().map(|(_, k)| Arc::clone(k)).ok_or(TlsError::NoCertificate)?;
    Ok(Loaded { by_name, default })
}

/// DNS names in a certificate's subject alternative names.
fn san_dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    match webpki::EndEntityCert::try_from(cert) {
        Ok(parsed) => parsed.valid_dns_names().map(str::to_ascii_lowercase).collect(),
        Err(_) => Vec::new(),
    }
}

fn matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.split_once('.').is_some_and(|(_, rest)| rest == suffix),
        None => pattern == host,
    }
}

impl CertResolver {
    pub fn new(files: Vec<CertFiles>) -> Result<Arc<CertResolver>, TlsError> {
        let loaded = load(&files)?;
        Ok(Arc::new(CertResolver { files, loaded: RwLock::new(Arc::new(loaded)) }))
    }

    /// Re-reads every certificate file. On error the old certificates stay.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = load(&self.files)?;
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
        Ok(())
    }

    fn current(&self) -> Arc<Loaded> {
        Arc::clone(&self.loaded.read().unwrap_or_else(|p| p.into_inner()))
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let loaded = self.current();
        let Some(sni) = hello.server_name() else { return Some(Arc::clone(&loaded.default)) };
        let sni = sni.to_ascii_lowercase();
        let chosen = loaded
            .by_name
            .iter()
            .find(|(names, _)| names.iter().any(|n| matches(n, &sni)))
            .map(|(_, key)| Arc::clone(key));
        Some(chosen.unwrap_or_else(|| Arc::clone(&loaded.default)))
    }
}

/// TLS 1.2 sessions remembered for resumption (a few hundred bytes each).
const TLS12_SESSION_CACHE: usize = 4096;

/// QUIC sessions remembered for resumption and 0-RTT.
const QUIC_SESSION_CACHE: usize = 4096;

/// The rustls config of TCP listeners: ALPN h2 then http/1.1; TLS 1.2 and 1.3.
pub fn tcp_server_config(resolver: Arc<CertResolver>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Stateless TLS 1.3 tickets (keys rotated every 6 hours): any number
    // of returning browsers resume with one round trip and no signature,
    // where the default 256-entry session cache would forget all but the
    // last few hundred. TLS 1.2 resumes by session id from a larger cache.
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError::Config(e.to_string()))?;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(TLS12_SESSION_CACHE);
    Ok(Arc::new(config))
}

/// The rustls config of QUIC listeners: TLS 1.3 only, ALPN h3, 0-RTT on
/// (early requests other than GET and HEAD are answered 425).
pub fn quic_server_config(resolver: Arc<CertResolver>) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h3".to_vec()];
    // quinn accepts only 0 or u32::MAX here; u32::MAX allows 0-RTT.
    config.max_early_data_size = u32::MAX;
    // Stateful sessions (each ticket single-use, which is what keeps 0-RTT
    // from being replayed), more of them than rustls' default 256.
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(QUIC_SESSION_CACHE);
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_one_label() {
        assert!(matches("*.example.com", "a.example.com"));
        assert!(!matches("*.example.com", "a.b.example.com"));
        assert!(!matches("*.example.com", "example.com"));
        assert!(matches("example.com", "example.com"));
    }

    #[test]
    fn names_are_read_from_generated_certificates() {
        let generated =
            rcgen::generate_simple_self_signed(vec!["cdn.example.com".into(), "*.img.example".into()]).unwrap();
        let der = CertificateDer::from(generated.cert.der().to_vec());
        let names = san_dns_names(&der);
        assert!(names.contains(&"cdn.example.com".to_owned()), "{names:?}");
        assert!(names.contains(&"*.img.example".to_owned()), "{names:?}");
    }

    #[test]
    fn missing_files_are_named() {
        let error =
            CertResolver::new(vec![CertFiles { cert: "/nonexistent/c.pem".into(), key: "/nonexistent/k.pem".into() }])
                .unwrap_err()
                .to_string();
        assert!(error.contains("/nonexistent/c.pem"), "{error}");
    }
}
