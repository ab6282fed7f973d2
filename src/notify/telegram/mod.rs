//! The Telegram channel: teloxide behind the [`Channel`](crate::notify::Channel) seam.
//!
//! [`Telegram`] (this file) is the client: the only async code in opsgate, a
//! current-thread tokio runtime inside it, every public method a blocking call around one
//! HTTP request, so the store is never touched from a tokio task. [`format`] turns a
//! neutral card into Telegram HTML within Telegram's length budget; [`updates`] maps
//! updates to neutral presses and replies and user ids to channel-scoped identities;
//! [`channel`] implements the seam over the settings (`TelegramConfig`, its routes) and
//! holds the registration line. Message references leave this folder as strings (the
//! store is channel-neutral). The bot token never leaves it in any message: errors are
//! redacted before they are returned.

mod channel;
pub mod format;
mod updates;

pub use channel::{TelegramChannel, REGISTRATION};
pub use updates::scoped;

use crate::config::{BotAccess, TelegramConfig};
use crate::error::Kind;
use crate::notify::{Card, Incoming, Polled};
use crate::process::Stop;
use std::time::Duration;
use teloxide::payloads::{
    AnswerCallbackQuerySetters, EditMessageTextSetters, GetUpdatesSetters, PinChatMessageSetters,
    SendMessageSetters,
};
use teloxide::prelude::Requester;
use teloxide::types::{
    AllowedUpdate, CallbackQueryId, ChatId, InlineKeyboardButton, InlineKeyboardMarkup, MessageId,
    ParseMode, ThreadId,
};
use teloxide::{ApiError, Bot, RequestError};

/// The channel name deliveries and cursors are stored under.
pub const CHANNEL: &str = "telegram";

/// Why a request failed, as the caller must react to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TgError {
    /// 429: wait this long, then the same request may succeed.
    RetryAfter(Duration),
    /// The edited message no longer exists (deleted by someone): send a new one.
    MessageGone,
    /// Another `getUpdates` consumer is running (409).
    Conflict,
    /// Network error, timeout, 5xx, malformed answer: retry on a later run.
    Temporary(String),
    /// The token or chat is wrong: nothing will work until the configuration changes.
    Config(String),
    /// Telegram refused this request (400) for a reason retrying will not fix.
    Refused(String),
}

impl std::fmt::Display for TgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TgError::RetryAfter(d) => {
                write!(
                    f,
                    "Telegram rate limit: retry after {}",
                    crate::time::human_duration(d.as_millis() as i64)
                )
            }
            TgError::MessageGone => write!(f, "the card's message was deleted"),
            TgError::Conflict => write!(
                f,
                "another getUpdates consumer (or a webhook) uses this bot (Telegram answered 409)"
            ),
            TgError::Temporary(m) => write!(f, "Telegram unavailable: {m}"),
            TgError::Config(m) => write!(f, "Telegram refused the configuration: {m}"),
            TgError::Refused(m) => write!(f, "Telegram refused the request: {m}"),
        }
    }
}

impl std::error::Error for TgError {}

/// The kind of a Telegram error, for the exit code: a wrong token or chat is
/// configuration, a refused request is internal, everything else is temporary.
pub fn classify(cause: &(dyn std::error::Error + 'static)) -> Option<Kind> {
    Some(match cause.downcast_ref::<TgError>()? {
        TgError::Config(_) => Kind::Config,
        TgError::Refused(_) => Kind::Internal,
        _ => Kind::Temporary,
    })
}

/// Where an update came from and who sent it, for `opsgate telegram ids`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub chat_id: i64,
    /// `group`, `supergroup`, `channel` or `private`.
    pub chat_kind: String,
    /// The group's title, or the private chat's user name.
    pub chat_title: String,
    pub user_id: Option<u64>,
    pub username: Option<String>,
    pub name: String,
}

/// What `doctor` learns about a chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatCheck {
    pub title: String,
    pub can_post: bool,
}

/// A connected bot.
pub struct Telegram {
    rt: tokio::runtime::Runtime,
    /// Raised by SIGTERM/SIGINT in long-running commands: waits end early.
    stop: Stop,
    bot: Bot,
    token: String,
    timeout: Duration,
    /// The Bot API's base URL, as messages may show it (no token: that is in the path).
    api: String,
}

impl Telegram {
    pub fn new(cfg: &TelegramConfig) -> anyhow::Result<Telegram> {
        Telegram::connect(&BotAccess {
            token: cfg.token.clone(),
            api_url: cfg.api_url.clone(),
            timeout: cfg.timeout,
        })
    }

