//! The Slack part of the configuration: the bot token (Web API) and the app-level token
//! (Socket Mode), the default channel, operators (Slack user ids), the Web API's URL, and
//! the Slack side of the `[[route]]`s ([`SlackConfig::route`]); tokens from files with
//! the same checks as Telegram's, and the "half configured" rule.

use super::layers::Layers;
use super::routes::{self, Dest, Route};
use super::settings::{
    Raw, Setting, ROUTES, SLACK_API_URL, SLACK_APP_TOKEN, SLACK_APP_TOKEN_FILE, SLACK_BOT_TOKEN,
    SLACK_BOT_TOKEN_FILE, SLACK_CHANNEL, SLACK_MAX_WAIT, SLACK_OPERATORS, SLACK_STATUS_MESSAGE,
};
use super::telegram::secret_of;
use super::{config_error, Secret};
use anyhow::Result;
use std::time::Duration;

/// Bound on one Web API request.
pub const SLACK_TIMEOUT: Duration = Duration::from_secs(15);

/// Slack settings, validated: set when a bot token and a channel are configured.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// `xoxb-…`: the Web API (cards, prompts, pins, `doctor`).
    pub bot_token: Secret,
    /// `xapp-…`: Socket Mode (`apps.connections.open`), needed to take presses.
    pub app_token: Option<Secret>,
    /// The default channel id (`C…`).
    pub channel: String,
    /// Slack user ids allowed to decide (`U…`).
    pub operators: Vec<String>,
    /// The Web API's base URL, without a trailing slash.
    pub api_url: String,
    pub timeout: Duration,
    /// Longest total wait for 429 `Retry-After` in one run.
    pub max_wait: Duration,
    pub status_message: bool,
    /// Every `[[route]]` (each channel's), first match wins.
    pub routes: Vec<Route>,
}

/// Where a card goes on Slack and who decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlackTarget<'a> {
    pub channel: &'a str,
    pub operators: &'a [String],
}

impl SlackConfig {
    /// The route of a card of `source` whose riskiest proposal is `risk` on Slack: the
    /// first matching `[[route]]` ([`routes::first`]), else the default channel; `None`
    /// when the matching route sends the card to another channel.
    pub fn route(&self, source: &str, risk: &str) -> Option<SlackTarget<'_>> {
        match routes::first(&self.routes, source, risk) {
            Some(dest) => self.route_of_entry(dest),
            None => Some(SlackTarget {
                channel: &self.channel,
                operators: &self.operators,
            }),
        }
    }

    /// Where a route's destination sends its cards, when it is a Slack channel.
    pub fn route_of_entry<'a>(&'a self, dest: &'a Dest) -> Option<SlackTarget<'a>> {
        match dest {
            Dest::Slack { channel, operators } => Some(SlackTarget {
                channel,
                operators: operators.as_deref().unwrap_or(&self.operators),
            }),
            _ => None,
        }
    }

    /// The Slack routes and their destinations.
    pub fn own_routes(&self) -> impl Iterator<Item = (&Route, SlackTarget<'_>)> {
        self.routes
            .iter()
            .filter_map(|r| Some((r, self.route_of_entry(&r.to)?)))
    }

    /// Whether `user` (a Slack user id) decides the cards of some route.
    pub fn is_operator_anywhere(&self, user: &str) -> bool {
        self.operators.iter().any(|o| o == user)
            || self
                .own_routes()
                .any(|(_, t)| t.operators.iter().any(|o| o == user))
    }

    /// Every channel cards may go to, the default first, each once.
    pub fn channels(&self) -> Vec<&str> {
        let mut out = vec![self.channel.as_str()];
        for (_, t) in self.own_routes() {
            if !out.contains(&t.channel) {
                out.push(t.channel);
            }
        }
        out
    }
}

/// A Slack conversation id (`C0123ABCD`, `G…` for a private channel, `D…` for a direct
/// message): stored with deliveries and compared with a press's channel, so a channel's
/// name (`#ops`) is refused rather than never matching.
pub fn channel_id(text: &str) -> Result<String, String> {
    let id = text.trim();
    let ok = id.len() >= 9
        && id.starts_with(['C', 'G', 'D'])
        && id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if ok {
        Ok(id.to_string())
    } else {
        Err(format!(
            "{id:?} is not a Slack channel id; expected an id such as C0123ABCD (the channel's details in Slack show it), not its name"
        ))
    }
}

