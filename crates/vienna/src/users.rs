//! `vienna user add|list|show|set|passwd|remove`: accounts in the store.
//!
//! Passwords are read from a terminal prompt (not echoed) or, with `--password-stdin`, from the first
//! line of standard input; they are never taken as arguments (which other users can read in `ps`), never
//! stored, never printed. The store keeps only the derived secrets.

use std::io::{BufRead, IsTerminal};

use anyhow::{Result, anyhow, bail};
use clap::Subcommand;
use vienna_store::{Account, AccountUpdate, Aor, NewAccount, Secrets};

use crate::config::Config;
use crate::data::open_store;

/// Longest password accepted, in bytes.
const MAX_PASSWORD: usize = 1024;

/// Account commands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account.
    Add {
        /// Address of record: sip:alice@example.com, alice@example.com, or alice (takes server.domain).
        uri: String,
        /// Name shown to other users.
        #[arg(long, default_value = "")]
        display_name: String,
        /// Create it disabled (it cannot sign in until enabled).
        #[arg(long)]
        disabled: bool,
        /// Read the password from the first line of standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one account as JSON.
    Show {
        /// Address of record.
        uri: String,
    },
    /// Change an account's display name or enabled flag.
    Set {
        /// Address of record.
        uri: String,
        /// New display name.
        #[arg(long)]
        display_name: Option<String>,
        /// Enable (true) or disable (false) the account.
        #[arg(long)]
        enabled: Option<bool>,
    },
    /// Set a new password.
    Passwd {
        /// Address of record.
        uri: String,
        /// Read the password from the first line of standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete an account with its registrations, contact list, ACL, watchers and conferences.
    Remove {
        /// Address of record.
        uri: String,
    },
}

/// Runs one account command.
pub fn run(config: &Config, command: UserCommand) -> Result<()> {
    let store = open_store(config)?;
    let store = store.as_ref();
    let domain = &config.server.domain;
    let aor = |uri: &str| Aor::parse(uri, Some(domain)).map_err(|e| anyhow!("{e}"));
    let now = unix_now();
    match command {
        UserCommand::Add { uri, display_name, disabled, password_stdin } => {
            let aor = aor(&uri)?;
            if store.account(&aor)?.is_some() {
                bail!("account {aor} already exists");
            }
            let password = read_password(password_stdin, true)?;
            let secrets = Secrets::derive(aor.user(), domain, &password);
            let account = store.add_account(&NewAccount { aor, display_name, enabled: !disabled, secrets }, now)?;
            println!("added {} ({})", account.uri, if account.enabled { "enabled" } else { "disabled" });
        }
        UserCommand::List { json } => {
            let accounts = store.list_accounts()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&accounts)?);
            } else {
                print_table(&accounts);
            }
        }
        UserCommand::Show { uri } => {
            let aor = aor(&uri)?;
            let account = store.account(&aor)?.ok_or_else(|| anyhow!("account {aor} not found"))?;
            println!("{}", serde_json::to_string_pretty(&account)?);
        }
        UserCommand::Set { uri, display_name, enabled } => {
            if display_name.is_none() && enabled.is_none() {
                bail!("nothing to change: give --display-name and/or --enabled");
            }
            let aor = aor(&uri)?;
            let account = store.update_account(&aor, &AccountUpdate { display_name, enabled, secrets: None }, now)?;
            println!("updated {} ({})", account.uri, if account.enabled { "enabled" } else { "disabled" });
        }
        UserCommand::Passwd { uri, password_stdin } => {
            let aor = aor(&uri)?;
            if store.account(&aor)?.is_none() {
                bail!("account {aor} not found");
            }
            let password = read_password(password_stdin, true)?;
            let secrets = Secrets::derive(aor.user(), domain, &password);
            store.update_account(&aor, &AccountUpdate { secrets: Some(secrets), ..Default::default() }, now)?;
            println!("password of {aor} changed");
        }
        UserCommand::Remove { uri } => {
            let aor = aor(&uri)?;
            store.remove_account(&aor)?;
            println!("removed {aor}");
        }
    }
    store.flush()?;
    Ok(())
}

fn print_table(accounts: &[Account]) {
    if accounts.is_empty() {
        println!("no accounts");
        return;
    }
    let width = accounts.iter().map(|a| a.uri.len()).max().unwrap_or(0).max(3);
    println!("{:width$}  {:8}  DISPLAY NAME", "URI", "STATE");
    for a in accounts {
        let state = if a.enabled { "enabled" } else { "disabled" };
        println!("{:width$}  {state:8}  {}", a.uri, a.display_name);
    }
}

fn read_password(from_stdin: bool, confirm: bool) -> Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        if confirm && rpassword::prompt_password("Password again: ")? != first {
            bail!("the passwords differ");
        }
        first
    } else {
        bail!("no password: run in a terminal or pass --password-stdin");
    };
    if password.is_empty() {
        bail!("empty password");
    }
    if password.len() > MAX_PASSWORD {
        bail!("password longer than {MAX_PASSWORD} bytes");
    }
    Ok(password)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
