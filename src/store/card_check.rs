//! The card check: a press must come from the card it names, as it was delivered (chat,
//! message, stamp), and that card must still show what the operator saw. Used by every
//! decision that comes from a card ([`super::decisions`]).

use super::decisions::Step;
use super::*;
use crate::model::{card_stamp, CardRef, Refusal, Via};

/// What checking a press against its card found.
#[derive(Debug)]
pub(super) enum CardCheck {
    /// The decision did not come from a card (the command line).
    NotFromCard,
    /// The press matches the card as delivered and as stored now; these are the
    /// proposals it shows (and has buttons for).
    Shown(Vec<i64>),
    /// Refused: the press does not belong to this card.
    Refused(Refusal),
    /// Refused: the card changed since the operator saw it; it must be redrawn.
    Changed,
}

/// Refuses a press made on an older version of its card. The card is owed again on that
/// channel (and re-sent even if its text is the same), so the operator sees what a
/// decision would now apply to.
pub(super) fn card_changed(
    c: &mut dyn Conn,
    cluster_id: i64,
    via: &Via,
    proposal: Option<i64>,
) -> Result<Step> {
    if let Some(card) = &via.card {
        c.execute(
            "UPDATE deliveries SET rev = rev + 1, content_hash = NULL
             WHERE cluster_id = ?1 AND channel = ?2",
            &[&cluster_id, &card.channel],
        )?;
    }
    Ok(Step::Refuse(proposal, Refusal::CardChanged))
}

/// A press must come from the message stored for the proposal's card on its channel, in
/// its chat, carry the stamp that card was delivered with, and that stamp must still
/// describe the card (no variant joined, left or changed state since). A per-proposal
/// action must name a proposal the card shows.
pub(super) fn check_card(
    c: &mut dyn Conn,
    cluster_id: i64,
    via: &Via,
    target: Option<i64>,
) -> Result<CardCheck> {
    let Some(CardRef {
        channel,
        chat,
        message,
        stamp,
    }) = &via.card
    else {
        return Ok(CardCheck::NotFromCard);
    };
    let card = c.query_opt(
        "SELECT merged_into FROM cards WHERE cluster_id = ?1",
        &[&cluster_id],
    )?;
    match card.map(|r| r.opt_int("merged_into")).transpose()? {
        None => return Ok(CardCheck::Refused(Refusal::NotThisCard)),
        Some(Some(into)) => return Ok(CardCheck::Refused(Refusal::MergedInto(into))),
        Some(None) => {}
    }
    let Some(sent) = c.query_opt(
        "SELECT chat, message, stamp, shown FROM deliveries
         WHERE cluster_id = ?1 AND channel = ?2",
        &[&cluster_id, &channel],
    )?
    else {
        return Ok(CardCheck::Refused(Refusal::NotThisCard));
    };
    if sent.opt_text("chat")?.as_ref() != Some(chat)
        || sent.opt_text("message")?.as_ref() != Some(message)
    {
        return Ok(CardCheck::Refused(Refusal::NotThisCard));
    }
    if sent.opt_text("stamp")?.as_ref() != Some(stamp) {
        return Ok(CardCheck::Changed);
    }
    let shown: Vec<i64> = sent
        .opt_text("shown")?
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    let mut in_flight = Vec::new();
    for r in c.query(
        &format!(
            "SELECT id, state FROM proposals WHERE cluster_id = ?1 AND state IN {IN_FLIGHT_SQL}"
        ),
        &[&cluster_id],
    )? {
        if let Some(state) = State::parse(&r.text("state")?) {
            in_flight.push((r.int("id")?, state));
        }
    }
    if card_stamp(&in_flight, &shown, None) != *stamp {
        return Ok(CardCheck::Changed);
    }
    if target.is_some_and(|id| !shown.contains(&id)) {
        return Ok(CardCheck::Refused(Refusal::NotShown));
    }
    Ok(CardCheck::Shown(shown))
}
