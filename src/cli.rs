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
    after.push_str(&format!("\n{}\n", crate::error::RUN_EXIT));
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
    /// Database: a SQLite file path or a postgres:// URL
    #[arg(long, global = true, env = crate::config::DB.env_name(), value_name = "PATH|URL")]
    pub db: Option<PathBuf>,
    /// TOML config file; the environment and flags override its values. Default: the user's
    /// ~/.config/opsgate/opsgate.toml if it exists, else /etc/opsgate/opsgate.toml
    #[arg(long, global = true, env = crate::config::CONFIG_FILE.env_name(), value_name = "PATH")]
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
    ///
    /// Exits 0 when an approved command fails: its failure and exit code are recorded
    /// (`opsgate show`, `exit_code` in --json); non-zero only when opsgate itself failed
    Run(RunArgs),
    /// Approve a pending proposal (pending variants doing the same action are cancelled)
    ///
    /// The card's pending variants that do the same action (share a logical key with it,
    /// e.g. `docker stop X` and `docker compose stop X`) are cancelled as superseded;
    /// variants with other verbs (`docker start X` after a stop) are steps and stay to
    /// decide. Reject rejects every variant the card shows
    Approve(DecideArgs),
    /// Reject a pending proposal
    Reject(RejectArgs),
    /// Cancel an approved-but-not-started, interrupted or pending proposal
    #[command(mut_arg("confirm", |a| a.help(CONFIRM_IGNORED)))]
    Cancel(DecideArgs),
    /// Put an interrupted proposal back to approved for the next run (its outcome is
    /// unknown: pass --confirm)
    #[command(mut_arg("confirm", |a| a.help(CONFIRM_RETRY)))]
    Retry(DecideArgs),
    /// Record spooled run outcomes, interrupt dead runs, expire old proposals, delete old
    /// history (bounded batches)
    Sweep(SweepArgs),
    /// A proposal's transitions and sightings as one timeline
    #[command(mut_arg("json", |a| a.help("Print the timeline as a JSON array of events")))]
    History(ShowArgs),
    /// Print the contract to paste into the ops bot's prompt (AUTHORITY.md)
    Authority,
    /// Check the database, the configuration and the Telegram connection; say what to fix
    Doctor(DoctorArgs),
    /// Telegram setup helpers (`telegram ids`: the chat id and operators' user ids)
    #[command(subcommand)]
    Telegram(TelegramCommand),
    /// Copy a host's history (audit included) into another database, all or nothing
    Migrate(MigrateArgs),
    /// A fleet on one PostgreSQL database: `fleet add-host NAME` gives a host its own
    /// role, confined to its sources
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Counts for monitoring: proposals by state, cards owed, the oldest pending, last ingests
    Stats(StatsArgs),
    /// The queue as the model should see it, for its next prompt: in-flight proposals and
    /// recent decisions and outcomes, masked, fenced as data, within a byte budget
    Context(ContextArgs),
    /// Each source's picture, as its status message shows it: the last cycle, the model's
    /// summary (masked) and the open cards with their states
    Status(StatusArgs),
    /// Print a shell completion script
    Completions {
        /// The shell to print the script for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per subcommand with --dir
    Man(ManArgs),
}

/// `--confirm` on `cancel`: it never asks for a confirmation; the flag is accepted so
/// scripts passing it keep working.
const CONFIRM_IGNORED: &str =
    "Accepted and ignored: only approving a stale proposal or retrying asks for confirmation";

/// `--confirm` on `retry`: an interrupted run's outcome is unknown.
const CONFIRM_RETRY: &str =
    "Retry although the interrupted run's outcome is unknown: the command may have completed and may run a second time";

