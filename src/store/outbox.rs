//! The outbox, channel-neutral: which cards each channel is owed, what it was last sent
//! (a chat and a message reference as the channel names them), the channel's cursor into
//! its incoming events, and the leases that keep one deliverer and one poller.

use super::*;
use crate::model::Cursor;

/// A card a channel is owed: never sent there, or changed since it was last sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwedCard {
    pub cluster_id: i64,
    /// The source whose card it is (a card never changes source).
    pub source: String,
    pub chat: Option<String>,
    pub message: Option<String>,
    pub content_hash: Option<String>,
    /// The revision being rendered; marking it sent clears the debt only if no change
    /// arrived meanwhile.
    pub rev: i64,
}

/// What was delivered for a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered<'a> {
    pub chat: &'a str,
    /// `None` when nothing needed sending (a cluster decided before its card went out).
    pub message: Option<&'a str>,
    pub content_hash: &'a str,
    /// The stamp its buttons carry, and the proposals it shows in full.
    pub stamp: &'a str,
    pub shown: &'a [i64],
}

impl Store {
    /// Makes sure `channel` is owed every live card: the first time a channel is used,
    /// every cluster still in flight gets a delivery row. A read when it already exists.
    pub fn ensure_channel(&mut self, channel: &str) -> Result<()> {
        let known = self
            .conn()
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM channels WHERE name = ?1) AS known",
                &[&channel],
            )?
            .bool("known")?;
        if known {
            return Ok(());
        }
        self.transact("to add a channel", |c| {
            let added = c.execute(
                "INSERT INTO channels (name) VALUES (?1) ON CONFLICT DO NOTHING",
                &[&channel],
            )?;
            if added == 1 {
                c.execute(
                    &format!(
                        "INSERT INTO deliveries (cluster_id, channel)
                         SELECT c.cluster_id, ?1 FROM cards c WHERE EXISTS (
                             SELECT 1 FROM proposals p WHERE p.cluster_id = c.cluster_id
                             AND p.state IN {IN_FLIGHT_SQL})
                         ON CONFLICT DO NOTHING"
                    ),
                    &[&channel],
                )?;
            }
            Ok(())
        })
    }

    /// Cards owed to `channel`, oldest cluster first.
    pub fn owed_cards(&mut self, channel: &str) -> Result<Vec<OwedCard>> {
        self.owed_cards_after(channel, &[], i64::MIN, i64::MAX)
    }

    /// Up to `limit` cards of `sources` (empty: every source) owed to `channel` with a
    /// cluster id above `after`, oldest first: the outbox reads them a page at a time, so
    /// a backlog costs no memory, and a host reads only its own sources' cards.
    pub fn owed_cards_after(
        &mut self,
        channel: &str,
        sources: &[String],
        after: i64,
        limit: i64,
    ) -> Result<Vec<OwedCard>> {
        let mut params: Vec<&dyn ToParam> = vec![&channel, &after, &limit];
        let among = among_sources(sources, 4, &mut params);
        let rows = self.conn().query(
            &format!("{OWED} AND d.cluster_id > ?2{among} ORDER BY d.cluster_id LIMIT ?3"),
            &params,
        )?;
        rows.iter().map(owed_row).collect()
    }

    /// The card `cluster_id` as owed to `channel` now, or `None` when it is owed no more
    /// (another deliverer sent it since a page listed it).
    pub fn owed_card(&mut self, channel: &str, cluster_id: i64) -> Result<Option<OwedCard>> {
        // By its key: a range scan from `cluster_id` read the fleet's owed deliveries past
        // it until one was visible, each through the host's row-level security.
        self.conn()
            .query_opt(
                &format!("{OWED} AND d.cluster_id = ?2"),
                &[&channel, &cluster_id],
            )?
            .map(|r| owed_row(&r))
            .transpose()
    }

    /// How many cards of `sources` (empty: every source) `channel` is owed.
    pub fn owed_count(&mut self, channel: &str, sources: &[String]) -> Result<usize> {
        let mut params: Vec<&dyn ToParam> = vec![&channel];
        let among = among_sources(sources, 2, &mut params);
        Ok(self
            .conn()
            .query_one(
                &format!(
                    "SELECT COUNT(*) AS n FROM deliveries d JOIN cards c ON c.cluster_id = d.cluster_id
                     WHERE d.channel = ?1 AND d.rev > d.sent_rev{among}"
                ),
                &params,
            )?
            .int("n")? as usize)
    }

    /// Records what was delivered for a card on a channel, in one transaction.
    pub fn mark_delivered(
        &mut self,
        channel: &str,
        card: &OwedCard,
        delivered: &Delivered<'_>,
    ) -> Result<()> {
        let shown = serde_json::to_string(delivered.shown)?;
        self.transact("to record a delivered card", |c| {
            c.execute(
                "UPDATE deliveries SET chat = ?3, message = ?4, content_hash = ?5,
                        sent_rev = GREATEST(sent_rev, ?6), stamp = ?7, shown = ?8
                 WHERE cluster_id = ?1 AND channel = ?2",
                &[
                    &card.cluster_id,
                    &channel,
                    &delivered.chat,
                    &delivered.message,
                    &delivered.content_hash,
                    &card.rev,
                    &delivered.stamp,
                    &shown,
                ],
            )?;
            Ok(())
        })
    }

    /// How far `channel`'s incoming events have been handled.
    pub fn cursor(&mut self, channel: &str) -> Result<Option<i64>> {
        self.conn()
            .query_opt(
                "SELECT position FROM cursors WHERE channel = ?1",
                &[&channel],
            )?
            .map(|r| r.int("position"))
            .transpose()
    }

    /// Confirms a handled event that carried no decision.
    pub fn advance_cursor(&mut self, cursor: &Cursor) -> Result<()> {
        self.transact("to confirm an event", |c| advance(c, Some(cursor)))
    }

    /// Takes the named lock (one poller, one card deliverer) for this process without
    /// waiting, or renews it: false when another process holds it. Released by
    /// [`Store::unlock`] or when the process ends, however it ends (on PostgreSQL a lease
    /// row that runs out `hold` after it was last taken, on the database's clock).
    pub fn try_lock(&mut self, name: &str, hold: std::time::Duration) -> Result<bool> {
        self.db.try_lock(name, hold)
    }

    pub fn unlock(&mut self, name: &str) {
        self.db.unlock(name)
    }

    /// Consumes an unexpired confirmation request; true when there was one.
    pub fn take_confirmation(&mut self, key: &str, now: i64) -> Result<bool> {
        let key = format!("confirm:{key}");
        self.transact("to take a confirmation", |c| {
            let until = c
                .query_opt("SELECT value FROM meta WHERE key = ?1 FOR UPDATE", &[&key])?
                .map(|r| r.text("value"))
                .transpose()?;
            if until.is_some() {
                c.execute("DELETE FROM meta WHERE key = ?1", &[&key])?;
            }
            Ok(until
                .and_then(|u| u.parse::<i64>().ok())
                .is_some_and(|u| u >= now))
        })
    }

    /// Marks a card owed again, so the outbox redraws it (and moves it to its route's
    /// chat when that changed).
    pub fn redraw_card(&mut self, cluster_id: i64) -> Result<()> {
        self.transact("to redraw a card", |c| super::owe_card(c, cluster_id))
    }

    /// Remembers that a confirmation was asked for, until `until`; with a card, its
    /// operators read `note` on it (the card is owed again).
    pub fn note_confirmation(
        &mut self,
        key: &str,
        until: i64,
        card: Option<(i64, &str)>,
    ) -> Result<()> {
        self.transact("to note a confirmation", |c| {
            set_meta(c, &format!("confirm:{key}"), &until.to_string())?;
            if let Some((cluster_id, note)) = card {
                super::owe_card(c, cluster_id)?;
                set_meta(c, &card_note_key(cluster_id), note)?;
            }
            Ok(())
        })
    }
}

