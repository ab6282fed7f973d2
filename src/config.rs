//! Configuration: one table of settings ([`SETTINGS`]: name, environment variable, TOML
//! key, default, help) that `--help`, `doctor` and the README's table are made from;
//! every environment variable is read here, and every error names its variable or key.
//! The command line, the environment and the optional TOML file become one validated
//! [`Config`] before any work starts.
//!
//! Precedence, as in cargo and most CLIs: command-line flags, then the environment, then
//! the config file, then the defaults. `doctor` shows where each value came from
//! ([`Config::provenance`]). A leading `~/` in a path is the home directory.
//!
//! One config file is read, never several merged ([`discover`]): `--config`, else
//! `OPSGATE_CONFIG`, else the user's own (`$XDG_CONFIG_HOME/opsgate/opsgate.toml`) when it
//! exists, else the host's (`/etc/opsgate/opsgate.toml`) when it exists. A personal file
//! is something its owner made on purpose, so it wins over the host's; an account without
//! one (root, `sudo -u opsgate`, cron) reaches the host's file and so the service's queue.

use crate::error::{Error, Kind};
use crate::policy::Policy;
use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One setting: where it comes from and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The environment variable, if it can be set there.
    pub env: Option<&'static str>,
    /// The TOML key, if it can be set in the config file.
    pub key: Option<&'static str>,
    pub default: &'static str,
    pub help: &'static str,
}

const fn setting(
    env: Option<&'static str>,
    key: Option<&'static str>,
    default: &'static str,
    help: &'static str,
) -> Setting {
    Setting {
        env,
        key,
        default,
        help,
    }
}

pub const DB: Setting = setting(
    Some("OPSGATE_DB"),
    Some("db"),
    "$XDG_STATE_HOME/opsgate/opsgate.db",
    "database (`--db`): a SQLite file path (directories created 0700, the file 0600) or a `postgres://` URL (one queue for many hosts)",
);
pub const CONFIG_FILE: Setting = setting(
    Some("OPSGATE_CONFIG"),
    None,
    "",
    "TOML config file (`--config`); the environment and flags override its values. Unset: the user's config file if it exists, else the system's",
);
pub const CONFIG_HOME: Setting = setting(
    Some("XDG_CONFIG_HOME"),
    None,
    "$HOME/.config",
    "base of the user's config file (`opsgate/opsgate.toml`), read when it exists and no --config / OPSGATE_CONFIG is given",
);
pub const SYSTEM_CONFIG: Setting = setting(
    Some("OPSGATE_SYSTEM_CONFIG"),
    None,
    "/etc/opsgate/opsgate.toml",
    "the host's config file, read when it exists and there is no --config, OPSGATE_CONFIG nor user config file (set it for another prefix, or in tests)",
);
pub const TOKEN: Setting = setting(
    Some("OPSGATE_TELEGRAM_TOKEN"),
    None,
    "",
    "bot token (never a command-line argument, never printed)",
);
pub const TOKEN_FILE: Setting = setting(
    Some("OPSGATE_TELEGRAM_TOKEN_FILE"),
    Some("telegram.token_file"),
    "",
    "file holding the token; refused if readable by group or others",
);
pub const CHAT_ID: Setting = setting(
    Some("OPSGATE_TELEGRAM_CHAT_ID"),
    Some("telegram.chat_id"),
    "",
    "chat the cards go to",
);
pub const OPERATORS: Setting = setting(
    Some("OPSGATE_TELEGRAM_OPERATORS"),
    Some("telegram.operators"),
    "",
    "Telegram user ids allowed to decide (comma-separated); none: poll and serve refuse to start",
);
pub const API_URL: Setting = setting(
    Some("OPSGATE_TELEGRAM_API_URL"),
    Some("telegram.api_url"),
    "https://api.telegram.org",
    "Bot API base URL (a self-hosted Bot API server, tests)",
);
pub const TIMEOUT: Setting = setting(
    Some("OPSGATE_TELEGRAM_TIMEOUT"),
    Some("telegram.timeout_secs"),
    "15",
    "seconds one Telegram request may take",
);
pub const MAX_WAIT: Setting = setting(
    None,
    Some("telegram.max_wait_secs"),
    "60",
    "total seconds of 429 waiting in one run",
);
pub const STATUS_MESSAGE: Setting = setting(
    Some("OPSGATE_TELEGRAM_STATUS"),
    Some("telegram.status_message"),
    "false",
    "one status message per source (last cycle, the model's summary masked, open cards), edited each cycle and pinned where the bot may pin",
);
pub const TTL: Setting = setting(
    None,
    Some("lifecycle.ttl"),
    "24h",
    "a proposal not decided this long after its first sighting expires",
);
pub const STALE_AFTER: Setting = setting(
    None,
    Some("lifecycle.stale_after_cycles"),
    "3",
    "a pending proposal not re-proposed in this many ingests is stale (0: never)",
);
pub const REJECT_COOLDOWN: Setting = setting(
    None,
    Some("lifecycle.reject_cooldown"),
    "24h",
    "a rejected command re-proposed within this is a sighting, not a new card",
);
pub const RETENTION: Setting = setting(
    None,
    Some("lifecycle.retention"),
    "90d",
    "terminal proposals are deleted this long after they ended (the audit stays)",
);
pub const RUN_TIMEOUT: Setting = setting(
    None,
    Some("lifecycle.run_timeout"),
    "10m",
    "an executed command is killed after this (at most 7d)",
);
pub const DENY: Setting = setting(
    None,
    Some("policy.deny"),
    "[]",
    "regexes matched against the raw and the canonical command: a match is rejected",
);
pub const REQUIRE_REASON: Setting = setting(
    None,
    Some("policy.require_reason"),
    "false",
    "rejecting needs a reason",
);
pub const RUNNER_SOURCES: Setting = setting(
    None,
    Some("runner.sources"),
    "[]",
    "sources whose proposals `run` executes on this host (`--source`); required with PostgreSQL",
);
pub const REDACT: Setting = setting(
    None,
    Some("policy.redact"),
    "[]",
    "regexes of secret values to hide on cards and in output (group 1, else the match); the stored command keeps them",
);
pub const REDACT_BUILTIN: Setting = setting(
    None,
    Some("policy.redact_builtin"),
    "true",
    "hide passwords, tokens, keys, Authorization headers, URL passwords and private keys found by the built-in detectors",
);
pub const SECRET_RULES: Setting = setting(
    None,
    Some("policy.secret_rules"),
    "",
    "a file of extra secret-format rules in gitleaks' schema ([[rules]] id, regex, secretGroup, keywords), e.g. gitleaks' own config",
);
pub const QUORUM: Setting = setting(
    None,
    Some("policy.quorum"),
    "{}",
    "distinct operators whose Approve a risk level needs, e.g. { high = 2 } (default 1)",
);
pub const RISK: Setting = setting(
    None,
    Some("policy.risk"),
    "[]",
    "risk floors: rules `{ pattern = REGEX, verbs = [\"stop\", \"rm\"], level = \"high\" }` (a regex over the raw and canonical command, logical-key verbs, or both, then both must match); a proposal's risk is the highest matching level, raised by the model's label, never lowered by it",
);
pub const RUNNER_ENV: Setting = setting(
    None,
    Some("runner.env"),
    "[]",
    "NAME=VALUE pairs set for executed commands (they get PATH, HOME, LANG, LC_*, TZ, USER, LOGNAME, SHELL, TERM and nothing else)",
);
pub const RUNNER_PASS_ENV: Setting = setting(
    None,
    Some("runner.pass_env"),
    "[]",
    "names of opsgate's environment variables passed on to executed commands (never OPSGATE_*)",
);
pub const RUNNER_PUBLIC_ENV: Setting = setting(
    None,
    Some("runner.public_env"),
    "[]",
    "names of `[runner] env`/`pass_env` variables whose values are not secret; every other value is hidden on cards and removed from stored output",
);
pub const ROUTES: Setting = setting(
    None,
    Some("[[route]]"),
    "",
    "cards of matching `sources` (globs) and/or `risk` levels go to `chat_id` (and forum `topic`), decided by the route's `operators` (default telegram.operators)",
);
pub const NOW: Setting = setting(
    Some("OPSGATE_NOW"),
    None,
    "",
    "pin the clock (RFC 3339 or unix seconds): tests and replays; on PostgreSQL it stands in for the database's clock",
);
pub const CLOCK_SKEW: Setting = setting(
    Some("OPSGATE_CLOCK_SKEW"),
    None,
    "",
    "tests: move this host's clock (e.g. +130s, -25h) to show that on PostgreSQL only the database's clock counts",
);
pub const SQL_LOG: Setting = setting(
    Some("OPSGATE_SQL_LOG"),
    None,
    "",
    "diagnostics: append every SQL statement opsgate runs to this file (parameters not included)",
);
pub const LOG: Setting = setting(
    Some("OPSGATE_LOG"),
    None,
    "",
    "log filter for the structured logs on stderr (`info`, `debug`, `opsgate=debug`); default: info for serve, warnings elsewhere (-v: info, -vv: debug)",
);
pub const STATE_HOME: Setting = setting(
    Some("XDG_STATE_HOME"),
    None,
    "$HOME/.local/state",
    "base of the default database path and of the spool of run outcomes (`opsgate/spool`)",
);

