//! The settings table: each setting is one [`Entry`] carrying its name, environment
//! variable, TOML key, documented default, typed default, parser and help. `--help`'s
//! environment section, the man page, the README's table, `doctor`'s provenance lines and
//! the parsing ([`super::layers`]) all read these entries; nothing else names a variable
//! or a key.
//!
//! The documented default (`Setting::default`, the text the README shows) and the typed
//! default (`Entry::default_value`, the value applied) are tied by a unit test: the text
//! parsed by the entry's own parser equals the typed value, and a `Config` built from
//! nothing holds it. A default written `$VAR/...` is computed from the environment.
//!
//! Adding a setting: its entry here and its line in [`SETTINGS`], one
//! `layers.get(&ENTRY)` where `Config::build` uses it (the unit test of applied defaults
//! fails until it checks the new one), and the README's table pasted from
//! [`markdown_table`] (a test compares them).

use super::routes::Route;
use super::rules::Quorum;
use crate::policy::RiskRule;
use serde::de::DeserializeOwned;
use std::path::PathBuf;

/// One setting as documented: where it comes from and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// A short name, for code and tests (`chat_id`).
    pub name: &'static str,
    /// The environment variable, if it can be set there.
    pub env: Option<&'static str>,
    /// The TOML key, if it can be set in the config file.
    pub key: Option<&'static str>,
    /// The default as documented (`--help`, README); empty: unset by default.
    pub default: &'static str,
    pub help: &'static str,
}

impl Setting {
    /// The name a user writes: `OPSGATE_TELEGRAM_CHAT_ID / telegram.chat_id`.
    pub fn label(&self) -> String {
        match (self.env, self.key) {
            (Some(e), Some(k)) => format!("{e} / {k}"),
            (Some(e), None) => e.to_string(),
            (None, Some(k)) => k.to_string(),
            (None, None) => self.name.to_string(),
        }
    }

    /// The environment variable's name, or "" for a file-only setting.
    pub fn env_name(&self) -> &'static str {
        self.env.unwrap_or("")
    }

    /// The environment variable, else the key: how an error about a text value names it.
    fn text_name(&self) -> &'static str {
        self.env.or(self.key).unwrap_or(self.name)
    }

    /// Whether the default is computed from the environment (`$HOME/.config`).
    pub fn computed_default(&self) -> bool {
        self.default.starts_with('$')
    }
}

/// A setting with its type: the typed default, the parser and how `doctor` shows a value.
#[derive(Clone, Copy)]
pub struct Entry<T: 'static> {
    pub setting: Setting,
    /// The default applied when neither a flag, the environment nor the file sets it
    /// (`None`: unset, or computed from the environment when the text starts with `$`).
    pub default_value: fn() -> Option<T>,
    /// Parses a value (an environment variable's text or a config file's value); the
    /// error names the variable or the key.
    pub parse: fn(&Setting, Raw<'_>) -> Result<T, String>,
    /// How `doctor` shows a value (secrets never).
    pub show: fn(&T) -> String,
}

impl<T> std::ops::Deref for Entry<T> {
    type Target = Setting;
    fn deref(&self) -> &Setting {
        &self.setting
    }
}

/// An entry whatever its type: what the table ([`SETTINGS`]) holds. It dereferences to
/// its [`Setting`], so `s.env`, `s.key` and `s.help` read as before.
pub trait AnyEntry {
    fn setting(&self) -> &Setting;
    /// The documented default parsed by the entry's parser, and the typed default,
    /// both as `Debug` text (`None` for no default or a computed one).
    #[cfg(test)]
    fn defaults(&self) -> (Option<String>, Option<String>);
    /// Parses `text`; the error, if any.
    #[cfg(test)]
    fn reject(&self, text: &str) -> Option<String>;
}

