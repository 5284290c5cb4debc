//! Configuration: a TOML file, overridden by `--set SECTION.KEY=VALUE` and `--data-dir`.
//!
//! [`DEFAULT_TOML`] is the commented file `vienna config default` prints; a unit test keeps it equal to
//! [`Config::default`], so the documentation cannot drift from the code.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

/// The complete, commented default configuration.
pub const DEFAULT_TOML: &str = include_str!("default-config.toml");

/// All of Vienna's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Identity and files of this server.
    pub server: ServerConfig,
    /// Log output.
    pub log: LogConfig,
    /// Persistent store.
    pub store: StoreConfig,
    /// Certificate for every TLS listener.
    pub tls: TlsConfig,
    /// HTTP admin API and metrics.
    pub admin: AdminConfig,
    /// SIP registrar and proxy.
    pub sip: SipConfig,
    /// Presence agent of the SIP role.
    pub presence: PresenceSection,
    /// TURN relay.
    pub turn: TurnConfig,
    /// A/V Edge credentials (MRAS) for MS-TURN clients.
    pub mras: MrasConfig,
    /// Audio MCU.
    pub mcu: McuConfig,
    /// Conference focus of the SIP role (C3P, roster subscriptions, dial-in).
    pub conference: ConferenceSection,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// SIP domain, authentication realm and TLS certificate name.
    pub domain: String,
    /// Directory for the store, the generated certificate and other state.
    pub data_dir: PathBuf,
    /// Seconds to let open connections finish at shutdown.
    pub shutdown_timeout_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self { domain: "localhost".into(), data_dir: "vienna-data".into(), shutdown_timeout_secs: 10 }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Line format.
    pub format: LogFormat,
    /// Filter directives (tracing `EnvFilter` syntax); `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Human, level: "info".into() }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per line.
    Json,
}

/// `[store]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Back end.
    pub backend: StoreBackend,
    /// SQLite database file; relative paths are inside the data directory.
    pub path: PathBuf,
    /// `full`: every commit synced (survives power loss); `normal`: survives a crash of the process.
    pub synchronous: SyncMode,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { backend: StoreBackend::Sqlite, path: "vienna.db".into(), synchronous: SyncMode::Full }
    }
}

/// Store back ends this build has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// Embedded SQLite file.
    Sqlite,
}

/// SQLite durability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Sync every commit.
    Full,
    /// Sync at checkpoints.
    Normal,
}

/// `[tls]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain; unset: a self-signed certificate in `<data_dir>/tls/`, made on first start.
    pub certificate: Option<PathBuf>,
    /// PEM private key of `certificate`.
    pub private_key: Option<PathBuf>,
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Serve the admin API, `/metrics` and `/healthz`.
    pub enabled: bool,
    /// Address and port; port 0 picks a free port (the bound address is logged).
    pub listen: SocketAddr,
    /// Serve HTTPS with the `[tls]` certificate instead of HTTP.
    pub tls: bool,
    /// Bearer token required on `/api/`; required when `listen` is not a loopback address.
    pub token: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { enabled: true, listen: "127.0.0.1:9464".parse().expect("literal"), tls: false, token: String::new() }
    }
}

