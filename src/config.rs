//! Configuration: every environment variable is read here, by one function each, and every
//! error names its variable or key. The command line, the environment and the optional
//! TOML file become one validated [`Config`] before any work starts.
//!
//! Precedence: an explicit config file (`--config` / `OPSGATE_CONFIG`) overrides the
//! environment; `--db` overrides both for the database path.

use crate::error::{Error, Kind};
use crate::store::Rules;
use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Database path (`--db` overrides it).
pub const ENV_DB: &str = "OPSGATE_DB";
/// Pins the clock, as RFC 3339 or unix seconds: for tests and replaying old output.
pub const ENV_NOW: &str = "OPSGATE_NOW";
/// Optional TOML config file.
pub const ENV_CONFIG: &str = "OPSGATE_CONFIG";
/// Telegram bot token (never accepted on the command line).
pub const ENV_TOKEN: &str = "OPSGATE_TELEGRAM_TOKEN";
/// File holding the bot token; must not be readable by group or others.
pub const ENV_TOKEN_FILE: &str = "OPSGATE_TELEGRAM_TOKEN_FILE";
/// Chat the cards go to.
pub const ENV_CHAT_ID: &str = "OPSGATE_TELEGRAM_CHAT_ID";
/// Comma-separated Telegram user ids allowed to decide.
pub const ENV_OPERATORS: &str = "OPSGATE_TELEGRAM_OPERATORS";
/// Bot API base URL (self-hosted Bot API servers, tests).
pub const ENV_API_URL: &str = "OPSGATE_TELEGRAM_API_URL";
/// Seconds one Telegram request may take before it counts as a temporary failure.
pub const ENV_TIMEOUT: &str = "OPSGATE_TELEGRAM_TIMEOUT";

/// Settings every command needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub db: PathBuf,
    /// The config file, if one was given (child processes get it too).
    pub config_path: Option<PathBuf>,
    /// Fixed clock from [`ENV_NOW`], if set.
    pub fixed_now: Option<i64>,
    pub verbosity: i8,
    /// Telegram, when a token is configured.
    pub telegram: Option<TelegramConfig>,
    /// Lifecycle timing.
    pub rules: Rules,
    /// Default bound on one executed command.
    pub run_timeout: Duration,
    pub policy: Policy,
}

/// The `[policy]` section.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Patterns matched against the canonical command: a match is rejected at ingest.
    pub deny: Vec<regex::Regex>,
    /// Rejecting needs a reason (a reply on Telegram, `--reason` on the command line).
    pub require_reason: bool,
}

impl Policy {
    /// The first deny pattern that matches the raw command or its canonical form: a
    /// match on either denies, so neither spelling nor normalization hides a command.
    pub fn denies(&self, raw: &str, canonical: &str) -> Option<String> {
        self.deny
            .iter()
            .find(|re| re.is_match(raw) || re.is_match(canonical))
            .map(|re| re.as_str().to_string())
    }
}

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
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
}

/// The TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    db: Option<PathBuf>,
    telegram: Option<FileTelegram>,
    lifecycle: Option<FileLifecycle>,
    policy: Option<FilePolicy>,
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
}

fn config_error(message: String) -> anyhow::Error {
    Error::new(Kind::Config, message).into()
}