/// Every setting, in the order `--help`, `doctor` and the README list them.
pub const SETTINGS: &[Setting] = &[
    DB,
    CONFIG_FILE,
    CONFIG_HOME,
    SYSTEM_CONFIG,
    TOKEN,
    TOKEN_FILE,
    CHAT_ID,
    OPERATORS,
    API_URL,
    TIMEOUT,
    MAX_WAIT,
    STATUS_MESSAGE,
    TTL,
    STALE_AFTER,
    REJECT_COOLDOWN,
    RETENTION,
    RUN_TIMEOUT,
    DENY,
    REQUIRE_REASON,
    REDACT,
    REDACT_BUILTIN,
    SECRET_RULES,
    QUORUM,
    RISK,
    RUNNER_SOURCES,
    RUNNER_ENV,
    RUNNER_PASS_ENV,
    RUNNER_PUBLIC_ENV,
    ROUTES,
    NOW,
    CLOCK_SKEW,
    SQL_LOG,
    LOG,
    STATE_HOME,
];

/// The environment section of `--help`.
pub fn env_help() -> String {
    let mut out = String::from("Environment:\n");
    for s in SETTINGS {
        if let Some(env) = s.env {
            let default = if s.default.is_empty() {
                String::new()
            } else {
                format!(" (default {})", s.default)
            };
            out.push_str(&format!("  {env:<28} {}{default}\n", s.help));
        }
    }
    out
}

/// The README's settings table, in Markdown.
pub fn markdown_table() -> String {
    let mut out = String::from("| variable | file key | default | meaning |\n|---|---|---|---|\n");
    let code = |s: Option<&str>| s.map(|s| format!("`{s}`")).unwrap_or_default();
    for s in SETTINGS {
        let default = if s.default.is_empty() {
            String::new()
        } else {
            format!("`{}`", s.default)
        };
        out.push_str(&format!(
            "| {} | {} | {default} | {} |\n",
            code(s.env),
            code(s.key),
            s.help.replace('|', "\\|")
        ));
    }
    out
}

