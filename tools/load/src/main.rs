//! `vienna-load`: load generator for relays, SIP servers and conference bridges. Each kind of load is a
//! subcommand; `turn` loads a TURN relay (see [`turn`]).

mod echo;
mod pacing;
mod payload;
mod presence;
mod stats;
mod sys;
mod turn;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Load generator for Vienna and other real-time communication servers.
#[derive(Debug, Parser)]
#[command(name = "vienna-load", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load a TURN relay over UDP: allocations, channels to an echo peer, ChannelData at a fixed rate;
    /// measures loss, reordering and round-trip latency (or, with --hold, just holds the allocations).
    Turn(turn::TurnArgs),
    /// Load a SIMPLE presence server over UDP: P publishers with W watchers each; measures NOTIFY rate,
    /// PUBLISH-to-NOTIFY latency and (with --pid) the server's memory per subscription.
    Presence(presence::PresenceArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Turn(args) => turn::run(args),
        Command::Presence(args) => presence::run(args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("vienna-load: {e:#}");
        ExitCode::from(2)
    })
}