    /// A bot from its token alone (no chat needed): `opsgate telegram ids`.
    pub fn connect(cfg: &BotAccess) -> anyhow::Result<Telegram> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| anyhow::anyhow!("starting the Telegram runtime: {e}"))?;
        // The HTTP timeout must outlast a long poll; each call adds its own bound.
        let client = teloxide::net::default_reqwest_settings()
            .timeout(cfg.timeout + Duration::from_secs(60))
            .build()
            .map_err(|e| anyhow::anyhow!("building the HTTP client: {e}"))?;
        let mut bot = Bot::with_client(cfg.token.expose(), client);
        if let Some(url) = &cfg.api_url {
            let url = url
                .parse()
                .map_err(|_| anyhow::anyhow!("the Telegram API URL is not a valid URL"))?;
            bot = bot.set_api_url(url);
        }
        Ok(Telegram {
            rt,
            stop: Stop::default(),
            bot,
            token: cfg.token.expose().to_string(),
            timeout: cfg.timeout,
            api: cfg
                .api_url
                .clone()
                .unwrap_or_else(|| crate::config::API_URL.default.to_string()),
        })
    }

    /// Ends waits (long polls, 429 sleeps) early when `stop` is raised.
    pub fn with_stop(mut self, stop: Stop) -> Telegram {
        self.stop = stop;
        self
    }

    /// Runs one request with the configured time bound.
    fn call<T, F>(&self, bound: Duration, fut: F) -> Result<T, TgError>
    where
        F: std::future::Future<Output = Result<T, RequestError>>,
    {
        let result = self
            .rt
            .block_on(async { tokio::time::timeout(bound, fut).await });
        match result {
            Err(_) => Err(TgError::Temporary(format!(
                "no answer within {}",
                crate::time::human_duration(bound.as_millis() as i64)
            ))),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.classify(e)),
        }
    }

    fn classify(&self, e: RequestError) -> TgError {
        let redact = |s: String| s.replace(&self.token, "<token>");
        match e {
            RequestError::RetryAfter(s) => TgError::RetryAfter(s.duration()),
            RequestError::Api(ApiError::MessageToEditNotFound) => TgError::MessageGone,
            RequestError::Api(ApiError::TerminatedByOtherGetUpdates) => TgError::Conflict,
            // 409 with a webhook set: teloxide knows no variant for it.
            RequestError::Api(ApiError::Unknown(m)) if m.starts_with("Conflict:") => {
                TgError::Conflict
            }
            RequestError::Api(ApiError::InvalidToken) => TgError::Config(format!(
                "the bot token is invalid (Telegram answered 401 Unauthorized): put the token @BotFather printed in {} or the token file (telegram.token_file)",
                crate::config::TOKEN.env.unwrap_or_default()
            )),
            RequestError::Api(ApiError::ChatNotFound) => TgError::Config(
                "chat not found: the bot is not in that chat, or the chat id is wrong (`opsgate telegram ids` lists the chats the bot has seen)".into(),
            ),
            RequestError::Api(ApiError::BotBlocked) => TgError::Config(
                "the bot was blocked by the user of that private chat".into(),
            ),
            RequestError::Api(ApiError::Unknown(m)) if is_server_side(&m) => {
                TgError::Temporary(redact(m))
            }
            RequestError::Api(api) => TgError::Refused(redact(api.to_string())),
            RequestError::Network(n) => TgError::Temporary(unreachable(&self.api, n.as_ref())),
            RequestError::InvalidJson { .. } => {
                TgError::Temporary("malformed answer from the Bot API".into())
            }
            other => TgError::Temporary(redact(other.to_string())),
        }
    }

    /// Sends a new card to a chat (and forum topic); returns its message id.
    pub fn send(&self, chat: i64, topic: Option<i32>, card: &Card) -> Result<String, TgError> {
        let mut req = self
            .bot
            .send_message(ChatId(chat), format::html(card))
            .parse_mode(ParseMode::Html);
        if let Some(topic) = topic {
            req = req.message_thread_id(ThreadId(MessageId(topic)));
        }
        if !card.buttons.is_empty() {
            req = req.reply_markup(markup(card));
        }
        let msg = self.call(self.timeout, async { req.await })?;
        Ok(msg.id.0.to_string())
    }

    /// Edits a card in place. "message is not modified" counts as success.
    pub fn edit(&self, chat: i64, message: &str, card: &Card) -> Result<(), TgError> {
        let id = message_id(message)?;
        let mut req = self
            .bot
            .edit_message_text(ChatId(chat), id, format::html(card))
            .parse_mode(ParseMode::Html);
        // An empty keyboard removes the buttons.
        req = req.reply_markup(markup(card));
        self.edited(req)
    }

    /// Replaces a message's text with plain `text` and removes its buttons (a card that
    /// moved to another route's chat leaves this behind).
    pub fn retire(&self, chat: i64, message: &str, text: &str) -> Result<(), TgError> {
        let req = self
            .bot
            .edit_message_text(ChatId(chat), message_id(message)?, text.to_string())
            .reply_markup(InlineKeyboardMarkup::default());
        self.edited(req)
    }

    fn edited(
        &self,
        req: teloxide::requests::JsonRequest<teloxide::payloads::EditMessageText>,
    ) -> Result<(), TgError> {
        match self.call(self.timeout, async { req.await }) {
            Ok(_) => Ok(()),
            Err(TgError::Refused(m)) if m.contains("not modified") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Pins a message without notifying the chat (a status message). Needs the pin right
    /// in groups; the caller treats a refusal as harmless.
    pub fn pin(&self, chat: i64, message: &str) -> Result<(), TgError> {
        let req = self
            .bot
            .pin_chat_message(ChatId(chat), message_id(message)?)
            .disable_notification(true);
        self.call(self.timeout, async { req.await }).map(|_| ())
    }

    /// Fetches updates from `offset`, waiting up to `wait` for the first one.
    pub fn updates(&self, offset: Option<i64>, wait: Duration) -> Result<Vec<Incoming>, TgError> {
        let req = self.updates_request(offset, wait);
        let updates = self.call(self.timeout + wait, async { req.await })?;
        Ok(updates::convert(updates))
    }

    /// Like [`Telegram::updates`], but returns [`Polled::Stop`] when the stop flag is
    /// raised first.
    pub fn updates_or_stop(&self, offset: Option<i64>, wait: Duration) -> Result<Polled, TgError> {
        let req = self.updates_request(offset, wait);
        let bound = self.timeout + wait;
        let outcome = self.rt.block_on(async {
            tokio::select! {
                r = tokio::time::timeout(bound, async { req.await }) => Some(r),
                _ = stopped(&self.stop) => None,
            }
        });
        match outcome {
            None => Ok(Polled::Stop),
            Some(Err(_)) => Err(TgError::Temporary(format!(
                "no answer within {}",
                crate::time::human_duration(bound.as_millis() as i64)
            ))),
            Some(Ok(Ok(updates))) => Ok(Polled::Events(updates::convert(updates))),
            Some(Ok(Err(e))) => Err(self.classify(e)),
        }
    }

    /// Sleeps, waking early when the stop flag is raised; returns false then.
    pub fn sleep_or_stop(&self, d: Duration) -> bool {
        self.rt.block_on(async {
            tokio::select! {
                _ = tokio::time::sleep(d) => true,
                _ = stopped(&self.stop) => false,
            }
        })
    }

    fn updates_request(
        &self,
        offset: Option<i64>,
        wait: Duration,
    ) -> teloxide::requests::JsonRequest<teloxide::payloads::GetUpdates> {
        let mut req = self
            .bot
            .get_updates()
            .timeout(wait.as_secs() as u32)
            .allowed_updates([AllowedUpdate::CallbackQuery, AllowedUpdate::Message]);
        if let Some(offset) = offset.and_then(|o| i32::try_from(o).ok()) {
            req = req.offset(offset);
        }
        req
    }

    /// The waiting updates' chats and senders, read without confirming any update: no
    /// offset (Telegram confirms updates only when a later call passes an offset above
    /// their id, so the poller still gets every press), no long poll, and no
    /// `allowed_updates` (which would replace the poller's). A poller's own getUpdates
    /// running at the same time, or a webhook, makes Telegram answer 409.
    pub fn peek(&self) -> Result<Vec<Seen>, TgError> {
        let req = self.bot.get_updates().timeout(0);
        let updates = self.call(self.timeout, async { req.await })?;
        Ok(updates
            .iter()
            .filter_map(|u| {
                let chat = u.chat()?;
                let from = u.from();
                let title = chat
                    .title()
                    .or(chat.username())
                    .or(chat.first_name())
                    .unwrap_or_default();
                let kind = if chat.is_private() {
                    "private"
                } else if chat.is_supergroup() {
                    "supergroup"
                } else if chat.is_channel() {
                    "channel"
                } else {
                    "group"
                };
                Some(Seen {
                    chat_id: chat.id.0,
                    chat_kind: kind.to_string(),
                    chat_title: title.to_string(),
                    user_id: from.map(|f| f.id.0),
                    username: from.and_then(|f| f.username.clone()),
                    name: from.map(|f| f.full_name()).unwrap_or_default(),
                })
            })
            .collect())
    }

    /// Answers a button press with a short toast. Failing to answer (a query that is too
    /// old, as cron-driven polling often finds) is not an error: the card carries the
    /// outcome.
    pub fn answer(&self, query_id: &str, text: &str) -> Result<(), TgError> {
        let req = self
            .bot
            .answer_callback_query(CallbackQueryId(query_id.to_string()))
            .text(text.to_string());
        match self.call(self.timeout, async { req.await }) {
            Ok(_) => Ok(()),
            Err(TgError::Refused(m)) if m.contains("too old") || m.contains("query id") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sends a prompt that asks for a reply (Telegram shows the reply field) to a chat
    /// and topic; returns its message id.
    pub fn ask(&self, chat: i64, topic: Option<i32>, text: &str) -> Result<String, TgError> {
        let mut req = self
            .bot
            .send_message(ChatId(chat), text.to_string())
            .reply_markup(teloxide::types::ForceReply::new().selective());
        if let Some(topic) = topic {
            req = req.message_thread_id(ThreadId(MessageId(topic)));
        }
        let msg = self.call(self.timeout, async { req.await })?;
        Ok(msg.id.0.to_string())
    }

    /// `getMe`: checks the token; returns the bot's user id and username.
    pub fn me(&self) -> Result<(u64, String), TgError> {
        let req = self.bot.get_me();
        let me = self.call(self.timeout, async { req.await })?;
        Ok((me.user.id.0, me.user.username.clone().unwrap_or_default()))
    }

    /// `getChat` and `getChatMember` for the bot itself: does the bot see the chat, and
    /// may it post there?
    pub fn chat_check(&self, chat: i64, bot: u64) -> Result<ChatCheck, TgError> {
        let req = self.bot.get_chat(ChatId(chat));
        let info = self.call(self.timeout, async { req.await })?;
        let title = info
            .title()
            .map(str::to_string)
            .or_else(|| info.username().map(|u| format!("@{u}")))
            .unwrap_or_else(|| "a private chat".into());
        let req = self
            .bot
            .get_chat_member(ChatId(chat), teloxide::types::UserId(bot));
        let member = self.call(self.timeout, async { req.await })?;
        use teloxide::types::ChatMemberKind as K;
        let can_post = match &member.kind {
            K::Owner(_) | K::Administrator(_) | K::Member { .. } => true,
            K::Restricted(r) => r.is_member && r.can_send_messages,
            K::Left | K::Banned(_) => false,
        };
        Ok(ChatCheck { title, can_post })
    }

    /// `getWebhookInfo`: the webhook's host when one is set (getUpdates fails while it is).
    pub fn webhook(&self) -> Result<Option<String>, TgError> {
        let req = self.bot.get_webhook_info();
        let info = self.call(self.timeout, async { req.await })?;
        Ok(info
            .url
            .map(|u| u.host_str().unwrap_or("an unnamed host").to_string()))
    }
}

/// A network failure as one line: the Bot API's base URL (never the request's, whose path
/// holds the token) and the innermost cause (connection refused, a DNS failure, a
/// timeout), not reqwest's "error sending request".
fn unreachable(api: &str, e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let timed_out = cause
        .downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        || cause.to_string().contains("timed out");
    let what = if timed_out {
        "timed out".to_string()
    } else {
        cause.to_string()
    };
    format!("cannot reach the Bot API at {api}: {what}")
}

fn message_id(message: &str) -> Result<MessageId, TgError> {
    message
        .parse()
        .map(MessageId)
        .map_err(|_| TgError::Refused(format!("message id {message:?} out of range")))
}

/// Resolves once the stop flag is raised (checked every 100 ms).
async fn stopped(stop: &Stop) {
    while !stop.requested() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn is_server_side(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("internal server error")
        || m.contains("bad gateway")
        || m.contains("gateway")
        || m.contains("service unavailable")
        || m.starts_with("5")
}

fn markup(card: &Card) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new(card.buttons.iter().map(|row| {
        row.iter()
            .map(|b| InlineKeyboardButton::callback(b.label.clone(), card.callback_data(b)))
            .collect::<Vec<_>>()
    }))
}
