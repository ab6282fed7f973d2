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

/// Owed cards read per query.
const OWED_PAGE: i64 = 100;

/// The lock that keeps one card deliverer per database, so two processes never send the
/// same owed card.
const OUTBOX_LOCK: &str = "outbox";

/// The Telegram client an outbox run uses: one already built (poll, serve), or its
/// configuration, built only once a card is owed (a run with nothing to send starts no
/// runtime and no HTTP client).
pub enum Client<'a> {
    Ready(&'a Telegram),
    Config(&'a TelegramConfig),
}

/// Delivers every owed card: sends new ones, edits changed ones, records each delivery in
/// its own transaction right after Telegram's answer. Stops at the first temporary failure
/// (nothing is lost: the cards stay owed) and waits out 429s within `max_wait` in total.
pub fn push_owed(store: &mut Store, client: Client<'_>, max_wait: Duration) -> Result<PushReport> {
    let mut report = PushReport::default();
    store.ensure_channel(CHANNEL)?;
    if store.owed_cards_after(CHANNEL, i64::MIN, 1)?.is_empty() {
        return Ok(report); // nothing owed: no lease, no write, no client
    }
    let built;
    let tg = match client {
        Client::Ready(tg) => tg,
        Client::Config(cfg) => {
            built = Telegram::new(cfg)?;
            &built
        }
    };
    if !store.try_lock(OUTBOX_LOCK)? {
        report.busy = true;
        return Ok(report);
    }
    let result = deliver(store, tg, max_wait, report);
    store.unlock(OUTBOX_LOCK);
    result
}

fn deliver(
    store: &mut Store,
    tg: &Telegram,
    max_wait: Duration,
    mut report: PushReport,
) -> Result<PushReport> {
    let mut waited = Duration::ZERO;
    let chat = tg.chat_ref();
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
            // A card sent to another chat (the configuration changed) is sent anew.
            let message = card_row
                .message
                .clone()
                .filter(|_| card_row.chat.as_deref() == Some(chat.as_str()));
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
            let mut target = message;
            loop {
                let result = match &target {
                    None => tg.send(&card),
                    Some(id) => tg.edit(id, &card).map(|_| id.clone()),
                };
                match result {
                    Ok(id) => {
                        store.mark_delivered(CHANNEL, card_row, &delivered(Some(&id)))?;
                        if target.is_none() {
                            report.sent += 1;
                        } else {
                            report.edited += 1;
                        }
                        break;
                    }
                    Err(TgError::MessageGone) if target.is_some() => target = None,
                    Err(TgError::RetryAfter(d)) if waited + d <= max_wait => {
                        waited += d;
                        if !tg.sleep_or_stop(d) {
                            report.still_owed = store.owed_count(CHANNEL)?;
                            return Ok(report);
                        }
                    }
                    Err(e @ TgError::Refused(_)) => {
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
    let result = push_owed(store, Client::Config(tg_cfg), tg_cfg.max_wait);
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
