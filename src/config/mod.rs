//! Configuration: one table of settings ([`settings`]: each setting one entry with its
//! name, environment variable, TOML key, typed default, parser and help) that `--help`,
//! `doctor`, the man page and the README's table are made from; every environment
//! variable is read here, and every error names its variable or key. The command line,
//! the environment and the optional TOML file become one validated [`Config`] before any
//! work starts.
//!
//! Precedence, as in cargo and most CLIs: command-line flags, then the environment, then
//! the config file, then the defaults ([`layers`]). `doctor` shows where each value came
//! from, for every setting ([`Config::provenance`]). A leading `~/` in a path is the home
//! directory.
//!
//! One config file is read, never several merged ([`discover`]): `--config`, else
//! `OPSGATE_CONFIG`, else the user's own (`$XDG_CONFIG_HOME/opsgate/opsgate.toml`) when it
//! exists, else the host's (`/etc/opsgate/opsgate.toml`) when it exists. A personal file
//! is something its owner made on purpose, so it wins over the host's; an account without
//! one (root, `sudo -u opsgate`, cron) reaches the host's file and so the service's queue.
//!
//! Files: `settings` (the table and the common parsers), `layers` (precedence and
//! provenance), `file` (discovery and the TOML file), `rules` (lifecycle, quorum, risk,
//! redaction), `db` (where the database is), `runner` (executed commands' environment),
//! `telegram` (the bot, chats, operators), `slack` (its tokens, channel, operators),
//! `routes` (the `[[route]]`s of every channel and the routing rule).

mod db;
mod file;
pub mod layers;
mod routes;
mod rules;
mod runner;
pub mod settings;
mod slack;
mod telegram;

pub use db::{mask_url, spool_dir, url_password, DbLocation};
pub use file::{discover, Found};
pub use layers::{Env, Origin, Provenance};
pub use routes::{Dest, Route};
pub use rules::{Quorum, Redaction, Rules, MAX_RUN_TIMEOUT};
pub use runner::BASE_ENV;
pub use settings::*;
pub use slack::{channel_id as slack_channel_id, SlackConfig, SlackTarget};
pub use telegram::{BotAccess, Target, TelegramConfig};

use crate::error::{Error, Kind};
use crate::policy::Policy;
use anyhow::Result;
use layers::Layers;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Settings every command needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub db: DbLocation,
    /// Sources whose proposals `run` executes here (`[runner] sources`).
    pub runner_sources: Vec<String>,
    /// The config file read, if any (child processes get it as `--config`).
    pub config_path: Option<PathBuf>,
    /// Why that file (or none) was read, for `doctor` ([`discover`]).
    pub config_why: String,
    /// Where the database location came from (`--db`, `OPSGATE_DB`, `db in FILE`, the
    /// default), for messages about a missing database.
    pub db_from: String,
    /// Fixed clock from [`NOW`], if set.
    pub fixed_now: Option<i64>,
    /// How far this host's clock is moved ([`CLOCK_SKEW`], tests), in milliseconds.
    pub clock_skew: i64,
    /// The database's clock, once a shared database was opened ([`Config::now`]).
    pub db_clock: DbClock,
    /// Where every SQL statement is logged ([`SQL_LOG`]), for diagnostics.
    pub sql_log: Option<PathBuf>,
    /// `[runner] env` and `pass_env`: added to the base environment of executed commands.
    pub runner_env: Vec<(String, String)>,
    /// Secret values opsgate knows (the bot token, the database password, secret
    /// `[runner] env` values): hidden wherever shown, removed from stored output. Filled
    /// by the dispatcher.
    pub secrets: Vec<Secret>,
    pub redaction: Redaction,
    pub verbosity: i8,
    /// Telegram, when a token and a chat are configured.
    pub telegram: Option<TelegramConfig>,
    /// The bot, whenever a token is configured (with or without a chat).
    pub bot: Option<BotAccess>,
    /// Set when Telegram is half configured (a chat or operators without a token): what
    /// is missing. Commands that deliver cards or take presses refuse with it (78) rather
    /// than stay silent.
    pub telegram_missing: Option<String>,
    /// Slack, when a bot token and a channel are configured.
    pub slack: Option<SlackConfig>,
    /// Set when Slack is half configured: what is missing.
    pub slack_missing: Option<String>,
    /// Lifecycle timing.
    pub rules: Rules,
    /// Default bound on one executed command.
    pub run_timeout: Duration,
    pub policy: Policy,
    /// Where each setting that was set came from, for `doctor` (secrets masked).
    pub provenance: Vec<Provenance>,
}