/// `[sip]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// Run the SIP registrar and proxy.
    pub enabled: bool,
    /// Address of the listeners; it also goes into Via and Record-Route, so it must be a specific address.
    pub listen_ip: IpAddr,
    /// UDP port; 0 picks a free port.
    pub udp_port: u16,
    /// TCP port; 0 picks a free port.
    pub tcp_port: u16,
    /// TLS port; 0 picks a free port.
    pub tls_port: u16,
    /// Also listen on TCP.
    pub tcp: bool,
    /// Also listen on TLS.
    pub tls: bool,
    /// Challenge REGISTER and requests from local users with Digest. Off only for benchmarks.
    pub authenticate: bool,
    /// Digest realm; empty means server.domain.
    pub realm: String,
    /// Other host names that mean this server in Request-URIs and Routes.
    pub aliases: Vec<String>,
    /// Digest algorithms offered ("SHA-256", "MD5"), in challenge order.
    pub digest_algorithms: Vec<String>,
    /// Shortest registration accepted, seconds (423 below).
    pub min_expires: u32,
    /// Longest registration granted, seconds.
    pub max_expires: u32,
    /// Registration lifetime when the client asks for none, seconds.
    pub default_expires: u32,
    /// Most contacts per address of record.
    pub max_contacts: usize,
    /// Seconds a Digest nonce is accepted.
    pub nonce_lifetime_secs: u64,
    /// Most SIP transactions at once (503 beyond).
    pub max_transactions: usize,
    /// Most TCP and TLS connections at once, per listener.
    pub max_connections: usize,
    /// Transaction timer T1 (round-trip estimate), milliseconds.
    pub t1_ms: u64,
    /// Transaction timer T2 (longest retransmission interval), milliseconds.
    pub t2_ms: u64,
    /// Transaction timer T4 (longest a message stays in the network), milliseconds.
    pub t4_ms: u64,
    /// Microsoft clients: offer NTLM (MS-SIPAE) beside Digest on TCP and TLS, and serve provisioning,
    /// roaming lists, enhanced presence and their SERVICE operations.
    pub ntlm: bool,
    /// `targetname` of NTLM challenges (the server's name); empty means server.domain.
    pub ntlm_targetname: String,
    /// Presence dialect offered to Microsoft clients: "2007" (enhanced presence, MS-PRES) or "2005" (LCS
    /// 2005 presence documents).
    pub ms_dialect: String,
    /// Microsoft clients: the IM-session gateway answers their IM INVITEs that standard clients refuse
    /// (488, 415, 606) and carries the messages as page-mode MESSAGE.
    pub ms_im_gateway: bool,
    /// Registrations: 0 writes a batch's binding changes to the store before its answers go out (an
    /// acknowledged registration survives a crash). More than 0 is write-back: bindings live in memory,
    /// answers go out at once, and a thread of their own writes the changes every this many milliseconds
    /// in one transaction (and at shutdown); a crash loses at most the last interval's changes, which
    /// clients restore at their next refresh.
    pub bindings_write_back_ms: u64,
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen_ip: IpAddr::from([127, 0, 0, 1]),
            udp_port: 5060,
            tcp_port: 5060,
            tls_port: 5061,
            tcp: true,
            tls: true,
            authenticate: true,
            realm: String::new(),
            aliases: Vec::new(),
            digest_algorithms: vec!["SHA-256".into(), "MD5".into()],
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 10,
            nonce_lifetime_secs: 300,
            max_transactions: 100_000,
            max_connections: 10_000,
            t1_ms: 500,
            t2_ms: 4_000,
            t4_ms: 5_000,
            ntlm: true,
            ntlm_targetname: String::new(),
            ms_dialect: "2007".into(),
            ms_im_gateway: true,
            bindings_write_back_ms: 0,
        }
    }
}

/// `[presence]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceSection {
    /// Serve presence (PUBLISH, SUBSCRIBE/NOTIFY for presence, watcher info and contact lists).
    pub enabled: bool,
    /// Shortest subscription or publication accepted, seconds (423 below).
    pub min_expires: u32,
    /// Longest granted, seconds.
    pub max_expires: u32,
    /// Granted when a request names none, seconds.
    pub default_expires: u32,
    /// Shortest time between two NOTIFYs to one watcher, milliseconds; changes in between are coalesced.
    pub notify_interval_ms: u64,
    /// Most NOTIFYs sent at once; a larger fan-out continues in the next turns of the SIP thread.
    pub notify_burst: usize,
    /// How often live subscriptions re-read authorizations and contact lists, seconds.
    pub reauthorize_secs: u64,
    /// Most subscriptions at once (503 beyond).
    pub max_subscriptions: usize,
    /// Most publications one user may hold at once (403 beyond).
    pub max_publications: usize,
    /// Most contacts in one contact-list subscription.
    pub max_list_resources: usize,
    /// Largest PIDF body accepted, bytes (413 beyond).
    pub max_body: usize,
    /// A user with no registered endpoint is Offline whatever it published.
    pub require_registration: bool,
    /// Allow watchers nobody decided about instead of keeping them pending.
    pub allow_unknown_watchers: bool,
}

