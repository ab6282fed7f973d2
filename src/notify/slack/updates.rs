//! Slack events as neutral events: user ids as channel-scoped identities (`slack:U123`).
//! (The Socket Mode client that reads presses and replies lives here too; see the
//! `slack-socket` work.)

use super::channel::NAME;

/// A Slack user id as a channel-scoped identity: `slack:U012AB3CD`.
pub fn scoped(user: &str) -> String {
    format!("{NAME}:{user}")
}
