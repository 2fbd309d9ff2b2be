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
    /// (DNS names from the certificate's SAN, key), in configured order;
    /// never empty, and the first is the default.
    by_name: Vec<(Vec<String>, Arc<CertifiedKey>)>,
    /// Per certificate, the hosts its connections may ask for; empty with a
    /// single certificate (no other tenant's to front into). Built once per
    /// load, so a handshake only clones an `Arc`.
    names: Vec<CertificateNames>,
}

/// Picks the certificate by SNI; reloadable, from the same files or from
/// the ones a reloaded config names.
pub struct CertResolver {
    files: RwLock<Vec<CertFiles>>,
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
    if by_name.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let names =
        if by_name.len() < 2 { Vec::new() } else { (0..by_name.len()).map(|i| names_of(&by_name, i)).collect() };
    Ok(Loaded { by_name, names })
}

/// What certificate `chosen` of `by_name` says about its connections' hosts.
fn names_of(by_name: &[(Vec<String>, Arc<CertifiedKey>)], chosen: usize) -> CertificateNames {
    let own = by_name[chosen].0.as_slice().into();
    let others = by_name
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != chosen)
        .flat_map(|(_, (names, _))| names.iter().cloned())
        .collect();
    CertificateNames(Arc::new(Names { own, others }))
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
        Ok(Arc::new(CertResolver { files: RwLock::new(files), loaded: RwLock::new(Arc::new(loaded)) }))
    }

    /// Re-reads every certificate file. On error the old certificates stay.
    pub fn reload(&self) -> Result<(), TlsError> {
        let files = self.files.read().unwrap_or_else(|p| p.into_inner()).clone();
        self.replace(files)
    }

    /// Loads `files` (a reloaded config's list, which may name other files
    /// than the running one) and serves them from the next handshake. On
    /// error the current certificates and files stay.
    pub fn replace(&self, files: Vec<CertFiles>) -> Result<(), TlsError> {
        let loaded = load(&files)?;
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
        *self.files.write().unwrap_or_else(|p| p.into_inner()) = files;
        Ok(())
    }

    fn current(&self) -> Arc<Loaded> {
        Arc::clone(&self.loaded.read().unwrap_or_else(|p| p.into_inner()))
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let loaded = self.current();
        Some(Arc::clone(&loaded.by_name[loaded.chosen(hello.server_name())].1))
    }
}

impl Loaded {
    /// The index of the certificate for `sni`: the first that names it,
    /// else the default (the first), also for clients that send no SNI.
    fn chosen(&self, sni: Option<&str>) -> usize {
        let Some(sni) = sni else { return 0 };
        let sni = sni.to_ascii_lowercase();
        self.by_name.iter().position(|(names, _)| names.iter().any(|n| matches(n, &sni))).unwrap_or(0)
    }
}

impl CertResolver {
    /// What the certificate a handshake with `sni` got says about the
    /// hosts its connection may ask for; `None` when the node has one
    /// certificate (there is no other tenant's to front into).
    pub fn names_for(&self, sni: Option<&str>) -> Option<CertificateNames> {
        let loaded = self.current();
        loaded.names.get(loaded.chosen(sni)).cloned()
    }
}

/// Which hosts a TLS connection may ask for, by its certificate (catalogue
/// S28): SNI chose one tenant's certificate, and a Host that another
/// configured certificate names, but this one does not, is a 421 (domain
/// fronting into another tenant's site). A host no certificate names is
/// served (an edge asking its shield for a customer's host over the
/// shield's own certificate). Clients that check certificates never send
/// such a request, and browsers reuse an HTTP/2 or HTTP/3 connection only
/// for hosts its certificate covers.
#[derive(Debug, Clone)]
pub struct CertificateNames(Arc<Names>);

#[derive(Debug)]
struct Names {
    own: Box<[String]>,
    others: Box<[String]>,
}

impl CertificateNames {
    /// Whether a request for `host` (normalised: lowercase, no port) is
    /// misdirected on this connection. IP literals are not judged: IP
    /// SANs are not read, and no tenant is named by an address.
    pub fn misdirects(&self, host: &str) -> bool {
        let ip_literal = host.starts_with('[') || host.parse::<std::net::Ipv4Addr>().is_ok();
        let named = |names: &[String]| names.iter().any(|name| matches(name, host));
        !ip_literal && !named(&self.0.own) && named(&self.0.others)
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

    /// Two tenants' certificates: a Host the other one names is misdirected,
    /// a Host none names is not (an edge asking its shield), and a node with
    /// one certificate judges nothing.
    #[test]
    fn a_host_of_another_certificate_is_misdirected() {
        let dir = std::env::temp_dir().join(format!("holdfast-tls-names-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut files = Vec::new();
        for (i, names) in [vec!["a.example".to_owned()], vec!["b.example".to_owned(), "*.b.example".to_owned()]]
            .into_iter()
            .enumerate()
        {
            let generated = rcgen::generate_simple_self_signed(names).unwrap();
            let pair = CertFiles { cert: dir.join(format!("{i}.crt")), key: dir.join(format!("{i}.key")) };
            std::fs::write(&pair.cert, generated.cert.pem()).unwrap();
            std::fs::write(&pair.key, generated.signing_key.serialize_pem()).unwrap();
            files.push(pair);
        }
        let both = CertResolver::new(files.clone()).unwrap();
        let a = both.names_for(Some("A.example")).unwrap();
        assert!(!a.misdirects("a.example"));
        assert!(a.misdirects("b.example"));
        assert!(a.misdirects("img.b.example"));
        assert!(!a.misdirects("shielded.example"), "no certificate names it");
        assert!(!a.misdirects("127.0.0.1") && !a.misdirects("[::1]"));
        let b = both.names_for(Some("x.b.example")).unwrap();
        assert!(b.misdirects("a.example") && !b.misdirects("b.example"));
        let default = both.names_for(None).unwrap();
        assert!(default.misdirects("b.example"), "no SNI: the first certificate");
        let one = CertResolver::new(files[..1].to_vec()).unwrap();
        assert!(one.names_for(Some("a.example")).is_none());
        let _ = std::fs::remove_dir_all(&dir);
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