impl Default for PresenceSection {
    fn default() -> Self {
        let d = vienna_presence::PresenceConfig::default();
        Self {
            enabled: d.enabled,
            min_expires: d.min_expires,
            max_expires: d.max_expires,
            default_expires: d.default_expires,
            notify_interval_ms: d.notify_interval.as_millis() as u64,
            notify_burst: d.notify_burst,
            reauthorize_secs: d.reauthorize_every.as_secs(),
            max_subscriptions: d.max_subscriptions,
            max_publications: d.max_publications,
            max_list_resources: d.max_list_resources,
            max_body: d.max_body,
            require_registration: d.require_registration,
            allow_unknown_watchers: d.allow_unknown_watchers,
        }
    }
}

/// `[turn]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TurnConfig {
    /// Run the TURN relay.
    pub enabled: bool,
    /// Address clients reach the relay on (UDP, TCP and TLS listeners).
    pub listen_ip: IpAddr,
    /// UDP port; 0 picks a free port.
    pub udp_port: u16,
    /// TCP port; 0 picks a free port.
    pub tcp_port: u16,
    /// TLS port; 0 picks a free port.
    pub tls_port: u16,
    /// Also listen on TCP.
    pub tcp: bool,
    /// Also listen on TLS.
    pub tls: bool,
    /// IPv4 address relayed sockets bind to; empty for no IPv4 relaying.
    pub relay_ipv4: String,
    /// IPv6 address relayed sockets bind to; empty for no IPv6 relaying.
    pub relay_ipv6: String,
    /// Lowest relay port.
    pub min_port: u16,
    /// Highest relay port.
    pub max_port: u16,
    /// Realm; empty means server.domain.
    pub realm: String,
    /// Worker threads (each owns a share of the allocations and relay ports); 0 means one per core.
    pub workers: usize,
    /// Longest allocation lifetime granted, in seconds.
    pub max_lifetime_secs: u64,
    /// Seconds a nonce stays valid before 438 Stale Nonce.
    pub nonce_lifetime_secs: u64,
    /// Most allocations per user; 0 for no limit.
    pub user_quota: u32,
    /// Most allocations in total; 0 for no limit.
    pub total_quota: u32,
    /// Per-allocation bandwidth cap in bytes per second (both directions); 0 for no cap.
    pub bandwidth_limit: u64,
    /// Peer ranges (CIDR) allowed even though the built-in policy denies them.
    pub allowed_peers: Vec<String>,
    /// Peer ranges (CIDR) always denied.
    pub denied_peers: Vec<String>,
    /// TURN REST API shared secrets; the first is current, the others still accepted.
    pub rest_secrets: Vec<String>,
    /// ALTERNATE-SERVER ("ip:port") to send clients to when the relay is full; empty for none.
    pub alternate_server: String,
    /// SOFTWARE attribute; empty to send none.
    pub software: String,
    /// Also serve MS-TURN (Microsoft's dialect) on the same ports.
    pub msturn: bool,
    /// Also listen on the MS-TURN TCP port (pseudo-TLS handshake, then MS-TURN TCP framing).
    pub ms_tcp: bool,
    /// MS-TURN TCP port (443 on a Microsoft A/V Edge); 0 picks a free port.
    pub ms_tcp_port: u16,
    /// The relay's public UDP "ip:port", sent to MS-TURN clients in their 401 (ALTERNATE-SERVER); empty:
    /// not sent.
    pub ms_public_address: String,
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen_ip: IpAddr::from([127, 0, 0, 1]),
            udp_port: 3478,
            tcp_port: 3478,
            tls_port: 5349,
            tcp: true,
            tls: true,
            relay_ipv4: "127.0.0.1".into(),
            relay_ipv6: String::new(),
            min_port: 49152,
            max_port: 65535,
            realm: String::new(),
            workers: 0,
            max_lifetime_secs: 3600,
            nonce_lifetime_secs: 600,
            user_quota: 10,
            total_quota: 0,
            bandwidth_limit: 0,
            allowed_peers: Vec::new(),
            denied_peers: Vec::new(),
            rest_secrets: Vec::new(),
            alternate_server: String::new(),
            software: "Vienna".into(),
            msturn: true,
            ms_tcp: true,
            ms_tcp_port: 443,
            ms_public_address: String::new(),
        }
    }
}

