//! The outbox loop: delivers the cards the store says a channel is owed, through the
//! [`Channel`] seam, and records each delivery right after the channel answers.
//!
//! Who delivers what (the cost of a host stays its own as the fleet grows): a host's
//! `run`, `sweep` and `ingest --notify` deliver only the owed cards and status messages
//! of its own sources ([`Reach::sources`], the same scope as its sweep); the decider
//! (`notify`, `poll`, `serve`, an operator's decision) delivers every source's, so a
//! card whose host never runs again is still delivered. Each source's cards have their
//! own deliverer lease (`outbox:SOURCE`): hosts deliver side by side, and two processes
//! never send the same card. A poll round delivers within a time budget
//! ([`Reach::until`]); what is left stays owed for the next round.

use super::{channels, render, render_status, Channel, ChannelError, Failure, Target};
use crate::config::Config;
use crate::store::{Delivered, StatusRef, Store};
use anyhow::Result;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

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
    pub stopped_by: Option<ChannelError>,
    /// Cards the channel refused; they stay owed.
    pub refused: Vec<(i64, ChannelError)>,
    /// Another process was delivering some source's cards: this run left them (what is
    /// owed stays owed for it or the next run).
    pub busy: bool,
    /// The run's time budget ran out: what is left stays owed for the next round.
    pub out_of_time: bool,
    /// Status messages sent anew and edited in place (unchanged ones cost no call).
    pub statuses_sent: usize,
    pub statuses_edited: usize,
}

impl PushReport {
    /// Adds another channel's run (the first reason to stop is kept).
    pub fn add(&mut self, other: PushReport) {
        self.sent += other.sent;
        self.edited += other.edited;
        self.unchanged += other.unchanged;
        self.still_owed += other.still_owed;
        self.stopped_by = self.stopped_by.take().or(other.stopped_by);
        self.refused.extend(other.refused);
        self.busy |= other.busy;
        self.out_of_time |= other.out_of_time;
        self.statuses_sent += other.statuses_sent;
        self.statuses_edited += other.statuses_edited;
    }
}

/// What a card's old message says once the card moved to another route's chat.
const MOVED: &str = "This card moved to another chat (its route changed). Decide it there.";

/// What a status message's old message says once its source routes to another chat.
const STATUS_MOVED: &str = "This status message moved to another chat (its route changed).";

/// Owed cards read per query.
const OWED_PAGE: i64 = 100;

/// Which owed cards a delivery takes on, and until when.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reach<'a> {
    /// The sources whose cards and status messages it delivers; empty: every source (the
    /// decider's delivery).
    pub sources: &'a [String],
    /// When it stops starting new sends (the one in progress ends): a bounded round.
    pub until: Option<Instant>,
}

impl Reach<'_> {
    fn out_of_time(&self) -> bool {
        self.until.is_some_and(|t| Instant::now() >= t)
    }
}

/// The lease that keeps one deliverer of `source`'s cards and status message, so two
/// processes never send the same card while hosts deliver their own side by side.
fn outbox_lock(source: &str) -> String {
    format!("outbox:{source}")
}

/// How long the deliverer's lease lasts without renewal: one card's send and the 429
/// waits allowed. It is renewed before each card, so a deliverer that stalls past it
/// stops instead of sending beside the next one.
fn outbox_hold(max_wait: Duration) -> Duration {
    max_wait + Duration::from_secs(60)
}

/// The sources' deliverer leases one run holds, takes and gives up.
struct Leases {
    hold: Duration,
    held: BTreeSet<String>,
    /// Sources another process delivers: left alone for the rest of this run.
    busy: BTreeSet<String>,
}

impl Leases {
    /// Takes (or renews) `source`'s lease; false when another process holds it.
    fn take(&mut self, store: &mut Store, source: &str) -> Result<bool> {
        if self.busy.contains(source) {
            return Ok(false);
        }
        if store.try_lock(&outbox_lock(source), self.hold)? {
            self.held.insert(source.to_string());
            return Ok(true);
        }
        // Never taken, or the lease ran out and another deliverer took it: it sends them.
        self.held.remove(source);
        self.busy.insert(source.to_string());
        Ok(false)
    }

