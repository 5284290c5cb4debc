//! `vienna-load`: load generator for relays, SIP servers and conference bridges. Each kind of load is a
//! subcommand (a mode) built on the common run framework ([`framework`]): `turn` loads a TURN relay
//! ([`turn`]), `msturn` an MS-TURN relay ([`msturn`], on `turn`'s machinery), `sip` a registrar and proxy
//! ([`sip`]), `presence` a presence server ([`presence`]), `conference` an audio conference bridge
//! ([`conference`]), and `sweep` raises the load of the rate modes step by step until a threshold is
//! crossed ([`sweep`]).
//!
//! A mode is a function from its arguments to a [`framework::Finished`] (exit code, the few numbers a
//! sweep compares, the JSON report). Only modes that work are in the [`Mode`] enum, so `--help` lists
//! exactly those.

mod conference;
mod echo;
mod framework;
mod msturn;
mod pacing;
mod payload;
mod presence;
mod sip;
mod stats;
mod sweep;
mod sys;
mod turn;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// The SIP modes allocate a little per message (the vienna-sip types own their strings); mimalloc's
// thread-local free lists make that cheaper than glibc's arenas for the load threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Load generator for Vienna and other real-time communication servers.
#[derive(Debug, Parser)]
#[command(name = "vienna-load", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Mode(Mode),
    /// Raise the rate of a mode step by step until loss, failures or a latency percentile cross a
    /// threshold; report the knee (the last good step).
    Sweep(sweep::SweepArgs),
}

/// The load modes (also the subcommands of `sweep`).
#[derive(Debug, Clone, Subcommand)]
pub enum Mode {
    /// Load a TURN relay over UDP: allocations, channels to an echo peer, ChannelData at a fixed rate;
    /// measures loss, reordering and round-trip latency (or, with --hold, just holds the allocations).
    Turn(turn::TurnArgs),
    /// Load an MS-TURN relay over UDP (MRAS, TURN REST or account credentials): allocations, then Send
    /// requests or Set Active Destination and raw data to an echo peer at a fixed rate; measures loss,
    /// reordering, jitter and round-trip latency (or, with --hold, just holds the allocations).
    Msturn(msturn::MsTurnArgs),
    /// Load a SIP registrar and proxy over UDP or TCP: REGISTER with Digest, MESSAGE between users, or
    /// INVITE/200/ACK/BYE calls; measures transactions/s and response latency.
    Sip(sip::SipArgs),
    /// Load a presence server: watchers SUBSCRIBE to presentities, which PUBLISH PIDF changes at a
    /// rate or in rounds; measures publish-to-NOTIFY latency, NOTIFY rate and (with --pid) the server's
    /// memory per subscription.
    Presence(presence::PresenceArgs),
    /// Load an audio conference bridge (MCU): participants join (Vienna's admin API), each sends Opus or
    /// PCMU with its own tone at 50 packets/s and checks the mix it hears (the other talkers' tones, not
    /// its own); measures mouth-to-ear latency through the bridge, loss and jitter.
    Conference(conference::ConferenceArgs),
}

impl Mode {
    /// Runs the mode once.
    pub fn run(self) -> anyhow::Result<framework::Finished> {
        match self {
            Mode::Turn(a) => turn::run(a),
            Mode::Msturn(a) => msturn::run(a),
            Mode::Sip(a) => sip::run(a),
            Mode::Presence(a) => presence::run(a),
            Mode::Conference(a) => conference::run(a),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Mode(m) => m.run().map(|f| f.exit),
        Command::Sweep(args) => sweep::run(args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("vienna-load: {e:#}");
        ExitCode::from(2)
    })
}
