//! From the `[sip]` configuration section to the signaling core's configuration.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use vienna_signaling::{CoreConfig, LocalAddr};
use vienna_sip::digest::Algorithm;

use crate::config::{Config, PresenceSection, SipConfig};

/// Checks the `[sip]` section; called by [`Config::validate`], so a bad value fails at load.
pub fn validate(sip: &SipConfig) -> Result<()> {
    if sip.enabled && sip.listen_ip.is_unspecified() {
        bail!(
            "sip.listen_ip {} is not a specific address: it goes into Via and Record-Route, so name the \
             address clients reach",
            sip.listen_ip
        );
    }
    if sip.min_expires == 0 || sip.min_expires > sip.max_expires {
        bail!(
            "sip.min_expires ({}) must be positive and at most sip.max_expires ({})",
            sip.min_expires,
            sip.max_expires
        );
    }
    if !(sip.min_expires..=sip.max_expires).contains(&sip.default_expires) {
        bail!("sip.default_expires ({}) must lie between sip.min_expires and sip.max_expires", sip.default_expires);
    }
    if sip.max_contacts == 0 {
        bail!("sip.max_contacts must be positive");
    }
    if sip.nonce_lifetime_secs < 10 {
        bail!("sip.nonce_lifetime_secs must be at least 10");
    }
    if sip.max_transactions == 0 || sip.max_connections == 0 {
        bail!("sip.max_transactions and sip.max_connections must be positive");
    }
    if sip.t1_ms == 0 || sip.t1_ms > sip.t2_ms || sip.t4_ms == 0 || sip.t2_ms > 60_000 || sip.t4_ms > 60_000 {
        bail!(
            "sip.t1_ms ({}), sip.t2_ms ({}) and sip.t4_ms ({}) must be positive, with t1_ms <= t2_ms, and t2_ms and \
             t4_ms at most 60000",
            sip.t1_ms,
            sip.t2_ms,
            sip.t4_ms
        );
    }
    if sip.bindings_write_back_ms > 60_000 {
        bail!(
            "sip.bindings_write_back_ms ({}) must be at most 60000 (0: write before answering)",
            sip.bindings_write_back_ms
        );
    }
    digest_algorithms(sip)?;
    if !["2005", "2007"].contains(&sip.ms_dialect.as_str()) {
        bail!("sip.ms_dialect is {:?}: \"2007\" (enhanced presence) or \"2005\" (LCS 2005)", sip.ms_dialect);
    }
    if let Some(bad) = sip.aliases.iter().find(|a| a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '@'))
    {
        bail!("sip.aliases holds {bad:?}, which is not a host name");
    }
    Ok(())
}

/// Checks the `[presence]` section.
pub fn validate_presence(p: &PresenceSection) -> Result<()> {
    if p.min_expires == 0 || p.min_expires > p.max_expires {
        bail!(
            "presence.min_expires ({}) must be positive and at most presence.max_expires ({})",
            p.min_expires,
            p.max_expires
        );
    }
    if !(p.min_expires..=p.max_expires).contains(&p.default_expires) {
        bail!(
            "presence.default_expires ({}) must lie between presence.min_expires and presence.max_expires",
            p.default_expires
        );
    }
    if p.notify_interval_ms > 60_000 {
        bail!("presence.notify_interval_ms ({}) must be at most 60000", p.notify_interval_ms);
    }
    if p.reauthorize_secs == 0 {
        bail!("presence.reauthorize_secs must be positive");
    }
    if p.max_subscriptions == 0 || p.max_publications == 0 || p.max_body < 256 {
        bail!(
            "presence.max_subscriptions and presence.max_publications must be positive, presence.max_body at least 256"
        );
    }
    Ok(())
}

/// The presence agent's configuration from `[presence]`.
pub fn presence_config(p: &PresenceSection) -> vienna_presence::PresenceConfig {
    vienna_presence::PresenceConfig {
        enabled: p.enabled,
        min_expires: p.min_expires,
        max_expires: p.max_expires,
        default_expires: p.default_expires,
        notify_interval: Duration::from_millis(p.notify_interval_ms),
        notify_burst: p.notify_burst,
        reauthorize_every: Duration::from_secs(p.reauthorize_secs),
        max_subscriptions: p.max_subscriptions,
        max_publications: p.max_publications,
        max_list_resources: p.max_list_resources,
        max_body: p.max_body,
        require_registration: p.require_registration,
        allow_unknown_watchers: p.allow_unknown_watchers,
    }
}