/// `~/x` is `$HOME/x`: a config file's paths read as a shell would read them.
pub fn expand_home(path: PathBuf, env: &Env) -> PathBuf {
    let Ok(rest) = path.strip_prefix("~") else {
        return path;
    };
    match env.var("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(rest),
        None => path,
    }
}

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

fn config_error(message: String) -> anyhow::Error {
    Error::new(Kind::Config, message).into()
}

impl Config {
    /// Builds the configuration from the command line (`--db`, `--config`, both already
    /// merged with their environment variables by clap) and the environment.
    pub fn new(db: Option<PathBuf>, config: Option<PathBuf>, verbosity: i8) -> Result<Config> {
        Config::build(db, config, verbosity, &Env::process())
    }

    /// [`Config::new`] over a given environment.
    pub fn build(
        db: Option<PathBuf>,
        config: Option<PathBuf>,
        verbosity: i8,
        env: &Env,
    ) -> Result<Config> {
        let found = file::discover_in(config, env)?;
        let config = found.path.clone();
        let text = match &config {
            Some(path) => Some(file::read_text(path)?),
            None => None,
        };
        let doc = match (&config, &text) {
            (Some(path), Some(text)) => Some(file::FileDoc::parse(path, text)?),
            _ => None,
        };
        let mut layers = Layers::new(env, doc.as_ref());
        let config_name = format!("--config / {}", CONFIG_FILE.env_name());
        match (&config, found.origin) {
            (Some(path), Some(origin)) => layers.record_as(
                &CONFIG_FILE,
                config_name,
                origin,
                path.display().to_string(),
                false,
            ),
            (path, _) => layers.record_as(
                &CONFIG_FILE,
                config_name,
                Origin::Default,
                path.as_ref()
                    .map_or(layers::NOT_SET.to_string(), |p| p.display().to_string()),
                false,
            ),
        }
        for s in [&CONFIG_HOME, &SYSTEM_CONFIG, &STATE_HOME] {
            layers.get(s)?;
        }
        let (db, db_from) = database(&mut layers, db, config.as_deref())?;
        let ttl = layers.get(&TTL)?.unwrap_or_default();
        let stale_after_cycles = layers.get(&STALE_AFTER)?.unwrap_or_default();
        let reject_cooldown = layers.get(&REJECT_COOLDOWN)?.unwrap_or_default();
        let retention = layers.get(&RETENTION)?.unwrap_or_default();
        let run_timeout = layers.get(&RUN_TIMEOUT)?.unwrap_or_default();
        let deny = layers.get(&DENY)?.unwrap_or_default();
        let require_reason = layers.get(&REQUIRE_REASON)?.unwrap_or_default();
        let risk = layers.get(&RISK)?.unwrap_or_default();
        let policy = Policy::new(&deny, risk, require_reason);
        let quorum = layers.get(&QUORUM)?.unwrap_or_default();
        let rules = Rules {
            ttl_ms: ttl,
            stale_after_cycles: stale_after_cycles.max(0),
            reject_cooldown_ms: reject_cooldown,
            retention_ms: retention,
            quorum,
        };
        let runner_sources = layers.get(&RUNNER_SOURCES)?.unwrap_or_default();
        let pass_env = layers.get(&RUNNER_PASS_ENV)?.unwrap_or_default();
        let pairs = layers.get(&RUNNER_ENV)?.unwrap_or_default();
        let runner_env = runner::resolve(&pass_env, pairs, env);
        let public_env = layers.get(&RUNNER_PUBLIC_ENV)?.unwrap_or_default();
        let tg = telegram::resolve(&mut layers)?;
        let slack = slack::resolve(&mut layers)?;
        let redaction = Redaction {
            builtin: layers.get(&REDACT_BUILTIN)?.unwrap_or_default(),
            patterns: layers.get(&REDACT)?.unwrap_or_default(),
            rules_file: layers.get(&SECRET_RULES)?.map(|p| expand_home(p, env)),
            public_env,
        };
        let fixed_now = layers.get(&NOW)?;
        let clock_skew = layers.get(&CLOCK_SKEW)?.unwrap_or_default();
        let sql_log = layers.get(&SQL_LOG)?;
        layers.get(&LOG)?;
        Ok(Config {
            db,
            runner_sources,
            runner_env,
            secrets: Vec::new(),
            redaction,
            config_path: config.clone(),
            config_why: found.why,
            db_from,
            fixed_now,
            clock_skew,
            db_clock: DbClock::default(),
            sql_log,
            verbosity,
            telegram: tg.telegram,
            bot: tg.bot,
            telegram_missing: tg.missing,
            slack: slack.slack,
            slack_missing: slack.missing,
            rules,
            run_timeout: Duration::from_millis(run_timeout.max(1000) as u64),
            policy,
            provenance: layers.finish(),
        })
    }

