//! `vienna`: TURN/MS-TURN relay, SIP registrar and presence, and conference bridge in one binary.

mod admin;
mod conferences;
mod config;
mod data;
mod lists;
mod logging;
mod mcu;
mod mras;
mod net;
mod roles;
mod serve;
mod sip;
mod tls;
mod turn;
mod users;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;

// The SIP path allocates per message (the vienna-sip types own their strings); mimalloc's thread-local
// free lists make that cheaper than glibc's arenas (measured with bench/sip-vs-kamailio.py, see
// BENCHMARKS.md). vienna-load uses it for the same reason.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Vienna: media relay, SIP server and conference bridge.
#[derive(Debug, Parser)]
#[command(name = "vienna", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
struct GlobalArgs {
    /// Configuration file (TOML). `vienna config default` prints one with every option.
    #[arg(long, short = 'c', global = true, env = "VIENNA_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (overrides server.data_dir).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Override one option, e.g. --set admin.listen=127.0.0.1:0 (repeatable).
    #[arg(long = "set", global = true, value_name = "SECTION.KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server until SIGINT or SIGTERM.
    Serve,
    /// Print configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage user accounts.
    User {
        #[command(subcommand)]
        command: users::UserCommand,
    },
    /// Manage a user's contact list.
    Contact {
        #[command(subcommand)]
        command: lists::ContactCommand,
    },
    /// Decide who may watch a user's presence.
    Watcher {
        #[command(subcommand)]
        command: lists::WatcherCommand,
    },
    /// Set a user's presence state by hand (durable).
    Presence {
        #[command(subcommand)]
        command: lists::PresenceCommand,
    },
    /// Create, list and remove conferences (the dial-in URI standard SIP clients call).
    Conference {
        #[command(subcommand)]
        command: conferences::ConferenceCommand,
    },
    /// Print relay credentials: MRAS (the XML response an A/V Edge credential request gets), or
    /// TURN REST with --rest.
    RelayCredentials(mras::CredentialsArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print a complete, commented configuration file with every option at its default.
    Default,
    /// Print the configuration in effect (file, --set and --data-dir applied).
    Show,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever the causes hold.
            let message = format!("{e:#}").split_whitespace().collect::<Vec<_>>().join(" ");
            eprintln!("vienna: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Config { command: ConfigCommand::Default } = cli.command {
        print!("{}", config::DEFAULT_TOML);
        return Ok(());
    }
    let g = &cli.global;
    let config = Config::load(g.config.as_deref(), &g.set, g.data_dir.as_deref())?;
    match cli.command {
        Command::Serve => {
            logging::init(&config.log);
            serve::run(config)
        }
        Command::Config { command: ConfigCommand::Show } => {
            print!("{}", toml::to_string_pretty(&config)?);
            Ok(())
        }
        Command::Config { command: ConfigCommand::Default } => unreachable!("handled above"),
        Command::User { command } => users::run(&config, command),
        Command::Contact { command } => lists::run_contact(&config, command),
        Command::Watcher { command } => lists::run_watcher(&config, command),
        Command::Presence { command } => lists::run_presence(&config, command),
        Command::Conference { command } => conferences::run(&config, command),
        Command::RelayCredentials(args) => mras::run(&config, args),
    }
}
