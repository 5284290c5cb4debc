//! The certificate every TLS listener uses: configured PEM files, or a self-signed certificate made on
//! first start and kept in the data directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::config::Config;

/// Where the certificate and key are.
#[derive(Debug, Clone)]
pub struct CertificatePaths {
    /// PEM certificate chain.
    pub certificate: PathBuf,
    /// PEM private key.
    pub private_key: PathBuf,
}

/// The configured certificate, or the generated one (made now if missing).
pub fn ensure_certificate(config: &Config) -> Result<CertificatePaths> {
    if let (Some(certificate), Some(private_key)) = (&config.tls.certificate, &config.tls.private_key) {
        return Ok(CertificatePaths { certificate: certificate.clone(), private_key: private_key.clone() });
    }
    let dir = config.server.data_dir.join("tls");
    let paths = CertificatePaths { certificate: dir.join("cert.pem"), private_key: dir.join("key.pem") };
    if paths.certificate.exists() && paths.private_key.exists() {
        return Ok(paths);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let names = vec![config.server.domain.clone(), "localhost".into(), "127.0.0.1".into(), "::1".into()];
    let generated =
        rcgen::generate_simple_self_signed(names).map_err(|e| anyhow!("cannot generate a TLS certificate: {e}"))?;
    write_private(&paths.private_key, generated.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&paths.certificate, generated.cert.pem())
        .with_context(|| format!("cannot write {}", paths.certificate.display()))?;
    tracing::info!(
        domain = %config.server.domain,
        certificate = %paths.certificate.display(),
        sha256 = %fingerprint(generated.cert.der()),
        "generated a self-signed TLS certificate"
    );
    Ok(paths)
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// SHA-256 fingerprint in the colon-separated upper-case hex that browsers and `openssl x509` show.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// Loads the certificate and key into a rustls server configuration (TLS 1.2 and 1.3).
pub fn server_config(paths: &CertificatePaths, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(&paths.certificate)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow!("cannot read certificate {}: {e}", paths.certificate.display()))?;
    if chain.is_empty() {
        return Err(anyhow!("no certificate in {}", paths.certificate.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&paths.private_key)
        .map_err(|e| anyhow!("cannot read private key {}: {e}", paths.private_key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| anyhow!("certificate {} does not fit its key: {e}", paths.certificate.display()))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