/// Time and count rules of the lifecycle (applied by [`crate::lifecycle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Pending or approved-not-started proposals expire this long after first sighting.
    pub ttl_ms: i64,
    /// A pending proposal its source has not re-proposed in this many ingests is stale.
    pub stale_after_cycles: i64,
    /// A rejected command re-proposed within this long is a sighting, not a new card.
    pub reject_cooldown_ms: i64,
    /// Terminal proposals are deleted this long after they ended.
    pub retention_ms: i64,
    /// Distinct operators whose Approve each risk level needs.
    pub quorum: Quorum,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            ttl_ms: 24 * 3_600_000,
            stale_after_cycles: 3,
            reject_cooldown_ms: 24 * 3_600_000,
            retention_ms: 90 * 86_400_000,
            quorum: Quorum::default(),
        }
    }
}

/// `[policy] quorum`: approvals needed per risk level (1 to 9; default 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quorum {
    pub low: u8,
    pub medium: u8,
    pub high: u8,
}

impl Default for Quorum {
    fn default() -> Self {
        Quorum {
            low: 1,
            medium: 1,
            high: 1,
        }
    }
}

/// A `[[route]]`: where the cards of some sources or risk levels go, and who decides them.
#[derive(Debug, Clone)]
pub struct Route {
    /// Source globs (`web-*`); empty: any source.
    pub sources: Vec<glob::Pattern>,
    /// Risk levels (`low`, `medium`, `high`); empty: any.
    pub risks: Vec<String>,
    pub chat_id: i64,
    /// A forum topic (`message_thread_id`).
    pub topic: Option<i32>,
    /// Who may decide this route's cards; `None`: `telegram.operators`.
    pub operators: Option<Vec<u64>>,
}

/// Where a card goes and who decides it: the first `[[route]]` that matches the card's
/// source and risk, else the top-level chat and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub chat_id: i64,
    pub topic: Option<i32>,
    pub operators: &'a [u64],
}

impl Route {
    fn matches(&self, source: &str, risk: &str) -> bool {
        (self.sources.is_empty() || self.sources.iter().any(|g| g.matches(source)))
            && (self.risks.is_empty() || self.risks.iter().any(|r| r == risk))
    }
}

impl TelegramConfig {
    /// The route of a card of `source` whose riskiest proposal is `risk` (`low`, `medium`
    /// or `high`): the one home of the routing rule; delivery, authorization and prompts
    /// all ask here.
    pub fn route(&self, source: &str, risk: &str) -> Target<'_> {
        match self.routes.iter().find(|r| r.matches(source, risk)) {
            Some(r) => self.route_of_entry(r),
            None => Target {
                chat_id: self.chat_id,
                topic: None,
                operators: &self.operators,
            },
        }
    }

    /// Where an entry sends its cards and who decides them.
    pub fn route_of_entry<'a>(&'a self, r: &'a Route) -> Target<'a> {
        Target {
            chat_id: r.chat_id,
            topic: r.topic,
            operators: r.operators.as_deref().unwrap_or(&self.operators),
        }
    }

    /// Whether `user` decides the cards of some route (the top-level list included).
    pub fn is_operator_anywhere(&self, user: u64) -> bool {
        self.operators.contains(&user)
            || self
                .routes
                .iter()
                .any(|r| r.operators.as_ref().is_some_and(|o| o.contains(&user)))
    }

    /// Every chat cards may go to, the default first, each once.
    pub fn chats(&self) -> Vec<i64> {
        let mut chats = vec![self.chat_id];
        for r in &self.routes {
            if !chats.contains(&r.chat_id) {
                chats.push(r.chat_id);
            }
        }
        chats
    }
}

/// `[policy] redact` and `redact_builtin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    pub builtin: bool,
    pub patterns: Vec<String>,
    /// `[policy] secret_rules`: a gitleaks-schema rules file.
    pub rules_file: Option<PathBuf>,
    /// `[runner] public_env`: runner variables whose values are not secret.
    pub public_env: Vec<String>,
}

/// The longest command timeout accepted.
pub const MAX_RUN_TIMEOUT: Duration = Duration::from_secs(7 * 86_400);

/// Where the database is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbLocation {
    /// An embedded SQLite file.
    File(PathBuf),
    /// A PostgreSQL server, by `postgres://` URL.
    Postgres(String),
}

impl DbLocation {
    /// A `--db` value: a `postgres://` or `postgresql://` URL, else a file path. Anything
    /// else that looks like a URL is refused, never taken for a file name.
    pub fn parse(value: &std::ffi::OsStr) -> Result<DbLocation> {
        let Some(text) = value.to_str() else {
            return Ok(DbLocation::File(PathBuf::from(value)));
        };
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(DbLocation::Postgres(text.to_string()));
        }
        if let Some(path) = text.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(config_error(
                    "sqlite: needs a file path, e.g. sqlite:/var/lib/opsgate/opsgate.db"
                        .to_string(),
                ));
            }
            return Ok(DbLocation::File(PathBuf::from(path)));
        }
        let scheme = text.split_once("://").map(|(s, _)| s);
        if let Some(scheme) = scheme.filter(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }) {
            return Err(config_error(format!(
                "--db / {}: {scheme}:// is not a database opsgate knows; expected a file path (or sqlite:PATH) or a postgres:// URL",
                env_name(DB)
            )));
        }
        Ok(DbLocation::File(PathBuf::from(value)))
    }

    /// How messages name it (a URL's password masked).
    pub fn shown(&self) -> String {
        match self {
            DbLocation::File(p) => p.display().to_string(),
            DbLocation::Postgres(url) => mask_url(url),
        }
    }

    /// The value to pass on as `--db` to a child opsgate.
    pub fn as_arg(&self) -> std::ffi::OsString {
        match self {
            DbLocation::File(p) => p.clone().into_os_string(),
            DbLocation::Postgres(url) => url.into(),
        }
    }
}

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
    /// Lifecycle timing.
    pub rules: Rules,
    /// Default bound on one executed command.
    pub run_timeout: Duration,
    pub policy: Policy,
    /// Where each setting that was set came from, for `doctor` (secrets masked).
    pub provenance: Vec<Provenance>,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Flag,
    Env,
    File,
    Default,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Flag => "flag",
            Origin::Env => "environment",
            Origin::File => "config file",
            Origin::Default => "default",
        }
    }
}

