//! The A/V Edge credential service (MRAS, MS-AVEDGEA) of this server: its shared secret, the media relay
//! list it advertises, and `vienna relay-credentials`.
//!
//! The secret is `mras.secret`, or else a random one generated on first start in `mras.secret` in the
//! data directory (owner-only). The relay workers derive the token keys from the same secret, so a token
//! minted here is accepted by every relay of the pool that shares it, with no lookup. The SIP role answers
//! SERVICE requests to [`Config::mras_uri`] from authenticated users with [`sip_service`].

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use vienna_edge_auth::service::CONTENT_TYPE;
use vienna_edge_auth::{CredentialService, Location, MediaRelay, MrasKeys};
use vienna_signaling::{ServiceHandler, ServiceRequest};

use crate::config::Config;

/// Name of the generated secret in the data directory.
const SECRET_FILE: &str = "mras.secret";

/// The shared secret: configured, or read from (and on first use written to) the data directory.
pub fn secret(config: &Config) -> Result<Vec<u8>> {
    if !config.mras.secret.is_empty() {
        return Ok(config.mras.secret.as_bytes().to_vec());
    }
    let dir = &config.server.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let path = dir.join(SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let text = text.trim();
            if text.len() < 32 {
                bail!("{} is shorter than 32 characters: remove it to have a new one made", path.display());
            }
            return Ok(text.as_bytes().to_vec());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow!("cannot read {}: {e}", path.display())),
    }
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| anyhow!("mras: no randomness: {e}"))?;
    let text = hex::encode(raw);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes()).and_then(|()| file.write_all(b"\n"))?;
    Ok(text.into_bytes())
}

/// The token keys relays validate with; `None` when MRAS is off.
pub fn relay_keys(config: &Config) -> Result<Option<MrasKeys>> {
    if !config.mras.enabled || !config.turn.msturn {
        return Ok(None);
    }
    Ok(Some(MrasKeys::derive(&secret(config)?)))
}

/// The relay's bound UDP and MS-TURN TCP ports, once the relay has started (the SIP role starts first).
static RELAY_PORTS: OnceLock<(u16, u16)> = OnceLock::new();

/// Tells the credential service which ports the relay bound (for its media relay list).
pub fn publish_relay_ports(udp: u16, tcp: u16) {
    let _ = RELAY_PORTS.set((udp, tcp));
}

/// The relay ports to advertise: the bound ones, or the configured ones before the relay started.
fn relay_ports(config: &Config) -> (u16, u16) {
    RELAY_PORTS.get().copied().unwrap_or((config.turn.udp_port, config.turn.ms_tcp_port))
}

/// The SIP role's MRAS service: the user part of the MRAS URI, and the handler of its SERVICE requests
/// (`application/msrtc-media-relay-auth+xml` in, the MRAS XML answer out). `None` when MRAS is off or its
/// URI is not in this server's domain.
pub fn sip_service(config: &Config) -> Result<Option<(String, ServiceHandler)>> {
    if !config.mras.enabled {
        return Ok(None);
    }
    let uri = config.mras_uri();
    let rest = uri.strip_prefix("sip:").unwrap_or(&uri);
    let Some((user, host)) = rest.split_once('@') else {
        bail!("mras.uri {uri:?} is not a sip:user@domain address");
    };
    if !host.eq_ignore_ascii_case(&config.server.domain) {
        tracing::warn!(uri = %uri, domain = %config.server.domain, "mras: the MRAS URI is not in server.domain; SIP SERVICE requests will not reach it");
        return Ok(None);
    }
    let secret = secret(config)?;
    let config = config.clone();
    let handler: ServiceHandler = Box::new(move |req: ServiceRequest<'_>| {
        let media_type = req.content_type.and_then(|c| c.split(';').next()).map(str::trim);
        if !media_type.is_some_and(|t| t.eq_ignore_ascii_case(CONTENT_TYPE)) {
            return Err(415);
        }
        let body = std::str::from_utf8(req.body).map_err(|_| 400u16)?;
        let (udp, tcp) = relay_ports(&config);
        let service = service_with(&config, &secret, udp, tcp);
        match service.handle_mras_request(body, req.requester, req.unix_now) {
            Ok(xml) => {
                tracing::info!(requester = %req.requester, "mras: credentials issued");
                Ok((CONTENT_TYPE.to_owned(), xml.into_bytes()))
            }
            Err(e) => {
                tracing::debug!(requester = %req.requester, error = %e, "mras: request refused");
                Err(400)
            }
        }
    });
    Ok(Some((user.to_owned(), handler)))
}

