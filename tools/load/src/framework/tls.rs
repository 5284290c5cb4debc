//! TLS for the load's stream connections (SIP over TLS, RFC 3261 §26.3.1): a rustls client
//! configuration built from the command line, and a blocking handshake done while connecting, before the
//! connection joins a load thread's poll loop.
//!
//! The server's certificate is checked against `--tls-ca` (PEM), or not at all with `--tls-no-verify`
//! (test servers with self-signed certificates); the signatures of the handshake are checked either way.

use std::io;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The TLS options of a mode with a `--transport tls`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// `--transport tls`: PEM file of the certificate authorities to trust (for a self-signed server,
    /// its certificate; Vienna's generated one is `<data dir>/tls/cert.pem`).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// `--transport tls`: accept any server certificate (test servers only; the handshake is still checked).
    #[arg(long)]
    pub tls_no_verify: bool,
    /// `--transport tls`: the server's name for SNI and the certificate check [default: the host of the
    /// target].
    #[arg(long, value_name = "NAME")]
    pub tls_name: Option<String>,
}

impl TlsArgs {
    /// The TLS client for `target` (`host:port`) when the run uses TLS (`tls`), `None` when it does not;
    /// the TLS options given without TLS are an error.
    pub fn client(&self, tls: bool, target: &str) -> anyhow::Result<Option<TlsClient>> {
        if !tls {
            if self.tls_ca.is_some() || self.tls_no_verify || self.tls_name.is_some() {
                bail!("--tls-ca, --tls-no-verify and --tls-name need --transport tls");
            }
            return Ok(None);
        }
        let name = self.tls_name.clone().unwrap_or_else(|| target_host(target).to_owned());
        TlsClient::new(self.tls_ca.as_deref(), self.tls_no_verify, &name).map(Some)
    }
}

/// The host part of `host:port`, `[v6]:port` or a bare host.
fn target_host(target: &str) -> &str {
    if let Some(rest) = target.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match target.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
        _ => target,
    }
}

/// Everything needed to open TLS connections to one server.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient").field("name", &self.name).finish_non_exhaustive()
    }
}

impl TlsClient {
    /// A client that trusts the certificates in the PEM file `ca`, or (with `no_verify`) any certificate,
    /// and names the server `name` (SNI and the certificate check; an IP address works too).
    pub fn new(ca: Option<&Path>, no_verify: bool, name: &str) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| anyhow!("TLS: {e}"))?;
        let config = match (ca, no_verify) {
            (Some(_), true) => bail!("--tls-ca and --tls-no-verify exclude each other"),
            (None, false) => bail!(
                "TLS needs the server's certificate authority (--tls-ca FILE, PEM) or --tls-no-verify to accept \
                 any certificate"
            ),
            (Some(path), false) => {
                let mut roots = RootCertStore::empty();
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| anyhow!("cannot read --tls-ca {}: {e}", path.display()))?;
                if certs.is_empty() {
                    bail!("no certificate in --tls-ca {}", path.display());
                }
                for cert in certs {
                    roots.add(cert).with_context(|| format!("a certificate of --tls-ca {}", path.display()))?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            (None, true) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider.signature_verification_algorithms)))
                .with_no_client_auth(),
        };
        let name = ServerName::try_from(name.to_owned()).map_err(|e| anyhow!("--tls-name {name:?}: {e}"))?;
        Ok(Self { config: Arc::new(config), name })
    }

    /// Runs the handshake on the connected, blocking `stream` within `timeout`; the stream is left
    /// blocking (the caller makes it non-blocking for its poll loop).
    pub fn handshake(&self, stream: &mut TcpStream, timeout: Duration) -> anyhow::Result<ClientConnection> {
        let mut conn =
            ClientConnection::new(self.config.clone(), self.name.clone()).map_err(|e| anyhow!("TLS: {e}"))?;
        let deadline = Instant::now() + timeout;
        while conn.is_handshaking() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("TLS handshake with {} took longer than {timeout:?}", peer(stream));
            }
            stream.set_read_timeout(Some(left))?;
            stream.set_write_timeout(Some(left))?;
            match conn.complete_io(stream) {
                Ok((0, 0)) if conn.is_handshaking() => {
                    bail!("{} closed the connection in the TLS handshake", peer(stream))
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => {}
                Err(e) => bail!("TLS handshake with {}: {e}", peer(stream)),
            }
        }
        stream.set_read_timeout(None)?;
        stream.set_write_timeout(None)?;
        Ok(conn)
    }
}

fn peer(stream: &TcpStream) -> String {
    stream.peer_addr().map_or_else(|_| "the server".to_owned(), |a| a.to_string())
}

/// `--tls-no-verify`: any certificate is taken, the handshake's signatures are still checked.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::target_host;

    #[test]
    fn the_tls_name_defaults_to_the_host_of_the_target() {
        assert_eq!(target_host("127.0.0.1:5061"), "127.0.0.1");
        assert_eq!(target_host("sip.example.com:5061"), "sip.example.com");
        assert_eq!(target_host("[::1]:5061"), "::1");
        assert_eq!(target_host("sip.example.com"), "sip.example.com");
        assert_eq!(target_host("::1"), "::1");
    }
}
