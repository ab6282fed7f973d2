//! Telegram updates as neutral events: callback queries as [`Press`]es, text messages as
//! [`Said`]s, Telegram user ids as channel-scoped identities (`telegram:123456`). Pure.

use super::channel::NAME;
use crate::notify::{Incoming, Press, Presser, Said};
use teloxide::types::{UpdateKind, User};

/// A Telegram user id as a channel-scoped identity: `telegram:123456`.
pub fn scoped(user: u64) -> String {
    format!("{NAME}:{user}")
}

/// The Telegram user id of a channel-scoped identity, if it is one.
pub fn unscoped(id: &str) -> Option<u64> {
    id.strip_prefix(NAME)?.strip_prefix(':')?.parse().ok()
}

/// A Telegram user as the presser decisions record: `@alice`, or `Alice (123456)`
/// without a user name.
fn presser(user: &User) -> Presser {
    let display = match &user.username {
        Some(u) => format!("@{u}"),
        None => format!("{} ({})", user.first_name, user.id.0),
    };
    Presser {
        id: scoped(user.id.0),
        display,
    }
}

pub(super) fn convert(updates: Vec<teloxide::types::Update>) -> Vec<Incoming> {
    updates
        .into_iter()
        .map(|u| {
            let said = match &u.kind {
                UpdateKind::Message(m) => match (m.from.as_ref(), m.text()) {
                    (Some(from), Some(text)) => Some(Said {
                        presser: presser(from),
                        chat: m.chat.id.0.to_string(),
                        text: text.to_string(),
                        reply_to: m.reply_to_message().map(|r| r.id.0.to_string()),
                    }),
                    _ => None,
                },
                _ => None,
            };
            let press = match u.kind {
                UpdateKind::CallbackQuery(q) => Some(Press {
                    id: q.id.0.clone(),
                    presser: presser(&q.from),
                    chat: q.message.as_ref().map(|m| m.chat().id.0.to_string()),
                    message: q.message.as_ref().map(|m| m.id().0.to_string()),
                    data: q.data.clone(),
                }),
                _ => None,
            };
            Incoming {
                position: i64::from(u.id.0),
                press,
                said,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_scoped_and_round_trip() {
        assert_eq!(scoped(123456), "telegram:123456");
        assert_eq!(unscoped("telegram:123456"), Some(123456));
        assert_eq!(unscoped("slack:U123"), None);
        assert_eq!(unscoped("telegramx:1"), None);
        assert_eq!(unscoped("123456"), None);
    }
}