/// One setting's value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// The setting's name as the user writes it (`OPSGATE_TELEGRAM_CHAT_ID` /
    /// `telegram.chat_id`).
    pub name: String,
    pub origin: Origin,
    /// The value, `(secret)` for secrets.
    pub shown: String,
    /// The config file set it too, and lost.
    pub overridden_file: bool,
}

/// Picks a value by precedence (environment over file), recording where it came from.
fn pick<T>(
    provenance: &mut Vec<Provenance>,
    setting: Setting,
    env: Option<T>,
    file: Option<T>,
    show: impl Fn(&T) -> String,
) -> Option<T> {
    let name = match (setting.env, setting.key) {
        (Some(e), Some(k)) => format!("{e} / {k}"),
        (Some(e), None) => e.to_string(),
        (None, Some(k)) => k.to_string(),
        (None, None) => String::new(),
    };
    let overridden_file = env.is_some() && file.is_some();
    let (value, origin) = match (env, file) {
        (Some(v), _) => (v, Origin::Env),
        (None, Some(v)) => (v, Origin::File),
        (None, None) => return None,
    };
    provenance.push(Provenance {
        name,
        origin,
        shown: show(&value),
        overridden_file,
    });
    Some(value)
}

/// `~/x` is `$HOME/x`: a config file's paths read as a shell would read them.
pub fn expand_home(path: PathBuf) -> PathBuf {
    let Ok(rest) = path.strip_prefix("~") else {
        return path;
    };
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
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

/// What reaching the Bot API takes: the token, the URL and the time bound. Set whenever a
/// token is, even without a chat (`opsgate telegram ids` finds the chat with it).
#[derive(Debug, Clone)]
pub struct BotAccess {
    pub token: Secret,
    pub api_url: Option<String>,
    pub timeout: Duration,
}

/// Telegram settings, validated.
#[derive(Debug, Clone)]
pub struct TelegramConfig {
    pub token: Secret,
    pub chat_id: i64,
    /// User ids allowed to decide; empty means nobody (poll and serve refuse to start).
    pub operators: Vec<u64>,
    pub api_url: Option<String>,
    /// Bound on one request.
    pub timeout: Duration,
    /// Longest total wait for 429 `retry_after` in one run.
    pub max_wait: Duration,
    /// `[[route]]` entries, first match wins; no match: `chat_id` and `operators`.
    pub routes: Vec<Route>,
    /// Keep one status message per source in its route's chat.
    pub status_message: bool,
}

/// The TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    db: Option<PathBuf>,
    telegram: Option<FileTelegram>,
    lifecycle: Option<FileLifecycle>,
    policy: Option<FilePolicy>,
    runner: Option<FileRunner>,
    #[serde(default)]
    route: Vec<FileRoute>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRunner {
    #[serde(default)]
    sources: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    pass_env: Vec<String>,
    #[serde(default)]
    public_env: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRoute {
    #[serde(default)]
    sources: Vec<String>,
    #[serde(default)]
    risk: Vec<String>,
    chat_id: i64,
    topic: Option<i32>,
    operators: Option<Vec<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLifecycle {
    ttl: Option<String>,
    stale_after_cycles: Option<i64>,
    reject_cooldown: Option<String>,
    retention: Option<String>,
    run_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePolicy {
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    require_reason: bool,
    #[serde(default)]
    redact: Vec<String>,
    redact_builtin: Option<bool>,
    secret_rules: Option<PathBuf>,
    quorum: Option<Quorum>,
    #[serde(default)]
    risk: Vec<FileRiskRule>,
}

/// One `[policy] risk` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRiskRule {
    pattern: Option<String>,
    #[serde(default)]
    verbs: Vec<String>,
    level: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTelegram {
    token_file: Option<PathBuf>,
    chat_id: Option<i64>,
    operators: Option<Vec<u64>>,
    api_url: Option<String>,
    timeout_secs: Option<u64>,
    max_wait_secs: Option<u64>,
    status_message: Option<bool>,
}

fn config_error(message: String) -> anyhow::Error {
    Error::new(Kind::Config, message).into()
}

fn env_name(s: Setting) -> &'static str {
    s.env.unwrap_or("")
}

impl Config {
    /// Builds the configuration from the command line (`--db`, `--config`, both already
    /// merged with their environment variables by clap) and the environment.
    pub fn new(db: Option<PathBuf>, config: Option<PathBuf>, verbosity: i8) -> Result<Config> {
        let found = discover(config)?;
        let config = found.path.clone();
        let file = match &config {
            Some(path) => read_file_config(path)?,
            None => FileConfig::default(),
        };
        let mut provenance = Vec::new();
        if let (Some(path), Some(origin)) = (&config, found.origin) {
            provenance.push(Provenance {
                name: format!("--config / {}", env_name(CONFIG_FILE)),
                origin,
                shown: path.display().to_string(),
                overridden_file: false,
            });
        }
        let db_from;
        // clap has merged --db with OPSGATE_DB already; the flag wins over both.
        let db_flag = db.map(|p| (flag_or_env(DB, &p), p));
        let db = match (db_flag, file.db) {
            (Some((_, p)), _) if p.as_os_str().is_empty() => {
                return Err(config_error(format!("--db / {} is empty", env_name(DB))))
            }
            (Some((origin, p)), from_file) => {
                db_from = match origin {
                    Origin::Env => env_name(DB).to_string(),
                    _ => "--db".to_string(),
                };
                provenance.push(Provenance {
                    name: format!("--db / {} / db", env_name(DB)),
                    origin,
                    shown: shown_db(&p),
                    overridden_file: from_file.is_some(),
                });
                DbLocation::parse(expand_home(p).as_os_str())?
            }
            (None, Some(p)) => {
                db_from = format!(
                    "db in {}",
                    config.as_deref().unwrap_or(Path::new("?")).display()
                );
                provenance.push(Provenance {
                    name: "db".into(),
                    origin: Origin::File,
                    shown: shown_db(&p),
                    overridden_file: false,
                });
                DbLocation::parse(expand_home(p).as_os_str())?
            }
            (None, None) => {
                let p = default_db()?;
                db_from = format!("the default, {}; no config file sets db", DB.default);
                provenance.push(Provenance {
                    name: "db".into(),
                    origin: Origin::Default,
                    shown: p.display().to_string(),
                    overridden_file: false,
                });
                DbLocation::File(p)
            }
        };
        let lifecycle = file.lifecycle.unwrap_or_default();
        let defaults = Rules::default();
        let duration = |key: &str, value: &Option<String>, default: i64| -> Result<i64> {
            match value {
                None => Ok(default),
                Some(v) => crate::time::parse_duration(v).ok_or_else(|| {
                    config_error(format!(
                        "lifecycle.{key} = {v:?} is not a duration; expected e.g. 90s, 10m, 24h, 7d"
                    ))
                }),
            }
        };
        let mut rules = Rules {
            ttl_ms: duration("ttl", &lifecycle.ttl, defaults.ttl_ms)?,
            stale_after_cycles: lifecycle
                .stale_after_cycles
                .unwrap_or(defaults.stale_after_cycles)
                .max(0),
            reject_cooldown_ms: duration(
                "reject_cooldown",
                &lifecycle.reject_cooldown,
                defaults.reject_cooldown_ms,
            )?,
            retention_ms: duration("retention", &lifecycle.retention, defaults.retention_ms)?,
            quorum: defaults.quorum,
        };
        let run_timeout = duration("run_timeout", &lifecycle.run_timeout, 600_000)?;
        if run_timeout > MAX_RUN_TIMEOUT.as_millis() as i64 {
            return Err(config_error(format!(
                "lifecycle.run_timeout = {:?} is longer than 7d",
                lifecycle.run_timeout.unwrap_or_default()
            )));
        }
        let file_policy = file.policy.unwrap_or_default();
        let policy = Policy::new(
            &file_policy.deny,
            risk_rules(file_policy.risk)?,
            file_policy.require_reason,
        );
        if let Some(q) = file_policy.quorum {
            for (level, n) in [("low", q.low), ("medium", q.medium), ("high", q.high)] {
                if !(1..=9).contains(&n) {
                    return Err(config_error(format!(
                        "policy.quorum.{level} = {n}: expected 1 to 9 operators"
                    )));
                }
            }
            rules.quorum = q;
        }
        let runner = file.runner.unwrap_or_default();
        let runner_env = runner_env(&runner)?;
        let file_telegram = file.telegram.unwrap_or_default();
        let half_set = [
            non_empty_env(CHAT_ID).map(|_| env_name(CHAT_ID).to_string()),
            file_telegram
                .chat_id
                .map(|_| "telegram.chat_id".to_string()),
            non_empty_env(OPERATORS).map(|_| env_name(OPERATORS).to_string()),
            file_telegram
                .operators
                .as_ref()
                .map(|_| "telegram.operators".to_string()),
            (!file.route.is_empty()).then(|| "[[route]]".to_string()),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
        let (mut telegram, bot) = telegram(file_telegram, &mut provenance)?;
        let telegram_missing = if bot.is_some() && telegram.is_none() {
            Some(format!(
                "Telegram is half configured: a bot token is set but no chat; set {} (or telegram.chat_id): `opsgate telegram ids` lists the chats the bot has seen",
                env_name(CHAT_ID)
            ))
        } else {
            (telegram.is_none() && !half_set.is_empty()).then(|| {
                format!(
                    "Telegram is half configured: {} set but no bot token; set {} (or {}, or telegram.token_file), or remove them",
                    half_set.join(", "),
                    env_name(TOKEN),
                    env_name(TOKEN_FILE)
                )
            })
        };
        let routes = routes(file.route)?;
        match &mut telegram {
            Some(tg) => tg.routes = routes,
            None if !routes.is_empty() && telegram_missing.is_none() => {
                return Err(config_error(
                    "[[route]] entries need Telegram configured (a token and a default chat_id)"
                        .into(),
                ))
            }
            None => {}
        }
        Ok(Config {
            db,
            runner_sources: runner.sources,
            runner_env,
            secrets: Vec::new(),
            redaction: Redaction {
                builtin: file_policy.redact_builtin.unwrap_or(true),
                patterns: file_policy.redact,
                rules_file: file_policy.secret_rules.map(expand_home),
                public_env: runner.public_env.clone(),
            },
            config_path: config.clone(),
            config_why: found.why,
            db_from,
            fixed_now: now_override()?,
            clock_skew: skew_override()?,
            db_clock: DbClock::default(),
            sql_log: non_empty_env(SQL_LOG).map(PathBuf::from),
            verbosity,
            telegram,
            bot,
            telegram_missing,
            rules,
            run_timeout: Duration::from_millis(run_timeout.max(1000) as u64),
            policy,
            provenance,
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
                env_name(TOKEN),
                env_name(TOKEN_FILE),
                env_name(CHAT_ID)
            ))
        })?;
        if tg.operators.is_empty() && tg.routes.iter().all(|r| r.operators.is_none()) {
            return Err(config_error(format!(
                "no operators configured: set {} (or telegram.operators) to the Telegram user ids allowed to decide; refusing to accept button presses from anyone",
                env_name(OPERATORS)
            )));
        }
        Ok(tg)
    }
}

/// The config file chosen by [`discover`] and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: Option<PathBuf>,
    /// Flag or environment when the file was named; `None` when discovered (or none).
    pub origin: Option<Origin>,
    /// One line for `doctor`: which rule picked it, and what else was there.
    pub why: String,
}

/// Which config file to read (see the module doc): `explicit` is clap's merge of
/// `--config` and `OPSGATE_CONFIG`, which must exist; otherwise the user's file, then the
/// host's, each only when it exists. A path that cannot be looked at is an error naming
/// it, never a silent "no config file".
pub fn discover(explicit: Option<PathBuf>) -> Result<Found> {
    if let Some(path) = explicit {
        let origin = flag_or_env(CONFIG_FILE, &path);
        let why = match origin {
            Origin::Env => format!("named by {}", env_name(CONFIG_FILE)),
            _ => "named by --config".to_string(),
        };
        return Ok(Found {
            path: Some(path),
            origin: Some(origin),
            why,
        });
    }
    let system = system_config();
    let exists = |path: &Path| -> Result<bool> {
        path.try_exists().map_err(|e| {
            Error::new(
                if e.kind() == std::io::ErrorKind::PermissionDenied {
                    Kind::Permission
                } else {
                    Kind::Config
                },
                format!("cannot look at config file {}: {e}", path.display()),
            )
            .into()
        })
    };
    // A user config this account may not look at (another user's HOME kept by `su` or
    // `setpriv`) is not this account's: skipped, and said so by `doctor`.
    let mut unreadable = String::new();
    if let Some(user) = user_config() {
        let found = match user.try_exists() {
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                unreadable = format!(" ({} skipped: permission denied)", user.display());
                false
            }
            _ => exists(&user)?,
        };
        if found {
            let shadowed = if exists(&system)? {
                format!("; the host's {} is not read", system.display())
            } else {
                String::new()
            };
            return Ok(Found {
                path: Some(user),
                origin: None,
                why: format!(
                    "the user's config file (no --config nor {}){shadowed}",
                    env_name(CONFIG_FILE)
                ),
            });
        }
    }
    if exists(&system)? {
        return Ok(Found {
            path: Some(system),
            origin: None,
            why: format!(
                "the host's config file (no --config, {} nor user config file){unreadable}",
                env_name(CONFIG_FILE)
            ),
        });
    }
    let user = user_config()
        .map(|p| format!("{}, ", p.display()))
        .unwrap_or_default();
    Ok(Found {
        path: None,
        origin: None,
        why: format!(
            "no config file: no --config nor {}, and neither {user}nor {} exists (flags, environment and defaults only){unreadable}",
            env_name(CONFIG_FILE),
            system.display()
        ),
    })
}

