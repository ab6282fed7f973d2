//! Command-line definition (clap). Validation into a `Config` happens in `config`.

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;

/// The command-line definition with the help's closing sections: every environment
/// variable (from the settings table) and every exit code (from the error table).
pub fn command() -> clap::Command {
    let mut after = crate::config::env_help();
    after.push_str("\nExit codes:\n  0   ok\n");
    for (_, code, meaning) in crate::error::TABLE {
        after.push_str(&format!("  {code:<3} {meaning}\n"));
    }
    Cli::command().after_help(after)
}

/// Parses the process arguments.
pub fn parse() -> Result<Cli, clap::Error> {
    let matches = command().try_get_matches()?;
    Cli::from_arg_matches(&matches)
}

/// `0.1.0 (rev 1a2b3c4d5e6f)`: the crate version and the git revision it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (rev ",
    env!("OPSGATE_GIT_REV"),
    ")"
);

/// Turns LLM ops-bot output into one deduplicated, operator-approved action per command.
#[derive(Debug, Parser)]
#[command(name = "opsgate", version = VERSION, max_term_width = 100)]
pub struct Cli {
    /// SQLite database file
    #[arg(long, global = true, env = "OPSGATE_DB", value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// TOML config file; its values override the environment
    #[arg(long, global = true, env = "OPSGATE_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// More output (repeatable)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read LLM output on stdin and record its proposals
    Ingest(IngestArgs),
    /// Print the cmd_hash, canonical form and logical keys of commands
    Hash(HashArgs),
    /// List proposals
    List(ListArgs),
    /// Show one proposal with its sightings and transitions
    Show(ShowArgs),
    /// Deliver the owed cards to Telegram (or print every card when Telegram is not configured)
    Notify(NotifyArgs),
    /// One round of button presses from Telegram, then the card edits (cron-friendly)
    Poll(PollArgs),
    /// Long-running: long-poll button presses and deliver cards until SIGTERM or Ctrl-C
    Serve(ServeArgs),
    /// Run approved proposals: exactly the text the operator approved, with /bin/sh -c
    Run(RunArgs),
    /// Approve a pending proposal (the other pending variants of its card are cancelled)
    Approve(DecideArgs),
    /// Reject a pending proposal
    Reject(RejectArgs),
    /// Cancel an approved-but-not-started, interrupted or pending proposal
    Cancel(DecideArgs),
    /// Put an interrupted proposal back to approved for the next run
    Retry(DecideArgs),
    /// Interrupt dead runs, expire old proposals, delete old history (bounded batches)
    Sweep(SweepArgs),
    /// A proposal's transitions and sightings as one timeline
    History(ShowArgs),
    /// Print the contract to paste into the ops bot's prompt (AUTHORITY.md)
    Authority,
    /// Check the database, the configuration and the Telegram connection; say what to fix
    Doctor,
    /// Copy a host's history (audit included) into another database, all or nothing
    Migrate(MigrateArgs),
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) generated from these definitions
    Man,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Only proposals of this source (repeatable); a command runs on the host that
    /// proposed it. Default: `[runner] sources`; required with a PostgreSQL store
    #[arg(long = "source", value_name = "NAME")]
    pub sources: Vec<String>,
    /// Run at most this many proposals
    #[arg(long, default_value_t = 10, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max: u64,
    /// Kill a command (its whole process group) after this long; default from the config (10m)
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Show what would run, claim nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print the results as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DecideArgs {
    /// Proposal id or cmd_hash
    #[arg(value_name = "ID|CMD_HASH")]
    pub reference: String,
    /// Name recorded as the actor (default: $USER)
    #[arg(long = "as", value_name = "NAME")]
    pub actor: Option<String>,
    /// Approve even though the proposal is stale
    #[arg(long)]
    pub confirm: bool,
}

#[derive(Debug, Args)]
pub struct RejectArgs {
    /// Proposal id or cmd_hash
    #[arg(value_name = "ID|CMD_HASH")]
    pub reference: String,
    /// Why (required when the policy sets require_reason)
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Name recorded as the actor (default: $USER)
    #[arg(long = "as", value_name = "NAME")]
    pub actor: Option<String>,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The database to copy from: sqlite:PATH (or a file path)
    #[arg(long, value_name = "DB")]
    pub from: std::ffi::OsString,
    /// The database to copy into, e.g. postgres://...; default: the configured database
    #[arg(long, value_name = "DB")]
    pub to: Option<std::ffi::OsString>,
    /// Print the counts as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Print the counts as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Name of the host or bot the proposals come from; dedup and clusters are per source
    #[arg(long, default_value = "default", value_name = "NAME")]
    pub source: String,
    /// Refuse the whole input when any item is invalid
    #[arg(long)]
    pub strict: bool,
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
    /// Refuse inputs larger than this many bytes
    #[arg(long, default_value_t = 8 * 1024 * 1024, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(1..=1 << 40))]
    pub max_input_bytes: u64,
    /// Refuse inputs with more proposals than this
    #[arg(long, default_value_t = 1000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub max_proposals: u64,
    /// Deliver the cards right after ingesting (same as running `opsgate notify`)
    #[arg(long)]
    pub notify: bool,
}

#[derive(Debug, Args)]
pub struct HashArgs {
    /// The command to hash (quote it as one argument)
    #[arg(required_unless_present = "stdin", conflicts_with = "stdin")]
    pub command: Option<String>,
    /// Read commands from stdin, one per line
    #[arg(long)]
    pub stdin: bool,
    /// One JSON object per command
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only these states (repeatable): pending approved executing interrupted completed
    /// failed rejected cancelled expired, or `in-flight`
    #[arg(long = "state", value_name = "STATE")]
    pub states: Vec<String>,
    /// Only this source
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    /// Print a JSON array
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Proposal id or cmd_hash
    #[arg(value_name = "ID|CMD_HASH")]
    pub reference: String,
    #[arg(long)]
    pub json: bool,
    /// Print secret values in full instead of •••• (here, on this host; never on a card)
    #[arg(long)]
    pub reveal: bool,
}

#[derive(Debug, Args)]
pub struct NotifyArgs {
    /// Print every in-flight card to stdout even when Telegram is configured
    #[arg(long)]
    pub console: bool,
    /// With the console: only this source's cards
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
}

#[derive(Debug, Args)]
pub struct PollArgs {
    /// Print the outcome as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Seconds one long poll waits for presses (0 to 300)
    #[arg(long, default_value_t = 20, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(0..=300))]
    pub poll_timeout: u64,
    /// Also run approved proposals (one `opsgate run` child at a time)
    #[arg(long)]
    pub execute: bool,
    /// With --execute: only proposals of this source (repeatable), as `run --source`
    #[arg(long = "source", value_name = "NAME", requires = "execute")]
    pub sources: Vec<String>,
    /// Seconds between sweeps (1 to 86400)
    #[arg(long, default_value_t = 60, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub sweep_every: u64,
}