/// A Slack user id (`U012AB3CD`, `W…` on Enterprise Grid).
pub fn user_id(text: &str) -> Result<String, String> {
    let id = text.trim();
    let ok = id.len() >= 9
        && id.starts_with(['U', 'W'])
        && id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if ok {
        Ok(id.to_string())
    } else {
        Err(format!(
            "{id:?} is not a Slack user id; expected an id such as U012AB3CD (a member's profile, \"Copy member ID\")"
        ))
    }
}

/// Parses the default channel.
pub(super) fn channel(s: &Setting, raw: Raw<'_>) -> Result<String, String> {
    let text: String = match raw {
        Raw::Text(t) => t.to_string(),
        Raw::File(v) => v.de()?,
    };
    channel_id(&text).map_err(|e| format!("{}: {e}", s.label()))
}

/// Parses operators: comma-separated Slack user ids (a list in the file).
pub(super) fn user_ids(s: &Setting, raw: Raw<'_>) -> Result<Vec<String>, String> {
    let ids: Vec<String> = match raw {
        Raw::Text(t) => t
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        Raw::File(v) => v.de()?,
    };
    ids.iter()
        .map(|u| user_id(u).map_err(|e| format!("{}: {e}", s.label())))
        .collect()
}

/// The Slack settings, resolved.
pub(super) struct Resolved {
    pub slack: Option<SlackConfig>,
    /// What is missing when Slack is half configured.
    pub missing: Option<String>,
}

pub(super) fn resolve(layers: &mut Layers<'_>) -> Result<Resolved> {
    let bot_token = secret_of(layers, &SLACK_BOT_TOKEN, &SLACK_BOT_TOKEN_FILE)?;
    let app_token = secret_of(layers, &SLACK_APP_TOKEN, &SLACK_APP_TOKEN_FILE)?;
    for (token, prefix, entry, what) in [
        (&bot_token, "xoxb-", &SLACK_BOT_TOKEN, "bot token"),
        (&app_token, "xapp-", &SLACK_APP_TOKEN, "app-level token"),
    ] {
        if token.as_ref().is_some_and(|t| !valid_token(t, prefix)) {
            return Err(config_error(format!(
                "the Slack {what} ({} or its file) is malformed; expected {prefix}… as the app's settings show it",
                entry.env_name()
            )));
        }
    }
    let channel = layers.get(&SLACK_CHANNEL)?;
    let operators = layers.get(&SLACK_OPERATORS)?.unwrap_or_default();
    let api_url = layers.get(&SLACK_API_URL)?.unwrap_or_default();
    let max_wait = layers.get(&SLACK_MAX_WAIT)?.unwrap_or_default();
    let status_message = layers.get(&SLACK_STATUS_MESSAGE)?.unwrap_or_default();
    let routes = layers.get(&ROUTES)?.unwrap_or_default();
    let own_routes = routes.iter().any(|r| matches!(r.to, Dest::Slack { .. }));
    let half_set = [
        channel.is_some().then(|| SLACK_CHANNEL.label()),
        (!operators.is_empty()).then(|| SLACK_OPERATORS.label()),
        app_token
            .is_some()
            .then(|| SLACK_APP_TOKEN.env_name().to_string()),
        own_routes.then(|| "[[route]] slack_channel".to_string()),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    let Some(bot_token) = bot_token else {
        let missing = (!half_set.is_empty()).then(|| {
            format!(
                "Slack is half configured: {} set but no bot token; set {} (or {}, or slack.bot_token_file), or remove them",
                half_set.join(", "),
                SLACK_BOT_TOKEN.env_name(),
                SLACK_BOT_TOKEN_FILE.env_name()
            )
        });
        return Ok(Resolved {
            slack: None,
            missing,
        });
    };
    let Some(channel) = channel else {
        return Ok(Resolved {
            slack: None,
            missing: Some(format!(
                "Slack is half configured: a bot token is set but no channel; set {} to the id of the channel cards go to (invite the app there first)",
                SLACK_CHANNEL.label()
            )),
        });
    };
    Ok(Resolved {
        slack: Some(SlackConfig {
            bot_token: Secret::new(bot_token),
            app_token: app_token.map(Secret::new),
            channel,
            operators,
            api_url: api_url.trim_end_matches('/').to_string(),
            timeout: SLACK_TIMEOUT,
            max_wait: Duration::from_secs(max_wait.min(3600)),
            status_message,
            routes,
        }),
        missing: None,
    })
}

fn valid_token(token: &str, prefix: &str) -> bool {
    token.strip_prefix(prefix).is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}