#[derive(Debug, Subcommand)]
pub enum TelegramCommand {
    /// Print the chats the bot has seen and who wrote there: add the bot to the chat, send
    /// any message, run this
    ///
    /// Reads the updates waiting at Telegram (getUpdates) without confirming any: a later
    /// `poll` or `serve` still gets every button press. Needs only the token. Telegram
    /// allows one getUpdates at a time and keeps updates only until a poller fetches them:
    /// run it while `opsgate serve` is stopped (or between cron `poll`s); beside a running
    /// poller, or with a webhook set on the bot, Telegram answers 409 and nothing is read.
    /// In a group with the bot's privacy mode on, the bot sees only commands and
    /// mentions: send `/start@yourbot`
    Ids(TelegramIdsArgs),
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Print the SQL that creates host NAME's own login role, confined by row-level
    /// security to its sources: `opsgate fleet add-host web-1 | psql`, as a
    /// superuser
    ///
    /// The role sees and changes only the rows of its sources, inserts only under them,
    /// and never decides: it cannot approve, write approval rows or change the audit.
    /// Deciding (serve, poll, notify, operators' approve/reject) is for a role that is not
    /// a host. The SQL is on standard output; the `db` line to put on that host (with the
    /// new role's password) on standard error. Running it again (after an upgrade) grants
    /// the rights again and keeps the password
    AddHost(AddHostArgs),
}

#[derive(Debug, Args)]
pub struct AddHostArgs {
    /// The host's role name (letters, digits, `_`, `-`, `.`), e.g. its hostname
    pub name: String,
    /// A source the host may write and run (repeatable); default: NAME
    #[arg(long = "source", value_name = "SOURCE")]
    pub sources: Vec<String>,
    /// Execute the SQL with the configured database connection (as its owner) instead of
    /// printing it
    #[arg(long)]
    pub apply: bool,
}

#[derive(Debug, Args)]
pub struct TelegramIdsArgs {
    /// Print JSON: {"chats": [{"id", "type", "title"}], "users": [{"id", "username", "name", "chats"}]}
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the checklist as JSON: {"ok", "exit_code", "checks": [{"status", "what", "fix"}]}
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print the Prometheus text format (for node_exporter's textfile collector)
    #[arg(long, conflicts_with = "json")]
    pub prometheus: bool,
    /// Print a JSON object
    #[arg(long)]
    pub json: bool,
    /// Only these sources (repeatable, or a comma list); default: `[runner] sources`, the
    /// host's own (required with PostgreSQL, so a fleet's hosts each count their own once)
    #[arg(
        long = "source",
        value_name = "NAME",
        value_delimiter = ',',
        conflicts_with = "all_sources"
    )]
    pub sources: Vec<String>,
    /// Every source in the database (the fleet view of a shared PostgreSQL store)
    #[arg(long)]
    pub all_sources: bool,
}