    fn release(self, store: &mut Store) {
        for source in &self.held {
            store.unlock(&outbox_lock(source));
        }
    }
}

/// Delivers every owed card of every source (the decider's delivery): see [`push_within`].
pub fn push_owed(store: &mut Store, ch: &dyn Channel) -> Result<PushReport> {
    push_within(store, ch, Reach::default())
}

/// Delivers the owed cards within `reach`: sends new ones, edits changed ones, records
/// each delivery in its own transaction right after the channel's answer. Stops at the
/// first temporary failure or when `reach.until` passes (nothing is lost: the cards stay
/// owed) and waits out rate limits within the channel's `max_wait` in total.
///
/// The channel's client starts only once a card is owed (a run with nothing to send
/// starts no runtime and no HTTP client).
pub fn push_within(store: &mut Store, ch: &dyn Channel, reach: Reach<'_>) -> Result<PushReport> {
    let name = ch.name();
    let report = PushReport::default();
    store.ensure_channel(name)?;
    let statuses = owed_statuses(store, ch, reach.sources)?;
    if statuses.is_empty()
        && store
            .owed_cards_after(name, reach.sources, i64::MIN, 1)?
            .is_empty()
    {
        return Ok(report); // nothing owed: no lease, no write, no client
    }
    ch.connect()?;
    let mut leases = Leases {
        hold: outbox_hold(ch.max_wait()),
        held: BTreeSet::new(),
        busy: BTreeSet::new(),
    };
    let result = deliver(store, ch, reach, &mut leases, report).and_then(|report| {
        if report.stopped_by.is_some() || report.out_of_time {
            return Ok(report);
        }
        deliver_statuses(store, ch, statuses, reach, &mut leases, report)
    });
    leases.release(store);
    let mut report = result?;
    report.still_owed = store.owed_count(name, reach.sources)?;
    Ok(report)
}

fn deliver(
    store: &mut Store,
    ch: &dyn Channel,
    reach: Reach<'_>,
    leases: &mut Leases,
    mut report: PushReport,
) -> Result<PushReport> {
    let name = ch.name();
    let mut waited = Duration::ZERO;
    // A page of owed cards at a time: a backlog of any size costs no memory.
    let mut after = i64::MIN;
    loop {
        let owed = store.owed_cards_after(name, reach.sources, after, OWED_PAGE)?;
        let Some(last) = owed.last() else { break };
        after = last.cluster_id;
        for card_row in &owed {
            if reach.out_of_time() {
                report.out_of_time = true;
                return Ok(report);
            }
            if !leases.take(store, &card_row.source)? {
                report.busy = true;
                continue;
            }
            // Read again under the lease: the page was read before it, and another
            // deliverer holding the lease then may have sent this card since (sending it
            // from the page's row would send it twice).
            let Some(card_row) = store.owed_card(name, card_row.cluster_id)? else {
                continue;
            };
            let card_row = &card_row;
            let view = store.cluster(card_row.cluster_id)?;
            let card = render(&view);
            let hash = ch.content_hash(&card);
            // Its route: a card with something still to decide whose route now names
            // another chat (the configuration changed, or a riskier variant joined it) is
            // sent anew there and its old message retired; a decided card is edited where
            // it is.
            let Some(mut target) = ch.route(&view.source, view.risk().as_str()) else {
                // A route sends this card to another channel: its message here, if any,
                // is retired (a decided card is left as it was).
                if let (Some(chat), Some(message)) = (&card_row.chat, &card_row.message) {
                    if view.in_flight().next().is_some() && !chat.is_empty() {
                        let _ = ch.retire(chat, message, MOVED);
                    }
                }
                store.mark_delivered(name, card_row, &delivered("", None, &hash, &card))?;
                continue;
            };
            let sent_to = card_row.chat.clone().filter(|c| !c.is_empty());
            let moved_from = sent_to
                .clone()
                .filter(|c| *c != target.chat && view.in_flight().next().is_some())
                .zip(card_row.message.clone());
            if let (Some(chat), None, Some(_)) = (sent_to, &moved_from, &card_row.message) {
                target.chat = chat; // edited in place
            }
            let chat = target.chat.clone();
            let message = card_row.message.clone().filter(|_| moved_from.is_none());
            let delivered = |message| delivered(&chat, message, &hash, &card);
            if message.is_none() && view.in_flight().next().is_none() {
                // Decided before its card went out: nothing to send.
                store.mark_delivered(name, card_row, &delivered(None))?;
                continue;
            }
            if message.is_some() && card_row.content_hash.as_deref() == Some(hash.as_str()) {
                store.mark_delivered(name, card_row, &delivered(message.as_deref()))?;
                report.unchanged += 1;
                continue;
            }
            match send_or_edit(ch, &target, message, &card, &mut waited) {
                Sent::Done { id, new } => {
                    store.mark_delivered(name, card_row, &delivered(Some(&id)))?;
                    tracing::debug!(channel = name, card = card_row.cluster_id, chat = %target.chat, message = %id, "card delivered");
                    if let Some((old_chat, old_message)) = &moved_from {
                        // Best effort: the old message's buttons are refused anyway
                        // (its chat is not the card's any more).
                        let _ = ch.retire(old_chat, old_message, MOVED);
                    }
                    if new {
                        report.sent += 1;
                    } else {
                        report.edited += 1;
                    }
                }
                Sent::Refused(e) => {
                    tracing::warn!(channel = name, card = card_row.cluster_id, error = %e, "the channel refused a card");
                    report.refused.push((card_row.cluster_id, e));
                }
                Sent::Stop(e) => {
                    report.stopped_by = e;
                    return Ok(report);
                }
            }
        }
    }
    Ok(report)
}

