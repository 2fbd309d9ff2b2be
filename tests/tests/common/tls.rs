//! TLS helpers: self-signed certificates on disk, TLS listeners in the
//! node's config, client configs that trust them.

use std::path::PathBuf;
use std::sync::Arc;

use holdfast_node::config::{CertSection, FileConfig};
use rustls_pki_types::CertificateDer;

pub struct Certs {
    pub dir: PathBuf,
    /// (cert path, key path, DER) per generated certificate.
    pub pairs: Vec<(PathBuf, PathBuf, CertificateDer<'static>)>,
}

pub fn certs(name: &str, sans: &[&[&str]]) -> Certs {
    // Cargo's scratch directory for integration tests (under `target/`).
    let dir =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("holdfast-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut pairs = Vec::new();
    for (i, names) in sans.iter().enumerate() {
        let generated =
            rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let (cert, key) = (dir.join(format!("{i}.crt")), dir.join(format!("{i}.key")));
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
        pairs.push((cert, key, CertificateDer::from(generated.cert.der().to_vec())));
    }
    Certs { dir, pairs }
}

pub fn with_tls(certs: &Certs, h3: bool) -> impl FnOnce(&mut FileConfig) {
    let certificate: Vec<CertSection> =
        certs.pairs.iter().map(|(cert, key, _)| CertSection { cert: cert.clone(), key: key.clone() }).collect();
    move |c: &mut FileConfig| {
        c.tls.listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.tls.certificate = certificate;
        c.tls.h3 = h3;
    }
}

pub fn client_config(roots: &[CertificateDer<'static>], alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    config
}