/// The credential service, advertising the relay at `udp_port` and `tcp_port` (the bound ports).
pub fn service(config: &Config, udp_port: u16, tcp_port: u16) -> Result<CredentialService> {
    Ok(service_with(config, &secret(config)?, udp_port, tcp_port))
}

fn service_with(config: &Config, secret: &[u8], udp_port: u16, tcp_port: u16) -> CredentialService {
    let m = &config.mras;
    let host = if m.relay_host.is_empty() { config.turn.listen_ip.to_string() } else { m.relay_host.clone() };
    let udp_port = if m.relay_udp_port == 0 { udp_port } else { m.relay_udp_port };
    let tcp_port = if m.relay_tcp_port == 0 { tcp_port } else { m.relay_tcp_port };
    let mut relays = vec![MediaRelay { location: Location::Internet, host_name: host, udp_port, tcp_port }];
    if !m.internal_host.is_empty() {
        relays.push(MediaRelay {
            location: Location::Intranet,
            host_name: m.internal_host.clone(),
            udp_port,
            tcp_port,
        });
    }
    let mut s = CredentialService::new(MrasKeys::derive(secret), relays).with_max_duration(m.max_duration_minutes);
    if let Some(first) = config.turn.rest_secrets.first() {
        s = s.with_rest_secret(first.as_bytes().to_vec());
    }
    s
}

/// `vienna relay-credentials`.
#[derive(Debug, Args)]
pub struct CredentialsArgs {
    /// Whom for: a SIP address (sip:alice@example.com, or alice for the server's domain).
    identity: String,
    /// Lifetime in minutes (capped at mras.max_duration_minutes).
    #[arg(long, default_value_t = 480)]
    duration: u32,
    /// Print TURN REST credentials ("username password", for standard TURN clients) instead of the MRAS
    /// XML response.
    #[arg(long)]
    rest: bool,
}

/// Prints MRAS credentials (the XML an MRAS SERVICE request would get) or TURN REST credentials.
pub fn run(config: &Config, args: CredentialsArgs) -> Result<()> {
    let now = crate::turn::unix_now();
    let identity = if args.identity.contains('@') {
        args.identity.clone()
    } else {
        format!("{}@{}", args.identity, config.server.domain)
    };
    let identity = if identity.starts_with("sip:") { identity } else { format!("sip:{identity}") };
    let (udp, tcp) = relay_ports(config);
    let service = service(config, udp, tcp)?;
    if args.rest {
        let user = identity.trim_start_matches("sip:").split('@').next().unwrap_or_default();
        let c = service
            .rest_credential(user, now, u64::from(args.duration) * 60)
            .ok_or_else(|| anyhow!("TURN REST credentials need turn.rest_secrets"))?;
        println!("{} {}", c.username, c.password);
        return Ok(());
    }
    if !config.mras.enabled {
        bail!("mras.enabled is false");
    }
    let request = format!(
        r#"<request requestID="1" version="2.0" from="{identity}" to="{}" xmlns="{}"><credentialsRequest credentialsRequestID="1"><identity>{identity}</identity><duration>{}</duration></credentialsRequest></request>"#,
        config.mras_uri(),
        vienna_edge_auth::service::NAMESPACE,
        args.duration,
    );
    let xml = service.handle_mras_request(&request, &identity, now).map_err(|e| anyhow!("{e}"))?;
    println!("{xml}");
    Ok(())
}
