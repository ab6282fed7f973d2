//! The subcommands, one file each (or one per small group): each turns its arguments into
//! calls on the pipeline and owns its output (text and `--json`). No SQL here and no
//! network of its own; the dispatcher stays a match.

mod context;
mod decide;
mod doctor;
mod hash;
mod info;
mod ingest;
mod list;
mod migrate;
mod notify;
mod poll;
mod run;
mod stats;
mod sweep;

use crate::canon;
use crate::cli::{Cli, Command};
use crate::config::{Config, DbLocation};
use crate::error::{self, Error, Kind};
use crate::model::{Actor, Proposal};
use crate::store::{Lookup, Store};
use anyhow::{Context, Result};
use std::io::Write;

/// What each adapter knows about its own errors, for the exit code.
pub const CLASSIFIERS: &[error::Classifier] = &[
    crate::store::classify,
    crate::notify::telegram::classify,
    crate::parse::classify,
    error::classify_io,
];

/// Runs one command; returns the exit code.
pub fn run(cli: Cli) -> Result<u8> {
    // Commands that need no configuration work even when it is broken.
    match &cli.command {
        Command::Completions { shell } => return info::completions(*shell),
        Command::Man(args) => return info::man(args),
        _ => {}
    }
    let verbosity = if cli.quiet { -1 } else { cli.verbose as i8 };
    init_logs(verbosity, matches!(cli.command, Command::Serve(_)));
    let mut config = Config::new(cli.db, cli.config, verbosity)?;
    config.secrets = known_secrets(&config);
    crate::redact::Redactor::new(
        config.redaction.builtin,
        config.redaction.patterns.clone(),
        config
            .secrets
            .iter()
            .map(|s| s.expose().to_string())
            .collect(),
    )
    .with_rules(secret_rules(&config)?)
    .install();
    match cli.command {
        Command::Ingest(args) => ingest::ingest(&config, args),
        Command::Hash(args) => hash::hash(args),
        Command::List(args) => list::list(&config, args),
        Command::Show(args) => list::show(&config, args),
        Command::History(args) => list::history(&config, args),
        Command::Notify(args) => notify::notify(&config, args),
        Command::Poll(args) => poll::poll(&config, args),
        Command::Serve(args) => poll::serve(&config, args),
        Command::Run(args) => run::run(&config, args),
        Command::Approve(args) => decide::approve(&config, args),
        Command::Cancel(args) => decide::cancel(&config, args),
        Command::Retry(args) => decide::retry(&config, args),
        Command::Reject(args) => decide::reject(&config, args),
        Command::Sweep(args) => sweep::sweep(&config, args),
        Command::Authority => info::authority(),
        Command::Doctor(args) => doctor::doctor(&config, args.json),
        Command::Migrate(args) => migrate::migrate(&config, args),
        Command::Stats(args) => stats::stats(&config, args),
        Command::Context(args) => context::context(&config, args),
        Command::Completions { .. } | Command::Man(_) => Ok(error::OK),
    }
}

/// A sweep, logged when it changed anything. This host's spooled outcomes are recorded
/// first, and a runner whose outcome waits in the spool is never judged gone.
fn sweep_now(config: &Config, store: &mut Store) -> Result<crate::model::Swept> {
    let replayed = crate::run::replay(store, config)?;
    let mut swept = store.sweep(
        config.now(),
        &crate::process::runner_alive,
        &|id, runner| crate::run::spooled(config, id, runner),
    )?;
    swept.replayed = replayed;
    if swept.replayed + swept.interrupted + swept.expired + swept.pruned > 0 {
        tracing::info!(
            replayed = swept.replayed,
            interrupted = swept.interrupted,
            expired = swept.expired,
            pruned = swept.pruned,
            "sweep"
        );
    }
    Ok(swept)
}

/// Structured logs on stderr through `tracing` (journald picks them up under systemd):
/// presses and their outcome, decisions, runs, sweeps and Telegram errors. `serve` logs
/// at info by default; other commands log warnings only, so cron stays quiet (`-v`: info,
/// `-vv`: debug, `-q`: errors); `OPSGATE_LOG` overrides both.
fn init_logs(verbosity: i8, serve: bool) {
    let default = match (verbosity, serve) {
        (v, _) if v < 0 => "error",
        (0, false) => "warn",
        (0, true) | (1, _) => "info",
        _ => "debug",
    };
    let directive = crate::config::log_filter().unwrap_or_else(|| format!("opsgate={default}"));
    let filter = tracing_subscriber::EnvFilter::try_new(&directive)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("opsgate={default}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    // journald stamps every line itself.
    let result = if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
    drop(result); // already set (tests calling run twice): keep the first
}

/// The secret values opsgate itself holds: the bot token, the database password, and
/// `[runner] env` / `pass_env` values whose names say they are secret.
fn known_secrets(config: &Config) -> Vec<crate::config::Secret> {
    let mut out = Vec::new();
    if let Some(tg) = &config.telegram {
        out.push(tg.token.clone());
    }
    if let DbLocation::Postgres(url) = &config.db {
        if let Some(p) = crate::config::url_password(url) {
            out.push(crate::config::Secret::new(p));
        }
    }
    // Every runner value is a secret unless marked public: a webhook URL or a password
    // in a variable whose name does not say so is still hidden.
    for (name, value) in &config.runner_env {
        if !config.redaction.public_env.contains(name) {
            out.push(crate::config::Secret::new(value.clone()));
        }
    }
    out
}

/// `[policy] secret_rules`: extra secret formats from a gitleaks-schema file; an unreadable
/// or invalid file is a configuration error (78) naming it.
fn secret_rules(config: &Config) -> Result<Vec<crate::redact::Rule>> {
    let Some(path) = &config.redaction.rules_file else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        crate::error::Error::new(
            crate::error::Kind::Config,
            format!("policy.secret_rules: cannot read {}: {e}", path.display()),
        )
    })?;
    let rules = crate::redact::parse_rules(&text).map_err(|why| {
        crate::error::Error::new(
            crate::error::Kind::Config,
            format!("policy.secret_rules: {}: {why}", path.display()),
        )
    })?;
    Ok(rules)
}