/// The user's config file: `$XDG_CONFIG_HOME/opsgate/opsgate.toml`, else
/// `$HOME/.config/opsgate/opsgate.toml`.
fn user_config() -> Option<PathBuf> {
    let base = match non_empty_env(CONFIG_HOME) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(
            std::env::var("HOME")
                .ok()
                .filter(|v| !v.trim().is_empty())?,
        )
        .join(".config"),
    };
    Some(base.join("opsgate").join("opsgate.toml"))
}

/// The host's config file: [`SYSTEM_CONFIG`] or its default.
fn system_config() -> PathBuf {
    PathBuf::from(non_empty_env(SYSTEM_CONFIG).unwrap_or_else(|| SYSTEM_CONFIG.default.into()))
}

fn read_file_config(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        config_error(format!(
            "cannot read config file {} ({} / --config): {e}",
            path.display(),
            env_name(CONFIG_FILE)
        ))
    })?;
    toml::from_str(&text).map_err(|e| config_error(toml_reason(path, &e)))
}

/// A TOML error as one line with its reason: `config file F line 4, column 1: unknown
/// field `operator`, expected one of ...` (toml's own text puts the reason after a
/// snippet of the file).
fn toml_reason(path: &Path, e: &toml::de::Error) -> String {
    let at = e
        .span()
        .map(|span| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let before = text.get(..span.start).unwrap_or("");
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(" line {line}, column {column}")
        })
        .unwrap_or_default();
    let reason = e.message().trim().replace('\n', " ");
    format!("config file {}{at}: {reason}", path.display())
}