/// How one send-or-edit ended.
enum Sent {
    /// Delivered as message `id`; `new` when it was sent rather than edited.
    Done { id: String, new: bool },
    /// The channel refused this message for good; it stays owed.
    Refused(ChannelError),
    /// The run stops: a temporary failure (`Some`), or the stop flag (`None`).
    Stop(Option<ChannelError>),
}

/// Sends `card` to `target`, or edits `existing` there in place: a deleted message is sent
/// anew, a rate limit is waited out while the run's `waited` stays within the channel's
/// `max_wait`. The one delivery rule for cards and status messages alike.
fn send_or_edit(
    ch: &dyn Channel,
    target: &Target,
    mut existing: Option<String>,
    card: &super::Card,
    waited: &mut Duration,
) -> Sent {
    loop {
        let result = match &existing {
            None => ch.send(target, card),
            Some(id) => ch.edit(&target.chat, id, card).map(|_| id.clone()),
        };
        let e = match result {
            Ok(id) => {
                return Sent::Done {
                    id,
                    new: existing.is_none(),
                }
            }
            Err(e) => e,
        };
        match e.failure {
            Failure::MessageGone if existing.is_some() => existing = None,
            Failure::RetryAfter(d) if *waited + d <= ch.max_wait() => {
                tracing::info!(channel = ch.name(), chat = %target.chat, wait = %crate::time::human_duration(d.as_millis() as i64), "rate limited (429): waiting");
                *waited += d;
                if !ch.sleep_or_stop(d) {
                    return Sent::Stop(None);
                }
            }
            Failure::Refused => return Sent::Refused(e),
            _ => return Sent::Stop(Some(e)),
        }
    }
}

/// A source's status message that differs from what its chat shows (or was never sent).
struct OwedStatus {
    source: String,
    card: super::Card,
    hash: String,
    /// What was sent before, if anything.
    before: Option<StatusRef>,
}

