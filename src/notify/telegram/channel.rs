//! Telegram behind the seam: [`TelegramChannel`] implements [`Channel`] over the Telegram
//! settings (their routing rule stays `TelegramConfig::route`, converted to a neutral
//! [`Target`] in [`target`]), and [`REGISTRATION`] is Telegram's line in
//! `notify::channels::CHANNELS`.

use super::{format, updates, Telegram, TgError};
use crate::config::{Config, TelegramConfig};
use crate::notify::channels::Registration;
use crate::notify::{Card, Channel, ChannelError, Failure, Polled, Press, Target};
use crate::process::Stop;
use std::cell::OnceCell;
use std::time::Duration;

/// The channel name deliveries, cursors and identities are stored under.
pub const NAME: &str = "telegram";

/// Telegram's registration: its name, its length budget, and how the configuration makes
/// a channel of it.
pub const REGISTRATION: Registration = Registration {
    name: NAME,
    fits: format::fits,
    complete: |config| config.telegram_complete(),
    deliver: |config| {
        config
            .telegram
            .as_ref()
            .map(|cfg| Box::new(TelegramChannel::new(cfg)) as Box<dyn Channel + '_>)
    },
    decide,
};

fn decide(config: &Config, stop: Stop) -> anyhow::Result<Box<dyn Channel + '_>> {
    let cfg = config.telegram_for_decisions()?;
    Ok(Box::new(TelegramChannel::new(cfg).with_stop(stop)))
}

/// A configured Telegram channel; its client (runtime and HTTP) starts on
/// [`Channel::connect`], so a run with nothing to send starts neither.
pub struct TelegramChannel<'a> {
    cfg: &'a TelegramConfig,
    stop: Stop,
    client: OnceCell<Telegram>,
}

impl<'a> TelegramChannel<'a> {
    pub fn new(cfg: &'a TelegramConfig) -> TelegramChannel<'a> {
        TelegramChannel {
            cfg,
            stop: Stop::default(),
            client: OnceCell::new(),
        }
    }

    /// Ends waits (long polls, 429 sleeps) early when `stop` is raised.
    pub fn with_stop(mut self, stop: Stop) -> TelegramChannel<'a> {
        self.stop = stop;
        self
    }

    fn client(&self) -> Result<&Telegram, ChannelError> {
        if self.client.get().is_none() {
            let client = Telegram::new(self.cfg)
                .map_err(|e| TgError::Temporary(format!("{e:#}")))?
                .with_stop(self.stop.clone());
            let _ = self.client.set(client);
        }
        self.client.get().ok_or_else(|| {
            ChannelError::from(TgError::Temporary("the client did not start".into()))
        })
    }
}

/// A neutral route of Telegram's: chat and topic as strings, operators scoped.
fn target(t: crate::config::Target<'_>) -> Target {
    Target {
        chat: t.chat_id.to_string(),
        topic: t.topic.map(|t| t.to_string()),
        operators: t.operators.iter().map(|u| updates::scoped(*u)).collect(),
    }
}

fn chat_id(chat: &str) -> Result<i64, TgError> {
    chat.parse()
        .map_err(|_| TgError::Refused(format!("chat id {chat:?} is not a Telegram chat")))
}

fn topic_id(to: &Target) -> Result<Option<i32>, TgError> {
    to.topic
        .as_deref()
        .map(|t| {
            t.parse()
                .map_err(|_| TgError::Refused(format!("topic {t:?} is not a Telegram topic")))
        })
        .transpose()
}

impl From<TgError> for ChannelError {
    fn from(e: TgError) -> ChannelError {
        let failure = match &e {
            TgError::RetryAfter(d) => Failure::RetryAfter(*d),
            TgError::MessageGone => Failure::MessageGone,
            TgError::Conflict => Failure::Conflict,
            TgError::Temporary(_) => Failure::Temporary,
            TgError::Config(_) => Failure::Config,
            TgError::Refused(_) => Failure::Refused,
        };
        ChannelError {
            failure,
            message: e.to_string(),
        }
    }
}

impl Channel for TelegramChannel<'_> {
    fn name(&self) -> &'static str {
        NAME
    }

    fn route(&self, source: &str, risk: &str) -> Option<Target> {
        self.cfg.route(source, risk).map(target)
    }

    fn is_operator_anywhere(&self, presser: &str) -> bool {
        updates::unscoped(presser).is_some_and(|u| self.cfg.is_operator_anywhere(u))
    }

    fn status_message(&self) -> bool {
        self.cfg.status_message
    }

    fn max_wait(&self) -> Duration {
        self.cfg.max_wait
    }

    fn content_hash(&self, card: &Card) -> String {
        format::content_hash(card)
    }

    fn connect(&self) -> anyhow::Result<()> {
        if self.client.get().is_none() {
            let client = Telegram::new(self.cfg)?.with_stop(self.stop.clone());
            let _ = self.client.set(client);
        }
        Ok(())
    }

    fn send(&self, to: &Target, card: &Card) -> Result<String, ChannelError> {
        let client = self.client()?;
        Ok(client.send(chat_id(&to.chat)?, topic_id(to)?, card)?)
    }

    fn edit(&self, chat: &str, message: &str, card: &Card) -> Result<(), ChannelError> {
        Ok(self.client()?.edit(chat_id(chat)?, message, card)?)
    }

    fn retire(&self, chat: &str, message: &str, text: &str) -> Result<(), ChannelError> {
        Ok(self.client()?.retire(chat_id(chat)?, message, text)?)
    }

    fn pin(&self, chat: &str, message: &str) -> Result<(), ChannelError> {
        Ok(self.client()?.pin(chat_id(chat)?, message)?)
    }

    fn ask(&self, to: &Target, text: &str) -> Result<String, ChannelError> {
        let client = self.client()?;
        Ok(client.ask(chat_id(&to.chat)?, topic_id(to)?, text)?)
    }

    fn answer(&self, press: &Press, text: &str) -> Result<(), ChannelError> {
        Ok(self.client()?.answer(&press.id, text)?)
    }

    fn fetch(&self, after: Option<i64>, wait: Duration) -> Result<Polled, ChannelError> {
        Ok(self.client()?.updates_or_stop(after, wait)?)
    }

    fn whoami(&self) -> Result<String, ChannelError> {
        Ok(self.client()?.me()?.1)
    }

    fn sleep_or_stop(&self, d: Duration) -> bool {
        match self.client() {
            Ok(client) => client.sleep_or_stop(d),
            Err(_) => {
                std::thread::sleep(d);
                !self.stop.requested()
            }
        }
    }
}