/// Whether a value clap merged from a flag and its environment variable came from the
/// variable (it equals it) or the flag.
fn flag_or_env(setting: Setting, value: &Path) -> Origin {
    match non_empty_env(setting) {
        Some(v) if Path::new(&v) == value => Origin::Env,
        _ => Origin::Flag,
    }
}

/// A database location as `doctor` may show it: a URL's password masked.
fn shown_db(p: &Path) -> String {
    mask_url(&p.display().to_string())
}
/// The password in a URL, if it has one.
pub fn url_password(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let (user, _) = authority.rsplit_once('@')?;
    let (_, password) = user.split_once(':')?;
    (!password.is_empty()).then(|| password.to_string())
}

/// The URL with its password replaced by `***`.
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{scheme}://{name}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// opsgate's state directory: `$XDG_STATE_HOME/opsgate`, else
/// `$HOME/.local/state/opsgate`.
fn state_dir() -> Option<PathBuf> {
    if let Some(dir) = non_empty_env(STATE_HOME) {
        return Some(PathBuf::from(dir).join("opsgate"));
    }
    std::env::var("HOME")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|home| PathBuf::from(home).join(".local/state/opsgate"))
}

/// Where a runner spools finished commands' outcomes ([`crate::run::spool`]): `spool` in
/// the state directory, else (no `XDG_STATE_HOME` nor `HOME`) beside a SQLite database.
pub fn spool_dir(db: &DbLocation) -> Option<PathBuf> {
    match (state_dir(), db) {
        (Some(dir), _) => Some(dir.join("spool")),
        (None, DbLocation::File(path)) => Some(
            path.parent()
                .unwrap_or_else(|| Path::new("."))
                .join("opsgate-spool"),
        ),
        (None, DbLocation::Postgres(_)) => None,
    }
}