/// Writes to stdout; a closed pipe (`| head`) is the reader's choice, not an error.
fn print_out(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

fn warn(config: &Config, message: &str) {
    if config.verbosity >= 0 {
        eprintln!("opsgate: warning: {message}");
    }
}

/// Opens the store with the configured lifecycle rules; in-flight proposals hashed by an
/// older canonical form are re-hashed once, those keyed by an older identity grammar
/// re-keyed once.
fn open_store(config: &Config) -> Result<Store> {
    open_location(&config.db, config)
}

/// Opens the store at `location` (see [`open_store`]).
fn open_location(location: &DbLocation, config: &Config) -> Result<Store> {
    let mut store = Store::open_at(location, config.rules)?;
    if let Some(log) = &config.sql_log {
        store.trace_to(log)?;
    }
    if store.canon_version()? < canon::CANON_VERSION {
        store.rehash_in_flight(
            canon::CANON_VERSION,
            &|command| {
                let c = canon::canonicalize(command);
                let subjects = c.subjects();
                crate::store::Identity {
                    cmd_hash: c.cmd_hash,
                    canonical: c.canonical,
                    logical_keys: c.logical_keys,
                    subjects,
                }
            },
            config.now(),
        )?;
    }
    if store.grammar_version()? < canon::GRAMMAR_VERSION {
        store.rekey_in_flight(canon::GRAMMAR_VERSION, &|command| {
            let c = canon::canonicalize(command);
            let subjects = c.subjects();
            (c.logical_keys, subjects)
        })?;
    }
    Ok(store)
}

/// Opens the store for reading; a missing database is an empty one, not an error, and is
/// not created. One the user may not look at is an error (77), never "no proposals".
fn open_for_reading(config: &Config) -> Result<Option<Store>> {
    if let DbLocation::File(path) = &config.db {
        if !db_file_exists(path)? {
            return Ok(None);
        }
    }
    open_store(config).map(Some)
}

/// Whether the database file exists; a path this user cannot look into is an error that
/// says so (exit 77), not a missing database.
pub fn db_file_exists(path: &std::path::Path) -> Result<bool> {
    path.try_exists().map_err(|e| {
        let (kind, what) = if e.kind() == std::io::ErrorKind::PermissionDenied {
            (
                Kind::Permission,
                "permission denied (run opsgate as the user that owns it, or fix the directory's permissions)".to_string(),
            )
        } else {
            (Kind::Io, e.to_string())
        };
        error::fail(kind, format!("cannot look at database {}: {what}", path.display()))
    })
}

fn no_proposal(reference: &str) -> anyhow::Error {
    Error::new(
        Kind::NotFound,
        format!(
            "no proposal {reference:?}; expected a proposal id or a 12-digit cmd_hash (see `opsgate list`)"
        ),
    )
    .into()
}

/// The proposal a command-line reference (an id or a cmd_hash) names.
fn find_proposal(store: &mut Store, reference: &str) -> Result<Proposal> {
    match store.find(reference)? {
        Lookup::One(p) => Ok(*p),
        Lookup::None => Err(no_proposal(reference)),
        Lookup::Ambiguous(found) => {
            let ids: Vec<String> = found.iter().map(|(id, s)| format!("{id} ({s})")).collect();
            Err(Error::new(
                Kind::BadInput,
                format!(
                    "cmd_hash {reference} is in flight for several sources; name one by id: {}",
                    ids.join(", ")
                ),
            )
            .into())
        }
    }
}

/// The local operator: `--as NAME`, else $USER / $LOGNAME.
fn local_actor(name: Option<&str>) -> Actor {
    let name = name
        .map(str::to_string)
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "local".into());
    let name = crate::text::show_field(name.trim(), 64);
    // The real account behind the shell (sudo's caller when there is one) is the voter:
    // one account approving twice under two --as names counts once.
    let account = match std::env::var("SUDO_UID").ok().filter(|u| !u.is_empty()) {
        Some(uid) if nix::unistd::getuid().is_root() => uid,
        _ => nix::unistd::getuid().to_string(),
    };
    Actor {
        id: format!("local:{name}"),
        display: name,
        voter: format!("local-uid:{account}"),
    }
}
