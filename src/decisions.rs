//! Decisions: button presses and typed reasons from the chat -> lifecycle changes.
//!
//! Authorization lives here: the pressing user must be an operator of the card's route,
//! the press must come from the card's own message in the route's chat with the card's
//! current stamp, and
//! the proposal must still be in a state where the action applies (checked by the store's
//! compare-and-set). Anything else is refused, answered, and audited; it never changes
//! state. The Telegram update loop is here too: each update's decision commits together
//! with the cursor that confirms it.

use crate::config::{Target, TelegramConfig};
use crate::model::{Action, Actor, CardRef, Cursor, Decided, Refusal, Via};
use crate::notify::telegram::{Incoming, Press, Said, Telegram, CHANNEL};
use crate::store::{CardOf, Store};
use anyhow::Result;

/// How long a first tap on a stale proposal's Approve waits for the second.
pub const CONFIRM_WINDOW_MS: i64 = 120_000;
/// How long an operator has to type a rejection reason after pressing Reject.
pub const REASON_WINDOW_MS: i64 = 10 * 60_000;

/// The actor for a Telegram user.
pub fn telegram_actor(user_id: u64, username: Option<&str>, first_name: &str) -> Actor {
    let display = match username {
        Some(u) => format!("@{u}"),
        None => format!("{first_name} ({user_id})"),
    };
    Actor {
        id: format!("telegram:{user_id} {display}"),
        display,
        voter: format!("telegram:{user_id}"),
    }
}

fn cursor_after(update_id: i64) -> Cursor {
    Cursor {
        channel: CHANNEL.to_string(),
        position: update_id + 1,
    }
}

/// Applies one press.
pub fn apply_press(
    store: &mut Store,
    cfg: &TelegramConfig,
    require_reason: bool,
    press: &Press,
    update_id: i64,
    now: i64,
) -> Result<Decided> {
    let actor = telegram_actor(press.user_id, press.username.as_deref(), &press.first_name);
    let action = press.data.as_deref().and_then(Action::parse);
    let refuse = |store: &mut Store, proposal: Option<i64>, why: Refusal| -> Result<Decided> {
        let via = Via {
            card: None,
            cursor: Some(cursor_after(update_id)),
        };
        store.refuse(proposal, &actor, why, &via, now)
    };
    let proposal_ref = match action {
        Some((Action::Approve(id) | Action::Cancel(id) | Action::Retry(id), _)) => Some(id),
        _ => None,
    };
    if !cfg.is_operator_anywhere(press.user_id) {
        return refuse(store, proposal_ref, Refusal::NotOperator);
    }
    let (Some(chat), Some(message)) = (press.chat_id, press.message_id) else {
        return refuse(store, proposal_ref, Refusal::NotACard);
    };
    let Some((action, stamp)) = action else {
        return refuse(store, None, Refusal::UnknownButton);
    };
    // The card's route decides where its buttons count and whose presses do.
    let (card, route) = route_of(store, cfg, action)?;
    if chat != route.chat_id {
        // A press on a card left in its old chat by a route change: the card is redrawn,
        // so the outbox moves it to its route's chat (and retires this message).
        if let Some(card) = card {
            if store.delivered_chat(card, CHANNEL)?.as_deref() == Some(&chat.to_string()) {
                store.redraw_card(card)?;
            }
        }
        return refuse(store, proposal_ref, Refusal::WrongChat);
    }
    if !route.operators.contains(&press.user_id) {
        return refuse(store, proposal_ref, Refusal::OtherRoute);
    }
    let via = Via {
        card: Some(CardRef {
            channel: CHANNEL.to_string(),
            chat: chat.to_string(),
            message: message.to_string(),
            stamp,
        }),
        cursor: Some(cursor_after(update_id)),
    };
    match action {
        Action::Approve(id) => {
            // A stale proposal is approved by a second tap within two minutes.
            let key = format!("{id}:{}", press.user_id);
            let confirmed = store.take_confirmation(&key, now)?;
            let outcome = store.approve(id, &actor, &via, now, confirmed)?;
            if let Decided::Confirm { since, .. } = outcome {
                let until = now + CONFIRM_WINDOW_MS;
                let note = format!(
                    "⏳ {} tapped Approve on #{id}, not proposed since {}: tap Approve again before {} to confirm",
                    actor.display,
                    crate::time::hhmm(since),
                    crate::time::hhmm(until)
                );
                let card = store.card_route(CardOf::Proposal(id))?.map(|(c, _, _)| c);
                store.note_confirmation(&key, until, card.map(|c| (c, note.as_str())))?;
            }
            Ok(outcome)
        }
        Action::Reject(cluster) if require_reason => store.request_reason(
            cluster,
            &actor,
            &press.user_id.to_string(),
            now + REASON_WINDOW_MS,
            &via,
            now,
        ),
        Action::Reject(cluster) => store.reject_cluster(cluster, &actor, None, &via, now),
        Action::Cancel(id) => store.cancel(id, &actor, &via, now),
        Action::Retry(id) => {
            // The outcome of an interrupted run is unknown: a retry is a second tap within
            // two minutes, after the card has said that the command may have completed.
            let key = format!("retry:{id}:{}", press.user_id);
            let confirmed = store.take_confirmation(&key, now)?;
            let outcome = store.retry(id, &actor, &via, now, confirmed)?;
            if let Decided::ConfirmRetry { .. } = outcome {
                let until = now + CONFIRM_WINDOW_MS;
                let note = format!(
                    "⏳ {} tapped Retry on #{id}: {}, and a retry may run it a second time; tap Retry again before {} to run it again",
                    actor.display,
                    crate::lifecycle::OUTCOME_UNKNOWN,
                    crate::time::hhmm(until)
                );
                let card = store.card_route(CardOf::Proposal(id))?.map(|(c, _, _)| c);
                store.note_confirmation(&key, until, card.map(|c| (c, note.as_str())))?;
            }
            Ok(outcome)
        }
    }
}