/// The Digest algorithms of `sip.digest_algorithms`.
fn digest_algorithms(sip: &SipConfig) -> Result<Vec<Algorithm>> {
    if sip.digest_algorithms.is_empty() {
        bail!("sip.digest_algorithms is empty: offer \"SHA-256\", \"MD5\" or both");
    }
    sip.digest_algorithms
        .iter()
        .map(|a| {
            Algorithm::parse(a).ok_or_else(|| anyhow!("sip.digest_algorithms: {a:?} is not \"SHA-256\" or \"MD5\""))
        })
        .collect()
}

/// The core's configuration for the bound listeners `local`.
pub fn core_config(config: &Config, local: Vec<LocalAddr>) -> CoreConfig {
    let sip = &config.sip;
    let mut core = CoreConfig::new(&config.server.domain, local);
    core.realm = config.sip_realm().to_owned();
    core.authenticate = sip.authenticate;
    core.aliases = sip.aliases.clone();
    // Checked by validate at load.
    core.digest_algorithms = digest_algorithms(sip).unwrap_or_default();
    core.min_expires = sip.min_expires;
    core.max_expires = sip.max_expires;
    core.default_expires = sip.default_expires;
    core.max_contacts = sip.max_contacts;
    core.nonce_lifetime_secs = sip.nonce_lifetime_secs;
    core.max_transactions = sip.max_transactions;
    core.presence = presence_config(&config.presence);
    core.timers.t1 = Duration::from_millis(sip.t1_ms);
    core.timers.t2 = Duration::from_millis(sip.t2_ms);
    core.timers.t4 = Duration::from_millis(sip.t4_ms);
    core.ms = vienna_signaling::msclient::MsConfig {
        enabled: sip.ntlm,
        targetname: if sip.ntlm_targetname.is_empty() {
            config.server.domain.clone()
        } else {
            sip.ntlm_targetname.clone()
        },
        mras_uri: config.mras.enabled.then(|| config.mras_uri()),
        lcs2005: sip.ms_dialect == "2005",
        im_gateway: vienna_signaling::msclient::im_gateway::ImGatewayConfig {
            enabled: sip.ms_im_gateway,
            ..Default::default()
        },
        ..vienna_signaling::msclient::MsConfig::default()
    };
    core
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_named() {
        for (set, needle) in [
            ("sip.listen_ip=0.0.0.0", "sip.listen_ip"),
            ("sip.min_expires=0", "sip.min_expires"),
            ("sip.default_expires=10", "sip.default_expires"),
            ("sip.max_contacts=0", "sip.max_contacts"),
            ("sip.aliases=[\"a b\"]", "sip.aliases"),
            ("sip.digest_algorithms=[\"SHA-1\"]", "sip.digest_algorithms"),
            ("sip.digest_algorithms=[]", "sip.digest_algorithms"),
            ("presence.min_expires=0", "presence.min_expires"),
            ("presence.default_expires=5", "presence.default_expires"),
            ("presence.notify_interval_ms=100000", "presence.notify_interval_ms"),
            ("sip.t1_ms=0", "sip.t1_ms"),
            ("sip.t1_ms=5000", "sip.t1_ms"),
            ("sip.t4_ms=100000", "sip.t4_ms"),
            ("sip.ms_dialect=\"2010\"", "sip.ms_dialect"),
            ("sip.bindings_write_back_ms=100000", "sip.bindings_write_back_ms"),
        ] {
            let err = Config::load(None, &[set.to_string()], None).unwrap_err().to_string();
            assert!(err.contains(needle), "{set}: {err}");
        }
        // A disabled role may keep an unusable address.
        Config::load(None, &["sip.enabled=false".into(), "sip.listen_ip=0.0.0.0".into()], None).unwrap();
    }

    #[test]
    fn core_config_follows_the_section() {
        let config = Config::load(
            None,
            &[
                "server.domain=example.com".into(),
                "sip.authenticate=false".into(),
                "sip.max_contacts=3".into(),
                "sip.t1_ms=100".into(),
            ],
            None,
        )
        .unwrap();
        let core = core_config(&config, vec![]);
        assert_eq!((core.domain.as_str(), core.realm.as_str()), ("example.com", "example.com"));
        assert!(!core.authenticate);
        assert_eq!(core.max_contacts, 3);
        assert_eq!((core.timers.t1, core.timers.t2), (Duration::from_millis(100), Duration::from_secs(4)));
        assert_eq!(core.digest_algorithms, [Algorithm::Sha256, Algorithm::Md5]);
    }
}