impl<T: std::fmt::Debug> AnyEntry for Entry<T> {
    fn setting(&self) -> &Setting {
        &self.setting
    }
    #[cfg(test)]
    #[allow(clippy::unwrap_used)]
    fn defaults(&self) -> (Option<String>, Option<String>) {
        let documented = (!self.default.is_empty() && !self.computed_default()).then(|| {
            let v = (self.parse)(self, Raw::Text(self.default))
                .unwrap_or_else(|e| panic!("{}'s default does not parse: {e}", self.name));
            format!("{v:?}")
        });
        (documented, (self.default_value)().map(|v| format!("{v:?}")))
    }
    #[cfg(test)]
    fn reject(&self, text: &str) -> Option<String> {
        (self.parse)(self, Raw::Text(text)).err()
    }
}

impl std::ops::Deref for dyn AnyEntry {
    type Target = Setting;
    fn deref(&self) -> &Setting {
        self.setting()
    }
}

/// A value as written: text (an environment variable, the table's default column) or a
/// config file's value.
pub enum Raw<'a> {
    Text(&'a str),
    File(super::file::FileValue<'a>),
}

impl Raw<'_> {
    /// A file value deserialized as `T` (a type error names the file, line and column),
    /// else the text read by `text`.
    fn either<T: DeserializeOwned>(
        self,
        text: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, String> {
        match self {
            Raw::Text(t) => text(t),
            Raw::File(v) => v.de(),
        }
    }
}

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

// ---- parsers of the common kinds (the domain ones live beside their rules) ----

fn path(_: &Setting, raw: Raw<'_>) -> Result<PathBuf, String> {
    raw.either(|t| Ok(PathBuf::from(t)))
}

fn text(_: &Setting, raw: Raw<'_>) -> Result<String, String> {
    raw.either(|t| Ok(t.to_string()))
}

/// Whole seconds.
fn seconds(s: &Setting, raw: Raw<'_>) -> Result<u64, String> {
    raw.either(|t| {
        t.trim()
            .parse::<u64>()
            .map_err(|_| format!("{}={t:?} is not a number of seconds", s.text_name()))
    })
}

/// A count (negative reads as 0 where it is applied).
fn count(s: &Setting, raw: Raw<'_>) -> Result<i64, String> {
    raw.either(|t| {
        t.trim()
            .parse::<i64>()
            .map_err(|_| format!("{}={t:?} is not a number", s.text_name()))
    })
}

/// An on/off switch: `1`, `true`, `on`, `yes` or `0`, `false`, `off`, `no`.
fn switch(s: &Setting, raw: Raw<'_>) -> Result<bool, String> {
    raw.either(|t| match t.trim() {
        "1" | "true" | "on" | "yes" => Ok(true),
        "0" | "false" | "off" | "no" => Ok(false),
        _ => Err(format!("{}={t:?}: expected true or false", s.text_name())),
    })
}

/// A duration (`90s`, `10m`, `24h`, `7d`), in milliseconds.
pub(super) fn duration(s: &Setting, raw: Raw<'_>) -> Result<i64, String> {
    let written: String = raw.either(|t| Ok(t.to_string()))?;
    crate::time::parse_duration(&written).ok_or_else(|| {
        format!(
            "{} = {written:?} is not a duration; expected e.g. 90s, 10m, 24h, 7d",
            s.text_name()
        )
    })
}

/// An instant: RFC 3339 or unix seconds, in unix milliseconds.
/// A duration with an optional sign (`+130s`, `-25h`), in milliseconds.
fn signed_duration(s: &Setting, raw: Raw<'_>) -> Result<i64, String> {
    raw.either(|t| {
        let (sign, digits) = match t.strip_prefix('-') {
            Some(rest) => (-1, rest),
            None => (1, t.strip_prefix('+').unwrap_or(t)),
        };
        crate::time::parse_duration(digits)
            .map(|ms| sign * ms)
            .ok_or_else(|| {
                format!(
                    "{}={t:?} is not a duration; expected e.g. +130s, -25h",
                    s.text_name()
                )
            })
    })
}

fn show_signed_duration(ms: &i64) -> String {
    match *ms {
        ms if ms < 0 => format!("-{}", show_duration(&-ms)),
        ms => show_duration(&ms),
    }
}

fn instant(s: &Setting, raw: Raw<'_>) -> Result<i64, String> {
    raw.either(|t| {
        crate::time::parse_instant(t).ok_or_else(|| {
            format!(
                "{}={t:?} is not a time; expected RFC 3339 (2026-11-22T14:00:00Z) or unix seconds",
                s.text_name()
            )
        })
    })
}

/// A value of the file's own types (lists, tables, booleans); as text, TOML syntax
/// (`[]`, `{ high = 2 }`, `true`).
pub(super) fn toml_value<T: DeserializeOwned>(s: &Setting, raw: Raw<'_>) -> Result<T, String> {
    raw.either(|t| {
        toml::de::ValueDeserializer::parse(t)
            .and_then(T::deserialize)
            .map_err(|e| format!("{} = {t}: {}", s.text_name(), e.message().trim()))
    })
}

// ---- how doctor shows values ----

#[allow(clippy::ptr_arg)] // an entry's `show` takes `&T`
fn show_path(p: &PathBuf) -> String {
    p.display().to_string()
}

fn show_secret(_: &String) -> String {
    "(secret)".to_string()
}

fn show_display<T: std::fmt::Display>(v: &T) -> String {
    v.to_string()
}

fn show_debug<T: std::fmt::Debug>(v: &T) -> String {
    format!("{v:?}")
}

fn show_seconds(t: &u64) -> String {
    format!("{t}s")
}

fn show_duration(ms: &i64) -> String {
    crate::time::human_duration(*ms)
}

fn show_instant(ms: &i64) -> String {
    crate::time::rfc3339(*ms)
}

#[allow(clippy::ptr_arg)] // an entry's `show` takes `&T`
fn show_count<T>(v: &Vec<T>) -> String {
    match v.len() {
        1 => "1 entry".to_string(),
        n => format!("{n} entries"),
    }
}

pub const DB: Entry<PathBuf> = Entry {
    setting: Setting {
        name: "db",
        env: Some("OPSGATE_DB"),
        key: Some("db"),
        default: "$XDG_STATE_HOME/opsgate/opsgate.db",
        help: "database (`--db`): a SQLite file path (directories created 0700, the file 0600) or a `postgres://` URL (one queue for many hosts)",
    },
    default_value: || None,
    parse: path,
    show: show_path,
};
pub const CONFIG_FILE: Entry<PathBuf> = Entry {
    setting: Setting {
        name: "config",
        env: Some("OPSGATE_CONFIG"),
        key: None,
        default: "",
        help: "TOML config file (`--config`); the environment and flags override its values. Unset: the user's config file if it exists, else the system's",
    },
    default_value: || None,
    parse: path,
    show: show_path,
};
pub const CONFIG_HOME: Entry<PathBuf> = Entry {
    setting: Setting {
        name: "config_home",
        env: Some("XDG_CONFIG_HOME"),
        key: None,
        default: "$HOME/.config",
        help: "base of the user's config file (`opsgate/opsgate.toml`), read when it exists and no --config / OPSGATE_CONFIG is given",
    },
    default_value: || None,
    parse: path,
    show: show_path,
};
pub const SYSTEM_CONFIG: Entry<PathBuf> = Entry {
    setting: Setting {
        name: "system_config",
        env: Some("OPSGATE_SYSTEM_CONFIG"),
        key: None,
        default: "/etc/opsgate/opsgate.toml",
        help: "the host's config file, read when it exists and there is no --config, OPSGATE_CONFIG nor user config file (set it for another prefix, or in tests)",
    },
    default_value: || Some(PathBuf::from("/etc/opsgate/opsgate.toml")),
    parse: path,
    show: show_path,
};
pub const TOKEN: Entry<String> = Entry {
    setting: Setting {
        name: "token",
        env: Some("OPSGATE_TELEGRAM_TOKEN"),
        key: None,
        default: "",
        help: "bot token (never a command-line argument, never printed)",
    },
    default_value: || None,
    parse: text,
    show: show_secret,
};
pub const TOKEN_FILE: Entry<PathBuf> = Entry {
    setting: Setting {
        name: "token_file",
        env: Some("OPSGATE_TELEGRAM_TOKEN_FILE"),
        key: Some("telegram.token_file"),
        default: "",
        help: "file holding the token; refused if readable by group or others",
    },
    default_value: || None,
    parse: path,
    show: show_path,
};
pub const CHAT_ID: Entry<i64> = Entry {
    setting: Setting {
        name: "chat_id",
        env: Some("OPSGATE_TELEGRAM_CHAT_ID"),
        key: Some("telegram.chat_id"),
        default: "",
        help: "chat the cards go to",
    },
    default_value: || None,
    parse: super::telegram::chat_id,
    show: show_display,
};
pub const OPERATORS: Entry<Vec<u64>> = Entry {
    setting: Setting {
        name: "operators",
        env: Some("OPSGATE_TELEGRAM_OPERATORS"),
        key: Some("telegram.operators"),
        default: "",
        help: "Telegram user ids allowed to decide (comma-separated); none: poll and serve refuse to start",
    },
    default_value: || None,
    parse: super::telegram::user_ids,
    show: show_debug,
};
pub const API_URL: Entry<String> = Entry {
    setting: Setting {
        name: "api_url",
        env: Some("OPSGATE_TELEGRAM_API_URL"),
        key: Some("telegram.api_url"),
        default: "https://api.telegram.org",
        help: "Bot API base URL (a self-hosted Bot API server, tests)",
    },
    default_value: || Some("https://api.telegram.org".to_string()),
    parse: super::telegram::api_url,
    show: show_display,
};
pub const TIMEOUT: Entry<u64> = Entry {
    setting: Setting {
        name: "timeout",
        env: Some("OPSGATE_TELEGRAM_TIMEOUT"),
        key: Some("telegram.timeout_secs"),
        default: "15",
        help: "seconds one Telegram request may take",
    },
    default_value: || Some(15),
    parse: seconds,
    show: show_seconds,
};
pub const MAX_WAIT: Entry<u64> = Entry {
    setting: Setting {
        name: "max_wait",
        env: None,
        key: Some("telegram.max_wait_secs"),
        default: "60",
        help: "total seconds of 429 waiting in one run",
    },
    default_value: || Some(60),
    parse: seconds,
    show: show_seconds,
};
pub const STATUS_MESSAGE: Entry<bool> = Entry {
    setting: Setting {
        name: "status_message",
        env: Some("OPSGATE_TELEGRAM_STATUS"),
        key: Some("telegram.status_message"),
        default: "false",
        help: "one status message per source (last cycle, the model's summary masked, open cards), edited each cycle and pinned where the bot may pin",
    },
    default_value: || Some(false),
    parse: switch,
    show: show_display,
};
pub const SLACK_BOT_TOKEN: Entry<String> = Entry {
    setting: Setting {
        name: "slack_bot_token",
        env: Some("OPSGATE_SLACK_BOT_TOKEN"),
        key: None,
        default: "",
        help: "Slack bot token `xoxb-…` for the Web API (never a command-line argument, never printed)",
    },
    default_value: || None,
    parse: text,
    show: show_secret,
};
pub const SLACK_BOT_TOKEN_FILE: Entry<PathBuf> = Entry {
    setting: Setting {
        name: "slack_bot_token_file",
        env: Some("OPSGATE_SLACK_BOT_TOKEN_FILE"),
        key: Some("slack.bot_token_file"),
        default: "",
        help: "file holding the Slack bot token; refused if readable by group or others",
    },
    default_value: || None,
    parse: path,
    show: show_path,
};
pub const SLACK_APP_TOKEN: Entry<String> = Entry {
    setting: Setting {
        name: "slack_app_token",
        env: Some("OPSGATE_SLACK_APP_TOKEN"),
        key: None,
        default: "",
        help: "Slack app-level token `xapp-…` (scope connections:write) for Socket Mode: presses (never printed)",
    },
    default_value: || None,
    parse: text,
    show: show_secret,
};
pub const SLACK_APP_TOKEN_FILE: Entry<PathBuf> = Entry {
    setting: Setting {
        name: "slack_app_token_file",
        env: Some("OPSGATE_SLACK_APP_TOKEN_FILE"),
        key: Some("slack.app_token_file"),
        default: "",
        help: "file holding the Slack app-level token; refused if readable by group or others",
    },
    default_value: || None,
    parse: path,
    show: show_path,
};
pub const SLACK_CHANNEL: Entry<String> = Entry {
    setting: Setting {
        name: "slack_channel",
        env: Some("OPSGATE_SLACK_CHANNEL"),
        key: Some("slack.channel"),
        default: "",
        help: "id of the Slack channel cards go to (`C0123ABCD`, not its name); the app must be a member",
    },
    default_value: || None,
    parse: super::slack::channel,
    show: show_display,
};
pub const SLACK_OPERATORS: Entry<Vec<String>> = Entry {
    setting: Setting {
        name: "slack_operators",
        env: Some("OPSGATE_SLACK_OPERATORS"),
        key: Some("slack.operators"),
        default: "",
        help: "Slack user ids allowed to decide (`U012AB3CD`, comma-separated)",
    },
    default_value: || None,
    parse: super::slack::user_ids,
    show: show_debug,
};
pub const SLACK_API_URL: Entry<String> = Entry {
    setting: Setting {
        name: "slack_api_url",
        env: Some("OPSGATE_SLACK_API_URL"),
        key: Some("slack.api_url"),
        default: "https://slack.com/api",
        help: "Slack Web API base URL (tests)",
    },
    default_value: || Some("https://slack.com/api".to_string()),
    parse: super::telegram::api_url,
    show: show_display,
};
pub const SLACK_MAX_WAIT: Entry<u64> = Entry {
    setting: Setting {
        name: "slack_max_wait",
        env: None,
        key: Some("slack.max_wait_secs"),
        default: "60",
        help: "total seconds of Slack 429 (`Retry-After`) waiting in one run",
    },
    default_value: || Some(60),
    parse: seconds,
    show: show_seconds,
};
pub const SLACK_STATUS_MESSAGE: Entry<bool> = Entry {
    setting: Setting {
        name: "slack_status_message",
        env: Some("OPSGATE_SLACK_STATUS"),
        key: Some("slack.status_message"),
        default: "false",
        help: "one status message per source in its Slack channel, edited each cycle and pinned",
    },
    default_value: || Some(false),
    parse: switch,
    show: show_display,
};
pub const TTL: Entry<i64> = Entry {
    setting: Setting {
        name: "ttl",
        env: None,
        key: Some("lifecycle.ttl"),
        default: "24h",
        help: "a proposal not decided this long after its first sighting expires",
    },
    default_value: || Some(24 * HOUR),
    parse: duration,
    show: show_duration,
};
pub const STALE_AFTER: Entry<i64> = Entry {
    setting: Setting {
        name: "stale_after",
        env: None,
        key: Some("lifecycle.stale_after_cycles"),
        default: "3",
        help: "a pending proposal not re-proposed in this many ingests is stale (0: never)",
    },
    default_value: || Some(3),
    parse: count,
    show: show_display,
};
pub const REJECT_COOLDOWN: Entry<i64> = Entry {
    setting: Setting {
        name: "reject_cooldown",
        env: None,
        key: Some("lifecycle.reject_cooldown"),
        default: "24h",
        help: "a rejected command re-proposed within this is a sighting, not a new card",
    },
    default_value: || Some(24 * HOUR),
    parse: duration,
    show: show_duration,
};
pub const RETENTION: Entry<i64> = Entry {
    setting: Setting {
        name: "retention",
        env: None,
        key: Some("lifecycle.retention"),
        default: "90d",
        help: "terminal proposals are deleted this long after they ended (the audit stays)",
    },
    default_value: || Some(90 * DAY),
    parse: duration,
    show: show_duration,
};
pub const RUN_TIMEOUT: Entry<i64> = Entry {
    setting: Setting {
        name: "run_timeout",
        env: None,
        key: Some("lifecycle.run_timeout"),
        default: "10m",
        help: "an executed command is killed after this (at most 7d)",
    },
    default_value: || Some(10 * MINUTE),
    parse: super::rules::run_timeout,
    show: show_duration,
};
pub const DENY: Entry<Vec<String>> = Entry {
    setting: Setting {
        name: "deny",
        env: None,
        key: Some("policy.deny"),
        default: "[]",
        help: "regexes matched against the raw and the canonical command: a match is rejected",
    },
    default_value: || Some(Vec::new()),
    parse: toml_value,
    show: show_debug,
};
pub const REQUIRE_REASON: Entry<bool> = Entry {
    setting: Setting {
        name: "require_reason",
        env: None,
        key: Some("policy.require_reason"),
        default: "false",
        help: "rejecting needs a reason",
    },
    default_value: || Some(false),
    parse: toml_value,
    show: show_display,
};
pub const REDACT: Entry<Vec<String>> = Entry {
    setting: Setting {
        name: "redact",
        env: None,
        key: Some("policy.redact"),
        default: "[]",
        help: "regexes of secret values to hide on cards and in output (group 1, else the match); the stored command keeps them",
    },
    default_value: || Some(Vec::new()),
    parse: toml_value,
    show: show_count,
};
pub const REDACT_BUILTIN: Entry<bool> = Entry {
    setting: Setting {
        name: "redact_builtin",
        env: None,
        key: Some("policy.redact_builtin"),
        default: "true",
        help: "hide passwords, tokens, keys, Authorization headers, URL passwords and private keys found by the built-in detectors",
    },
    default_value: || Some(true),
    parse: toml_value,
    show: show_display,
};
pub const SECRET_RULES: Entry<PathBuf> = Entry {
    setting: Setting {
        name: "secret_rules",
        env: None,
        key: Some("policy.secret_rules"),
        default: "",
        help: "a file of extra secret-format rules in gitleaks' schema ([[rules]] id, regex, secretGroup, keywords), e.g. gitleaks' own config",
    },
    default_value: || None,
    parse: path,
    show: show_path,
};
pub const QUORUM: Entry<Quorum> = Entry {
    setting: Setting {
        name: "quorum",
        env: None,
        key: Some("policy.quorum"),
        default: "{}",
        help: "distinct operators whose Approve a risk level needs, e.g. { high = 2 } (default 1)",
    },
    default_value: || Some(Quorum::ONE),
    parse: super::rules::quorum,
    show: super::rules::show_quorum,
};
pub const RISK: Entry<Vec<RiskRule>> = Entry {
    setting: Setting {
        name: "risk",
        env: None,
        key: Some("policy.risk"),
        default: "[]",
        help: "risk floors: rules `{ pattern = REGEX, verbs = [\"stop\", \"rm\"], level = \"high\" }` (a regex over the raw and canonical command, logical-key verbs, or both, then both must match); a proposal's risk is the highest matching level, raised by the model's label, never lowered by it",
    },
    default_value: || Some(Vec::new()),
    parse: super::rules::risk_rules,
    show: show_count,
};
pub const RUNNER_SOURCES: Entry<Vec<String>> = Entry {
    setting: Setting {
        name: "runner_sources",
        env: None,
        key: Some("runner.sources"),
        default: "[]",
        help: "sources whose proposals `run` executes on this host (`--source`); required with PostgreSQL",
    },
    default_value: || Some(Vec::new()),
    parse: toml_value,
    show: show_debug,
};
pub const RUNNER_ENV: Entry<Vec<(String, String)>> = Entry {
    setting: Setting {
        name: "runner_env",
        env: None,
        key: Some("runner.env"),
        default: "[]",
        help: "NAME=VALUE pairs set for executed commands (they get PATH, HOME, LANG, LC_*, TZ, USER, LOGNAME, SHELL, TERM and nothing else)",
    },
    default_value: || Some(Vec::new()),
    parse: super::runner::pairs,
    show: super::runner::show_pairs,
};
pub const RUNNER_PASS_ENV: Entry<Vec<String>> = Entry {
    setting: Setting {
        name: "runner_pass_env",
        env: None,
        key: Some("runner.pass_env"),
        default: "[]",
        help: "names of opsgate's environment variables passed on to executed commands (never OPSGATE_*)",
    },
    default_value: || Some(Vec::new()),
    parse: super::runner::names,
    show: show_debug,
};
pub const RUNNER_PUBLIC_ENV: Entry<Vec<String>> = Entry {
    setting: Setting {
        name: "runner_public_env",
        env: None,
        key: Some("runner.public_env"),
        default: "[]",
        help: "names of `[runner] env`/`pass_env` variables whose values are not secret; every other value is hidden on cards and removed from stored output",
    },
    default_value: || Some(Vec::new()),
    parse: toml_value,
    show: show_debug,
};
pub const ROUTES: Entry<Vec<Route>> = Entry {
    setting: Setting {
        name: "routes",
        env: None,
        key: Some("[[route]]"),
        default: "",
        help: "cards of matching `sources` (globs) and/or `risk` levels go to Telegram's `chat_id` (and forum `topic`) or, with `slack_channel` (`channel = \"slack\"`), to that Slack channel, decided by the route's `operators` (default the channel's operators); first match wins, no match: every configured channel's default chat",
    },
    default_value: || None,
    parse: super::routes::parse,
    show: show_count,
};
pub const NOW: Entry<i64> = Entry {
    setting: Setting {
        name: "now",
        env: Some("OPSGATE_NOW"),
        key: None,
        default: "",
        help: "pin the clock (RFC 3339 or unix seconds): tests and replays; on PostgreSQL it stands in for the database's clock",
    },
    default_value: || None,
    parse: instant,
    show: show_instant,
};
pub const CLOCK_SKEW: Entry<i64> = Entry {
    setting: Setting {
        name: "clock_skew",
        env: Some("OPSGATE_CLOCK_SKEW"),
        key: None,
        default: "0s",
        help: "tests: move this host's clock (e.g. +130s, -25h) to show that on PostgreSQL only the database's clock counts",
    },
    default_value: || Some(0),
    parse: signed_duration,
    show: show_signed_duration,
};
pub const SQL_LOG: Entry<PathBuf> = Entry {
    setting: Setting {
        name: "sql_log",
        env: Some("OPSGATE_SQL_LOG"),
        key: None,
        default: "",
        help: "diagnostics: append every SQL statement opsgate runs to this file (parameters not included)",
    },
    default_value: || None,
    parse: path,
    show: show_path,
};
pub const LOG: Entry<String> = Entry {
    setting: Setting {
        name: "log",
        env: Some("OPSGATE_LOG"),
        key: None,
        default: "",
        help: "log filter for the structured logs on stderr (`info`, `debug`, `opsgate=debug`); default: info for serve, warnings elsewhere (-v: info, -vv: debug)",
    },
    default_value: || None,
    parse: text,
    show: show_display,
};
pub const STATE_HOME: Entry<PathBuf> = Entry {
    setting: Setting {
        name: "state_home",
        env: Some("XDG_STATE_HOME"),
        key: None,
        default: "$HOME/.local/state",
        help:
            "base of the default database path and of the spool of run outcomes (`opsgate/spool`)",
    },
    default_value: || None,
    parse: path,
    show: show_path,
};

/// Every setting, in the order `--help`, `doctor` and the README list them.
pub const SETTINGS: &[&dyn AnyEntry] = &[
    &DB,
    &CONFIG_FILE,
    &CONFIG_HOME,
    &SYSTEM_CONFIG,
    &TOKEN,
    &TOKEN_FILE,
    &CHAT_ID,
    &OPERATORS,
    &API_URL,
    &TIMEOUT,
    &MAX_WAIT,
    &STATUS_MESSAGE,
    &SLACK_BOT_TOKEN,
    &SLACK_BOT_TOKEN_FILE,
    &SLACK_APP_TOKEN,
    &SLACK_APP_TOKEN_FILE,
    &SLACK_CHANNEL,
    &SLACK_OPERATORS,
    &SLACK_API_URL,
    &SLACK_MAX_WAIT,
    &SLACK_STATUS_MESSAGE,
    &TTL,
    &STALE_AFTER,
    &REJECT_COOLDOWN,
    &RETENTION,
    &RUN_TIMEOUT,
    &DENY,
    &REQUIRE_REASON,
    &REDACT,
    &REDACT_BUILTIN,
    &SECRET_RULES,
    &QUORUM,
    &RISK,
    &RUNNER_SOURCES,
    &RUNNER_ENV,
    &RUNNER_PASS_ENV,
    &RUNNER_PUBLIC_ENV,
    &ROUTES,
    &NOW,
    &CLOCK_SKEW,
    &SQL_LOG,
    &LOG,
    &STATE_HOME,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let names: Vec<&str> = SETTINGS.iter().map(|e| e.name).collect();
        for (i, n) in names.iter().enumerate() {
            assert!(!names[..i].contains(n), "{n} twice");
        }
    }

    #[test]
    fn a_documented_default_parses_to_the_typed_default() {
        for e in SETTINGS {
            let s = e.setting();
            let (documented, typed) = e.defaults();
            assert_eq!(
                documented, typed,
                "{}: the documented default {:?} and the applied one differ",
                s.name, s.default
            );
        }
    }

    #[test]
    fn each_parser_rejects_a_bad_value_naming_the_variable_or_key() {
        let bad: &[(&Setting, &str)] = &[
            (&CHAT_ID, "general"),
            (&OPERATORS, "1001, alice"),
            (&API_URL, "ftp://api.telegram.org"),
            (&TIMEOUT, "soon"),
            (&MAX_WAIT, "a minute"),
            (&STATUS_MESSAGE, "maybe"),
            (&SLACK_CHANNEL, "#ops"),
            (&SLACK_OPERATORS, "U012AB3CD, alice"),
            (&SLACK_API_URL, "ftp://slack.com/api"),
            (&SLACK_MAX_WAIT, "a minute"),
            (&SLACK_STATUS_MESSAGE, "maybe"),
            (&TTL, "forever"),
            (&STALE_AFTER, "three"),
            (&REJECT_COOLDOWN, "1 fortnight"),
            (&RETENTION, "-"),
            (&RUN_TIMEOUT, "8d"),
            (&DENY, "\"rm\""),
            (&REQUIRE_REASON, "\"yes\""),
            (&REDACT, "5"),
            (&REDACT_BUILTIN, "1"),
            (&QUORUM, "{ high = 0 }"),
            (&RISK, "[{ level = \"huge\", verbs = [\"rm\"] }]"),
            (&RUNNER_SOURCES, "\"web\""),
            (&RUNNER_ENV, "[\"1X=2\"]"),
            (&RUNNER_PASS_ENV, "[\"OPSGATE_DB\"]"),
            (&RUNNER_PUBLIC_ENV, "{}"),
            (&ROUTES, "[{ chat_id = 1, risk = [\"x\"] }]"),
            (&NOW, "yesterday"),
        ];
        for (setting, text) in bad {
            let e = SETTINGS
                .iter()
                .find(|e| e.setting().name == setting.name)
                .unwrap();
            let err = e
                .reject(text)
                .unwrap_or_else(|| panic!("{} took {text:?}", setting.name));
            let named = setting
                .env
                .into_iter()
                .chain(setting.key)
                .any(|n| err.contains(n.trim_start_matches("[[").trim_end_matches("]]")));
            assert!(
                named,
                "{}: {err:?} names neither variable nor key",
                setting.name
            );
        }
    }

    #[test]
    fn the_error_of_a_variable_is_worded_as_before() {
        assert_eq!(
            CHAT_ID.parse.call_err(&CHAT_ID, "general"),
            "OPSGATE_TELEGRAM_CHAT_ID=\"general\" is not a numeric chat id"
        );
        assert_eq!(
            TTL.parse.call_err(&TTL, "forever"),
            "lifecycle.ttl = \"forever\" is not a duration; expected e.g. 90s, 10m, 24h, 7d"
        );
        assert_eq!(
            RUN_TIMEOUT.parse.call_err(&RUN_TIMEOUT, "8d"),
            "lifecycle.run_timeout = \"8d\" is longer than 7d"
        );
    }

    trait CallErr {
        fn call_err(self, s: &Setting, text: &str) -> String;
    }

    impl<T: std::fmt::Debug> CallErr for fn(&Setting, Raw<'_>) -> Result<T, String> {
        fn call_err(self, s: &Setting, text: &str) -> String {
            self(s, Raw::Text(text)).unwrap_err()
        }
    }
}