/// The route of the card a button acts on; a button naming no card gets the default route
/// (the store refuses it afterwards).
fn route_of<'c>(
    store: &mut Store,
    cfg: &'c TelegramConfig,
    action: Action,
) -> Result<(Option<i64>, Target<'c>)> {
    let of = match action {
        Action::Approve(id) | Action::Cancel(id) | Action::Retry(id) => CardOf::Proposal(id),
        Action::Reject(cluster) => CardOf::Card(cluster),
    };
    Ok(match store.card_route(of)? {
        Some((card, source, risk)) => (Some(card), cfg.route(&source, risk.as_str())),
        None => (None, cfg.route("", crate::model::Risk::Low.as_str())),
    })
}

/// A reason prompt's reference: message ids are per chat, so the chat is part of it.
fn prompt_ref(chat: i64, message: &str) -> String {
    format!("{chat}:{message}")
}

/// A text message: the rejection reason an operator owes, if they owe one and it replies
/// to the prompt. Messages from anyone else, from another chat, or with no open request
/// are ignored (and confirmed).
pub fn apply_message(
    store: &mut Store,
    cfg: &TelegramConfig,
    said: &Said,
    update_id: i64,
    now: i64,
) -> Result<Option<Decided>> {
    let cursor = cursor_after(update_id);
    if !cfg.is_operator_anywhere(said.user_id) {
        store.advance_cursor(&cursor)?;
        return Ok(None);
    }
    // Only a reply to the prompt (in the prompt's chat) counts; other chatter leaves the
    // request open.
    let reply_to = said
        .reply_to
        .map(|id| prompt_ref(said.chat_id, &id.to_string()));
    let Some(request) =
        store.take_reason_request(&said.user_id.to_string(), reply_to.as_deref(), now)?
    else {
        store.advance_cursor(&cursor)?;
        return Ok(None);
    };
    let reason: String = said.text.trim().chars().take(500).collect();
    let actor = telegram_actor(said.user_id, said.username.as_deref(), &said.first_name);
    // The rejection applies to the card as it was when Reject was pressed.
    let via = Via {
        card: Some(request.card.into()),
        cursor: Some(cursor),
    };
    store
        .reject_cluster(request.cluster_id, &actor, Some(&reason), &via, now)
        .map(Some)
}

