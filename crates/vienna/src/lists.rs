//! `vienna contact ...`, `vienna watcher ...` and `vienna presence ...`: a user's contact list (with
//! groups), the decisions about who may watch its presence, and the state it set by hand for all its
//! devices, in the store. A running server sees changes within a few seconds (`presence.reauthorize_secs`
//! plus its 5-second cache).

use anyhow::{Result, anyhow, bail};
use clap::Subcommand;
use vienna_presence::{PresenceState, State};
use vienna_store::{Aor, ContactEntry, ManualPresence, Store, Watcher, WatcherState};

use crate::config::Config;
use crate::data::open_store;

/// Contact-list commands.
#[derive(Debug, Subcommand)]
pub enum ContactCommand {
    /// Add (or change) a contact of OWNER; groups are created as needed.
    Add {
        /// The owner: alice or sip:alice@example.com.
        owner: String,
        /// The contact: bob or sip:bob@example.com.
        contact: String,
        /// Name the owner gives the contact.
        #[arg(long, default_value = "")]
        name: String,
        /// Group to put it in (repeatable); none puts it in no group.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Keep it in the list without watching its presence.
        #[arg(long)]
        unsubscribed: bool,
    },
    /// Remove a contact.
    Remove {
        /// The owner.
        owner: String,
        /// The contact.
        contact: String,
    },
    /// Print the contact list with its groups as JSON.
    List {
        /// The owner.
        owner: String,
    },
}

/// Watcher commands.
#[derive(Debug, Subcommand)]
pub enum WatcherCommand {
    /// Let WATCHER see OWNER's presence.
    Allow {
        /// The watched user.
        owner: String,
        /// The watcher.
        watcher: String,
    },
    /// Show OWNER as Offline to WATCHER.
    Block {
        /// The watched user.
        owner: String,
        /// The watcher.
        watcher: String,
    },
    /// Forget the decision (the watcher is asked about again when it next subscribes).
    Forget {
        /// The watched user.
        owner: String,
        /// The watcher.
        watcher: String,
    },
    /// Print OWNER's watchers (pending, allowed, blocked) as JSON.
    List {
        /// The watched user.
        owner: String,
    },
}

/// Manual presence commands.
#[derive(Debug, Subcommand)]
pub enum PresenceCommand {
    /// Set OWNER's state by hand for all its devices, kept across restarts until changed or cleared
    /// (a device that later publishes a state chosen by its user replaces it; with no device registered
    /// the user is Offline all the same).
    Set {
        /// The user.
        owner: String,
        /// online, busy, do-not-disturb, be-right-back, away, in-a-meeting or offline.
        state: String,
        /// A note shown with it.
        #[arg(long)]
        note: Option<String>,
    },
    /// Clear OWNER's manual state (its devices' states apply again).
    Clear {
        /// The user.
        owner: String,
    },
    /// Print OWNER's manual state as JSON (null when none).
    Show {
        /// The user.
        owner: String,
    },
}

/// Runs one manual presence command.
pub fn run_presence(config: &Config, command: PresenceCommand) -> Result<()> {
    let store = open_store(config)?;
    let store = store.as_ref();
    match command {
        PresenceCommand::Set { owner: o, state, note } => {
            let o = owner(store, config, &o)?;
            let names = State::ALL.map(State::as_str).join(", ");
            let st = State::parse(&state).ok_or_else(|| anyhow!("unknown state {state:?}: one of {names}"))?;
            let p = PresenceState::of(st);
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
            let manual = ManualPresence { availability: p.availability, activity: p.activity, note, updated_at: now };
            store.set_manual_presence(&o, Some(&manual))?;
            println!("{o} is {st} ({}) until changed", manual.availability);
        }
        PresenceCommand::Clear { owner: o } => {
            let o = owner(store, config, &o)?;
            store.set_manual_presence(&o, None)?;
            println!("cleared the manual state of {o}");
        }
        PresenceCommand::Show { owner: o } => {
            let o = owner(store, config, &o)?;
            println!("{}", serde_json::to_string_pretty(&store.manual_presence(&o)?)?);
        }
    }
    store.flush()?;
    Ok(())
}

fn aor(config: &Config, uri: &str) -> Result<Aor> {
    Aor::parse(uri, Some(&config.server.domain)).map_err(|e| anyhow!("{e}"))
}

fn owner(store: &dyn Store, config: &Config, uri: &str) -> Result<Aor> {
    let aor = aor(config, uri)?;
    if store.account(&aor)?.is_none() {
        bail!("account {aor} not found");
    }
    Ok(aor)
}

/// Runs one contact command.
pub fn run_contact(config: &Config, command: ContactCommand) -> Result<()> {
    let store = open_store(config)?;
    let store = store.as_ref();
    match command {
        ContactCommand::Add { owner: o, contact, name, groups, unsubscribed } => {
            let o = owner(store, config, &o)?;
            let contact = aor(config, &contact)?;
            let list = store.contact_list(&o)?;
            let mut ids = Vec::new();
            for g in &groups {
                let id = match list.groups.iter().find(|x| x.name == *g) {
                    Some(x) => x.id,
                    None => store.add_group(&o, g)?.0.id,
                };
                ids.push(id);
            }
            ids.sort_unstable();
            ids.dedup();
            let entry =
                ContactEntry { uri: contact.to_string(), display_name: name, groups: ids, subscribed: !unsubscribed };
            let version = store.put_contact(&o, &entry)?;
            println!("{contact} is in the contact list of {o} (list version {version})");
        }
        ContactCommand::Remove { owner: o, contact } => {
            let o = owner(store, config, &o)?;
            let contact = aor(config, &contact)?;
            store.remove_contact(&o, contact.as_str())?;
            println!("removed {contact} from the contact list of {o}");
        }
        ContactCommand::List { owner: o } => {
            let o = owner(store, config, &o)?;
            println!("{}", serde_json::to_string_pretty(&store.contact_list(&o)?)?);
        }
    }
    store.flush()?;
    Ok(())
}

/// Runs one watcher command.
pub fn run_watcher(config: &Config, command: WatcherCommand) -> Result<()> {
    let store = open_store(config)?;
    let store = store.as_ref();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let decide = |o: &str, w: &str, state: WatcherState| -> Result<()> {
        let o = owner(store, config, o)?;
        let w = aor(config, w)?;
        let old = store.watchers(&o)?.into_iter().find(|x| x.uri == w.as_str());
        let record = Watcher {
            uri: w.to_string(),
            display_name: old.as_ref().and_then(|x| x.display_name.clone()),
            state,
            first_seen: old.as_ref().map_or(now, |x| x.first_seen),
            updated_at: now,
        };
        store.put_watcher(&o, &record)?;
        let verb = if state == WatcherState::Allowed { "may see" } else { "sees Offline for" };
        println!("{w} {verb} {o}");
        Ok(())
    };
    match command {
        WatcherCommand::Allow { owner, watcher } => decide(&owner, &watcher, WatcherState::Allowed)?,
        WatcherCommand::Block { owner, watcher } => decide(&owner, &watcher, WatcherState::Blocked)?,
        WatcherCommand::Forget { owner: o, watcher } => {
            let o = owner(store, config, &o)?;
            let w = aor(config, &watcher)?;
            if !store.remove_watcher(&o, w.as_str())? {
                bail!("{w} is not a watcher of {o}");
            }
            println!("forgot {w} as a watcher of {o}");
        }
        WatcherCommand::List { owner: o } => {
            let o = owner(store, config, &o)?;
            println!("{}", serde_json::to_string_pretty(&store.watchers(&o)?)?);
        }
    }
    store.flush()?;
    Ok(())
}
