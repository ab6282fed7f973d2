//! The chat-channel seam: what the outbox and the decision loop need from a channel
//! ([`Channel`]), and the channel-neutral shapes that cross it: where a card goes and who
//! decides it ([`Target`]), presses and replies ([`Press`], [`Said`]) with the presser as
//! a channel-scoped identity (`telegram:123456`), and failures classified by how the
//! caller must react ([`ChannelError`]). Chats, topics and messages are strings here, as
//! in the store; only a channel's own folder knows their real types.

use crate::error::Kind;
use crate::model::Actor;
use crate::notify::Card;
use std::time::Duration;

/// Where a card goes and who decides it, as a channel's routing rule answers for a card's
/// source and risk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The chat (conversation) reference, as stored with deliveries.
    pub chat: String,
    /// A thread inside the chat (a Telegram forum topic), if any.
    pub topic: Option<String>,
    /// The channel-scoped identities that decide this route's cards (`telegram:123456`).
    pub operators: Vec<String>,
}

/// Who pressed or wrote: an identity its channel verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presser {
    /// Channel-scoped and stable (a renamed account is the same person): `telegram:123456`.
    pub id: String,
    /// How cards name them: `@alice`, or `Alice (123456)` without a user name.
    pub display: String,
}

impl Presser {
    /// The actor decisions are recorded for: the verified id first, then the display name.
    pub fn actor(&self) -> Actor {
        Actor {
            id: format!("{} {}", self.id, self.display),
            display: self.display.clone(),
            voter: self.id.clone(),
        }
    }
}

/// A button press, reduced to what decisions need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Press {
    /// The channel's reference for answering this press (a Telegram callback query id).
    pub id: String,
    pub presser: Presser,
    /// The chat and message the pressed button is on, when the channel says.
    pub chat: Option<String>,
    pub message: Option<String>,
    /// What the button carries (`Action::callback_data`).
    pub data: Option<String>,
}

/// A text message in a chat (an operator's reply with a rejection reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Said {
    pub presser: Presser,
    pub chat: String,
    pub text: String,
    /// The message this one replies to: on Telegram the replied-to message's id; on
    /// Slack the `thread_ts` of a threaded reply (the reason prompt is the thread's root,
    /// so a reply in the prompt's thread names the prompt's `ts`, the reference
    /// [`Channel::ask`] returned).
    pub reply_to: Option<String>,
}

/// One event of a channel's stream: its position (the cursor confirms it) and, when it is
/// a button press or a text message, what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub position: i64,
    pub press: Option<Press>,
    pub said: Option<Said>,
}

/// What a fetch of events returned.
pub enum Polled {
    Events(Vec<Incoming>),
    /// SIGTERM or Ctrl-C arrived while waiting.
    Stop,
}

/// How a failed request must be reacted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Rate limited: wait this long, then the same request may succeed.
    RetryAfter(Duration),
    /// The edited message no longer exists (deleted by someone): send a new one.
    MessageGone,
    /// Another consumer reads this channel's events.
    Conflict,
    /// Network error, timeout, 5xx, malformed answer: retry on a later run.
    Temporary,
    /// The credentials or the chat are wrong: nothing works until the configuration changes.
    Config,
    /// The channel refused this request for a reason retrying will not fix.
    Refused,
}

/// A channel's failure: how to react, and the channel's own words for it (secrets
/// already removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelError {
    pub failure: Failure,
    pub message: String,
}

impl std::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ChannelError {}

/// The kind of a channel error, for the exit code: wrong credentials or chat are
/// configuration, a refused request is internal, everything else is temporary.
pub fn classify(cause: &(dyn std::error::Error + 'static)) -> Option<Kind> {
    Some(match cause.downcast_ref::<ChannelError>()?.failure {
        Failure::Config => Kind::Config,
        Failure::Refused => Kind::Internal,
        _ => Kind::Temporary,
    })
}

/// A chat channel: its routes and identities, its formatter's hash, and the requests the
/// outbox and the decision loop make. Every method blocks; a channel that needs async
/// code keeps its runtime inside its own folder. Building a channel costs nothing:
/// [`Channel::connect`] starts its client, only when something is owed or polled.
pub trait Channel {
    /// The name deliveries, cursors and identities are stored under (`telegram`).
    fn name(&self) -> &'static str;
    /// The route of a card of `source` whose riskiest proposal is `risk` (`low`,
    /// `medium`, `high`); `None` when a `[[route]]` sends such cards to another channel
    /// (this channel then shows them nowhere and refuses presses on them).
    fn route(&self, source: &str, risk: &str) -> Option<Target>;
    /// Whether `presser` (a channel-scoped id) decides the cards of some route.
    fn is_operator_anywhere(&self, presser: &str) -> bool;
    /// Keep one status message per source in its route's chat.
    fn status_message(&self) -> bool;
    /// Longest total wait for rate limits in one outbox run.
    fn max_wait(&self) -> Duration;
    /// Hash of what this channel sends for `card` (formatted text and buttons).
    fn content_hash(&self, card: &Card) -> String;

    /// Starts the client (idempotent).
    fn connect(&self) -> anyhow::Result<()>;
    /// Sends a new card to `to`; returns its message reference.
    fn send(&self, to: &Target, card: &Card) -> Result<String, ChannelError>;
    /// Edits a card in place; an unchanged message counts as success.
    fn edit(&self, chat: &str, message: &str, card: &Card) -> Result<(), ChannelError>;
    /// Replaces a message's text with `text` and removes its buttons.
    fn retire(&self, chat: &str, message: &str, text: &str) -> Result<(), ChannelError>;
    /// Pins a message quietly (a status message); a refusal is harmless to the caller.
    fn pin(&self, chat: &str, message: &str) -> Result<(), ChannelError>;
    /// Asks for a reply (a rejection reason) in `to`; returns the prompt's reference.
    fn ask(&self, to: &Target, text: &str) -> Result<String, ChannelError>;
    /// Answers a press with a short notice (a toast); a press too old to answer is fine.
    fn answer(&self, press: &Press, text: &str) -> Result<(), ChannelError>;
    /// Events from position `after` on, waiting up to `wait` for the first; returns
    /// [`Polled::Stop`] when the stop flag is raised first.
    fn fetch(&self, after: Option<i64>, wait: Duration) -> Result<Polled, ChannelError>;
    /// The event at `position` committed (its decision and the cursor past it): a channel
    /// whose events must be acknowledged (Slack's Socket Mode envelopes) does it now. Called
    /// by the decision loop right after each event's commit, before any answer or prompt
    /// is sent; Telegram's cursor is its acknowledgement, so by default nothing happens.
    fn confirm(&self, _position: i64) {}
    /// Whether presses reach this channel only while it is connected (Slack's Socket
    /// Mode delivers a press once, to a connection open at the moment): a one-shot `poll`
    /// then listens for a while rather than only draining what is kept for it.
    fn live_only(&self) -> bool {
        false
    }
    /// Who this channel is connected as (a bot's name), for the logs.
    fn whoami(&self) -> Result<String, ChannelError>;
    /// Sleeps, waking early when the stop flag is raised; false then.
    fn sleep_or_stop(&self, d: Duration) -> bool;
}
