//! `vienna-load msturn`: MS-TURN relay load ([MS-TURN] over UDP), against Vienna's MS-TURN relay or any
//! A/V Edge that speaks the dialect. The machinery is `turn`'s ([`crate::turn::run_relay`]): one UDP socket
//! and one allocation per client, data at a fixed rate to an echo peer, loss, reordering, jitter and
//! round-trip latency, or `--hold` for the memory per allocation.
//!
//! Data goes one of two ways (`--data`): `send`, every packet an authenticated Send request (USERNAME,
//! DESTINATION-ADDRESS, DATA, MS-SEQUENCE-NUMBER, MESSAGE-INTEGRITY) that the relay checks, the echo coming
//! back in a Data Indication; or `raw`, a Set Active Destination to the peer after the Allocate, then bare
//! payloads both ways, as Microsoft clients do once ICE has chosen the relayed pair.
//!
//! Credentials: MRAS tokens minted with the relay's shared secret (`--mras-secret`, as Vienna's credential
//! service does), an MRAS answer's base64 username and password (`--mras-username/--mras-password`, what
//! `vienna relay-credentials` prints), TURN REST credentials (`--rest-secret`), or a store account
//! (`--user/--password`, MS-Version 1 and 2 only: the store keeps the MD5 key).

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use vienna_edge_auth::MrasKeys;

use crate::framework::Finished;
use crate::turn::msclient::MsSettings;
use crate::turn::{Plan, PlanDialect, RelayArgs, run_relay};

/// How data goes through the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MsData {
    /// Send requests to the peer (each one signed and checked); Data Indications back.
    Send,
    /// Set Active Destination to the peer, then raw data both ways.
    Raw,
}

/// Arguments of `vienna-load msturn`.
#[derive(Debug, Clone, clap::Args)]
pub struct MsTurnArgs {
    /// Server, clients, rate, payload, peer, outputs.
    #[command(flatten)]
    pub relay: RelayArgs,
    /// Data path: Send requests (`send`) or raw data after Set Active Destination (`raw`).
    #[arg(long, value_enum, default_value_t = MsData::Send)]
    pub data: MsData,
    /// MS-VERSION of the Allocate, 1..=3 (3 signs with HMAC-SHA256 and the key of MS-TURN §3.2.2).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=3))]
    pub ms_version: u32,
    /// The MRAS shared secret (Vienna: `mras.secret`, or the `mras.secret` file of its data directory):
    /// every client gets a token minted for --identity, as the credential service would.
    #[arg(long)]
    pub mras_secret: Option<String>,
    /// SIP identity of the tokens minted with --mras-secret.
    #[arg(long, default_value = "sip:vienna-load@localhost")]
    pub identity: String,
    /// MRAS username as an MRAS answer carries it (base64; `vienna relay-credentials` prints one).
    #[arg(long, requires = "mras_password")]
    pub mras_username: Option<String>,
    /// MRAS password as an MRAS answer carries it (base64).
    #[arg(long, requires = "mras_username")]
    pub mras_password: Option<String>,
    /// TURN REST shared secret: username `expiry:user` (--user optional) and password
    /// base64(HMAC-SHA1(secret, username)).
    #[arg(long)]
    pub rest_secret: Option<String>,
    /// Store account name (with --password), or the user part of REST usernames.
    #[arg(long)]
    pub user: Option<String>,
    /// Store account password (the relay's key is its Digest MD5 HA1).
    #[arg(long)]
    pub password: Option<String>,
}

/// Runs `vienna-load msturn`.
pub fn run(args: MsTurnArgs) -> anyhow::Result<Finished> {
    let given =
        [args.mras_secret.is_some(), args.mras_username.is_some(), args.rest_secret.is_some(), args.password.is_some()];
    if given.iter().filter(|&&g| g).count() != 1 {
        bail!("give exactly one of --mras-secret, --mras-username/--mras-password, --rest-secret, --user/--password");
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    // Valid for the whole run and an hour more.
    let expiry = now + args.relay.setup_timeout + args.relay.duration + 3600;
    let (username, password, shown, credentials): (Vec<u8>, Vec<u8>, String, &'static str) =
        if let Some(secret) = &args.mras_secret {
            let token = MrasKeys::derive(secret.as_bytes()).mint(&args.identity, expiry);
            let shown = BASE64.encode(&token.username);
            (token.username, token.password.to_vec(), shown, "mras")
        } else if let (Some(u), Some(p)) = (&args.mras_username, &args.mras_password) {
            let username = BASE64.decode(u.trim()).context("--mras-username is not base64")?;
            let password = BASE64.decode(p.trim()).context("--mras-password is not base64")?;
            (username, password, u.trim().to_owned(), "mras")
        } else if let Some(secret) = &args.rest_secret {
            let name = match &args.user {
                Some(u) => format!("{expiry}:{u}"),
                None => expiry.to_string(),
            };
            let password = vienna_turn::credentials::rest_password(secret.as_bytes(), &name);
            (name.clone().into_bytes(), password.into_bytes(), name, "rest")
        } else {
            let (Some(user), Some(password)) = (&args.user, &args.password) else {
                bail!("--password needs --user");
            };
            if args.ms_version >= 3 {
                bail!("a store account signs with its MD5 key: use --ms-version 1 or 2 (or MRAS/REST credentials)");
            }
            (user.clone().into_bytes(), password.clone().into_bytes(), user.clone(), "account")
        };
    let settings = MsSettings {
        username,
        password,
        // Filled in by run_relay once the echo peer runs.
        peer: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
        version: args.ms_version,
        active_destination: args.data == MsData::Raw,
    };
    run_relay(&args.relay, Plan { dialect: PlanDialect::Ms(settings), username: shown, credentials })
}
