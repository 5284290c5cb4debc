//! From the `[turn]` configuration section to the relay core's configuration, one per worker.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use vienna_turn::quota::SharedQuota;
use vienna_turn::{IpCidr, PeerPolicy};

use crate::config::{Config, TurnConfig};

/// Checks the `[turn]` section; called by [`Config::validate`], so a bad value fails at load.
pub fn validate(turn: &TurnConfig) -> Result<()> {
    relay_addresses(turn)?;
    peer_policy(turn)?;
    alternate_server(turn)?;
    ms_public_address(turn)?;
    if turn.min_port == 0 || turn.min_port > turn.max_port {
        bail!("turn.min_port..turn.max_port ({}..{}) is not a port range", turn.min_port, turn.max_port);
    }
    if turn.rest_secrets.iter().any(String::is_empty) {
        bail!("turn.rest_secrets holds an empty secret");
    }
    if turn.max_lifetime_secs < 600 {
        bail!("turn.max_lifetime_secs must be at least 600 (the RFC 8656 default lifetime)");
    }
    if turn.nonce_lifetime_secs == 0 {
        bail!("turn.nonce_lifetime_secs must be positive");
    }
    Ok(())
}

fn relay_addresses(turn: &TurnConfig) -> Result<(Option<Ipv4Addr>, Option<Ipv6Addr>)> {
    let v4 = match turn.relay_ipv4.as_str() {
        "" => None,
        s => Some(s.parse::<Ipv4Addr>().map_err(|_| anyhow!("turn.relay_ipv4 {s:?} is not an IPv4 address"))?),
    };
    let v6 = match turn.relay_ipv6.as_str() {
        "" => None,
        s => Some(s.parse::<Ipv6Addr>().map_err(|_| anyhow!("turn.relay_ipv6 {s:?} is not an IPv6 address"))?),
    };
    if v4.is_none() && v6.is_none() {
        bail!("turn: set turn.relay_ipv4 or turn.relay_ipv6");
    }
    if v4.is_some_and(|a| a.is_unspecified()) || v6.is_some_and(|a| a.is_unspecified()) {
        bail!("turn.relay_ipv4/relay_ipv6 must be a concrete address: clients are told it");
    }
    Ok((v4, v6))
}

fn cidrs(list: &[String], key: &str) -> Result<Vec<IpCidr>> {
    list.iter().map(|s| s.parse::<IpCidr>().map_err(|e| anyhow!("{key}: {e}"))).collect()
}

fn peer_policy(turn: &TurnConfig) -> Result<PeerPolicy> {
    Ok(PeerPolicy {
        allow: cidrs(&turn.allowed_peers, "turn.allowed_peers")?,
        deny: cidrs(&turn.denied_peers, "turn.denied_peers")?,
    })
}

fn alternate_server(turn: &TurnConfig) -> Result<Option<SocketAddr>> {
    match turn.alternate_server.as_str() {
        "" => Ok(None),
        s => s.parse().map(Some).map_err(|_| anyhow!("turn.alternate_server {s:?} is not an address:port")),
    }
}

fn ms_public_address(turn: &TurnConfig) -> Result<Option<SocketAddr>> {
    match turn.ms_public_address.as_str() {
        "" => Ok(None),
        s => s.parse().map(Some).map_err(|_| anyhow!("turn.ms_public_address {s:?} is not an address:port")),
    }
}

/// The worker count in effect: `turn.workers`, or one per core.
pub fn worker_count(turn: &TurnConfig) -> usize {
    if turn.workers > 0 { turn.workers } else { std::thread::available_parallelism().map_or(1, usize::from) }
}

/// The relay configuration of worker `index` of `workers`: the relay port range is split so every
/// worker owns its own ports; quotas are counted in `quota`, which every worker shares, and so is the
/// nonce secret, so a nonce is valid whichever worker checks it.
pub fn relay_config(
    config: &Config,
    index: usize,
    workers: usize,
    nonce_secret: [u8; 32],
    quota: Arc<SharedQuota>,
) -> Result<vienna_turn::Config> {
    let turn = &config.turn;
    let (v4, v6) = relay_addresses(turn)?;
    let span = usize::from(turn.max_port - turn.min_port) + 1;
    let share = span / workers;
    if share < 2 {
        bail!("turn: {span} relay ports cannot be shared by {workers} workers; widen turn.min_port..turn.max_port");
    }
    let min = turn.min_port + (share * index) as u16;
    let max = if index + 1 == workers { turn.max_port } else { min + share as u16 - 1 };
    let mut c = vienna_turn::Config::new(config.turn_realm(), v4.unwrap_or(Ipv4Addr::LOCALHOST));
    c.relay_ipv4 = v4;
    c.relay_ipv6 = v6;
    c.min_port = min;
    c.max_port = max;
    c.software = (!turn.software.is_empty()).then(|| turn.software.clone());
    c.max_lifetime = Duration::from_secs(turn.max_lifetime_secs);
    c.nonce_lifetime = Duration::from_secs(turn.nonce_lifetime_secs);
    c.nonce_secret = Some(nonce_secret);
    c.user_quota = (turn.user_quota > 0).then_some(turn.user_quota);
    c.total_quota = (turn.total_quota > 0).then_some(turn.total_quota);
    c.shared_quota = Some(quota);
    c.bandwidth_limit = (turn.bandwidth_limit > 0).then_some(turn.bandwidth_limit);
    c.alternate_server = alternate_server(turn)?;
    c.peer_policy = peer_policy(turn)?;
    c.rest_secrets = turn.rest_secrets.iter().map(|s| s.as_bytes().to_vec()).collect();
    c.msturn = turn.msturn;
    c.ms_public_address = ms_public_address(turn)?;
    c.validate().map_err(|e| anyhow!("turn: {e}"))?;
    Ok(c)
}

/// Address of a listener: the configured IP with `port`.
pub fn listen_addr(turn: &TurnConfig, port: u16) -> SocketAddr {
    SocketAddr::new(turn.listen_ip, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_are_split_without_overlap() {
        let mut config = Config::default();
        config.turn.min_port = 50000;
        config.turn.max_port = 50009;
        let ranges: Vec<(u16, u16)> = (0..3)
            .map(|i| relay_config(&config, i, 3, [0; 32], Arc::default()).map(|c| (c.min_port, c.max_port)).unwrap())
            .collect();
        assert_eq!(ranges, [(50000, 50002), (50003, 50005), (50006, 50009)]);
        assert!(relay_config(&config, 0, 6, [0; 32], Arc::default()).is_err(), "fewer than 2 ports each");
    }

    #[test]
    fn bad_values_are_named() {
        for (field, set) in [
            ("turn.relay_ipv4", "turn.relay_ipv4=banana"),
            ("turn.relay_ipv6", "turn.relay_ipv6=1.2.3.4"),
            ("turn.allowed_peers", "turn.allowed_peers=[\"10.0.0.0/99\"]"),
            ("turn.alternate_server", "turn.alternate_server=nowhere"),
            ("turn.min_port", "turn.min_port=60000"),
            ("turn.max_lifetime_secs", "turn.max_lifetime_secs=5"),
        ] {
            let mut sets = vec![set.to_string()];
            if field == "turn.min_port" {
                sets.push("turn.max_port=50000".into());
            }
            let err = Config::load(None, &sets, None).unwrap_err().to_string();
            assert!(err.contains(field), "{set}: {err}");
        }
    }
}
