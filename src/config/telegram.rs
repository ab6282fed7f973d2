//! The Telegram part of the configuration: the bot's access ([`BotAccess`]), the chat,
//! operators and `[[route]]`s ([`TelegramConfig`], with the one routing rule
//! [`TelegramConfig::route`]), the token file's checks, and the "half configured" rule.

use super::layers::{Layers, Origin};
use super::routes::{self, Dest, Route};
use super::settings::{
    Entry, Raw, Setting, API_URL, CHAT_ID, MAX_WAIT, OPERATORS, ROUTES, STATUS_MESSAGE, TIMEOUT,
    TOKEN, TOKEN_FILE,
};
use super::{config_error, expand_home, Secret};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a card goes and who decides it: the first `[[route]]` that matches the card's
/// source and risk, else the top-level chat and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub chat_id: i64,
    pub topic: Option<i32>,
    pub operators: &'a [u64],
}

impl TelegramConfig {
    /// The route of a card of `source` whose riskiest proposal is `risk` (`low`, `medium`
    /// or `high`) on Telegram: the first `[[route]]` that matches ([`routes::first`], the
    /// one home of the rule), else the top-level chat; `None` when the matching route
    /// sends the card to another channel. Delivery, authorization and prompts all ask here.
    pub fn route(&self, source: &str, risk: &str) -> Option<Target<'_>> {
        match routes::first(&self.routes, source, risk) {
            Some(dest) => self.route_of_entry(dest),
            None => Some(Target {
                chat_id: self.chat_id,
                topic: None,
                operators: &self.operators,
            }),
        }
    }

    /// Where a route's destination sends its cards and who decides them, when it is a
    /// Telegram chat.
    pub fn route_of_entry<'a>(&'a self, dest: &'a Dest) -> Option<Target<'a>> {
        match dest {
            Dest::Telegram {
                chat_id,
                topic,
                operators,
            } => Some(Target {
                chat_id: *chat_id,
                topic: *topic,
                operators: operators.as_deref().unwrap_or(&self.operators),
            }),
            _ => None,
        }
    }

    /// The Telegram routes' destinations.
    pub fn own_routes(&self) -> impl Iterator<Item = (&Route, Target<'_>)> {
        self.routes
            .iter()
            .filter_map(|r| Some((r, self.route_of_entry(&r.to)?)))
    }

    /// Whether `user` decides the cards of some route (the top-level list included).
    pub fn is_operator_anywhere(&self, user: u64) -> bool {
        self.operators.contains(&user)
            || self.own_routes().any(|(_, t)| t.operators.contains(&user))
    }

    /// Every chat cards may go to, the default first, each once.
    pub fn chats(&self) -> Vec<i64> {
        let mut chats = vec![self.chat_id];
        for (_, t) in self.own_routes() {
            if !chats.contains(&t.chat_id) {
                chats.push(t.chat_id);
            }
        }
        chats
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
    /// Every `[[route]]` (each channel's), first match wins; no match: `chat_id` and
    /// `operators`.
    pub routes: Vec<Route>,
    /// Keep one status message per source in its route's chat.
    pub status_message: bool,
}

/// Parses a chat id.
pub(super) fn chat_id(s: &Setting, raw: Raw<'_>) -> Result<i64, String> {
    match raw {
        Raw::Text(t) => t
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("{}={t:?} is not a numeric chat id", s.env_name())),
        Raw::File(v) => v.de(),
    }
}

/// Parses operators: comma-separated Telegram user ids (a list in the file).
pub(super) fn user_ids(s: &Setting, raw: Raw<'_>) -> Result<Vec<u64>, String> {
    match raw {
        Raw::Text(t) => t
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|id| {
                id.parse::<u64>().map_err(|_| {
                    format!(
                        "{}: {id:?} is not a Telegram user id; expected comma-separated numbers",
                        s.env_name()
                    )
                })
            })
            .collect(),
        Raw::File(v) => v.de(),
    }
}

/// Parses the Bot API URL: http(s) only.
pub(super) fn api_url(s: &Setting, raw: Raw<'_>) -> Result<String, String> {
    let url: String = match raw {
        Raw::Text(t) => t.to_string(),
        Raw::File(v) => v.de()?,
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("{} = {url:?}: expected an http(s) URL", s.label()));
    }
    Ok(url)
}

/// The Telegram settings, resolved.
pub(super) struct Resolved {
    /// When a token and a chat are configured.
    pub telegram: Option<TelegramConfig>,
    /// Whenever a token is.
    pub bot: Option<BotAccess>,
    /// What is missing when Telegram is half configured.
    pub missing: Option<String>,
}