/// `[mras]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MrasConfig {
    /// Issue and accept MRAS credentials.
    pub enabled: bool,
    /// Secret shared by the credential service and every relay; empty: generated on first start and
    /// kept in `mras.secret` in the data directory.
    pub secret: String,
    /// The MRAS URI clients send SERVICE requests to; empty: `sip:mras@<server.domain>`.
    pub uri: String,
    /// Longest credential lifetime granted, in minutes.
    pub max_duration_minutes: u32,
    /// Relay host name or address told to clients (location internet); empty: turn.listen_ip.
    pub relay_host: String,
    /// Relay UDP port told to clients; 0: turn.udp_port.
    pub relay_udp_port: u16,
    /// Relay TCP port told to clients; 0: turn.ms_tcp_port.
    pub relay_tcp_port: u16,
    /// Relay host told to clients on the internal network (location intranet); empty: none.
    pub internal_host: String,
}

impl Default for MrasConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            secret: String::new(),
            uri: String::new(),
            max_duration_minutes: 480,
            relay_host: String::new(),
            relay_udp_port: 0,
            relay_tcp_port: 0,
            internal_host: String::new(),
        }
    }
}

/// `[mcu]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McuConfig {
    /// Run the audio MCU.
    pub enabled: bool,
    /// Address of the media sockets, also put in SDP answers.
    pub listen_ip: IpAddr,
    /// UDP port of the first worker (worker i uses port + i); 0 lets each worker pick a free port.
    pub port: u16,
    /// Worker threads (each owns its conferences and one socket); 0 means one per core.
    pub workers: usize,
    /// Mixing rate in Hz: 8000, 16000 or 48000.
    pub mix_rate: u32,
    /// Most talkers mixed at once (the loudest).
    pub max_talkers: usize,
    /// Opus bit rate of the mixes, bits per second.
    pub opus_bitrate: u32,
    /// Opus encoder complexity, 0 to 10.
    pub opus_complexity: u8,
    /// Largest jitter buffer delay, milliseconds.
    pub max_jitter_ms: u32,
    /// A participant that sends nothing (RTP or ICE checks) this long is removed.
    pub media_timeout_secs: u64,
    /// Most participants per conference.
    pub max_participants: usize,
    /// Participants that neither speak nor are mixed are decoded every this many frames (1: always).
    pub quiet_decode_interval: u32,
    /// SRTP: `required`, `optional` (SRTP when offered) or `rejected` (plain RTP only).
    pub encryption: String,
    /// Encode the mix separately for every listener (Janus-like; for benchmarks only).
    pub encode_per_listener: bool,
}

impl Default for McuConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen_ip: IpAddr::from([127, 0, 0, 1]),
            port: 0,
            workers: 0,
            mix_rate: 48_000,
            max_talkers: 3,
            opus_bitrate: 32_000,
            opus_complexity: 5,
            max_jitter_ms: 200,
            media_timeout_secs: 30,
            max_participants: 1000,
            quiet_decode_interval: 4,
            encryption: "optional".into(),
            encode_per_listener: false,
        }
    }
}

/// `[conference]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConferenceSection {
    /// Serve the focus (needs sip.enabled; audio needs mcu.enabled).
    pub enabled: bool,
    /// Most conferences at once.
    pub max_conferences: usize,
    /// Most users in one conference.
    pub max_users: u32,
    /// Lifetime of a conference whose creator asks for none, hours.
    pub default_lifetime_hours: u64,
    /// Longest lifetime granted, days.
    pub max_lifetime_days: u64,
    /// Standard SIP clients dial `sip:<dial_prefix><id>@<server.domain>`.
    pub dial_prefix: String,
    /// Longest roster subscription granted, seconds.
    pub max_subscription_secs: u32,
}