/// ` AND c.source IN (?first, ...)` over `sources` (their parameters appended to
/// `params`), or nothing when `sources` is empty (every source).
fn among_sources<'a>(
    sources: &'a [String],
    first: usize,
    params: &mut Vec<&'a dyn ToParam>,
) -> String {
    if sources.is_empty() {
        return String::new();
    }
    let marks: Vec<String> = (first..first + sources.len())
        .map(|i| format!("?{i}"))
        .collect();
    params.extend(sources.iter().map(|s| s as &dyn ToParam));
    format!(" AND c.source IN ({})", marks.join(", "))
}

/// Moves a channel's cursor forward (never back), in the caller's transaction.
pub(super) fn advance(c: &mut dyn Conn, cursor: Option<&Cursor>) -> Result<()> {
    if let Some(cur) = cursor {
        c.execute(
            "INSERT INTO cursors (channel, position) VALUES (?1, ?2)
             ON CONFLICT (channel) DO UPDATE SET position = GREATEST(cursors.position, excluded.position)",
            &[&cur.channel, &cur.position],
        )?;
    }
    Ok(())
}

/// The `meta` key of a card's operator note.
pub(super) fn card_note_key(cluster_id: i64) -> String {
    format!("cardnote:{cluster_id}")
}

/// Drops a card's operator note (a decision answered it), in the caller's transaction.
pub(super) fn clear_card_note(c: &mut dyn Conn, cluster_id: i64) -> Result<()> {
    c.execute(
        "DELETE FROM meta WHERE key = ?1",
        &[&card_note_key(cluster_id)],
    )?;
    Ok(())
}

pub(super) fn set_meta(c: &mut dyn Conn, key: &str, value: &str) -> Result<()> {
    c.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&key, &value],
    )?;
    Ok(())
}

/// The cards owed to channel `?1`, as [`owed_row`] reads them; callers add conditions.
const OWED: &str = "SELECT d.cluster_id, c.source, d.chat, d.message, d.content_hash, d.rev
     FROM deliveries d JOIN cards c ON c.cluster_id = d.cluster_id
     WHERE d.channel = ?1 AND d.rev > d.sent_rev";

/// An owed card from a row of [`OWED`].
fn owed_row(r: &Row) -> Result<OwedCard> {
    Ok(OwedCard {
        cluster_id: r.int("cluster_id")?,
        source: r.text("source")?,
        chat: r.opt_text("chat")?,
        message: r.opt_text("message")?,
        content_hash: r.opt_text("content_hash")?,
        rev: r.int("rev")?,
    })
}
