//! Decisions: button presses (and, later, CLI commands) -> lifecycle changes.
//!
//! Authorization lives here: the pressing user must be an operator, the press must come
//! from the card's own message in the configured chat, and the proposal must still be in a
//! state where the action applies (checked by the store's compare-and-set). Anything else
//! is refused, answered, and audited; it never changes state.

use crate::config::TelegramConfig;
use crate::notify::telegram::{Press, Said};
use crate::store::{Actor, CardRef, Decided, Store, Via};
use anyhow::Result;

/// What a button asks for. Callback data is a row reference and the stamp of the card
/// it was on, never a command: `a:12:1f2e3d4c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `a:<proposal id>`
    Approve(i64),
    /// `r:<cluster id>`: reject the pending variants the card shows.
    Reject(i64),
    /// `c:<proposal id>`: cancel an approved or interrupted proposal.
    Cancel(i64),
    /// `t:<proposal id>`: retry an interrupted proposal.
    Retry(i64),
}

impl Action {
    /// Parses callback data strictly: one kind letter, a row id in canonical decimal
    /// digits (no sign, no leading zero) and a stamp of [`crate::store::STAMP_LEN`] hex
    /// digits. Returns the action and the stamp.
    pub fn parse(data: &str) -> Option<(Action, String)> {
        let mut parts = data.split(':');
        let (kind, id, stamp) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some()
            || id.is_empty()
            || id.starts_with('0')
            || !id.bytes().all(|b| b.is_ascii_digit())
            || stamp.len() != crate::store::STAMP_LEN
            || !stamp
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        let id: i64 = id.parse().ok()?;
        let action = match kind {
            "a" => Action::Approve(id),
            "r" => Action::Reject(id),
            "c" => Action::Cancel(id),
            "t" => Action::Retry(id),
            _ => return None,
        };
        Some((action, stamp.to_string()))
    }

    pub fn callback_data(self, stamp: &str) -> String {
        let (kind, id) = match self {
            Action::Approve(id) => ("a", id),
            Action::Reject(id) => ("r", id),
            Action::Cancel(id) => ("c", id),
            Action::Retry(id) => ("t", id),
        };
        format!("{kind}:{id}:{stamp}")
    }
}

/// How long a first tap on a stale proposal's Approve waits for the second.
pub const CONFIRM_WINDOW_MS: i64 = 120_000;

/// The actor for a Telegram user.
pub fn telegram_actor(press: &Press) -> Actor {
    let display = match &press.username {
        Some(u) => format!("@{u}"),
        None => format!("{} ({})", press.first_name, press.user_id),
    };
    Actor {
        id: format!("telegram:{} {display}", press.user_id),
        display,
    }
}

/// Applies one press; returns the short answer for the operator's toast.
pub fn apply_press(
    store: &mut Store,
    cfg: &TelegramConfig,
    require_reason: bool,
    press: &Press,
    update_id: i64,
    now: i64,
) -> Result<Decided> {
    let actor = telegram_actor(press);
    let action = press.data.as_deref().and_then(Action::parse);
    let refuse = |store: &mut Store, proposal: Option<i64>, why: &str| -> Result<Decided> {
        let via = Via {
            card: None,
            update_id: Some(update_id),
        };
        store.refuse(proposal, &actor, why, via, now)?;
        Ok(Decided::Refused(why.to_string()))
    };
    let proposal_ref = match action {
        Some((Action::Approve(id) | Action::Cancel(id) | Action::Retry(id), _)) => Some(id),
        _ => None,
    };
    if !cfg.operators.contains(&press.user_id) {
        return refuse(
            store,
            proposal_ref,
            "you are not an operator of this opsgate",
        );
    }
    let (Some(chat), Some(message)) = (press.chat_id, press.message_id) else {
        return refuse(store, proposal_ref, "this button is not on an opsgate card");
    };
    if chat != cfg.chat_id {
        return refuse(store, proposal_ref, "this chat is not the opsgate chat");
    }
    let Some((action, stamp)) = action else {
        return refuse(store, None, "unknown button");
    };
    let via = Via {
        card: Some(CardRef {
            chat,
            message,
            stamp,
        }),
        update_id: Some(update_id),
    };
    match action {
        Action::Approve(id) => {
            // A stale proposal is approved by a second tap within two minutes.
            let key = format!("{id}:{}", press.user_id);
            let confirmed = store.take_confirmation(&key, now)?;
            let outcome = store.approve(id, &actor, via, now, confirmed)?;
            if matches!(outcome, Decided::Confirm(_)) {
                store.note_confirmation(&key, now + CONFIRM_WINDOW_MS)?;
            }
            Ok(outcome)
        }
        Action::Reject(cluster) if require_reason => store.request_reason(
            cluster,
            &actor,
            &press.user_id.to_string(),
            now + REASON_WINDOW_MS,
            via,
            now,
        ),
        Action::Reject(cluster) => store.reject_cluster(cluster, &actor, None, via, now),
        Action::Cancel(id) => store.cancel(id, &actor, None, via, now),
        Action::Retry(id) => store.retry(id, &actor, via, now),
    }
}