impl Default for ConferenceSection {
    fn default() -> Self {
        Self {
            enabled: true,
            max_conferences: 10_000,
            max_users: 250,
            default_lifetime_hours: 8,
            max_lifetime_days: 366,
            dial_prefix: "conf-".into(),
            max_subscription_secs: 3600,
        }
    }
}

impl Config {
    /// The MRAS URI: `mras.uri`, or `sip:mras@<server.domain>`.
    pub fn mras_uri(&self) -> String {
        if self.mras.uri.is_empty() { format!("sip:mras@{}", self.server.domain) } else { self.mras.uri.clone() }
    }

    /// The TURN realm: `turn.realm`, or the server domain.
    pub fn turn_realm(&self) -> &str {
        if self.turn.realm.is_empty() { &self.server.domain } else { &self.turn.realm }
    }

    /// The SIP Digest realm: `sip.realm`, or the server domain.
    pub fn sip_realm(&self) -> &str {
        if self.sip.realm.is_empty() { &self.server.domain } else { &self.sip.realm }
    }

    /// Reads `file` (if any), applies `--set` overrides and `--data-dir`, and checks the result.
    pub fn load(file: Option<&Path>, overrides: &[String], data_dir: Option<&Path>) -> Result<Self> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                parse_table(&text).map_err(|e| anyhow!("config file {}: {e}", path.display()))?
            }
            None => toml::Table::new(),
        };
        for item in overrides {
            apply_override(&mut table, item)?;
        }
        let mut config: Config = deserialize(table).map_err(|e| match file {
            Some(path) => anyhow!("config file {}: {e}", path.display()),
            None => anyhow!("configuration: {e}"),
        })?;
        if let Some(dir) = data_dir {
            config.server.data_dir = dir.to_owned();
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<()> {
        let domain = &self.server.domain;
        if domain.is_empty() || domain.contains(|c: char| c.is_whitespace() || c == '@' || c == ':') {
            bail!("server.domain {domain:?} is not a domain name");
        }
        if self.server.data_dir.as_os_str().is_empty() {
            bail!("server.data_dir is empty");
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| anyhow!("log.level {:?}: {e}", self.log.level))?;
        if self.tls.certificate.is_some() != self.tls.private_key.is_some() {
            bail!("tls.certificate and tls.private_key go together: set both or neither");
        }
        crate::turn::settings::validate(&self.turn)?;
        if self.mras.max_duration_minutes == 0 {
            bail!("mras.max_duration_minutes must be positive");
        }
        crate::sip::settings::validate(&self.sip)?;
        crate::sip::settings::validate_presence(&self.presence)?;
        crate::mcu::validate(&self.mcu)?;
        crate::sip::conference::validate(&self.conference)?;
        if self.admin.enabled && !self.admin.listen.ip().is_loopback() && self.admin.token.is_empty() {
            bail!(
                "admin.listen {} is not a loopback address: set admin.token so the admin API is not open",
                self.admin.listen
            );
        }
        Ok(())
    }

    /// The store file, resolved against the data directory.
    pub fn store_path(&self) -> PathBuf {
        self.server.data_dir.join(&self.store.path)
    }

    /// How long shutdown waits for connections.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.server.shutdown_timeout_secs)
    }
}

fn deserialize(table: toml::Table) -> Result<Config, String> {
    Config::deserialize(toml::Value::Table(table)).map_err(|e| one_line(e.message()))
}

