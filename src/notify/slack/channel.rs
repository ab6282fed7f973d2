//! Slack behind the seam: [`SlackChannel`] implements [`Channel`] over the Slack settings
//! (their routing rule stays `SlackConfig::route`, converted to a neutral [`Target`] in
//! [`target`]), and [`REGISTRATION`] is Slack's line in `notify::channels::CHANNELS`.
//!
//! References: a chat is a channel id (`C…`), a message is its `ts`. A reason prompt is
//! posted as a message of its own in the card's channel and its `ts` returned; an
//! operator answers in the prompt's thread, so the reply's `thread_ts` is the prompt's
//! `ts` and becomes [`Said::reply_to`](crate::notify::Said) (the Socket Mode side maps
//! it so). Slack has no toast: a press is answered with `chat.postEphemeral` to the
//! presser in the card's channel (nothing when the press names no channel).

use super::{format, updates, Slack};
use crate::config::{Config, SlackConfig};
use crate::notify::channels::Registration;
use crate::notify::{Card, Channel, ChannelError, Failure, Polled, Press, Target};
use crate::process::Stop;
use std::cell::OnceCell;
use std::time::Duration;
use updates::unscoped;

/// The channel name deliveries, cursors and identities are stored under.
pub const NAME: &str = "slack";

/// Slack's registration: its name, its length budget, and how the configuration makes a
/// channel of it.
pub const REGISTRATION: Registration = Registration {
    name: NAME,
    fits: format::fits,
    complete: |config| config.slack_complete(),
    deliver: |config| {
        config
            .slack
            .as_ref()
            .map(|cfg| Box::new(SlackChannel::new(cfg)) as Box<dyn Channel + '_>)
    },
    decide,
};

fn decide(config: &Config, stop: Stop) -> anyhow::Result<Box<dyn Channel + '_>> {
    let cfg = config.slack_for_decisions()?;
    Ok(Box::new(SlackChannel::new(cfg).with_stop(stop)))
}

/// A configured Slack channel; its client (runtime and HTTP) starts on
/// [`Channel::connect`], so a run with nothing to send starts neither.
pub struct SlackChannel<'a> {
    cfg: &'a SlackConfig,
    stop: Stop,
    client: OnceCell<Slack>,
    /// The Socket Mode session, started by the first fetch (poll, serve).
    socket: OnceCell<updates::Socket>,
}

impl<'a> SlackChannel<'a> {
    pub fn new(cfg: &'a SlackConfig) -> SlackChannel<'a> {
        SlackChannel {
            cfg,
            stop: Stop::default(),
            client: OnceCell::new(),
            socket: OnceCell::new(),
        }
    }

    /// Ends waits (429 sleeps) early when `stop` is raised.
    pub fn with_stop(mut self, stop: Stop) -> SlackChannel<'a> {
        self.stop = stop;
        self
    }

    /// The Web API client, started on first use.
    pub fn client(&self) -> Result<&Slack, ChannelError> {
        if self.client.get().is_none() {
            let client = Slack::new(self.cfg)
                .map_err(|e| ChannelError {
                    failure: Failure::Temporary,
                    message: format!("{e:#}"),
                })?
                .with_stop(self.stop.clone());
            let _ = self.client.set(client);
        }
        self.client.get().ok_or_else(|| ChannelError {
            failure: Failure::Temporary,
            message: "the Slack client did not start".into(),
        })
    }
}

impl SlackChannel<'_> {
    /// The Socket Mode session, started on first use. Each connection's URL comes from
    /// `apps.connections.open` through a client of its own, made on the session's thread
    /// (this channel's client stays on the decision loop's thread).
    fn socket(&self) -> Result<&updates::Socket, ChannelError> {
        if self.socket.get().is_none() {
            let cfg = self.cfg.clone();
            let open: updates::Opener = Box::new(move || {
                Slack::new(&cfg)
                    .map_err(|e| ChannelError {
                        failure: Failure::Temporary,
                        message: format!("{e:#}"),
                    })?
                    .open_connection()
            });
            let _ = self
                .socket
                .set(updates::Socket::start(open, self.stop.clone())?);
        }
        self.socket.get().ok_or_else(|| ChannelError {
            failure: Failure::Temporary,
            message: "the Slack Socket Mode session did not start".into(),
        })
    }
}

/// A neutral route of Slack's: the channel id as the chat, operators scoped.
fn target(t: crate::config::SlackTarget<'_>) -> Target {
    Target {
        chat: t.channel.to_string(),
        topic: None,
        operators: t.operators.iter().map(|u| updates::scoped(u)).collect(),
    }
}

impl Channel for SlackChannel<'_> {
    fn name(&self) -> &'static str {
        NAME
    }

    fn route(&self, source: &str, risk: &str) -> Option<Target> {
        self.cfg.route(source, risk).map(target)
    }

    fn is_operator_anywhere(&self, presser: &str) -> bool {
        unscoped(presser).is_some_and(|u| self.cfg.is_operator_anywhere(u))
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
        self.client().map(|_| ()).map_err(anyhow::Error::from)
    }

    fn send(&self, to: &Target, card: &Card) -> Result<String, ChannelError> {
        let blocks = serde_json::Value::Array(format::blocks(card));
        self.client()?.post(
            &to.chat,
            to.topic.as_deref(),
            &format::fallback(card),
            Some(blocks),
        )
    }

    fn edit(&self, chat: &str, message: &str, card: &Card) -> Result<(), ChannelError> {
        let blocks = serde_json::Value::Array(format::blocks(card));
        self.client()?
            .update(chat, message, &format::fallback(card), blocks)
    }

    fn retire(&self, chat: &str, message: &str, text: &str) -> Result<(), ChannelError> {
        let blocks = serde_json::Value::Array(format::text_only(text));
        self.client()?
            .update(chat, message, &format::escape(text), blocks)
    }

    fn pin(&self, chat: &str, message: &str) -> Result<(), ChannelError> {
        self.client()?.pin(chat, message)
    }

    fn ask(&self, to: &Target, text: &str) -> Result<String, ChannelError> {
        self.client()?
            .post(&to.chat, to.topic.as_deref(), &format::escape(text), None)
    }

    fn answer(&self, press: &Press, text: &str) -> Result<(), ChannelError> {
        let (Some(chat), Some(user)) = (press.chat.as_deref(), unscoped(&press.presser.id)) else {
            return Ok(()); // nowhere to show a notice: the card carries the outcome
        };
        match self.client()?.ephemeral(chat, user, &format::escape(text)) {
            // The presser left the channel, or it was archived: the card says it all.
            Err(e) if e.failure == Failure::Refused || e.failure == Failure::Config => Ok(()),
            other => other,
        }
    }

    fn fetch(&self, after: Option<i64>, wait: Duration) -> Result<Polled, ChannelError> {
        self.socket()?.fetch(after, wait)
    }

    fn confirm(&self, position: i64) {
        if let Some(socket) = self.socket.get() {
            socket.confirm(position);
        }
    }

    fn live_only(&self) -> bool {
        true
    }

    fn whoami(&self) -> Result<String, ChannelError> {
        Ok(self.client()?.whoami()?.user)
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