/// `$XDG_STATE_HOME/opsgate/opsgate.db`, else `$HOME/.local/state/opsgate/opsgate.db`.
fn default_db() -> Result<PathBuf> {
    match state_dir() {
        Some(dir) => Ok(dir.join("opsgate.db")),
        None => Err(config_error(format!(
            "no database path: set --db, {}, {} or HOME",
            env_name(DB),
            env_name(STATE_HOME)
        ))),
    }
}

fn skew_override() -> Result<i64> {
    let Some(v) = non_empty_env(CLOCK_SKEW) else {
        return Ok(0);
    };
    let (sign, digits) = match v.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, v.strip_prefix('+').unwrap_or(&v)),
    };
    crate::time::parse_duration(digits)
        .map(|ms| sign * ms)
        .ok_or_else(|| {
            config_error(format!(
                "{}={v:?} is not a duration; expected e.g. +130s, -25h",
                env_name(CLOCK_SKEW)
            ))
        })
}

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

fn now_override() -> Result<Option<i64>> {
    match non_empty_env(NOW) {
        None => Ok(None),
        Some(v) => crate::time::parse_instant(&v).map(Some).ok_or_else(|| {
            config_error(format!(
                "{}={v:?} is not a time; expected RFC 3339 (2026-11-22T14:00:00Z) or unix seconds",
                env_name(NOW)
            ))
        }),
    }
}

/// The Telegram settings (token, chat and the rest) and the bot access; a token without a
/// chat is the bot alone (the caller makes that a half configuration).
fn telegram(
    file: FileTelegram,
    prov: &mut Vec<Provenance>,
) -> Result<(Option<TelegramConfig>, Option<BotAccess>)> {
    let secret = |_: &String| "(secret)".to_string();
    let path_shown = |p: &PathBuf| p.display().to_string();
    // The environment's token (a file or the value) wins over the file's token_file.
    let file_has_token = file.token_file.is_some();
    let token_file = pick(
        prov,
        TOKEN_FILE,
        non_empty_env(TOKEN_FILE).map(PathBuf::from),
        file.token_file
            .map(expand_home)
            .filter(|_| non_empty_env(TOKEN).is_none()),
        path_shown,
    );
    let token = match token_file {
        Some(path) => Some(read_token_file(&path)?),
        None => {
            let token = pick(prov, TOKEN, non_empty_env(TOKEN), None, secret);
            if let (Some(p), true) = (prov.last_mut(), file_has_token && token.is_some()) {
                p.overridden_file = true; // the file's token_file loses to the variable
            }
            token.map(|t| t.trim().to_string())
        }
    };
    let Some(token) = token else {
        return Ok((None, None));
    };
    if !valid_token(&token) {
        return Err(config_error(format!(
            "the Telegram token ({} or token file) is malformed; expected <bot id>:<secret> as BotFather prints it",
            env_name(TOKEN)
        )));
    }
    let env_chat = match non_empty_env(CHAT_ID) {
        None => None,
        Some(raw) => Some(raw.trim().parse::<i64>().map_err(|_| {
            config_error(format!(
                "{}={raw:?} is not a numeric chat id",
                env_name(CHAT_ID)
            ))
        })?),
    };
    let chat_id = pick(prov, CHAT_ID, env_chat, file.chat_id, i64::to_string);
    let env_operators = match non_empty_env(OPERATORS) {
        None => None,
        Some(raw) => Some(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<u64>().map_err(|_| {
                        config_error(format!(
                            "{}: {s:?} is not a Telegram user id; expected comma-separated numbers",
                            env_name(OPERATORS)
                        ))
                    })
                })
                .collect::<Result<Vec<u64>>>()?,
        ),
    };
    let operators = pick(prov, OPERATORS, env_operators, file.operators, |o| {
        format!("{o:?}")
    })
    .unwrap_or_default();
    let api_url = pick(prov, API_URL, non_empty_env(API_URL), file.api_url, |u| {
        u.clone()
    });
    if let Some(url) = &api_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(config_error(format!(
                "{} / telegram.api_url = {url:?}: expected an http(s) URL",
                env_name(API_URL)
            )));
        }
    }
    let env_timeout = match non_empty_env(TIMEOUT) {
        None => None,
        Some(raw) => Some(raw.trim().parse::<u64>().map_err(|_| {
            config_error(format!(
                "{}={raw:?} is not a number of seconds",
                env_name(TIMEOUT)
            ))
        })?),
    };
    let timeout = pick(prov, TIMEOUT, env_timeout, file.timeout_secs, |t| {
        format!("{t}s")
    })
    .unwrap_or(15);
    let env_status = match non_empty_env(STATUS_MESSAGE) {
        None => None,
        Some(raw) => Some(match raw.trim() {
            "1" | "true" | "on" | "yes" => true,
            "0" | "false" | "off" | "no" => false,
            _ => {
                return Err(config_error(format!(
                    "{}={raw:?}: expected true or false",
                    env_name(STATUS_MESSAGE)
                )))
            }
        }),
    };
    let status_message = pick(prov, STATUS_MESSAGE, env_status, file.status_message, |b| {
        b.to_string()
    })
    .unwrap_or(false);
    let access = BotAccess {
        token: Secret(token),
        api_url,
        timeout: Duration::from_secs(timeout.clamp(1, 300)),
    };
    let Some(chat_id) = chat_id else {
        return Ok((None, Some(access)));
    };
    Ok((
        Some(TelegramConfig {
            token: access.token.clone(),
            chat_id,
            operators,
            api_url: access.api_url.clone(),
            timeout: access.timeout,
            max_wait: Duration::from_secs(file.max_wait_secs.unwrap_or(60).min(3600)),
            routes: Vec::new(),
            status_message,
        }),
        Some(access),
    ))
}