/// Parses TOML text into a table, with a one-line error that names line and column.
fn parse_table(text: &str) -> Result<toml::Table, String> {
    text.parse::<toml::Table>().map_err(|e| {
        let place = e.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: ")
        });
        format!("{}{}", place.unwrap_or_default(), one_line(e.message()))
    })
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Applies one `SECTION.KEY=VALUE`. VALUE is read as a TOML value (`true`, `5060`, `"x"`, `[1, 2]`) and,
/// failing that, as a plain string, so `--set server.domain=example.com` needs no quotes.
fn apply_override(table: &mut toml::Table, item: &str) -> Result<()> {
    let bad = |why: &str| anyhow!("--set {item:?}: {why}");
    let (key, raw) = item.split_once('=').ok_or_else(|| bad("expected SECTION.KEY=VALUE"))?;
    let (section, field) = key.trim().split_once('.').ok_or_else(|| bad("expected SECTION.KEY=VALUE"))?;
    if section.is_empty() || field.is_empty() || field.contains('.') {
        return Err(bad("expected SECTION.KEY=VALUE"));
    }
    let value = parse_table(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    // Check the key and the value's type alone, so the error names this --set.
    let mut alone = toml::Table::new();
    alone.insert(section.to_owned(), toml::Value::Table(toml::Table::from_iter([(field.to_owned(), value.clone())])));
    deserialize(alone).map_err(|e| bad(&e))?;
    let entry = table.entry(section.to_owned()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let section_table = entry.as_table_mut().ok_or_else(|| bad("that section is not a table in the config file"))?;
    section_table.insert(field.to_owned(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_is_the_default_config() {
        let parsed: Config = deserialize(parse_table(DEFAULT_TOML).unwrap()).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn default_file_documents_every_option() {
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        for (section, fields) in defaults.as_table().unwrap() {
            assert!(DEFAULT_TOML.contains(&format!("[{section}]")), "section {section} undocumented");
            for field in fields.as_table().unwrap().keys() {
                assert!(DEFAULT_TOML.contains(&format!("\n{field} = ")), "{section}.{field} undocumented");
            }
        }
        for optional in ["certificate", "private_key"] {
            assert!(DEFAULT_TOML.contains(&format!("# {optional} = ")), "tls.{optional} undocumented");
        }
    }

    #[test]
    fn overrides_apply_with_and_without_quotes() {
        let sets = [
            "server.domain=example.com".to_string(),
            "admin.listen=127.0.0.1:0".into(),
            "admin.tls=true".into(),
            "log.format=\"json\"".into(),
            "tls.certificate=/etc/c.pem".into(),
            "tls.private_key=/etc/k.pem".into(),
        ];
        let c = Config::load(None, &sets, Some(Path::new("/tmp/x"))).unwrap();
        assert_eq!(c.server.domain, "example.com");
        assert_eq!(c.admin.listen.port(), 0);
        assert!(c.admin.tls);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.server.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.store_path(), PathBuf::from("/tmp/x/vienna.db"));
    }

    #[test]
    fn bad_overrides_are_named() {
        for (set, needle) in [
            ("server.nope=1", "unknown field"),
            ("nosuch.key=1", "unknown field"),
            ("admin.listen=banana", "socket address"),
            ("admin.tls=maybe", "admin.tls=maybe"),
            ("serverdomain", "SECTION.KEY=VALUE"),
            ("server.=x", "SECTION.KEY=VALUE"),
        ] {
            let err = Config::load(None, &[set.to_string()], None).unwrap_err().to_string();
            assert!(err.contains(needle) && err.contains(set.split('=').next().unwrap()), "{set}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn semantic_checks() {
        for (set, needle) in [
            ("admin.listen=0.0.0.0:9464", "admin.token"),
            ("server.domain=a b", "not a domain"),
            ("log.level=info,=", "log.level"),
            ("tls.certificate=/x.pem", "go together"),
        ] {
            let err = Config::load(None, &[set.to_string()], None).unwrap_err().to_string();
            assert!(err.contains(needle), "{set}: {err}");
        }
        let open = ["admin.listen=0.0.0.0:9464".to_string(), "admin.token=s3cret".into()];
        Config::load(None, &open, None).unwrap();
    }

    #[test]
    fn malformed_file_gives_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[server]\ndomain = \"x\"\nshutdown_timeout_secs = = 3\n").unwrap();
        let err = Config::load(Some(&path), &[], None).unwrap_err().to_string();
        assert!(err.contains("bad.toml") && err.contains("line 3"), "{err}");
        std::fs::write(&path, "[server]\nshutdown_timeout_secs = \"soon\"\n").unwrap();
        let err = Config::load(Some(&path), &[], None).unwrap_err().to_string();
        assert!(err.contains("bad.toml") && err.contains("invalid type"), "{err}");
    }
}