/// The Telegram settings (token, chat and the rest) and the bot access; a token without a
/// chat is the bot alone (a half configuration), a chat or operators without a token too.
pub(super) fn resolve(layers: &mut Layers<'_>) -> Result<Resolved> {
    let token = secret_of(layers, &TOKEN, &TOKEN_FILE)?;
    if let Some(token) = &token {
        if !valid_token(token) {
            return Err(config_error(format!(
                "the Telegram token ({} or token file) is malformed; expected <bot id>:<secret> as BotFather prints it",
                TOKEN.env_name()
            )));
        }
    }
    let chat_id = layers.get(&CHAT_ID)?;
    let operators = layers.get(&OPERATORS)?.unwrap_or_default();
    let api_url = layers.get(&API_URL)?;
    let timeout = layers.get(&TIMEOUT)?.unwrap_or_default();
    let max_wait = layers.get(&MAX_WAIT)?.unwrap_or_default();
    let status_message = layers.get(&STATUS_MESSAGE)?.unwrap_or_default();
    let routes = layers.get(&ROUTES)?.unwrap_or_default();
    let own_routes = routes.iter().any(|r| matches!(r.to, Dest::Telegram { .. }));
    let half_set = [
        layers
            .env
            .setting(&CHAT_ID)
            .map(|_| CHAT_ID.env_name().to_string()),
        layers
            .file_sets(&CHAT_ID)
            .then(|| "telegram.chat_id".to_string()),
        layers
            .env
            .setting(&OPERATORS)
            .map(|_| OPERATORS.env_name().to_string()),
        layers
            .file_sets(&OPERATORS)
            .then(|| "telegram.operators".to_string()),
        own_routes.then(|| "[[route]] chat_id".to_string()),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    let Some(token) = token else {
        let missing = (!half_set.is_empty()).then(|| {
            format!(
                "Telegram is half configured: {} set but no bot token; set {} (or {}, or telegram.token_file), or remove them",
                half_set.join(", "),
                TOKEN.env_name(),
                TOKEN_FILE.env_name()
            )
        });
        if own_routes && missing.is_none() {
            return Err(config_error(
                "[[route]] entries with a chat_id need Telegram configured (a token and a default chat_id)".into(),
            ));
        }
        return Ok(Resolved {
            telegram: None,
            bot: None,
            missing,
        });
    };
    let access = BotAccess {
        token: Secret::new(token),
        api_url,
        timeout: Duration::from_secs(timeout.clamp(1, 300)),
    };
    let Some(chat_id) = chat_id else {
        return Ok(Resolved {
            telegram: None,
            missing: Some(format!(
                "Telegram is half configured: a bot token is set but no chat; set {} (or telegram.chat_id): `opsgate telegram ids` lists the chats the bot has seen",
                CHAT_ID.env_name()
            )),
            bot: Some(access),
        });
    };
    Ok(Resolved {
        telegram: Some(TelegramConfig {
            token: access.token.clone(),
            chat_id,
            operators,
            api_url: access.api_url.clone(),
            timeout: access.timeout,
            max_wait: Duration::from_secs(max_wait.min(3600)),
            routes,
            status_message,
        }),
        bot: Some(access),
        missing: None,
    })
}

/// A secret from its variable or its file (`OPSGATE_TELEGRAM_TOKEN` or `..._TOKEN_FILE` /
/// `telegram.token_file`): the environment's (a file or the value) wins over the config
/// file's file name; the file must be a file no group or other may read. Recorded for
/// `doctor` without its value.
pub(super) fn secret_of(
    layers: &mut Layers<'_>,
    value: &Entry<String>,
    file: &Entry<PathBuf>,
) -> Result<Option<String>> {
    // The environment's token (a file or the value) wins over the file's token_file.
    let env_token = layers.env.setting(value).is_some();
    let file_has_token = layers.file_sets(file);
    let env_file = layers.env_of(file)?;
    let file_file = layers
        .file_of(file)?
        .map(|p| expand_home(p, layers.env))
        .filter(|_| !env_token);
    let token_file = layers.choose(file, env_file, file_file)?;
    let token = match token_file {
        Some(path) => {
            // The token is the file's: shown with where the file's name came from.
            let origin = layers.origin(file).unwrap_or(Origin::Default);
            layers.record(value, origin, "(secret, from the token file)".into(), false);
            Some(read_token_file(&path)?)
        }
        None => {
            let env = layers.env_of(value)?;
            let token = layers.choose(value, env, None)?;
            if file_has_token && token.is_some() {
                layers.mark_overridden(value); // the file's token_file loses to the variable
            }
            token.map(|t| t.trim().to_string())
        }
    };
    Ok(token)
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

pub(super) fn read_token_file(path: &Path) -> Result<String> {
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