    /// Current time in unix milliseconds: the database's clock once a shared database
    /// (PostgreSQL) was opened, so every lease, expiry, staleness and cooldown of the
    /// fleet is judged on one clock; this host's clock otherwise (SQLite).
    pub fn now(&self) -> i64 {
        self.db_clock.read().unwrap_or_else(|| self.host_now())
    }

    /// This host's clock ([`NOW`] pins it, [`CLOCK_SKEW`] moves it).
    pub fn host_now(&self) -> i64 {
        self.fixed_now
            .unwrap_or_else(crate::time::system_now_ms)
            .saturating_add(self.clock_skew)
    }

    /// Takes the database's clock from `server` (its time now, as just read): from now on
    /// [`Config::now`] is that clock, advanced by this host's monotonic clock. A pinned
    /// clock ([`NOW`]) stands in for the server's. Returns the difference of this host's
    /// clock from the database's, in milliseconds (positive: the host is ahead).
    pub fn use_db_clock(&self, server: i64) -> i64 {
        let db = self.fixed_now.unwrap_or(server);
        self.db_clock.set(db, self.fixed_now.is_some());
        self.host_now().saturating_sub(db)
    }

    /// Telegram settings with at least one operator, for commands that apply decisions.
    /// Refuses a half-configured Telegram (exit 78, naming what is missing).
    pub fn telegram_complete(&self) -> Result<()> {
        match &self.telegram_missing {
            Some(why) => Err(config_error(why.clone())),
            None => Ok(()),
        }
    }

    pub fn telegram_for_decisions(&self) -> Result<&TelegramConfig> {
        self.telegram_complete()?;
        let tg = self.telegram.as_ref().ok_or_else(|| {
            config_error(format!(
                "Telegram is not configured: set {} (or {}, or telegram.token_file) and {}",
                TOKEN.env_name(),
                TOKEN_FILE.env_name(),
                CHAT_ID.env_name()
            ))
        })?;
        if tg.operators.is_empty() && tg.own_routes().all(|(_, t)| t.operators.is_empty()) {
            return Err(config_error(format!(
                "no operators configured: set {} (or telegram.operators) to the Telegram user ids allowed to decide; refusing to accept button presses from anyone",
                OPERATORS.env_name()
            )));
        }
        Ok(tg)
    }
}

impl Config {
    /// Refuses a half-configured Slack (exit 78, naming what is missing).
    pub fn slack_complete(&self) -> Result<()> {
        match &self.slack_missing {
            Some(why) => Err(config_error(why.clone())),
            None => Ok(()),
        }
    }