/// How long an operator has to type a rejection reason after pressing Reject.
pub const REASON_WINDOW_MS: i64 = 10 * 60_000;

/// A text message: the rejection reason an operator owes, if they owe one. Messages from
/// anyone else, from another chat, or with no open request are ignored (and confirmed).
pub fn apply_message(
    store: &mut Store,
    cfg: &TelegramConfig,
    said: &Said,
    update_id: i64,
    now: i64,
) -> Result<Option<Decided>> {
    let via = Via {
        card: None,
        update_id: Some(update_id),
    };
    if !cfg.operators.contains(&said.user_id) || said.chat_id != cfg.chat_id {
        store.confirm_update(update_id)?;
        return Ok(None);
    }
    // Only a reply to the prompt counts; other chatter leaves the request open.
    let Some(request) = store.take_reason_request(&said.user_id.to_string(), said.reply_to, now)?
    else {
        store.confirm_update(update_id)?;
        return Ok(None);
    };
    let reason: String = said.text.trim().chars().take(500).collect();
    let press_like = Press {
        query_id: String::new(),
        user_id: said.user_id,
        username: said.username.clone(),
        first_name: said.first_name.clone(),
        chat_id: Some(said.chat_id),
        message_id: None,
        data: None,
    };
    let actor = telegram_actor(&press_like);
    // The rejection applies to the card as it was when Reject was pressed.
    let via = Via {
        card: Some(CardRef {
            chat: request.chat,
            message: request.message,
            stamp: request.stamp,
        }),
        ..via
    };
    store
        .reject_cluster(request.cluster_id, &actor, Some(&reason), via, now)
        .map(Some)
}

/// The toast text for an outcome.
pub fn answer_text(outcome: &Decided) -> String {
    let text = match outcome {
        Decided::Applied(t) => format!("Done: {t}"),
        Decided::Already(t) => format!("Nothing to do: {t}"),
        Decided::Refused(t) => format!("Refused: {t}"),
        Decided::Confirm(t) => format!("Stale: {t}"),
        Decided::AskReason(_) => "Reply in the chat with the reason for rejecting".into(),
    };
    // Telegram caps callback answers at 200 characters.
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_data_round_trips_and_rejects_forgeries() {
        let stamp = "0123abcd";
        for a in [
            Action::Approve(12),
            Action::Reject(3),
            Action::Cancel(4),
            Action::Retry(i64::MAX),
        ] {
            assert_eq!(
                Action::parse(&a.callback_data(stamp)),
                Some((a, stamp.to_string()))
            );
            assert!(a.callback_data(stamp).len() <= crate::notify::MAX_CALLBACK_BYTES);
        }
        for bad in [
            "",
            "a",
            "a:",
            "a:x",
            "a:1",
            "a:-1:0123abcd",
            "a:+1:0123abcd",
            "a:01:0123abcd",
            "a:0:0123abcd",
            "a: 1:0123abcd",
            "a:1:0123ABCD",
            "a:1:0123abc",
            "a:1:0123abcd:",
            "a:99999999999999999999:0123abcd",
            "x:1:0123abcd",
            "docker stop web",
        ] {
            assert_eq!(Action::parse(bad), None, "{bad}");
        }
    }
}
