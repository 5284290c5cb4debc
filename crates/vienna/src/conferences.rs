//! `vienna conference ...`: conferences in the store, for users of standard SIP clients (Microsoft clients
//! create theirs with C3P addConference). A running server's focus finds a conference added here at the
//! first request that names it; one removed here stays live there until it ends or the server restarts.

use anyhow::{Result, anyhow};
use clap::Subcommand;
use vienna_store::{Aor, StoreError};

use crate::config::Config;
use crate::data::open_store;
use crate::sip::conference::{new_record, uris};

/// Conference commands.
#[derive(Debug, Subcommand)]
pub enum ConferenceCommand {
    /// Create a conference organized by ORGANIZER; prints its id and URIs (dial-in, focus, AV MCU).
    Add {
        /// The organizer: alice or sip:alice@example.com.
        organizer: String,
        /// Subject shown in the roster.
        #[arg(long, default_value = "")]
        subject: String,
        /// The conference id (8 to 32 letters and digits); random when not given.
        #[arg(long)]
        id: Option<String>,
    },
    /// Print every stored conference with its URIs as JSON.
    List,
    /// Remove a conference.
    Remove {
        /// The conference id.
        id: String,
    },
}

/// Runs a conference command against the store.
pub fn run(config: &Config, command: ConferenceCommand) -> Result<()> {
    let store = open_store(config)?;
    match command {
        ConferenceCommand::Add { organizer, subject, id } => {
            let organizer = Aor::parse(&organizer, Some(&config.server.domain))?;
            store.account(&organizer)?.ok_or_else(|| anyhow!("no account {organizer}"))?;
            let now = crate::sip::unix_now() as i64;
            let record = new_record(config, &organizer.to_string(), &subject, id.as_deref(), now)?;
            store.add_conference(&record).map_err(|e| match e {
                StoreError::AlreadyExists { .. } => anyhow!("conference {} exists", record.id),
                e => e.into(),
            })?;
            let out = serde_json::json!({ "conference": record, "uris": uris(config, &record) });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        ConferenceCommand::List => {
            let list: Vec<_> = store
                .list_conferences()?
                .into_iter()
                .map(|c| {
                    let u = uris(config, &c);
                    serde_json::json!({ "conference": c, "uris": u })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        ConferenceCommand::Remove { id } => {
            if !store.remove_conference(&id)? {
                return Err(anyhow!("no conference {id}"));
            }
            println!("removed conference {id}");
        }
    }
    Ok(())
}