impl Config {
    /// Builds the configuration from the command line (`--db`, `--config`, both already
    /// merged with their environment variables by clap) and the environment.
    pub fn new(db: Option<PathBuf>, config: Option<PathBuf>, verbosity: i8) -> Result<Config> {
        let file = match &config {
            Some(path) => read_file_config(path)?,
            None => FileConfig::default(),
        };
        let db = match db.or(file.db) {
            Some(p) if p.as_os_str().is_empty() => {
                return Err(config_error(format!("--db / {ENV_DB} is empty")))
            }
            Some(p) => p,
            None => default_db()?,
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
        let rules = Rules {
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
        };
        let run_timeout = duration("run_timeout", &lifecycle.run_timeout, 600_000)?;
        if run_timeout > crate::run::MAX_TIMEOUT.as_millis() as i64 {
            return Err(config_error(format!(
                "lifecycle.run_timeout = {:?} is longer than 7d",
                lifecycle.run_timeout.unwrap_or_default()
            )));
        }
        let file_policy = file.policy.unwrap_or_default();
        let deny = file_policy
            .deny
            .iter()
            .map(|p| {
                regex::Regex::new(p).map_err(|e| {
                    let first = e
                        .to_string()
                        .lines()
                        .last()
                        .unwrap_or("")
                        .trim()
                        .to_string();
                    config_error(format!(
                        "policy.deny pattern {p:?} is not a valid regex: {first}"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Config {
            db,
            config_path: config.clone(),
            fixed_now: now_override()?,
            verbosity,
            telegram: telegram(file.telegram.unwrap_or_default())?,
            rules,
            run_timeout: Duration::from_millis(run_timeout.max(1000) as u64),
            policy: Policy {
                deny,
                require_reason: file_policy.require_reason,
            },
        })
    }

    /// Current time in unix milliseconds.
    pub fn now(&self) -> i64 {
        self.fixed_now.unwrap_or_else(crate::time::system_now_ms)
    }

    /// Telegram settings with at least one operator, for commands that apply decisions.
    pub fn telegram_for_decisions(&self) -> Result<&TelegramConfig> {
        let tg = self.telegram.as_ref().ok_or_else(|| {
            config_error(format!(
                "Telegram is not configured: set {ENV_TOKEN} (or {ENV_TOKEN_FILE}, or telegram.token_file) and {ENV_CHAT_ID}"
            ))
        })?;
        if tg.operators.is_empty() {
            return Err(config_error(format!(
                "no operators configured: set {ENV_OPERATORS} (or telegram.operators) to the Telegram user ids allowed to decide; refusing to accept button presses from anyone"
            )));
        }
        Ok(tg)
    }
}

fn read_file_config(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        config_error(format!(
            "cannot read config file {} ({ENV_CONFIG} / --config): {e}",
            path.display()
        ))
    })?;
    toml::from_str(&text).map_err(|e| {
        let first = e.to_string().lines().next().unwrap_or("").to_string();
        config_error(format!("config file {}: {first}", path.display()))
    })
}

/// `$XDG_STATE_HOME/opsgate/opsgate.db`, else `$HOME/.local/state/opsgate/opsgate.db`.
fn default_db() -> Result<PathBuf> {
    if let Some(dir) = non_empty_env("XDG_STATE_HOME") {
        return Ok(PathBuf::from(dir).join("opsgate").join("opsgate.db"));
    }
    match non_empty_env("HOME") {
        Some(home) => Ok(PathBuf::from(home)
            .join(".local/state/opsgate")
            .join("opsgate.db")),
        None => Err(config_error(format!(
            "no database path: set --db, {ENV_DB}, XDG_STATE_HOME or HOME"
        ))),
    }
}

fn now_override() -> Result<Option<i64>> {
    match non_empty_env(ENV_NOW) {
        None => Ok(None),
        Some(v) => crate::time::parse_instant(&v).map(Some).ok_or_else(|| {
            config_error(format!(
                "{ENV_NOW}={v:?} is not a time; expected RFC 3339 (2026-11-22T14:00:00Z) or unix seconds"
            ))
        }),
    }
}

fn telegram(file: FileTelegram) -> Result<Option<TelegramConfig>> {
    let token = match file
        .token_file
        .or_else(|| non_empty_env(ENV_TOKEN_FILE).map(PathBuf::from))
    {
        Some(path) => Some(read_token_file(&path)?),
        None => non_empty_env(ENV_TOKEN).map(|t| t.trim().to_string()),
    };
    let Some(token) = token else { return Ok(None) };
    if !valid_token(&token) {
        return Err(config_error(format!(
            "the Telegram token ({ENV_TOKEN} or token file) is malformed; expected <bot id>:<secret> as BotFather prints it"
        )));
    }
    let chat_id = match file.chat_id {
        Some(id) => id,
        None => {
            let raw = non_empty_env(ENV_CHAT_ID).ok_or_else(|| {
                config_error(format!(
                    "a Telegram token is set but no chat: set {ENV_CHAT_ID} (or telegram.chat_id)"
                ))
            })?;
            raw.trim().parse().map_err(|_| {
                config_error(format!("{ENV_CHAT_ID}={raw:?} is not a numeric chat id"))
            })?
        }
    };
    let operators = match file.operators {
        Some(ops) => ops,
        None => match non_empty_env(ENV_OPERATORS) {
            None => Vec::new(),
            Some(raw) => raw
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<u64>().map_err(|_| {
                        config_error(format!(
                            "{ENV_OPERATORS}: {s:?} is not a Telegram user id; expected comma-separated numbers"
                        ))
                    })
                })
                .collect::<Result<_>>()?,
        },
    };
    let api_url = file.api_url.or_else(|| non_empty_env(ENV_API_URL));
    if let Some(url) = &api_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(config_error(format!(
                "{ENV_API_URL} / telegram.api_url = {url:?}: expected an http(s) URL"
            )));
        }
    }
    let timeout = match file.timeout_secs {
        Some(s) => s,
        None => match non_empty_env(ENV_TIMEOUT) {
            None => 15,
            Some(raw) => raw.trim().parse().map_err(|_| {
                config_error(format!("{ENV_TIMEOUT}={raw:?} is not a number of seconds"))
            })?,
        },
    };
    Ok(Some(TelegramConfig {
        token: Secret(token),
        chat_id,
        operators,
        api_url,
        timeout: Duration::from_secs(timeout.clamp(1, 300)),
        max_wait: Duration::from_secs(file.max_wait_secs.unwrap_or(60).min(3600)),
    }))
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
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(config_error(format!(
                "token file {} is readable by group or others (mode {mode:o}); run chmod 600 on it",
                path.display()
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading token file {}", path.display()))?;
    Ok(text.trim().to_string())
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}
