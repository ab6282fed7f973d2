//! The subcommands, one file each (or one per small group): each turns its arguments into
//! calls on the pipeline and owns its output (text and `--json`). No SQL here and no
//! network of its own; the dispatcher stays a match.

mod context;
mod decide;
mod doctor;
mod fleet;
mod hash;
mod info;
mod ingest;
mod list;
mod migrate;
mod notify;
mod poll;
mod run;
mod stats;
mod status;
mod sweep;
mod telegram;

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
    crate::notify::classify,
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
        Command::Telegram(crate::cli::TelegramCommand::Ids(args)) => telegram::ids(&config, &args),
        Command::Migrate(args) => migrate::migrate(&config, args),
        Command::Fleet(crate::cli::FleetCommand::AddHost(args)) => fleet::add_host(&config, args),
        Command::Stats(args) => stats::stats(&config, args),
        Command::Context(args) => context::context(&config, args),
        Command::Status(args) => status::status(&config, args),
        Command::Completions { .. } | Command::Man(_) => Ok(error::OK),
    }
}

/// A sweep, logged when it changed anything. This host's spooled outcomes are recorded
/// first, and a runner whose outcome waits in the spool is never judged gone. `sources`
/// scopes it (a host sweeps its own); empty: every source (the decider's sweep).
fn sweep_now(
    config: &Config,
    store: &mut Store,
    sources: &[String],
) -> Result<crate::model::Swept> {
    let replayed = crate::run::replay(store, config)?;
    let mut swept = store.sweep(
        config.now(),
        sources,
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

/// The secret values opsgate itself holds: the bot tokens, the database password, and
/// `[runner] env` / `pass_env` values whose names say they are secret.
fn known_secrets(config: &Config) -> Vec<crate::config::Secret> {
    let mut out = Vec::new();
    if let Some(bot) = &config.bot {
        out.push(bot.token.clone());
    }
    if let Some(slack) = &config.slack {
        out.push(slack.bot_token.clone());
        out.extend(slack.app_token.clone());
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

/// How far this host's clock may be from a shared database's before `doctor` and the
/// logs say so (the database's clock decides; a host this far off is misconfigured).
pub const CLOCK_SKEW_BOUND_MS: i64 = 30_000;

/// On a shared database, makes its clock this process's ([`Config::use_db_clock`]) and
/// warns in the logs when this host's clock is more than [`CLOCK_SKEW_BOUND_MS`] off.
/// Returns the difference (host minus database), `None` on SQLite (one clock).
fn sync_clock(config: &Config, store: &mut Store) -> Result<Option<i64>> {
    let Some(server) = store.server_time()? else {
        return Ok(None);
    };
    let skew = config.use_db_clock(server);
    if skew.abs() > CLOCK_SKEW_BOUND_MS {
        tracing::warn!(
            host_minus_database = %crate::time::human_duration(skew.abs()),
            ahead = skew > 0,
            "this host's clock is {} {} the database's; opsgate uses the database's clock, fix this host's (NTP)",
            crate::time::human_duration(skew.abs()),
            if skew > 0 { "ahead of" } else { "behind" },
        );
    }
    Ok(Some(skew))
}

/// Opens the store at `location` (see [`open_store`]).
fn open_location(location: &DbLocation, config: &Config) -> Result<Store> {
    let mut store = Store::open_at(location, config.rules)?;
    sync_clock(config, &mut store)?;
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

/// Opens the store of a command that reads or decides (`list`, `show`, `history`, `stats`,
/// `context`, `notify --console`, `approve`...): a missing SQLite file is never created but
/// refused (66), naming the path and the setting that chose it, so a shell pointed at the
/// wrong database never shows an empty queue. One the user may not look at is an error
/// (77), never "no proposals".
fn open_existing(config: &Config) -> Result<Store> {
    if let DbLocation::File(path) = &config.db {
        if !db_file_exists(path)? {
            return Err(no_database(config, path));
        }
    }
    open_store(config)
}

/// Opens the store for `context` and `notify --console`: a missing database is an empty
/// one, not an error, and is not created. `context` is the first step of every cycle
/// (`opsgate-cycle`), before the first `ingest` creates the database at the same path.
/// One the user may not look at is an error (77), never "no proposals".
fn open_for_reading(config: &Config) -> Result<Option<Store>> {
    if let DbLocation::File(path) = &config.db {
        if !db_file_exists(path)? {
            return Ok(None);
        }
    }
    open_store(config).map(Some)
}

/// The error of a missing database file (exit 66).
fn no_database(config: &Config, path: &std::path::Path) -> anyhow::Error {
    let config_file = match &config.config_path {
        Some(p) => format!("config file {}", p.display()),
        None => "no config file".to_string(),
    };
    error::fail(
        Kind::NotFound,
        format!(
            "no database at {} (from {}; {config_file}): nothing was created; point --db, OPSGATE_DB or the config file's db at the service's database (see `opsgate doctor`), or record proposals with `opsgate ingest` first",
            path.display(),
            config.db_from
        ),
    )
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

/// The local operator: the person the kernel vouches for ([`verified_person`]), named
/// from the user database, with the account the command runs as when that is someone
/// else (`sudo -u opsgate opsgate approve 4` by alice: `local:alice (as opsgate)`). The
/// vote is the person's. `--as` is only a label shown after that: it never makes another
/// voter and never names someone else.
fn local_actor(label: Option<&str>) -> Actor {
    let account = nix::unistd::getuid().as_raw();
    let person = verified_person(account);
    let name = |uid: u32| {
        let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("uid{uid}"));
        crate::text::show_field(&name, 64)
    };
    let account = (person != account).then(|| name(account));
    actor_for(&name(person), account.as_deref(), label)
}

/// The actor of verified person `name` running as `account` (when another), with an
/// optional `--as` label.
fn actor_for(name: &str, account: Option<&str>, label: Option<&str>) -> Actor {
    let voter = format!("local:{name}");
    let (id, who) = match account {
        Some(account) => (
            format!("{voter} (as {account})"),
            format!("{name} as {account}"),
        ),
        None => (voter.clone(), name.to_string()),
    };
    match label.map(as_label).filter(|l| !l.is_empty() && l != name) {
        Some(label) => Actor {
            id: format!("{id} as \"{label}\""),
            display: format!("{who} (shell, as \"{label}\")"),
            voter,
        },
        None => Actor {
            id,
            display: format!("{who} (shell)"),
            voter,
        },
    }
}

/// An `--as` label as shown: letters, digits and `-_.@+` (anything else becomes `_`), at
/// most 32 characters, so it cannot close its quotes or pass for another voter's entry.
fn as_label(label: &str) -> String {
    label
        .trim()
        .chars()
        .take(32)
        .map(|c| {
            if c.is_alphanumeric() || "-_.@+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The uid of the person a command-line decision is from: sudo's caller (`SUDO_UID`) when
/// sudo itself set it, else the real uid (`account`). `SUDO_UID` and `SUDO_USER` are
/// environment variables anyone can set, so `SUDO_UID` counts only when our parent process
/// is a running sudo (named `sudo`, effective uid 0: a setuid-root binary, which no user
/// can fake; and, where we may read it, its executable a root-owned file named `sudo`)
/// whose real uid is that `SUDO_UID`: sudo keeps its caller's real uid, so a shell under
/// sudo that rewrites `SUDO_UID` before `exec opsgate` is caught. `SUDO_USER` is never
/// read: the name comes from the user database.
fn verified_person(account: u32) -> u32 {
    let sudo_uid = std::env::var("SUDO_UID").ok();
    trusted_uid(account, sudo_uid.as_deref(), || {
        parent_process(nix::unistd::getppid().as_raw())
    })
}

/// What [`verified_person`] checks of the parent process.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Parent {
    /// `Name:` of `/proc/PID/status`.
    name: String,
    real_uid: u32,
    effective_uid: u32,
    /// `/proc/PID/exe` is readable (we are root) and is not a root-owned file named sudo.
    foreign_exe: bool,
}

/// [`verified_person`]'s rule; `parent` describes the parent process.
fn trusted_uid(
    account: u32,
    sudo_uid: Option<&str>,
    parent: impl FnOnce() -> Option<Parent>,
) -> u32 {
    let Some(claimed) = sudo_uid.and_then(|u| u.trim().parse::<u32>().ok()) else {
        return account;
    };
    match parent() {
        Some(p)
            if p.name == "sudo"
                && p.effective_uid == 0
                && !p.foreign_exe
                && p.real_uid == claimed =>
        {
            claimed
        }
        _ => account,
    }
}

/// The parent process `pid` as [`Parent`], from `/proc/PID/status` (readable by anyone)
/// and `/proc/PID/exe` (readable only by root for a setuid process).
fn parent_process(pid: i32) -> Option<Parent> {
    use std::os::unix::fs::MetadataExt;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let name = status
        .lines()
        .find_map(|l| l.strip_prefix("Name:"))?
        .trim()
        .to_string();
    let (real_uid, effective_uid) = uids_in_status(&status)?;
    let foreign_exe = match std::fs::read_link(format!("/proc/{pid}/exe")) {
        Ok(exe) => {
            let owner = std::fs::metadata(format!("/proc/{pid}/exe")).map(|m| m.uid());
            exe.file_name().and_then(|n| n.to_str()) != Some("sudo") || owner.ok() != Some(0)
        }
        Err(_) => false,
    };
    Some(Parent {
        name,
        real_uid,
        effective_uid,
        foreign_exe,
    })
}

/// The real and effective uid of a `/proc/PID/status` text: the first two fields of its
/// `Uid:` line.
fn uids_in_status(status: &str) -> Option<(u32, u32)> {
    let mut fields = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .map(|f| f.parse::<u32>().ok());
    Some((fields.next()??, fields.next()??))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sudo_uid_counts_only_when_a_running_sudo_of_that_real_uid_set_it() {
        let sudo_by = |uid| {
            move || {
                Some(Parent {
                    name: "sudo".into(),
                    real_uid: uid,
                    effective_uid: 0,
                    foreign_exe: false,
                })
            }
        };
        // `sudo -u opsgate` by uid 1000: the caller, whatever account runs the command.
        assert_eq!(trusted_uid(999, Some("1000"), sudo_by(1000)), 1000);
        assert_eq!(trusted_uid(0, Some("1000"), sudo_by(1000)), 1000);
        // A shell under sudo that rewrote SUDO_UID: sudo's real uid is still the caller's.
        assert_eq!(trusted_uid(999, Some("1001"), sudo_by(1000)), 999);
        // SUDO_UID typed by hand, under a shell or a fake "sudo" without root: the account.
        let named = |name: &str, euid: u32, foreign_exe: bool| {
            let name = name.to_string();
            move || {
                Some(Parent {
                    name,
                    real_uid: 1000,
                    effective_uid: euid,
                    foreign_exe,
                })
            }
        };
        assert_eq!(
            trusted_uid(999, Some("1000"), named("bash", 999, false)),
            999
        );
        assert_eq!(
            trusted_uid(999, Some("1000"), named("sudo", 1000, false)),
            999
        );
        assert_eq!(trusted_uid(0, Some("1000"), named("sudo", 0, true)), 0);
        // Garbage and unknown parents are the account.
        assert_eq!(trusted_uid(0, Some("x"), sudo_by(1000)), 0);
        assert_eq!(trusted_uid(0, Some("1000"), || None), 0);
        assert_eq!(trusted_uid(0, None, sudo_by(1000)), 0);
        let status = "Name:\tsudo\nUmask:\t0022\nUid:\t1000\t0\t0\t0\nGid:\t1000\t0\t0\t0\n";
        assert_eq!(uids_in_status(status), Some((1000, 0)));
        assert_eq!(uids_in_status("Name: x\n"), None);
    }

    #[test]
    fn an_as_label_follows_the_verified_name_and_never_makes_another_voter() {
        let plain = actor_for("alice", None, None);
        assert_eq!(
            (plain.voter.as_str(), plain.display.as_str()),
            ("local:alice", "alice (shell)")
        );
        let labelled = actor_for("alice", None, Some("ops-bob"));
        assert_eq!(labelled.voter, "local:alice");
        assert_eq!(labelled.display, "alice (shell, as \"ops-bob\")");
        assert_eq!(labelled.id, "local:alice as \"ops-bob\"");
        // A label cannot close its quotes or pose as a list of voters.
        let forged = actor_for("alice", None, Some("x\"), @u222 (telegram"));
        assert_eq!(forged.display, "alice (shell, as \"x____@u222__telegram\")");
        assert_eq!(
            actor_for("alice", None, Some("alice")).display,
            "alice (shell)"
        );
        // Under `sudo -u opsgate`: the person votes, the account is recorded with them.
        let sudo = actor_for("alice", Some("opsgate"), None);
        assert_eq!(sudo.voter, "local:alice");
        assert_eq!(sudo.id, "local:alice (as opsgate)");
        assert_eq!(sudo.display, "alice as opsgate (shell)");
    }
}