/// The status messages that must be sent or edited: each source's picture rendered from
/// the store and compared with the hash of what its route's chat shows; an unchanged one
/// costs nothing (reads only).
fn owed_statuses(
    store: &mut Store,
    ch: &dyn Channel,
    sources: &[String],
) -> Result<Vec<OwedStatus>> {
    if !ch.status_message() {
        return Ok(Vec::new());
    }
    let pictures = if sources.is_empty() {
        store.statuses(None)?
    } else {
        let mut some = Vec::new();
        for source in sources {
            some.extend(store.statuses(Some(source))?);
        }
        some
    };
    let mut owed = Vec::new();
    for status in pictures {
        let card = render_status(&status);
        let hash = ch.content_hash(&card);
        let before = store.status_message(&status.source, ch.name())?;
        let Some(chat) = status_route(ch, &status.source).map(|t| t.chat) else {
            continue; // this source's cards go to another channel
        };
        let unchanged = before
            .as_ref()
            .is_some_and(|b| b.chat == chat && b.content_hash == hash);
        if !unchanged {
            owed.push(OwedStatus {
                source: status.source,
                card,
                hash,
                before,
            });
        }
    }
    Ok(owed)
}

/// Where a source's status message goes: the chat its cards route to (the route of its
/// low-risk cards, when routes split a source by risk).
fn status_route(ch: &dyn Channel, source: &str) -> Option<Target> {
    ch.route(source, crate::model::Risk::Low.as_str())
}

/// Delivers owed status messages through [`send_or_edit`]; a new one is pinned without a
/// notification, and a refused pin (no pin right, a private chat) is only logged.
fn deliver_statuses(
    store: &mut Store,
    ch: &dyn Channel,
    owed: Vec<OwedStatus>,
    reach: Reach<'_>,
    leases: &mut Leases,
    mut report: PushReport,
) -> Result<PushReport> {
    let mut waited = Duration::ZERO;
    for o in owed {
        if reach.out_of_time() {
            report.out_of_time = true;
            return Ok(report);
        }
        let Some(target) = status_route(ch, &o.source) else {
            continue;
        };
        if !leases.take(store, &o.source)? {
            report.busy = true;
            continue;
        }
        // Read again under the lease, as a card is: another deliverer may have sent or
        // edited this status message since the list was read.
        let before = store.status_message(&o.source, ch.name())?;
        if before
            .as_ref()
            .is_some_and(|b| b.chat == target.chat && b.content_hash == o.hash)
        {
            continue;
        }
        let o = OwedStatus { before, ..o };
        let chat = target.chat.clone();
        let (existing, moved_from) = match &o.before {
            Some(b) if b.chat == chat => (Some(b.message.clone()), None),
            Some(b) => (None, Some(b)),
            None => (None, None),
        };
        match send_or_edit(ch, &target, existing, &o.card, &mut waited) {
            Sent::Done { id, new } => {
                let pinned = if new {
                    match ch.pin(&target.chat, &id) {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::info!(channel = ch.name(), chat = %target.chat, error = %e, "status message not pinned");
                            false
                        }
                    }
                } else {
                    o.before.as_ref().is_some_and(|b| b.pinned)
                };
                store.mark_status_sent(
                    &o.source,
                    ch.name(),
                    &StatusRef {
                        chat: chat.clone(),
                        message: id,
                        content_hash: o.hash,
                        pinned,
                    },
                )?;
                if let Some(old) = moved_from {
                    let _ = ch.retire(&old.chat, &old.message, STATUS_MOVED);
                }
                if new {
                    report.statuses_sent += 1;
                } else {
                    report.statuses_edited += 1;
                }
            }
            Sent::Refused(e) => {
                tracing::warn!(channel = ch.name(), source = %o.source, error = %e, "the channel refused a status message");
            }
            Sent::Stop(e) => {
                report.stopped_by = e;
                return Ok(report);
            }
        }
    }
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

/// Brings the cards of `sources` (empty: every source, the decider's) up to date on every
/// configured channel after a local change; a failure only warns (the next notify
/// delivers what is owed). Nothing happens, not even a network client, when no channel
/// is configured.
pub fn deliver_quietly(config: &Config, store: &mut Store, sources: &[String]) {
    let warn = |message: String| {
        if config.verbosity >= 0 {
            eprintln!("opsgate: warning: {message}");
        }
    };
    for ch in channels::configured(config) {
        let reach = Reach {
            sources,
            until: None,
        };
        match push_within(store, ch.as_ref(), reach) {
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
}