#[derive(Debug, Args)]
pub struct ContextArgs {
    /// Only this source (the host the model runs for); default: every source
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    /// How far back decisions and outcomes go (e.g. 6h, 2d)
    #[arg(long, default_value = "24h", value_name = "DURATION")]
    pub since: String,
    /// At most this many bytes; the oldest entries are left out first, and counted
    #[arg(long, default_value_t = 8000, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(256..=16 << 20))]
    pub budget: u64,
    /// Print the same content as a JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this source; default: every source that has had a cycle
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    /// Print the same content as a JSON array, one object per source
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write opsgate.1 and opsgate-SUBCOMMAND.1 for every subcommand into this directory
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The values `--state` takes (also offered by the shell completions).
pub const STATE_VALUES: &[&str] = &[
    "pending",
    "approved",
    "executing",
    "interrupted",
    "completed",
    "failed",
    "rejected",
    "cancelled",
    "expired",
    "in-flight",
];

/// `--state`: one of [`STATE_VALUES`] or a comma-separated list of them (`in_flight` is
/// accepted for `in-flight`). The value is kept as typed; `list` splits it.
#[derive(Debug, Clone, Copy)]
pub struct StateParser;

impl clap::builder::TypedValueParser for StateParser {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        let invalid = |shown: String| {
            let mut err = clap::Error::new(clap::error::ErrorKind::InvalidValue).with_cmd(cmd);
            if let Some(arg) = arg {
                err.insert(
                    clap::error::ContextKind::InvalidArg,
                    clap::error::ContextValue::String(arg.to_string()),
                );
            }
            err.insert(
                clap::error::ContextKind::InvalidValue,
                clap::error::ContextValue::String(shown),
            );
            err.insert(
                clap::error::ContextKind::ValidValue,
                clap::error::ContextValue::Strings(
                    STATE_VALUES.iter().map(|v| v.to_string()).collect(),
                ),
            );
            err
        };
        let text = value
            .to_str()
            .ok_or_else(|| invalid(value.to_string_lossy().into_owned()))?;
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part != "in_flight" && !STATE_VALUES.contains(&part) {
                return Err(invalid(part.to_string()));
            }
        }
        Ok(text.to_string())
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            STATE_VALUES
                .iter()
                .map(|v| clap::builder::PossibleValue::new(*v)),
        ))
    }
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
    /// A label shown after your account's name; the vote is the account's (sudo's caller under sudo)
    #[arg(long = "as", value_name = "NAME")]
    pub actor: Option<String>,
    /// Approve even though the proposal is stale
    #[arg(long)]
    pub confirm: bool,
    /// Print the outcome as JSON: {"id", "outcome", "state", "message", "exit_code"}
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RejectArgs {
    /// Proposal id or cmd_hash
    #[arg(value_name = "ID|CMD_HASH")]
    pub reference: String,
    /// Why (required when the policy sets require_reason)
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// A label shown after your account's name; the vote is the account's (sudo's caller under sudo)
    #[arg(long = "as", value_name = "NAME")]
    pub actor: Option<String>,
    /// Print the outcome as JSON: {"id", "outcome", "state", "message", "exit_code"}
    #[arg(long)]
    pub json: bool,
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
    /// Only proposals of this source (repeatable). Default on PostgreSQL: `[runner]
    /// sources` (a host sweeps its own); none configured: every source
    #[arg(long = "source", value_name = "NAME", conflicts_with = "all")]
    pub sources: Vec<String>,
    /// Every source, whatever `[runner] sources` says (the decider's or an operator's sweep)
    #[arg(long)]
    pub all: bool,
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
    /// Only these states (repeatable, or comma-separated); the table shows the in-flight
    /// ones by default
    #[arg(long = "state", value_name = "STATE", value_parser = StateParser)]
    pub states: Vec<String>,
    /// Every state, history included (the default of --json)
    #[arg(long, conflicts_with = "states")]
    pub all: bool,
    /// Only this source
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    /// At most N proposals, newest first
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Print a JSON array (every state unless --state is given, as scripts expect)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Proposal id or cmd_hash
    #[arg(value_name = "ID|CMD_HASH")]
    pub reference: String,
    /// Print the proposal, its sightings and transitions as one JSON object
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
    /// Only this source's cards (printed, or delivered to the channels)
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    /// Print what was delivered as JSON: {"sent", "edited", "unchanged", "still_owed", ...}
    #[arg(long)]
    pub json: bool,
    /// Start sends for at most SECS seconds (0.1 to 3600, fractions allowed) and leave
    /// the rest owed for the next run, as a poll round does: a cron line that never
    /// overlaps the next minute
    #[arg(long, value_name = "SECS", conflicts_with = "console", value_parser = parse_within)]
    pub within: Option<std::time::Duration>,
}

/// `--within SECS`: a number of seconds from 0.1 to 3600, fractions allowed.
fn parse_within(s: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("expected a number of seconds (0.1 to 3600), got {s:?}"))?;
    if !(0.1..=3600.0).contains(&secs) {
        return Err(format!("expected 0.1 to 3600 seconds, got {s}"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

#[derive(Debug, Args)]
pub struct PollArgs {
    /// Print the outcome as JSON
    #[arg(long)]
    pub json: bool,
    /// Seconds a channel that gets presses only while connected (Slack) listens before
    /// poll disconnects (0 to 300); Telegram keeps presses and is only drained
    #[arg(long, default_value_t = 20, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(0..=300))]
    pub listen: u64,
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