    /// Slack settings with at least one operator and the app-level token, for commands
    /// that take presses.
    pub fn slack_for_decisions(&self) -> Result<&SlackConfig> {
        self.slack_complete()?;
        let slack = self.slack.as_ref().ok_or_else(|| {
            config_error(format!(
                "Slack is not configured: set {} (or {}, or slack.bot_token_file) and {}",
                SLACK_BOT_TOKEN.env_name(),
                SLACK_BOT_TOKEN_FILE.env_name(),
                SLACK_CHANNEL.env_name()
            ))
        })?;
        if slack.operators.is_empty() && slack.own_routes().all(|(_, t)| t.operators.is_empty()) {
            return Err(config_error(format!(
                "no Slack operators configured: set {} (or slack.operators) to the Slack user ids allowed to decide; refusing to accept button presses from anyone",
                SLACK_OPERATORS.env_name()
            )));
        }
        if slack.app_token.is_none() {
            return Err(config_error(format!(
                "Slack presses arrive over Socket Mode: set {} (or {}, or slack.app_token_file) to the app-level token (xapp-…, scope connections:write)",
                SLACK_APP_TOKEN.env_name(),
                SLACK_APP_TOKEN_FILE.env_name()
            )));
        }
        Ok(slack)
    }
}

/// The database location: `--db` (clap merged it with `OPSGATE_DB`; the flag wins), else
/// the file's `db`, else the default; and how messages name where it came from.
fn database(
    layers: &mut Layers<'_>,
    flag: Option<PathBuf>,
    config: Option<&Path>,
) -> Result<(DbLocation, String)> {
    let file = layers.file_of(&DB)?;
    let env = layers.env;
    match (flag, file) {
        (Some(p), _) if p.as_os_str().is_empty() => {
            Err(config_error(format!("--db / {} is empty", DB.env_name())))
        }
        (Some(p), from_file) => {
            let origin = layers::flag_or_env(env, &DB, &p);
            let from = match origin {
                Origin::Env => DB.env_name().to_string(),
                _ => "--db".to_string(),
            };
            layers.record_as(
                &DB,
                format!("--db / {} / db", DB.env_name()),
                origin,
                db::shown_db(&p),
                from_file.is_some(),
            );
            Ok((DbLocation::parse(expand_home(p, env).as_os_str())?, from))
        }
        (None, Some(p)) => {
            let from = format!("db in {}", config.unwrap_or(Path::new("?")).display());
            layers.record(&DB, Origin::File, db::shown_db(&p), false);
            Ok((DbLocation::parse(expand_home(p, env).as_os_str())?, from))
        }
        (None, None) => {
            let p = db::default_db(env)?;
            let from = format!("the default, {}; no config file sets db", DB.default);
            layers.record(&DB, Origin::Default, p.display().to_string(), false);
            Ok((DbLocation::File(p), from))
        }
    }
}

/// The log filter [`LOG`] sets, if any.
pub fn log_filter() -> Option<String> {
    Env::process().setting(&LOG).map(str::to_string)
}

#[cfg(test)]
mod tests;

/// The database's clock as this process knows it: a reading of the server's time and
/// the instant it was taken (advanced by the monotonic clock, so a host clock that jumps
/// changes nothing), or a pinned time ([`NOW`]). Shared by the clones of a [`Config`].
#[derive(Debug, Clone, Default)]
pub struct DbClock(std::sync::Arc<std::sync::Mutex<Option<Reading>>>);

/// A time of the database's clock, and the instant it was read (`None`: pinned).
type Reading = (i64, Option<std::time::Instant>);

impl DbClock {
    fn set(&self, at: i64, pinned: bool) {
        let read = (!pinned).then(std::time::Instant::now);
        if let Ok(mut clock) = self.0.lock() {
            *clock = Some((at, read));
        }
    }

    fn read(&self) -> Option<i64> {
        let clock = *self.0.lock().ok()?;
        let (at, read) = clock?;
        let since = read.map_or(0, |r| i64::try_from(r.elapsed().as_millis()).unwrap_or(0));
        Some(at.saturating_add(since))
    }
}