/// The names executed commands get from opsgate's environment, always.
pub const BASE_ENV: &[&str] = &[
    "PATH", "HOME", "LANG", "TZ", "USER", "LOGNAME", "SHELL", "TERM",
];

/// `[runner] env` and `pass_env`, checked: `NAME=VALUE` pairs and names; `OPSGATE_*` is
/// never passed to a command.
fn runner_env(runner: &FileRunner) -> Result<Vec<(String, String)>> {
    let valid = |name: &str| {
        !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let ours = |name: &str| name.to_ascii_uppercase().starts_with("OPSGATE_");
    let mut out = Vec::new();
    for name in &runner.pass_env {
        if !valid(name) {
            return Err(config_error(format!(
                "runner.pass_env: {name:?} is not a variable name"
            )));
        }
        if ours(name) {
            return Err(config_error(format!(
                "runner.pass_env: {name} is opsgate's own setting and is never passed to a command"
            )));
        }
        if let Ok(value) = std::env::var(name) {
            out.push((name.clone(), value));
        }
    }
    for pair in &runner.env {
        let Some((name, value)) = pair.split_once('=').filter(|(n, _)| valid(n)) else {
            return Err(config_error(format!(
                "runner.env: {pair:?} is not NAME=VALUE"
            )));
        };
        if ours(name) {
            return Err(config_error(format!(
                "runner.env: {name} is opsgate's own setting and is never passed to a command"
            )));
        }
        out.retain(|(n, _)| n != name);
        out.push((name.to_string(), value.to_string()));
    }
    Ok(out)
}

/// `[policy] risk`: each rule names a level and a pattern, verbs or both; the patterns are
/// compiled by [`Policy::check`] like the deny patterns.
fn risk_rules(file: Vec<FileRiskRule>) -> Result<Vec<crate::policy::RiskRule>> {
    use crate::model::Risk;
    file.into_iter()
        .enumerate()
        .map(|(n, r)| {
            let at = format!("policy.risk rule {}", n + 1);
            let level = match r.level.trim().to_ascii_lowercase().as_str() {
                "low" => Risk::Low,
                "medium" => Risk::Medium,
                "high" => Risk::High,
                _ => {
                    return Err(config_error(format!(
                        "{at}: level {:?}: expected low, medium or high",
                        r.level
                    )))
                }
            };
            let pattern = r.pattern.filter(|p| !p.is_empty());
            if pattern.is_none() && r.verbs.is_empty() {
                return Err(config_error(format!(
                    "{at}: needs a pattern, verbs or both (it would match every command)"
                )));
            }
            let mut verbs = Vec::new();
            for verb in &r.verbs {
                let verb = verb.trim().to_ascii_lowercase();
                if verb.is_empty() || verb.contains(':') || verb.contains(char::is_whitespace) {
                    return Err(config_error(format!(
                        "{at}: verb {verb:?}: expected one word of a logical key, e.g. \"stop\""
                    )));
                }
                verbs.push(verb);
            }
            Ok(crate::policy::RiskRule {
                pattern,
                verbs,
                level,
            })
        })
        .collect()
}

fn routes(file: Vec<FileRoute>) -> Result<Vec<Route>> {
    file.into_iter()
        .enumerate()
        .map(|(n, r)| {
            let sources = r
                .sources
                .iter()
                .map(|g| {
                    glob::Pattern::new(g).map_err(|e| {
                        config_error(format!("route {}: source glob {g:?}: {e}", n + 1))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let risks = r
                .risk
                .iter()
                .map(|risk| {
                    let level = risk.trim().to_ascii_lowercase();
                    match level.as_str() {
                        "low" | "medium" | "high" => Ok(level),
                        _ => Err(config_error(format!(
                            "route {}: risk {risk:?}: expected low, medium or high",
                            n + 1
                        ))),
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            if r.operators.as_ref().is_some_and(Vec::is_empty) {
                return Err(config_error(format!(
                    "route {}: operators = []: nobody could decide its cards; leave it out to use telegram.operators",
                    n + 1
                )));
            }
            Ok(Route {
                sources,
                risks,
                chat_id: r.chat_id,
                topic: r.topic,
                operators: r.operators,
            })
        })
        .collect()
}

fn valid_token(token: &str) -> bool {
    match token.split_once(':') {
        Some((id, secret)) => {
            !id.is_empty()
                && id.chars().all(|c| c.is_ascii_digit())
                && !secret.is_empty()
                && secret
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        }
        None => false,
    }
}

fn read_token_file(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| config_error(format!("cannot read token file {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(config_error(format!(
            "token file {} is not a file; expected a file holding the bot token",
            path.display()
        )));
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(config_error(format!(
            "token file {} is readable by group or others (mode {mode:o}); run chmod 600 on it",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading token file {}", path.display()))?;
    Ok(text.trim().to_string())
}

/// The log filter [`LOG`] sets, if any.
pub fn log_filter() -> Option<String> {
    non_empty_env(LOG)
}

/// A setting's environment variable, when set and not blank.
fn non_empty_env(setting: Setting) -> Option<String> {
    std::env::var(setting.env?)
        .ok()
        .filter(|v| !v.trim().is_empty())
}