/// The toast text for an outcome (Telegram caps it at 200 characters).
pub fn answer_text(outcome: &Decided) -> String {
    let said = crate::notify::describe(outcome);
    let text = match outcome {
        Decided::Applied(_) => format!("Done: {said}"),
        Decided::Already { .. } | Decided::AlreadyApproved { .. } => {
            format!("Nothing to do: {said}")
        }
        Decided::Refused(_) => format!("Refused: {said}"),
        Decided::Confirm { .. } => format!("Stale: {said}"),
        Decided::ConfirmRetry { .. } => format!("Confirm: {said}"),
        Decided::AskReason { .. } => "Reply in the chat with the reason for rejecting".into(),
    };
    text.chars().take(200).collect()
}

/// Counts of what a batch of updates did.
#[derive(Debug, Default)]
pub struct Handled {
    pub applied: usize,
    pub already: usize,
    pub refused: usize,
    pub other: usize,
}

/// Applies updates in order. Each decision commits with its cursor; a database error
/// stops the batch before the cursor moves past the failing update, so Telegram delivers
/// it again. Warnings (a prompt or an answer that could not be sent) go to `warn`.
pub fn handle_updates(
    store: &mut Store,
    tg: &Telegram,
    cfg: &TelegramConfig,
    require_reason: bool,
    updates: Vec<Incoming>,
    now: i64,
    warn: &dyn Fn(String),
) -> Result<Handled> {
    let mut handled = Handled::default();
    let offset = store.cursor(CHANNEL)?.unwrap_or(0);
    for update in updates {
        if update.update_id < offset {
            continue; // already handled: a redelivery
        }
        if let Some(said) = &update.said {
            let decided = apply_message(store, cfg, said, update.update_id, now)?;
            if let Some(outcome) = &decided {
                tracing::info!(user = said.user_id, chat = said.chat_id,
                    outcome = %crate::notify::describe(outcome), "rejection reason");
            }
            match decided {
                Some(Decided::Applied(_)) => handled.applied += 1,
                Some(_) => handled.refused += 1,
                None => handled.other += 1,
            }
            continue;
        }
        let Some(press) = update.press else {
            store.advance_cursor(&cursor_after(update.update_id))?;
            handled.other += 1;
            continue;
        };
        let outcome = apply_press(store, cfg, require_reason, &press, update.update_id, now)?;
        if let Decided::AskReason { cluster_id } = outcome {
            let who =
                telegram_actor(press.user_id, press.username.as_deref(), &press.first_name).display;
            let prompt = format!(
                "{who}: reply to this message with the reason for rejecting card {cluster_id} (within 10 minutes)."
            );
            let (_, to) = route_of(store, cfg, Action::Reject(cluster_id))?;
            match tg.ask(&to, &prompt) {
                Ok(prompt_id) => store.note_reason_prompt(
                    &press.user_id.to_string(),
                    &prompt_ref(to.chat_id, &prompt_id),
                )?,
                Err(e) => {
                    tracing::warn!(error = %e, "could not ask for a rejection reason");
                    warn(format!("could not ask for a rejection reason: {e}"))
                }
            }
        }
        let who = telegram_actor(press.user_id, press.username.as_deref(), &press.first_name).id;
        let said = crate::notify::describe(&outcome);
        if matches!(outcome, Decided::Refused(_)) {
            tracing::warn!(actor = %who, chat = press.chat_id.unwrap_or_default(),
                message_id = press.message_id.unwrap_or_default(),
                button = press.data.as_deref().unwrap_or(""), outcome = %said, "press refused");
        } else {
            tracing::info!(actor = %who, chat = press.chat_id.unwrap_or_default(),
                message_id = press.message_id.unwrap_or_default(),
                button = press.data.as_deref().unwrap_or(""), outcome = %said, "press");
        }
        match &outcome {
            Decided::Applied(_) => handled.applied += 1,
            Decided::Refused(_) => handled.refused += 1,
            Decided::Already { .. }
            | Decided::AlreadyApproved { .. }
            | Decided::Confirm { .. }
            | Decided::ConfirmRetry { .. }
            | Decided::AskReason { .. } => handled.already += 1,
        }
        if let Err(e) = tg.answer(&press.query_id, &answer_text(&outcome)) {
            tracing::warn!(error = %e, "could not answer a button press");
            warn(format!("could not answer a button press: {e}"));
        }
    }
    Ok(handled)
}
