//! The A/V Edge credential service (MRAS, MS-AVEDGEA) of this server: its shared secret, the media relay
//! list it advertises, and `vienna relay-credentials`.
//!
//! The secret is `mras.secret`, or else a random one generated on first start in `mras.secret` in the
//! data directory (owner-only). The relay workers derive the token keys from the same secret, so a token
//! minted here is accepted by every relay of the pool that shares it, with no lookup. The SIP side (a
//! SERVICE request to [`Config::mras_uri`] answered with
//! [`vienna_edge_auth::CredentialService::handle_mras_request`]) is not wired into the SIP role yet.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use vienna_edge_auth::{CredentialService, Location, MediaRelay, MrasKeys};

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

/// The credential service, advertising the relay at `udp_port` and `tcp_port` (the bound ports).
pub fn service(config: &Config, udp_port: u16, tcp_port: u16) -> Result<CredentialService> {
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
    let mut s =
        CredentialService::new(MrasKeys::derive(&secret(config)?), relays).with_max_duration(m.max_duration_minutes);
    if let Some(first) = config.turn.rest_secrets.first() {
        s = s.with_rest_secret(first.as_bytes().to_vec());
    }
    Ok(s)
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
    let service = service(config, config.turn.udp_port, config.turn.ms_tcp_port)?;
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
