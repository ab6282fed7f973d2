//! The outbox loop: delivers the cards the store says a channel is owed, through the
//! channel's adapter, and records each delivery right after the channel answers.

use super::render;
use super::telegram::{Telegram, TgError, CHANNEL};
use crate::config::{Config, TelegramConfig};
use crate::store::{Delivered, Store};
use anyhow::Result;
use std::time::Duration;

/// What one outbox run did.
#[derive(Debug, Default)]
pub struct PushReport {
    pub sent: usize,
    pub edited: usize,
    /// Owed cards whose rendered content had not changed: no API call.
    pub unchanged: usize,
    /// Cards still owed when the run stopped.
    pub still_owed: usize,
    /// Why the run stopped early, if it did.
    pub stopped_by: Option<TgError>,
    /// Cards the channel refused; they stay owed.
    pub refused: Vec<(i64, TgError)>,
    /// Another process was delivering cards: this run sent nothing (what is owed stays
    /// owed for it or the next run).
    pub busy: bool,
}

/// What a card's old message says once the card moved to another route's chat.
const MOVED: &str = "This card moved to another chat (its route changed). Decide it there.";

/// Owed cards read per query.
const OWED_PAGE: i64 = 100;

/// The lock that keeps one card deliverer per database, so two processes never send the
/// same owed card.
const OUTBOX_LOCK: &str = "outbox";

/// Delivers every owed card: sends new ones, edits changed ones, records each delivery in
/// its own transaction right after Telegram's answer. Stops at the first temporary failure
/// (nothing is lost: the cards stay owed) and waits out 429s within `max_wait` in total.
///
/// `ready` is the client of a long-running command (poll, serve); without one, a client
/// is built only once a card is owed (a run with nothing to send starts no runtime and no
/// HTTP client).
pub fn push_owed(
    store: &mut Store,
    cfg: &TelegramConfig,
    ready: Option<&Telegram>,
) -> Result<PushReport> {
    let max_wait = cfg.max_wait;
    let mut report = PushReport::default();
    store.ensure_channel(CHANNEL)?;
    if store.owed_cards_after(CHANNEL, i64::MIN, 1)?.is_empty() {
        return Ok(report); // nothing owed: no lease, no write, no client
    }
    let built;
    let tg = match ready {
        Some(tg) => tg,
        None => {
            built = Telegram::new(cfg)?;
            &built
        }
    };
    if !store.try_lock(OUTBOX_LOCK)? {
        report.busy = true;
        return Ok(report);
    }
    let result = deliver(store, tg, cfg, max_wait, report);
    store.unlock(OUTBOX_LOCK);
    result
}

fn deliver(
    store: &mut Store,
    tg: &Telegram,
    cfg: &TelegramConfig,
    max_wait: Duration,
    mut report: PushReport,
) -> Result<PushReport> {
    let mut waited = Duration::ZERO;
    // A page of owed cards at a time: a backlog of any size costs no memory.
    let mut after = i64::MIN;
    loop {
        let owed = store.owed_cards_after(CHANNEL, after, OWED_PAGE)?;
        let Some(last) = owed.last() else { break };
        after = last.cluster_id;
        for card_row in &owed {
            let view = store.cluster(card_row.cluster_id)?;
            let card = render(&view);
            let hash = card.content_hash();
            // Its route: a card with something still to decide whose route now names
            // another chat (the configuration changed, or a riskier variant joined it) is
            // sent anew there and its old message retired; a decided card is edited where
            // it is.
            let mut target = cfg.route(&view.source, view.risk().as_str());
            let sent_to = card_row.chat.as_deref().and_then(|c| c.parse::<i64>().ok());
            let moved_from = sent_to
                .filter(|c| *c != target.chat_id && view.in_flight().next().is_some())
                .zip(card_row.message.clone());
            if let (Some(chat), None, Some(_)) = (sent_to, &moved_from, &card_row.message) {
                target.chat_id = chat; // edited in place
            }
            let chat = target.chat_id.to_string();
            let message = card_row.message.clone().filter(|_| moved_from.is_none());
            let delivered = |message| delivered(&chat, message, &hash, &card);
            if message.is_none() && view.in_flight().next().is_none() {
                // Decided before its card went out: nothing to send.
                store.mark_delivered(CHANNEL, card_row, &delivered(None))?;
                continue;
            }
            if message.is_some() && card_row.content_hash.as_deref() == Some(hash.as_str()) {
                store.mark_delivered(CHANNEL, card_row, &delivered(message.as_deref()))?;
                report.unchanged += 1;
                continue;
            }
            let mut existing = message;
            loop {
                let result = match &existing {
                    None => tg.send(&target, &card),
                    Some(id) => tg.edit(target.chat_id, id, &card).map(|_| id.clone()),
                };
                match result {
                    Ok(id) => {
                        store.mark_delivered(CHANNEL, card_row, &delivered(Some(&id)))?;
                        tracing::debug!(card = card_row.cluster_id, chat = target.chat_id, message = %id, "card delivered");
                        if let Some((old_chat, old_message)) = &moved_from {
                            // Best effort: the old message's buttons are refused anyway
                            // (its chat is not the card's any more).
                            let _ = tg.retire(*old_chat, old_message, MOVED);
                        }
                        if existing.is_none() {
                            report.sent += 1;
                        } else {
                            report.edited += 1;
                        }
                        break;
                    }
                    Err(TgError::MessageGone) if existing.is_some() => existing = None,
                    Err(TgError::RetryAfter(d)) if waited + d <= max_wait => {
                        tracing::info!(card = card_row.cluster_id, wait = %crate::time::human_duration(d.as_millis() as i64), "Telegram 429: waiting");
                        waited += d;
                        if !tg.sleep_or_stop(d) {
                            report.still_owed = store.owed_count(CHANNEL)?;
                            return Ok(report);
                        }
                    }
                    Err(e @ TgError::Refused(_)) => {
                        tracing::warn!(card = card_row.cluster_id, error = %e, "Telegram refused a card");
                        report.refused.push((card_row.cluster_id, e));
                        break;
                    }
                    Err(e) => {
                        report.still_owed = store.owed_count(CHANNEL)?;
                        report.stopped_by = Some(e);
                        return Ok(report);
                    }
                }
            }
        }
    }
    report.still_owed = report.refused.len();
    Ok(report)
}

fn delivered<'a>(
    chat: &'a str,
    message: Option<&'a str>,
    content_hash: &'a str,
    card: &'a super::Card,
) -> Delivered<'a> {
    Delivered {
        chat,
        message,
        content_hash,
        stamp: &card.stamp,
        shown: &card.shown,
    }
}

/// Brings Telegram cards up to date after a local change; a failure only warns (the next
/// notify delivers what is owed). Nothing happens, not even a network client, when
/// Telegram is not configured.
pub fn deliver_quietly(config: &Config, store: &mut Store) {
    let Some(tg_cfg) = &config.telegram else {
        return;
    };
    let warn = |message: String| {
        if config.verbosity >= 0 {
            eprintln!("opsgate: warning: {message}");
        }
    };
    let result = push_owed(store, tg_cfg, None);
    match result {
        Ok(report) => {
            if let Some(e) = report.stopped_by {
                warn(format!(
                    "cards not updated: {e}; the next notify delivers them"
                ));
            }
        }
        Err(e) => warn(format!("cards not updated: {e:#}")),
    }
}
